"""The settings of a record trigger, checked when saved, and read back for running.

::

    {"events": ["create", "update", "stage_change"],
     "condition": "record.amount > 1000",          # CEL, optional
     "stage": "won"  or  "stage_category": "won",  # optional, narrows stage_change
     "actions": [
       {"type": "notify", "users": [ids], "roles": [names], "owner": true, "owner_unit": true,
        "title": "Won: {record.name}", "body": "..."},
       {"type": "set_fields", "values": {"priority": "high"}},
       {"type": "create_task", "object": "task", "link_field": "opportunity",
        "values": {"subject": "Call {record.name}"}},
       {"type": "webhook", "url": "https://example.com/hook", "secret": "...", "timeout_seconds": 5}]}

Every problem is reported at once, at its path inside the settings (``actions.2.url``), so an editor
can point at it; nothing is saved while any remains. ``set_fields`` may set the object's own
writable fields only (not the owner, business type or stage, which have their own actions), with
values of the field's type; ``create_task`` values are checked against the target object, a string
with placeholders being a template (a lone placeholder such as ``{record.id}`` keeps its value's type).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from ...metadata.automations import AutomationCheck
from ...metadata.definitions import STAGE_CATEGORIES, AutomationDef, ObjectDef, thaw
from ...metadata.errors import FieldError
from ...metadata.expressions import expression_problems, referenced_fields
from ..notifications import recipients
from ..validation import RecordValidator
from . import templates

EVENTS = ("create", "update", "stage_change")
NOTIFY, SET_FIELDS, CREATE_TASK, WEBHOOK = "notify", "set_fields", "create_task", "webhook"
ACTION_KEYS = {
    NOTIFY: {"type", "users", "roles", "owner", "owner_unit", "title", "body"},
    SET_FIELDS: {"type", "values"},
    CREATE_TASK: {"type", "object", "values", "link_field"},
    WEBHOOK: {"type", "url", "secret", "timeout_seconds"},
}
SETTINGS_KEYS = {"events", "condition", "stage", "stage_category", "actions"}
MAX_ACTIONS = 20
MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 255
DEFAULT_TIMEOUT_SECONDS = 5
MAX_TIMEOUT_SECONDS = 30
MIN_TIMEOUT_SECONDS = 0.1
LINK_TYPES = ("lookup", "master_detail")


@dataclass(frozen=True)
class Trigger:
    """One active trigger of an object, as it runs."""

    api_name: str
    label: str
    events: frozenset[str]
    condition: str | None
    stage: str | None
    stage_category: str | None
    actions: tuple[Mapping[str, Any], ...]

    @classmethod
    def of(cls, automation: AutomationDef) -> "Trigger":
        settings = thaw(automation.settings)
        return cls(automation.api_name, automation.label, frozenset(settings.get("events") or ()), settings.get("condition"),
                   settings.get("stage"), settings.get("stage_category"), tuple(settings.get("actions") or ()))

    def has(self, action_type: str) -> bool:
        return any(action.get("type") == action_type for action in self.actions)


def triggers(catalog, obj: ObjectDef, kind: str) -> tuple[Trigger, ...]:
    """The object's active triggers, read once per Catalog version."""
    return catalog.memo(("triggers", obj.api_name), lambda: tuple(Trigger.of(a) for a in obj.automations_of(kind)))


def settings_problems(check: AutomationCheck) -> list[FieldError]:
    settings, obj = check.settings, check.obj
    problems = [FieldError("UNKNOWN_FIELD", key, f"is not a setting of triggers (use {', '.join(sorted(SETTINGS_KEYS))})")
                for key in sorted(set(settings) - SETTINGS_KEYS)]
    problems += _event_problems(obj, settings)
    condition = settings.get("condition")
    if condition is not None:
        problems += expression_problems(obj, condition, "condition")
    actions = settings.get("actions")
    if not isinstance(actions, list) or not actions:
        problems.append(FieldError("REQUIRED", "actions", "list at least one action (notify, set_fields, create_task, webhook)"))
    elif len(actions) > MAX_ACTIONS:
        problems.append(FieldError("OUT_OF_RANGE", "actions", f"may hold at most {MAX_ACTIONS} actions"))
    else:
        for index, action in enumerate(actions):
            problems += [p.at(f"actions.{index}") for p in _action_problems(check, action)]
    return problems


def _event_problems(obj: ObjectDef, settings: dict[str, Any]) -> list[FieldError]:
    events = settings.get("events")
    if not isinstance(events, list) or not events:
        return [FieldError("REQUIRED", "events", f"list when the trigger fires: {', '.join(EVENTS)}")]
    problems = []
    for index, event in enumerate(events):
        if event not in EVENTS:
            problems.append(FieldError("INVALID_VALUE", f"events.{index}", f"must be one of {', '.join(EVENTS)}"))
        elif events.index(event) != index:
            problems.append(FieldError("DUPLICATE", f"events.{index}", f"'{event}' is listed twice"))
        elif event == "stage_change" and not obj.has_stages:
            problems.append(FieldError("INVALID_VALUE", f"events.{index}", f"'{obj.api_name}' records have no stages"))
    stage, category = settings.get("stage"), settings.get("stage_category")
    for key in ("stage", "stage_category"):
        if settings.get(key) is not None and "stage_change" not in events:
            problems.append(FieldError("INVALID_VALUE", key, "narrows the stage_change event: add it to events"))
    if stage is not None and category is not None:
        problems.append(FieldError("INVALID_VALUE", "stage_category", "give a stage or a stage category, not both"))
    if stage is not None and (not isinstance(stage, str) or obj.stage(stage) is None):
        problems.append(FieldError("NOT_FOUND", "stage", f"'{stage}' is not a stage of '{obj.api_name}'"))
    if category is not None:
        if category not in STAGE_CATEGORIES:
            problems.append(FieldError("INVALID_VALUE", "stage_category", f"must be one of {', '.join(STAGE_CATEGORIES)}"))
        elif not any(s.category == category for t in obj.business_types for s in t.stages):
            problems.append(FieldError("NOT_FOUND", "stage_category", f"'{obj.api_name}' has no {category} stage"))
    return problems


def _action_problems(check: AutomationCheck, action: Any) -> list[FieldError]:
    if not isinstance(action, dict):
        return [FieldError("INVALID_VALUE", None, "must be an action: {type, ...}")]
    kind = action.get("type")
    if kind not in ACTION_KEYS:
        return [FieldError("INVALID_VALUE", "type", f"must be one of {', '.join(ACTION_KEYS)}")]
    problems = [FieldError("UNKNOWN_FIELD", key, f"is not a setting of {kind} (use {', '.join(sorted(ACTION_KEYS[kind] - {'type'}))})")
                for key in sorted(set(action) - ACTION_KEYS[kind])]
    check_action = {NOTIFY: _notify_problems, SET_FIELDS: _set_fields_problems, CREATE_TASK: _create_task_problems,
                    WEBHOOK: _webhook_problems}[kind]
    return problems + check_action(check, action)


def _notify_problems(check: AutomationCheck, action: dict[str, Any]) -> list[FieldError]:
    problems = []
    users, roles = action.get("users"), action.get("roles")
    if users is not None:
        ids, id_problems = recipients.id_list(users, "users", "user")
        problems += id_problems
        problems += [FieldError(e.code, e.field.replace("user_ids", "users", 1), e.message, e.ctx)
                     for e in recipients.inactive_users(check.conn, ids)]
    if roles is not None:
        problems += recipients.checked_roles(check.conn, roles, "roles")[1]
    for key in ("owner", "owner_unit"):
        if action.get(key) is not None and not isinstance(action.get(key), bool):
            problems.append(FieldError("INVALID_VALUE", key, "must be true or false"))
    if not (users or roles or action.get("owner") is True or action.get("owner_unit") is True):
        problems.append(FieldError("REQUIRED", "users", "name who is notified: users, roles, owner or owner_unit"))
    problems += templates.template_problems(check.obj, action.get("title"), "title", required=True)
    problems += templates.template_problems(check.obj, action.get("body"), "body")
    return problems


def _set_fields_problems(check: AutomationCheck, action: dict[str, Any]) -> list[FieldError]:
    obj, values = check.obj, action.get("values")
    if not isinstance(values, dict) or not values:
        return [FieldError("REQUIRED", "values", "map at least one field to the value it is set to")]
    problems, settable = [], {}
    for name, value in values.items():
        field = obj.field(name)
        if field is None:
            problems.append(FieldError("UNKNOWN_FIELD", f"values.{name}", f"'{obj.api_name}' has no field '{name}'"))
        elif not field.writable:
            problems.append(FieldError("READ_ONLY", f"values.{name}", "is set by the platform; a trigger cannot set it"))
        else:
            settable[name] = value
    _, value_problems = RecordValidator(obj).check(settable, creating=False)
    return problems + [p.at("values") for p in value_problems]


def _create_task_problems(check: AutomationCheck, action: dict[str, Any]) -> list[FieldError]:
    name = action.get("object")
    target = check.catalog.objects.get(name) if isinstance(name, str) else None
    if target is None:
        return [FieldError("NOT_FOUND", "object", f"there is no object named '{name}'")]
    problems = []
    link = target.field(action.get("link_field")) if isinstance(action.get("link_field"), str) else None
    if link is None or link.type not in LINK_TYPES or link.target != check.obj.api_name:
        problems.append(FieldError("INVALID_VALUE", "link_field",
                                   f"must be a lookup of '{target.api_name}' to '{check.obj.api_name}' records"))
    values = action.get("values", {})
    if not isinstance(values, dict):
        return problems + [FieldError("INVALID_VALUE", "values", "must map fields to values or templates")]
    literal = {}
    for field_name, value in values.items():
        if templates.is_template(value):
            problems += templates.template_problems(check.obj, value, f"values.{field_name}")
            if target.field(field_name) is None:
                problems.append(FieldError("UNKNOWN_FIELD", f"values.{field_name}", f"'{target.api_name}' has no field '{field_name}'"))
        else:
            literal[field_name] = value
    if link is not None and link.api_name in values:
        problems.append(FieldError("INVALID_VALUE", f"values.{link.api_name}", "is set to the record by link_field"))
    _, value_problems = RecordValidator(target).check(literal, creating=False)
    problems += [p.at("values") for p in value_problems]
    given = {*values, *(() if link is None else (link.api_name,))}
    problems += [FieldError("REQUIRED", f"values.{f.api_name}", f"'{target.api_name}' requires it")
                 for f in target.fields if f.writable and f.required and f.default is None and f.api_name not in given]
    return problems


def _webhook_problems(check: AutomationCheck, action: dict[str, Any]) -> list[FieldError]:
    problems = []
    url_problem = url_refusal(action.get("url"))
    if url_problem:
        problems.append(FieldError("INVALID_URL", "url", url_problem))
    secret = action.get("secret")
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_LENGTH:
        problems.append(FieldError("REQUIRED", "secret", f"give the shared secret deliveries are signed with "
                                                         f"(1 to {MAX_SECRET_LENGTH} characters)"))
    timeout = action.get("timeout_seconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not MIN_TIMEOUT_SECONDS <= timeout <= MAX_TIMEOUT_SECONDS):
        problems.append(FieldError("OUT_OF_RANGE", "timeout_seconds",
                                   f"must be a number of seconds from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"))
    return problems


def url_refusal(url: Any) -> str | None:
    """Why ``url`` cannot receive webhooks (only http and https with a host ever do), or ``None``."""
    if not isinstance(url, str) or not url.strip():
        return "give the http or https address deliveries are posted to"
    if len(url) > MAX_URL_LENGTH:
        return f"may be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a valid address ({error})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"must start with http:// or https:// (not {parts.scheme or 'nothing'}:)"
    if not parts.hostname:
        return "must name a host, such as https://example.com/hooks"
    if port == 0:
        return "must use a port from 1 to 65535"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "may not contain spaces or control characters"
    return None


def fields_used(obj: ObjectDef, settings: Any) -> set[str]:
    """The object's fields a trigger reads (condition, templates) or writes (set_fields)."""
    if not isinstance(settings, dict):
        return set()
    used = referenced_fields(settings["condition"]) if isinstance(settings.get("condition"), str) else set()
    for action in settings.get("actions") or ():
        if not isinstance(action, dict):
            continue
        if action.get("type") == SET_FIELDS and isinstance(action.get("values"), dict):
            used.update(action["values"])
        for text in (action.get("title"), action.get("body"),
                     *(action.get("values", {}).values() if action.get("type") == CREATE_TASK and isinstance(action.get("values"), dict) else ())):
            used.update(templates.record_fields(text))
    return {name for name in used if obj.field(name) is not None}
