from __future__ import annotations

from marshmallow import Schema, fields, validate
from sqlalchemy import Text as TextColumn

from .base import EQUALITY, FieldType


class TextAreaOptions(Schema):
    max_length = fields.Integer(load_default=32768, validate=validate.Range(1, 1_000_000))


class TextArea(FieldType):
    """Long, multi-line text; filterable by content but not sortable."""

    name = "textarea"
    operators = EQUALITY | {"contains", "starts_with"}
    options_schema = TextAreaOptions
    sortable = False
    safe_changes_from = frozenset({"text", "textarea", "email", "phone", "url", "picklist"})

    def sql_type(self, field):
        return TextColumn()

    def json_schema(self, field):
        return {"type": "string", "maxLength": field.options["max_length"]}

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem is None and old.type == "textarea" and new.options["max_length"] < old.options["max_length"]:
            return "max_length of a textarea cannot shrink: existing values could be cut"
        return problem
