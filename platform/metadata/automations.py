"""Automations on objects (assignment and duplicate rules, approvals, triggers, reminders): the
shape every one shares, how they are stored, and the registry of kinds that check their settings.

The kinds themselves live in the runtime, which registers them on :class:`AutomationKinds`; this
layer only knows that a kind checks its settings when they are saved, all problems at once, and may
name the fields it reads (so that those fields cannot be deleted under it).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, delete, insert, select

from . import store
from .definitions import AutomationDef, ObjectDef, freeze, thaw
from .errors import FieldError
from .schemas import setting_name


class AutomationSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    kind = fields.String(required=True, validate=validate.Length(1, 63))
    label = fields.String(required=True, validate=validate.Length(1, 255))
    settings = fields.Dict(keys=fields.String(), load_default=dict)
    active = fields.Boolean(load_default=True)
    position = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 10_000))


class AutomationUpdateSchema(Schema):
    label = fields.String(validate=validate.Length(1, 255))
    settings = fields.Dict(keys=fields.String())
    active = fields.Boolean()
    position = fields.Integer(validate=validate.Range(0, 10_000))


@dataclass(frozen=True)
class AutomationCheck:
    """What a kind sees when settings are saved: the metadata change's connection (to look at pools,
    roles and users), the Catalog before the change, the object and the settings as given."""

    conn: Connection
    catalog: Any
    obj: ObjectDef
    api_name: str
    settings: dict[str, Any]


class AutomationKind(Protocol):
    kind: str

    def check(self, check: AutomationCheck) -> list[FieldError]:
        """Every problem with ``check.settings``, each at its path inside the settings."""

    def fields_used(self, obj: ObjectDef, settings: Any) -> set[str]:
        """The object's fields the settings read or write."""

    # Optional: ``fields_used_elsewhere(settings)``, the ``(object, field)`` pairs of other objects the
    # settings read (a reminder's activity fields), kept from being deleted like the object's own.
    # Optional: ``removed(conn, remaining)``, told inside a change deleting automations of the kind
    # (or their objects) with the ones of the kind left anywhere, to let go of what it keeps for
    # them (a schedule).


class AutomationKinds:
    """The kinds of automation a running platform knows, by name."""

    def __init__(self):
        self._kinds: dict[str, AutomationKind] = {}

    def register(self, kind: AutomationKind) -> AutomationKind:
        self._kinds[kind.kind] = kind
        return kind

    def get(self, name: str) -> AutomationKind | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def __iter__(self):
        return iter(self._kinds.values())


def problems(kinds: AutomationKinds, conn: Connection, catalog: Any, obj: ObjectDef, automation: AutomationDef) -> list[FieldError]:
    kind = kinds.get(automation.kind)
    if kind is None:
        known = ", ".join(kinds.names()) or "none"
        return [FieldError("UNKNOWN_KIND", "kind", f"there is no automation kind '{automation.kind}' (known: {known})")]
    settings = thaw(automation.settings)
    return [e.at("settings") for e in kind.check(AutomationCheck(conn, catalog, obj, automation.api_name, settings))]


def tell_removed(kinds: AutomationKinds, conn: Connection, gone: list[AutomationDef], remaining: Iterable[ObjectDef]) -> None:
    """Tell the kinds of the ``gone`` automations which of theirs remain in ``remaining`` objects."""
    remaining = list(remaining)
    for name in sorted({a.kind for a in gone}):
        removed = getattr(kinds.get(name), "removed", None)
        if removed is not None:
            removed(conn, [a for obj in remaining for a in obj.automations if a.kind == name])


def automation_def(data: dict[str, Any], position: int) -> AutomationDef:
    return AutomationDef(api_name=data["api_name"], kind=data["kind"], label=data["label"], settings=freeze(data.get("settings") or {}),
                         active=data.get("active", True), position=position)


def ordered(automations: list[AutomationDef]) -> tuple[AutomationDef, ...]:
    return tuple(sorted(automations, key=lambda a: (a.kind, a.position, a.api_name)))


def using_field(kinds: AutomationKinds, objects: Iterable[ObjectDef], obj: ObjectDef, field_api_name: str) -> list[str]:
    """The automations (of ``obj``, or of any of ``objects``) that read or write a field of ``obj``."""
    found = []
    for automation in obj.automations:
        kind = kinds.get(automation.kind)
        if kind is not None and field_api_name in kind.fields_used(obj, thaw(automation.settings)):
            found.append(f"automation '{automation.api_name}'")
    for other in objects:
        for automation in other.automations:
            elsewhere = getattr(kinds.get(automation.kind), "fields_used_elsewhere", None)
            if other.api_name != obj.api_name and elsewhere is not None \
                    and (obj.api_name, field_api_name) in elsewhere(thaw(automation.settings)):
                found.append(f"automation '{other.api_name}.{automation.api_name}'")
    return found


def write(conn: Connection, object_api_name: str, automations: tuple[AutomationDef, ...]) -> None:
    table = store.automations
    conn.execute(delete(table).where(table.c.object_api_name == object_api_name))
    for automation in automations:
        conn.execute(insert(table).values(object_api_name=object_api_name, **{
            **automation.as_dict(), "settings": automation.as_dict()["settings"]}))


def by_object(conn: Connection) -> dict[str, tuple[AutomationDef, ...]]:
    found: dict[str, list[AutomationDef]] = defaultdict(list)
    table = store.automations
    for row in conn.execute(select(table)).mappings():
        found[row["object_api_name"]].append(AutomationDef(
            api_name=row["api_name"], kind=row["kind"], label=row["label"], settings=freeze(row["settings"] or {}),
            active=row["active"], position=row["position"]))
    return {name: ordered(items) for name, items in found.items()}
