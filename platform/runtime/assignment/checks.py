"""The check of an assignment rule's settings when an administrator saves them: every problem at
its path inside the settings (``entries.0.condition``), nothing saved while one remains.

Beyond the shape, the check looks at the organisation as it is now: designated users exist and are
active, every round robin (a list, a group, each region) has at least one active user
(``NO_ACTIVE_USERS``), units and roles exist, a region field is a picklist or text field of the
object (a picklist's regions are its values), a pool exists and holds this object's records. People
may leave later; an entry that finds nobody then is passed over (see :mod:`.decisions`).
"""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Connection, select

from ...metadata.definitions import ObjectDef
from ...metadata.errors import FieldError
from ...metadata.expressions import expression_problems
from ..pools.store import pools as POOLS
from ..security import store as security_store
from . import candidates
from .settings import (
    ENTRY_KEYS,
    GROUP_KEYS,
    METHODS,
    POOL,
    REGION,
    ROUND_ROBIN,
    RULE_KEYS,
    USER,
    Group,
)

MAX_ENTRIES = 50
MAX_LISTED = 500
REGION_TYPES = ("picklist", "text")

Problem = Callable[..., None]


def settings_problems(conn: Connection, obj: ObjectDef, settings: Any) -> list[FieldError]:
    problems: list[FieldError] = []

    def problem(path: str | None, code: str, message: str, **ctx: Any) -> None:
        problems.append(FieldError(code, path, message, ctx))

    if not isinstance(settings, dict):
        problem(None, "INVALID_VALUE", "the settings are an object: {entries, on_create, notify_owner}")
        return problems
    for name in sorted(set(settings) - RULE_KEYS):
        problem(name, "UNKNOWN_FIELD", f"is not a setting of an assignment rule ({', '.join(sorted(RULE_KEYS))})")
    for name in ("on_create", "notify_owner"):
        if name in settings and not isinstance(settings[name], bool):
            problem(name, "INVALID_VALUE", "must be true or false")
    entries = settings.get("entries")
    if not entries:
        problem("entries", "REQUIRED", "lists at least one entry: {condition, method, ...}")
    elif not isinstance(entries, list):
        problem("entries", "INVALID_VALUE", "must be a list of entries")
    elif len(entries) > MAX_ENTRIES:
        problem("entries", "TOO_MANY", f"at most {MAX_ENTRIES} entries")
    else:
        for index, entry in enumerate(entries):
            _entry_problems(conn, obj, entry, f"entries.{index}", problem)
    return problems


def _entry_problems(conn: Connection, obj: ObjectDef, entry: Any, at: str, problem: Problem) -> None:
    if not isinstance(entry, dict):
        problem(at, "INVALID_VALUE", "an entry is an object: {condition, method, ...}")
        return
    condition = entry.get("condition")
    if condition is not None:
        for error in expression_problems(obj, condition, f"{at}.condition"):
            problem(error.field, error.code, error.message, **error.ctx)
    method = entry.get("method")
    if method is None:
        problem(f"{at}.method", "REQUIRED", f"says how records are assigned: one of {', '.join(METHODS)}")
        return
    if method not in METHODS:
        problem(f"{at}.method", "INVALID_VALUE", f"must be one of {', '.join(METHODS)}", value=method)
        return
    for name in sorted(set(entry) - ENTRY_KEYS[method] - {"condition", "method"}):
        problem(f"{at}.{name}", "UNKNOWN_FIELD", f"is not read by the method '{method}' "
                f"(it reads {', '.join(sorted(ENTRY_KEYS[method]))})")
    if method == USER:
        _user_problems(conn, entry.get("user"), f"{at}.user", problem)
    elif method == ROUND_ROBIN:
        _round_robin_problems(conn, entry, at, problem)
    elif method == REGION:
        _region_problems(conn, obj, entry, at, problem)
    elif method == POOL:
        _pool_problems(conn, obj, entry.get("pool"), f"{at}.pool", problem)


def _user_problems(conn: Connection, value: Any, at: str, problem: Problem) -> None:
    user_id = candidates.as_id(value)
    if value is None:
        problem(at, "REQUIRED", "names the user who receives the records")
    elif user_id is None:
        problem(at, "INVALID_VALUE", "must be a user id")
    else:
        state = candidates.user_states(conn, [user_id]).get(user_id)
        if state is None:
            problem(at, "NOT_FOUND", "is not a user", id=user_id)
        elif not state:
            problem(at, "INACTIVE_USER", "is a deactivated user; records cannot be assigned to them", id=user_id)


def _round_robin_problems(conn: Connection, entry: dict, at: str, problem: Problem) -> None:
    users, group = entry.get("users"), entry.get("group")
    if users is not None and group is not None:
        problem(at, "INVALID_VALUE", "takes turns over either a list of users or a group, not both")
    elif users is None and group is None:
        problem(at, "REQUIRED", "takes turns over a list of users (users) or the members of a unit (group)")
    elif users is not None:
        _list_problems(conn, users, f"{at}.users", problem)
    else:
        _group_problems(conn, group, f"{at}.group", problem)


def _list_problems(conn: Connection, users: Any, at: str, problem: Problem) -> None:
    if not isinstance(users, list) or not users:
        problem(at, "REQUIRED" if users == [] else "INVALID_VALUE", "lists the ids of the users who take turns")
        return
    if len(users) > MAX_LISTED:
        problem(at, "TOO_MANY", f"at most {MAX_LISTED} users; use a group instead")
        return
    ids = [candidates.as_id(value) for value in users]
    states = candidates.user_states(conn, [i for i in ids if i])
    seen: set[str] = set()
    for index, user_id in enumerate(ids):
        if user_id is None:
            problem(f"{at}.{index}", "INVALID_VALUE", "must be a user id")
        elif user_id in seen:
            problem(f"{at}.{index}", "DUPLICATE_VALUE", "is listed twice", id=user_id)
        elif user_id not in states:
            problem(f"{at}.{index}", "NOT_FOUND", "is not a user", id=user_id)
        seen.add(user_id or "")
    if states and not any(states.values()):
        problem(at, "NO_ACTIVE_USERS", "none of these users is active; records would have nobody to go to")


def _unit(conn: Connection, unit: Any, at: str, problem: Problem) -> str | None:
    """The id of an existing org unit, or ``None`` with the problem reported."""
    unit_id = candidates.as_id(unit)
    if unit is None:
        problem(at, "REQUIRED", "names an org unit")
    elif unit_id is None or candidates.unit_path(conn, unit_id) is None:
        problem(at, "NOT_FOUND", "is not an org unit", id=str(unit))
    else:
        return unit_id
    return None


def _reach(conn: Connection, given: dict, at: str, problem: Problem) -> tuple[bool, str | None] | None:
    """``(include_below, role)`` of a group or region, or ``None`` with the problems reported."""
    include_below, role = given.get("include_below", False), given.get("role")
    ok = True
    if not isinstance(include_below, bool):
        problem(f"{at}.include_below", "INVALID_VALUE", "must be true or false")
        ok = False
    if role is not None:
        roles = security_store.roles
        if not isinstance(role, str) or conn.execute(select(roles.c.name).where(roles.c.name == role)).first() is None:
            problem(f"{at}.role", "NOT_FOUND", "is not a role", name=str(role))
            ok = False
    return (include_below, role) if ok else None


def _nobody(conn: Connection, group: Group, at: str, problem: Problem, what: str) -> None:
    if not candidates.members(conn, group):
        in_role = f" in the role '{group.role}'" if group.role else ""
        problem(at, "NO_ACTIVE_USERS", f"{what} has no active member{in_role}; records would have nobody to go to", unit=group.unit)


def _group_problems(conn: Connection, group: Any, at: str, problem: Problem) -> None:
    if not isinstance(group, dict):
        problem(at, "INVALID_VALUE", "a group is {unit, include_below, role}")
        return
    for name in sorted(set(group) - GROUP_KEYS):
        problem(f"{at}.{name}", "UNKNOWN_FIELD", "is not a setting of a group (unit, include_below, role)")
    unit_id = _unit(conn, group.get("unit"), f"{at}.unit", problem)
    reach = _reach(conn, group, at, problem)
    if unit_id is not None and reach is not None:
        _nobody(conn, Group(unit_id, *reach), at, problem, "the group")


def _region_problems(conn: Connection, obj: ObjectDef, entry: dict, at: str, problem: Problem) -> None:
    name = entry.get("field")
    field = obj.field(name) if isinstance(name, str) else None
    if name is None:
        problem(f"{at}.field", "REQUIRED", "names the field that holds the record's region")
    elif field is None:
        problem(f"{at}.field", "NOT_FOUND", f"is not a field of {obj.label}", name=str(name))
    elif field.type not in REGION_TYPES:
        problem(f"{at}.field", "INVALID_VALUE", f"must be a {' or '.join(REGION_TYPES)} field, not {field.type}", type=field.type)
    picklist = {v["api_name"] for v in field.options.get("values", ())} if field is not None and field.type == "picklist" else None
    regions = entry.get("regions")
    if not regions:
        problem(f"{at}.regions", "REQUIRED", "maps values of the field to org units: {value: unit id}")
        regions = {}
    elif not isinstance(regions, dict):
        problem(f"{at}.regions", "INVALID_VALUE", "must map values of the field to org unit ids")
        regions = {}
    reach = _reach(conn, entry, at, problem)
    places = [(f"{at}.regions.{value}", unit, value) for value, unit in regions.items()]
    if entry.get("fallback_unit") is not None:
        places.append((f"{at}.fallback_unit", entry["fallback_unit"], None))
    for path, unit, value in places:
        if picklist is not None and value is not None and value not in picklist:
            problem(path, "UNKNOWN_VALUE", f"is not a value of the picklist '{field.api_name}'", value=value)
            continue
        unit_id = _unit(conn, unit, path, problem)
        if unit_id is not None and reach is not None:
            _nobody(conn, Group(unit_id, *reach), path, problem, "the region's unit")


def _pool_problems(conn: Connection, obj: ObjectDef, name: Any, at: str, problem: Problem) -> None:
    if name is None:
        problem(at, "REQUIRED", "names the public pool the records wait in")
        return
    row = conn.execute(select(POOLS.c.object_api_name).where(POOLS.c.api_name == name)).first() if isinstance(name, str) else None
    if row is None:
        problem(at, "NOT_FOUND", "is not a public pool", name=str(name))
    elif row.object_api_name != obj.api_name:
        problem(at, "INVALID_VALUE", f"holds {row.object_api_name} records, not {obj.label} records", object=row.object_api_name)
