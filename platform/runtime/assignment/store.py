"""The assignment tables: where each round robin stands, so that turns survive restarts."""
from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table

from ...metadata.sqltypes import RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

assignment_metadata = MetaData(naming_convention=NAMING_CONVENTION)

cursors = Table(
    "lc_assignment_cursor", assignment_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("rule", String(63), primary_key=True),
    Column("entry", String(63), primary_key=True),
    Column("last_user_id", RecordId, nullable=True),
    Column("counter", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
)
"""One row per round robin: ``entry`` is the entry's index (``"2"``), or for a region the index and
the region's unit (``"2:<unit id>"``); ``last_user_id`` got the last turn, ``counter`` counts turns.
A row is locked for the rest of the write that takes a turn, so concurrent writes queue on it."""
