"""The approval tables: each request with the plan it follows, who may decide each step, and every
action taken on it."""
from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from ...metadata.sqltypes import JsonValue, RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

approvals_metadata = MetaData(naming_convention=NAMING_CONVENTION)

PENDING, APPROVED, REJECTED, RECALLED = "pending", "approved", "rejected", "recalled"
STATUSES = (PENDING, APPROVED, REJECTED, RECALLED)
SUBMIT, APPROVE, REJECT, RECALL = "submit", "approve", "reject", "recall"
DECISIONS = (APPROVE, REJECT)
ONLY_PENDING = "status = 'pending'"
ONLY_DECISIONS = "action IN ('approve', 'reject')"

requests = Table(
    "lc_approval_request", approvals_metadata,
    Column("id", RecordId, primary_key=True),
    Column("object", String(63), nullable=False),
    Column("record_id", RecordId, nullable=False),
    Column("process", String(63), nullable=False),
    Column("plan", JsonValue, nullable=False),
    Column("status", String(15), nullable=False),
    Column("step", Integer, nullable=False),
    Column("submitted_by", RecordId, nullable=False),
    Column("submitted_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Index("uq_lc_approval_request_pending", "object", "record_id", unique=True,
          sqlite_where=text(ONLY_PENDING), postgresql_where=text(ONLY_PENDING)),
    Index("ix_lc_approval_request_record", "object", "record_id", "submitted_at"),
    Index("ix_lc_approval_request_submitter", "submitted_by", "submitted_at"),
)
"""``plan`` is what the process said when the request was submitted: its label, the steps that
apply to the record (``when`` evaluated then) and the outcomes, so a later change of the process
never changes a pending request. ``step`` counts from 1 into the plan's steps; ``version`` grows
with every change, and each decision is a write conditional on it. At most one request of a
record is pending (the partial unique index)."""

approvers = Table(
    "lc_approval_approver", approvals_metadata,
    Column("request_id", RecordId, ForeignKey("lc_approval_request.id", ondelete="CASCADE"), primary_key=True),
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("user_id", RecordId, primary_key=True),
    Index("ix_lc_approval_approver_user", "user_id", "request_id", "step"),
)
"""Who may decide a step, resolved when the request reaches it."""

actions = Table(
    "lc_approval_action", approvals_metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", RecordId, ForeignKey("lc_approval_request.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("actor_id", RecordId, nullable=True),
    Column("action", String(15), nullable=False),
    Column("comment", Text, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_lc_approval_action_request", "request_id", "id"),
    Index("uq_lc_approval_action_decision", "request_id", "step", unique=True,
          sqlite_where=text(ONLY_DECISIONS), postgresql_where=text(ONLY_DECISIONS)),
)
"""Every action in order: the submission (step 0), each step's one decision, a recall (at the
step it interrupted). ``actor_id`` null: the platform."""
