"""Public pools (公海池): records nobody follows up go back to a pool, where members claim them.

Every move is one transaction: the record's owner changes through the record service (as the
platform itself, joined to the pool's transaction, so the record's history shows the transfer and
its org unit follows the new owner), the record's place in the pool changes, and the move is
recorded. A claim takes the record with one conditional write (``in_pool`` to ``claimed``): of
claims racing for one record exactly one wins, the others are CONFLICT. A released or recycled
record has no owner (``owner_id`` null) while it waits in the pool.
"""
from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.database import WRITE
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    LowcodeError,
    NotFound,
    ValidationFailed,
)
from ..clock import Clock, SystemClock
from ..instant_cursors import decode_cursor, encode_cursor
from . import definitions, store
from .definitions import Pool
from .errors import ClaimLimitReached, CoolingDown, HoldingCapReached
from .membership import is_member
from .protection import idle_records, protection_starts

log = logging.getLogger(__name__)

POOLS, MEMBERS, ENTRIES, MOVES = store.pools, store.members, store.entries, store.moves
MAX_PAGE = 200
MAX_REASON = 500
LISTED_TYPES = ("text", "picklist", "auto_number", "email", "phone")
"""Fields a member may read of a pooled record: its name-like fields, never amounts or notes."""
RECYCLE_JOB, REMIND_JOB = "pools.recycle", "pools.remind"
JOB_INTERVAL_SECONDS = 3600


@dataclass(frozen=True)
class PoolMove:
    id: int
    pool: str
    record_id: str
    action: str
    actor_id: str | None
    from_owner_id: str | None
    to_owner_id: str | None
    reason: str | None
    at: datetime

    @classmethod
    def from_row(cls, row) -> "PoolMove":
        values = row._mapping
        return cls(**{name: _text(values[name]) if name.endswith("_id") else values[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PooledRecord:
    id: str
    entered_at: datetime
    previous_owner_id: str | None
    values: dict[str, Any]
    """The record's id and the listed fields asked for."""

    @property
    def cursor(self) -> str:
        return encode_cursor(self.entered_at, self.id)


@dataclass(frozen=True)
class PoolPage:
    records: list[PooledRecord]
    has_next_page: bool
    after: str | None = None

    @property
    def end_cursor(self) -> str | None:
        return self.records[-1].cursor if self.records else None


class PoolService:
    def __init__(self, engine: Engine, records, jobs=None, notifications=None, clock: Clock | None = None):
        self.engine = engine
        self.records = records
        self.jobs = jobs
        self.notifications = notifications
        self.clock = clock or SystemClock()

    def install(self) -> None:
        """Create the pool tables when missing."""
        with self._transaction() as conn:
            store.pools_metadata.create_all(conn)

    # -- settings (administrators) --------------------------------------------------------------
    def create_pool(self, actor: Actor, definition: dict[str, Any]) -> Pool:
        """Create a pool; nothing is saved when any setting is wrong (each problem at its field).
        Declares the hourly recycle and reminder schedules."""
        _require_admin(actor)
        with self._transaction() as conn:
            values, members, problems = definitions.checked(definition, self.records.catalogs.current(), conn)
            if not problems and self._row(conn, values["api_name"]) is not None:
                problems.append(FieldError("ALREADY_EXISTS", "api_name", "another pool has this name", {"name": values["api_name"]}))
            if problems:
                raise ValidationFailed.of(problems)
            now = self.clock.now()
            conn.execute(insert(POOLS).values(**values, created_at=now, updated_at=now))
            self._save_members(conn, values["api_name"], members)
        self.declare_schedules()
        return self.pool(actor, values["api_name"])

    def update_pool(self, actor: Actor, api_name: str, changes: dict[str, Any]) -> Pool:
        """Change some settings (``members``, when given, replaces the list); the pooled object
        never changes."""
        _require_admin(actor)
        if not isinstance(changes, dict):
            raise ValidationFailed.of([FieldError("INVALID_VALUE", None, "the changes are an object of settings")])
        with self._transaction() as conn:
            current = self._load(conn, api_name, lock=True)
            problems = []
            for name in ("api_name", "object_api_name"):
                if name in changes and changes[name] != getattr(current, name):
                    problems.append(FieldError("IMMUTABLE", name, "cannot change; create another pool instead"))
            merged = {**current.settings(), **changes, "api_name": current.api_name, "object_api_name": current.object_api_name}
            values, members, found = definitions.checked(merged, self.records.catalogs.current(), conn)
            problems += found
            if problems:
                raise ValidationFailed.of(problems)
            values.pop("api_name")
            conn.execute(update(POOLS).where(POOLS.c.api_name == current.api_name).values(**values, updated_at=self.clock.now()))
            conn.execute(delete(MEMBERS).where(MEMBERS.c.pool == current.api_name))
            self._save_members(conn, current.api_name, members)
        return self.pool(actor, current.api_name)

    def delete_pool(self, actor: Actor, api_name: str) -> None:
        """Delete a pool with its members, entries and moves; records waiting in it stay ownerless."""
        _require_admin(actor)
        with self._transaction() as conn:
            current = self._load(conn, api_name, lock=True)
            for table in (MOVES, ENTRIES, MEMBERS):
                conn.execute(delete(table).where(table.c.pool == current.api_name))
            conn.execute(delete(POOLS).where(POOLS.c.api_name == current.api_name))

    def pool(self, actor: Actor, api_name: str) -> Pool:
        """One pool, for administrators and its members."""
        with self.engine.connect() as conn:
            pool = self._load(conn, api_name)
            self._require_member_or_admin(conn, actor, pool)
            return pool

    def pools(self, actor: Actor) -> list[Pool]:
        """Every pool for administrators; the pools a user is a member of otherwise."""
        with self.engine.connect() as conn:
            names = list(conn.execute(select(POOLS.c.api_name).order_by(POOLS.c.api_name)).scalars())
            found = [self._load(conn, name) for name in names]
            if _is_admin(actor):
                return found
            return [pool for pool in found if is_member(conn, pool, actor.id)]

    def declare_schedules(self) -> None:
        """The hourly recycle and reminder jobs (declaring them again keeps their next slot)."""
        if self.jobs is None:
            return
        self.jobs.schedules.schedule(RECYCLE_JOB, RECYCLE_JOB, JOB_INTERVAL_SECONDS)
        self.jobs.schedules.schedule(REMIND_JOB, REMIND_JOB, JOB_INTERVAL_SECONDS)

    # -- members ---------------------------------------------------------------------------------
    def pool_records(self, actor: Actor, pool_name: str, first: int = 50, after: str | None = None,
                     fields: list[str] | None = None) -> PoolPage:
        """The records waiting in the pool, newest arrivals first, with only their id and the
        name-like fields asked for (members and administrators)."""
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= MAX_PAGE:
            raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "first", f"must be between 1 and {MAX_PAGE}")])
        with self.engine.connect() as conn:
            pool = self._load(conn, pool_name)
            self._require_member_or_admin(conn, actor, pool)
            obj = self.records.catalogs.current(conn).object(pool.object_api_name)
            names = _listed_fields(obj, fields)
            query = (select(ENTRIES).where(ENTRIES.c.pool == pool.api_name, ENTRIES.c.status == store.IN_POOL)
                     .order_by(ENTRIES.c.entered_at.desc(), ENTRIES.c.record_id.desc()).limit(first + 1))
            if after is not None:
                entered_at, last_id = decode_cursor(after, "this pool")
                query = query.where(or_(ENTRIES.c.entered_at < entered_at,
                                        and_(ENTRIES.c.entered_at == entered_at, ENTRIES.c.record_id < last_id)))
            rows = conn.execute(query).all()
        page = rows[:first]
        ids = [str(row.record_id) for row in page]
        found = {}
        if ids:
            found = {r["id"]: r for r in self.records.every(SYSTEM_ACTOR, obj.api_name, filter={"id": {"in": ids}},
                                                            fields=["id", *names])}
        records = [PooledRecord(str(row.record_id), row.entered_at, _text(row.previous_owner_id),
                                {"id": str(row.record_id), **{n: found.get(str(row.record_id), {}).get(n) for n in names}})
                   for row in page if str(row.record_id) in found]
        return PoolPage(records, len(rows) > first, after)

    def claim(self, actor: Actor, pool_name: str, record_id: Any) -> PoolMove:
        """Take a record from the pool: it becomes the actor's. Refused (each with its code) for
        non-members (FORBIDDEN), past the daily limit (CLAIM_LIMIT), at the holding cap
        (HOLDING_CAP), for its previous owner within the cooldown (COOLDOWN), and when someone
        else claimed it first (CONFLICT)."""
        record_id = _record_id(record_id)
        now = self.clock.now()
        with self._transaction() as conn:
            pool = self._load(conn, pool_name)
            if not is_member(conn, pool, actor.id):
                raise Forbidden(f"Only members of the pool '{pool.label}' claim its records.")
            if not pool.active:
                raise Conflict(f"The pool '{pool.label}' is inactive; records cannot be claimed from it now.")
            self._queue_claims_of(conn, actor.id)
            entry = conn.execute(select(ENTRIES).where(ENTRIES.c.pool == pool.api_name, ENTRIES.c.record_id == record_id)).first()
            if entry is None:
                raise NotFound(f"There is no record '{record_id}' in the pool '{pool.label}'.", field="id")
            if entry.status != store.IN_POOL:
                raise Conflict("The record was already claimed; pick another one.", field="id")
            if _text(entry.previous_owner_id) == actor.id and pool.cooldown_days:
                until = entry.entered_at + timedelta(days=pool.cooldown_days)
                if now < until:
                    raise CoolingDown(f"You gave this record up recently; you may claim it again from {until.isoformat()}.",
                                      field="id", until=until.isoformat())
            day_start = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
            claimed_today = conn.execute(select(func.count()).select_from(MOVES).where(
                MOVES.c.pool == pool.api_name, MOVES.c.action == store.CLAIM, MOVES.c.actor_id == actor.id,
                MOVES.c.at >= day_start)).scalar_one()
            if claimed_today >= pool.daily_claim_limit:
                raise ClaimLimitReached(f"You claimed {claimed_today} records from this pool today, its daily limit; "
                                        "claim more tomorrow (UTC).", limit=pool.daily_claim_limit)
            table = self.records.catalogs.current(conn).table(pool.object_api_name)
            held = conn.execute(select(func.count()).select_from(table).where(
                table.c.owner_id == actor.id, table.c.deleted_at.is_(None))).scalar_one()
            if held >= pool.max_held:
                raise HoldingCapReached(f"You already own {held} records of this kind, the most this pool allows; "
                                        "release or close some first.", limit=pool.max_held)
            taken = conn.execute(update(ENTRIES).where(
                ENTRIES.c.pool == pool.api_name, ENTRIES.c.record_id == record_id, ENTRIES.c.status == store.IN_POOL,
            ).values(status=store.CLAIMED)).rowcount
            if taken != 1:
                raise Conflict("The record was already claimed; pick another one.", field="id")
            before = self.records.joined(conn).get(SYSTEM_ACTOR, pool.object_api_name, record_id, fields=["id", "owner_id"])
            self.records.joined(conn).transfer(SYSTEM_ACTOR, pool.object_api_name, record_id, actor.id)
            return self._record_move(conn, pool, record_id, store.CLAIM, actor.id, before["owner_id"], actor.id, None, now)

    def _queue_claims_of(self, conn: Connection, user_id: str) -> None:
        """One claim at a time per user (their user row locked until commit), so that two claims of
        different records cannot both slip under the daily limit or the cap. SQLite writes one
        transaction at a time anyway."""
        if conn.dialect.name == "sqlite":
            return
        users = self.records.catalogs.current(conn).table("user")
        conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update(key_share=True))

    def release(self, actor: Actor, pool_name: str, record_id: Any, reason: Any) -> PoolMove:
        """Give one's own record back to the pool, saying why (1 to 500 characters)."""
        record_id = _record_id(record_id)
        with self._transaction() as conn:
            pool = self._load(conn, pool_name)
            reason = _reason(reason)
            record = self._pooled_record(conn, pool, record_id)
            if actor.id is None or record["owner_id"] != actor.id:
                raise Forbidden("Only the record's owner releases it to the pool.", field="id")
            return self._enter(conn, pool, record, store.RELEASE, actor.id, reason)

    def return_to_pool(self, actor: Actor, pool_name: str, record_id: Any, reason: Any = None) -> PoolMove:
        """Put any record of the pooled object into the pool, owned or not (administrators)."""
        _require_admin(actor)
        record_id = _record_id(record_id)
        with self._transaction() as conn:
            pool = self._load(conn, pool_name)
            reason = None if reason is None else _reason(reason)
            record = self._pooled_record(conn, pool, record_id)
            return self._enter(conn, pool, record, store.RETURN, actor.id, reason)

    def enter(self, conn: Connection, pool_name: str, record_id: str, *, actor_id: str | None = None,
              reason: str | None = None) -> PoolMove:
        """Put a record into the pool inside the caller's transaction (an assignment rule on a
        record being created); ``actor_id`` ``None``: the platform moved it."""
        pool = self._load(conn, pool_name)
        return self._enter(conn, pool, self._pooled_record(conn, pool, record_id), store.RETURN, actor_id, reason)

    def moves(self, actor: Actor, pool_name: str, record_id: Any = None) -> list[PoolMove]:
        """The pool's moves in the order they happened, of one record or all (administrators and members)."""
        with self.engine.connect() as conn:
            pool = self._load(conn, pool_name)
            self._require_member_or_admin(conn, actor, pool)
            query = select(MOVES).where(MOVES.c.pool == pool.api_name).order_by(MOVES.c.id)
            if record_id is not None:
                query = query.where(MOVES.c.record_id == _record_id(record_id))
            return [PoolMove.from_row(row) for row in conn.execute(query)]

    # -- time-driven (scheduled jobs) ------------------------------------------------------------
    def recycle_due(self) -> int:
        """Move every owned record whose protection ran out into its pool, telling its previous
        owner; returns how many moved. Safe to run again: a moved record has no owner."""
        moved = 0
        for pool in self._active_pools():
            now = self.clock.now()
            with self.engine.connect() as conn:
                catalog = self.records.catalogs.current(conn)
                due = idle_records(conn, catalog, pool, now - timedelta(days=pool.protection_days))
            for row in due:
                try:
                    with self._transaction() as conn:
                        record = self.records.joined(conn).get(SYSTEM_ACTOR, pool.object_api_name, str(row.id),
                                                               fields=["id", "owner_id", "version"])
                        if record["version"] != row.version or record["owner_id"] is None:
                            continue
                        move = self._enter(conn, pool, record, store.RECYCLE, None, None)
                        self._tell(conn, move.from_owner_id, "pool.recycled", f"Returned to the pool '{pool.label}'",
                                   f"Nobody followed this record up for {pool.protection_days} days.", pool,
                                   move.record_id, f"pool:{pool.api_name}:recycle:{move.record_id}:{move.id}")
                    moved += 1
                except LowcodeError as error:
                    log.warning("pool %s: record %s was not recycled: %s", pool.api_name, row.id, error.message)
        return moved

    def remind_due(self) -> int:
        """Tell the owners of records whose protection runs out within the pool's ``reminder_days``;
        each owner hears once per record and protection period. Returns how many were told."""
        told = 0
        for pool in self._active_pools():
            if not pool.reminder_days:
                continue
            now = self.clock.now()
            with self._transaction() as conn:
                catalog = self.records.catalogs.current(conn)
                due_at = now - timedelta(days=pool.protection_days)
                due = {str(r.id) for r in idle_records(conn, catalog, pool, due_at)}
                soon = [r for r in idle_records(conn, catalog, pool, due_at + timedelta(days=pool.reminder_days))
                        if str(r.id) not in due]
                starts = protection_starts(conn, catalog, pool, [str(r.id) for r in soon])
                for row in soon:
                    record_id = str(row.id)
                    ends = starts[record_id] + timedelta(days=pool.protection_days)
                    told += self._tell(conn, _text(row.owner_id), "pool.reminder", f"Follow up before {ends.isoformat()}",
                                       f"Without a follow-up this record returns to the pool '{pool.label}'.", pool,
                                       record_id, f"pool:{pool.api_name}:remind:{record_id}:{starts[record_id].isoformat()}")
        return told

    # -- steps -----------------------------------------------------------------------------------
    def _enter(self, conn: Connection, pool: Pool, record: dict[str, Any], action: str, actor_id: str | None,
               reason: str | None) -> PoolMove:
        """The record leaves its owner for the pool: owner cleared, entry in the pool, move recorded."""
        now = self.clock.now()
        previous = record["owner_id"]
        if previous is not None:
            self.records.joined(conn).update(SYSTEM_ACTOR, pool.object_api_name, record["id"], {"owner_id": None})
        values = {"status": store.IN_POOL, "entered_at": now, "previous_owner_id": previous}
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(ENTRIES).values(pool=pool.api_name, record_id=record["id"], **values)
                     .on_conflict_do_update(index_elements=[ENTRIES.c.pool, ENTRIES.c.record_id], set_=values))
        return self._record_move(conn, pool, record["id"], action, actor_id, previous, None, reason, now)

    @staticmethod
    def _record_move(conn, pool, record_id, action, actor_id, from_owner, to_owner, reason, at) -> PoolMove:
        row = conn.execute(insert(MOVES).values(
            pool=pool.api_name, record_id=record_id, action=action, actor_id=actor_id, from_owner_id=from_owner,
            to_owner_id=to_owner, reason=reason, at=at).returning(*MOVES.columns)).one()
        return PoolMove.from_row(row)

    def _tell(self, conn, user_id, kind, title, body, pool, record_id, key) -> int:
        if self.notifications is None or user_id is None:
            return 0
        try:
            return self.notifications.notify([user_id], kind, title, body, record=(pool.object_api_name, record_id),
                                             key=key, conn=conn)
        except ValidationFailed:
            return 0

    def _pooled_record(self, conn: Connection, pool: Pool, record_id: str) -> dict[str, Any]:
        try:
            return self.records.joined(conn).get(SYSTEM_ACTOR, pool.object_api_name, record_id, fields=["id", "owner_id"])
        except NotFound:
            raise NotFound(f"There is no record '{record_id}' of the pool's object.", field="id") from None

    def _active_pools(self) -> list[Pool]:
        with self.engine.connect() as conn:
            names = conn.execute(select(POOLS.c.api_name).where(POOLS.c.active).order_by(POOLS.c.api_name)).scalars().all()
            return [self._load(conn, name) for name in names]

    @staticmethod
    def _row(conn: Connection, api_name: str):
        return conn.execute(select(POOLS).where(POOLS.c.api_name == api_name)).first()

    def _load(self, conn: Connection, api_name: Any, *, lock: bool = False) -> Pool:
        query = select(POOLS).where(POOLS.c.api_name == api_name)
        row = conn.execute(query.with_for_update() if lock else query).first() if isinstance(api_name, str) else None
        if row is None:
            raise NotFound(f"There is no pool named '{api_name}'.", field="pool")
        members = conn.execute(select(MEMBERS).where(MEMBERS.c.pool == api_name).order_by(MEMBERS.c.position)).all()
        return Pool.from_rows(row, members)

    @staticmethod
    def _save_members(conn: Connection, api_name: str, members: list) -> None:
        conn.execute(insert(MEMBERS), [{"pool": api_name, "position": i, "unit_id": m.unit_id,
                                        "include_below": m.include_below, "role": m.role} for i, m in enumerate(members)])

    @staticmethod
    def _require_member_or_admin(conn: Connection, actor: Actor, pool: Pool) -> None:
        if not _is_admin(actor) and not is_member(conn, pool, actor.id):
            raise Forbidden(f"Only members of the pool '{pool.label}' and administrators see it.")

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn


def _is_admin(actor: Actor) -> bool:
    return actor.is_system or (actor.access is not None and actor.access.administrator)


def _require_admin(actor: Actor) -> None:
    if not _is_admin(actor):
        raise Forbidden("Only administrators set up public pools.")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _record_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"There is no record '{value}' in the pool.", field="id") from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON:
        raise ValidationFailed.of([FieldError("REQUIRED" if not value else "INVALID_VALUE", "reason",
                                              f"say why, in 1 to {MAX_REASON} characters")])
    return value.strip()


def _listed_fields(obj, fields: list[str] | None) -> list[str]:
    if fields is None:
        return [f.api_name for f in obj.fields if f.type in LISTED_TYPES][:1]
    if not isinstance(fields, (list, tuple)):
        raise ValidationFailed.of([FieldError("INVALID_VALUE", "fields", "must be a list of field names")])
    problems = [FieldError("FORBIDDEN", f"fields.{i}", "is not a field members may read in the pool "
                           f"(its name-like fields: {', '.join(f.api_name for f in obj.fields if f.type in LISTED_TYPES)})")
                for i, name in enumerate(fields)
                if name != "id" and not any(f.api_name == name and f.type in LISTED_TYPES for f in obj.fields)]
    if problems:
        raise ValidationFailed.of(problems)
    return [name for name in dict.fromkeys(fields) if name != "id"]
