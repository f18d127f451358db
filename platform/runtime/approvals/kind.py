"""Approval processes as a kind of automation: settings checked when saved, the fields they use,
and the lock a pending request puts on its record."""
from __future__ import annotations

from sqlalchemy import select

from ...metadata.automations import AutomationCheck
from ...metadata.definitions import AutomationDef, ObjectDef
from ...metadata.errors import FieldError
from ..rules import SaveContext
from . import definitions, store
from .errors import RecordLocked

KIND = "approval_process"
REQUESTS = store.requests
VERBS = {"update": "changed", "transfer": "transferred", "delete": "deleted"}


class ApprovalProcessKind:
    kind = KIND

    def check(self, check: AutomationCheck) -> list[FieldError]:
        return definitions.problems(check)

    def fields_used(self, obj: ObjectDef, settings) -> set[str]:
        return definitions.fields_used(settings)

    def guard(self, context: SaveContext, automations: tuple[AutomationDef, ...], action: str) -> None:
        """Refuse to change, transfer or delete a record waiting for approval (LOCKED), except for
        the platform itself, which writes the approval's outcomes."""
        if context.actor.is_system:
            return
        pending = context.conn.execute(select(REQUESTS.c.id).where(
            REQUESTS.c.object == context.obj.api_name, REQUESTS.c.record_id == context.record["id"],
            REQUESTS.c.status == store.PENDING)).scalar()
        if pending is not None:
            raise RecordLocked(
                f"The {context.obj.label} record waits for approval and cannot be {VERBS.get(action, action)} until the request "
                "is decided or recalled.", request_id=str(pending), action=action)
