"""One running platform: a database, optionally Redis, and the services over them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine

from ..metadata.catalog import Catalog, CatalogCache
from ..metadata.database import database_engine
from ..metadata.service import MetadataService
from ..metadata.versions import DatabaseVersions, RedisVersions
from .access import AccessPolicy
from .approvals import ApprovalProcesses
from .apps import AppService
from .assignment import AssignmentRules
from .clock import Clock, SystemClock
from .duplicates import DuplicateRules
from .jobs import JobService
from .jobs.transport import RedisTransport
from .notifications import NotificationService
from .pools import PoolService
from .records import RecordService
from .reminders import Reminders
from .security.enforcement import RolePolicy
from .security.policies import PolicyStore
from .security.rate_limit import AttemptCounter
from .security.service import SecurityService
from .triggers import RecordTriggers


def apps_folder() -> Path:
    """Where apps are found by name: the project's apps/ folder unless LOWCODE_APPS_DIR says otherwise."""
    return Path(os.environ.get("LOWCODE_APPS_DIR") or Path(__file__).resolve().parents[2] / "apps")


SIGN_IN_FAILURES = 5
SIGN_IN_WINDOW_SECONDS = 15 * 60


class Runtime:
    """Wires the Catalog cache, the metadata service and the record service to one database.

    With a Redis client, the metadata version is mirrored and announced through Redis, and a
    listener warms this process's Catalog as soon as another process changes metadata.
    """

    def __init__(self, engine: Engine, redis=None, policy: AccessPolicy | None = None, redis_prefix: str = "",
                 apps_root: Path | None = None, clock: Clock | None = None):
        self.engine = engine
        self.clock = clock or SystemClock()
        self.redis = redis
        self.versions = RedisVersions(redis, redis_prefix) if redis is not None else DatabaseVersions()
        self.catalogs = CatalogCache(engine, self.versions)
        self.metadata = MetadataService(engine, self.catalogs, self.versions)
        self.policies = PolicyStore(engine, redis, redis_prefix)
        self.records = RecordService(engine, self.catalogs, policy or RolePolicy(self.policies), self.clock)
        self.records.automation.kinds = self.metadata.automation_kinds
        attempts = AttemptCounter(redis, redis_prefix, SIGN_IN_FAILURES, SIGN_IN_WINDOW_SECONDS)
        self.security = SecurityService(engine, self.records, self.policies, attempts)
        self.metadata.on_delete.append(self.security.forget)
        self.apps = AppService(self.metadata, self.security, self.records, apps_root or apps_folder())
        transport = RedisTransport(redis, redis_prefix) if redis is not None else None
        self.jobs = JobService(engine, self.clock, transport=transport, context=self)
        self.notifications = NotificationService(engine, self.clock)
        self.pools = PoolService(engine, self.records, self.jobs, self.notifications, self.clock)
        self.approvals = ApprovalProcesses(self)
        self.assignment = AssignmentRules(self)
        self.triggers = RecordTriggers(self)
        self.duplicates = DuplicateRules(self)
        self.reminders = Reminders(self)
        for kind in (self.approvals, self.assignment, self.triggers, self.duplicates, self.reminders):
            self.metadata.automation_kinds.register(kind)
        self.redis_prefix = redis_prefix
        self._listener = None

    @classmethod
    def connect(cls, database_url: str, redis_url: str | None = None, **kwargs) -> "Runtime":
        redis = None
        if redis_url:
            import redis as redis_lib

            redis = redis_lib.Redis.from_url(redis_url)
        return cls(database_engine(database_url), redis, **kwargs)

    def install(self) -> "Runtime":
        self.metadata.install()
        self.security.install()
        self.apps.install()
        self.jobs.install()
        self.notifications.install()
        self.pools.install()
        for kind in self.metadata.automation_kinds:
            kind.install()
        self.apps.activate_installed()
        return self

    def catalog(self):
        return self.catalogs.current()

    @contextmanager
    def reading(self) -> Iterator[tuple[Connection, Catalog]]:
        """A connection for the reads of one request and the Catalog it reads under.

        On PostgreSQL the connection runs each statement on its own (autocommit: no BEGIN/ROLLBACK
        round trips; under READ COMMITTED a transaction would give each statement its own snapshot
        anyway); on SQLite each read ends its transaction, so a later read in the same request sees
        writes made meanwhile.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            catalog = self.catalogs.current(conn)
            conn.rollback()
            yield conn, catalog

    def warm_on_announcements(self):
        """Reload the Catalog in the background when another process announces a change."""
        if isinstance(self.versions, RedisVersions) and self._listener is None:
            self._listener = self.versions.listen(lambda _version: self.catalogs.current())
            self.policies.watch()
        return self._listener

    def close(self) -> None:
        self.policies.close()
        if self._listener is not None:
            self._listener.stop()
            self._listener.join(timeout=5)
        self.engine.dispose()
        if self.redis is not None:
            self.redis.close()
