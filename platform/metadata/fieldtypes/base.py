"""The contract every field type fulfils.

A field type is one class: it knows its columns, its JSON Schema fragment, how a JSON value becomes
a Python value (after the schema accepted it), the filter operators it allows and which type
changes keep existing data intact. Transports render types by ``graphql_scalar`` name; types never
import a transport.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from marshmallow import Schema
from sqlalchemy import Column, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

if TYPE_CHECKING:
    from ..definitions import FieldDef

EQUALITY = frozenset({"eq", "ne", "in", "not_in", "is_null"})
ORDERED = EQUALITY | {"lt", "lte", "gt", "gte"}
TEXTUAL = ORDERED | {"contains", "starts_with"}
LIST_OPERATORS = frozenset({"in", "not_in"})


class ValueProblem(Exception):
    """Raised by a coercer: the value passed the JSON Schema but is still not acceptable."""

    def __init__(self, code: str, message: str, *, path: str = "", **ctx: Any):
        super().__init__(message)
        self.code, self.message, self.path, self.ctx = code, message, path, ctx


class NoOptions(Schema):
    pass


class FieldType(ABC):
    """Base of every field type; subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    graphql_scalar: ClassVar[str] = "String"
    operators: ClassVar[frozenset[str]] = EQUALITY
    options_schema: ClassVar[type[Schema]] = NoOptions
    writable: ClassVar[bool] = True
    """False for values the platform assigns (auto numbers)."""
    sortable: ClassVar[bool] = True
    always_indexed: ClassVar[bool] = False
    always_unique: ClassVar[bool] = False
    references: ClassVar[bool] = False
    """True for types whose value is the id of a record of ``options['target']``."""
    pattern_message: ClassVar[str] = "does not match the required pattern"
    """What a value failing the type's JSON Schema pattern is told."""
    safe_changes_from: ClassVar[frozenset[str]] = frozenset()
    """Types a field may change from into this one, converting its data safely."""
    computed: ClassVar[bool] = False
    """True for values computed on read (formulas): no column is stored."""

    # -- storage ---------------------------------------------------------------------------
    @abstractmethod
    def sql_type(self, field: "FieldDef"):
        """The SQLAlchemy type of the field's (single) column."""

    def columns(self, field: "FieldDef") -> list[Column]:
        return [Column(field.api_name, self.sql_type(field), nullable=True)]

    def column_names(self, field: "FieldDef") -> list[str]:
        return [field.api_name]

    def to_row(self, field: "FieldDef", value: Any) -> dict[str, Any]:
        return {field.api_name: value}

    def from_row(self, field: "FieldDef", row: Any) -> Any:
        return row[field.api_name]

    def selectable(self, field: "FieldDef", table) -> list | None:
        """What a query reads for the field, one per column name; ``None`` when SQL cannot
        compute it (a formula computed after reading)."""
        return [table.c[name] for name in self.column_names(field)]

    def in_sql(self, field: "FieldDef") -> bool:
        """Whether the database computes the value, so queries may filter, sort and group on it."""
        return True

    def value_field(self, field: "FieldDef") -> "FieldDef":
        """The field as its values are typed (a formula's or roll-up's result type)."""
        return field

    def operators_for(self, field: "FieldDef") -> frozenset[str]:
        return self.operators

    def scalar_for(self, field: "FieldDef") -> str:
        return self.graphql_scalar

    # -- validation ------------------------------------------------------------------------
    @abstractmethod
    def json_schema(self, field: "FieldDef") -> dict[str, Any]:
        """The JSON Schema of a non-null value of this field."""

    def coercer(self, field: "FieldDef") -> Callable[[Any], Any]:
        """A callable turning a schema-valid JSON value into the stored Python value.

        Built once per Catalog version; it raises :class:`ValueProblem` for what JSON Schema
        cannot express (calendar dates, decimal places).
        """
        return _identity

    def dump(self, field: "FieldDef", value: Any) -> Any:
        """A JSON-ready form of a stored value (history, change logs, exports)."""
        return value

    # -- type changes ----------------------------------------------------------------------
    def change_problem(self, old: "FieldDef", new: "FieldDef") -> str | None:
        """Why changing ``old`` into ``new`` (this type) would lose data, or ``None`` if safe."""
        if old.type != new.type and old.type not in self.safe_changes_from:
            return f"{_article(old.type)} {old.type} field cannot become {_article(new.type)} {new.type} field without losing data; add a new field and copy the values instead"
        return None

    def stored_value_change(self, old: "FieldDef", new: "FieldDef", column, dialect_name: str):
        """An SQL expression converting stored values of ``old`` into ``new``, or ``None``."""
        return None

    def needs_column_change(self, old: "FieldDef", new: "FieldDef") -> bool:
        return str(self.sql_type(new).compile()) != str(old.field_type.sql_type(old).compile())

    # -- filters ---------------------------------------------------------------------------
    def filter_clause(self, field: "FieldDef", column, op: str, value: Any) -> ColumnElement:
        """SQL for ``column <op> value``; ``value`` has already been coerced."""
        return compare(column, op, value)

    def filter_value_schema(self, field: "FieldDef", op: str) -> dict[str, Any]:
        if op == "is_null":
            return {"type": "boolean"}
        if op in LIST_OPERATORS:
            return {"type": "array", "items": self.json_schema(field)}
        if op in ("contains", "starts_with"):
            return {"type": "string"}
        return self.json_schema(field)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _identity(value: Any) -> Any:
    return value


def compare(column, op: str, value: Any) -> ColumnElement:
    """The generic operators; ``ne`` and ``not_in`` keep rows whose value is null."""
    if op == "eq":
        return column.is_(None) if value is None else column == value
    if op == "ne":
        return column.is_not(None) if value is None else or_(column != value, column.is_(None))
    if op == "in":
        return column.in_(value) if value else false()
    if op == "not_in":
        return or_(not_(column.in_(value)), column.is_(None)) if value else true()
    if op == "lt":
        return column < value
    if op == "lte":
        return column <= value
    if op == "gt":
        return column > value
    if op == "gte":
        return column >= value
    if op == "contains":
        return column.icontains(value, autoescape=True)
    if op == "starts_with":
        return column.istartswith(value, autoescape=True)
    if op == "is_null":
        return column.is_(None) if value else column.is_not(None)
    raise ValueError(f"unknown operator {op}")


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null, in the form jsonschema checks fastest."""
    kind = schema.get("type")
    if isinstance(kind, (str, list)) and "anyOf" not in schema:
        widened = {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}
        if "enum" in schema:
            widened["enum"] = [*schema["enum"], None]
        return widened
    return {"anyOf": [schema, {"type": "null"}]}


