from __future__ import annotations

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB

from .base import FieldType


class Json(FieldType):
    """Any JSON document; stored as ``jsonb`` on PostgreSQL. Only null-ness is filterable."""

    name = "json"
    graphql_scalar = "JSON"
    operators = frozenset({"is_null"})
    sortable = False

    def sql_type(self, field):
        return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

    def json_schema(self, field):
        return {"type": ["object", "array", "string", "number", "boolean"]}

    def needs_column_change(self, old, new):
        return False
