from __future__ import annotations

from sqlalchemy import String

from .base import TEXTUAL, FieldType

URL = r"^https?://[^\s/$.?#][^\s]*$"


class Url(FieldType):
    name = "url"
    pattern_message = 'must be an http:// or https:// address'
    operators = TEXTUAL
    safe_changes_from = frozenset({"url"})

    def sql_type(self, field):
        return String(2048)

    def json_schema(self, field):
        return {"type": "string", "maxLength": 2048, "format": "uri", "pattern": URL}
