"""Runtime DDL for record tables, with Alembic's ``Operations`` on the caller's connection.

Everything runs inside the metadata change's transaction: PostgreSQL rolls DDL back with the rest,
and so does SQLite (the engine sets ``BEGIN`` explicitly, see ``database.py``). SQLite cannot alter
or drop constrained columns, so those changes rebuild the table in batch mode; the metadata change
turns SQLite's foreign-key enforcement off around such a rebuild, as SQLite documents, and checks
integrity before commit.
"""
from __future__ import annotations

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy import update as sa_update

from .booking_rules import guard_name
from .definitions import BookingRuleDef, FieldDef, ObjectDef
from .names import constraint_name, table_name
from .tables import ddl_elements, field_columns, foreign_key_for, index_for


class SchemaEditor:
    """Creates, alters and drops record tables and columns on one connection."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect.name
        self.ops = Operations(MigrationContext.configure(conn))

    def create_table(self, obj: ObjectDef, defer_targets: frozenset[str] = frozenset()) -> None:
        """Create the table; on PostgreSQL, foreign keys to ``defer_targets`` wait for :meth:`add_foreign_keys`.

        SQLite accepts a foreign key to a table that does not exist yet (and cannot add one later),
        so there every foreign key is written inline.
        """
        defer = defer_targets if self.dialect != "sqlite" else frozenset()
        elements, indexes = ddl_elements(obj, defer)
        self.ops.create_table(obj.table_name, *elements)
        for index in indexes:
            self.ops.create_index(index.name, obj.table_name, [c if isinstance(c, str) else c.name for c in index.expressions],
                                  unique=index.unique, **index.dialect_kwargs)

    def add_foreign_keys(self, obj: ObjectDef, targets: frozenset[str]) -> None:
        if self.dialect == "sqlite":
            return
        for field in obj.fields:
            if field.target in targets:
                self._create_foreign_key(obj.table_name, field)

    def _create_foreign_key(self, table: str, field: FieldDef) -> None:
        foreign_key = foreign_key_for(table, field)
        self.ops.create_foreign_key(foreign_key.name, table, table_name(field.target), [field.api_name], ["id"],
                                    ondelete=field.field_type.on_delete_sql(field))

    def drop_table(self, obj: ObjectDef) -> None:
        self.ops.drop_table(obj.table_name)

    def add_field(self, obj: ObjectDef, field: FieldDef) -> None:
        table = obj.table_name
        foreign_key = foreign_key_for(table, field)
        if foreign_key is not None and self.dialect == "sqlite":
            with self.ops.batch_alter_table(table, recreate="always") as batch:
                for column in field_columns(field):
                    batch.add_column(column)
                batch.create_foreign_key(foreign_key.name, table_name(field.target), [field.api_name], ["id"], ondelete=field.field_type.on_delete_sql(field))
        else:
            for column in field_columns(field):
                self.ops.add_column(table, column)
            if foreign_key is not None:
                self._create_foreign_key(table, field)
        self._create_index(table, field)
        self._reguard(obj)

    def drop_field(self, obj: ObjectDef, field: FieldDef) -> None:
        table = obj.table_name
        self._drop_index(table, field)
        with self.ops.batch_alter_table(table) as batch:
            if (foreign_key := foreign_key_for(table, field)) is not None and self.dialect != "sqlite":
                batch.drop_constraint(foreign_key.name, type_="foreignkey")
            for column in field_columns(field):
                batch.drop_column(column.name)
        self._reguard(obj)

    def alter_field(self, obj: ObjectDef, old: FieldDef, new: FieldDef) -> None:
        """Change a column's type (only conversions the field types call safe reach here) and indexes."""
        table = obj.table_name
        if new.field_type.needs_column_change(old, new):
            with self.ops.batch_alter_table(table) as batch:
                for old_col, new_col in zip(field_columns(old), field_columns(new)):
                    batch.alter_column(
                        old_col.name, type_=new_col.type, existing_type=old_col.type, existing_nullable=True,
                        postgresql_using=f'"{old_col.name}"::{new_col.type.compile(dialect=self.conn.dialect)}',
                    )
            self._convert_values(obj, old, new)
        old_key, new_key = foreign_key_for(table, old), foreign_key_for(table, new)
        if old_key is not None and new_key is not None and old_key.ondelete != new_key.ondelete:
            with self.ops.batch_alter_table(table, recreate="always" if self.dialect == "sqlite" else "auto") as batch:
                batch.drop_constraint(old_key.name, type_="foreignkey")
                batch.create_foreign_key(new_key.name, table_name(new.target), [new.api_name], ["id"], ondelete=new_key.ondelete)
        old_index, new_index = index_for(table, old), index_for(table, new)
        if (old_index is None) != (new_index is None) or (old_index is not None and old_index.name != new_index.name):
            self._drop_index(table, old)
            self._create_index(table, new)
        self._reguard(obj)

    def add_booking_guard(self, obj: ObjectDef, rule: BookingRuleDef) -> None:
        """Make the database refuse two active overlapping bookings of one resource, whoever writes:
        an exclusion constraint on PostgreSQL, triggers on SQLite (writes there are serialized)."""
        quote = self.conn.dialect.identifier_preparer.quote
        table, name = quote(obj.table_name), guard_name(obj, rule)
        resource, start, end = (quote(f) for f in (rule.resource_field, rule.start_field, rule.end_field))
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(f"CREATE INDEX {quote(constraint_name('ixbk', obj.table_name, rule.api_name))} "
                                      f"ON {table} ({resource}, {start})")
            for event in ("INSERT", "UPDATE"):
                self.conn.exec_driver_sql(
                    f"CREATE TRIGGER {quote(name + '_' + event.lower())} BEFORE {event} ON {table} FOR EACH ROW "
                    f"WHEN {self._held(rule, 'NEW.')} BEGIN SELECT RAISE(ABORT, '{name}') WHERE EXISTS ("
                    f"SELECT 1 FROM {table} AS other WHERE {self._held(rule, 'other.')} AND other.{resource} = NEW.{resource} "
                    f"AND other.id <> NEW.id AND other.{start} <= NEW.{end} AND other.{end} >= NEW.{start}); END")
            return
        self.conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS btree_gist")
        self.conn.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT {quote(name)} EXCLUDE USING gist "
            f"({resource} WITH =, daterange({start}, {end}, '[]') WITH &&) WHERE ({self._held(rule, '')})")

    def drop_booking_guard(self, obj: ObjectDef, rule: BookingRuleDef) -> None:
        quote = self.conn.dialect.identifier_preparer.quote
        table, name = quote(obj.table_name), guard_name(obj, rule)
        if self.dialect == "sqlite":
            for event in ("insert", "update"):
                self.conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote(name + '_' + event)}")
            self.conn.exec_driver_sql(f"DROP INDEX IF EXISTS {quote(constraint_name('ixbk', obj.table_name, rule.api_name))}")
            return
        self.conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {quote(name)}")

    def _reguard(self, obj: ObjectDef) -> None:
        """SQLite rebuilds a table to alter it, losing its triggers: put the booking guards back."""
        if self.dialect == "sqlite":
            for rule in obj.booking_rules:
                self.drop_booking_guard(obj, rule)
                self.add_booking_guard(obj, rule)

    def _held(self, rule: BookingRuleDef, prefix: str) -> str:
        """SQL true for a row that holds its resource (``prefix``: ``NEW.`` or an alias)."""
        quote = self.conn.dialect.identifier_preparer.quote
        parts = [f"{prefix}deleted_at IS NULL", *(f"{prefix}{quote(f)} IS NOT NULL" for f in
                                                  (rule.resource_field, rule.start_field, rule.end_field))]
        if rule.status_field is not None:
            values = ", ".join(_sql_string(v) for v in rule.active_values)
            parts.append(f"{prefix}{quote(rule.status_field)} IN ({values})")
        return " AND ".join(parts)

    def _convert_values(self, obj: ObjectDef, old: FieldDef, new: FieldDef) -> None:
        records = sa_table(obj.table_name, sa_column(new.api_name))
        expression = new.field_type.stored_value_change(old, new, records.c[new.api_name], self.dialect)
        if expression is not None:
            self.conn.execute(sa_update(records).values({new.api_name: expression}))

    def _create_index(self, table: str, field: FieldDef) -> None:
        index = index_for(table, field)
        if index is not None:
            self.ops.create_index(index.name, table, field.field_type.column_names(field), unique=index.unique)

    def _drop_index(self, table: str, field: FieldDef) -> None:
        index = index_for(table, field)
        if index is not None:
            self.ops.drop_index(index.name, table_name=table)


def _sql_string(value: str) -> str:
    """A string literal for DDL (constraint predicates cannot take bound parameters)."""
    return "'" + value.replace("'", "''") + "'"
