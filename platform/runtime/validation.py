"""Validation of incoming record values, built once per object per Catalog version.

Three layers, one error shape: the object's generated JSON Schema (Draft 2020-12, checked with
jsonschema), each field type's coercer (what JSON Schema cannot say: real calendar dates, decimal
places), and checks against the database (unique values, lookup targets), done in ``checks.py``.
"""
from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from ..metadata.definitions import FieldDef, ObjectDef, thaw
from ..metadata.errors import FieldError
from ..metadata.fieldtypes import ValueProblem
from ..metadata.fieldtypes.base import nullable
from ..metadata.fieldtypes.lookup import UUID_PATTERN
from .schema_check import compile_check

INPUT_SYSTEM_FIELDS = ("owner_id", "org_unit_id")
"""System fields a caller may set; the rest are kept by the platform."""
PROCESS_FIELDS = ("business_type", "stage")
"""System fields a caller sets on objects with business types (and stages): checked against them."""


def input_system_fields(obj: ObjectDef) -> tuple[str, ...]:
    return (*INPUT_SYSTEM_FIELDS, *(name for name in PROCESS_FIELDS if obj.field(name) is not None))

_TYPE_WORDS = {
    "string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
    "array": "a list", "object": "an object", "null": "null",
}


def record_schema(obj: ObjectDef, *, creating: bool) -> dict[str, Any]:
    """The JSON Schema of a record's input: every writable field, required ones on create."""
    properties: dict[str, Any] = {name: nullable({"type": "string", "pattern": UUID_PATTERN}) for name in INPUT_SYSTEM_FIELDS}
    for name in input_system_fields(obj)[len(INPUT_SYSTEM_FIELDS):]:
        properties[name] = nullable({"type": "string", "minLength": 1, "maxLength": 63})
    required = []
    for field in obj.fields:
        if not field.writable:
            continue
        schema = field.field_type.json_schema(field)
        schema = {**schema, "title": field.label, **({"description": field.help_text} if field.help_text else {})}
        if field.required and schema.get("type") == "string":
            schema["minLength"] = 1
        properties[field.api_name] = schema if field.required else nullable(schema)
        if field.required and creating and field.default is None:
            required.append(field.api_name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": obj.label,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


class RecordValidator:
    """Checks and coerces one object's input values; every problem is reported at once."""

    def __init__(self, obj: ObjectDef):
        self.obj = obj
        self.create_schema = record_schema(obj, creating=True)
        self.update_schema = record_schema(obj, creating=False)
        self._create = Draft202012Validator(self.create_schema)
        self._update = Draft202012Validator(self.update_schema)
        self._create_fast = compile_check(self.create_schema)
        self._update_fast = compile_check(self.update_schema)
        self._coercers = {f.api_name: f.field_type.coercer(f) for f in obj.fields if f.writable}
        accepted = input_system_fields(obj)
        for name in accepted:
            self._coercers[name] = obj.field(name).field_type.coercer(obj.field(name))
        self._defaults = {f.api_name: thaw(f.default) for f in obj.fields if f.writable and f.default is not None}
        self._read_only = {f.api_name for f in obj.fields_by_name.values() if not f.writable} - set(accepted)

    def check(self, values: Any, *, creating: bool) -> tuple[dict[str, Any], list[FieldError]]:
        """Coerced values (defaults applied on create) and the list of problems."""
        if not isinstance(values, dict):
            return {}, [FieldError("INVALID_TYPE", None, "must be an object mapping field names to values")]
        errors: list[FieldError] = []
        if self._read_only.intersection(values):
            for name in sorted(self._read_only.intersection(values)):
                errors.append(FieldError("READ_ONLY", name, "is set by the platform and cannot be written"))
            values = {k: v for k, v in values.items() if k not in self._read_only}
        if creating and self._defaults:
            values = {**self._defaults, **values}
        validator = self._create if creating else self._update
        fast = self._create_fast if creating else self._update_fast
        bad_fields: set[str] = set()
        for error in () if fast is not None and fast(values) else validator.iter_errors(values):
            for field_error in self._describe(error, values):
                if field_error.code == "REQUIRED" and field_error in errors:
                    continue
                errors.append(field_error)
                if field_error.field:
                    bad_fields.add(field_error.field.split(".")[0])
        coerced: dict[str, Any] = {}
        for name, value in values.items():
            if name in bad_fields or name not in self._coercers:
                continue
            if value is None:
                coerced[name] = None
                continue
            if isinstance(value, str) and "\x00" in value:
                errors.append(FieldError("INVALID_CHARACTER", name, "may not contain the NUL character"))
                continue
            try:
                coerced[name] = self._coercers[name](value)
            except ValueProblem as problem:
                path = f"{name}.{problem.path}" if problem.path else name
                errors.append(FieldError(problem.code, path, problem.message, problem.ctx))
        return coerced, errors

    def _describe(self, error, values: dict[str, Any]) -> list[FieldError]:
        keyword = error.validator
        if keyword == "additionalProperties" and not error.path:
            known = self.update_schema["properties"]
            return [FieldError("UNKNOWN_FIELD", name, f"'{self.obj.api_name}' has no field named '{name}'")
                    for name in sorted(set(values) - set(known))]
        if keyword == "required" and not error.path:
            return [FieldError("REQUIRED", name, "is required") for name in error.validator_value if name not in values]
        path = ".".join(str(p) for p in error.path) or None
        field = self.obj.field(str(error.path[0])) if error.path else None
        return [_field_error(error, field, path)]


def _field_error(error, field: FieldDef | None, path: str | None) -> FieldError:
    code, message = _code_and_message(error, field)
    return FieldError(code, path, message, _context(error))


def _code_and_message(error, field: FieldDef | None) -> tuple[str, str]:
    keyword, expected, value = error.validator, error.validator_value, error.instance
    kind = field.type if field else "value"
    if value is None and field is not None and field.required and len(error.path) == 1:
        return "REQUIRED", "is required and cannot be null"
    if keyword == "type":
        types = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types if t != "null")
        return "INVALID_TYPE", f"must be {words}"
    if keyword == "maxLength":
        return "TOO_LONG", f"must be at most {expected} characters"
    if keyword == "minLength" and expected == 1:
        return "REQUIRED", "is required and cannot be empty"
    if keyword == "minLength":
        return "TOO_SHORT", f"must be at least {expected} characters"
    if keyword in ("maximum", "exclusiveMaximum"):
        return "OUT_OF_RANGE", f"must be at most {expected}"
    if keyword in ("minimum", "exclusiveMinimum"):
        return "OUT_OF_RANGE", f"must be at least {expected}"
    if keyword == "enum":
        choices = ", ".join(str(c) for c in expected if c is not None)
        return "INVALID_CHOICE", f"must be one of: {choices}"
    if keyword == "pattern":
        return "INVALID_FORMAT", field.field_type.pattern_message if field else "has the wrong format"
    if keyword == "uniqueItems":
        return "DUPLICATE_VALUES", "must not repeat a value"
    if keyword == "maxItems":
        return "TOO_MANY", f"must hold at most {expected} values"
    if keyword == "required":
        return "REQUIRED", f"must have {', '.join(expected)}"
    if keyword == "additionalProperties":
        return "UNKNOWN_FIELD", "has keys that are not allowed"
    return "INVALID", f"is not a valid {kind} value"


def _context(error) -> dict[str, Any]:
    if error.validator in ("maxLength", "minLength", "maximum", "minimum", "maxItems"):
        return {"limit": error.validator_value}
    return {}
