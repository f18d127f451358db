"""CEL expressions written by administrators (validation rules): compiled and checked when saved.

An expression may use ``record`` (the record as the write leaves it), ``old`` (the record before an
update; ``null`` on create), ``user`` (``id``, ``username``) and ``now`` (a timestamp). A reference
to a field the object does not have, a variable that does not exist, a function the installed CEL
package does not provide (or one called the way it cannot be: ``startsWith(s, "a")`` for
``s.startsWith("a")``) or a syntax error is reported with its position (line, column, offset), so an
editor can point at it.
"""
from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import cel

from .definitions import ObjectDef
from .errors import FieldError

VARIABLES = ("record", "old", "user", "now")
USER_FIELDS = ("id", "username")
MAX_LENGTH = 4000

_STRING = re.compile(r"""(?:[bB][rR]?|[rR][bB]?)?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")""", re.S)
_TEXT = re.compile(rf"{_STRING.pattern}|//[^\n]*", re.S)
"""String literals and comments: blanked before scanning for names, so that words in them are not read."""
_REFERENCE = re.compile(r"(?<![\w.])(record|old|user)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(?![\w(]|\s+\()")
"""``record.amount`` (a field read), not ``record.size()`` (a method called on the record)."""
_POSITION = re.compile(r"<input>:(\d+):(\d+):")
_BOUND = re.compile(r"\.\s*(?:exists_one|existsOne|exists|all|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
                    r"|\bcel\s*\.\s*bind\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
"""Variables a macro binds (``list.exists(t, ...)``, ``cel.bind(x, ...)``): not free variables."""
_CALL = re.compile(r"(?<![\w])([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = frozenset(string.ascii_letters + string.digits + "_")

MACROS = {"has": "has(record.field)", "all": "list.all(x, condition)", "exists": "list.exists(x, condition)",
          "exists_one": "list.exists_one(x, condition)", "existsOne": "list.existsOne(x, condition)",
          "map": "list.map(x, expression)", "filter": "list.filter(x, condition)"}
"""Macros the parser expands; one reaches the program as a call only when written the wrong way."""

_TIME = 'timestamp("2024-03-05T10:20:30Z")'
CANDIDATES = (
    # the CEL standard definitions
    'size("ab")', '"ab".size()', '"ab".contains("a")', 'contains("ab", "a")', '"ab".startsWith("a")',
    'startsWith("ab", "a")', '"ab".endsWith("b")', 'endsWith("ab", "b")', '"ab".matches("a")', 'matches("ab", "a")',
    'int("1")', 'uint("1")', 'double("1.5")', 'string(1)', 'bytes("a")', 'bool("true")', 'dyn(1)', 'type(1)',
    _TIME, 'duration("1h")', *(f"{_TIME}.{getter}()" for getter in (
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes",
        "getSeconds", "getMilliseconds")),
    'optional.of(1)', 'optional.none()', 'optional.ofNonZeroValue(1)', 'optional.of(1).hasValue()', 'optional.of(1).value()',
    'optional.none().or(optional.of(1))', 'optional.none().orValue(1)',
    # extension libraries of other CEL implementations (strings, math, lists, sets, encoders)
    '"A".lowerAscii()', '"a".upperAscii()', '"ab".charAt(0)', '"ab".indexOf("b")', '"ab".lastIndexOf("b")',
    '"ab".replace("a", "b")', '"a,b".split(",")', '"ab".substring(1)', '" a ".trim()', '["a"].join(",")', '"ab".reverse()',
    '"%s".format(["a"])', 'strings.quote("a")', 'math.greatest(1, 2)', 'math.least(1, 2)', 'math.abs(-1)', 'math.sign(-1)',
    'math.ceil(1.5)', 'math.floor(1.5)', 'math.round(1.5)', 'math.trunc(1.5)', 'math.isNaN(1.5)', 'math.isInf(1.5)',
    'math.isFinite(1.5)', 'math.sqrt(4.0)', 'math.bitOr(1, 2)', 'math.bitAnd(1, 2)', 'math.bitXor(1, 2)', 'math.bitNot(1)',
    'math.bitShiftLeft(1, 1)', 'math.bitShiftRight(2, 1)', '[1].contains(1)', '[1, 1].distinct()', '[[1]].flatten()',
    '[2, 1].sort()', '[1, 2].slice(0, 1)', '[1].first()', '[1].last()', 'lists.range(2)', 'sets.contains([1], [1])',
    'sets.equivalent([1], [1])', 'sets.intersects([1], [1])', 'base64.encode(b"a")', 'base64.decode("YQ==")',
    'min([1, 2])', 'max([1, 2])', 'sum([1, 2])', 'cel.bind(x, 1, x + 1)',
)
"""One call of each function CEL implementations know, in each way it may be called: the ones the
installed package evaluates are the functions and methods an expression may call."""


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


def _blank(source: str) -> str:
    return _TEXT.sub(lambda m: " " * len(m.group(0)), source)


def referenced_fields(source: str) -> set[str]:
    """The fields an expression reads through ``record.`` or ``old.``."""
    return {m.group(2) for m in _REFERENCE.finditer(_blank(source)) if m.group(1) in ("record", "old")}


def compile_expression(source: str):
    """The compiled program (raises ``ValueError`` on a syntax error)."""
    return cel.compile(source)


def _receiver(blanked: str, start: int) -> tuple[tuple[str, ...], int] | None:
    """What the call whose name starts at ``start`` is made on: ``None`` for a plain call ``f(...)``;
    the dotted names before it and where they start (``optional.of``, ``record.name.startsWith``);
    no names when it is made on another expression (``"a".size()``, ``f(x).g()``, ``1u.f()``)."""
    end = len(blanked[:start].rstrip())
    if not end or blanked[end - 1] != ".":
        return None
    names: list[str] = []
    while True:
        stop = len(blanked[:end - 1].rstrip())
        begin = stop
        while begin and blanked[begin - 1] in _WORD:
            begin -= 1
        if begin == stop or not _NAME.match(blanked[begin:stop]):
            return (), start
        names.insert(0, blanked[begin:stop])
        end = len(blanked[:begin].rstrip())
        if not end or blanked[end - 1] != ".":
            return tuple(names), begin


def _calls(blanked: str):
    """Each call in the (blanked) source: its name, what it is made on (see :func:`_receiver`),
    where the name starts and where the dotted names before it start."""
    for match in _CALL.finditer(blanked):
        found = _receiver(blanked, match.start(1))
        chain, begin = found if found is not None else (None, match.start(1))
        yield match.group(1), chain, match.start(1), begin


@cache
def supported_calls() -> tuple[frozenset[str], frozenset[str]]:
    """The functions (``int``, ``optional.of``) and methods (``startsWith``) of :data:`CANDIDATES`
    that the installed CEL package evaluates."""
    functions: set[str] = set()
    methods: set[str] = set()
    for sample in CANDIDATES:
        try:
            cel.evaluate(sample, {})
        except Exception:
            continue
        for name, chain, _, _ in _calls(_blank(sample)):
            if chain is None or chain:
                functions.add(".".join((*(chain or ()), name)))
            else:
                methods.add(name)
    return frozenset(functions), frozenset(methods)


@cache
def function_namespaces() -> frozenset[str]:
    """The namespaces of CEL functions (``math`` of ``math.abs``), whether the package has them or not."""
    return frozenset(chain[0] for sample in CANDIDATES for _, chain, _, _ in _calls(_blank(sample)) if chain)


@lru_cache(maxsize=256)
def _builtin_name(name: str) -> bool:
    """Whether the package itself knows ``name`` (a type: ``type(x) == int``)."""
    try:
        cel.evaluate(name, {})
    except Exception:
        return False
    return True


def _function_problems(program, source: str, blanked: str, variables: frozenset[str], path: str) -> tuple[list[FieldError], set[str]]:
    """Calls of functions or methods the package does not provide (each name once, where it is
    first called), and the names used as namespaces (``optional`` in ``optional.of(1)``, ``math`` in
    ``math.abs(x)``): those are not variables."""
    called = {name for name in program.functions() if _NAME.fullmatch(name)}
    functions, methods = supported_calls()
    errors: list[FieldError] = []
    used_as_namespaces: set[str] = set()
    shown_names: set[str] = set()
    seen: set[str] = set()

    def refuse(name: str, kind: str, shown: str, at: int) -> None:
        if shown not in shown_names:
            shown_names.add(shown)
            errors.append(FieldError("UNKNOWN_FUNCTION", path, _unknown_call(name, kind, shown, functions, methods),
                                     _position(source, at).as_dict()))

    for name, chain, at, begin in _calls(blanked):
        if name not in called:
            continue
        seen.add(name)
        if chain is None:
            if name not in functions:
                refuse(name, "function", name, at)
        elif len(chain) == 1 and chain[0] not in variables:
            qualified = f"{chain[0]}.{name}"
            if chain[0] in function_namespaces() or qualified in functions or name not in methods:
                used_as_namespaces.add(chain[0])
                if qualified not in functions:
                    refuse(name, "function", qualified, begin)
        elif name not in methods:
            refuse(name, "method", name, at)
    for name in sorted(called - seen - functions - methods):
        errors.append(FieldError("UNKNOWN_FUNCTION", path, _unknown_call(name, "function", name, functions, methods)))
    return errors, used_as_namespaces


def _unknown_call(name: str, kind: str, shown: str, functions: frozenset[str], methods: frozenset[str]) -> str:
    if name in MACROS:
        return f"'{name}' is a macro; write it as {MACROS[name]}"
    if kind == "function" and shown == name and name in methods:
        return f"'{name}' is a method; call it on a value: value.{name}(...)"
    if kind == "method" and name in functions:
        return f"'{name}' is not a method; call it as {name}(value)"
    known = sorted(functions if kind == "function" else methods)
    close = difflib.get_close_matches(shown, known, n=1, cutoff=0.75)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"'{shown}' is not a CEL {'function' if kind == 'function' else 'method'}{hint}"


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
    blanked = _blank(source)
    bound = {name for match in _BOUND.finditer(blanked) for name in match.groups() if name}
    calls, namespaces = _function_problems(program, source, blanked, frozenset((*VARIABLES, *bound)), path)
    unknown = [v for v in program.variables() if v not in VARIABLES and v not in bound and v not in namespaces and not _builtin_name(v)]
    for name in unknown:
        match = re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", blanked)
        ctx = _position(source, match.start()).as_dict() if match else {}
        errors.append(FieldError("UNKNOWN_VARIABLE", path, f"'{name}' is not known; use {', '.join(VARIABLES)}", ctx))
    errors.extend(calls)
    for match in _REFERENCE.finditer(blanked):
        variable, name = match.group(1), match.group(2)
        known = obj.field(name) is not None if variable in ("record", "old") else name in USER_FIELDS
        if not known:
            owner = f"'{obj.api_name}'" if variable != "user" else "the user"
            errors.append(FieldError("UNKNOWN_FIELD", path, f"{owner} has no field '{name}' ({variable}.{name})",
                                     _position(source, match.start(2)).as_dict()))
    return errors
