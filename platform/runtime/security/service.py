"""The security service: sign-in and tokens, users, the org tree, roles and grants, memberships,
record shares and teams.

Every change runs in one transaction with its audit entry; changes to what Casbin loads (roles,
grants, memberships, the tree's shape, users' existence) also raise the policy version in that
transaction, and are announced to other processes after commit.
"""
from __future__ import annotations

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)

from ...metadata.database import WRITE, is_sqlite
from ...metadata.service import INSTALL_LOCK
from ..records import RecordService
from . import store
from .authentication import Authentication
from .changes import ADMINISTRATOR, SESSION_HOURS, utc_now
from .directory import Directory
from .policies import PolicyStore
from .rate_limit import AttemptCounter
from .roles import Roles
from .sharing import Sharing
from .upgrades import upgrade


class SecurityService(Authentication, Directory, Roles, Sharing):
    def __init__(self, engine: Engine, records: RecordService, policies: PolicyStore, attempts: AttemptCounter,
                 session_hours: float = SESSION_HOURS):
        super().__init__(engine, records, policies, attempts, session_hours)

    def install(self) -> None:
        """Create the security tables when missing and upgrade older ones; safe to run again, also
        by several processes at once (they queue on the metadata install's lock)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            if not is_sqlite(conn):
                conn.execute(select(func.pg_advisory_xact_lock(INSTALL_LOCK)))
            existed = inspect(conn).has_table(store.object_grants.name)
            store.security_metadata.create_all(conn)
            upgrade(conn, existed)
            if conn.execute(select(store.policy_version.c.version)).first() is None:
                conn.execute(insert(store.policy_version).values(id=1, version=1))
            if conn.execute(select(store.roles.c.name).where(store.roles.c.name == ADMINISTRATOR)).first() is None:
                now = utc_now()
                conn.execute(insert(store.roles).values(
                    name=ADMINISTRATOR, label="Administrator", administrator=True, created_at=now, updated_at=now,
                    description="Manages metadata and security; sees and changes every record."))
        self.policies.reload()

    def forget(self, conn: Connection, object_api_name: str, field_api_name: str | None) -> None:
        """Drop the grants (and, for an object, the shares and teams) of a deleted object or field,
        in the metadata change's transaction, so that a later namesake starts with none."""
        fields = store.field_grants
        if field_api_name is not None:
            removed = conn.execute(delete(fields).where(fields.c.object_api_name == object_api_name,
                                                        fields.c.field_api_name == field_api_name)).rowcount
        else:
            removed = conn.execute(delete(fields).where(fields.c.object_api_name == object_api_name)).rowcount
            removed += conn.execute(delete(store.object_grants).where(store.object_grants.c.object_api_name == object_api_name)).rowcount
            for per_record in (store.record_shares, store.team_members):
                conn.execute(delete(per_record).where(per_record.c.object_api_name == object_api_name))
        if removed:
            conn.execute(update(store.policy_version).values(version=store.policy_version.c.version + 1))
