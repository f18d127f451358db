"""marshmallow schemas that load and dump metadata definitions.

Loading reports every problem of a definition at once, by dotted path, as :class:`FieldError`.
"""
from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .definitions import FieldDef, freeze
from .errors import FieldError
from .fieldtypes import ValueProblem, registry
from .names import name_problem


def _api_name(value: str) -> None:
    problem = name_problem(value)
    if problem:
        raise ValidationError(problem)


def setting_name(value: str) -> None:
    """The rule for names that are not columns: objects, business types, stages, rules, layouts, roles."""
    problem = name_problem(value, column=False)
    if problem:
        raise ValidationError(problem)


class FieldSchema(Schema):
    api_name = fields.String(required=True, validate=_api_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    type = fields.String(required=True, validate=validate.OneOf(registry.names(), error="must be one of: {choices}"))
    required = fields.Boolean(load_default=False)
    unique = fields.Boolean(load_default=False)
    indexed = fields.Boolean(load_default=False)
    tracked = fields.Boolean(load_default=False)
    default = fields.Raw(load_default=None, allow_none=True)
    help_text = fields.String(load_default="", validate=validate.Length(0, 1000))
    description = fields.String(load_default="", validate=validate.Length(0, 4000))
    options = fields.Dict(keys=fields.String(), load_default=dict)

    @validates_schema(skip_on_field_errors=False)
    def _options_fit_type(self, data, partial=None, **kwargs):
        type_name = data.get("type")
        if type_name not in registry:
            return
        field_type = registry.get(type_name)
        try:
            data["options"] = field_type.options_schema().load(data.get("options") or {})
        except ValidationError as exc:
            raise ValidationError({"options": exc.messages}) from None
        if data.get("default") is not None:
            if not field_type.writable:
                raise ValidationError("this type's values are assigned by the platform and take no default", "default")
            problem = _default_problem(field_type, data)
            if problem:
                raise ValidationError(problem, "default")
        if type_name == "master_detail":
            data["required"] = True


def _default_problem(field_type, data) -> str | None:
    probe = FieldDef(data.get("api_name", "field"), data.get("label", ""), data["type"], options=freeze(data["options"]))
    errors = sorted(Draft202012Validator(field_type.json_schema(probe)).iter_errors(data["default"]), key=str)
    if errors:
        return f"is not a valid {data['type']} value: {errors[0].message}"
    try:
        field_type.coercer(probe)(data["default"])
    except ValueProblem as exc:
        return exc.message
    return None


class ObjectSchema(Schema):
    """An object's header; its fields load one by one with :class:`FieldSchema`, so a bad field
    never hides the problems of the others."""

    api_name = fields.String(required=True, validate=setting_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    plural_api_name = fields.String(load_default=None, validate=setting_name)
    plural_label = fields.String(load_default=None, validate=validate.Length(1, 255))
    description = fields.String(load_default="", validate=validate.Length(0, 4000))


class ObjectUpdateSchema(Schema):
    label = fields.String(validate=validate.Length(1, 255))
    plural_label = fields.String(validate=validate.Length(1, 255))
    description = fields.String(validate=validate.Length(0, 4000))


def errors_from_messages(messages: Any, path: str = "") -> list[FieldError]:
    """Flatten marshmallow's nested messages into field errors with dotted paths."""
    if isinstance(messages, dict):
        found: list[FieldError] = []
        for key, value in messages.items():
            sub = path if key == "_schema" else (f"{path}.{key}" if path else str(key))
            found.extend(errors_from_messages(value, sub))
        return found
    if isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        return [FieldError(_code_for(m), path or None, m) for m in messages]
    if isinstance(messages, list):
        return [e for m in messages for e in errors_from_messages(m, path)]
    return [FieldError(_code_for(str(messages)), path or None, str(messages))]


def _code_for(message: str) -> str:
    lowered = message.lower()
    if "missing data" in lowered:
        return "REQUIRED"
    if "unknown field" in lowered:
        return "UNKNOWN_FIELD"
    if "reserved word" in lowered:
        return "RESERVED_NAME"
    return "INVALID"


def load(schema: Schema, data: Any) -> tuple[dict[str, Any], list[FieldError]]:
    """``schema.load(data)`` returning every problem instead of raising on the first."""
    if not isinstance(data, dict):
        return {}, [FieldError("INVALID_TYPE", None, "must be an object (a mapping of names to values)")]
    try:
        return schema.load(data), []
    except ValidationError as exc:
        return {}, errors_from_messages(exc.messages)
