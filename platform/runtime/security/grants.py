"""What one user may do, as answered by the policy for one policy version.

:class:`UserAccess` is immutable and computed once per (user, policy version): per object, the
actions granted, the rows each action reaches (:class:`Scope`) and the fields hidden or read-only.
Grants combine by union, as Casbin's matcher reads them: a role's grant on ``*`` applies to every
object alongside its grants on single objects; over several memberships a scope is the widest any
gives, and a field is hidden only when every role granting read on the object hides it.

A grant may be limited to some business types of its object (policy object ``opportunity/printers``):
what such a membership reaches counts only for records of those types. An action's rows are then
the union of a few :class:`Scope` parts, one per distinct type limit (``None``: no limit).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

ACTIONS = ("read", "create", "update", "delete", "export", "transfer", "restore", "reopen")
SCOPES = ("own", "unit", "unit_and_below", "all")
FIELD_ACCESS = ("hidden", "read", "edit")
SHARE_ACCESS = ("read", "edit")
"""What a record share or a team membership gives: reading, or reading and editing."""
READ_ACTIONS = frozenset({"read", "export"})

MAX_REMEMBERED = 512

TYPE_SEPARATOR = "/"
"""Between an object and one of its business types in a policy line (``opportunity/printers``);
api names never hold it, and Casbin's model files read ``#`` as a comment."""

DIRECTORY_OBJECTS = ("user", "org_unit")
"""Every signed-in user may read these (scope ``all``) even when no role names them; grants on
``*`` do not reach them (only an explicit grant lets a role change users or units), and a role's
field restrictions on them apply to its holders even without a grant on the object."""

MANAGED_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({"org_unit": frozenset({"parent", "path"})})
"""Fields only the security service writes (the tree's shape); read-only to every caller."""

MANAGED_ACTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "user": frozenset({"create", "delete", "restore", "transfer"}),
    "org_unit": frozenset({"create", "delete", "restore", "transfer"}),
})
"""Record operations on system objects that only the admin API performs."""


@dataclass(frozen=True)
class Membership:
    unit_id: str
    unit_path: str
    role: str


@dataclass(frozen=True)
class Scope:
    """The rows an action reaches: everything, or own records plus whole units and subtrees; with
    ``business_types``, only the records of those types among them.

    Shares and team memberships widen every limited scope of ``read``, ``export`` and ``update``.
    """

    everything: bool = False
    units: frozenset[str] = frozenset()
    subtrees: tuple[str, ...] = ()
    business_types: frozenset[str] | None = None

    def widened(self, scope: str, membership: Membership) -> "Scope":
        if self.everything or scope == "all":
            return replace(self, everything=True, units=frozenset(), subtrees=())
        if scope == "unit":
            return replace(self, units=self.units | {membership.unit_id})
        if scope == "unit_and_below":
            if any(membership.unit_path.startswith(p) for p in self.subtrees):
                return self
            paths = {p for p in self.subtrees if not p.startswith(membership.unit_path)} | {membership.unit_path}
            return replace(self, subtrees=tuple(sorted(paths)))
        return self


@dataclass(frozen=True)
class ObjectAccess:
    """One user's rights on one object: per action, the rows reached among records of every type
    (``scopes``) and the rows reached only among records of some business types (``typed_scopes``:
    one part per distinct type limit); an action's rows are the union of its parts."""

    scopes: Mapping[str, Scope]
    hidden: frozenset[str] = frozenset()
    read_only: frozenset[str] = frozenset()
    create_unit: str | None = None
    typed_scopes: Mapping[str, tuple[Scope, ...]] = field(default_factory=lambda: MappingProxyType({}))
    creating: tuple[tuple[str, frozenset[str] | None], ...] = ()
    """The units of the memberships that may create records, in order, with their type limits."""

    def create_unit_for(self, business_type: str | None) -> str | None:
        """The unit of the first membership that may create records of ``business_type``."""
        return next((unit for unit, kinds in self.creating if kinds is None or business_type in kinds), self.create_unit)

    def allows(self, action: str) -> bool:
        return action in self.scopes or action in self.typed_scopes

    def parts(self, action: str) -> tuple[Scope, ...]:
        """Every part of the rows ``action`` reaches, the one without a type limit first."""
        unlimited = self.scopes.get(action)
        return ((unlimited,) if unlimited is not None else ()) + self.typed_scopes.get(action, ())


EVERYTHING = Scope(everything=True)


class UserAccess:
    """One user's memberships and role rules at one policy version; per-object answers are memoised."""

    def __init__(self, user_id: str, version: int, administrator: bool, memberships: tuple[Membership, ...],
                 rules_by_role: Mapping[str, list[tuple[str, str, str]]]):
        self.user_id = user_id
        self.version = version
        self.administrator = administrator
        self.memberships = memberships
        self.rules_by_role = rules_by_role
        self.unit_ids = frozenset(m.unit_id for m in memberships)
        self.reach = frozenset(part for m in memberships for part in m.unit_path.strip("/").split("/") if part)
        """Units whose shares reach this user: each membership's unit and the units above it."""
        self._objects: dict[str, ObjectAccess] = {}
        self._remembered: dict[Any, Any] = {}

    def remember(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from this access alone (an SQL predicate per object, action and table),
        computed once; bounded, since tables of older Catalogs may still come by."""
        found = self._remembered.get(key)
        if found is None:
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
            found = self._remembered[key] = compute()
        return found

    def on(self, object_api_name: str) -> ObjectAccess:
        found = self._objects.get(object_api_name)
        if found is None:
            found = self._objects[object_api_name] = object_access(list(self.memberships), self.rules_by_role, object_api_name)
        return found


def typed_object(object_api_name: str, business_type: str) -> str:
    """The policy object of a grant limited to one business type."""
    return f"{object_api_name}{TYPE_SEPARATOR}{business_type}"


def grants_on(rules: Iterable[tuple[str, str, str]], object_api_name: str) -> list[tuple[str, str, frozenset[str] | None]]:
    """One role's ``(action, scope, business types or None)`` on an object: its grant on the
    object (limited to types or not) and, but on the directory objects, its grant on ``*``."""
    plain = (object_api_name,) if object_api_name in DIRECTORY_OBJECTS else (object_api_name, "*")
    prefix = object_api_name + TYPE_SEPARATOR
    found: list[tuple[str, str, frozenset[str] | None]] = []
    typed: dict[tuple[str, str], set[str]] = {}
    for obj, action, scope in rules:
        if action == "field":
            continue
        if obj in plain:
            found.append((action, scope, None))
        elif obj.startswith(prefix):
            typed.setdefault((action, scope), set()).add(obj[len(prefix):])
    found.extend((action, scope, frozenset(kinds)) for (action, scope), kinds in typed.items())
    return found


def object_access(memberships: list[Membership], rules_by_role: Mapping[str, list[tuple[str, str, str]]], object_api_name: str) -> ObjectAccess:
    """Combine the memberships' role rules ``(object, action, scope)`` for one object."""
    parts: dict[str, dict[frozenset[str] | None, Scope]] = {"read": {None: EVERYTHING}} if object_api_name in DIRECTORY_OBJECTS else {}
    hidden_sets: list[frozenset[str]] = []
    restricted_sets: list[frozenset[str]] = []
    create_unit = None
    creating: list[tuple[str, frozenset[str] | None]] = []
    for membership in memberships:
        rules = rules_by_role.get(membership.role, [])
        grants = grants_on(rules, object_api_name)
        prefix = object_api_name + "."
        restrictions = {o[len(prefix):]: s for o, a, s in rules if a == "field" and o.startswith(prefix)}
        if not grants:
            if restrictions and object_api_name in DIRECTORY_OBJECTS:
                hidden_sets.append(frozenset(f for f, access in restrictions.items() if access == "hidden"))
            continue
        granted = set()
        for action, scope, kinds in grants:
            for one in (ACTIONS if action == "*" else (action,)):
                by_limit = parts.setdefault(one, {})
                by_limit[kinds] = by_limit.get(kinds, Scope(business_types=kinds)).widened(scope, membership)
                granted.add(one)
                if one == "create":
                    creating.append((membership.unit_id, kinds))
        if "read" in granted:
            hidden_sets.append(frozenset(f for f, access in restrictions.items() if access == "hidden"))
        if granted & {"create", "update"}:
            restricted_sets.append(frozenset(restrictions))
        if "create" in granted and create_unit is None:
            create_unit = membership.unit_id
    hidden = frozenset.intersection(*hidden_sets) if hidden_sets else frozenset()
    read_only = (frozenset.intersection(*restricted_sets) if restricted_sets else frozenset()) | hidden
    read_only |= MANAGED_FIELDS.get(object_api_name, frozenset())
    scopes: dict[str, Scope] = {}
    typed_scopes: dict[str, tuple[Scope, ...]] = {}
    for action, by_limit in parts.items():
        if action in MANAGED_ACTIONS.get(object_api_name, ()):
            continue
        unlimited = by_limit.pop(None, None)
        if unlimited is not None:
            scopes[action] = unlimited
        if by_limit and not (unlimited is not None and unlimited.everything):
            typed_scopes[action] = merged(by_limit.values())
    return ObjectAccess(MappingProxyType(scopes), hidden, read_only, create_unit, MappingProxyType(typed_scopes), tuple(creating))


def merged(parts: Iterable[Scope]) -> tuple[Scope, ...]:
    """Type-limited parts as few as answer the same rows: parts reaching the same units become one
    part over all their types (in a stable order, for stable SQL)."""
    by_reach: dict[tuple[bool, frozenset[str], tuple[str, ...]], set[str]] = {}
    for part in parts:
        by_reach.setdefault((part.everything, part.units, part.subtrees), set()).update(part.business_types or ())
    return tuple(sorted((Scope(everything, units, subtrees, frozenset(kinds)) for (everything, units, subtrees), kinds in by_reach.items()),
                        key=lambda p: (sorted(p.business_types), not p.everything, sorted(p.units), p.subtrees)))
