"""CEL expressions written by administrators (validation rules): compiled and checked when saved.

An expression may use ``record`` (the record as the write leaves it), ``old`` (the record before an
update; ``null`` on create), ``user`` (``id``, ``username``) and ``now`` (a timestamp). A reference
to a field the object does not have, a variable that does not exist or a syntax error is reported
with its position (line, column, offset), so an editor can point at it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

from .definitions import ObjectDef
from .errors import FieldError

VARIABLES = ("record", "old", "user", "now")
USER_FIELDS = ("id", "username")
MAX_LENGTH = 4000

_STRING = re.compile(r"""[rR]?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")""", re.S)
_REFERENCE = re.compile(r"(?<![\w.])(record|old|user)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_POSITION = re.compile(r"<input>:(\d+):(\d+):")
_BOUND = re.compile(r"\.\s*(?:exists_one|exists|all|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
                    r"|\bcel\s*\.\s*bind\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
"""Variables a macro binds (``list.exists(t, ...)``, ``cel.bind(x, ...)``): not free variables."""


@dataclass(frozen=True)
class Position:
    line: int
    column: int
    offset: int

    def as_dict(self) -> dict[str, int]:
        return {"line": self.line, "column": self.column, "offset": self.offset}


def _position(source: str, offset: int) -> Position:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return Position(line, column, offset)


def referenced_fields(source: str) -> set[str]:
    """The fields an expression reads through ``record.`` or ``old.``."""
    blanked = _STRING.sub(lambda m: " " * len(m.group(0)), source)
    return {m.group(2) for m in _REFERENCE.finditer(blanked) if m.group(1) in ("record", "old")}


def compile_expression(source: str):
    """The compiled program (raises ``ValueError`` on a syntax error)."""
    return cel.compile(source)


def expression_problems(obj: ObjectDef, source: Any, path: str = "expression") -> list[FieldError]:
    """Everything wrong with ``source`` as an expression over ``obj``'s records, each with where it is."""
    if not isinstance(source, str) or not source.strip():
        return [FieldError("INVALID_VALUE", path, "write an expression")]
    if len(source) > MAX_LENGTH:
        return [FieldError("TOO_LONG", path, f"may be at most {MAX_LENGTH} characters")]
    try:
        program = compile_expression(source)
    except ValueError as error:
        text = str(error)
        found = _POSITION.search(text)
        detail = text.split("Syntax error:", 1)[-1].strip().splitlines()[0] if "Syntax error:" in text else text.splitlines()[0]
        ctx: dict[str, Any] = {}
        if found:
            line, column = int(found.group(1)), int(found.group(2))
            offset = sum(len(part) + 1 for part in source.split("\n")[:line - 1]) + column - 1
            ctx = _position(source, offset).as_dict()
        where = f" at line {ctx['line']}, column {ctx['column']}" if ctx else ""
        return [FieldError("SYNTAX_ERROR", path, f"is not valid CEL{where}: {detail}", ctx)]
    errors = []
    blanked = _STRING.sub(lambda m: " " * len(m.group(0)), source)
    bound = {name for match in _BOUND.finditer(blanked) for name in match.groups() if name}
    unknown = [v for v in program.variables() if v not in VARIABLES and v not in bound and v != "cel"]
    for name in unknown:
        match = re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", blanked)
        ctx = _position(source, match.start()).as_dict() if match else {}
        errors.append(FieldError("UNKNOWN_VARIABLE", path, f"'{name}' is not known; use {', '.join(VARIABLES)}", ctx))
    for match in _REFERENCE.finditer(blanked):
        variable, name = match.group(1), match.group(2)
        known = obj.field(name) is not None if variable in ("record", "old") else name in USER_FIELDS
        if not known:
            owner = f"'{obj.api_name}'" if variable != "user" else "the user"
            errors.append(FieldError("UNKNOWN_FIELD", path, f"{owner} has no field '{name}' ({variable}.{name})",
                                     _position(source, match.start(2)).as_dict()))
    return errors
