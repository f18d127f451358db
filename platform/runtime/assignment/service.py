"""Carrying out assignment rules: on create (from the kind's after-save step) and on demand.

A decision is carried out in the caller's transaction, through the record service as ``mover``:
a new owner (and a region's unit) by a transfer, so the record's history shows it; a pool by the
pool's own move, so the pool's moves show it. The new owner is told through the inbox once per
transfer (key ``assignment:<object>:<id>:<version>``) when the rule says so and they did not ask
for it themselves. The record given is updated in place (owner, unit, version), so that the steps
after this one, and the caller, see where it went.

On demand, administrators and users who may transfer the records (their roles allow ``transfer``
and the records lie within their transfer scope) run a rule over records they name; each record
gets an :class:`Outcome`, all of them in one transaction. The transfers are made with the
platform's rights on the caller's behalf (their id is written to the history), since the rule, not
the caller, picks the new owner.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.catalog import Catalog
from ...metadata.definitions import AutomationDef, ObjectDef, thaw
from ...metadata.errors import (
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from ..write_transactions import write_transaction
from . import settings as rule_settings
from .candidates import as_id
from .decisions import Decision, decide

KIND = "assignment_rule"
MAX_RECORDS = 500
"""Records per on-demand call."""
MOVED = ("owner_id", "org_unit_id", "version", "updated_at", "updated_by")
"""What carrying out a decision changes on the record."""


@dataclass(frozen=True)
class Outcome:
    """Where one record went: ``entry`` and ``method`` of the deciding entry (``None``: no entry
    decided and the record stayed as it was); ``pool`` when it went into a pool."""

    id: str
    owner_id: str | None
    org_unit_id: str | None
    entry: int | None = None
    method: str | None = None
    pool: str | None = None


def rule_settings_of(catalog: Catalog, obj: ObjectDef, rule: AutomationDef) -> rule_settings.RuleSettings:
    """The rule's settings as values, read once per Catalog version."""
    return catalog.memo((KIND, obj.api_name, rule.api_name), lambda: rule_settings.read(thaw(rule.settings)))


class AssignmentService:
    def __init__(self, runtime):
        self.runtime = runtime

    def apply(self, conn: Connection, catalog: Catalog, obj: ObjectDef, rule: AutomationDef, record: dict[str, Any],
              actor: Actor, mover: Actor, now: datetime) -> Outcome:
        """Decide for ``record`` (conditions see ``actor`` as ``user``) and carry the decision out as ``mover``."""
        settings = rule_settings_of(catalog, obj, rule)
        decision = decide(conn, catalog, obj, rule.api_name, settings, record, actor, now)
        if decision is None:
            return Outcome(record["id"], record.get("owner_id"), record.get("org_unit_id"))
        records = self.runtime.records.joined(conn)
        moved = None
        if decision.pool is not None:
            self.runtime.pools.enter(conn, decision.pool, record["id"], actor_id=mover.id)
            moved = records.get(SYSTEM_ACTOR, obj.api_name, record["id"], fields=list(MOVED))
        elif decision.owner_id != record.get("owner_id") or decision.org_unit_id not in (None, record.get("org_unit_id")):
            moved = records.transfer(mover, obj.api_name, record["id"], decision.owner_id, org_unit_id=decision.org_unit_id)
            if settings.notify_owner and decision.owner_id not in (record.get("owner_id"), actor.id):
                self._tell(conn, obj, rule, moved, decision)
        if moved is not None:
            record.update({name: moved[name] for name in MOVED})
        return Outcome(record["id"], record.get("owner_id"), record.get("org_unit_id"), decision.entry, decision.method, decision.pool)

    def _tell(self, conn: Connection, obj: ObjectDef, rule: AutomationDef, record: dict[str, Any], decision: Decision) -> None:
        self.runtime.notifications.notify(
            [decision.owner_id], "assignment.assigned", f"A {obj.label} record was assigned to you",
            f"The assignment rule '{rule.label}' gave you this record.", record=(obj.api_name, record["id"]),
            key=f"assignment:{obj.api_name}:{record['id']}:{record['version']}", conn=conn)

    # -- on demand -------------------------------------------------------------------------------
    def assign(self, actor: Actor, object_api_name: str, record_ids: Any, rule: str | None = None) -> list[Outcome]:
        """Run ``rule`` (by default the object's first active assignment rule) over these records,
        in the order given (a repeated id once); all of them are assigned, or none."""
        ids = _record_ids(record_ids)
        now = self.runtime.clock.now()
        with self._transaction() as conn:
            catalog = self.runtime.catalogs.current(conn)
            obj = catalog.object(object_api_name)
            self.runtime.records.policy.authorize(actor, obj, "transfer")
            chosen = _rule(obj, rule)
            self._refuse_out_of_reach(conn, catalog, obj, actor, ids)
            mover = actor if actor.is_system else Actor(actor.id, actor.name, is_system=True)
            records = self.runtime.records.joined(conn)
            outcomes = []
            for record_id in dict.fromkeys(ids):
                record = records.get(SYSTEM_ACTOR, obj.api_name, record_id)
                outcomes.append(self.apply(conn, catalog, obj, chosen, record, actor, mover, now))
            return outcomes

    def _refuse_out_of_reach(self, conn: Connection, catalog: Catalog, obj: ObjectDef, actor: Actor, ids: list[str]) -> None:
        """Lock the records in id order; those missing or unseen are NOT_FOUND, those seen but
        beyond the caller's transfer scope FORBIDDEN (each at ``ids.<index>``)."""
        table = catalog.table(obj.api_name)
        policy = self.runtime.records.policy
        alive = and_(table.c.id.in_(ids), table.c.deleted_at.is_(None))
        conn.execute(select(table.c.id).where(alive).order_by(table.c.id).with_for_update()).all()
        seen = {str(i) for i in conn.execute(select(table.c.id).where(alive, policy.row_filter(actor, obj, table, "read"))).scalars()}
        movable = {str(i) for i in conn.execute(select(table.c.id).where(
            alive, policy.row_filter(actor, obj, table, "read"), policy.row_filter(actor, obj, table, "transfer"))).scalars()}
        missing = [FieldError("NOT_FOUND", f"ids.{index}", f"there is no {obj.label} record with this id", {"id": record_id})
                   for index, record_id in enumerate(ids) if record_id not in seen]
        if missing:
            raise NotFound(f"{len(missing)} of the records do not exist or are not visible to you; nothing was assigned.",
                           field="ids", errors=missing)
        beyond = [FieldError("FORBIDDEN", f"ids.{index}", f"you may not transfer this {obj.label} record", {"id": record_id})
                  for index, record_id in enumerate(ids) if record_id not in movable]
        if beyond:
            raise Forbidden(f"{len(beyond)} of the records are beyond the ones you may transfer; nothing was assigned.",
                            field="ids", errors=beyond)

    def _transaction(self):
        return write_transaction(self.runtime.engine, "Another transaction held the same records; nothing was assigned, retry the request.")


def _rule(obj: ObjectDef, name: str | None) -> AutomationDef:
    rules = obj.automations_of(KIND)
    if name is None and rules:
        return rules[0]
    found = next((rule for rule in rules if rule.api_name == name), None)
    if found is None:
        what = f"no active assignment rule named '{name}'" if name is not None else "no active assignment rule"
        raise NotFound(f"{obj.label} has {what}.", field="rule", object=obj.api_name)
    return found


def _record_ids(values: Any) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise ValidationFailed.of([FieldError("REQUIRED", "ids", "lists the ids of the records to assign")])
    if len(values) > MAX_RECORDS:
        raise ValidationFailed.of([FieldError("TOO_MANY", "ids", f"at most {MAX_RECORDS} records per call")])
    ids = [as_id(str(value)) for value in values]
    unknown = [FieldError("NOT_FOUND", f"ids.{index}", "is not a record id", {"id": str(values[index])})
               for index, record_id in enumerate(ids) if record_id is None]
    if unknown:
        raise NotFound(f"{len(unknown)} of the ids are not record ids; nothing was assigned.", field="ids", errors=unknown)
    return ids
