"""The ``assignment_rule`` kind of automation: who a new record goes to.

One automation is one rule: ordered entries, each with a CEL condition and a method (a designated
user, turns over a list or a group, by region, into a pool); the first entry whose condition holds
and that finds a receiver decides (:mod:`.decisions`). On create, only the object's first active
rule (by position) whose ``on_create`` is true applies, after the record is written and in the same
transaction, before the triggers run; a rule with ``on_create`` false is run on demand only
(:meth:`AssignmentRules.assign`). The rule decides over any owner given on create.

Carrying the decision out cannot refuse the create: if the transfer or the pool move is refused
(an approval holds the record, a pool was deleted meanwhile), it is undone to a savepoint, logged,
and the record stays with its creator. The creator may lose sight of a record given to someone
else; the create still answers with the record as saved, with its new owner.
"""
from __future__ import annotations

import logging

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.automations import AutomationCheck
from ...metadata.database import WRITE
from ...metadata.definitions import AutomationDef, ObjectDef
from ...metadata.errors import FieldError, LowcodeError
from ...metadata.expressions import referenced_fields
from ..rules import SaveContext
from .checks import settings_problems
from .service import KIND, AssignmentService, Outcome, rule_settings_of
from .settings import REGION
from .store import assignment_metadata

log = logging.getLogger(__name__)


class AssignmentRules:
    kind = KIND

    def __init__(self, runtime):
        self.runtime = runtime
        self.service = AssignmentService(runtime)

    def install(self) -> None:
        """Create the round robins' table when missing."""
        with self.runtime.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            assignment_metadata.create_all(conn)

    def check(self, check: AutomationCheck) -> list[FieldError]:
        return settings_problems(check.conn, check.obj, check.settings)

    def fields_used(self, obj: ObjectDef, settings) -> set[str]:
        used: set[str] = set()
        entries = settings.get("entries") if isinstance(settings, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("condition"), str):
                used |= referenced_fields(entry["condition"])
            if entry.get("method") == REGION and isinstance(entry.get("field"), str):
                used.add(entry["field"])
        return used

    def after_save(self, context: SaveContext, automations: tuple[AutomationDef, ...]) -> None:
        if context.old is not None:
            return
        rule = next((a for a in automations if rule_settings_of(context.catalog, context.obj, a).on_create), None)
        if rule is None:
            return
        try:
            with context.conn.begin_nested():
                self.service.apply(context.conn, context.catalog, context.obj, rule, context.record, context.actor,
                                   SYSTEM_ACTOR, context.now)
        except LowcodeError as error:
            log.warning("assignment rule %s.%s could not assign record %s: %s", context.obj.api_name, rule.api_name,
                        context.record.get("id"), error.message)

    def assign(self, actor: Actor, object_api_name: str, record_ids, rule: str | None = None) -> list[Outcome]:
        """Run a rule over existing records now (see :meth:`.service.AssignmentService.assign`)."""
        return self.service.assign(actor, object_api_name, record_ids, rule)
