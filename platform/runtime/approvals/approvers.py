"""Who decides a step, from the org tree (units with parents, memberships user × unit × role).

Units have no manager of their own, so a manager is a role:

- ``{"approver": "user", "user": id}``: that user;
- ``{"approver": "manager", "role": r}``: the holders of ``r`` in the submitter's unit; when it has
  none, in its parent unit, and so on up to the root (the nearest unit with a holder wins);
- ``{"approver": "role", "role": r}``: every holder of ``r`` in the submitter's unit or any unit
  above it (a team at the top of the tree serves every unit below).

The submitter's units are those of all their memberships (each walked on its own, approvers
united). Only active users count, and never the submitter: nobody approves their own request, and
a manager who submits is approved by the manager above.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection, select

from ..security import store as security_store
from ..security.changes import USERS
from ..security.policies import UNITS

MEMBERSHIPS = security_store.memberships
CHUNK = 500


def active_users(conn: Connection, user_ids: Iterable[str]) -> set[str]:
    """Those of ``user_ids`` that are active users (not deleted, not deactivated)."""
    ids = sorted(set(filter(None, user_ids)))
    found: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(select(USERS.c.id, USERS.c.active).where(USERS.c.id.in_(ids[start:start + CHUNK]),
                                                                     USERS.c.deleted_at.is_(None)))
        found.update(str(row.id) for row in rows if row.active)
    return found


def approvers(conn: Connection, approver: str, submitter: str, *, user: str | None = None, role: str | None = None) -> list[str]:
    """The user ids who may decide a step for ``submitter``'s request, sorted."""
    if approver == "user":
        return sorted(active_users(conn, [user]) - {submitter})
    chains = _unit_chains(conn, submitter)
    holders = _holders(conn, role, {unit for chain in chains for unit in chain}, submitter)
    found: set[str] = set()
    for chain in chains:
        for unit in chain:
            if holders.get(unit):
                found |= holders[unit]
                if approver == "manager":
                    break
    return sorted(found)


def _unit_chains(conn: Connection, user_id: str) -> list[list[str]]:
    """For each unit the user is a member of: the unit, its parent, ... up to the root."""
    paths = conn.execute(select(UNITS.c.path).select_from(MEMBERSHIPS.join(UNITS, UNITS.c.id == MEMBERSHIPS.c.unit_id)).where(
        MEMBERSHIPS.c.user_id == user_id, UNITS.c.deleted_at.is_(None)).distinct()).scalars()
    return [list(reversed([unit for unit in path.split("/") if unit])) for path in sorted(p for p in paths if p)]


def _holders(conn: Connection, role: str | None, units: set[str], submitter: str) -> dict[str, set[str]]:
    """The active users other than the submitter holding ``role`` in each of ``units``."""
    if role is None or not units:
        return {}
    rows = conn.execute(select(MEMBERSHIPS.c.unit_id, MEMBERSHIPS.c.user_id).where(
        MEMBERSHIPS.c.role_name == role, MEMBERSHIPS.c.unit_id.in_(sorted(units)))).all()
    active = active_users(conn, [str(row.user_id) for row in rows]) - {submitter}
    found: dict[str, set[str]] = {}
    for row in rows:
        if str(row.user_id) in active:
            found.setdefault(str(row.unit_id), set()).add(str(row.user_id))
    return found
