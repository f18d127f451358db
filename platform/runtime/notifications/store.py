"""The notifications table: one row per notification per user, kept small (read ones are purged)."""
from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, Text, UniqueConstraint

from ...metadata.sqltypes import RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

notifications_metadata = MetaData(naming_convention=NAMING_CONVENTION)

notifications = Table(
    "lc_notification", notifications_metadata,
    Column("id", RecordId, primary_key=True),
    Column("user_id", RecordId, nullable=False),
    Column("kind", String(63), nullable=False),
    Column("title", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("object_api_name", String(63), nullable=True),
    Column("record_id", RecordId, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime, nullable=True),
    Column("dedupe_key", String(255), nullable=True),
    UniqueConstraint("user_id", "dedupe_key"),
    Index("ix_lc_notification_inbox", "user_id", "created_at", "id"),
    Index("ix_lc_notification_unread", "user_id", "read_at"),
)
"""``object_api_name`` and ``record_id`` link a record (both or neither); the link is only a
pointer, read through the record service like any other. ``dedupe_key`` makes a second delivery
of the same notification to the same user a no-op (null keys never collide)."""
