from __future__ import annotations

from sqlalchemy import Boolean as BooleanColumn

from .base import FieldType


class Boolean(FieldType):
    name = "boolean"
    graphql_scalar = "Boolean"
    operators = frozenset({"eq", "ne", "is_null"})

    def sql_type(self, field):
        return BooleanColumn(create_constraint=False)

    def json_schema(self, field):
        return {"type": "boolean"}
