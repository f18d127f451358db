from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import String

from .base import TEXTUAL, FieldType


def _compiles(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValidationError(f"is not a valid regular expression: {exc}") from exc


class TextOptions(Schema):
    max_length = fields.Integer(load_default=255, validate=validate.Range(1, 10000))
    pattern = fields.String(load_default=None, allow_none=True, validate=_compiles)


class Text(FieldType):
    """A single line of text up to ``max_length`` characters, optionally matching ``pattern``."""

    name = "text"
    operators = TEXTUAL
    options_schema = TextOptions
    safe_changes_from = frozenset({"text", "email", "phone", "url", "picklist", "auto_number"})

    def sql_type(self, field):
        return String(field.options["max_length"])

    def json_schema(self, field):
        schema = {"type": "string", "maxLength": field.options["max_length"]}
        if field.options.get("pattern"):
            schema["pattern"] = field.options["pattern"]
        return schema

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem:
            return problem
        old_length = getattr(old.field_type.sql_type(old), "length", None) or 0
        if new.options["max_length"] < old_length:
            return f"max_length cannot shrink from {old_length} to {new.options['max_length']}: existing values could be cut"
        return None
