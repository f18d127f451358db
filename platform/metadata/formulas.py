"""The part of CEL that translates into SQL: formula fields and roll-up filters computed by the database.

An expression is parsed into a small tree; :func:`sql_expression` turns the tree into one SQL
expression over a record table, typed as CEL would type it. What it cannot translate (macros,
regular expressions, lists, timestamps arithmetic...) raises :class:`NotTranslatable`, with the
reason and the place: such a formula is computed after reading instead, and cannot be filtered,
sorted or grouped on.

Where CEL raises an error (a division by zero, arithmetic on a null) the SQL gives null.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Mapping

from sqlalchemy import (
    BigInteger,
    Boolean,
    Numeric,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    null,
    or_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

KINDS = ("int", "double", "string", "bool", "date", "timestamp")
"""What a translated expression yields."""



class NotTranslatable(Exception):
    def __init__(self, reason: str, offset: int):
        super().__init__(reason)
        self.reason, self.offset = reason, offset


class ExpressionTypeError(NotTranslatable):
    """Operands CEL itself refuses to combine (it never converts between int and double)."""


@dataclass(frozen=True)
class Node:
    op: str
    """literal, field, now, list, unary, binary, ternary, call."""
    offset: int
    value: Any = None
    args: tuple["Node", ...] = ()


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)(?P<unsigned>[uU])?
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:().,\[\]])
""", re.X)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
MACROS = {"all", "exists", "exists_one", "map", "filter"}


def _tokens(source: str) -> list[tuple[str, Any, int]]:
    tokens, at = [], 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise NotTranslatable(f"'{source[at]}' is not part of the translatable subset", at)
        kind = match.lastgroup if match.lastgroup != "unsigned" else "int"
        text = match.group(kind)
        if kind == "int":
            tokens.append(("int", int(text, 0), at))
        elif kind == "double":
            tokens.append(("double", Decimal(text), at))
        elif kind == "string":
            tokens.append(("string", _unescape(text[1:-1], at), at))
        elif kind == "name":
            tokens.append(("name", text, at))
        elif kind == "op":
            tokens.append(("op", text, at))
        at = match.end()
    tokens.append(("end", None, len(source)))
    return tokens


def _unescape(body: str, at: int) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            code = body[i + 1: i + 2]
            if code not in _ESCAPES:
                raise NotTranslatable("this string escape is not part of the translatable subset", at + i + 1)
            out.append(_ESCAPES[code])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


class _Parser:
    """Precedence climbing over CEL's grammar: ternary, ||, &&, relations, +/-, * / %, unary, member."""

    def __init__(self, source: str):
        self.tokens = _tokens(source)
        self.at = 0

    def peek(self, value: str | None = None) -> bool:
        kind, text, _ = self.tokens[self.at]
        return kind == "op" and text == value if value is not None else False

    def take(self) -> tuple[str, Any, int]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, value: str) -> int:
        kind, text, offset = self.take()
        if kind != "op" or text != value:
            raise NotTranslatable(f"expected '{value}'", offset)
        return offset

    def parse(self) -> Node:
        node = self.ternary()
        kind, _, offset = self.tokens[self.at]
        if kind != "end":
            raise NotTranslatable("unexpected text after the expression", offset)
        return node

    def ternary(self) -> Node:
        condition = self.binary(0)
        if self.peek("?"):
            offset = self.take()[2]
            then = self.binary(0)
            self.expect(":")
            return Node("ternary", offset, None, (condition, then, self.ternary()))
        return condition

    LEVELS = (("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while True:
            kind, text, offset = self.tokens[self.at]
            if kind not in ("op", "name") or text not in self.LEVELS[level]:
                return node
            self.take()
            node = Node("binary", offset, text, (node, self.binary(level + 1)))
            if level == 2:
                return node

    def unary(self) -> Node:
        if self.peek("!") or self.peek("-"):
            _, text, offset = self.take()
            return Node("unary", offset, text, (self.unary(),))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek("."):
            self.take()
            kind, name, offset = self.take()
            if kind != "name":
                raise NotTranslatable("expected a name after '.'", offset)
            if self.peek("(") and name in MACROS:
                raise NotTranslatable(f"the macro {name}() is not part of the translatable subset", offset)
            if self.peek("("):
                node = Node("call", offset, name, (node, *self.arguments()))
            elif node.op == "variable" and node.value == "record":
                node = Node("field", offset, name)
            else:
                raise NotTranslatable(f"'.{name}' is not part of the translatable subset", offset)
        if self.peek("["):
            raise NotTranslatable("indexing is not part of the translatable subset", self.tokens[self.at][2])
        return node

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        while not self.peek(")"):
            args.append(self.ternary())
            if not self.peek(")"):
                self.expect(",")
        self.take()
        return tuple(args)

    def primary(self) -> Node:
        kind, value, offset = self.take()
        if kind in ("int", "double", "string"):
            return Node("literal", offset, (kind, value))
        if kind == "name":
            if value in ("true", "false"):
                return Node("literal", offset, ("bool", value == "true"))
            if value == "null":
                return Node("literal", offset, ("null", None))
            if self.peek("("):
                return Node("call", offset, value, (None, *self.arguments()))
            if value in ("record", "now"):
                return Node("variable", offset, value)
            raise NotTranslatable(f"'{value}' is not part of the translatable subset", offset)
        if kind == "op" and value == "(":
            node = self.ternary()
            self.expect(")")
            return node
        if kind == "op" and value == "[":
            items: list[Node] = []
            while not self.peek("]"):
                items.append(self.ternary())
                if not self.peek("]"):
                    self.expect(",")
            self.take()
            return Node("list", offset, None, tuple(items))
        raise NotTranslatable("unexpected end of the expression" if kind == "end" else f"unexpected '{value}'", offset)


@lru_cache(maxsize=1024)
def parse(source: str) -> Node:
    """The tree of ``source``; raises :class:`NotTranslatable` for what the subset lacks."""
    return _Parser(source).parse()


def fields_read(node: Node) -> set[str]:
    if node.op == "field":
        return {node.value}
    return {name for arg in node.args if arg is not None for name in fields_read(arg)}


# -- SQL ---------------------------------------------------------------------------------------

Column = Callable[[str, int], tuple[ColumnElement, str]]
"""Resolves ``record.<name>`` (at an offset) to its SQL and kind, or raises NotTranslatable."""


def _sql_function(name: str, sql_type, default: str, sqlite: str) -> type[FunctionElement]:
    """A function element written from a template per dialect (``{0}``, ``{1}``: its arguments)."""
    element = type(name, (FunctionElement,), {"inherit_cache": True, "type": sql_type, "name": name})

    def render(template: str):
        def write(element, compiler, **kw):
            return template.format(*(compiler.process(clause, **kw) for clause in element.clauses))
        return write

    compiles(element)(render(default))
    compiles(element, "sqlite")(render(sqlite))
    return element


_Contains = _sql_function("cel_contains", Boolean(), "(strpos({0}, {1}) > 0)", "(instr({0}, {1}) > 0)")
_EndsWith = _sql_function("cel_ends_with", Boolean(), "(length({1}) = 0 OR right({0}, length({1})) = {1})",
                          "(length({1}) = 0 OR substr({0}, -length({1})) = {1})")
_Truncate = _sql_function("cel_int", BigInteger(), "CAST(trunc({0}) AS BIGINT)", "CAST({0} AS INTEGER)")
"""A number truncated toward zero, as CEL's ``int()``."""
_ToDouble = _sql_function("cel_double", Numeric(), "CAST({0} AS NUMERIC)", "CAST({0} AS REAL)")
_Now = _sql_function("cel_now", String(), "CURRENT_TIMESTAMP", "strftime('%Y-%m-%d %H:%M:%f', 'now')")
ScaledDecimal = _sql_function("scaled_decimal", Numeric(), "{0}", "(CAST({0} AS REAL) / {1})")
"""A stored exact decimal as a number: as is on PostgreSQL, unscaled on SQLite."""


class _Number(ColumnElement):
    """A decimal literal written into the statement: numeric on PostgreSQL, real on SQLite."""

    inherit_cache = True
    type = Numeric()
    _traverse_internals = [("value", InternalTraversal.dp_plain_obj)]

    def __init__(self, value: Decimal):
        self.value = value


@compiles(_Number)
def _number(element, compiler, **kw):
    return f"({element.value})"


_NUMBERS = ("int", "double")
_ORDERED = (*_NUMBERS, "string", "date", "timestamp")


def sql_expression(node: Node, column: Column) -> tuple[ColumnElement, str]:
    """``node`` as SQL over one record table, and its kind (``null`` for a bare null)."""
    op = node.op
    if op == "literal":
        kind, value = node.value
        if kind == "null":
            return null(), "null"
        if kind == "double":
            return _Number(value), kind
        sql_type = {"int": BigInteger(), "string": String(), "bool": Boolean()}[kind]
        return literal(value, sql_type), kind
    if op == "field":
        return column(node.value, node.offset)
    if op == "variable":
        if node.value == "now":
            return _Now(), "timestamp"
        raise NotTranslatable("'record' is used only as record.<field>", node.offset)
    if op == "unary":
        operand, kind = sql_expression(node.args[0], column)
        if node.value == "!":
            _expect(kind, ("bool",), node)
            return not_(operand), "bool"
        _expect(kind, _NUMBERS, node)
        return -operand, kind
    if op == "ternary":
        condition, kind = sql_expression(node.args[0], column)
        _expect(kind, ("bool",), node.args[0])
        (then, then_kind), (other, other_kind) = (sql_expression(n, column) for n in node.args[1:])
        try:
            kind = _common(then_kind, other_kind, node)
        except ExpressionTypeError:
            raise NotTranslatable("the two branches give values of different types", node.offset) from None
        return case((condition, then), else_=other), kind
    if op == "binary":
        return _binary(node, column)
    if op == "call":
        return _call(node, column)
    raise NotTranslatable("lists appear only on the right of 'in'", node.offset)


def _binary(node: Node, column: Column) -> tuple[ColumnElement, str]:
    operator = node.value
    left, left_kind = sql_expression(node.args[0], column)
    if operator == "in":
        if node.args[1].op != "list" or not node.args[1].args:
            raise NotTranslatable("'in' translates only with a non-empty list of values", node.args[1].offset)
        items = [sql_expression(item, column) for item in node.args[1].args]
        for (_, kind), item in zip(items, node.args[1].args):
            _common(left_kind, kind, item)
        return left.in_([sql for sql, _ in items]), "bool"
    right, right_kind = sql_expression(node.args[1], column)
    if operator in ("&&", "||"):
        _expect(left_kind, ("bool",), node.args[0])
        _expect(right_kind, ("bool",), node.args[1])
        return (and_ if operator == "&&" else or_)(left, right), "bool"
    if operator in ("==", "!="):
        if "null" in (left_kind, right_kind):
            other = right if left_kind == "null" else left
            return (other.is_(None) if operator == "==" else other.is_not(None)), "bool"
        _common(left_kind, right_kind, node)
        return (left == right if operator == "==" else left != right), "bool"
    if operator in ("<", "<=", ">", ">="):
        kind = _common(left_kind, right_kind, node)
        _expect(kind, _ORDERED, node)
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator], "bool"
    if operator == "+" and left_kind == right_kind == "string":
        return left.concat(right), "string"
    if left_kind != right_kind and "null" not in (left_kind, right_kind):
        hint = "; convert one with double() or int()" if {left_kind, right_kind} == {"int", "double"} else ""
        raise ExpressionTypeError(f"'{operator}' does not combine {_a(left_kind)} and {_a(right_kind)} value{hint}", node.offset)
    kind = _common(left_kind, right_kind, node)
    _expect(kind, _NUMBERS, node)
    if operator == "%" and kind != "int":
        raise NotTranslatable("'%' applies to whole numbers", node.offset)
    if operator in ("/", "%"):
        divisor = func.nullif(right, 0)
        if operator == "/" and kind == "int":
            return left.op("/", return_type=BigInteger())(divisor), kind
        return left.op(operator, return_type=Numeric() if kind == "double" else BigInteger())(divisor), kind
    return {"+": left + right, "-": left - right, "*": left * right}[operator], kind


_METHODS = {"contains", "startsWith", "endsWith", "size"}


def _call(node: Node, column: Column) -> tuple[ColumnElement, str]:
    name, (target, *args) = node.value, node.args
    if target is None and name == "size" and len(args) == 1:
        target, args = args[0], []
    if target is not None:
        if name not in _METHODS:
            raise NotTranslatable(f"'{name}()' is not part of the translatable subset", node.offset)
        text, kind = sql_expression(target, column)
        _expect(kind, ("string",), target)
        if name == "size":
            if args:
                raise NotTranslatable("size() takes no argument here", node.offset)
            return func.length(text), "int"
        if len(args) != 1:
            raise NotTranslatable(f"{name}() takes one argument", node.offset)
        part, part_kind = sql_expression(args[0], column)
        _expect(part_kind, ("string",), args[0])
        if name == "contains":
            return _Contains(text, part), "bool"
        if name == "startsWith":
            return func.substr(text, 1, func.length(part)) == part, "bool"
        return _EndsWith(text, part), "bool"
    if name in ("int", "double") and len(args) == 1:
        value, kind = sql_expression(args[0], column)
        if kind == "string":
            raise NotTranslatable(f"{name}() of text is not part of the translatable subset", node.offset)
        _expect(kind, _NUMBERS, args[0])
        if name == "int":
            return (value if kind == "int" else _Truncate(value)), "int"
        return (_ToDouble(value) if kind == "int" else value), "double"
    raise NotTranslatable(f"'{name}()' is not part of the translatable subset", node.offset)


def _expect(kind: str, allowed: tuple[str, ...], node: Node) -> None:
    if kind not in allowed:
        raise ExpressionTypeError(f"{_a(kind)} value cannot be used here (expected {' or '.join(allowed)})", node.offset)


def _common(left: str, right: str, node: Node) -> str:
    """The kind two operands share (whole numbers widen to doubles; null fits any)."""
    if left == right or right == "null":
        return left
    if left == "null":
        return right
    if {left, right} == {"int", "double"}:
        return "double"
    if {left, right} == {"date", "timestamp"}:
        raise NotTranslatable("a date and an instant compare only after reading", node.offset)
    raise ExpressionTypeError(f"{_a(left)} value and {_a(right)} value do not combine here", node.offset)


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "int" else f"a {kind}"


def column_resolver(table, kinds: Mapping[str, str], *, decimal_scales: Mapping[str, int]) -> Column:
    """``record.<name>`` over ``table``, given each readable column's kind (decimals as numbers:
    SQLite stores them as scaled integers)."""
    def resolve(name: str, offset: int) -> tuple[ColumnElement, str]:
        kind = kinds.get(name)
        if kind is None:
            raise NotTranslatable(f"'{name}' is not a field whose values translate into SQL", offset)
        sql = table.c[name]
        if kind == "double":
            sql = ScaledDecimal(sql, _Number(Decimal(10) ** decimal_scales.get(name, 0)))
        elif kind == "int":
            sql = cast(sql, BigInteger())
        return sql, kind
    return resolve


class StoredDecimal(ColumnElement):
    """A computed number rounded (half away from zero) to ``scale`` places, in the form an exact
    decimal column stores it (scaled integer units on SQLite)."""

    inherit_cache = True
    type = Numeric()
    _traverse_internals = [("value", InternalTraversal.dp_clauseelement), ("scale", InternalTraversal.dp_plain_obj)]

    def __init__(self, value: ColumnElement, scale: int):
        self.value, self.scale = value, scale

    def get_children(self, **kw):
        return (self.value,)


@compiles(StoredDecimal)
def _stored_default(element, compiler, **kw):
    return f"ROUND(CAST({compiler.process(element.value, **kw)} AS NUMERIC), {int(element.scale)})"


@compiles(StoredDecimal, "sqlite")
def _stored_sqlite(element, compiler, **kw):
    return f"CAST(ROUND(({compiler.process(element.value, **kw)}) * {10 ** int(element.scale)}) AS INTEGER)"


