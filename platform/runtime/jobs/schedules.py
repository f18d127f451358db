"""Periodic jobs: a schedule enqueues its job once per slot of its interval.

Slots are aligned to the Unix epoch (an hourly schedule's slots start on the hour). A tick locks
each due schedule row, enqueues the job of the current slot under the dedupe key
``schedule:<name>@<slot start>`` and moves ``next_run_at`` to the next slot, in one transaction:
two tickers at once, or a ticker restarted with a new process, cannot enqueue a slot twice. Slots
missed while nothing ticked are not made up one by one: the next tick enqueues the current slot.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...metadata.errors import FieldError, NotFound, ValidationFailed
from . import store

if TYPE_CHECKING:
    from .service import JobService

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SCHEDULES = store.schedules
S = SCHEDULES.c


def slot_start(now: datetime, interval_seconds: int) -> datetime:
    """The start of the slot holding ``now``."""
    elapsed = int((now - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=elapsed - elapsed % interval_seconds)


def dedupe_key(name: str, slot: datetime) -> str:
    return f"schedule:{name}@{slot.isoformat()}"


class Schedules:
    def __init__(self, jobs: "JobService"):
        self.jobs = jobs

    def schedule(self, name: str, kind: str, every_seconds: int, payload: Any = None, *,
                 conn: Connection | None = None) -> dict[str, Any] | None:
        """Create or change a schedule (made active). A new one fires at the first tick; a
        changed one keeps its next slot, so declaring schedules at every start is harmless.
        With ``conn`` the declaration joins that open transaction (and returns nothing)."""
        problems = []
        if not isinstance(name, str) or not 1 <= len(name) <= S.name.type.length:
            problems.append(FieldError("INVALID_VALUE", "name", "must be a name of 1 to 127 characters"))
        if not isinstance(every_seconds, int) or every_seconds < 1:
            problems.append(FieldError("INVALID_VALUE", "every_seconds", "must be a whole number of seconds, at least 1"))
        if problems:
            raise ValidationFailed.of(problems)
        payload = {} if payload is None else payload
        row = self.jobs._new_row(kind, payload, None, None, None)
        values = {"name": name, "kind": row["kind"], "payload": payload, "interval_seconds": every_seconds, "active": True}
        first_slot = slot_start(self.jobs.clock.now(), every_seconds)
        if conn is not None:
            _upsert(conn, first_slot, values)
            return None
        with self.jobs._transaction() as own:
            _upsert(own, first_slot, values)
        return self.get(name)

    def deactivate(self, name: str) -> dict[str, Any]:
        with self.jobs._transaction() as conn:
            if conn.execute(update(SCHEDULES).where(S.name == name).values(active=False)).rowcount == 0:
                raise NotFound(f"There is no schedule named '{name}'.", field="name")
        return self.get(name)

    def remove(self, name: str, *, conn: Connection) -> bool:
        """Delete a schedule inside the caller's transaction (its last user went); whether there was one."""
        return conn.execute(delete(SCHEDULES).where(S.name == name)).rowcount > 0

    def get(self, name: str) -> dict[str, Any]:
        with self.jobs.engine.connect() as conn:
            row = conn.execute(select(SCHEDULES).where(S.name == name)).first()
        if row is None:
            raise NotFound(f"There is no schedule named '{name}'.", field="name")
        return dict(row._mapping)

    def list(self) -> list[dict[str, Any]]:
        with self.jobs.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(SCHEDULES).order_by(S.name))]

    def tick(self) -> list[str]:
        """Enqueue the current slot's job of every due schedule; returns the ids of the jobs made."""
        now = self.jobs.clock.now()
        made = []
        with self.jobs._transaction() as conn:
            due = conn.execute(select(SCHEDULES).where(S.active, S.next_run_at <= now).order_by(S.name)
                               .with_for_update(skip_locked=True)).all()
            for schedule in due:
                slot = slot_start(now, schedule.interval_seconds)
                job_id, inserted = self.jobs._insert(conn, self.jobs._new_row(
                    schedule.kind, schedule.payload, dedupe_key(schedule.name, slot), None, None))
                if inserted:
                    made.append(job_id)
                conn.execute(update(SCHEDULES).where(S.name == schedule.name)
                             .values(next_run_at=slot + timedelta(seconds=schedule.interval_seconds)))
        self.jobs.dispatch(made)
        return made


def _upsert(conn: Connection, first_slot: datetime, values: dict[str, Any]) -> None:
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(dialect_insert(SCHEDULES).values(next_run_at=first_slot, **values)
                 .on_conflict_do_update(index_elements=[S.name], set_=values))
