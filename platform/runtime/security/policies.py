"""The Casbin enforcer of one process, reloaded when the policy version moves.

The enforcer is not thread-safe and scans every rule per question, so it is asked once per user
and policy version (under a lock) and the answer, a :class:`~.grants.UserAccess`, is cached until
the version changes. Every request reads the stored version (with its token), so a reload happens
on the first request after a change even when a Redis announcement was lost; the Redis watcher
only makes other processes reload sooner.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import casbin
from sqlalchemy import Engine, column, select, table

from ...metadata.names import table_name
from ...metadata.sqltypes import RecordId
from . import store
from .adapter import PlatformTablesAdapter
from .grants import Membership, UserAccess

log = logging.getLogger(__name__)

MODEL_PATH = str(Path(__file__).with_name("rbac_with_domains.conf"))
WATCHER_CHANNEL = "lowcode:policy:changed"
MAX_LISTED_UNITS = 1000
"""Up to this many units a subtree is named by its unit ids, which the database's planner estimates
well; a larger one by a subquery over the tree's paths."""

UNITS = table(table_name("org_unit"), column("id", RecordId), column("path"), column("deleted_at"))
"""The org tree as the security layer reads it (the ``org_unit`` system object's table)."""


def read_policy_version(conn) -> int:
    return conn.execute(select(store.policy_version.c.version)).scalar_one()


class PolicyStore:
    def __init__(self, engine: Engine, redis_client=None, channel_prefix: str = ""):
        self.engine = engine
        self.redis = redis_client
        self.channel = channel_prefix + WATCHER_CHANNEL
        self._lock = threading.RLock()
        self._adapter = PlatformTablesAdapter(engine)
        self._enforcer: casbin.Enforcer | None = None
        self._paths: dict[str, str] = {}
        self._below: dict[tuple[str, ...], tuple[str, ...] | None] = {}
        self._users: dict[str, UserAccess] = {}
        self.version: int | None = None
        self.reloads = 0
        self._watcher = None

    # -- loading ----------------------------------------------------------------------------
    def reload(self) -> int:
        """Load every policy line and the unit paths from one snapshot; returns the version loaded."""
        with self._lock, self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            self._adapter.conn = conn
            try:
                if self._enforcer is None:
                    self._enforcer = casbin.Enforcer(MODEL_PATH, self._adapter)
                else:
                    self._enforcer.load_policy()
                self._paths = {str(i): p for i, p in conn.execute(select(UNITS.c.id, UNITS.c.path))}
            finally:
                self._adapter.conn = None
            self.version = self._adapter.loaded_version
            self._users = {}
            self._below = {}
            self.reloads += 1
            return self.version

    def current(self, stored_version: int) -> None:
        """Reload when ``stored_version`` (read by this request) is newer than the one loaded.
        Versions only grow: a request that read an older one is served by the newer policy."""
        if self.version is None or stored_version > self.version:
            with self._lock:
                if self.version is None or stored_version > self.version:
                    self.reload()

    def reload_if_stale(self) -> None:
        with self.engine.connect() as conn:
            stored = read_policy_version(conn)
        self.current(stored)

    # -- answering --------------------------------------------------------------------------
    def access(self, user_id: str, stored_version: int) -> UserAccess:
        """What ``user_id`` may do, at least as recent as ``stored_version``."""
        self.current(stored_version)
        found = self._users.get(user_id)
        if found is not None:
            return found
        with self._lock:
            enforcer = self._enforcer
            links = enforcer.get_filtered_named_grouping_policy("g", 0, user_id)
            memberships = tuple(Membership(unit, self._paths.get(unit, f"/{unit}/"), role) for _, role, unit in links)
            rules_by_role = {m.role: [tuple(rule[1:]) for rule in enforcer.get_filtered_policy(0, m.role)] for m in memberships}
            administrator = any(rule == ("*", "*", "all") for rules in rules_by_role.values() for rule in rules)
            found = UserAccess(user_id, self.version, administrator, memberships, rules_by_role)
            self._users[user_id] = found
            return found

    def units_below(self, paths: tuple[str, ...]) -> tuple[str, ...] | None:
        """The ids of the units at or below these paths at the loaded version; ``None`` when there
        are more than :data:`MAX_LISTED_UNITS` (the caller then asks the database)."""
        found = self._below.get(paths, ())
        if found == ():
            reached = tuple(sorted(i for i, p in self._paths.items() if p.startswith(paths)))
            found = self._below[paths] = reached if len(reached) <= MAX_LISTED_UNITS else None
        return found

    def loaded_access(self, user_id: str) -> UserAccess:
        """What ``user_id`` may do at the version this process has loaded (loading it if none)."""
        if self.version is None:
            self.reload()
        return self.access(user_id, self.version)

    def enforce(self, user_id: str, unit_id: str, object_api_name: str, action: str) -> bool:
        """Casbin's own yes/no for one question (for diagnostics; requests use :meth:`access`)."""
        with self._lock:
            return self._enforcer.enforce(user_id, unit_id, object_api_name, action)

    # -- other processes --------------------------------------------------------------------
    def watch(self) -> None:
        """Reload soon after another process announces a change (Casbin's Redis watcher)."""
        from redis_watcher import new_watcher

        if self.redis is None:
            return
        if self._enforcer is None:
            self.reload()
        self.close()
        self._watcher = new_watcher(self._options(self._on_announcement))

    def _options(self, callback=None):
        from redis_watcher import WatcherOptions

        settings = self.redis.connection_pool.connection_kwargs
        options = WatcherOptions()
        options.host = settings.get("host", "localhost")
        options.port = settings.get("port", 6379)
        options.password = settings.get("password")
        options.ssl = self.redis.connection_pool.connection_class.__name__ == "SSLConnection"
        options.channel = self.channel
        options.optional_update_callback = callback
        return options

    def _on_announcement(self, _message: str) -> None:
        try:
            self.reload_if_stale()
        except Exception:
            log.exception("reloading the policy after an announcement failed; the next request retries")

    def announce(self) -> None:
        """Tell other processes the policy changed (they would see it on their next request anyway)."""
        if self.redis is None:
            return
        try:
            if self._watcher is None:
                from redis_watcher import new_publish_watcher

                self._watcher = new_publish_watcher(self._options())
            self._watcher.update()
        except Exception:
            log.warning("policy change not announced through Redis; other processes reload on their next request")

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close = True
            for client in (watcher.sub_client, watcher.pub_client):
                try:
                    if client is not None:
                        client.close()
                except Exception:
                    pass
