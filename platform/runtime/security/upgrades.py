"""Changes to the layout of the security tables made by earlier versions, applied once at install.

``lc_security_revision`` holds the number of upgrades a database's security tables have had (as
``lc_platform_revision`` does for the metadata tables, :mod:`lowcode.metadata.upgrades`); tables
created by this version start at the latest. Each upgrade runs in the install's transaction.
"""
from __future__ import annotations

from typing import Callable

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from ...metadata.upgrades import apply_upgrades
from . import store


def _grant_business_types(conn: Connection) -> None:
    """Revision 1: object grants may be limited to business types (``lc_object_grant.business_types``;
    null, as every grant made before, covers records of every type)."""
    present = {c["name"] for c in inspect(conn).get_columns(store.object_grants.name)}
    if "business_types" not in present:
        Operations(MigrationContext.configure(conn)).add_column(store.object_grants.name, store.grant_business_types_column())


UPGRADES: tuple[Callable[[Connection], None], ...] = (_grant_business_types,)


def upgrade(conn: Connection, existed: bool) -> None:
    """Bring the security tables to the latest layout; ``existed``: they predate this install."""
    apply_upgrades(conn, store.security_revision, UPGRADES, existed)
