"""Grouped aggregates: the count, sums, averages and extremes of the records a query would return,
per group of field values or date periods, compiled to one ``GROUP BY`` statement.

The record service supplies the ``where`` clause of its queries (live rows, the actor's row filter,
the compiled filter), so an aggregate never counts a record that query would not return. Backend
differences (date periods, SQLite's integer-unit decimals) stay in this module.

Values come back exact: sums of integers as ``int``; sums, minima and maxima of decimals as
``Decimal`` at the field's scale; averages as ``Decimal`` (sum / count, computed in Python from the
exact sum) rounded half-up to the field's scale plus :data:`AVG_EXTRA_PLACES` places, so an average
never depends on a backend's floating point.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Callable, Mapping

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Connection,
    Date,
    Integer,
    Table,
    cast,
    func,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.errors import FieldError, ValidationFailed
from ..metadata.graphql_names import DATE_GRANULARITIES
from .computed import not_in_sql

MAX_GROUPS = 1000
MEASURE_FUNCTIONS = ("sum", "avg", "min", "max")
NUMERIC_TYPES = frozenset({"integer", "decimal", "currency", "percent"})
TEMPORAL_TYPES = frozenset({"date", "datetime"})
MEASURABLE = {"sum": NUMERIC_TYPES, "avg": NUMERIC_TYPES, "min": NUMERIC_TYPES | TEMPORAL_TYPES, "max": NUMERIC_TYPES | TEMPORAL_TYPES}
AVG_EXTRA_PLACES = 4

_SPLIT = 10**9
"""SQLite sums 64-bit integers and fails on overflow, and a decimal's units reach 10**18: it sums
``units / _SPLIT`` and ``units % _SPLIT`` apart, and Python joins the two exactly."""
_WIDE = Context(prec=100, rounding=ROUND_HALF_UP)


def groupable(field: FieldDef) -> bool:
    """Values that order can also be grouped (long text, JSON, points and multi-picklists cannot)."""
    return field.value.field_type.sortable and field.field_type.in_sql(field)


@dataclass(frozen=True)
class GroupKey:
    field: FieldDef
    granularity: str | None
    """The period of a date or datetime field; ``None`` groups by the exact value."""


@dataclass(frozen=True)
class Measure:
    function: str
    field: FieldDef


@dataclass(frozen=True)
class AggregateSpec:
    keys: tuple[GroupKey, ...]
    measures: tuple[Measure, ...]

    def measured(self, name: str) -> FieldDef:
        return next(m.field for m in self.measures if m.field.api_name == name)


def parse_aggregate(obj: ObjectDef, group_by: Any, measures: Any, hidden: frozenset[str] = frozenset()) -> AggregateSpec:
    """The checked request; every problem of ``group_by`` and ``measures`` is raised at once.
    Fields in ``hidden`` (the caller may not read them) may be neither grouped by nor measured."""
    errors: list[FieldError] = []
    spec = AggregateSpec(tuple(_group_keys(obj, group_by, errors, hidden)), tuple(_measures(obj, measures, errors, hidden)))
    if errors:
        raise ValidationFailed("The aggregate has problems; fix the listed parts.", errors=errors)
    return spec


def _group_keys(obj: ObjectDef, group_by: Any, errors: list[FieldError], hidden: frozenset[str]) -> list[GroupKey]:
    if group_by is None:
        return []
    if not isinstance(group_by, list):
        errors.append(FieldError("INVALID_TYPE", "group_by", "must be a list of {field, granularity}"))
        return []
    keys: list[GroupKey] = []
    seen: set[str] = set()
    for i, item in enumerate(group_by):
        at = f"group_by.{i}"
        if not isinstance(item, dict) or not isinstance(item.get("field"), str) or set(item) - {"field", "granularity"}:
            errors.append(FieldError("INVALID_TYPE", at, "must be {field, granularity}, granularity optional"))
            continue
        name, granularity = item["field"], item.get("granularity")
        field = obj.field(name)
        if field is None:
            errors.append(FieldError("UNKNOWN_FIELD", f"{at}.field", f"'{obj.api_name}' has no field named '{name}'"))
            continue
        if name in hidden:
            errors.append(FieldError("FORBIDDEN", f"{at}.field", f"you may not read '{obj.api_name}.{name}', so you may not group by it"))
            continue
        if not groupable(field):
            reason = f"a {field.value_type} field cannot be grouped by" if field.field_type.in_sql(field) else not_in_sql(field)
            errors.append(FieldError("NOT_GROUPABLE", f"{at}.field", reason))
            continue
        if name in seen:
            errors.append(FieldError("DUPLICATE", f"{at}.field", f"'{name}' is already grouped by"))
            continue
        seen.add(name)
        temporal = field.value_type in TEMPORAL_TYPES
        if granularity is not None and not (temporal and granularity in DATE_GRANULARITIES):
            allowed = ", ".join(DATE_GRANULARITIES)
            message = f"must be one of {allowed}" if temporal else f"applies only to date and datetime fields, not to a {field.type} field"
            errors.append(FieldError("INVALID_VALUE", f"{at}.granularity", message))
            continue
        keys.append(GroupKey(field, (granularity or "day") if temporal else None))
    return keys


def _measures(obj: ObjectDef, measures: Any, errors: list[FieldError], hidden: frozenset[str]) -> list[Measure]:
    if measures is None:
        return []
    if not isinstance(measures, list):
        errors.append(FieldError("INVALID_TYPE", "measures", "must be a list of (function, field) pairs"))
        return []
    found: list[Measure] = []
    for i, item in enumerate(measures):
        at = f"measures.{i}"
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not all(isinstance(part, str) for part in item):
            errors.append(FieldError("INVALID_TYPE", at, "must be a (function, field) pair"))
            continue
        function, name = item
        field = obj.field(name)
        if field is None:
            errors.append(FieldError("UNKNOWN_FIELD", at, f"'{obj.api_name}' has no field named '{name}'"))
        elif name in hidden:
            errors.append(FieldError("FORBIDDEN", at, f"you may not read '{obj.api_name}.{name}', so you may not measure it"))
        elif function not in MEASURABLE:
            errors.append(FieldError("NOT_AGGREGATABLE", at, f"'{function}' is not one of {', '.join(MEASURE_FUNCTIONS)} (the count is always returned)"))
        elif field.value_type not in MEASURABLE[function]:
            errors.append(FieldError("NOT_AGGREGATABLE", at, f"{function} does not apply to a {field.value_type} field"))
        elif not field.field_type.in_sql(field):
            errors.append(FieldError("NOT_AGGREGATABLE", at, not_in_sql(field)))
        elif (measure := Measure(function, field)) not in found:
            found.append(measure)
    return found


def run_aggregate(conn: Connection, table: Table, where: ColumnElement[bool], spec: AggregateSpec) -> list[dict[str, Any]]:
    """``[{"key": {field: value}, "count": n, "sum": {...}, "avg": {...}, "min": {...}, "max": {...}}]``,
    ordered by the keys ascending, nulls last.

    The keys are computed in a subquery and grouped by its columns, so a period expression (and
    its bound parameters) appears once in the statement.
    """
    sqlite = conn.dialect.name == "sqlite"
    measured = list(dict.fromkeys(m.field.api_name for m in spec.measures))
    selected = [
        *(_key_expression(_column(table, k.field), k, sqlite).label(f"k{i}") for i, k in enumerate(spec.keys)),
        *(_column(table, spec.measured(name)).label(f"v{j}") for j, name in enumerate(measured)),
    ]
    inner = select(*selected or [table.c.id]).where(where).subquery()
    keys = [inner.c[f"k{i}"] for i in range(len(spec.keys))]
    readers: list[tuple[Measure, Callable[[Mapping], Any]]] = []
    measure_columns = []
    for n, measure in enumerate(spec.measures):
        columns, read = _measure(measure, inner.c[f"v{measured.index(measure.field.api_name)}"], sqlite, f"m{n}")
        measure_columns.extend(columns)
        readers.append((measure, read))
    statement = (
        select(*keys, func.count().label("count"), *measure_columns).select_from(inner)
        .group_by(*keys).order_by(*(k.asc().nulls_last() for k in keys)).limit(MAX_GROUPS + 1)
    )
    rows = conn.execute(statement).mappings().all()
    if len(rows) > MAX_GROUPS:
        raise ValidationFailed.of([FieldError("TOO_MANY_GROUPS", "group_by", f"more than {MAX_GROUPS} groups; group more coarsely or filter")])
    groups = []
    for row in rows:
        group: dict[str, Any] = {"key": {}, "count": row["count"], "sum": {}, "avg": {}, "min": {}, "max": {}}
        for i, key in enumerate(spec.keys):
            group["key"][key.field.api_name] = _key_value(key, row[f"k{i}"])
        for measure, read in readers:
            group[measure.function][measure.field.api_name] = read(row)
        groups.append(group)
    return groups


def _key_expression(column, key: GroupKey, sqlite: bool) -> ColumnElement:
    """The column itself, or the first day of its period (a ``date``; datetimes in UTC)."""
    if key.granularity is None or (key.field.value_type == "date" and key.granularity == "day"):
        return column
    if sqlite:
        return func.date(column, *_sqlite_period_modifiers(column, key.granularity), type_=Date)
    instant = func.timezone("UTC", column) if key.field.value_type == "datetime" else cast(column, TIMESTAMP)
    return cast(func.date_trunc(key.granularity, instant), Date)


def _sqlite_period_modifiers(column, granularity: str) -> list:
    """Modifiers of SQLite's ``date()`` moving a stored (UTC) value to its period's first day."""
    if granularity == "day":
        return []
    if granularity == "year":
        return ["start of year"]
    if granularity == "month":
        return ["start of month"]
    months_into_quarter = (cast(func.strftime("%m", column), Integer) - 1) % 3
    return ["start of month", func.printf("-%d months", months_into_quarter)]


def _column(table: Table, field: FieldDef):
    return field.field_type.selectable(field, table)[0]


def _key_value(key: GroupKey, value: Any) -> Any:
    if key.granularity is not None:
        return value
    return key.field.field_type.from_row(key.field, {key.field.api_name: value})


def _measure(measure: Measure, value, sqlite: bool, label: str) -> tuple[list, Callable[[Mapping], Any]]:
    """The select columns of one measure, and how to read its result from a row."""
    field = measure.field
    if measure.function in ("min", "max"):
        extreme = func.min if measure.function == "min" else func.max
        return [extreme(value, type_=value.type).label(label)], lambda row: row[label]
    parts = _sum_parts(value, sqlite)
    columns = [part.label(f"{label}_{n}") for n, part in enumerate(parts)]
    if measure.function == "avg":
        columns.append(func.count(value).label(f"{label}_count"))

    def read(row: Mapping) -> Any:
        total = _exact_total(field, [row[f"{label}_{n}"] for n in range(len(parts))], sqlite)
        if total is None:
            return None
        if measure.function == "avg":
            places = Decimal(1).scaleb(-(_scale(field) + AVG_EXTRA_PLACES))
            return _WIDE.divide(total, row[f"{label}_count"]).quantize(places, context=_WIDE)
        return int(total) if field.value_type == "integer" else total

    return columns, read


def _sum_parts(value, sqlite: bool) -> list:
    """The sums :func:`_exact_total` joins; on SQLite with its own truncating integer ``/`` and ``%``."""
    if not sqlite:
        return [func.sum(value)]
    units = type_coerce(value, BigInteger)
    return [func.sum(units.op("/")(_SPLIT)), func.sum(units.op("%")(_SPLIT))]


def _exact_total(field: FieldDef, parts: list, sqlite: bool) -> Decimal | None:
    """The sum at the field's scale; ``None`` when no record held a value."""
    if parts[0] is None:
        return None
    if sqlite:
        total = _WIDE.scaleb(Decimal(parts[0] * _SPLIT + parts[1]), -_scale(field))
    else:
        total = Decimal(parts[0])
    return total.quantize(Decimal(1).scaleb(-_scale(field)), context=_WIDE)


def _scale(field: FieldDef) -> int:
    return 0 if field.value_type == "integer" else field.value.options["scale"]
