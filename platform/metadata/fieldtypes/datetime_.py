from __future__ import annotations

from datetime import datetime, timezone

from ..sqltypes import UtcDateTime
from .base import ORDERED, FieldType, ValueProblem

ISO_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})$"


def parse_instant(value) -> datetime:
    """An aware datetime in UTC from an ISO 8601 string with an offset (or an aware datetime)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueProblem("INVALID_FORMAT", "must be an ISO 8601 date and time with an offset, such as 2026-03-01T09:30:00+08:00") from None
    if parsed.tzinfo is None:
        raise ValueProblem("INVALID_FORMAT", "must include a timezone offset (Z or +08:00)")
    return parsed.astimezone(timezone.utc)


class DateTime(FieldType):
    """An instant: accepted with any offset, stored and returned in UTC."""

    name = "datetime"
    pattern_message = 'must be an ISO 8601 date and time with an offset, such as 2026-03-01T09:30:00+08:00'
    graphql_scalar = "DateTime"
    operators = ORDERED
    safe_changes_from = frozenset({"datetime"})

    def sql_type(self, field):
        return UtcDateTime()

    def json_schema(self, field):
        return {"type": "string", "format": "date-time", "pattern": ISO_DATETIME}

    def coercer(self, field):
        return parse_instant

    def dump(self, field, value):
        return None if value is None else value.isoformat()
