"""Message templates of triggers: ``"Won: {record.name} ({record.amount})"``.

A placeholder names one value and nothing else: ``{record.<field>}`` (a field of the record being
saved), ``{user.username}`` / ``{user.id}`` (who saved it), ``{object.label}`` /
``{object.api_name}``. There is no attribute access, indexing, call or format spec, so a template
can never reach more than these values; ``{{`` and ``}}`` stand for literal braces. Templates are
checked when a trigger is saved (an unknown field or a stray brace is reported at its path), and a
value renders as text: empty for null, ISO 8601 for dates and times, ``a, b`` for lists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Mapping

from ...metadata.definitions import ObjectDef
from ...metadata.errors import FieldError

VARIABLES = {"record": None, "user": ("id", "username"), "object": ("label", "api_name")}
"""What a placeholder may name: any field of the record, and these attributes of the others."""
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(r"^\s*([a-z]+)\.([A-Za-z_][A-Za-z0-9_]*)\s*$")
MAX_LENGTH = 4000


@dataclass(frozen=True)
class Placeholder:
    variable: str
    name: str
    offset: int


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholders in order, and what is wrong with it."""

    parts: tuple[str | Placeholder, ...]
    syntax_errors: tuple[tuple[int, str], ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def single(self) -> Placeholder | None:
        """The placeholder when the template is exactly one (its value keeps its type: a number
        stays a number, an id stays an id)."""
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder) else None


@lru_cache(maxsize=1024)
def parse(source: str) -> Template:
    parts: list[str | Placeholder] = []
    errors: list[tuple[int, str]] = []
    position = 0
    for match in _TOKEN.finditer(source):
        if match.start() > position:
            parts.append(source[position:match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif token in ("{", "}"):
            errors.append((match.start(), f"has a lone '{token}' (write '{token * 2}' for a brace)"))
        else:
            named = _PLACEHOLDER.match(match.group(1))
            if named is None:
                errors.append((match.start(), f"'{token}' is not a placeholder such as {{record.name}}"))
            else:
                parts.append(Placeholder(named.group(1), named.group(2), match.start()))
        position = match.end()
    if position < len(source):
        parts.append(source[position:])
    merged: list[str | Placeholder] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return Template(tuple(merged), tuple(errors))


def is_template(value: Any) -> bool:
    """Whether a configured value is text with placeholders (other values are used as given)."""
    return isinstance(value, str) and ("{" in value or "}" in value)


def template_problems(obj: ObjectDef, source: Any, path: str, *, required: bool = False) -> list[FieldError]:
    """Everything wrong with ``source`` as a template over ``obj``'s records, at ``path``."""
    if source is None and not required:
        return []
    if not isinstance(source, str) or (required and not source.strip()):
        return [FieldError("INVALID_VALUE", path, "must be text, with placeholders such as {record.name}")]
    if len(source) > MAX_LENGTH:
        return [FieldError("TOO_LONG", path, f"may be at most {MAX_LENGTH} characters")]
    template = parse(source)
    problems = [FieldError("INVALID_TEMPLATE", path, message, {"offset": offset}) for offset, message in template.syntax_errors]
    for placeholder in template.placeholders:
        problem = _unknown(obj, placeholder)
        if problem:
            problems.append(FieldError("UNKNOWN_FIELD", path, problem, {"offset": placeholder.offset}))
    return problems


def _unknown(obj: ObjectDef, placeholder: Placeholder) -> str | None:
    if placeholder.variable not in VARIABLES:
        return f"'{placeholder.variable}' is not known; use {', '.join(VARIABLES)}"
    allowed = VARIABLES[placeholder.variable]
    if allowed is None:
        return None if obj.field(placeholder.name) is not None else f"'{obj.api_name}' has no field '{placeholder.name}'"
    if placeholder.name not in allowed:
        return f"{placeholder.variable} has no '{placeholder.name}' (use {', '.join(allowed)})"
    return None


def record_fields(source: Any) -> set[str]:
    """The fields of the record a template reads."""
    if not isinstance(source, str):
        return set()
    return {p.name for p in parse(source).placeholders if p.variable == "record"}


def scope(obj: ObjectDef, record: Mapping[str, Any], actor) -> dict[str, Mapping[str, Any]]:
    """The values placeholders name, for one save."""
    return {"record": record, "user": {"id": actor.id or "", "username": actor.name},
            "object": {"label": obj.label, "api_name": obj.api_name}}


def render(source: str, values: Mapping[str, Mapping[str, Any]]) -> str:
    """The template filled in, as text."""
    return "".join(part if isinstance(part, str) else as_text(_lookup(part, values)) for part in parse(source).parts)


def resolve(value: Any, values: Mapping[str, Mapping[str, Any]]) -> Any:
    """A configured value: a lone placeholder gives the value itself, other templates render as
    text, anything else is used as given."""
    if not is_template(value):
        return value
    single = parse(value).single
    return _lookup(single, values) if single is not None else render(value, values)


def _lookup(placeholder: Placeholder, values: Mapping[str, Mapping[str, Any]]) -> Any:
    return values.get(placeholder.variable, {}).get(placeholder.name)


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        return ", ".join(as_text(item) for item in value)
    return str(value)
