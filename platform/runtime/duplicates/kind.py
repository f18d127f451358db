"""The ``duplicate_rule`` kind of automation: its settings checked when saved, its match keys kept
with each write, and the check that refuses (``block``) or questions (``warn``) a save.

A write is checked on create, and on update when it changes a field the rule compares (an edit of
something else never trips over duplicates that existed before the rule). Records of one bulk
create are not compared with each other, only with the records already saved. Two concurrent
writes of the same duplicate take turns on PostgreSQL (:mod:`.serializing`), so the second is
checked against the first; records written while a metadata change builds the keys of a new rule
may pass it (their keys for it come with their next edit).

Each rule that matches adds one problem at its first compared field, describing its best five
matches (``ctx.matches``: ``{id, owner, visible, score}``): score and owner always, the id only
when the writer may read the record (decided by the record service's read predicate in the same
statement): "a duplicate exists and is owned by ann" without showing a record the writer may not
see. A ``warn`` rule is not even looked at when the caller acknowledged ``POSSIBLE_DUPLICATE``.
"""
from __future__ import annotations

from typing import Any

from ...metadata.actors import Actor
from ...metadata.automations import AutomationCheck
from ...metadata.definitions import AutomationDef, ObjectDef
from ...metadata.errors import FieldError
from ..rules import SaveContext, condition_holds
from . import matching, serializing, store
from .definitions import KIND, DuplicateRule, fields_named, rule_of, settings_problems
from .service import duplicate_matches

BLOCKED, WARNED = "DUPLICATE", "POSSIBLE_DUPLICATE"
REPORTED_MATCHES = 5


class DuplicateRules:
    kind = KIND

    def __init__(self, runtime):
        self.runtime = runtime

    def install(self) -> None:
        """Create the match key table when missing; keys go with a deleted object or field."""
        with self.runtime.engine.begin() as conn:
            store.duplicates_metadata.create_all(conn)
        if store.forget not in self.runtime.metadata.on_delete:
            self.runtime.metadata.on_delete.append(store.forget)

    def check(self, check: AutomationCheck) -> list[FieldError]:
        """Every problem of the settings; when there is none, the keys of the matchers no active
        rule of the object used before this change are built for the existing records (an active
        rule's matchers have complete keys: see :mod:`.store`)."""
        problems = settings_problems(check.obj, check.settings)
        if problems:
            return problems
        used = set().union(*(rule_of(a.api_name, a.settings).matchers for a in check.obj.automations_of(KIND)))
        store.rebuild(check.conn, check.obj, check.catalog.table(check.obj.api_name), rule_of(check.api_name, check.settings).matchers - used)
        return []

    def fields_used(self, obj: ObjectDef, settings: Any) -> set[str]:
        return fields_named(settings)

    def before_save(self, context: SaveContext, automations: tuple[AutomationDef, ...]) -> list[FieldError]:
        rules = [rule for rule in self._rules(context, automations) if self._applies(context, rule)]
        if not rules:
            return []
        serializing.take_turns(context.conn, context.obj.api_name, rules, context.record)
        table = context.catalog.table(context.obj.api_name)
        predicate = context.records.policy.row_filter(context.actor, context.obj, table, "read")
        own_id = context.old["id"] if context.old is not None else None
        found = [(rule, matching.find(context.conn, context.obj, table, predicate, rule, context.record, own_id)) for rule in rules]
        found = [(rule, matches) for rule, matches in found if matches]
        if not found:
            return []
        names = matching.owner_names(context.conn, context.catalog, {m.owner_id for _, ms in found for m in ms if m.owner_id})
        return [self._problem(context.obj, rule, matches, names) for rule, matches in found]

    def after_save(self, context: SaveContext, automations: tuple[AutomationDef, ...]) -> None:
        rules = self._rules(context, automations)
        matchers = set().union(*(rule.matchers for rule in rules)) if rules else set()
        fields = {field for field, _ in matchers}
        if context.old is not None and all(context.old.get(f) == context.record.get(f) for f in fields):
            return
        store.replace(context.conn, context.obj.api_name, context.record, matchers, new=context.old is None)

    def duplicates(self, actor: Actor, object_api_name: str, record_id: str | None = None, values: dict[str, Any] | None = None,
                   first: int = 20) -> list[dict[str, Any]]:
        """The likely duplicates of a record the caller may read (or of proposed ``values``, over
        it or before creating one), by every active duplicate rule of the object, best first."""
        return duplicate_matches(self.runtime.records, self.runtime.catalog(), actor, object_api_name, record_id, values, first)

    @staticmethod
    def _rules(context: SaveContext, automations: tuple[AutomationDef, ...]) -> list[DuplicateRule]:
        return context.catalog.memo(("duplicate-rules", context.obj.api_name), lambda: [rule_of(a.api_name, a.settings) for a in automations])

    @staticmethod
    def _applies(context: SaveContext, rule: DuplicateRule) -> bool:
        if rule.action == "warn" and WARNED in context.acknowledged:
            return False
        if context.old is not None and all(context.old.get(f.field) == context.record.get(f.field) for f in rule.fields):
            return False
        return condition_holds(context.catalog, context.obj, rule.condition, context.actor, context.record, context.old, context.now)

    @staticmethod
    def _problem(obj: ObjectDef, rule: DuplicateRule, matches: list[matching.Match], names: dict[str, str]) -> FieldError:
        described = [{"id": m.record_id if m.visible else None, "owner": names.get(m.owner_id) if m.owner_id else None,
                      "visible": m.visible, "score": m.score} for m in matches[:REPORTED_MATCHES]]
        first = matches[0]
        owner = names.get(first.owner_id) if first.owner_id else None
        compared = " and ".join(first.fields or [f.field for f in rule.fields])
        message = rule.message or (f"a {obj.label} record with the same {compared} already exists"
                                   + (f" (owned by {owner})" if owner else ""))
        code = BLOCKED if rule.action == "block" else WARNED
        if rule.action == "warn" and not rule.message:
            message += f"; acknowledge {WARNED} to save anyway"
        return FieldError(code, rule.fields[0].field, message, {"rule": rule.api_name, "action": rule.action,
                                                                 "fields": [f.field for f in rule.fields], "matches": described})
