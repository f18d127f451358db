from __future__ import annotations

from sqlalchemy import String

from .base import TEXTUAL, FieldType

PHONE = r"^\+?[0-9][0-9 ().\-]{1,38}[0-9]$"


class Phone(FieldType):
    """A phone number: digits with an optional leading ``+`` and spaces, dots, dashes, brackets."""

    name = "phone"
    pattern_message = 'is not a valid phone number (digits, with an optional leading +)'
    operators = TEXTUAL
    safe_changes_from = frozenset({"phone"})

    def sql_type(self, field):
        return String(40)

    def json_schema(self, field):
        return {"type": "string", "maxLength": 40, "pattern": PHONE}
