from __future__ import annotations

import re
from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields
from sqlalchemy import String

from .base import TEXTUAL, FieldType

TOKEN = re.compile(r"\{(0+|YYYY|YY|MM|DD)\}")


def _has_counter(value: str) -> None:
    if not any(m.group(1).startswith("0") for m in TOKEN.finditer(value)):
        raise ValidationError("must contain a counter such as {0000}")
    if len(value) > 40:
        raise ValidationError("must be at most 40 characters")


class AutoNumberOptions(Schema):
    format = fields.String(load_default="{000000}", validate=_has_counter)
    start = fields.Integer(load_default=1)


def render(format_: str, number: int, at: datetime | None = None) -> str:
    """``OPP-{YYYY}-{0000}`` with 42 in 2026 gives ``OPP-2026-0042``."""
    at = at or datetime.now(timezone.utc)

    def token(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("0"):
            return str(number).zfill(len(name))
        return {"YYYY": f"{at.year:04d}", "YY": f"{at.year % 100:02d}", "MM": f"{at.month:02d}", "DD": f"{at.day:02d}"}[name]

    return TOKEN.sub(token, format_)


class AutoNumber(FieldType):
    """A read-only number the platform assigns on create: unique and gap-free per field."""

    name = "auto_number"
    operators = TEXTUAL
    options_schema = AutoNumberOptions
    writable = False
    always_indexed = True
    always_unique = True
    safe_changes_from = frozenset({"auto_number"})

    def sql_type(self, field):
        return String(64)

    def json_schema(self, field):
        return {"type": "string", "maxLength": 64}
