"""Reading a tree of records in a number of statements fixed by the tree's shape.

A :class:`Selection` names the fields to read, the to-one relations to follow (joined into the
same statement, each with the target's row filter in the join condition, so a record the caller
may not see reads as null) and the to-many relations (one statement per relation and level: the
children of every parent at once, ``first`` of them per parent through a window function).
Transports build selections from what their callers ask for; nothing here knows about them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Connection, Table, and_, func, select, true
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.catalog import Catalog
from ..metadata.definitions import ObjectDef
from ..metadata.fieldtypes.base import FieldType
from .computed import compute, selectables
from .filters import FilterCompiler, HiddenFields, nothing_hidden
from .paging import (
    SortKey,
    after_clause,
    decode_cursor,
    encode_cursor,
    order_clauses,
    parse_order,
)

Scope = Callable[[ObjectDef, Any], ColumnElement[bool]]


@dataclass
class Selection:
    """What to read of each record of one object."""

    fields: list[str] = field(default_factory=list)
    relations: dict[str, tuple[str, "Selection"]] = field(default_factory=dict)
    """Key in the result -> (lookup field, what to read of the related record)."""
    children: dict[str, "Children"] = field(default_factory=dict)
    """Key in the result -> records of another object pointing at this one."""


@dataclass
class Window:
    """Which records of a list: filter, order, page."""

    filter: dict | None = None
    order_by: list[str] | None = None
    first: int = 50
    after: str | None = None
    total: bool = False
    deleted: bool = False


@dataclass
class Children:
    object: str
    field: str
    """The child's lookup or master-detail field pointing at the parent."""
    window: Window
    selection: Selection


class Branch:
    """A page of records: the records in order, a cursor each, more after them, and the total.

    Cursors are encoded on first use: most pages are read without them.
    """

    __slots__ = ("records", "has_next_page", "total_count", "_keys", "_positions", "_cursors")

    def __init__(self, records: list[dict[str, Any]], keys: list[SortKey], has_next_page: bool, total_count: int | None = None):
        self.records = records
        self.has_next_page = has_next_page
        self.total_count = total_count
        self._keys = keys
        self._positions = [tuple(r.get(k.column_name) for k in keys) for r in records]
        self._cursors: list[str | None] | None = None

    def cursor(self, index: int) -> str:
        if self._cursors is None:
            self._cursors = [None] * len(self.records)
        found = self._cursors[index]
        if found is None:
            keys = self._keys
            found = self._cursors[index] = encode_cursor(keys, dict(zip((k.column_name for k in keys), self._positions[index])))
        return found

    @property
    def cursors(self) -> list[str]:
        return [self.cursor(i) for i in range(len(self.records))]

    @property
    def end_cursor(self) -> str | None:
        return self.cursor(len(self.records) - 1) if self.records else None

    def __repr__(self) -> str:
        return f"<Branch {len(self.records)} records, has_next_page={self.has_next_page}, total_count={self.total_count}>"


class TreeReader:
    """Runs one selection tree on one connection, Catalog and permission scope."""

    def __init__(self, conn: Connection, catalog: Catalog, scope: Scope, hidden: HiddenFields = nothing_hidden):
        self.conn = conn
        self.catalog = catalog
        self.scope = scope
        self.hidden = hidden

    # -- entry points ----------------------------------------------------------------------
    def page(self, obj: ObjectDef, window: Window, selection: Selection, extra: ColumnElement[bool] | None = None) -> Branch:
        table = self.catalog.table(obj.api_name)
        keys = parse_order(obj, window.order_by, self.hidden(obj))
        where = and_(self._alive(table, window.deleted), self.scope(obj, table), self._filter(obj, window.filter),
                     true() if extra is None else extra)
        page_where = where if window.after is None else and_(where, after_clause(table, keys, decode_cursor(keys, window.after)))
        rows = self._fetch(obj, table, selection, keys, page_where, limit=window.first + 1)
        records = rows[:window.first]
        total = None
        if window.total:
            total = self.conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
        branch = Branch(records, keys, len(rows) > window.first, total)
        self._descend(obj, selection, records)
        self._strip(records, selection, keys)
        return branch

    def by_ids(self, obj: ObjectDef, ids: list[str], selection: Selection, deleted: bool = False) -> dict[str, dict[str, Any]]:
        """The visible records among ``ids``, by id."""
        table = self.catalog.table(obj.api_name)
        where = and_(table.c.id.in_(ids), self._alive(table, deleted), self.scope(obj, table))
        records = self._fetch(obj, table, selection, [], where, limit=None)
        self._descend(obj, selection, records)
        return {r["id"]: r for r in records}

    # -- one statement ---------------------------------------------------------------------
    def _fetch(self, obj, table, selection, keys: list[SortKey], where, *, limit: int | None,
               partition: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``obj`` with their to-one relations joined; ``partition`` limits per parent."""
        columns: list = []
        joined, shape = self._join(obj, table, table, selection, [k.column_name for k in keys], columns, "r")
        query = select(*columns).select_from(joined).where(where)
        if partition is not None:
            rank = func.row_number().over(partition_by=table.c[partition], order_by=order_clauses(table, keys)).label("rank__")
            inner = query.add_columns(rank).subquery()
            query = select(*[inner.c[c.key] for c in columns]).where(inner.c["rank__"] <= limit).order_by(
                inner.c[f"r_{partition}"], inner.c["rank__"])
        else:
            if keys:
                query = query.order_by(*order_clauses(table, keys))
            if limit is not None:
                query = query.limit(limit)
        return [shape.record(row) for row in self.conn.execute(query).all()]

    def _join(self, obj, table, joined, selection, extra_fields, columns, prefix) -> tuple[Any, "_Shape"]:
        """Add ``selection``'s columns (labelled under ``prefix``) and its joined relations."""
        names = dict.fromkeys(["id", *selection.fields, *extra_fields])
        shape = _Shape(len(columns))
        for name, field_def, sql in selectables(obj, table, names):
            if sql is None:
                shape.computed.append(field_def)
                continue
            positions = {}
            for column_name, column in zip(field_def.field_type.column_names(field_def), sql):
                positions[column_name] = len(columns)
                columns.append(column.label(f"{prefix}_{column_name}"))
            shape.add(field_def, positions, fetched_only=name not in names)
        for index, (key, (lookup, sub)) in enumerate(selection.relations.items()):
            target = self.catalog.object(obj.fields_by_name[lookup].target)
            name = f"{prefix}{index}"
            alias = self.catalog.memo(("alias", target.api_name, name), lambda: self.catalog.table(target.api_name).alias(name))
            joined = joined.outerjoin(alias, and_(
                alias.c.id == table.c[lookup], alias.c.deleted_at.is_(None), self.scope(target, alias)))
            joined, inner = self._join(target, alias, joined, sub, [], columns, f"{prefix}{index}")
            shape.relations.append((key, inner))
        return joined, shape

    # -- to-many -----------------------------------------------------------------------------
    def _descend(self, obj: ObjectDef, selection: Selection, records: list[dict[str, Any]]) -> None:
        """Fill every to-many relation of ``records`` (and of their joined relations)."""
        for key, children in selection.children.items():
            self._children(key, children, records)
        for key, (lookup, sub) in selection.relations.items():
            if sub.children or sub.relations:
                target = self.catalog.object(obj.field(lookup).target)
                related = [r[key] for r in records if r.get(key) is not None]
                self._descend(target, sub, related)

    def _children(self, key: str, spec: Children, parents: list[dict[str, Any]]) -> None:
        child = self.catalog.object(spec.object)
        window = spec.window
        parent_ids = list(dict.fromkeys(p["id"] for p in parents))
        if not parent_ids:
            return
        table = self.catalog.table(child.api_name)
        keys = parse_order(child, window.order_by, self.hidden(child))
        link = table.c[spec.field]
        where = and_(link.in_(parent_ids), self._alive(table, window.deleted), self.scope(child, table),
                     self._filter(child, window.filter))
        page_where = where if window.after is None else and_(where, after_clause(table, keys, decode_cursor(keys, window.after)))
        selection = spec.selection
        wanted = Selection([*selection.fields, spec.field], selection.relations, selection.children)
        rows = self._fetch(child, table, wanted, keys, page_where, limit=window.first + 1, partition=spec.field)
        totals: dict[str, int] = {}
        if window.total:
            totals = dict(self.conn.execute(select(link, func.count()).where(where).group_by(link)).all())
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(row[spec.field], []).append(row)
        kept = []
        for parent in parents:
            found = grouped.get(parent["id"], [])
            page = found[:window.first]
            kept.extend(page)
            parent[key] = Branch(page, keys, len(found) > window.first,
                                 totals.get(parent["id"], 0) if window.total else None)
        unique = list({id(r): r for r in kept}.values())
        self._descend(child, selection, unique)
        self._strip(unique, wanted, keys, keep=selection.fields)

    # -- helpers ---------------------------------------------------------------------------
    def _filter(self, obj: ObjectDef, spec: dict | None) -> ColumnElement[bool]:
        if not spec:
            return true()
        return FilterCompiler(self.catalog, self.scope, self.hidden).compile(obj, spec)

    @staticmethod
    def _alive(table: Table, deleted: bool) -> ColumnElement[bool]:
        return table.c.deleted_at.is_not(None) if deleted else table.c.deleted_at.is_(None)

    @staticmethod
    def _strip(records: list[dict[str, Any]], selection: Selection, keys: list[SortKey], keep: list[str] | None = None) -> None:
        """Drop values read only to order or link records, once the cursors are made."""
        wanted = set(keep if keep is not None else selection.fields) | {"id"}
        extra = {k.column_name for k in keys} | set(selection.fields)
        extra -= wanted
        if extra:
            for record in records:
                for name in extra:
                    record.pop(name, None)


class _Shape:
    """How one record (and its joined relations) is read from positions of a result row."""

    __slots__ = ("id_position", "plain", "special", "relations", "computed", "inputs_only")

    def __init__(self, id_position: int):
        self.id_position = id_position
        self.plain: list[tuple[str, int]] = []
        self.special: list[tuple[Any, dict[str, int]]] = []
        self.relations: list[tuple[str, _Shape]] = []
        self.computed: list[Any] = []
        """Formulas computed after reading, from fields read along."""
        self.inputs_only: list[str] = []
        """Fields read only as inputs of those formulas."""

    def add(self, field_def, positions: dict[str, int], *, fetched_only: bool = False) -> None:
        if type(field_def.field_type).from_row is FieldType.from_row:
            self.plain.append((field_def.api_name, positions[field_def.api_name]))
        else:
            self.special.append((field_def, positions))
        if fetched_only:
            self.inputs_only.append(field_def.api_name)

    def record(self, row) -> dict[str, Any]:
        record = {name: row[position] for name, position in self.plain}
        for field_def, positions in self.special:
            record[field_def.api_name] = field_def.field_type.from_row(field_def, {c: row[p] for c, p in positions.items()})
        for field_def in self.computed:
            record[field_def.api_name] = compute(field_def, record)
        for name in self.inputs_only:
            del record[name]
        for key, shape in self.relations:
            record[key] = None if row[shape.id_position] is None else shape.record(row)
        return record
