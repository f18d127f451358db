"""Who may use a pool: users with a membership in one of its units (or below it, when the pool
says so), in the role the pool names if it names one."""
from __future__ import annotations

from sqlalchemy import Connection, select

from ..security import store as security_store
from ..security.policies import UNITS
from .definitions import Pool

MEMBERSHIPS = security_store.memberships


def is_member(conn: Connection, pool: Pool, user_id: str | None) -> bool:
    if user_id is None or not pool.members:
        return False
    held = conn.execute(select(MEMBERSHIPS.c.role_name, UNITS.c.path)
                        .select_from(MEMBERSHIPS.join(UNITS, UNITS.c.id == MEMBERSHIPS.c.unit_id))
                        .where(MEMBERSHIPS.c.user_id == user_id, UNITS.c.deleted_at.is_(None))).all()
    if not held:
        return False
    paths = dict(conn.execute(select(UNITS.c.id, UNITS.c.path).where(
        UNITS.c.id.in_(sorted({m.unit_id for m in pool.members})), UNITS.c.deleted_at.is_(None))).all())
    paths = {str(unit_id): path for unit_id, path in paths.items()}
    for member in pool.members:
        path = paths.get(member.unit_id)
        if path is None:
            continue
        for role_name, unit_path in held:
            inside = unit_path == path or (member.include_below and unit_path.startswith(path))
            if inside and (member.role is None or member.role == role_name):
                return True
    return False
