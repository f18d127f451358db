from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Boolean, Date, Integer, String, Text, Uuid, type_coerce

from ..formulas import (
    NotTranslatable,
    StoredDecimal,
    column_resolver,
    parse,
    sql_expression,
)
from ..sqltypes import ExactDecimal, UtcDateTime
from .derived import DECIMAL_RESULTS, DerivedField

RESULT_TYPES = ("text", "integer", "decimal", "currency", "percent", "boolean", "date", "datetime")
RESULT_KINDS = {"text": ("string",), "integer": ("int",), "decimal": ("int", "double"), "currency": ("int", "double"),
                "percent": ("int", "double"), "boolean": ("bool",), "date": ("date",), "datetime": ("timestamp",)}
"""Which kinds of CEL value each result type takes."""


class FormulaOptions(Schema):
    expression = fields.String(required=True, validate=validate.Length(1, 4000))
    result_type = fields.String(required=True, validate=validate.OneOf(RESULT_TYPES, error="must be one of: {choices}"))
    scale = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 8))
    in_sql = fields.Boolean(load_default=False)
    """Derived when the field is saved: whether the expression translates into SQL."""
    not_in_sql_because = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _scale_fits(self, data, **kwargs):
        if data.get("result_type") in DECIMAL_RESULTS:
            data["scale"] = 2 if data.get("scale") is None else data["scale"]
        elif data.get("scale") is not None:
            raise ValidationError("applies only to decimal, currency and percent results", "scale")


def stored_kind(column) -> str | None:
    """The kind of CEL value a stored column holds, or ``None`` when formulas cannot read it in SQL."""
    sql_type = column.type
    if isinstance(sql_type, ExactDecimal):
        return "double"
    if isinstance(sql_type, UtcDateTime):
        return "timestamp"
    if isinstance(sql_type, Uuid):
        return None
    for kind, types in (("bool", Boolean), ("int", Integer), ("date", Date), ("string", (String, Text))):
        if isinstance(sql_type, types):
            return kind
    return None


def translate(field, table):
    """The formula as one SQL expression over ``table`` and its kind; raises NotTranslatable."""
    value_types, scales = {}, {}
    for column in table.c:
        kind = stored_kind(column)
        if kind is not None:
            value_types[column.key] = kind
            if kind == "double":
                scales[column.key] = column.type.scale
    return sql_expression(parse(field.options["expression"]), column_resolver(table, value_types, decimal_scales=scales))


class Formula(DerivedField):
    """A value computed on read from a CEL expression over the record, typed by ``result_type``.

    Expressions within the part of CEL that translates into SQL are computed by the database, and
    can be filtered, sorted and grouped on; others are computed after reading and cannot.
    """

    name = "formula"
    options_schema = FormulaOptions
    computed = True
    safe_changes_from = frozenset({"formula"})

    def result_name(self, field) -> str:
        return field.options["result_type"]

    def columns(self, field):
        return []

    def to_row(self, field, value):
        return {}

    def needs_column_change(self, old, new) -> bool:
        return False

    def change_problem(self, old, new):
        if old.type != new.type:
            return "a field cannot become a formula (or stop being one); add a new field instead"
        return None

    def in_sql(self, field) -> bool:
        return bool(field.options.get("in_sql"))

    def selectable(self, field, table):
        if not field.options.get("in_sql"):
            return None
        try:
            expression, _ = translate(field, table)
        except (NotTranslatable, KeyError):
            return None
        if field.options["result_type"] in DECIMAL_RESULTS:
            expression = StoredDecimal(expression, field.options["scale"])
        return [type_coerce(expression, self.sql_type(field))]


    def convert(self, field, value: Any) -> Any:
        """A computed value (from SQL or from CEL) as the result type holds it; ``None`` when it does not fit."""
        if value is None:
            return None
        result = field.options["result_type"]
        try:
            if result == "text":
                return value if isinstance(value, str) else None
            if result == "boolean":
                return bool(value) if isinstance(value, (bool, int)) else None
            if result == "integer":
                return int(value) if isinstance(value, int) or (isinstance(value, (float, Decimal)) and value == int(value)) else None
            if result in DECIMAL_RESULTS:
                if isinstance(value, bool):
                    return None
                number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
                return number.quantize(Decimal(1).scaleb(-field.options["scale"]), rounding=ROUND_HALF_UP) if number.is_finite() else None
            if result == "date":
                if isinstance(value, datetime):
                    return value.astimezone(timezone.utc).date()
                return value if isinstance(value, date) else date.fromisoformat(value)
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            if isinstance(value, datetime):
                return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except (ValueError, TypeError, InvalidOperation, OverflowError):
            return None
        return None
