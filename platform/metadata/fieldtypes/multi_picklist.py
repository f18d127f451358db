from __future__ import annotations

from sqlalchemy import Text, false

from .base import FieldType, ValueProblem
from .picklist import PicklistOptions, active_names, ordered_values, removed_values

SEPARATOR = ";"


class MultiPicklist(FieldType):
    """Several values from a list, stored as ``;a;b;`` so one ``LIKE`` finds a value on any database;
    an empty list is stored (and read back) as null.

    ``contains`` keeps records holding the value, ``eq`` records holding exactly that set.
    """

    name = "multi_picklist"
    graphql_scalar = "Enum"
    operators = frozenset({"contains", "eq", "is_null"})
    options_schema = PicklistOptions
    sortable = False
    safe_changes_from = frozenset({"multi_picklist"})

    def sql_type(self, field):
        return Text()

    def json_schema(self, field):
        item = (
            {"type": "string", "enum": active_names(field.options)}
            if field.options.get("restricted", True)
            else {"type": "string", "maxLength": 255, "pattern": "^[^;]+$"}
        )
        return {"type": "array", "items": item, "uniqueItems": True, "maxItems": 1000}

    def coercer(self, field):
        rank = {v["api_name"]: i for i, v in enumerate(ordered_values(field.options))}

        def coerce(values):
            if not values:
                return None
            if any(SEPARATOR in v for v in values):
                raise ValueProblem("INVALID_CHOICE", f"values may not contain '{SEPARATOR}'")
            return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))

        return coerce

    def to_row(self, field, value):
        return {field.api_name: None if not value else SEPARATOR + SEPARATOR.join(value) + SEPARATOR}

    def from_row(self, field, row):
        stored = row[field.api_name]
        return None if stored is None else stored.strip(SEPARATOR).split(SEPARATOR)

    def filter_value_schema(self, field, op):
        every = {"type": "string", "enum": [v["api_name"] for v in field.options["values"]]}
        if op == "is_null":
            return {"type": "boolean"}
        if op == "contains":
            return every
        return {"type": "array", "items": every, "uniqueItems": True}

    def filter_clause(self, field, column, op, value):
        if op == "contains":
            return column.contains(SEPARATOR + value + SEPARATOR, autoescape=True)
        if op == "eq":
            stored = self.to_row(field, self.coercer(field)(value))[field.api_name]
            return column.is_(None) if stored is None else column == stored
        if op == "is_null":
            return column.is_(None) if value else column.is_not(None)
        return false()

    def change_problem(self, old, new):
        problem = super().change_problem(old, new)
        if problem is None and (removed := removed_values(old, new)):
            return f"values cannot be removed ({', '.join(removed)}): records may hold them; set them inactive instead"
        return problem


