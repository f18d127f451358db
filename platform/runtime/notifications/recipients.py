"""Who a notification reaches: given users checked to be active, or the members of org units and
roles resolved to users (each once, active ones only)."""
from __future__ import annotations

import uuid
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, or_, select

from ...metadata.errors import FieldError
from ..security import store as security_store
from ..security.changes import USERS
from ..security.policies import UNITS

CHUNK = 500
"""Ids looked up per statement (well under every database's limit of bound parameters)."""

MEMBERSHIPS = security_store.memberships
ROLES = security_store.roles


def chunks(values: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def id_list(values: Any, field: str, what: str) -> tuple[list[str], list[FieldError]]:
    """The ids of a list argument as canonical strings, with an error for each malformed one."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return [], [FieldError("INVALID_VALUE", field, f"must be a list of {what} ids")]
    ids, problems = [], []
    for index, value in enumerate(values):
        try:
            ids.append(str(uuid.UUID(str(value))))
        except ValueError:
            ids.append("")
            problems.append(FieldError("INVALID_VALUE", f"{field}.{index}", f"must be a {what} id (a UUID)"))
    return ids, problems


def inactive_users(conn: Connection, user_ids: list[str]) -> list[FieldError]:
    """An error for each id that is not an active user (unknown, deleted or deactivated)."""
    active: set[str] = set()
    for chunk in chunks(sorted(set(filter(None, user_ids)))):
        rows = conn.execute(select(USERS.c.id, USERS.c.active).where(USERS.c.id.in_(chunk), USERS.c.deleted_at.is_(None)))
        active.update(str(row.id) for row in rows if row.active)
    return [FieldError("NOT_FOUND", f"user_ids.{index}", "is not an active user (unknown, deleted or deactivated)",
                       {"id": user_id})
            for index, user_id in enumerate(user_ids) if user_id and user_id not in active]


def unit_paths(conn: Connection, unit_ids: list[str]) -> tuple[list[str], list[FieldError]]:
    """The materialized paths of the units, with an error for each unit that does not exist."""
    found: dict[str, str] = {}
    for chunk in chunks(sorted(set(filter(None, unit_ids)))):
        rows = conn.execute(select(UNITS.c.id, UNITS.c.path).where(UNITS.c.id.in_(chunk), UNITS.c.deleted_at.is_(None)))
        found.update((str(row.id), row.path) for row in rows)
    problems = [FieldError("NOT_FOUND", f"unit_ids.{index}", "is not an org unit", {"id": unit_id})
                for index, unit_id in enumerate(unit_ids) if unit_id and unit_id not in found]
    return list(dict.fromkeys(found[u] for u in unit_ids if u in found)), problems


def checked_roles(conn: Connection, role_names: Any, field: str) -> tuple[list[str], list[FieldError]]:
    """The role names, with an error for each that is not a role."""
    if isinstance(role_names, (str, bytes)) or not isinstance(role_names, Iterable):
        return [], [FieldError("INVALID_VALUE", field, "must be a list of role names")]
    names = list(role_names)
    known = {str(n) for n in conn.execute(select(ROLES.c.name).where(ROLES.c.name.in_([n for n in names if isinstance(n, str)]))).scalars()}
    return names, [FieldError("NOT_FOUND", f"{field}.{index}", "is not a role", {"name": name})
                   for index, name in enumerate(names) if name not in known]


def members(conn: Connection, paths: list[str] | None, *, include_below: bool, roles: list[str] | None) -> list[str]:
    """The active users holding a membership in the units of ``paths`` (and below them), in any
    role or only in ``roles``; ``paths`` ``None``: in any unit. Each user once, in id order."""
    if paths == [] or roles == []:
        return []
    query = (select(MEMBERSHIPS.c.user_id, USERS.c.active).distinct()
             .select_from(MEMBERSHIPS.join(USERS, USERS.c.id == MEMBERSHIPS.c.user_id)
                          .join(UNITS, UNITS.c.id == MEMBERSHIPS.c.unit_id))
             .where(USERS.c.deleted_at.is_(None), UNITS.c.deleted_at.is_(None)))
    if paths is not None:
        if include_below:
            query = query.where(or_(*(UNITS.c.path.startswith(path, autoescape=True) for path in paths)))
        else:
            query = query.where(UNITS.c.path.in_(paths))
    if roles is not None:
        query = query.where(MEMBERSHIPS.c.role_name.in_(roles))
    return sorted({str(row.user_id) for row in conn.execute(query) if row.active})
