"""The record service: the one door through which every record is read and written.

Every operation runs the same steps on one Catalog snapshot and one transaction: authorize, check
and coerce the input (JSON Schema, field coercers), check against the database (unique values,
lookup targets), write, and record history. Nothing is written when any step fails, and every
problem of every row is reported at once.
"""
from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.sql.elements import True_

from ..metadata import store
from ..metadata.actors import Actor
from ..metadata.booking_rules import guard_name
from ..metadata.catalog import Catalog, CatalogCache
from ..metadata.database import WRITE, is_sqlite
from ..metadata.definitions import ObjectDef
from ..metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InUse,
    NotFound,
    ValidationFailed,
)
from ..metadata.fieldtypes import ValueProblem
from ..metadata.fieldtypes.lookup import normalize_id
from ..metadata.names import constraint_name
from ..metadata.versions import read_stored_version
from . import rollups
from .access import AccessPolicy, FieldAccess, OpenAccess
from .aggregates import parse_aggregate, run_aggregate
from .automation import AutomationSteps
from .bookings import booking_rule, free_predicate, occupancy, overlap_problems, period
from .clock import Clock, SystemClock
from .computed import compute, selectables
from .filters import FilterCompiler
from .funnel import conversions, funnel_request, funnel_rows
from .geo import grid_cells, grid_request
from .history import tracked_changes, write_history
from .numbering import assign_numbers
from .paging import (
    after_clause,
    decode_cursor,
    encode_cursor,
    order_clauses,
    parse_order,
)
from .processes import StageMove, due_predicate, record_moves, settle, stage_history
from .reading import Branch, Children, Selection, TreeReader, Window
from .rules import SaveContext, SaveHooks, layout_problems, rule_problems
from .validation import RecordValidator
from .write_transactions import lost_race

MAX_PAGE_SIZE = 1000
OWNERSHIP_FIELDS = ("owner_id", "org_unit_id")
"""Set on create; changed afterwards only by a transfer."""
MAX_BULK_SIZE = 10_000
CHUNK = 500


@dataclass(frozen=True)
class Page:
    """One page of a query: records in order, a cursor per record, and where to go next."""

    records: list[dict[str, Any]]
    cursors: list[str]
    has_next_page: bool
    total_count: int | None = None

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


_id_lock = threading.Lock()
_id_clock = [0, 0]
"""The last millisecond used and the counter within it (UUIDv7 "method 1")."""


def new_record_id() -> str:
    """A time-ordered UUIDv7: ids made later by this process sort after earlier ones, even within
    one millisecond (a 12-bit counter follows the timestamp)."""
    with _id_lock:
        millis = max(time.time_ns() // 1_000_000, _id_clock[0])
        counter = _id_clock[1] + 1 if millis == _id_clock[0] else 0
        if counter > 0xFFF:
            millis, counter = millis + 1, 0
        _id_clock[0], _id_clock[1] = millis, counter
    tail = bytearray(os.urandom(8))
    tail[0] = (tail[0] & 0x3F) | 0x80
    raw = millis.to_bytes(6, "big") + (0x7000 | counter).to_bytes(2, "big") + bytes(tail)
    return str(uuid.UUID(bytes=raw))


def _chunks(values: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _constraint_error(obj: ObjectDef, exc: IntegrityError) -> ValidationFailed:
    """A constraint a concurrent writer won, found by its conventional name (never by the database's
    wording; SQLite's booking guard raises the name as its message)."""
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or ""
    for rule in obj.booking_rules:
        if guard_name(obj, rule) in (name, str(exc.orig)):
            return ValidationFailed.of([FieldError("OVERLAP", rule.start_field, rule.message, {"booking_rule": rule.api_name})])
    for field in obj.fields:
        if name == constraint_name("uq", obj.table_name, field.api_name):
            return ValidationFailed.of([FieldError("DUPLICATE_VALUE", field.api_name, "was just taken by another record; it must be unique")])
        if name == constraint_name("fk", obj.table_name, field.api_name):
            return ValidationFailed.of([FieldError("INVALID_REFERENCE", field.api_name, "refers to a record that no longer exists")])
    return ValidationFailed.of([FieldError("CONSTRAINT_VIOLATED", None, "a concurrent change conflicts with this write; retry it")])


@contextmanager
def _forbidden_uses() -> Iterator[None]:
    """Filtering, sorting or grouping on fields the caller may not read is FORBIDDEN, not invalid."""
    try:
        yield
    except ValidationFailed as failed:
        forbidden = [e for e in failed.errors if e.code == "FORBIDDEN"]
        if forbidden:
            raise Forbidden("The request uses fields you may not read; remove the listed parts.", errors=forbidden) from None
        raise


class RecordService:
    def __init__(self, engine: Engine, catalogs: CatalogCache, policy: AccessPolicy | None = None, clock: Clock | None = None):
        self.engine = engine
        self.clock = clock or SystemClock()
        """What "now" is for the times records are stamped with (a test's ManualClock, or the system's)."""
        self.catalogs = catalogs
        self.policy = policy or OpenAccess()
        self._pinned: Catalog | None = None
        self._connection: Connection | None = None
        self._transaction: Connection | None = None
        self.hooks = SaveHooks()
        self.automation = AutomationSteps()

    def at(self, catalog: Catalog, connection: Connection | None = None) -> "RecordService":
        """This service working on ``catalog`` (one request's snapshot) instead of the latest,
        reading through ``connection`` when given (one connection per request; writes still
        take their own transaction)."""
        pinned = copy.copy(self)
        pinned._pinned = catalog
        pinned._connection = connection
        return pinned

    def joined(self, conn: Connection) -> "RecordService":
        """This service writing inside ``conn``'s open transaction: part of a caller's larger
        change (the security service's), committed or rolled back by that caller."""
        joined = copy.copy(self)
        joined._transaction = conn
        return joined

    # -- plumbing ---------------------------------------------------------------------------
    def _catalog(self, conn: Connection) -> Catalog:
        if self._pinned is not None:
            return self._pinned
        if self._transaction is not None:
            return self.catalogs.at_version(conn, read_stored_version(conn))
        return self.catalogs.current(conn)

    @contextmanager
    def _reading(self) -> Iterator[tuple[Connection, Catalog]]:
        try:
            with _forbidden_uses():
                if self._transaction is not None:
                    yield self._transaction, self._catalog(self._transaction)
                    return
                if self._connection is not None:
                    try:
                        yield self._connection, self._catalog(self._connection)
                    finally:
                        self._connection.rollback()
                    return
                with self.engine.connect() as conn:
                    yield conn, self._catalog(conn)
        except DBAPIError as exc:
            self._refuse_if_stale(exc)
            raise

    @contextmanager
    def _writing(self) -> Iterator[tuple[Connection, Catalog]]:
        if self._transaction is not None:
            yield self._transaction, self._catalog(self._transaction)
            return
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                yield conn, self._catalog(conn)
        except OperationalError as exc:
            if lost_race(exc):
                raise Conflict("Another transaction held the same records; nothing was written, retry the request.") from None
            self._refuse_if_stale(exc)
            raise
        except DBAPIError as exc:
            self._refuse_if_stale(exc)
            raise

    def _refuse_if_stale(self, exc: DBAPIError) -> None:
        """A statement built from a pinned Catalog that metadata changes overtook fails as CONFLICT."""
        if self._pinned is None or isinstance(exc, IntegrityError):
            return
        with self.engine.connect() as conn:
            stored = self.catalogs.versions.read(conn)
        if stored != self._pinned.version:
            raise Conflict("The object's definition changed while this request ran; nothing was written, retry the request.",
                           metadata_version=stored) from None

    def _validator(self, catalog: Catalog, obj: ObjectDef) -> RecordValidator:
        return catalog.memo(("validator", obj.api_name), lambda: RecordValidator(obj))

    def _scope(self, actor: Actor, obj: ObjectDef, table: Table, action: str):
        return self.policy.row_filter(actor, obj, table, action)

    def _hidden(self, actor: Actor):
        return lambda obj: self.policy.field_access(actor, obj).hidden

    def field_access(self, actor: Actor, object_name: str) -> FieldAccess:
        """The fields of the object ``actor`` may not read or not write."""
        catalog = self._pinned if self._pinned is not None else self.catalogs.current()
        return self.policy.field_access(actor, catalog.object(object_name))

    def _object(self, catalog: Catalog, actor: Actor, object_name: str, action: str) -> tuple[ObjectDef, Table]:
        obj = catalog.object(object_name)
        self.policy.authorize(actor, obj, action)
        return obj, catalog.table(obj.api_name)

    def json_schema(self, object_name: str, *, creating: bool = True) -> dict[str, Any]:
        """The JSON Schema clients may use to validate input before sending it."""
        with self._reading() as (_, catalog):
            validator = self._validator(catalog, catalog.object(object_name))
            return validator.create_schema if creating else validator.update_schema

    # -- reading ----------------------------------------------------------------------------
    def get(self, actor: Actor, object_name: str, record_id: str, *, fields: list[str] | None = None, deleted: bool = False) -> dict[str, Any]:
        """One record; a missing record and one the actor may not see answer alike: NOT_FOUND."""
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            names = self._selection(obj, fields)
            hidden = self.policy.field_access(actor, obj).hidden
            row = conn.execute(
                select(*self._columns(obj, table, [n for n in names if n not in hidden])).where(
                    table.c.id == self._id_or_missing(obj, record_id), self._alive(table, deleted),
                    self._scope(actor, obj, table, "read"),
                )
            ).mappings().first()
            if row is None:
                raise self._missing(obj, record_id)
            return self._record(obj, row, names, hidden)

    def query(
        self, actor: Actor, object_name: str, *, filter: dict | None = None, order_by: list[str] | None = None,
        first: int = 50, after: str | None = None, fields: list[str] | None = None, total: bool = False,
        deleted: bool = False,
    ) -> Page:
        """A page of records matching ``filter`` in ``order_by`` order, after the ``after`` cursor.

        ``deleted=True`` lists the recycle bin instead of live records; ``total`` adds the count.
        """
        if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= MAX_PAGE_SIZE:
            raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "first", f"must be a whole number from 0 to {MAX_PAGE_SIZE}")])
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            names = self._selection(obj, fields)
            hidden = self.policy.field_access(actor, obj).hidden
            keys = parse_order(obj, order_by, hidden)
            compiler = FilterCompiler(catalog, lambda o, t: self._scope(actor, o, t, "read"), self._hidden(actor))
            where = and_(self._alive(table, deleted), self._scope(actor, obj, table, "read"),
                         compiler.compile(obj, filter) if filter else true())
            page_where = where if after is None else and_(where, after_clause(table, keys, decode_cursor(keys, after)))
            selected = list(dict.fromkeys([*names, *(k.column_name for k in keys)]))
            rows = conn.execute(
                select(*self._columns(obj, table, [n for n in selected if n not in hidden])).where(page_where)
                .order_by(*order_clauses(table, keys)).limit(first + 1)
            ).mappings().all()
            count = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one() if total else None
        records = [self._record(obj, row, selected, hidden) for row in rows[:first]]
        cursors = [encode_cursor(keys, r) for r in records]
        for record in records:
            for extra in set(selected) - set(names):
                record.pop(extra, None)
        return Page(records, cursors, len(rows) > first, count)

    def every(self, actor: Actor, object_name: str, **query: Any) -> list[dict[str, Any]]:
        """Every record :meth:`query` finds (same arguments but paging), read a page at a time."""
        found: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.query(actor, object_name, first=MAX_PAGE_SIZE, after=after, **query)
            found += page.records
            if not page.has_next_page:
                return found
            after = page.end_cursor

    def read_page(self, actor: Actor, object_name: str, window: Window, selection: Selection, *,
                  stage_due_within: int | None = None, now: datetime | None = None) -> Branch:
        """A page of records with their related records, in as many statements as the selection
        has levels of to-many relations (plus one per total asked for), whatever the row count.

        ``stage_due_within``: only records whose time in their stage runs out within that many
        days (0: overdue), as of ``now``.
        """
        self._check_first(window.first, "first")
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            selection = self._check_selection(catalog, actor, obj, selection, "selection")
            extra = None
            if stage_due_within is not None:
                if not isinstance(stage_due_within, int) or isinstance(stage_due_within, bool) or not 0 <= stage_due_within <= 3650:
                    raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "stage_due_within", "must be a whole number of days from 0 to 3650")])
                extra = due_predicate(obj, table, stage_due_within, now or self.clock.now())
            return self._reader(conn, catalog, actor).page(obj, window, selection, extra)

    def read_records(self, actor: Actor, object_name: str, record_ids: list[str], selection: Selection, *,
                     deleted: bool = False) -> list[dict[str, Any] | None]:
        """The records with these ids in that order, ``None`` for those missing or not visible."""
        with self._reading() as (conn, catalog):
            obj, _ = self._object(catalog, actor, object_name, "read")
            selection = self._check_selection(catalog, actor, obj, selection, "selection")
            ids = []
            for record_id in record_ids:
                try:
                    ids.append(normalize_id(record_id))
                except ValueProblem:
                    ids.append(None)
            wanted = [i for i in dict.fromkeys(ids) if i is not None]
            found = self._reader(conn, catalog, actor).by_ids(obj, wanted, selection, deleted) if wanted else {}
            return [found.get(i) for i in ids]

    def read_record(self, actor: Actor, object_name: str, record_id: str, selection: Selection, *, deleted: bool = False) -> dict[str, Any]:
        """One record with its related records; missing and not visible alike are NOT_FOUND."""
        record = self.read_records(actor, object_name, [record_id], selection, deleted=deleted)[0]
        if record is None:
            with self._reading() as (_, catalog):
                raise self._missing(catalog.object(object_name), record_id)
        return record

    def _reader(self, conn: Connection, catalog: Catalog, actor: Actor) -> TreeReader:
        return TreeReader(conn, catalog, lambda obj, table: self._scope(actor, obj, table, "read"), self._hidden(actor))

    def _check_selection(self, catalog: Catalog, actor: Actor, obj: ObjectDef, selection: Selection, path: str) -> Selection:
        """The selection without what ``actor`` may not read (those fields come back absent:
        transports report them); anything unknown is an error."""
        errors: list[FieldError] = []

        def visit(obj: ObjectDef, selection: Selection, path: str) -> Selection:
            hidden = self.policy.field_access(actor, obj).hidden
            visible = Selection([n for n in selection.fields if n not in hidden])
            for name in selection.fields:
                if obj.field(name) is None:
                    errors.append(FieldError("UNKNOWN_FIELD", f"{path}.fields", f"'{obj.api_name}' has no field named '{name}'"))
            for key, (lookup, sub) in selection.relations.items():
                field = obj.field(lookup)
                if field is None or not field.target or field.api_name == "id":
                    errors.append(FieldError("NOT_A_RELATION", f"{path}.{key}", f"'{obj.api_name}.{lookup}' is not a lookup"))
                elif lookup not in hidden:
                    visible.relations[key] = (lookup, visit(catalog.object(field.target), sub, f"{path}.{key}"))
            for key, children in selection.children.items():
                child = catalog.objects.get(children.object)
                field = child.field(children.field) if child else None
                if field is None or field.target != obj.api_name or field.system:
                    errors.append(FieldError("NOT_A_RELATION", f"{path}.{key}", f"'{children.object}.{children.field}' does not point at '{obj.api_name}'"))
                    continue
                try:
                    self._check_first(children.window.first, f"{path}.{key}.first")
                except ValidationFailed as failed:
                    errors.extend(failed.errors)
                sub = visit(child, children.selection, f"{path}.{key}")
                if field.api_name not in self.policy.field_access(actor, child).hidden:
                    visible.children[key] = Children(children.object, children.field, children.window, sub)
            return visible

        visible = visit(obj, selection, path)
        if errors:
            raise ValidationFailed("The selection has problems; fix the listed parts.", errors=errors)
        return visible

    @staticmethod
    def _check_first(first: Any, path: str) -> None:
        if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= MAX_PAGE_SIZE:
            raise ValidationFailed.of([FieldError("OUT_OF_RANGE", path, f"must be a whole number from 0 to {MAX_PAGE_SIZE}")])

    def aggregate(
        self, actor: Actor, object_name: str, *, filter: dict | None = None, group_by: list[dict] | None = None,
        measures: list[tuple[str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Count and measures per group of the live records ``query`` would return, in one statement.

        ``group_by``: ``[{"field", "granularity"?}]``; ``measures``: ``[(sum|avg|min|max, field)]``.
        Shapes, ordering and value types: :mod:`lowcode.runtime.aggregates`.
        """
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            spec = parse_aggregate(obj, group_by, measures, self.policy.field_access(actor, obj).hidden)
            compiler = FilterCompiler(catalog, lambda o, t: self._scope(actor, o, t, "read"), self._hidden(actor))
            where = and_(self._alive(table, False), self._scope(actor, obj, table, "read"),
                         compiler.compile(obj, filter) if filter else true())
            return run_aggregate(conn, table, where, spec)

    def geo_grid(self, actor: Actor, object_name: str, field: str, cell_degrees: float, *, filter: dict | None = None,
                 box: dict | None = None) -> list[dict[str, Any]]:
        """Per grid cell of ``cell_degrees`` (aligned on its multiples), the count and mean point of
        the live records ``query`` would return whose geolocation ``field`` has a value, within
        ``box`` (``{south, west, north, east}``) if given; in one statement. Shapes and limits:
        :mod:`lowcode.runtime.geo`."""
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            request, errors = grid_request(obj, field, cell_degrees, box, self.policy.field_access(actor, obj).hidden)
            compiler = FilterCompiler(catalog, lambda o, t: self._scope(actor, o, t, "read"), self._hidden(actor))
            try:
                condition = compiler.compile(obj, filter) if filter else true()
            except ValidationFailed as failed:
                errors = [*errors, *failed.errors]
            if errors:
                raise ValidationFailed("The map grid request has problems; fix the listed parts.", errors=errors)
            where = and_(self._alive(table, False), self._scope(actor, obj, table, "read"), condition)
            return grid_cells(conn, table, request, where)

    def available(self, actor: Actor, object_name: str, start: Any, end: Any, window: Window, selection: Selection) -> Branch:
        """A page of the resources ``object_name`` books (those the caller may read) that no active
        booking holds on any day from ``start`` to ``end``."""
        self._check_first(window.first, "first")
        with self._reading() as (conn, catalog):
            obj, rule, resources = booking_rule(catalog, object_name)
            start, end = period(start, end)
            _, table = self._object(catalog, actor, resources.api_name, "read")
            selection = self._check_selection(catalog, actor, resources, selection, "selection")
            extra = free_predicate(catalog, obj, rule, table, start, end, ranges=not is_sqlite(conn))
            return self._reader(conn, catalog, actor).page(resources, window, selection, extra)

    def occupancy(self, actor: Actor, object_name: str, start: Any, end: Any, *, filter: dict | None = None,
                  statuses: list[str] | None = None) -> list[dict[str, Any]]:
        """Per resource the caller may read (matching ``filter``; at most :data:`MAX_PAGE_SIZE`) and
        calendar month from ``start`` to ``end``: the days within the period, the days active
        bookings (of ``statuses``, if given) hold, and the rate."""
        with self._reading() as (conn, catalog):
            obj, rule, resources = booking_rule(catalog, object_name)
            start, end = period(start, end)
            unknown = [i for i, s in enumerate(statuses or []) if s not in rule.active_values]
            if unknown:
                raise ValidationFailed.of([FieldError("UNKNOWN_VALUE", f"statuses.{i}", f"'{statuses[i]}' is not an active status "
                                                      f"of the booking rule ({', '.join(rule.active_values)})") for i in unknown])
            _, table = self._object(catalog, actor, resources.api_name, "read")
            compiler = FilterCompiler(catalog, lambda o, t: self._scope(actor, o, t, "read"), self._hidden(actor))
            with _forbidden_uses():
                where = and_(self._alive(table, False), self._scope(actor, resources, table, "read"),
                             compiler.compile(resources, filter) if filter else true())
            ids = list(conn.execute(select(table.c.id).where(where).order_by(table.c.id).limit(MAX_PAGE_SIZE + 1)).scalars())
            if len(ids) > MAX_PAGE_SIZE:
                raise ValidationFailed.of([FieldError("TOO_MANY", "filter", f"more than {MAX_PAGE_SIZE} resources match; narrow the filter")])
            return occupancy(conn, catalog, obj, rule, select(table.c.id).where(where), ids, start, end, statuses)

    def funnel(self, actor: Actor, object_name: str, *, amount_field: str, date_field: str | None = None,
               period: str | None = None, by_owner: bool = False, filter: dict | None = None,
               unit: str | None = None) -> list[dict[str, Any]]:
        """Count, amount and weighted amount (amount × win probability) per stage, per ``period``
        (month, quarter, year) of ``date_field`` and per owner when asked, over the caller's
        visible live records; ``unit``: only records of that org unit and the units below it."""
        with self._reading() as (conn, catalog):
            obj, _ = self._object(catalog, actor, object_name, "read")
            group_by, measures = funnel_request(obj, amount_field, date_field, period, by_owner,
                                                self.policy.field_access(actor, obj).hidden)
        scoped = self._in_unit(filter, unit)
        groups = self.aggregate(actor, object_name, filter=scoped, group_by=group_by, measures=measures)
        return funnel_rows(obj, groups, amount_field, date_field if period else None)

    def stage_conversions(self, actor: Actor, object_name: str, *, filter: dict | None = None,
                          unit: str | None = None) -> list[dict[str, Any]]:
        """How visible records moved along each business type's stages (from the stage history)."""
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            compiler = FilterCompiler(catalog, lambda o, t: self._scope(actor, o, t, "read"), self._hidden(actor))
            scoped = self._in_unit(filter, unit)
            where = and_(self._alive(table, False), self._scope(actor, obj, table, "read"),
                         compiler.compile(obj, scoped) if scoped else true())
            return conversions(conn, obj, table, where)

    @staticmethod
    def _in_unit(filter: dict | None, unit: str | None) -> dict | None:
        """``filter`` limited to records of ``unit``'s subtree (through the org unit's path)."""
        if unit is None:
            return filter
        try:
            unit_id = normalize_id(unit)
        except ValueProblem:
            raise ValidationFailed.of([FieldError("INVALID_VALUE", "unit", "must be the id of an org unit")]) from None
        below = {"org_unit_id": {"path": {"contains": f"/{unit_id}/"}}}
        return {"and": [filter, below]} if filter else below

    def history(self, actor: Actor, object_name: str, record_id: str) -> list[dict[str, Any]]:
        """The record's tracked-field changes and life events, oldest first."""
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            visible = conn.execute(select(table.c.id).where(
                table.c.id == self._id_or_missing(obj, record_id), self._scope(actor, obj, table, "read"))).first()
            if visible is None:
                raise self._missing(obj, record_id)
            h = store.field_history
            rows = conn.execute(select(h).where(h.c.object_api_name == obj.api_name, h.c.record_id == visible.id).order_by(h.c.id))
            hidden = self.policy.field_access(actor, obj).hidden
            return [
                {"field": r.field_api_name, "event": r.event, "old": r.old_value, "new": r.new_value, "actor_id": r.actor_id, "at": r.at}
                for r in rows if r.field_api_name not in hidden
            ]

    def stage_history(self, actor: Actor, object_name: str, record_id: str) -> list[dict[str, Any]]:
        """The stages the record went through, oldest first: entered and left (when, by whom), time spent."""
        with self._reading() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "read")
            visible = conn.execute(select(table.c.id).where(
                table.c.id == self._id_or_missing(obj, record_id), self._scope(actor, obj, table, "read"))).first()
            if visible is None:
                raise self._missing(obj, record_id)
            if "stage" in self.policy.field_access(actor, obj).hidden:
                raise Forbidden(f"You may not read the stage of {obj.label} records, nor its history.", field="stage")
            return stage_history(conn, obj, visible.id)

    # -- writing ----------------------------------------------------------------------------
    def create(self, actor: Actor, object_name: str, values: dict[str, Any], *, acknowledge: Iterable[str] = ()) -> dict[str, Any]:
        """Create a record; ``acknowledge`` names warnings (``POSSIBLE_DUPLICATE``) the caller accepts."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "create")
            return self._visible(actor, obj, self._insert(conn, catalog, obj, table, actor, [values], indexed=False,
                                                          acknowledged=frozenset(acknowledge)))[0]

    def bulk_create(self, actor: Actor, object_name: str, values: list[dict[str, Any]], *, acknowledge: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Create many records in one transaction: all of them, or none and every row's errors."""
        self._check_bulk(values)
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "create")
            return self._visible(actor, obj, self._insert(conn, catalog, obj, table, actor, values, indexed=True,
                                                          acknowledged=frozenset(acknowledge)))

    def update(self, actor: Actor, object_name: str, record_id: str, values: dict[str, Any], *, expected_version: int | None = None,
               acknowledge: Iterable[str] = ()) -> dict[str, Any]:
        """Change some fields; with ``expected_version``, refuse (CONFLICT) if the record moved on."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "update")
            return self._visible(actor, obj, [self._update(conn, catalog, obj, table, actor, record_id, values, expected_version, None,
                                                           frozenset(acknowledge))])[0]

    def bulk_update(self, actor: Actor, object_name: str, changes: list[dict[str, Any]], *, acknowledge: Iterable[str] = ()) -> list[dict[str, Any]]:
        """``[{"id", "values", "expected_version"?}, ...]`` in one transaction, all or nothing."""
        self._check_bulk(changes)
        errors: list[FieldError] = []
        results = []
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "update")
            self._lock_in_order(conn, table, [c.get("id") for c in changes if isinstance(c, dict)])
            for i, change in enumerate(changes):
                if not isinstance(change, dict) or "id" not in change or not isinstance(change.get("values"), dict):
                    errors.append(FieldError("INVALID_TYPE", str(i), "must be {id, values, expected_version?}"))
                    continue
                try:
                    results.append(self._update(conn, catalog, obj, table, actor, change["id"], change["values"], change.get("expected_version"), i,
                                                frozenset(acknowledge)))
                except ValidationFailed as failed:
                    errors.extend(failed.errors)
                except (NotFound, Conflict) as failed:
                    errors.append(FieldError(failed.code, str(i), failed.message))
            if errors:
                raise ValidationFailed.of(errors)
        return self._visible(actor, obj, results)

    def transfer(self, actor: Actor, object_name: str, record_id: str, owner_id: str, *, org_unit_id: str | None = None) -> dict[str, Any]:
        """Give a record to another owner; its org unit follows the new owner unless one is given."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "transfer")
            current = self._locked(conn, obj, table, actor, record_id, "transfer", deleted=False)
            self._guard(conn, catalog, obj, actor, current, "transfer")
            coerced, errors = self._validator(catalog, obj).check(
                {"owner_id": owner_id, **({"org_unit_id": org_unit_id} if org_unit_id is not None else {})}, creating=False)
            if not errors and coerced.get("owner_id") is None:
                errors.append(FieldError("REQUIRED", "owner_id", "names the new owner"))
            if errors:
                raise ValidationFailed.of(errors)
            coerced.setdefault("org_unit_id", self.policy.home_unit(coerced["owner_id"], obj, current.get("business_type"))
                               or current["org_unit_id"])
            errors = self._database_problems(conn, catalog, obj, actor, [coerced], [current["id"]], False)
            if errors:
                raise ValidationFailed.of(errors)
            now = self.clock.now()
            after = {**current, **coerced, "version": current["version"] + 1, "updated_at": now, "updated_by": actor.id}
            conn.execute(update(table).where(table.c.id == current["id"]).values(
                owner_id=after["owner_id"], org_unit_id=after["org_unit_id"], version=after["version"], updated_at=now, updated_by=actor.id))
            write_history(conn, obj, actor, now, [
                (current["id"], name, "transferred", current[name], after[name]) for name in OWNERSHIP_FIELDS if current[name] != after[name]])
            self._fill_formulas(conn, obj, table, [after])
        return self._visible(actor, obj, [after])[0]

    def delete(self, actor: Actor, object_name: str, record_id: str) -> None:
        """Move a record (and its master-detail children) to the recycle bin."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "delete")
            current = self._locked(conn, obj, table, actor, record_id, "delete", deleted=False)
            self._guard(conn, catalog, obj, actor, current, "delete")
            doomed = self._cascade(conn, catalog, obj, [current["id"]], deleted=False)
            self._refuse_restricted(conn, catalog, doomed, live_only=True)
            now = self.clock.now()
            for target, ids in doomed.items():
                self._set_deleted(conn, catalog, target, ids, now, actor, now)
            for target, ids in doomed.items():
                rollups.refresh(conn, catalog, target, rollups.stored_masters(conn, catalog, target, ids))
            write_history(conn, obj, actor, now, [(current["id"], None, "deleted", None, None)])

    def restore(self, actor: Actor, object_name: str, record_id: str) -> dict[str, Any]:
        """Bring a record back from the recycle bin, with the children deleted along with it."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "restore")
            current = self._locked(conn, obj, table, actor, record_id, "restore", deleted=True)
            for field in obj.fields:
                if field.type == "master_detail" and current[field.api_name] is not None:
                    master_table = catalog.table(field.target)
                    alive = conn.execute(select(master_table.c.id).where(
                        master_table.c.id == current[field.api_name], master_table.c.deleted_at.is_(None))).first()
                    if alive is None:
                        raise Conflict(f"Its master ({field.label}) is in the recycle bin; restore the master first.", field=field.api_name)
            revived = self._cascade(conn, catalog, obj, [current["id"]], deleted=True, deleted_at=current["deleted_at"])
            self._refuse_double_booking(conn, catalog, revived)
            now = self.clock.now()
            try:
                for target, ids in revived.items():
                    self._set_deleted(conn, catalog, target, ids, None, actor, now)
            except IntegrityError as exc:
                raise Conflict(_constraint_error(catalog.object(object_name), exc).errors[0].message) from None
            for target, ids in revived.items():
                rollups.refresh(conn, catalog, target, rollups.stored_masters(conn, catalog, target, ids))
            write_history(conn, obj, actor, now, [(current["id"], None, "restored", None, None)])
        return self.get(actor, object_name, current["id"])

    def hard_delete(self, actor: Actor, object_name: str, record_id: str) -> None:
        """Remove a record for good (from the recycle bin or not); details go with their master."""
        with self._writing() as (conn, catalog):
            obj, table = self._object(catalog, actor, object_name, "delete")
            current = self._locked(conn, obj, table, actor, record_id, "delete", deleted=None)
            self._guard(conn, catalog, obj, actor, current, "delete")
            doomed = self._cascade(conn, catalog, obj, [current["id"]], deleted=None)
            self._refuse_restricted(conn, catalog, doomed, live_only=False)
            summarized = {target: rollups.stored_masters(conn, catalog, target, ids) for target, ids in doomed.items()}
            try:
                conn.execute(delete(table).where(table.c.id == current["id"]))
            except IntegrityError:
                raise InUse("Other records still reference this record; remove those references first.") from None
            for target, touched in summarized.items():
                rollups.refresh(conn, catalog, target, touched)
            write_history(conn, obj, actor, self.clock.now(), [(current["id"], None, "purged", None, None)])

    # -- steps ------------------------------------------------------------------------------
    def _insert(self, conn, catalog, obj, table, actor, inputs, *, indexed, acknowledged=frozenset()) -> list[dict[str, Any]]:
        if not inputs:
            return []
        validator = self._validator(catalog, obj)
        self._refuse_unwritable(actor, obj, inputs, indexed, creating=True)
        records, errors = [], []
        for i, values in enumerate(inputs):
            coerced, problems = validator.check(values, creating=True)
            if not problems:
                problems = settle(obj, None, coerced)[0]
            errors.extend(p.at(i) for p in problems) if indexed else errors.extend(problems)
            records.append(coerced)
        errors.extend(self._database_problems(conn, catalog, obj, actor, records, [None] * len(records), indexed))
        if not errors:
            errors.extend(e.at(i) if indexed else e for i, e in overlap_problems(conn, obj, table, records, [None] * len(records)))
        if errors:
            raise ValidationFailed.of(errors)
        now = self.clock.now()
        canonical = list(obj.fields_by_name)
        starting = rollups.starting_values(obj)
        homes: dict[tuple[Any, Any], Any] = {}

        def home(owner_id, business_type):
            """The creator's unit; the platform itself has none, so what it makes for an owner (an
            import, an app's data) belongs to the owner's unit, as after a transfer."""
            if owner_id is None or not actor.is_system:
                return self.policy.owning_unit(actor, obj, business_type)
            if (owner_id, business_type) not in homes:
                homes[(owner_id, business_type)] = (self.policy.home_unit(owner_id, obj, business_type)
                                                     or self.policy.owning_unit(actor, obj, business_type))
            return homes[(owner_id, business_type)]

        for position, record in enumerate(records):
            record.update({
                "id": new_record_id(), "owner_id": record.get("owner_id") or actor.id,
                "org_unit_id": record.get("org_unit_id") or home(record.get("owner_id"), record.get("business_type")),
                "business_type": record.get("business_type"), "stage_entered_at": now if record.get("stage") else None,
                "created_at": now, "created_by": actor.id, "updated_at": now, "updated_by": actor.id, "version": 1, "deleted_at": None,
            })
            records[position] = {**{name: record.get(name) for name in canonical}, **starting}
        self._before_save(conn, catalog, obj, actor, [(r, None) for r in records], indexed, now, acknowledged=acknowledged)
        assign_numbers(conn, obj, records)
        try:
            conn.execute(table.insert(), [self._row(obj, r) for r in records])
        except IntegrityError as exc:
            raise _constraint_error(obj, exc) from None
        self._refuse_outside_scope(conn, obj, table, actor, records, indexed)
        record_moves(conn, obj, [StageMove(r["id"], r["business_type"], r["stage"], None) for r in records if r.get("stage")],
                     actor.id, now)
        rollups.refresh(conn, catalog, obj.api_name, rollups.masters(catalog, obj.api_name, records))
        if any(f.tracked for f in obj.fields):
            write_history(conn, obj, actor, now, [(r["id"], None, "created", None, None) for r in records])
        self._fill_formulas(conn, obj, table, records)
        if self.hooks.has_after(obj.api_name):
            for record in records:
                self.hooks.run_after(SaveContext(conn, actor, obj, record, None, self.joined(conn)))
        if self.automation.any(obj):
            for record in records:
                self.automation.after_save(SaveContext(conn, actor, obj, record, None, self.joined(conn), catalog, now, acknowledged))
        return records

    def _update(self, conn, catalog, obj, table, actor, record_id, values, expected_version, index, acknowledged=frozenset()) -> dict[str, Any]:
        def at(errors: list[FieldError]) -> list[FieldError]:
            return [e.at(index) for e in errors] if index is not None else errors

        self._refuse_unwritable(actor, obj, [values], index is not None, creating=False, offset=index or 0)
        coerced, errors = self._validator(catalog, obj).check(values, creating=False)
        if expected_version is not None and (not isinstance(expected_version, int) or isinstance(expected_version, bool)):
            errors.append(FieldError("INVALID_TYPE", "expected_version", "must be a whole number"))
        current = self._locked(conn, obj, table, actor, record_id, "update", deleted=False)
        self._guard(conn, catalog, obj, actor, current, "update")
        if expected_version is not None and current["version"] != expected_version and not errors:
            raise Conflict(
                f"The record was changed by someone else (now at version {current['version']}, not {expected_version}); reload it and try again.",
                field="expected_version", current_version=current["version"],
            )
        reopening = False
        if not errors:
            process_errors, reopening = settle(obj, current, coerced)
            errors.extend(process_errors)
        errors.extend(self._database_problems(conn, catalog, obj, actor, [coerced], [current["id"]], False))
        if not errors and obj.booking_rules:
            errors.extend(e for _, e in overlap_problems(conn, obj, table, [{**current, **coerced}], [current["id"]]))
        if errors:
            raise ValidationFailed.of(at(errors))
        if reopening:
            self.policy.authorize(actor, obj, "reopen")
        now = self.clock.now()
        proposed = {**current, **coerced}
        if coerced.get("stage") != current.get("stage") and "stage" in coerced:
            proposed["stage_entered_at"] = now if coerced["stage"] is not None else None
        self._before_save(conn, catalog, obj, actor, [(proposed, current)], index is not None, now, offset=index or 0,
                          acknowledged=acknowledged)
        changed = {k: v for k, v in proposed.items() if k in obj.fields_by_name and current.get(k) != v}
        if not changed:
            self._fill_formulas(conn, obj, table, [current])
            return current
        after = {**current, **changed, "version": current["version"] + 1, "updated_at": now, "updated_by": actor.id}
        row = {"version": after["version"], "updated_at": now, "updated_by": actor.id}
        for name, value in changed.items():
            field = obj.field(name)
            row.update(field.field_type.to_row(field, value))
        try:
            result = conn.execute(update(table).where(table.c.id == current["id"], table.c.version == current["version"]).values(**row))
        except IntegrityError as exc:
            raise ValidationFailed.of(at(_constraint_error(obj, exc).errors)) from None
        if result.rowcount != 1:
            raise Conflict("The record was changed by someone else meanwhile; reload it and try again.", field="expected_version")
        if "business_type" in changed:
            self._refuse_leaving_scope(conn, obj, table, actor, after, index)
        if "stage" in changed:
            record_moves(conn, obj, [StageMove(current["id"], after.get("business_type"), changed["stage"], current.get("stage"))],
                         actor.id, now)
        write_history(conn, obj, actor, now, [(current["id"], f, "updated", old, new) for f, old, new in tracked_changes(obj, current, changed)])
        if not rollups.inputs(catalog, obj.api_name).isdisjoint(changed):
            rollups.refresh(conn, catalog, obj.api_name, rollups.merged(
                rollups.masters(catalog, obj.api_name, [current]), rollups.masters(catalog, obj.api_name, [after])))
        self._fill_formulas(conn, obj, table, [after])
        if self.hooks.has_after(obj.api_name):
            self.hooks.run_after(SaveContext(conn, actor, obj, after, current, self.joined(conn)))
        if self.automation.any(obj):
            self.automation.after_save(SaveContext(conn, actor, obj, after, current, self.joined(conn), catalog, now, acknowledged))
        return after

    def _before_save(self, conn, catalog, obj, actor, saves, indexed, now, offset=0, acknowledged=frozenset()) -> None:
        """Before-save hooks and the automations' steps, then the layout's required fields and the
        validation rules, for each ``(record, old)``; every row's problems are reported at once."""
        errors: list[FieldError] = []
        roles = tuple(m.role for m in getattr(actor.access, "memberships", ()))
        for i, (record, old) in enumerate(saves):
            if self.hooks.has_before(obj.api_name):
                self.hooks.run_before(SaveContext(conn, actor, obj, record, old, self.joined(conn)))
            problems = []
            if self.automation.any(obj):
                problems += self.automation.before_save(SaveContext(conn, actor, obj, record, old, self.joined(conn), catalog, now, acknowledged))
            problems += layout_problems(obj, roles, record, old)
            problems += rule_problems(catalog, obj, actor, record, old, now)
            errors.extend(p.at(i + offset) for p in problems) if indexed else errors.extend(problems)
        if errors:
            raise ValidationFailed.of(errors)

    def _guard(self, conn, catalog, obj, actor, current, action) -> None:
        """Let the automations refuse a change to a record before it is made (an approval pending)."""
        if self.automation.any(obj):
            self.automation.guard(SaveContext(conn, actor, obj, current, current, self.joined(conn), catalog, self.clock.now()), action)

    def _refuse_unwritable(self, actor, obj, inputs, indexed, *, creating, offset=0) -> None:
        """Writing a field the caller may not edit is FORBIDDEN; so is changing ownership outside
        a transfer (on create the owner and unit may be given, within the caller's scope)."""
        read_only = self.policy.field_access(actor, obj).read_only
        errors = []
        for i, values in enumerate(inputs):
            if not isinstance(values, dict):
                continue
            for name in values:
                if name in read_only:
                    error = FieldError("FORBIDDEN", name, "you may not edit this field")
                elif name in OWNERSHIP_FIELDS and not creating and not actor.is_system:
                    error = FieldError("FORBIDDEN", name, "ownership changes through a transfer, not an edit")
                else:
                    continue
                errors.append(error.at(i + offset) if indexed else error)
        if errors:
            raise Forbidden("The input writes fields you may not edit; remove the listed parts.", errors=errors)

    def _refuse_outside_scope(self, conn, obj, table, actor, records, indexed) -> None:
        """New records must lie within the caller's create scope (owner and org unit)."""
        scope = self._scope(actor, obj, table, "create")
        if isinstance(scope, True_):
            return
        position = {r["id"]: i for i, r in enumerate(records)}
        outside: list[str] = []
        for chunk in _chunks(list(position)):
            outside.extend(conn.execute(select(table.c.id).where(table.c.id.in_(chunk), not_(scope))).scalars())
        if outside:
            what = "this owner, org unit and business type are" if obj.business_types else "this owner and org unit are"
            errors = [FieldError("FORBIDDEN", "owner_id", f"{what} outside the scope in which you may create records")]
            raise Forbidden("Some records would be created outside your scope; nothing was written.",
                            errors=[errors[0].at(position[i]) for i in sorted(outside, key=position.get)] if indexed else errors)

    def _refuse_leaving_scope(self, conn, obj, table, actor, record, index) -> None:
        """A changed business type must leave the record within the caller's update scope (a grant
        may be limited to some types); checked in SQL before commit."""
        scope = self._scope(actor, obj, table, "update")
        if isinstance(scope, True_) or conn.execute(select(table.c.id).where(table.c.id == record["id"], not_(scope))).first() is None:
            return
        error = FieldError("FORBIDDEN", "business_type",
                           f"none of your roles lets you edit {obj.label} records of business type '{record['business_type']}' here")
        raise Forbidden("The change would move the record outside the records you may edit; nothing was written.",
                        errors=[error.at(index) if index is not None else error])

    def _visible(self, actor: Actor, obj: ObjectDef, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hidden = self.policy.field_access(actor, obj).hidden
        if hidden:
            for record in records:
                for name in hidden:
                    if name in record:
                        record[name] = None
        return records

    @staticmethod
    def _lock_in_order(conn, table, record_ids) -> None:
        """Lock a batch's rows in id order first, so two batches over the same rows queue, never deadlock."""
        ids = set()
        for record_id in record_ids:
            try:
                ids.add(normalize_id(record_id))
            except ValueProblem:
                continue
        for chunk in _chunks(sorted(ids)):
            conn.execute(select(table.c.id).where(table.c.id.in_(chunk)).order_by(table.c.id).with_for_update()).all()

    def _locked(self, conn, obj, table, actor, record_id, action, *, deleted: bool | None) -> dict[str, Any]:
        """The current record, row-locked until commit; missing and invisible look the same (a
        record is changed only within both the action's scope and the caller's read scope)."""
        state = true() if deleted is None else self._alive(table, deleted)
        row = conn.execute(
            select(table).where(table.c.id == self._id_or_missing(obj, record_id), state,
                                self._scope(actor, obj, table, action), self._scope(actor, obj, table, "read")).with_for_update()
        ).mappings().first()
        if row is None:
            raise self._missing(obj, record_id)
        return self._record(obj, row, list(obj.fields_by_name))

    def _database_problems(self, conn, catalog, obj, actor, records, own_ids, indexed) -> list[FieldError]:
        """Unique values and lookup targets, checked with one query per field for the whole batch.

        Targets are share-locked until commit, so a concurrent delete of a target waits and then
        sees the new reference (and a restricting lookup refuses it).
        """
        problems: list[FieldError] = []
        table = catalog.table(obj.api_name)

        def add(i: int, error: FieldError) -> None:
            problems.append(error.at(i) if indexed else error)

        for field in obj.fields:
            if field.is_unique and field.writable:
                first_row: dict[Any, int] = {}
                for i, record in enumerate(records):
                    value = record.get(field.api_name)
                    if value is None:
                        continue
                    if value in first_row:
                        add(i, FieldError("DUPLICATE_VALUE", field.api_name, f"repeats the value of row {first_row[value]}", {"row": first_row[value]}))
                    else:
                        first_row[value] = i
                column = table.c[field.api_name]
                for chunk in _chunks(list(first_row)):
                    for other_id, value in conn.execute(select(table.c.id, column).where(column.in_(chunk))):
                        i = first_row[value]
                        if other_id != own_ids[i]:
                            add(i, FieldError("DUPLICATE_VALUE", field.api_name, "is already used by another record; it must be unique"))
        for field in (*(obj.field(name) for name in OWNERSHIP_FIELDS), *obj.fields):
            if not field.target or (not field.writable and field.api_name not in OWNERSHIP_FIELDS):
                continue
            wanted: dict[str, list[int]] = {}
            for i, record in enumerate(records):
                if record.get(field.api_name) is not None:
                    wanted.setdefault(record[field.api_name], []).append(i)
            if not wanted:
                continue
            target = catalog.objects.get(field.target)
            target_table = catalog.table(target.api_name)
            found: set[str] = set()
            reach = self._scope(actor, target, target_table, "update" if field.type == "master_detail" else "read")
            lock = {"key_share": True} if field.api_name in rollups.summaries(catalog, obj.api_name) else {"read": True}
            for chunk in _chunks(sorted(wanted)):
                found.update(conn.execute(select(target_table.c.id).where(
                    target_table.c.id.in_(chunk), target_table.c.deleted_at.is_(None), reach,
                ).order_by(target_table.c.id).with_for_update(**lock)).scalars())
            missing = set(wanted) - found
            readable = set()
            if missing and field.type == "master_detail":
                readable = set(conn.execute(select(target_table.c.id).where(
                    target_table.c.id.in_(sorted(missing)), target_table.c.deleted_at.is_(None),
                    self._scope(actor, target, target_table, "read"))).scalars())
            for absent in missing:
                message = (f"you may read but not change {target.label} {absent}, so you may not add records under it"
                           if absent in readable else f"no {target.label} record with id {absent} exists")
                for i in wanted[absent]:
                    add(i, FieldError("INVALID_REFERENCE", field.api_name, message, {"target": target.api_name}))
        return problems

    def _cascade(self, conn, catalog, obj, ids, *, deleted: bool | None, deleted_at=None) -> dict[str, list[str]]:
        """The records a delete or restore reaches: these, and their master-detail children, by object."""
        reached: dict[str, list[str]] = {obj.api_name: list(ids)}
        frontier = [(obj, list(ids))]
        while frontier:
            parent, parent_ids = frontier.pop()
            for child, field in catalog.referrers(parent.api_name):
                if field.type != "master_detail":
                    continue
                child_table = catalog.table(child.api_name)
                if deleted is None:
                    state = true()
                elif deleted:
                    state = child_table.c.deleted_at == deleted_at
                else:
                    state = child_table.c.deleted_at.is_(None)
                found = []
                for chunk in _chunks(parent_ids):
                    found.extend(conn.execute(select(child_table.c.id).where(child_table.c[field.api_name].in_(chunk), state)).scalars())
                seen = set(reached.get(child.api_name, ()))
                found = [i for i in found if i not in seen]
                if found:
                    reached.setdefault(child.api_name, []).extend(found)
                    frontier.append((child, found))
        return reached

    def _refuse_restricted(self, conn, catalog, doomed: dict[str, list[str]], *, live_only: bool) -> None:
        """Refuse when a record outside ``doomed`` points at one inside it through a restricting lookup."""
        blockers = []
        for object_name, ids in doomed.items():
            for child, field in catalog.referrers(object_name):
                if field.options.get("on_delete") != "restrict":
                    continue
                child_table = catalog.table(child.api_name)
                spared = doomed.get(child.api_name, [])
                for chunk in _chunks(ids):
                    query = select(func.count()).select_from(child_table).where(child_table.c[field.api_name].in_(chunk))
                    if live_only:
                        query = query.where(child_table.c.deleted_at.is_(None))
                    if spared:
                        query = query.where(child_table.c.id.not_in(spared))
                    count = conn.execute(query).scalar_one()
                    if count:
                        blockers.append(f"{count} {child.label} record(s) through '{field.api_name}'")
        if blockers:
            raise InUse(f"This record is still referenced by {', '.join(blockers)}; remove those references first.", referrers=blockers)

    @staticmethod
    def _refuse_double_booking(conn, catalog, revived: dict[str, list[str]]) -> None:
        """Restoring bookings whose days another active booking of their resource took meanwhile is a CONFLICT."""
        for object_name, ids in revived.items():
            obj = catalog.object(object_name)
            if not obj.booking_rules:
                continue
            table = catalog.table(object_name)
            records = [{**row, "deleted_at": None} for row in conn.execute(select(table).where(table.c.id.in_(ids))).mappings()]
            for i, problem in overlap_problems(conn, obj, table, records, [r["id"] for r in records]):
                raise Conflict(f"It cannot come back: {problem.message}", field=problem.field, record_id=records[i]["id"])

    def _set_deleted(self, conn, catalog, object_name, ids, deleted_at, actor, at) -> None:
        """Set (or clear, with ``None``) ``deleted_at``, as a change made by ``actor`` at ``at``."""
        table = catalog.table(object_name)
        for chunk in _chunks(ids):
            conn.execute(update(table).where(table.c.id.in_(chunk)).values(
                deleted_at=deleted_at, version=table.c.version + 1, updated_at=at, updated_by=actor.id))

    # -- shapes -----------------------------------------------------------------------------
    def _selection(self, obj: ObjectDef, fields: list[str] | None) -> list[str]:
        if fields is None:
            return list(obj.fields_by_name)
        if not isinstance(fields, list):
            raise ValidationFailed.of([FieldError("INVALID_TYPE", "fields", "must be a list of field names")])
        unknown = [f for f in fields if not isinstance(f, str) or obj.field(f) is None]
        if unknown:
            raise ValidationFailed.of([FieldError("UNKNOWN_FIELD", "fields", f"'{obj.api_name}' has no field named '{u}'") for u in unknown])
        return list(dict.fromkeys(["id", "version", *fields]))

    @staticmethod
    def _columns(obj: ObjectDef, table: Table, names: list[str]) -> list:
        return [column.label(column_name) for _, field, sql in selectables(obj, table, names) if sql is not None
                for column_name, column in zip(field.field_type.column_names(field), sql)]

    def _record(self, obj: ObjectDef, row, names: list[str], hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A record from a row of :meth:`_columns`, or of the whole table (read for a write: its
        SQL formulas are filled in after the write)."""
        record, later = {}, []
        for name in names:
            field = obj.fields_by_name[name]
            if name in hidden:
                record[name] = None
            elif field.field_type.computed and name not in row:
                record[name] = None
                later.append(field)
            else:
                record[name] = field.field_type.from_row(field, row)
        after_reading = [field for field in later if not field.field_type.in_sql(field)]
        if after_reading:
            fields = obj.fields_by_name
            inputs = {name: fields[name].field_type.from_row(fields[name], row)
                      for name in row.keys() if name in fields and not fields[name].field_type.computed}
            for field in after_reading:
                record[field.api_name] = compute(field, inputs)
        return record

    def _fill_formulas(self, conn: Connection, obj: ObjectDef, table: Table, records: list[dict[str, Any]]) -> None:
        """Formula values of records just written, as a read would give them."""
        formulas = [f for f in obj.fields if f.field_type.computed]
        if not formulas or not records:
            return
        in_sql = [(f, f.field_type.selectable(f, table)) for f in formulas]
        in_sql = [(f, sql[0]) for f, sql in in_sql if sql is not None]
        if in_sql:
            rows: dict[str, Any] = {}
            for chunk in _chunks([r["id"] for r in records]):
                query = select(table.c.id, *(sql.label(f.api_name) for f, sql in in_sql)).where(table.c.id.in_(chunk))
                rows.update((row["id"], row) for row in conn.execute(query).mappings())
            for record in records:
                for field, _ in in_sql:
                    record[field.api_name] = field.field_type.from_row(field, rows[record["id"]])
        for field in formulas:
            if not field.field_type.in_sql(field):
                for record in records:
                    record[field.api_name] = compute(field, record)

    @staticmethod
    def _row(obj: ObjectDef, record: dict[str, Any]) -> dict[str, Any]:
        row = {}
        for name, value in record.items():
            field = obj.fields_by_name[name]
            row.update(field.field_type.to_row(field, value))
        return row

    @staticmethod
    def _alive(table: Table, deleted: bool):
        return table.c.deleted_at.is_not(None) if deleted else table.c.deleted_at.is_(None)

    @staticmethod
    def _id_or_missing(obj: ObjectDef, record_id: Any) -> str:
        try:
            return normalize_id(record_id)
        except ValueProblem:
            raise NotFound(f"There is no {obj.label} record with id {record_id!r}.", field="id") from None

    @staticmethod
    def _missing(obj: ObjectDef, record_id: Any) -> NotFound:
        return NotFound(f"There is no {obj.label} record with id {record_id!r}.", field="id")

    @staticmethod
    def _check_bulk(items: Any) -> None:
        if not isinstance(items, list):
            raise ValidationFailed.of([FieldError("INVALID_TYPE", None, "must be a list")])
        if len(items) > MAX_BULK_SIZE:
            raise ValidationFailed.of([FieldError("TOO_MANY", None, f"at most {MAX_BULK_SIZE} records per call; split the batch")])
