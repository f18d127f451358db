"""The hourly scan's schedule, declared where a reminder is saved.

A reminder is saved inside the metadata change's transaction, so the schedule is declared through
that same connection: it exists exactly when a reminder was committed, and declaring it again
(another reminder, or every start of a process with reminders) keeps its next slot.
"""
from __future__ import annotations

from sqlalchemy import Connection

SCAN_JOB = "reminders.scan"
SCAN_INTERVAL_SECONDS = 3600


def declare(jobs, conn: Connection) -> None:
    """Make the hourly ``reminders.scan`` schedule exist and be active, in ``conn``'s transaction."""
    jobs.schedules.schedule(SCAN_JOB, SCAN_JOB, SCAN_INTERVAL_SECONDS, conn=conn)


def withdraw(jobs, conn: Connection) -> None:
    """The last reminder went: no more scans, in ``conn``'s transaction."""
    jobs.schedules.remove(SCAN_JOB, conn=conn)
