"""Changes to the layout of tables the platform made in earlier versions, applied once at install.

``lc_platform_revision`` holds the number of upgrades a database has had; a new database is
created at the latest layout and starts there. Each upgrade runs in the install's transaction.
"""
from __future__ import annotations

from typing import Callable

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select, update

from . import store
from .names import OBJECT_TABLE_PREFIX, constraint_name
from .tables import stage_columns


def _stage_columns(conn: Connection) -> None:
    """Revision 1: every record table gains ``stage`` and ``stage_entered_at`` (and an index on the stage)."""
    ops = Operations(MigrationContext.configure(conn))
    inspector = inspect(conn)
    for table in inspector.get_table_names():
        if not table.startswith(OBJECT_TABLE_PREFIX):
            continue
        present = {c["name"] for c in inspector.get_columns(table)}
        for column in stage_columns():
            if column.name not in present:
                ops.add_column(table, column)
        if "stage" not in present:
            ops.create_index(constraint_name("ix", table, "stage"), table, ["stage"])


UPGRADES: tuple[Callable[[Connection], None], ...] = (_stage_columns,)


def upgrade(conn: Connection, existed: bool) -> None:
    """Bring a database to the latest layout; ``existed``: its platform tables predate this install."""
    apply_upgrades(conn, store.platform_revision, UPGRADES, existed)


def apply_upgrades(conn: Connection, revisions, upgrades, existed: bool) -> None:
    """Run the ``upgrades`` a database has not had yet, counted in the one-row table ``revisions``;
    tables created by this version (``existed`` false) start at the latest."""
    latest = len(upgrades)
    found = conn.execute(select(revisions.c.revision)).scalar()
    if found is None:
        found = 0 if existed else latest
        conn.execute(insert(revisions).values(id=1, revision=found))
    for revision in range(found, latest):
        upgrades[revision](conn)
    if found < latest:
        conn.execute(update(revisions).values(revision=latest))
