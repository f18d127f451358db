"""The security service's common ground: one audited transaction per change (raising the policy
version when the change touches what Casbin loads), the administrator check and shared lookups."""

from __future__ import annotations

import copy
import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    column,
    insert,
    select,
    table,
    update,
)
from sqlalchemy.exc import OperationalError

from ...metadata.actors import Actor
from ...metadata.database import WRITE, is_sqlite
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from ...metadata.names import table_name
from ...metadata.sqltypes import RecordId
from ...metadata.versions import read_stored_version
from ..records import RecordService
from ..write_transactions import lost_race
from . import store
from .policies import UNITS, PolicyStore
from .rate_limit import AttemptCounter

log = logging.getLogger(__name__)

ADMINISTRATOR = "administrator"
SESSION_HOURS = 12
TOUCH_SECONDS = 60
"""A token's ``last_used_at`` is refreshed at most this often (a write per request would be too many)."""

USERS = table(table_name("user"), column("id", RecordId), column("username"), column("full_name"), column("active"),
              column("deleted_at"))


@dataclass
class SecurityChange:
    """The transaction of one change and what its audit entry will say."""

    conn: Connection
    target: str
    details: dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def invalid(field: str, message: str, code: str = "INVALID_VALUE") -> ValidationFailed:
    return ValidationFailed.of([FieldError(code, field, message)])


def parse_id(value: Any, field: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise invalid(field, "must be an id (a UUID)") from None


class SecurityBase:
    def __init__(self, engine: Engine, records: RecordService, policies: PolicyStore, attempts: AttemptCounter,
                 session_hours: float = SESSION_HOURS):
        self.engine = engine
        self.records = records
        self.policies = policies
        self.attempts = attempts
        self.session_hours = session_hours
        self._outer: Connection | None = None

    def joined(self, conn: Connection):
        """This service making its changes inside ``conn``'s open transaction (an app's install),
        committed or rolled back, and announced (:meth:`PolicyStore.announce`), by its owner."""
        joined = copy.copy(self)
        joined._outer = conn
        joined.records = self.records.joined(conn)
        return joined

    @contextmanager
    def _change(self, actor: Actor, action: str, target: str, details: dict[str, Any], *, policy: bool) -> Iterator["SecurityChange"]:
        """One audited transaction. A policy change raises the policy version first: the row lock
        queues every policy change behind the one running (a tree move and a unit created below
        it, a membership added to a unit being deleted), so none sees the other half-done."""
        if self._outer is not None:
            yield from self._audited(self._outer, actor, action, target, details, policy=policy)
            return
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                yield from self._audited(conn, actor, action, target, details, policy=policy)
        except OperationalError as exc:
            if lost_race(exc):
                raise Conflict("Another change held the same rows; nothing was changed, retry the request.") from None
            raise
        if policy:
            self.policies.announce()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection to read with: the joined transaction's (seeing its changes), else a new one."""
        if self._outer is not None:
            yield self._outer
            return
        with self.engine.connect() as conn:
            yield conn

    def _catalog(self):
        """The Catalog as this service sees it (in a joined transaction, with its metadata changes)."""
        if self._outer is not None:
            return self.records.catalogs.at_version(self._outer, read_stored_version(self._outer))
        return self.records.catalogs.current()

    @staticmethod
    def _audited(conn: Connection, actor: Actor, action: str, target: str, details: dict[str, Any], *, policy: bool):
        if policy:
            conn.execute(update(store.policy_version).values(version=store.policy_version.c.version + 1))
        change = SecurityChange(conn, target, details)
        yield change
        conn.execute(insert(store.audit_log).values(at=utc_now(), actor_id=actor.id, action=action,
                                                    target=change.target, details=change.details))

    @staticmethod
    def _trusted(actor: Actor) -> Actor:
        """``actor`` writing through the record service with the platform's rights (the admin API
        has already checked theirs), so that records name them as creator and editor."""
        return actor if actor.is_system else Actor(actor.id, actor.name, is_system=True)

    @staticmethod
    def _require_admin(actor: Actor) -> None:
        if actor.is_system or actor.access is not None and actor.access.administrator:
            return
        raise Forbidden("Only administrators manage users, the org tree, roles and grants.")

    @staticmethod
    def _is_admin(actor: Actor) -> bool:
        return actor.is_system or actor.access is not None and actor.access.administrator

    def _live_user(self, user_id: str, conn: Connection | None = None, field: str = "user_id") -> None:
        query = select(USERS.c.id).where(USERS.c.id == user_id, USERS.c.deleted_at.is_(None))
        if conn is None:
            with self.engine.connect() as own:
                found = own.execute(query).first()
        else:
            found = conn.execute(query).first()
        if found is None:
            raise NotFound(f"There is no user with id {user_id}.", field=field)

    @staticmethod
    def _unit_path(conn: Connection, unit_id: str, field: str, lock: bool = False) -> str:
        query = select(UNITS.c.path).where(UNITS.c.id == unit_id, UNITS.c.deleted_at.is_(None))
        if lock and not is_sqlite(conn):
            query = query.with_for_update()
        path = conn.execute(query).scalar()
        if path is None:
            raise NotFound(f"There is no org unit with id {unit_id}.", field=field)
        return path

    @staticmethod
    def _role_exists(conn: Connection, name: str) -> None:
        if conn.execute(select(store.roles.c.name).where(store.roles.c.name == name)).first() is None:
            raise NotFound(f"There is no role named '{name}'.", field="role")

    def audit(self, actor: Actor, limit: int = 100, target: str | None = None) -> list[dict[str, Any]]:
        self._require_admin(actor)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise invalid("limit", "must be a whole number from 1 to 1000")
        a = store.audit_log
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(a.c.target == target)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
