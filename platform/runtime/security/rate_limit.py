"""Counting failed sign-ins per key: in Redis when configured (shared by every process; the window
opens with the first failure), otherwise in this process (the last ``window_seconds``)."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class FailureCounter:
    def __init__(self, redis=None, prefix: str = "", limit: int = 5, window_seconds: int = 900):
        self.redis = redis
        self.prefix = prefix + "lowcode:signin:failures:"
        self.limit = limit
        self.window = window_seconds
        self._local: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked_for(self, key: str) -> int:
        """Seconds until ``key`` may try again (0 when it may now)."""
        if self.redis is not None:
            try:
                count = int(self.redis.get(self.prefix + key) or 0)
                return max(int(self.redis.ttl(self.prefix + key)), 1) if count >= self.limit else 0
            except Exception as exc:
                log.warning("sign-in limits: Redis unavailable (%s), counting in this process", exc)
        with self._lock:
            recent = self._recent(key)
            return int(recent[0] + self.window - time.monotonic()) + 1 if len(recent) >= self.limit else 0

    def failed(self, key: str) -> None:
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline()
                pipe.set(self.prefix + key, 0, ex=self.window, nx=True)
                pipe.incr(self.prefix + key)
                pipe.execute()
                return
            except Exception as exc:
                log.warning("sign-in limits: Redis unavailable (%s), counting in this process", exc)
        with self._lock:
            self._recent(key).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        if self.redis is not None:
            try:
                self.redis.delete(self.prefix + key)
            except Exception:
                pass
        with self._lock:
            self._local.pop(key, None)

    def _recent(self, key: str) -> list[float]:
        cutoff = time.monotonic() - self.window
        recent = [t for t in self._local.get(key, []) if t > cutoff]
        self._local[key] = recent
        return recent
