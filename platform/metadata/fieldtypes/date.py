from __future__ import annotations

from datetime import date

from sqlalchemy import Date as DateColumn

from .base import ORDERED, FieldType, ValueProblem

ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class Date(FieldType):
    """A calendar day, written ``YYYY-MM-DD``."""

    name = "date"
    pattern_message = 'must be a date written YYYY-MM-DD'
    graphql_scalar = "Date"
    operators = ORDERED
    safe_changes_from = frozenset({"date"})

    def sql_type(self, field):
        return DateColumn()

    def json_schema(self, field):
        return {"type": "string", "format": "date", "pattern": ISO_DATE}

    def coercer(self, field):
        def coerce(value):
            if isinstance(value, date):
                return value
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueProblem("INVALID_FORMAT", "must be a real calendar date written YYYY-MM-DD") from None

        return coerce

    def dump(self, field, value):
        return None if value is None else value.isoformat()
