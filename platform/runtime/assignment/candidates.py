"""Who may receive records: active users, in the order their turns come.

A designated user or a list keeps the order given; a group (a unit, its sub-units with
``include_below``, one role or any) is ordered by username then id, a stable order that survives
restarts and does not depend on when people joined. Deleted and deactivated users never get a turn.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterable

from sqlalchemy import Connection, select

from ..security import store as security_store
from ..security.changes import USERS
from ..security.policies import UNITS
from .settings import Group

MEMBERSHIPS = security_store.memberships
Candidate = tuple[Any, str]
"""``(order key, user id)``: turns go in order of the key."""


def as_id(value: Any) -> str | None:
    """The canonical id in ``value``, or ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def user_states(conn: Connection, user_ids: Iterable[str]) -> dict[str, bool]:
    """Whether each existing (not deleted) user is active; unknown ids are absent."""
    ids = sorted({i for i in user_ids if i})
    if not ids:
        return {}
    rows = conn.execute(select(USERS.c.id, USERS.c.active).where(USERS.c.id.in_(ids), USERS.c.deleted_at.is_(None)))
    return {str(row.id): bool(row.active) for row in rows}


def listed(conn: Connection, user_ids: Iterable[str]) -> list[Candidate]:
    """The active users of a list, keyed by their place in it."""
    ids = list(user_ids)
    states = user_states(conn, ids)
    return [(index, user_id) for index, user_id in enumerate(ids) if states.get(user_id)]


def place_in_list(user_ids: Iterable[str], user_id: str) -> int | None:
    return next((index for index, listed_id in enumerate(user_ids) if listed_id == user_id), None)


def members(conn: Connection, group: Group) -> list[Candidate]:
    """The group's active members, keyed by ``(username, id)``; none when its unit is gone."""
    path = unit_path(conn, group.unit)
    if path is None:
        return []
    where = [USERS.c.deleted_at.is_(None), UNITS.c.deleted_at.is_(None)]
    where.append(UNITS.c.path.startswith(path, autoescape=True) if group.include_below else UNITS.c.id == group.unit)
    if group.role is not None:
        where.append(MEMBERSHIPS.c.role_name == group.role)
    rows = conn.execute(select(USERS.c.id, USERS.c.username, USERS.c.active).distinct()
                        .select_from(MEMBERSHIPS.join(USERS, USERS.c.id == MEMBERSHIPS.c.user_id)
                                     .join(UNITS, UNITS.c.id == MEMBERSHIPS.c.unit_id))
                        .where(*where))
    return sorted(((row.username or "", str(row.id)), str(row.id)) for row in rows if row.active)


def username_key(conn: Connection, user_id: str) -> tuple[str, str] | None:
    """The order key of any user who ever was (also deactivated or deleted ones)."""
    row = conn.execute(select(USERS.c.username).where(USERS.c.id == user_id)).first()
    return None if row is None else (row.username or "", user_id)


def unit_path(conn: Connection, unit_id: str) -> str | None:
    row = conn.execute(select(UNITS.c.path).where(UNITS.c.id == unit_id, UNITS.c.deleted_at.is_(None))).first()
    return None if row is None else row.path
