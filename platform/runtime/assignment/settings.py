"""The settings of an assignment rule, read into plain values.

``{"entries": [...], "on_create": true, "notify_owner": true}``; each entry is
``{"condition": CEL or null, "method": ..., <the method's keys>}``:

- ``user``: ``"user": <user id>``, one designated owner;
- ``round_robin``: ``"users": [<user id>, ...]`` (turns in the order listed) or
  ``"group": {"unit": <unit id>, "include_below": bool, "role": <role name> or null}`` (turns over
  the group's active members, by username);
- ``region``: ``"field": <picklist or text field>``, ``"regions": {<field value>: <unit id>}``,
  ``"fallback_unit"``: a unit for other values (optional), ``"include_below"`` and ``"role"`` as for a
  group: turns over the active members of the record's region, which becomes the record's unit;
- ``pool``: ``"pool": <public pool api name>``, the record waits in that pool without an owner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

USER, ROUND_ROBIN, REGION, POOL = "user", "round_robin", "region", "pool"
METHODS = (USER, ROUND_ROBIN, REGION, POOL)
ENTRY_KEYS = {
    USER: frozenset({"user"}),
    ROUND_ROBIN: frozenset({"users", "group"}),
    REGION: frozenset({"field", "regions", "fallback_unit", "include_below", "role"}),
    POOL: frozenset({"pool"}),
}
"""The keys each method reads besides ``condition`` and ``method``."""
RULE_KEYS = frozenset({"entries", "on_create", "notify_owner"})
GROUP_KEYS = frozenset({"unit", "include_below", "role"})


@dataclass(frozen=True)
class Group:
    """The active members of ``unit`` (and of the units below it with ``include_below``), in any
    role or only in ``role``."""

    unit: str
    include_below: bool = False
    role: str | None = None


@dataclass(frozen=True)
class Entry:
    index: int
    method: str
    condition: str | None = None
    user: str | None = None
    users: tuple[str, ...] = ()
    group: Group | None = None
    field: str | None = None
    regions: Mapping[str, str] | None = None
    fallback_unit: str | None = None
    include_below: bool = False
    role: str | None = None
    pool: str | None = None

    def region_group(self, value: Any) -> Group | None:
        """The group a record whose region field holds ``value`` goes to (``None``: no region)."""
        unit = (self.regions or {}).get(value) if isinstance(value, str) else None
        unit = unit or self.fallback_unit
        return Group(unit, self.include_below, self.role) if unit else None


@dataclass(frozen=True)
class RuleSettings:
    entries: tuple[Entry, ...]
    on_create: bool = True
    notify_owner: bool = True


def read(settings: Mapping[str, Any]) -> RuleSettings:
    """The settings as values (they were checked when saved)."""
    entries = []
    for index, item in enumerate(settings.get("entries") or ()):
        group = item.get("group")
        entries.append(Entry(
            index=index, method=item.get("method"), condition=item.get("condition") or None, user=item.get("user"),
            users=tuple(item.get("users") or ()),
            group=Group(group["unit"], bool(group.get("include_below", False)), group.get("role")) if group else None,
            field=item.get("field"), regions=dict(item.get("regions") or {}), fallback_unit=item.get("fallback_unit"),
            include_below=bool(item.get("include_below", False)), role=item.get("role"), pool=item.get("pool")))
    return RuleSettings(tuple(entries), bool(settings.get("on_create", True)), bool(settings.get("notify_owner", True)))
