"""Approval processes at work: submit a record, approve or reject each step, recall a request.

Submitting takes the first active process of the object (in position order) whose entry criteria
hold and of whose steps at least one applies; its plan (the steps that apply, the outcomes) is
kept with the request. The submitter must be able to edit the record; the record's row is locked
while submitting, and a record has at most one pending request. Every step must have an approver
(see :mod:`.approvers`) when the request is submitted; each step's approvers are resolved when the
request reaches it, and notified.

A decision is one conditional write on the request (its id, ``pending``, its step and version):
of approvers deciding one step at once exactly one wins, the others are CONFLICT. Any one approver
of the current step decides it; administrators may decide any step (override); the submitter never
decides, only recalls (while pending, when the process allows it). Outcome field values are
written through the record service as the platform, in the decision's transaction, so a value the
record refuses refuses the decision. While pending, the record is locked (:mod:`.kind`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, or_, select, update

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.catalog import Catalog
from ...metadata.definitions import AutomationDef, ObjectDef, thaw
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from ..rules import condition_holds
from ..write_transactions import write_transaction
from . import store
from .approvers import active_users, approvers
from .definitions import ProcessSettings, Step
from .errors import AlreadyPending, NoApprover, NoProcess
from .kind import KIND, ApprovalProcessKind

REQUESTS, APPROVERS, ACTIONS = store.requests, store.approvers, store.actions
MAX_COMMENT = 2000
MAX_PAGE = 200
NO_USER = "The platform itself cannot submit for approval; submit as a user (approvers are found from the submitter's units)."


@dataclass(frozen=True)
class ApprovalAction:
    step: int
    """The step the request was at (0: the submission)."""
    actor_id: str | None
    action: str
    comment: str | None
    at: datetime


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    object: str
    record_id: str
    process: str
    process_label: str
    status: str
    step: int
    step_labels: tuple[str, ...]
    submitted_by: str
    submitted_at: datetime
    decided_at: datetime | None
    version: int
    approvers: tuple[str, ...]
    """Who may decide the current step (while pending)."""
    actions: tuple[ApprovalAction, ...]

    @property
    def step_label(self) -> str:
        return self.step_labels[self.step - 1]


@dataclass(frozen=True)
class Plan:
    """What a request follows, fixed when it is submitted."""

    label: str
    steps: tuple[Step, ...]
    outcomes: dict[str, dict[str, Any]]
    allow_recall: bool

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "steps": [s.as_dict() for s in self.steps], "outcomes": self.outcomes, "allow_recall": self.allow_recall}

    @classmethod
    def of(cls, stored: dict[str, Any]) -> "Plan":
        return cls(stored["label"], tuple(Step(**s) for s in stored["steps"]), stored["outcomes"], stored["allow_recall"])


class ApprovalProcesses(ApprovalProcessKind):
    def __init__(self, runtime):
        self.runtime = runtime
        runtime.metadata.on_delete.append(self.forget)

    def install(self) -> None:
        """Create the approval tables when missing."""
        with self._transaction() as conn:
            store.approvals_metadata.create_all(conn)

    def forget(self, conn: Connection, object_api_name: str, field_api_name: str | None) -> None:
        """Drop the requests of a deleted object, in the metadata change's transaction."""
        if field_api_name is not None:
            return
        doomed = select(REQUESTS.c.id).where(REQUESTS.c.object == object_api_name)
        conn.execute(delete(ACTIONS).where(ACTIONS.c.request_id.in_(doomed)))
        conn.execute(delete(APPROVERS).where(APPROVERS.c.request_id.in_(doomed)))
        conn.execute(delete(REQUESTS).where(REQUESTS.c.object == object_api_name))

    # -- acting ----------------------------------------------------------------------------------
    def submit(self, actor: Actor, object_name: str, record_id: Any, comment: str | None = None,
               process: str | None = None) -> ApprovalRequest:
        """Submit a record for approval under the first process that applies (or ``process``)."""
        if actor.id is None:
            raise Forbidden(NO_USER)
        comment = _comment(comment)
        with self._transaction() as conn:
            catalog = self.runtime.records.catalogs.current(conn)
            obj = catalog.object(object_name)
            record = self._editable(conn, catalog, obj, actor, record_id)
            pending = conn.execute(select(REQUESTS.c.id).where(
                REQUESTS.c.object == obj.api_name, REQUESTS.c.record_id == record["id"], REQUESTS.c.status == store.PENDING)).scalar()
            if pending is not None:
                raise AlreadyPending(f"The {obj.label} record already waits for approval; recall that request first.",
                                     request_id=str(pending))
            now = self.runtime.clock.now()
            automation, plan = self._plan(catalog, obj, actor, record, process, now)
            first = self._every_step_decidable(conn, plan, actor.id)
            request_id = str(uuid.uuid4())
            conn.execute(insert(REQUESTS).values(
                id=request_id, object=obj.api_name, record_id=record["id"], process=automation.api_name, plan=plan.as_dict(),
                status=store.PENDING, step=1, submitted_by=actor.id, submitted_at=now, decided_at=None, version=1))
            self._act(conn, request_id, 0, actor, store.SUBMIT, comment, now)
            self._write_outcome(conn, obj, record["id"], plan, "on_submit")
            self._enter_step(conn, obj, record["id"], request_id, plan, 1, first, comment)
        return self.request(actor, request_id)

    def approve(self, actor: Actor, request_id: Any, comment: str | None = None) -> ApprovalRequest:
        """Approve the current step: the next step's approvers are asked, or after the last step
        the request is approved and the approval's field values written."""
        return self._decide(actor, request_id, store.APPROVE, comment)

    def reject(self, actor: Actor, request_id: Any, comment: str | None = None) -> ApprovalRequest:
        """Reject the request at the current step; the rejection's field values are written."""
        return self._decide(actor, request_id, store.REJECT, comment)

    def recall(self, actor: Actor, request_id: Any, comment: str | None = None) -> ApprovalRequest:
        """Withdraw a pending request (its submitter only); the record is unlocked."""
        comment = _comment(comment)
        with self._transaction() as conn:
            row = self._row(conn, request_id)
            if actor.id is None or actor.id != str(row.submitted_by):
                raise Forbidden("Only the submitter recalls a request.")
            self._refuse_decided(row)
            plan = Plan.of(row.plan)
            if not plan.allow_recall:
                raise Forbidden(f"The approval process '{plan.label}' does not let requests be recalled.")
            now = self.runtime.clock.now()
            self._move(conn, row, status=store.RECALLED, step=row.step, decided_at=now)
            self._act(conn, row.id, row.step, actor, store.RECALL, comment, now)
            obj = self._object(conn, row.object)
            self._write_outcome(conn, obj, str(row.record_id), plan, "on_recall")
            waiting = self._step_approvers(conn, row.id, row.step)
            self._notify(conn, waiting, "approval.recalled", f"Approval recalled: {obj.label}",
                         _body(f"The request ({plan.label}) was recalled by its submitter.", comment), obj, row, "recalled")
        return self.request(actor, str(row.id))

    # -- reading ---------------------------------------------------------------------------------
    def request(self, actor: Actor, request_id: Any) -> ApprovalRequest:
        """One request with its actions; for its submitter, its approvers and administrators."""
        with self.runtime.engine.connect() as conn:
            row = self._row(conn, request_id)
            if not self._involved(conn, actor, row):
                raise self._missing(request_id)
            return self._loaded(conn, [row])[0]

    def requests(self, actor: Actor, *, status: str | None = None, mine: bool = False, awaiting_me: bool = False,
                 object_name: str | None = None, record_id: Any = None, first: int = 50) -> list[ApprovalRequest]:
        """Requests newest first, with their actions: those you submitted or are an approver of
        (administrators: all); ``mine``: submitted by you; ``awaiting_me``: pending at a step you
        may decide."""
        errors = []
        if status is not None and status not in store.STATUSES:
            errors.append(FieldError("INVALID_VALUE", "status", f"must be one of {', '.join(store.STATUSES)}"))
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= MAX_PAGE:
            errors.append(FieldError("OUT_OF_RANGE", "first", f"must be between 1 and {MAX_PAGE}"))
        record = _uuid(record_id) if record_id is not None else None
        if record_id is not None and record is None:
            errors.append(FieldError("INVALID_VALUE", "record_id", "must be a record id (a UUID)"))
        if errors:
            raise ValidationFailed.of(errors)
        query = select(REQUESTS)
        if status is not None:
            query = query.where(REQUESTS.c.status == status)
        if object_name is not None:
            query = query.where(REQUESTS.c.object == object_name)
        if record is not None:
            query = query.where(REQUESTS.c.record_id == record)
        if mine:
            query = query.where(REQUESTS.c.submitted_by == actor.id)
        if awaiting_me:
            query = query.where(REQUESTS.c.status == store.PENDING, exists().where(
                APPROVERS.c.request_id == REQUESTS.c.id, APPROVERS.c.step == REQUESTS.c.step, APPROVERS.c.user_id == actor.id))
        if not _is_admin(actor):
            query = query.where(or_(REQUESTS.c.submitted_by == actor.id, exists().where(
                APPROVERS.c.request_id == REQUESTS.c.id, APPROVERS.c.user_id == actor.id)))
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(query.order_by(REQUESTS.c.submitted_at.desc(), REQUESTS.c.id).limit(first)).all()
            return self._loaded(conn, rows)

    # -- steps -----------------------------------------------------------------------------------
    def _decide(self, actor: Actor, request_id: Any, action: str, comment: str | None) -> ApprovalRequest:
        comment = _comment(comment)
        with self._transaction() as conn:
            row = self._row(conn, request_id)
            self._refuse_decided(row)
            self._require_approver(conn, actor, row)
            plan = Plan.of(row.plan)
            obj = self._object(conn, row.object)
            now = self.runtime.clock.now()
            advancing = action == store.APPROVE and row.step < len(plan.steps)
            if advancing:
                self._move(conn, row, status=store.PENDING, step=row.step + 1, decided_at=None)
            else:
                self._move(conn, row, status=store.APPROVED if action == store.APPROVE else store.REJECTED, step=row.step, decided_at=now)
            self._act(conn, row.id, row.step, actor, action, comment, now)
            submitter = str(row.submitted_by)
            if advancing:
                following = plan.steps[row.step]
                found = approvers(conn, following.approver, submitter, user=following.user, role=following.role)
                if not found:
                    raise _no_approver(plan, row.step + 1)
                self._enter_step(conn, obj, str(row.record_id), str(row.id), plan, row.step + 1, found, comment)
            else:
                outcome = "approved" if action == store.APPROVE else "rejected"
                self._write_outcome(conn, obj, str(row.record_id), plan, "on_approve" if action == store.APPROVE else "on_reject")
                self._notify(conn, [submitter], f"approval.{outcome}", f"{obj.label} {outcome}",
                             _body(f"Your request ({plan.label}) was {outcome} at step {row.step} ({plan.steps[row.step - 1].label}).",
                                   comment), obj, row, outcome)
        return self.request(actor, str(row.id))

    def _plan(self, catalog: Catalog, obj: ObjectDef, actor: Actor, record: dict[str, Any], process: str | None,
              now: datetime) -> tuple[AutomationDef, Plan]:
        candidates = obj.automations_of(KIND)
        if process is not None:
            candidates = tuple(a for a in candidates if a.api_name == process)
            if not candidates:
                raise NoProcess(f"{obj.label} has no active approval process named '{process}'.", field="process", process=process)
        for automation in candidates:
            settings = ProcessSettings.of(thaw(automation.settings))
            if not condition_holds(catalog, obj, settings.entry, actor, record, None, now):
                continue
            steps = tuple(s for s in settings.steps if condition_holds(catalog, obj, s.when, actor, record, None, now))
            if steps:
                return automation, Plan(automation.label, steps, settings.outcomes, settings.allow_recall)
        which = f"The approval process '{process}' does" if process else f"No active approval process of {obj.label} does"
        raise NoProcess(f"{which} not apply to this record (its entry criteria do not hold).",
                        **({"field": "process", "process": process} if process else {}))

    def _every_step_decidable(self, conn: Connection, plan: Plan, submitter: str) -> list[str]:
        """The first step's approvers, once every step has at least one."""
        first: list[str] = []
        for number, step in enumerate(plan.steps, start=1):
            found = approvers(conn, step.approver, submitter, user=step.user, role=step.role)
            if not found:
                raise _no_approver(plan, number)
            first = first or found
        return first

    def _enter_step(self, conn: Connection, obj: ObjectDef, record_id: str, request_id: str, plan: Plan, number: int,
                    found: list[str], comment: str | None) -> None:
        conn.execute(insert(APPROVERS), [{"request_id": request_id, "step": number, "user_id": user} for user in found])
        step = plan.steps[number - 1]
        self._notify(conn, found, "approval.requested", f"Approval needed: {obj.label}",
                     _body(f"{plan.label}, step {number} of {len(plan.steps)} ({step.label}).", comment),
                     obj, _Ref(request_id, record_id), f"step:{number}")

    def _move(self, conn: Connection, row, *, status: str, step: int, decided_at: datetime | None) -> None:
        """The request's one conditional write: nobody moved it since ``row`` was read."""
        moved = conn.execute(update(REQUESTS).where(
            REQUESTS.c.id == row.id, REQUESTS.c.status == store.PENDING, REQUESTS.c.step == row.step,
            REQUESTS.c.version == row.version).values(status=status, step=step, decided_at=decided_at, version=row.version + 1))
        if moved.rowcount != 1:
            raise Conflict("Someone else decided or recalled this request meanwhile; reload it.", field="id")

    def _act(self, conn: Connection, request_id: str, step: int, actor: Actor, action: str, comment: str | None, now: datetime) -> None:
        conn.execute(insert(ACTIONS).values(request_id=request_id, step=step, actor_id=actor.id, action=action, comment=comment, at=now))

    def _write_outcome(self, conn: Connection, obj: ObjectDef, record_id: str, plan: Plan, outcome: str) -> None:
        values = plan.outcomes.get(outcome)
        if values:
            self.runtime.records.joined(conn).update(SYSTEM_ACTOR, obj.api_name, record_id, values)

    def _notify(self, conn: Connection, user_ids: list[str], kind: str, title: str, body: str, obj: ObjectDef, row, event: str) -> None:
        recipients = sorted(active_users(conn, user_ids))
        if recipients:
            self.runtime.notifications.notify(recipients, kind, title, body, record=(obj.api_name, str(row.record_id)),
                                              key=f"approval:{row.id}:{event}", conn=conn)

    # -- checks and reads ------------------------------------------------------------------------
    def _editable(self, conn: Connection, catalog: Catalog, obj: ObjectDef, actor: Actor, record_id: Any) -> dict[str, Any]:
        """The record, row-locked, when ``actor`` may edit it (missing and not editable look alike)."""
        policy = self.runtime.records.policy
        policy.authorize(actor, obj, "update")
        table = catalog.table(obj.api_name)
        found = _uuid(record_id)
        row = None if found is None else conn.execute(select(table.c.id).where(
            table.c.id == found, table.c.deleted_at.is_(None), policy.row_filter(actor, obj, table, "update"),
            policy.row_filter(actor, obj, table, "read")).with_for_update()).first()
        if row is None:
            raise NotFound(f"There is no {obj.label} record with id {record_id!r} that you may edit.", field="id")
        return self.runtime.records.joined(conn).get(SYSTEM_ACTOR, obj.api_name, found)

    def _require_approver(self, conn: Connection, actor: Actor, row) -> None:
        if actor.id is not None and actor.id == str(row.submitted_by):
            raise Forbidden("You submitted this request: recall it instead of deciding it.")
        steps = set(conn.execute(select(APPROVERS.c.step).where(APPROVERS.c.request_id == row.id, APPROVERS.c.user_id == actor.id)).scalars()) \
            if actor.id is not None else set()
        if row.step in steps or _is_admin(actor):
            return
        if steps:
            raise Conflict(f"Step {max(steps)} was already decided; the request is now at step {row.step}.", field="id", step=row.step)
        raise Forbidden(f"You are not an approver of step {row.step} of this request.")

    @staticmethod
    def _refuse_decided(row) -> None:
        if row.status != store.PENDING:
            raise Conflict(f"The request is already {row.status}.", field="id", status=row.status)

    def _involved(self, conn: Connection, actor: Actor, row) -> bool:
        if _is_admin(actor) or actor.id == str(row.submitted_by):
            return True
        return conn.execute(select(APPROVERS.c.step).where(APPROVERS.c.request_id == row.id, APPROVERS.c.user_id == actor.id)).first() is not None

    def _row(self, conn: Connection, request_id: Any):
        found = _uuid(request_id)
        row = None if found is None else conn.execute(select(REQUESTS).where(REQUESTS.c.id == found)).first()
        if row is None:
            raise self._missing(request_id)
        return row

    @staticmethod
    def _missing(request_id: Any) -> NotFound:
        return NotFound(f"There is no approval request {request_id!r}.", field="id")

    def _object(self, conn: Connection, object_name: str) -> ObjectDef:
        return self.runtime.records.catalogs.current(conn).object(object_name)

    def _step_approvers(self, conn: Connection, request_id, step: int) -> list[str]:
        return [str(u) for u in conn.execute(select(APPROVERS.c.user_id).where(
            APPROVERS.c.request_id == request_id, APPROVERS.c.step == step).order_by(APPROVERS.c.user_id)).scalars()]

    def _loaded(self, conn: Connection, rows: list) -> list[ApprovalRequest]:
        ids = [row.id for row in rows]
        waiting: dict[str, list[str]] = {}
        history: dict[str, list[ApprovalAction]] = {}
        if ids:
            for found in conn.execute(select(APPROVERS).join(REQUESTS, REQUESTS.c.id == APPROVERS.c.request_id).where(
                    APPROVERS.c.request_id.in_(ids), APPROVERS.c.step == REQUESTS.c.step, REQUESTS.c.status == store.PENDING)
                    .order_by(APPROVERS.c.user_id)):
                waiting.setdefault(str(found.request_id), []).append(str(found.user_id))
            for found in conn.execute(select(ACTIONS).where(ACTIONS.c.request_id.in_(ids)).order_by(ACTIONS.c.id)):
                history.setdefault(str(found.request_id), []).append(ApprovalAction(
                    found.step, _text(found.actor_id), found.action, found.comment, found.at))
        requests = []
        for row in rows:
            plan = row.plan
            requests.append(ApprovalRequest(
                id=str(row.id), object=row.object, record_id=str(row.record_id), process=row.process, process_label=plan["label"],
                status=row.status, step=row.step, step_labels=tuple(s["label"] for s in plan["steps"]),
                submitted_by=str(row.submitted_by), submitted_at=row.submitted_at, decided_at=row.decided_at, version=row.version,
                approvers=tuple(waiting.get(str(row.id), ())), actions=tuple(history.get(str(row.id), ()))))
        return requests

    def _transaction(self):
        return write_transaction(self.runtime.engine, "Another transaction held the same request or record; nothing was written, retry.")


@dataclass(frozen=True)
class _Ref:
    """A request not yet read back: its id and record, as notifications name them."""

    id: str
    record_id: str


def _no_approver(plan: Plan, number: int) -> NoApprover:
    step = plan.steps[number - 1]
    return NoApprover(f"Step {number} ({step.label}) of '{plan.label}' has nobody but you who could decide it; "
                      "ask an administrator to fix the org tree or the process.", step=number, step_label=step.label)


def _comment(comment: Any) -> str | None:
    if comment is None or comment == "":
        return None
    if not isinstance(comment, str):
        raise ValidationFailed.of([FieldError("INVALID_TYPE", "comment", "must be text")])
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed.of([FieldError("TOO_LONG", "comment", f"may be at most {MAX_COMMENT} characters")])
    return comment


def _body(text: str, comment: str | None) -> str:
    return f"{text}\n\n{comment}" if comment else text


def _is_admin(actor: Actor) -> bool:
    return actor.is_system or (actor.access is not None and actor.access.administrator)


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
