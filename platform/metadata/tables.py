"""SQLAlchemy ``Table``s for record tables, built from object definitions.

Two views of one table: the full definition with foreign keys and indexes, used for DDL; and a
plain one (columns only), used by queries and cached per Catalog version.
"""
from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from .definitions import FieldDef, ObjectDef
from .names import constraint_name, table_name
from .sqltypes import RecordId, UtcDateTime
from .store import NAMING_CONVENTION


def system_columns() -> list[Column]:
    return [
        Column("id", RecordId, primary_key=True),
        Column("owner_id", RecordId, nullable=True),
        Column("org_unit_id", RecordId, nullable=True),
        Column("business_type", String(63), nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("created_by", RecordId, nullable=True),
        Column("updated_at", UtcDateTime, nullable=False),
        Column("updated_by", RecordId, nullable=True),
        Column("version", Integer, nullable=False),
        Column("deleted_at", UtcDateTime, nullable=True),
        *stage_columns(),
    ]


def stage_columns() -> list[Column]:
    """Every record table has them; objects whose business types have stages use them."""
    return [Column("stage", String(63), nullable=True), Column("stage_entered_at", UtcDateTime, nullable=True)]


def system_indexes(table: str) -> list[Index]:
    """Owner, unit and creation time; ``deleted_at`` only over the recycle bin (a partial index),
    since live records all share its null and a full index misleads planners without statistics
    (SQLite) into scanning it instead of an index that serves the query's order."""
    recycled = text("deleted_at IS NOT NULL")
    return [
        *(Index(constraint_name("ix", table, column), column) for column in ("owner_id", "org_unit_id", "created_at", "stage")),
        Index(constraint_name("ix", table, "deleted_at"), "deleted_at", sqlite_where=recycled, postgresql_where=recycled),
    ]


def index_for(table: str, field: FieldDef) -> Index | None:
    """The index a field needs (unique, lookup, indexed), named by the field so it maps back."""
    if not field.is_indexed:
        return None
    columns = field.field_type.column_names(field)
    prefix = "uq" if field.is_unique else "ix"
    return Index(constraint_name(prefix, table, field.api_name), *columns, unique=field.is_unique)


def foreign_key_for(table: str, field: FieldDef) -> ForeignKeyConstraint | None:
    if not field.field_type.references:
        return None
    return ForeignKeyConstraint(
        [field.api_name], [f"{table_name(field.target)}.id"],
        name=constraint_name("fk", table, field.api_name), ondelete=field.field_type.on_delete_sql(field),
    )


def field_columns(field: FieldDef) -> list[Column]:
    return field.field_type.columns(field)


def query_table(obj: ObjectDef, metadata: MetaData) -> Table:
    """Columns only: what the record service selects, filters and writes."""
    columns = system_columns()
    for field in obj.fields:
        columns.extend(field_columns(field))
    return Table(obj.table_name, metadata, *columns)


def ddl_elements(obj: ObjectDef, defer_targets: frozenset[str] = frozenset()) -> tuple[list, list[Index]]:
    """Columns and constraints for ``CREATE TABLE``, and the indexes to create after it.

    Foreign keys to objects in ``defer_targets`` (tables created in the same change) are left out,
    to be added once every table exists.
    """
    table = obj.table_name
    elements: list = system_columns()
    indexes = system_indexes(table)
    for field in obj.fields:
        elements.extend(field_columns(field))
        if (fk := foreign_key_for(table, field)) is not None and field.target not in defer_targets:
            elements.append(fk)
        if (ix := index_for(table, field)) is not None:
            indexes.append(ix)
    return elements, indexes


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)
