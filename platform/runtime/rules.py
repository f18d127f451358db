"""Validation rules at write time, and the hooks around a save.

The order of a save, for every write of the record service: system validation (types, required
fields, business type and stage, unique values, lookup targets) → before-save hooks → the layout's
required fields and the validation rules → write → history (and the masters' roll-ups) → after-save
hooks, all in the write's transaction. Rules see the record's formulas computed (with CEL) from the
values being saved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import Connection

from ..metadata.actors import Actor
from ..metadata.catalog import Catalog
from ..metadata.definitions import ObjectDef, ValidationRuleDef
from ..metadata.errors import FieldError
from ..metadata.expressions import compile_expression
from .computed import cel_value, compute


@dataclass
class SaveContext:
    """One record being saved: hooks may change ``record`` before the save and read it after."""

    conn: Connection
    actor: Actor
    obj: ObjectDef
    record: dict[str, Any]
    old: dict[str, Any] | None
    """The record before an update; ``None`` when creating."""
    records: Any = None
    """The record service inside the write's transaction (what a hook reads or writes commits
    or rolls back with the save, through every check of the platform)."""
    catalog: Catalog | None = None
    now: datetime | None = None
    acknowledged: frozenset[str] = frozenset()
    """Warnings the caller saw and accepted (``POSSIBLE_DUPLICATE``): a step that would refuse the
    save with one of these lets it through."""


Hook = Callable[[SaveContext], None]


@dataclass
class SaveHooks:
    """Python hooks per object (apps register them): ``before`` may change the record or raise a
    platform error to refuse the save; ``after`` sees the saved record. Both run in the write's
    transaction, so an error in either writes nothing."""

    before: dict[str, list[tuple[str | None, Hook]]] = field(default_factory=dict)
    after: dict[str, list[tuple[str | None, Hook]]] = field(default_factory=dict)

    def before_save(self, object_api_name: str, hook: Hook, owner: str | None = None) -> None:
        self.before.setdefault(object_api_name, []).append((owner, hook))

    def after_save(self, object_api_name: str, hook: Hook, owner: str | None = None) -> None:
        self.after.setdefault(object_api_name, []).append((owner, hook))

    def of(self, owner: str) -> "OwnedHooks":
        """Registration on behalf of ``owner`` (an app), so that its hooks can be replaced together."""
        return OwnedHooks(self, owner)

    def forget(self, owner: str) -> None:
        for hooks in (self.before, self.after):
            for name in hooks:
                hooks[name] = [(who, hook) for who, hook in hooks[name] if who != owner]

    def has_before(self, object_api_name: str) -> bool:
        return bool(self.before.get(object_api_name))

    def has_after(self, object_api_name: str) -> bool:
        return bool(self.after.get(object_api_name))

    def run_before(self, context: SaveContext) -> None:
        for _, hook in self.before.get(context.obj.api_name, ()):
            hook(context)

    def run_after(self, context: SaveContext) -> None:
        for _, hook in self.after.get(context.obj.api_name, ()):
            hook(context)


@dataclass(frozen=True)
class OwnedHooks:
    hooks: SaveHooks
    owner: str

    def before_save(self, object_api_name: str, hook: Hook) -> None:
        self.hooks.before_save(object_api_name, hook, self.owner)

    def after_save(self, object_api_name: str, hook: Hook) -> None:
        self.hooks.after_save(object_api_name, hook, self.owner)


def compiled_rules(catalog: Catalog, obj: ObjectDef) -> tuple[tuple[ValidationRuleDef, Any], ...]:
    """The object's active rules with their programs, compiled once per Catalog version."""
    return catalog.memo(("validation-rules", obj.api_name), lambda: tuple(
        (rule, compile_expression(rule.expression)) for rule in obj.validation_rules if rule.active))


def rule_problems(catalog: Catalog, obj: ObjectDef, actor: Actor, record: dict[str, Any], old: dict[str, Any] | None,
                  now: datetime) -> list[FieldError]:
    """The messages of the rules ``record`` breaks (a rule that cannot be evaluated counts as broken)."""
    rules = compiled_rules(catalog, obj)
    if not rules:
        return []
    context = expression_context(obj, actor, record, old, now)
    errors = []
    for rule, program in rules:
        if rule.business_type is not None and rule.business_type != record.get("business_type"):
            continue
        try:
            holds = program.execute(context)
        except Exception as error:  # any failure of the expression (no such overload, division by zero...)
            errors.append(FieldError("RULE_FAILED", rule.field, rule.message, {"rule": rule.api_name, "error": str(error).splitlines()[0]}))
            continue
        if holds is not True:
            errors.append(FieldError("RULE_FAILED", rule.field, rule.message, {"rule": rule.api_name}))
    return errors


def expression_context(obj: ObjectDef, actor: Actor, record: dict[str, Any], old: dict[str, Any] | None,
                       now: datetime) -> dict[str, Any]:
    """The variables of a CEL expression about a save: ``record`` and ``old`` with their formulas
    computed, ``user`` and ``now``."""
    formulas = [f for f in obj.fields if f.field_type.computed]
    if formulas:
        record = {**record, **{f.api_name: compute(f, record) for f in formulas}}
        old = None if old is None else {**old, **{f.api_name: compute(f, old) for f in formulas}}
    return {"record": cel_value(record), "old": cel_value(old) if old is not None else None,
            "user": {"id": actor.id or "", "username": actor.name}, "now": now}


def condition_holds(catalog: Catalog, obj: ObjectDef, source: str | None, actor: Actor, record: dict[str, Any],
                    old: dict[str, Any] | None, now: datetime) -> bool:
    """Whether an automation's CEL condition holds for a save (no condition: it always does). The
    program is compiled once per Catalog version; one that fails to evaluate does not hold."""
    if not source:
        return True
    program = catalog.memo(("condition", source), lambda: compile_expression(source))
    try:
        return program.execute(expression_context(obj, actor, record, old, now)) is True
    except Exception:  # any failure of the expression (no such overload, a missing value...)
        return False


def layout_problems(obj: ObjectDef, roles: tuple[str, ...], record: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """Fields the record's layout (for its business type and the caller's roles) requires: all of
    them on create or a change of business type, those being emptied on other updates."""
    layout = obj.layout_for(record.get("business_type"), roles)
    if layout is None:
        return []
    whole = old is None or old.get("business_type") != record.get("business_type")
    return [FieldError("REQUIRED_BY_LAYOUT", name, f"is required by the layout '{layout.label}'")
            for name in layout.required_fields
            if _empty(record.get(name)) and (whole or not _empty(old.get(name)))]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()
