"""Taking turns: the next candidate after the one who got the last turn, wrapping around.

The cursor row is locked for the rest of the write (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
runs one writer at a time), so concurrent writes take turns one after another and N assignments
over K people give each N/K (±1). The first turn creates the row (``INSERT ... ON CONFLICT DO
NOTHING``: a concurrent first turn waits for it and then queues on the lock). The last owner is
found again by key (among the candidates, or looked up when they left), so a candidate who left,
was deactivated or joined keeps the rotation going where it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .candidates import Candidate
from .store import cursors

C = cursors.c


@dataclass(frozen=True)
class Turns:
    """One round robin: of a rule's entry (and region) on an object."""

    object_api_name: str
    rule: str
    entry: str

    @property
    def key(self) -> dict[str, str]:
        return {"object_api_name": self.object_api_name, "rule": self.rule, "entry": self.entry}


def take_turn(conn: Connection, turns: Turns, candidates: list[Candidate], key_of: Callable[[str], Any | None],
              now: datetime) -> str:
    """The candidate whose turn it is (``candidates`` ordered and not empty), recorded as the last."""
    where = (C.object_api_name == turns.object_api_name, C.rule == turns.rule, C.entry == turns.entry)
    locked = select(C.last_user_id, C.counter).where(*where).with_for_update()
    row = conn.execute(locked).first()
    if row is None:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(cursors).values(**turns.key, last_user_id=None, counter=0, updated_at=now)
                     .on_conflict_do_nothing(index_elements=[C.object_api_name, C.rule, C.entry]))
        row = conn.execute(locked).one()
    last = None if row.last_user_id is None else str(row.last_user_id)
    mark = next((key for key, user_id in candidates if user_id == last), None) if last is not None else None
    if mark is None and last is not None:
        mark = key_of(last)
    chosen = candidates[0][1]
    if mark is not None:
        chosen = next((user_id for key, user_id in candidates if key > mark), chosen)
    conn.execute(update(cursors).where(*where).values(last_user_id=chosen, counter=row.counter + 1, updated_at=now))
    return chosen

