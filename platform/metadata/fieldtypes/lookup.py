from __future__ import annotations

import uuid

from marshmallow import Schema, fields, validate

from ..names import API_NAME
from ..sqltypes import RecordId
from .base import FieldType, ValueProblem

UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


class LookupOptions(Schema):
    target = fields.String(required=True, validate=validate.Regexp(API_NAME, error="must name an object"))
    on_delete = fields.String(load_default="set_null", validate=validate.OneOf(["set_null", "restrict"]))
    relationship_name = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(API_NAME))


def normalize_id(value) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueProblem("INVALID_FORMAT", "must be a record id (a UUID)") from None


class Lookup(FieldType):
    """A reference to one record of ``target`` (any object, ``user`` included), always indexed.

    ``on_delete`` says what a hard delete of the target does: clear the reference or be refused.
    """

    name = "lookup"
    pattern_message = 'must be a record id (a UUID)'
    graphql_scalar = "ID"
    operators = frozenset({"eq", "ne", "in", "not_in", "is_null"})
    options_schema = LookupOptions
    always_indexed = True
    references = True
    safe_changes_from = frozenset({"lookup"})

    def sql_type(self, field):
        return RecordId

    def json_schema(self, field):
        return {"type": "string", "pattern": UUID_PATTERN}

    def coercer(self, field):
        return normalize_id

    def on_delete_sql(self, field) -> str:
        return {"set_null": "SET NULL", "restrict": "RESTRICT"}[field.options.get("on_delete", "set_null")]

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem is None and old.options["target"] != new.options["target"]:
            return "the target of a lookup cannot change: existing ids point at the old object"
        return problem
