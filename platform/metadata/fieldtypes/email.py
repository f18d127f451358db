from __future__ import annotations

from sqlalchemy import String

from .base import TEXTUAL, FieldType

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Email(FieldType):
    name = "email"
    pattern_message = 'is not a valid email address'
    operators = TEXTUAL
    safe_changes_from = frozenset({"email"})

    def sql_type(self, field):
        return String(254)

    def json_schema(self, field):
        return {"type": "string", "maxLength": 254, "format": "email", "pattern": EMAIL}

    def coercer(self, field):
        def coerce(value: str) -> str:
            local, _, domain = value.strip().rpartition("@")
            return f"{local}@{domain.lower()}"

        return coerce
