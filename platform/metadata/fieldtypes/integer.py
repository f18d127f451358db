from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Integer as IntegerColumn

from .base import ORDERED, FieldType

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class IntegerOptions(Schema):
    min = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(INT_MIN, INT_MAX))
    max = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(INT_MIN, INT_MAX))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("min") is not None and data.get("max") is not None and data["min"] > data["max"]:
            raise ValidationError("must not be greater than max", "min")


class Integer(FieldType):
    """A whole number in the 32-bit range, optionally bounded by ``min`` and ``max``."""

    name = "integer"
    graphql_scalar = "Int"
    operators = ORDERED
    options_schema = IntegerOptions
    safe_changes_from = frozenset({"integer"})

    def sql_type(self, field):
        return IntegerColumn()

    def coercer(self, field):
        return int

    def json_schema(self, field):
        low, high = field.options.get("min"), field.options.get("max")
        return {
            "type": "integer",
            "minimum": INT_MIN if low is None else low,
            "maximum": INT_MAX if high is None else high,
        }
