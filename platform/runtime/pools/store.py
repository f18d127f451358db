"""The public pools tables: each pool's settings and members, where each pooled record is now,
and every move of a record into or out of a pool."""
from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ...metadata.sqltypes import RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

pools_metadata = MetaData(naming_convention=NAMING_CONVENTION)

ACTIVITY, STAGE = "activity", "stage"
PROTECTIONS = (ACTIVITY, STAGE)
IN_POOL, CLAIMED = "in_pool", "claimed"
RECYCLE, CLAIM, RELEASE, RETURN = "recycle", "claim", "release", "return"
ACTIONS = (RECYCLE, CLAIM, RELEASE, RETURN)

pools = Table(
    "lc_pool", pools_metadata,
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("object_api_name", String(63), nullable=False),
    Column("protection", String(15), nullable=False),
    Column("activity_object", String(63), nullable=True),
    Column("activity_field", String(63), nullable=True),
    Column("stage", String(63), nullable=True),
    Column("protection_days", Integer, nullable=False),
    Column("reminder_days", Integer, nullable=False),
    Column("daily_claim_limit", Integer, nullable=False),
    Column("max_held", Integer, nullable=False),
    Column("cooldown_days", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""``protection`` "activity": an owner keeps a record while records of ``activity_object`` point at
it through ``activity_field``; "stage": while it has not yet reached ``stage``."""

members = Table(
    "lc_pool_member", pools_metadata,
    Column("pool", String(63), ForeignKey("lc_pool.api_name", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("unit_id", RecordId, nullable=False),
    Column("include_below", Boolean, nullable=False),
    Column("role", String(63), nullable=True),
)
"""A user is a member through a membership in ``unit_id`` (or below it, with ``include_below``),
in any role, or only in ``role`` when set."""

entries = Table(
    "lc_pool_entry", pools_metadata,
    Column("pool", String(63), ForeignKey("lc_pool.api_name", ondelete="CASCADE"), primary_key=True),
    Column("record_id", RecordId, primary_key=True),
    Column("status", String(15), nullable=False),
    Column("entered_at", UtcDateTime, nullable=False),
    Column("previous_owner_id", RecordId, nullable=True),
    Index("ix_lc_pool_entry_listing", "pool", "status", "entered_at", "record_id"),
)
"""A record's current place: ``in_pool`` (ownerless, claimable) or ``claimed`` (it left the pool);
``entered_at`` and ``previous_owner_id`` describe its last entry into the pool."""

moves = Table(
    "lc_pool_move", pools_metadata,
    Column("id", Integer, primary_key=True),
    Column("pool", String(63), ForeignKey("lc_pool.api_name", ondelete="CASCADE"), nullable=False),
    Column("record_id", RecordId, nullable=False),
    Column("action", String(15), nullable=False),
    Column("actor_id", RecordId, nullable=True),
    Column("from_owner_id", RecordId, nullable=True),
    Column("to_owner_id", RecordId, nullable=True),
    Column("reason", Text, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_lc_pool_move_record", "pool", "record_id", "id"),
    Index("ix_lc_pool_move_claims", "pool", "action", "actor_id", "at"),
)
"""Every move, in order (``id``); ``actor_id`` null: the platform itself (a recycle)."""
