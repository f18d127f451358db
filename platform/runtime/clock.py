"""The time the time-driven parts read (records, jobs, schedules, notifications): the system's, or one a test moves."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current instant, always timezone-aware in UTC."""

    def now(self) -> datetime: ...


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock(Clock):
    """A clock that stands still until told to move, so time-driven behaviour can be tested
    without sleeping."""

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2030, 1, 1, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("a ManualClock needs a timezone-aware start")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("set the clock to a timezone-aware instant")
        with self._lock:
            self._now = instant.astimezone(timezone.utc)

    def advance(self, seconds: float = 0, **delta) -> datetime:
        """Move forward by ``seconds`` (and/or ``timedelta`` keywords); returns the new instant."""
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now
