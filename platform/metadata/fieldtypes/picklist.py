from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import String

from ..names import API_NAME
from .base import EQUALITY, FieldType


class PicklistValue(Schema):
    api_name = fields.String(required=True, validate=validate.Regexp(API_NAME, error="must be a lowercase api name"))
    label = fields.String(required=True, validate=validate.Length(1, 255))
    order = fields.Integer(load_default=None, allow_none=True)
    active = fields.Boolean(load_default=True)


class PicklistOptions(Schema):
    values = fields.List(fields.Nested(PicklistValue), required=True, validate=validate.Length(1, 1000))
    restricted = fields.Boolean(load_default=True)

    @validates_schema
    def _distinct(self, data, **kwargs):
        names = [v["api_name"] for v in data.get("values", [])]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValidationError(f"duplicate values: {', '.join(duplicates)}", "values")


def ordered_values(options) -> list[dict]:
    """The values in display order (explicit ``order`` first, then as listed)."""
    indexed = list(enumerate(options["values"]))
    indexed.sort(key=lambda item: (item[1].get("order") is None, item[1].get("order") or 0, item[0]))
    return [value for _, value in indexed]


def active_names(options) -> list[str]:
    return [v["api_name"] for v in ordered_values(options) if v.get("active", True)]


def removed_values(old, new) -> list[str]:
    kept = {v["api_name"] for v in new.options["values"]}
    return [v["api_name"] for v in old.options["values"] if v["api_name"] not in kept]


class Picklist(FieldType):
    """One value from a list; a restricted picklist accepts only its active values.

    Values are never removed once records may hold them: deactivate a value instead.
    """

    name = "picklist"
    graphql_scalar = "Enum"
    operators = EQUALITY
    options_schema = PicklistOptions
    safe_changes_from = frozenset({"picklist"})

    def sql_type(self, field):
        return String(255)

    def json_schema(self, field):
        if field.options.get("restricted", True):
            return {"type": "string", "enum": active_names(field.options)}
        return {"type": "string", "maxLength": 255}

    def filter_value_schema(self, field, op):
        every = {"type": "string", "enum": [v["api_name"] for v in field.options["values"]]}
        if op == "is_null":
            return {"type": "boolean"}
        return {"type": "array", "items": every} if op in ("in", "not_in") else every

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem is None and (removed := removed_values(old, new)):
            return f"values cannot be removed ({', '.join(removed)}): records may hold them; set them inactive instead"
        return problem
