"""A duplicate rule's settings, and their check (every problem at its path inside the settings).

``{"match": "all"|"any", "fields": [{"field", "method", "threshold"?}], "action": "block"|"warn",
"condition"?: CEL, "message"?: text}``. ``match`` defaults to ``all`` (every field matches); with
``any`` one field is enough. ``threshold`` (fuzzy only, above 0 and at most 1) defaults to 0.85.
The condition is about the record being saved (or asked about): when it does not hold, the rule
does not look for duplicates of it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...metadata.definitions import ObjectDef, thaw
from ...metadata.errors import FieldError
from ...metadata.expressions import expression_problems, referenced_fields

KIND = "duplicate_rule"
MATCHES = ("all", "any")
ACTIONS = ("block", "warn")
METHODS = ("exact", "normalized", "phone", "fuzzy")
TEXT_TYPES = ("text", "textarea", "email", "phone", "url", "picklist")
TYPES_BY_METHOD = {"exact": (*TEXT_TYPES, "lookup"), "normalized": TEXT_TYPES, "fuzzy": TEXT_TYPES, "phone": ("phone", "text")}
"""An exact lookup compares the record pointed at: "a deal of the same account with a similar name"."""
DEFAULT_THRESHOLD = 0.85
MAX_FIELDS = 5
MAX_MESSAGE = 500
SETTINGS = ("match", "fields", "action", "condition", "message")
FIELD_SETTINGS = ("field", "method", "threshold")


@dataclass(frozen=True)
class FieldMatch:
    field: str
    method: str
    threshold: float = 1.0

    @property
    def matcher(self) -> tuple[str, str]:
        """What the match keys are kept for: this field compared this way."""
        return self.field, self.method


@dataclass(frozen=True)
class DuplicateRule:
    api_name: str
    match: str
    fields: tuple[FieldMatch, ...]
    action: str
    condition: str | None
    message: str | None

    @property
    def matchers(self) -> set[tuple[str, str]]:
        return {f.matcher for f in self.fields}


def rule_of(api_name: str, settings: Mapping[str, Any]) -> DuplicateRule:
    """The rule of settings that passed :func:`settings_problems`."""
    settings = thaw(settings)
    fields = tuple(FieldMatch(f["field"], f["method"], float(f.get("threshold", DEFAULT_THRESHOLD)) if f["method"] == "fuzzy" else 1.0)
                   for f in settings["fields"])
    return DuplicateRule(api_name, settings.get("match", "all"), fields, settings["action"], settings.get("condition") or None,
                         settings.get("message") or None)


def fields_named(settings: Any) -> set[str]:
    """The fields settings compare and their condition reads (well formed or not)."""
    if not isinstance(settings, dict):
        return set()
    entries = settings.get("fields")
    used = {f["field"] for f in entries if isinstance(f, dict) and isinstance(f.get("field"), str)} if isinstance(entries, list) else set()
    if isinstance(settings.get("condition"), str):
        used |= referenced_fields(settings["condition"])
    return used


def settings_problems(obj: ObjectDef, settings: dict[str, Any]) -> list[FieldError]:
    errors = [FieldError("UNKNOWN_FIELD", name, f"is not a setting of a duplicate rule (settings: {', '.join(SETTINGS)})")
              for name in settings if name not in SETTINGS]
    if settings.get("match", "all") not in MATCHES:
        errors.append(FieldError("INVALID_VALUE", "match", "must be 'all' (every field matches) or 'any' (one field is enough)"))
    errors += _fields_problems(obj, settings.get("fields"))
    if "action" not in settings:
        errors.append(FieldError("REQUIRED", "action", "say what a duplicate does: 'block' refuses the save, 'warn' asks to acknowledge it"))
    elif settings["action"] not in ACTIONS:
        errors.append(FieldError("INVALID_VALUE", "action", "must be 'block' or 'warn'"))
    if settings.get("condition") is not None:
        errors += expression_problems(obj, settings["condition"], "condition")
    message = settings.get("message")
    if message is not None and (not isinstance(message, str) or not message.strip()):
        errors.append(FieldError("INVALID_VALUE", "message", "must be a text shown when a duplicate is found"))
    elif isinstance(message, str) and len(message) > MAX_MESSAGE:
        errors.append(FieldError("TOO_LONG", "message", f"may be at most {MAX_MESSAGE} characters"))
    return errors


def _fields_problems(obj: ObjectDef, entries: Any) -> list[FieldError]:
    if entries is None:
        return [FieldError("REQUIRED", "fields", "name the fields to compare")]
    if not isinstance(entries, list) or not entries:
        return [FieldError("INVALID_VALUE", "fields", "must be a list of one or more {field, method, threshold?}")]
    if len(entries) > MAX_FIELDS:
        return [FieldError("OUT_OF_RANGE", "fields", f"compare at most {MAX_FIELDS} fields")]
    errors: list[FieldError] = []
    seen: set[tuple[Any, Any]] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(FieldError("INVALID_TYPE", f"fields.{i}", "must be {field, method, threshold?}"))
            continue
        errors += [FieldError("UNKNOWN_FIELD", f"fields.{i}.{name}", f"is not a setting of a compared field ({', '.join(FIELD_SETTINGS)})")
                   for name in entry if name not in FIELD_SETTINGS]
        errors += _field_problems(obj, entry, f"fields.{i}")
        pair = (entry.get("field"), entry.get("method"))
        if pair in seen:
            errors.append(FieldError("DUPLICATE", f"fields.{i}", "compares the same field the same way as an earlier entry"))
        seen.add(pair)
    return errors


def _field_problems(obj: ObjectDef, entry: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    name, method = entry.get("field"), entry.get("method")
    field = obj.field(name) if isinstance(name, str) else None
    if name is None:
        errors.append(FieldError("REQUIRED", f"{path}.field", "name a field of the object"))
    elif field is None:
        errors.append(FieldError("UNKNOWN_FIELD", f"{path}.field", f"'{obj.api_name}' has no field named {name!r}"))
    if method is None:
        errors.append(FieldError("REQUIRED", f"{path}.method", f"choose how to compare: {', '.join(METHODS)}"))
    elif method not in METHODS:
        errors.append(FieldError("INVALID_VALUE", f"{path}.method", f"must be one of {', '.join(METHODS)}"))
    elif field is not None and field.type not in TYPES_BY_METHOD[method]:
        errors.append(FieldError("INVALID_FIELD_TYPE", f"{path}.field",
                                 f"'{name}' is a {field.type} field; {method} matching compares {', '.join(TYPES_BY_METHOD[method])} fields",
                                 {"type": field.type, "method": method}))
    if "threshold" in entry:
        threshold = entry["threshold"]
        if method in METHODS and method != "fuzzy":
            errors.append(FieldError("NOT_ALLOWED", f"{path}.threshold", "only fuzzy matching takes a threshold"))
        elif isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            errors.append(FieldError("OUT_OF_RANGE", f"{path}.threshold", "must be a similarity above 0 and at most 1 (1: the same bigrams)"))
    return errors
