"""Where the metadata version is read from and announced.

The database row ``lc_meta_version`` is the truth. With Redis configured, the version is mirrored
to a key (raised only, never lowered, so racing writers cannot move it back) and announced on a
channel; readers compare the key on every request. Pub/sub may drop messages, so it only warms
caches early; a missing key falls back to the database.
"""
from __future__ import annotations

import logging
from typing import Callable, Protocol

from sqlalchemy import Connection, select, update

from . import store

log = logging.getLogger(__name__)

VERSION_KEY = "lowcode:meta:version"
VERSION_CHANNEL = "lowcode:meta:changed"

KEY_TTL_SECONDS = 60
"""The mirrored key expires, so a mirror that missed an announcement is repaired within a minute."""

_RAISE_ONLY = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return redis.call('GET', KEYS[1])
"""


_STORED_VERSION = select(store.meta_version.c.version).where(store.meta_version.c.id == 1)
"""Built once: every request runs it."""


def read_stored_version(conn: Connection) -> int:
    return conn.execute(_STORED_VERSION).scalar_one()


def lock_and_bump(conn: Connection) -> int:
    """Take the metadata write lock (the version row) and return the new version number."""
    row = conn.execute(
        update(store.meta_version).where(store.meta_version.c.id == 1)
        .values(version=store.meta_version.c.version + 1).returning(store.meta_version.c.version)
    ).scalar_one()
    return row


class VersionSource(Protocol):
    def read(self, conn: Connection) -> int: ...

    def announce(self, version: int) -> None: ...

    def correct(self, stored_version: int) -> None: ...


class DatabaseVersions:
    """Reads the version row on every call: one primary-key lookup."""

    def read(self, conn: Connection) -> int:
        return read_stored_version(conn)

    def announce(self, version: int) -> None:
        """Nothing to do: other processes read the row."""

    def correct(self, stored_version: int) -> None:
        """Nothing to correct: the row is the truth."""


class RedisVersions:
    """Reads the mirrored key; falls back to (and repairs from) the database row."""

    def __init__(self, redis_client, prefix: str = ""):
        self.redis = redis_client
        self.key = prefix + VERSION_KEY
        self.channel = prefix + VERSION_CHANNEL
        self._raise = redis_client.register_script(_RAISE_ONLY)

    def read(self, conn: Connection) -> int:
        try:
            cached = self.redis.get(self.key)
        except Exception as exc:  # Redis down: the database still answers
            log.warning("metadata version: Redis unavailable (%s), reading the database", exc)
            return read_stored_version(conn)
        if cached is not None:
            return int(cached)
        version = read_stored_version(conn)
        self._raise(keys=[self.key], args=[version, KEY_TTL_SECONDS])
        return version

    def correct(self, stored_version: int) -> None:
        """The database (the truth) is behind the key, e.g. after a restore: follow the database."""
        try:
            self.redis.set(self.key, stored_version, ex=KEY_TTL_SECONDS)
        except Exception as exc:
            log.warning("metadata version key not corrected (%s)", exc)

    def announce(self, version: int) -> None:
        try:
            self._raise(keys=[self.key], args=[version, KEY_TTL_SECONDS])
            self.redis.publish(self.channel, str(version))
        except Exception as exc:
            log.warning("metadata version %s not mirrored to Redis (%s); readers catch up when the key expires", version, exc)

    def listen(self, on_change: Callable[[int], None]):
        """Call ``on_change(version)`` for each announcement from a background thread.

        Returns the worker thread; ``stop()`` ends it.
        """
        def handle(message) -> None:
            try:
                on_change(int(message["data"]))
            except Exception:
                log.exception("warming the catalog after a metadata change failed")

        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{self.channel: handle})
        return pubsub.run_in_thread(sleep_time=0.5, daemon=True)
