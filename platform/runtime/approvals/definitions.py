"""An approval process's settings: their check when saved (every problem at its path) and their
reading at run time.

    {"entry": "record.amount > 0.0",                  # CEL; null or missing: every record
     "steps": [{"label": "Manager", "approver": "manager", "role": "crm_sales_manager"},
               {"label": "Finance", "approver": "role", "role": "crm_finance",
                "when": "record.amount > 5000.0"},    # optional: the step applies only then
               {"label": "CFO", "approver": "user", "user": "<user id>"}],
     "on_submit": {"status": "submitted"},            # field values written when submitted,
     "on_approve": {"status": "approved"},            # approved, rejected or recalled
     "on_reject": {"status": "rejected"},
     "on_recall": {"status": "draft"},
     "allow_recall": true}
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from ...metadata.automations import AutomationCheck
from ...metadata.errors import FieldError
from ...metadata.expressions import expression_problems, referenced_fields
from ..security import store as security_store
from ..validation import RecordValidator
from .approvers import active_users

USER, MANAGER, ROLE = "user", "manager", "role"
APPROVERS = (USER, MANAGER, ROLE)
OUTCOMES = ("on_submit", "on_approve", "on_reject", "on_recall")
SETTINGS = ("entry", "steps", *OUTCOMES, "allow_recall")
STEP_SETTINGS = ("label", "approver", "user", "role", "when")
MAX_STEPS = 10
MAX_LABEL = 255
OWNERSHIP_FIELDS = ("owner_id", "org_unit_id")


@dataclass(frozen=True)
class Step:
    label: str
    approver: str
    user: str | None = None
    role: str | None = None
    when: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "approver": self.approver, "user": self.user, "role": self.role, "when": self.when}


@dataclass(frozen=True)
class ProcessSettings:
    """Checked settings, as the service follows them."""

    entry: str | None
    steps: tuple[Step, ...]
    outcomes: dict[str, dict[str, Any]]
    allow_recall: bool

    @classmethod
    def of(cls, settings: dict[str, Any]) -> "ProcessSettings":
        steps = tuple(Step(label=step.get("label") or f"Step {i + 1}", approver=step["approver"], user=_canonical(step.get("user")),
                           role=step.get("role"), when=step.get("when") or None)
                      for i, step in enumerate(settings["steps"]))
        return cls(entry=settings.get("entry") or None, steps=steps,
                   outcomes={name: dict(settings.get(name) or {}) for name in OUTCOMES},
                   allow_recall=settings.get("allow_recall", True))


def fields_used(settings: Any) -> set[str]:
    """The fields the entry criteria and step conditions read and the outcomes write."""
    if not isinstance(settings, dict):
        return set()
    used: set[str] = set()
    sources = [settings.get("entry")] + [s.get("when") for s in settings.get("steps") or () if isinstance(s, dict)]
    for source in sources:
        if isinstance(source, str):
            used |= referenced_fields(source)
    for name in OUTCOMES:
        if isinstance(settings.get(name), dict):
            used |= set(settings[name])
    return used


def problems(check: AutomationCheck) -> list[FieldError]:
    """Every problem with an approval process's settings, each at its path inside them."""
    settings = check.settings
    if not isinstance(settings, dict):
        return [FieldError("INVALID_TYPE", None, "must be an object of approval settings")]
    errors = [FieldError("UNKNOWN_SETTING", key, f"is not an approval setting (known: {', '.join(SETTINGS)})")
              for key in settings if key not in SETTINGS]
    if settings.get("entry") is not None:
        errors += expression_problems(check.obj, settings["entry"], "entry")
    errors += _step_problems(check, settings.get("steps"))
    validator = check.catalog.memo(("validator", check.obj.api_name), lambda: RecordValidator(check.obj))
    for name in OUTCOMES:
        errors += _outcome_problems(validator, settings.get(name), name)
    if not isinstance(settings.get("allow_recall", True), bool):
        errors.append(FieldError("INVALID_TYPE", "allow_recall", "must be true or false"))
    return errors


def _step_problems(check: AutomationCheck, steps: Any) -> list[FieldError]:
    if steps is None or steps == []:
        return [FieldError("REQUIRED", "steps", "name at least one approval step")]
    if not isinstance(steps, list):
        return [FieldError("INVALID_TYPE", "steps", "must be a list of steps")]
    if len(steps) > MAX_STEPS:
        return [FieldError("TOO_MANY", "steps", f"may have at most {MAX_STEPS} steps")]
    errors: list[FieldError] = []
    users: dict[str, str] = {}
    roles: dict[str, str] = {}
    for i, step in enumerate(steps):
        path = f"steps.{i}"
        if not isinstance(step, dict):
            errors.append(FieldError("INVALID_TYPE", path, "must be an object: {label, approver, user | role, when}"))
            continue
        errors += [FieldError("UNKNOWN_SETTING", f"{path}.{key}", f"is not a step setting (known: {', '.join(STEP_SETTINGS)})")
                   for key in step if key not in STEP_SETTINGS]
        label = step.get("label")
        if label is not None and not (isinstance(label, str) and label.strip() and len(label) <= MAX_LABEL):
            errors.append(FieldError("INVALID_VALUE", f"{path}.label", f"must be text of 1 to {MAX_LABEL} characters"))
        approver = step.get("approver")
        if approver is None:
            errors.append(FieldError("REQUIRED", f"{path}.approver", "say who approves: user, manager or role"))
        elif approver not in APPROVERS:
            errors.append(FieldError("INVALID_VALUE", f"{path}.approver", "must be user, manager or role", {"allowed": list(APPROVERS)}))
        if approver == USER:
            errors += _named(step, "user", path, users, "name the user who approves (a user id)")
            if step.get("role") is not None:
                errors.append(FieldError("INVALID_VALUE", f"{path}.role", "only manager and role steps name a role"))
        elif approver in (MANAGER, ROLE):
            errors += _named(step, "role", path, roles, "name the role whose holders approve")
            if step.get("user") is not None:
                errors.append(FieldError("INVALID_VALUE", f"{path}.user", "only user steps name a user"))
        if step.get("when") is not None:
            errors += expression_problems(check.obj, step["when"], f"{path}.when")
    errors += _missing_users(check.conn, users)
    errors += _missing_roles(check.conn, roles)
    return sorted(errors, key=lambda e: _order(e.field))


def _named(step: dict[str, Any], key: str, path: str, found: dict[str, str], hint: str) -> list[FieldError]:
    value = step.get(key)
    if value is None:
        return [FieldError("REQUIRED", f"{path}.{key}", hint)]
    if key == "user":
        if _canonical(value) is None:
            return [FieldError("INVALID_VALUE", f"{path}.user", "must be a user id (a UUID)")]
        value = _canonical(value)
    elif not isinstance(value, str) or not value:
        return [FieldError("INVALID_VALUE", f"{path}.{key}", hint)]
    found[f"{path}.{key}"] = value
    return []


def _missing_users(conn: Connection, users: dict[str, str]) -> list[FieldError]:
    active = active_users(conn, set(users.values()))
    return [FieldError("NO_SUCH_USER", path, "is not an active user (unknown, deleted or deactivated)", {"user": user_id})
            for path, user_id in users.items() if user_id not in active]


def _missing_roles(conn: Connection, roles: dict[str, str]) -> list[FieldError]:
    if not roles:
        return []
    table = security_store.roles
    known = set(conn.execute(select(table.c.name).where(table.c.name.in_(sorted(set(roles.values()))))).scalars())
    return [FieldError("NO_SUCH_ROLE", path, f"there is no role named '{name}'", {"role": name})
            for path, name in roles.items() if name not in known]


def _outcome_problems(validator: RecordValidator, values: Any, name: str) -> list[FieldError]:
    if values is None:
        return []
    if not isinstance(values, dict):
        return [FieldError("INVALID_TYPE", name, "must map field names to the values to write")]
    errors = [FieldError("FORBIDDEN", f"{name}.{field}", "ownership changes through a transfer, not an approval")
              for field in values if field in OWNERSHIP_FIELDS]
    _, found = validator.check({k: v for k, v in values.items() if k not in OWNERSHIP_FIELDS}, creating=False)
    return errors + [e.at(name) for e in found]


def _canonical(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value is not None else None
    except ValueError:
        return None


def _order(path: str | None) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in (path or "").split(".")[:2])
