"""Compiles a filter tree into one SQL predicate.

A filter is a mapping: ``and`` / ``or`` (lists of filters), ``not`` (a filter), or a field name
mapped to operators (``{"amount": {"gte": 100}}``). A lookup field also takes the related object's
filter (``{"account": {"industry": {"eq": "energy"}}}``), compiled to ``IN (SELECT id ...)`` with
the related object's own row filter, so a filter never reaches records the caller cannot read.
A geolocation field takes areas (``{"location": {"within_radius": {"latitude": 52.5, "longitude":
13.4, "meters": 500}}}``), parsed and compiled by :mod:`lowcode.runtime.geo`.
"""
from __future__ import annotations

from typing import Any, Callable

from jsonschema import Draft202012Validator
from sqlalchemy import Table, and_, case, literal, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.catalog import Catalog
from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.errors import FieldError, ValidationFailed
from ..metadata.fieldtypes import ValueProblem
from ..metadata.fieldtypes.base import LIST_OPERATORS
from .computed import not_in_sql
from .geo import AREAS

MAX_DEPTH = 8
MAX_LIST = 1000
MAX_PATTERN = 1000
"""Longest text a ``contains``/``starts_with`` filter searches for (SQLite refuses LIKE patterns past 50,000 bytes)."""
BOOLEAN_KEYS = ("and", "or", "not")

RowFilter = Callable[[ObjectDef, Table], ColumnElement[bool]]
HiddenFields = Callable[[ObjectDef], frozenset[str]]


def nothing_hidden(obj: ObjectDef) -> frozenset[str]:
    return frozenset()


class FilterCompiler:
    """Turns one caller's filter into SQL; collects every problem before raising."""

    def __init__(self, catalog: Catalog, row_filter: RowFilter, hidden: HiddenFields = nothing_hidden):
        self.catalog = catalog
        self.row_filter = row_filter
        self.hidden = hidden
        self.errors: list[FieldError] = []

    def compile(self, obj: ObjectDef, spec: Any, path: str = "filter") -> ColumnElement[bool]:
        clause = self._node(obj, self.catalog.table(obj.api_name), spec, path, 0)
        if self.errors:
            raise ValidationFailed("The filter has problems; fix the listed parts.", errors=self.errors)
        return clause

    def _fail(self, code: str, path: str, message: str) -> ColumnElement[bool]:
        self.errors.append(FieldError(code, path, message))
        return true()

    def _node(self, obj: ObjectDef, table: Table, spec: Any, path: str, depth: int) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            return self._fail("TOO_DEEP", path, f"filters may nest at most {MAX_DEPTH} levels")
        if not isinstance(spec, dict):
            return self._fail("INVALID_TYPE", path, "must be an object of field names and operators")
        clauses = []
        for key, value in spec.items():
            at = f"{path}.{key}"
            if key in ("and", "or"):
                if not isinstance(value, list):
                    clauses.append(self._fail("INVALID_TYPE", at, "must be a list of filters"))
                    continue
                parts = [self._node(obj, table, item, f"{at}.{i}", depth + 1) for i, item in enumerate(value)]
                if not parts:
                    continue
                clauses.append(and_(*parts) if key == "and" else or_(*parts))
            elif key == "not":
                clauses.append(_complement(self._node(obj, table, value, at, depth + 1)))
            else:
                field = obj.field(key)
                if field is None:
                    clauses.append(self._fail("UNKNOWN_FIELD", at, f"'{obj.api_name}' has no field named '{key}'"))
                elif key in self.hidden(obj):
                    clauses.append(self._fail("FORBIDDEN", at, f"you may not read '{obj.api_name}.{key}', so you may not filter on it"))
                else:
                    clauses.append(self._field(obj, table, field, value, at, depth))
        return and_(true(), *clauses) if clauses else true()

    def _field(self, obj: ObjectDef, table: Table, field: FieldDef, spec: Any, path: str, depth: int) -> ColumnElement[bool]:
        if not isinstance(spec, dict) or not spec:
            return self._fail("INVALID_TYPE", path, "must map operators to values, such as {\"eq\": ...}")
        field_type = field.field_type
        columns = field_type.selectable(field, table)
        if columns is None:
            return self._fail("NOT_FILTERABLE", path, not_in_sql(field))
        column = columns[0] if len(columns) == 1 else tuple(columns)
        clauses = []
        related: dict[str, Any] = {}
        for op, value in spec.items():
            at = f"{path}.{op}"
            if op not in field_type.operators_for(field):
                if field.target and op not in _ALL_OPS:
                    related[op] = value
                    continue
                allowed = ", ".join(sorted(field_type.operators_for(field)))
                clauses.append(self._fail("UNSUPPORTED_OPERATOR", at, f"a {field.type} field allows only: {allowed}"))
                continue
            coerced = self._value(field, op, value, at)
            if coerced is not _INVALID:
                clauses.append(field_type.filter_clause(field, column, op, coerced))
        if related:
            target = self.catalog.objects.get(field.target)
            if target is None:
                return self._fail("UNKNOWN_TARGET", path, f"the target '{field.target}' of this lookup does not exist")
            target_table = self.catalog.table(target.api_name)
            inner = self._node(target, target_table, related, path, depth + 1)
            subquery = select(target_table.c.id).where(
                target_table.c.deleted_at.is_(None), self.row_filter(target, target_table), inner,
            )
            clauses.append(column.in_(subquery))
        return and_(*clauses) if clauses else true()

    def _value(self, field: FieldDef, op: str, value: Any, path: str) -> Any:
        if any(isinstance(v, str) and "\x00" in v for v in (value if isinstance(value, list) else [value])):
            self.errors.append(FieldError("INVALID_CHARACTER", path, "may not contain the NUL character"))
            return _INVALID
        if op in AREAS:
            area, problems = AREAS[op](value, path)
            self.errors.extend(problems)
            return _INVALID if area is None else area
        validator = self.catalog.memo(("filter-schema", field.type, id(field), op),
                                      lambda: Draft202012Validator(field.field_type.filter_value_schema(field, op)))
        if op not in ("eq", "ne", "is_null") or value is not None:
            error = next(iter(validator.iter_errors(value)), None)
            if error is not None:
                self.errors.append(FieldError("INVALID_VALUE", path, f"is not a valid value for '{op}' on a {field.type} field: {error.message}"))
                return _INVALID
        if op in ("contains", "starts_with") and isinstance(value, str) and len(value) > MAX_PATTERN:
            self.errors.append(FieldError("TOO_LONG", path, f"may be at most {MAX_PATTERN} characters"))
            return _INVALID
        if op in LIST_OPERATORS and len(value) > MAX_LIST:
            self.errors.append(FieldError("TOO_MANY", path, f"may list at most {MAX_LIST} values"))
            return _INVALID
        if op in ("is_null", "contains", "starts_with") or value is None or field.type == "multi_picklist":
            return value
        coerce = self.catalog.memo(("coercer", id(field)), lambda: field.field_type.coercer(field))
        try:
            return [coerce(v) for v in value] if op in LIST_OPERATORS else coerce(value)
        except ValueProblem as problem:
            self.errors.append(FieldError(problem.code, path, problem.message))
            return _INVALID


def _complement(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """Every row the clause does not keep, including rows where it is unknown (null columns)."""
    return case((clause, literal(1)), else_=literal(0)) == 0


_INVALID = object()
_ALL_OPS = frozenset({"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "contains", "starts_with", "is_null", *AREAS})
