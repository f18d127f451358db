"""A pool's settings: the dataclass callers read, and the check of a definition an administrator
gives (every problem reported at once, each at its field)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ...metadata.catalog import Catalog
from ...metadata.errors import FieldError
from ...metadata.names import API_NAME
from ..security import store as security_store
from ..security.policies import UNITS
from .store import ACTIVITY, PROTECTIONS, STAGE

LOOKUP_TYPES = ("lookup", "master_detail")
RANGES = {
    "protection_days": (1, 3650),
    "reminder_days": (0, 3650),
    "daily_claim_limit": (1, 10_000),
    "max_held": (1, 1_000_000),
    "cooldown_days": (0, 3650),
}
DEFAULTS = {"reminder_days": 0, "cooldown_days": 0, "active": True, "activity_object": None, "activity_field": None,
            "stage": None}
SETTINGS = ("label", "object_api_name", "protection", "activity_object", "activity_field", "stage", *RANGES, "active")


@dataclass(frozen=True)
class PoolMember:
    unit_id: str
    include_below: bool = False
    role: str | None = None


@dataclass(frozen=True)
class Pool:
    api_name: str
    label: str
    object_api_name: str
    protection: str
    activity_object: str | None
    activity_field: str | None
    stage: str | None
    protection_days: int
    reminder_days: int
    daily_claim_limit: int
    max_held: int
    cooldown_days: int
    active: bool
    members: tuple[PoolMember, ...]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_rows(cls, row, member_rows) -> "Pool":
        values = row._mapping
        members = tuple(PoolMember(str(m.unit_id), m.include_below, m.role) for m in member_rows)
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name != "members"}, members=members)

    def settings(self) -> dict[str, Any]:
        """The definition that would create this pool again."""
        return {"api_name": self.api_name, **{name: getattr(self, name) for name in SETTINGS},
                "members": [{"unit_id": m.unit_id, "include_below": m.include_below, "role": m.role} for m in self.members]}


def checked(definition: Any, catalog: Catalog, conn: Connection) -> tuple[dict[str, Any], list[PoolMember], list[FieldError]]:
    """The pool's column values and members from ``definition``, and every problem found."""
    if not isinstance(definition, dict):
        return {}, [], [FieldError("INVALID_VALUE", None, "a pool definition is an object of settings")]
    given = {**DEFAULTS, **definition}
    problems: list[FieldError] = []

    def problem(field: str, message: str, code: str = "INVALID_VALUE", **ctx: Any) -> None:
        problems.append(FieldError(code, field, message, ctx))

    for name in sorted(set(given) - {"api_name", "members", *SETTINGS}):
        problem(name, "is not a pool setting", "UNKNOWN_FIELD")
    api_name = given.get("api_name")
    if not isinstance(api_name, str) or not API_NAME.match(api_name):
        problem("api_name", "must be 1 to 63 lowercase letters, digits or '_', starting with a letter")
    label = given.get("label")
    if not isinstance(label, str) or not label.strip() or len(label) > 255:
        problem("label", "must be text of 1 to 255 characters", "REQUIRED" if label is None else "INVALID_VALUE")
    for name, (low, high) in RANGES.items():
        value = given.get(name)
        if value is None:
            problem(name, f"is required: a whole number from {low} to {high}", "REQUIRED")
        elif not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problem(name, f"must be a whole number from {low} to {high}", "OUT_OF_RANGE")
    reminder, protection_days = given.get("reminder_days"), given.get("protection_days")
    if (all(isinstance(v, int) and not isinstance(v, bool) for v in (reminder, protection_days))
            and 0 < protection_days <= reminder):
        problem("reminder_days", "must be fewer days than protection_days (0: no reminder)", "OUT_OF_RANGE")
    if not isinstance(given.get("active"), bool):
        problem("active", "must be true or false")

    obj = _pooled_object(given.get("object_api_name"), catalog, problem)
    protection = given.get("protection")
    if protection not in PROTECTIONS:
        problem("protection", f"must be one of {', '.join(PROTECTIONS)}")
    if protection == ACTIVITY:
        _check_activity(given, obj, catalog, problem)
        for name in ("stage",):
            if given.get(name) is not None:
                problem(name, "applies to stage protection only; leave it empty")
    if protection == STAGE:
        for name in ("activity_object", "activity_field"):
            if given.get(name) is not None:
                problem(name, "applies to activity protection only; leave it empty")
        _check_stage(given.get("stage"), obj, problem)
    members = _members(given.get("members"), conn, problem)
    values = {name: given.get(name) for name in ("api_name", *SETTINGS)}
    return values, members, problems


def _pooled_object(name: Any, catalog: Catalog, problem):
    obj = catalog.objects.get(name) if isinstance(name, str) else None
    if name is None:
        problem("object_api_name", "names the object whose records the pool holds", "REQUIRED")
    elif obj is None:
        problem("object_api_name", "is not an object", "NOT_FOUND", name=name)
    elif obj.system:
        problem("object_api_name", "is a built-in object; pools hold records of business objects")
        obj = None
    return obj


def _check_activity(given: dict[str, Any], obj, catalog: Catalog, problem) -> None:
    name, field_name = given.get("activity_object"), given.get("activity_field")
    activity = catalog.objects.get(name) if isinstance(name, str) else None
    if name is None:
        problem("activity_object", "names the object whose records count as follow-ups", "REQUIRED")
    elif activity is None:
        problem("activity_object", "is not an object", "NOT_FOUND", name=name)
    if field_name is None:
        problem("activity_field", "names the activity's lookup to the pooled object", "REQUIRED")
        return
    if activity is None or obj is None:
        return
    field = activity.field(field_name) if isinstance(field_name, str) else None
    if field is None:
        problem("activity_field", f"is not a field of {activity.label}", "NOT_FOUND", name=field_name)
    elif field.type not in LOOKUP_TYPES or field.target != obj.api_name:
        problem("activity_field", f"must be a lookup from {activity.label} to {obj.label}", "INVALID_VALUE",
                target=obj.api_name)


def _check_stage(stage: Any, obj, problem) -> None:
    if stage is None:
        problem("stage", "names the stage a record must reach to stay with its owner", "REQUIRED")
    elif obj is None:
        return
    elif not obj.has_stages:
        problem("stage", f"{obj.label} records have no stages; use activity protection", "INVALID_VALUE")
    elif not isinstance(stage, str) or obj.stage(stage) is None:
        problem("stage", f"is not a stage of {obj.label}", "NOT_FOUND", name=stage)


def _members(given: Any, conn: Connection, problem) -> list[PoolMember]:
    if given is None or given == []:
        problem("members", "lists at least one org unit (optionally with a role) whose people use the pool", "REQUIRED")
        return []
    if not isinstance(given, (list, tuple)):
        problem("members", "must be a list of {unit_id, include_below, role}")
        return []
    found: list[tuple[int, PoolMember]] = []
    for index, item in enumerate(given):
        at = f"members.{index}"
        if not isinstance(item, dict) or set(item) - {"unit_id", "include_below", "role"}:
            problem(at, "must be {unit_id, include_below, role}")
            continue
        unit_id, include_below, role = _as_uuid(item.get("unit_id")), item.get("include_below", False), item.get("role")
        if unit_id is None:
            problem(f"{at}.unit_id", "must be an org unit id", "REQUIRED" if item.get("unit_id") is None else "INVALID_VALUE")
        if not isinstance(include_below, bool):
            problem(f"{at}.include_below", "must be true or false")
        if role is not None and not isinstance(role, str):
            problem(f"{at}.role", "must be a role name")
        elif unit_id is not None and isinstance(include_below, bool):
            found.append((index, PoolMember(unit_id, include_below, role)))
    units = {str(u) for u in conn.execute(select(UNITS.c.id).where(
        UNITS.c.id.in_(sorted({m.unit_id for _, m in found})), UNITS.c.deleted_at.is_(None))).scalars()}
    roles_table = security_store.roles
    roles = set(conn.execute(select(roles_table.c.name).where(
        roles_table.c.name.in_(sorted({m.role for _, m in found if m.role is not None})))).scalars())
    for index, member in found:
        if member.unit_id not in units:
            problem(f"members.{index}.unit_id", "is not an org unit", "NOT_FOUND", id=member.unit_id)
        if member.role is not None and member.role not in roles:
            problem(f"members.{index}.role", "is not a role", "NOT_FOUND", name=member.role)
    return [member for _, member in found]


def _as_uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None
