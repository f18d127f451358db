from __future__ import annotations

import math

from ..sqltypes import JsonDocument
from .base import FieldType, ValueProblem


def _check_document(value, path: str = "") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueProblem("INVALID_TYPE", "JSON numbers must be finite (no NaN or Infinity)", path=path)
    if isinstance(value, str) and "\x00" in value:
        raise ValueProblem("INVALID_CHARACTER", "may not contain the NUL character", path=path)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_document(key, path)
            _check_document(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_document(item, f"{path}.{index}" if path else str(index))


class Json(FieldType):
    """Any JSON document; stored as ``jsonb`` on PostgreSQL. Only null-ness is filterable."""

    name = "json"
    graphql_scalar = "JSON"
    operators = frozenset({"is_null"})
    sortable = False

    def sql_type(self, field):
        return JsonDocument()

    def coercer(self, field):
        def coerce(value):
            _check_document(value)
            return value

        return coerce

    def json_schema(self, field):
        return {"type": ["object", "array", "string", "number", "boolean"]}

    def needs_column_change(self, old, new):
        return False
