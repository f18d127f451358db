"""The jobs tables: every job ever enqueued (the outbox: Redis only carries job ids) and the
periodic schedules that enqueue them."""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

from ...metadata.sqltypes import JsonValue, RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

jobs_metadata = MetaData(naming_convention=NAMING_CONVENTION)

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)

jobs = Table(
    "lc_job", jobs_metadata,
    Column("id", RecordId, primary_key=True),
    Column("kind", String(127), nullable=False),
    Column("payload", JsonValue, nullable=False),
    Column("dedupe_key", String(255), nullable=True, unique=True),
    Column("status", String(15), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Index("ix_lc_job_status_run_at", "status", "run_at"),
)
"""``locked_until`` is the lease of the worker running the job; past it, another worker may take
the job over. ``dispatched_at`` is when its id was last pushed to Redis (null: not yet)."""

schedules = Table(
    "lc_schedule", jobs_metadata,
    Column("name", String(127), primary_key=True),
    Column("kind", String(127), nullable=False),
    Column("payload", JsonValue, nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("next_run_at", UtcDateTime, nullable=False),
    Column("active", Boolean, nullable=False),
)
"""``next_run_at`` is the start of the next slot to fire; a tick advances it in the transaction
that enqueues the slot's job."""
