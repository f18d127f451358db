"""Counting sign-in attempts per key: in Redis when configured (shared by every process; the window
opens with the first attempt), otherwise in this process (the last ``window_seconds``).

An attempt is counted before the password is checked, so concurrent guesses cannot all slip in
before the first failure is recorded; a successful sign-in clears the count.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class AttemptCounter:
    def __init__(self, redis=None, prefix: str = "", limit: int = 5, window_seconds: int = 900):
        self.redis = redis
        self.prefix = prefix + "lowcode:signin:attempts:"
        self.limit = limit
        self.window = window_seconds
        self._local: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, key: str) -> int:
        """Count an attempt; returns 0 when it may go ahead, else the seconds to wait."""
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline()
                pipe.set(self.prefix + key, 0, ex=self.window, nx=True)
                pipe.incr(self.prefix + key)
                pipe.ttl(self.prefix + key)
                _, count, ttl = pipe.execute()
                return max(int(ttl), 1) if count > self.limit else 0
            except Exception as exc:
                log.warning("sign-in limits: Redis unavailable (%s), counting in this process", exc)
        with self._lock:
            cutoff = time.monotonic() - self.window
            recent = [t for t in self._local.get(key, []) if t > cutoff]
            if len(recent) >= self.limit:
                self._local[key] = recent
                return int(recent[0] + self.window - time.monotonic()) + 1
            recent.append(time.monotonic())
            self._local[key] = recent
            return 0

    def succeeded(self, key: str) -> None:
        if self.redis is not None:
            try:
                self.redis.delete(self.prefix + key)
            except Exception:
                log.warning("sign-in limits: Redis unavailable, the count of %s stays until it expires", key)
        with self._lock:
            self._local.pop(key, None)
