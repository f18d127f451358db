"""Ordering and keyset (cursor) pagination.

Every order ends with ``id`` so it is total; ascending puts nulls last, descending puts them
first, on every database. A cursor holds the sort values of the last row returned, and the next
page is the rows strictly after it: no ``OFFSET``, so deep pages cost as much as the first.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping

from jsonschema import Draft202012Validator
from sqlalchemy import and_, case, false, null, or_

from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.errors import FieldError, ValidationFailed
from ..metadata.fieldtypes import ValueProblem
from ..metadata.fieldtypes.picklist import ordered_values
from .computed import not_in_sql


@dataclass(frozen=True)
class SortKey:
    field: FieldDef
    descending: bool
    ranks: Mapping[str, int] | None = None
    """The defined order of the values (picklists, stages); ``None``: the values' own order."""

    @property
    def column_name(self) -> str:
        return self.field.api_name

    def expression(self, table):
        """What the order compares: the column, or for a picklist its value's place in the list
        (stages sort as defined, not alphabetically; values not in the list after them)."""
        column = self.field.field_type.selectable(self.field, table)[0]
        ranks = self.ranks
        if ranks is None:
            return column
        return case((column.is_(None), null()), *((column == name, rank) for name, rank in ranks.items()), else_=len(ranks))

    def comparable(self, value: Any) -> Any:
        """A cursor's value as :meth:`expression` compares it."""
        ranks = self.ranks
        return value if ranks is None or value is None else ranks.get(value, len(ranks))


def defined_order(obj: ObjectDef, field: FieldDef) -> dict[str, int] | None:
    """Where each value stands in its defined order: a picklist's values; the stages of an object
    (by business type, then stage)."""
    if field.type == "picklist":
        return {value["api_name"]: rank for rank, value in enumerate(ordered_values(field.options))}
    if field.api_name == "stage" and obj.has_stages:
        return {stage.api_name: rank for rank, stage in enumerate(s for kind in obj.business_types for s in kind.stages)}
    return None


def parse_order(obj: ObjectDef, order_by: list[str] | None, hidden: frozenset[str] = frozenset()) -> list[SortKey]:
    """``["-amount", "name"]``: amount descending, then name ascending, then id (ascending unless
    the order names it; keys after ``id`` could never matter and are dropped)."""
    keys: list[SortKey] = []
    errors: list[FieldError] = []
    for i, item in enumerate(order_by or []):
        if not isinstance(item, str) or not item.lstrip("-"):
            errors.append(FieldError("INVALID_TYPE", f"order_by.{i}", "must be a field name, prefixed with '-' for descending"))
            continue
        name = item.lstrip("-")
        field = obj.field(name)
        if field is None:
            errors.append(FieldError("UNKNOWN_FIELD", f"order_by.{i}", f"'{obj.api_name}' has no field named '{name}'"))
        elif name in hidden:
            errors.append(FieldError("FORBIDDEN", f"order_by.{i}", f"you may not read '{obj.api_name}.{name}', so you may not sort on it"))
        elif not field.value.field_type.sortable:
            errors.append(FieldError("NOT_SORTABLE", f"order_by.{i}", f"a {field.value_type} field cannot be sorted on"))
        elif not field.field_type.in_sql(field):
            errors.append(FieldError("NOT_SORTABLE", f"order_by.{i}", not_in_sql(field)))
        else:
            keys.append(SortKey(field, item.startswith("-"), defined_order(obj, field)))
            if name == "id":
                break
    if errors:
        raise ValidationFailed("The order has problems; fix the listed parts.", errors=errors)
    if not keys or keys[-1].column_name != "id":
        keys.append(SortKey(obj.field("id"), False))
    return keys


def order_clauses(table, keys: list[SortKey]) -> list:
    return [k.expression(table).desc().nulls_first() if k.descending else k.expression(table).asc().nulls_last() for k in keys]


def _beyond(column, value, descending: bool):
    """``column`` strictly past ``value``; booleans order false before true."""
    if isinstance(value, bool):
        if value is descending:
            return column == (not value)
        return false()
    return column < value if descending else column > value


def after_clause(table, keys: list[SortKey], values: list[Any]):
    """Rows strictly after ``values`` in the order of ``keys``."""
    clause = false()
    for key, value in reversed(list(zip(keys, values))):
        column, value = key.expression(table), key.comparable(value)
        if key.descending:
            clause = or_(column.is_not(None), and_(column.is_(None), clause)) if value is None else or_(_beyond(column, value, True), and_(column == value, clause))
        else:
            clause = and_(column.is_(None), clause) if value is None else or_(_beyond(column, value, False), column.is_(None), and_(column == value, clause))
    return clause


def encode_cursor(keys: list[SortKey], record: dict[str, Any]) -> str:
    values = [k.field.field_type.dump(k.field, record.get(k.column_name)) for k in keys]
    raw = json.dumps([[k.column_name, "d" if k.descending else "a"] for k in keys] + [values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(keys: list[SortKey], cursor: str) -> list[Any]:
    """The sort values in ``cursor``; refused when it was made for another order."""
    bad = ValidationFailed("The cursor is not valid for this query.", errors=[
        FieldError("INVALID_CURSOR", "after", "is not a cursor returned by this query with the same order")])
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        *shape, values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, TypeError, AttributeError):
        raise bad from None
    if shape != [[k.column_name, "d" if k.descending else "a"] for k in keys] or not isinstance(values, list) or len(values) != len(keys):
        raise bad
    decoded = []
    for key, value in zip(keys, values):
        if value is None:
            decoded.append(None)
            continue
        field_type = key.field.field_type
        if not Draft202012Validator(field_type.filter_value_schema(key.field, "eq")).is_valid(value):
            raise bad
        try:
            decoded.append(field_type.coercer(key.field)(value))
        except ValueProblem:
            raise bad from None
    return decoded
