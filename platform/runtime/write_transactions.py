"""A write transaction that lost a race: told apart from other database errors, and reported as a
CONFLICT the caller may retry (nothing was written)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..metadata.database import WRITE
from ..metadata.errors import Conflict

RETRYABLE = {"40P01", "40001", "55P03"}
"""Deadlock, serialization failure, lock timeout: the write lost a race and may be retried."""
SQLITE_BUSY = {5, 6}
"""SQLITE_BUSY and SQLITE_LOCKED: the writer queue timed out."""


def lost_race(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE or getattr(exc.orig, "sqlite_errorcode", None) in SQLITE_BUSY


@contextmanager
def write_transaction(engine: Engine, lost: str) -> Iterator[Connection]:
    """One write transaction; losing a race raises CONFLICT with the message ``lost``."""
    try:
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn
    except OperationalError as exc:
        if lost_race(exc):
            raise Conflict(lost) from None
        raise
