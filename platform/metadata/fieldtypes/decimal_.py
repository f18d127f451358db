from __future__ import annotations

import re
from decimal import Decimal as PyDecimal
from decimal import InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..sqltypes import ExactDecimal
from .base import ORDERED, FieldType, ValueProblem

DECIMAL_STRING = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


def _decimal_text(value: str) -> None:
    if not re.match(DECIMAL_STRING, value):
        raise ValidationError("must be a number written as text, such as \"100.50\"")


class DecimalText(fields.String):
    """A decimal bound written as text ("100.50") or as a JSON or YAML number (kept as its text)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = repr(value)
        return super()._deserialize(value, attr, data, **kwargs)


def decimal_options(precision: int, scale: int) -> type[Schema]:
    class DecimalOptions(Schema):
        __qualname__ = f"DecimalOptions{precision}_{scale}"
        precision_ = fields.Integer(data_key="precision", attribute="precision", load_default=precision, validate=validate.Range(1, 18))
        scale_ = fields.Integer(data_key="scale", attribute="scale", load_default=scale, validate=validate.Range(0, 18))
        min = DecimalText(load_default=None, allow_none=True, validate=_decimal_text)
        max = DecimalText(load_default=None, allow_none=True, validate=_decimal_text)

        @validates_schema
        def _consistent(self, data, **kwargs):
            if data["scale"] > data["precision"]:
                raise ValidationError("must not exceed precision", "scale")
            if data.get("min") is not None and data.get("max") is not None and PyDecimal(data["min"]) > PyDecimal(data["max"]):
                raise ValidationError("must not be greater than max", "min")

    return DecimalOptions


class Decimal(FieldType):
    """An exact number with ``precision`` digits, ``scale`` of them after the point.

    Accepted as a JSON number or, to keep every digit, as a numeric string.
    """

    name = "decimal"
    pattern_message = 'must be a number (a JSON number or a numeric string such as "12.50")'
    graphql_scalar = "Decimal"
    operators = ORDERED
    options_schema = decimal_options(18, 2)
    safe_changes_from = frozenset({"integer", "decimal", "currency", "percent"})

    def sql_type(self, field):
        return ExactDecimal(field.options["precision"], field.options["scale"])

    def json_schema(self, field):
        return {"type": ["number", "string"], "pattern": DECIMAL_STRING}

    def coercer(self, field):
        precision, scale = field.options["precision"], field.options["scale"]
        low, high = field.options.get("min"), field.options.get("max")
        low = None if low is None else PyDecimal(low)
        high = None if high is None else PyDecimal(high)
        max_whole_digits = precision - scale
        quantum = PyDecimal(1).scaleb(-scale)

        def coerce(value):
            if isinstance(value, float):
                value = repr(value)
            try:
                number = PyDecimal(str(value))
            except InvalidOperation:
                raise ValueProblem("INVALID_TYPE", "must be a number") from None
            if not number.is_finite():
                raise ValueProblem("INVALID_TYPE", "must be a finite number")
            if number != number.quantize(quantum, rounding="ROUND_DOWN"):
                raise ValueProblem("TOO_PRECISE", f"must have at most {scale} decimal places", scale=scale)
            whole = number.adjusted() + 1 if number else 0
            if whole > max_whole_digits:
                raise ValueProblem("OUT_OF_RANGE", f"must have at most {max_whole_digits} digits before the decimal point", precision=precision, scale=scale)
            if (low is not None and number < low) or (high is not None and number > high):
                raise ValueProblem("OUT_OF_RANGE", f"must be between {low if low is not None else '-∞'} and {high if high is not None else '∞'}", min=str(low), max=str(high))
            return number.quantize(quantum)

        return coerce

    def stored_value_change(self, old, new, column, dialect_name):
        """On SQLite decimals are stored as integer units of the scale: rescale them."""
        if dialect_name != "sqlite":
            return None
        old_scale = old.options.get("scale", 0) if old.type != "integer" else 0
        shift = new.options["scale"] - old_scale
        return column * (10 ** shift) if shift else None

    def dump(self, field, value):
        return None if value is None else str(value)

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem:
            return problem
        if old.type == "integer":
            if new.options["precision"] - new.options["scale"] < 10:
                return "an integer field becomes a decimal only with at least 10 digits before the decimal point"
            return None
        old_whole = old.options["precision"] - old.options["scale"]
        if new.options["scale"] < old.options["scale"]:
            return f"scale cannot shrink from {old.options['scale']} to {new.options['scale']}: existing values would be rounded"
        if new.options["precision"] - new.options["scale"] < old_whole:
            return "precision cannot shrink below the digits existing values may have before the decimal point"
        return None
