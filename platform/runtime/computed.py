"""Formula values computed after reading: formulas outside the part of CEL that translates into SQL.

The reader fetches the fields such a formula reads along with the record, evaluates the formula
with CEL, and drops what it fetched only for it. A formula that cannot be evaluated for a record
(a null where a number is needed, a division by zero) is null for that record.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterator

from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.expressions import compile_expression, referenced_fields


def cel_value(value: Any) -> Any:
    """A record value as CEL sees it: decimals as doubles, dates as timestamps at midnight UTC."""
    if isinstance(value, dict):
        return {k: cel_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cel_value(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(), timezone.utc)
    return value


@lru_cache(maxsize=1024)
def _program(source: str):
    return compile_expression(source)


@lru_cache(maxsize=1024)
def formula_inputs(source: str) -> tuple[str, ...]:
    """The fields a formula reads."""
    return tuple(sorted(referenced_fields(source)))


def compute(field: FieldDef, record: dict[str, Any]) -> Any:
    """The formula's value for ``record`` (which holds at least the fields it reads)."""
    source = field.options["expression"]
    context = {"record": {name: cel_value(record.get(name)) for name in formula_inputs(source)},
               "now": datetime.now(timezone.utc)}
    try:
        value = _program(source).execute(context)
    except Exception:  # any failure of the expression counts as no value
        return None
    return field.field_type.convert(field, value)


def selectables(obj: ObjectDef, table, names) -> Iterator[tuple[str, FieldDef, list | None]]:
    """``(name, field, SQL)`` for each of ``names``, SQL ``None`` for formulas computed after
    reading; followed by the inputs those formulas need that ``names`` lacks."""
    later: list[FieldDef] = []
    for name in names:
        field = obj.fields_by_name[name]
        sql = field.field_type.selectable(field, table)
        if sql is None:
            later.append(field)
        yield name, field, sql
    extra = {i: None for field in later for i in formula_inputs(field.options["expression"])
             if i not in names and obj.field(i) is not None and not obj.field(i).field_type.computed}
    for name in extra:
        field = obj.fields_by_name[name]
        yield name, field, field.field_type.selectable(field, table)


def not_in_sql(field: FieldDef) -> str:
    """Why a query cannot filter, sort or group on ``field``."""
    because = field.options.get("not_in_sql_because")
    return (f"the formula is computed after reading{f' ({because})' if because else ''}, "
            "so it cannot be filtered, sorted, grouped or measured")
