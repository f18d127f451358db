"""What the installed apps own: the app rows (with the manifest they were installed from), the
metadata items each created, and the records its seed data made (by stable key)."""
from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ...metadata.sqltypes import JsonValue, RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

apps_metadata = MetaData(naming_convention=NAMING_CONVENTION)

apps = Table(
    "lc_app", apps_metadata,
    Column("name", String(63), primary_key=True),
    Column("version", String(63), nullable=False),
    Column("title", String(255), nullable=False),
    Column("folder", Text, nullable=False),
    Column("manifest", JsonValue, nullable=False),
    Column("installed_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

app_items = Table(
    "lc_app_item", apps_metadata,
    Column("app_name", String(63), ForeignKey("lc_app.name", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(31), primary_key=True),
    Column("object_api_name", String(63), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    UniqueConstraint("kind", "object_api_name", "api_name"),
)
"""One row per object, field, business type, validation rule, layout or role an app made
(``object_api_name`` is ``""`` for objects and roles)."""

app_records = Table(
    "lc_app_record", apps_metadata,
    Column("app_name", String(63), ForeignKey("lc_app.name", ondelete="CASCADE"), primary_key=True),
    Column("key", String(127), primary_key=True),
    Column("object_api_name", String(63), nullable=False),
    Column("record_id", RecordId, nullable=False),
)
