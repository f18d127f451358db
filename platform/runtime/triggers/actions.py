"""What a firing trigger does, inside the write's transaction.

- ``set_fields`` changes the record before it is written (before the layout's required fields and
  the validation rules look at it); a value its field no longer takes refuses the write.
- ``notify`` delivers one notification per recipient per record version (the dedupe key), to the
  active users among those named, the holders of the roles, the owner and the members of the
  owner's unit; recipients that no longer exist are left out rather than failing the write.
- ``create_task`` creates one record of the target object as the platform, linked to the saved
  record and owned by its owner unless the values say otherwise; if the target refuses it, the
  write is refused with the reasons (a trigger never loses its work silently).
- ``webhook`` enqueues a delivery job in the write's transaction: it exists only if the write
  commits, and the endpoint is called later by a worker, so it can never block or fail the write.
"""
from __future__ import annotations

from typing import Any

from ...metadata.actors import SYSTEM_ACTOR
from ...metadata.errors import FieldError, ValidationFailed
from ..notifications import recipients
from ..notifications.service import MAX_BODY_LENGTH
from ..rules import SaveContext
from ..validation import RecordValidator
from . import templates
from .settings import Trigger
from .webhooks import WEBHOOK_JOB, jsonable

NOTIFICATION_KIND = "trigger"
MAX_TITLE_LENGTH = 255


def delivery_key(context: SaveContext, trigger: Trigger, index: int) -> str:
    """Unique per record version, trigger and action: a retried or repeated run does the work once."""
    record = context.record
    return f"trigger:{context.obj.api_name}:{trigger.api_name}:{index}:{record['id']}:{record['version']}"


def set_fields(context: SaveContext, trigger: Trigger, action: dict[str, Any]) -> list[FieldError]:
    validator = context.catalog.memo(("validator", context.obj.api_name), lambda: RecordValidator(context.obj))
    coerced, problems = validator.check(dict(action["values"]), creating=False)
    if problems:
        return [FieldError(p.code, p.field, f"{p.message} (set by the trigger '{trigger.label}')", {**p.ctx, "trigger": trigger.api_name})
                for p in problems]
    context.record.update(coerced)
    return []


def notify(context: SaveContext, trigger: Trigger, action: dict[str, Any], index: int, notifications, policy) -> None:
    conn, record = context.conn, context.record
    candidates = list(action.get("users") or ())
    owner_id = record.get("owner_id")
    if action.get("owner") and owner_id:
        candidates.append(str(owner_id))
    roles, missing = recipients.checked_roles(conn, action.get("roles") or [], "roles")
    roles = [r for r in roles if r not in {e.ctx["name"] for e in missing}]
    if roles:
        candidates += recipients.members(conn, None, include_below=False, roles=roles)
    if action.get("owner_unit"):
        unit = _owner_unit(context, policy)
        paths = recipients.unit_paths(conn, [unit])[0] if unit else []
        candidates += recipients.members(conn, paths, include_below=False, roles=None) if paths else []
    ids = [i for i in dict.fromkeys(recipients.id_list(candidates, "users", "user")[0]) if i]
    inactive = {e.ctx["id"] for e in recipients.inactive_users(conn, ids)}
    users = [i for i in ids if i not in inactive]
    if not users:
        return
    values = templates.scope(context.obj, record, context.actor)
    title = templates.render(action["title"], values).strip()[:MAX_TITLE_LENGTH] or trigger.label
    body = templates.render(action.get("body") or "", values)[:MAX_BODY_LENGTH]
    notifications.notify(users, NOTIFICATION_KIND, title, body, record=(context.obj.api_name, record["id"]),
                         key=delivery_key(context, trigger, index), conn=conn)


def _owner_unit(context: SaveContext, policy) -> str | None:
    """The owner's unit: where records given to the owner go, else the record's own unit."""
    record = context.record
    owner_id = record.get("owner_id")
    unit = policy.home_unit(str(owner_id), context.obj, record.get("business_type")) if owner_id else None
    return unit or record.get("org_unit_id")


def create_task(context: SaveContext, trigger: Trigger, action: dict[str, Any]) -> dict[str, Any]:
    values = templates.scope(context.obj, context.record, context.actor)
    task = {name: templates.resolve(value, values) for name, value in (action.get("values") or {}).items()}
    task[action["link_field"]] = context.record["id"]
    if context.record.get("owner_id") and "owner_id" not in task:
        task["owner_id"] = context.record["owner_id"]
    try:
        return context.records.create(SYSTEM_ACTOR, action["object"], task)
    except ValidationFailed as refused:
        reasons = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in refused.errors)
        raise ValidationFailed.of([FieldError(
            "TRIGGER_FAILED", None, f"The trigger '{trigger.label}' could not create its {action['object']} record ({reasons}); "
                                    "fix the trigger's values or the record.",
            {"trigger": trigger.api_name, "errors": [e.as_dict() for e in refused.errors]})]) from None


def enqueue_webhook(context: SaveContext, trigger: Trigger, index: int, event: str, jobs) -> str:
    payload = {"object": context.obj.api_name, "trigger": trigger.api_name, "action": index, "event": event,
               "record": jsonable(context.record)}
    return jobs.enqueue(WEBHOOK_JOB, payload, key=delivery_key(context, trigger, index), conn=context.conn)
