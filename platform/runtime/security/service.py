"""The security service: sign-in and tokens, users, the org tree, roles and grants, memberships,
record shares and teams.

Every change runs in one transaction with its audit entry; changes to what Casbin loads (roles,
grants, memberships, the tree's shape, users' existence) also raise the policy version in that
transaction, and are announced to other processes after commit.
"""
from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    column,
    delete,
    func,
    insert,
    literal,
    select,
    table,
    update,
)
from sqlalchemy.exc import OperationalError

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.database import WRITE, is_sqlite
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InUse,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from ...metadata.names import API_NAME, table_name
from ...metadata.sqltypes import RecordId
from ..records import RETRYABLE, SQLITE_BUSY, RecordService, new_record_id
from . import store
from .credentials import (
    hash_password,
    new_token,
    password_problem,
    token_digest,
    token_hint,
    verify_password,
)
from .grants import ACTIONS, FIELD_ACCESS, SCOPES
from .policies import UNITS, PolicyStore
from .rate_limit import AttemptCounter

log = logging.getLogger(__name__)

ADMINISTRATOR = "administrator"
SESSION_HOURS = 12
TOUCH_SECONDS = 60
"""A token's ``last_used_at`` is refreshed at most this often (a write per request would be too many)."""

USERS = table(table_name("user"), column("id", RecordId), column("username"), column("full_name"), column("active"),
              column("deleted_at"))
SHARE_ACCESS = ("read", "edit")


@dataclass
class SecurityChange:
    """The transaction of one change and what its audit entry will say."""

    conn: Connection
    target: str
    details: dict[str, Any]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _invalid(field: str, message: str, code: str = "INVALID_VALUE") -> ValidationFailed:
    return ValidationFailed.of([FieldError(code, field, message)])


def _id(value: Any, field: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _invalid(field, "must be an id (a UUID)") from None


class SecurityService:
    def __init__(self, engine: Engine, records: RecordService, policies: PolicyStore, attempts: AttemptCounter,
                 session_hours: float = SESSION_HOURS):
        self.engine = engine
        self.records = records
        self.policies = policies
        self.attempts = attempts
        self.session_hours = session_hours

    # -- installation -----------------------------------------------------------------------
    def install(self) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            store.security_metadata.create_all(conn)
            if conn.execute(select(store.policy_version.c.version)).first() is None:
                conn.execute(insert(store.policy_version).values(id=1, version=1))
            if conn.execute(select(store.roles.c.name).where(store.roles.c.name == ADMINISTRATOR)).first() is None:
                now = _now()
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

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def _change(self, actor: Actor, action: str, target: str, details: dict[str, Any], *, policy: bool) -> Iterator["SecurityChange"]:
        """One audited transaction. A policy change raises the policy version first: the row lock
        queues every policy change behind the one running (a tree move and a unit created below
        it, a membership added to a unit being deleted), so none sees the other half-done."""
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                if policy:
                    conn.execute(update(store.policy_version).values(version=store.policy_version.c.version + 1))
                change = SecurityChange(conn, target, details)
                yield change
                conn.execute(insert(store.audit_log).values(at=_now(), actor_id=actor.id, action=action,
                                                            target=change.target, details=change.details))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in RETRYABLE or getattr(exc.orig, "sqlite_errorcode", None) in SQLITE_BUSY:
                raise Conflict("Another change held the same rows; nothing was changed, retry the request.") from None
            raise
        if policy:
            self.policies.announce()

    @staticmethod
    def _require_admin(actor: Actor) -> None:
        if actor.is_system or actor.access is not None and actor.access.administrator:
            return
        raise Forbidden("Only administrators manage users, the org tree, roles and grants.")

    # -- authentication ---------------------------------------------------------------------
    def sign_in(self, username: Any, password: Any, client: str = "") -> dict[str, Any]:
        """A session token for a user's name and password; failures are counted per name and client."""
        if not isinstance(username, str) or not username or not isinstance(password, str):
            raise _invalid("username", "give a username and a password")
        key = f"{username.lower()}|{client}"
        wait = self.attempts.attempt(key)
        if wait:
            raise RateLimited(f"Too many failed sign-ins; try again in {wait} seconds.", retry_after=wait)
        with self.engine.connect() as conn:
            user = conn.execute(select(USERS.c.id, USERS.c.active, store.credentials.c.password_hash)
                                .select_from(USERS.outerjoin(store.credentials, store.credentials.c.user_id == USERS.c.id))
                                .where(USERS.c.username == username, USERS.c.deleted_at.is_(None))).first()
        stored = user.password_hash if user is not None else None
        if not verify_password(stored, password) or not user.active:
            raise Unauthenticated("The username or password is wrong, or the user is not active.")
        self.attempts.succeeded(key)
        expires = _now() + timedelta(hours=self.session_hours)
        actor = Actor(str(user.id), username, is_system=True)
        return self._issue(actor, str(user.id), "sign-in", "session", expires)

    def authenticate(self, token: str) -> Actor:
        """The user a bearer token belongs to, with what they may do at the current policy version."""
        t = store.tokens
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.id, t.c.user_id, t.c.expires_at, t.c.revoked_at, t.c.last_used_at, USERS.c.username,
                       USERS.c.active, USERS.c.deleted_at,
                       select(store.policy_version.c.version).scalar_subquery().label("policy_version"))
                .select_from(t.outerjoin(USERS, USERS.c.id == t.c.user_id))
                .where(t.c.token_hash == token_digest(token))).first()
            now = _now()
            if row is None:
                raise Unauthenticated("The token is not known; sign in again or ask for a new API token.")
            if row.revoked_at is not None:
                raise Unauthenticated("The token was revoked.")
            if row.expires_at is not None and row.expires_at <= now:
                raise Unauthenticated("The token has expired; sign in again.")
            if row.username is None or row.deleted_at is not None or not row.active:
                raise Unauthenticated("The token's user is deleted or deactivated.")
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() > TOUCH_SECONDS:
            self._touch(row.id, now)
        user_id = str(row.user_id)
        return Actor(user_id, row.username, access=self.policies.access(user_id, row.policy_version))

    def _touch(self, token_id: str, now: datetime) -> None:
        """Stamp the token's last use; best effort (a busy database must not fail the request)."""
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                conn.execute(update(store.tokens).where(store.tokens.c.id == token_id).values(last_used_at=now))
        except OperationalError as exc:
            log.info("token %s: last use not recorded (%s)", token_id, exc.orig)

    def sign_out(self, token: str) -> None:
        t = store.tokens
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.id, t.c.user_id).where(t.c.token_hash == token_digest(token), t.c.revoked_at.is_(None))).first()
        if row is None:
            return
        with self._change(Actor(str(row.user_id), is_system=True), "token.sign_out", f"token:{row.id}", {}, policy=False) as change:
            change.conn.execute(update(t).where(t.c.id == row.id, t.c.revoked_at.is_(None)).values(revoked_at=_now()))

    def issue_token(self, actor: Actor, name: Any, expires_at: datetime | None = None, user_id: str | None = None) -> dict[str, Any]:
        """A named API token for ``actor`` (or, for administrators, another user); the plain token
        is in the answer and nowhere else."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise _invalid("name", "give the token a name of 1 to 255 characters")
        if expires_at is not None and expires_at <= _now():
            raise _invalid("expires_at", "must be in the future")
        owner = actor.id
        if user_id is not None and _id(user_id, "user_id") != actor.id:
            self._require_admin(actor)
            owner = _id(user_id, "user_id")
        if owner is None:
            raise _invalid("user_id", "name the user the token is for")
        self._live_user(owner)
        return self._issue(actor, owner, name.strip(), "api", expires_at)

    def _issue(self, actor: Actor, user_id: str, name: str, kind: str, expires_at: datetime | None) -> dict[str, Any]:
        token = new_token()
        token_id = new_record_id()
        details = {"user_id": user_id, "name": name, "kind": kind, "expires_at": expires_at.isoformat() if expires_at else None}
        with self._change(actor, "token.issue", f"token:{token_id}", details, policy=False) as change:
            conn = change.conn
            conn.execute(insert(store.tokens).values(
                id=token_id, user_id=user_id, name=name, kind=kind, token_hash=token_digest(token), hint=token_hint(token),
                created_at=_now(), expires_at=expires_at))
        return {"id": token_id, "token": token, "name": name, "kind": kind, "user_id": user_id, "expires_at": expires_at}

    def revoke_token(self, actor: Actor, token_id: Any) -> None:
        token_id = _id(token_id, "id")
        t = store.tokens
        with self._change(actor, "token.revoke", f"token:{token_id}", {}, policy=False) as change:
            conn = change.conn
            row = conn.execute(select(t.c.user_id).where(t.c.id == token_id)).first()
            if row is None or str(row.user_id) != actor.id and not self._is_admin(actor):
                raise NotFound(f"There is no token with id {token_id}.", field="id")
            conn.execute(update(t).where(t.c.id == token_id, t.c.revoked_at.is_(None)).values(revoked_at=_now()))

    def tokens(self, actor: Actor, user_id: str | None = None) -> list[dict[str, Any]]:
        owner = actor.id if user_id is None else _id(user_id, "user_id")
        if owner != actor.id:
            self._require_admin(actor)
        t = store.tokens
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.name, t.c.kind, t.c.hint, t.c.created_at, t.c.expires_at, t.c.revoked_at,
                                       t.c.last_used_at).where(t.c.user_id == owner).order_by(t.c.created_at)).mappings().all()
        return [{**r, "id": str(r["id"])} for r in rows]

    @staticmethod
    def _is_admin(actor: Actor) -> bool:
        return actor.is_system or actor.access is not None and actor.access.administrator

    # -- users ------------------------------------------------------------------------------
    def create_user(self, actor: Actor, values: dict[str, Any], password: str | None = None) -> dict[str, Any]:
        """A user record (any of the user object's fields) with an optional password."""
        self._require_admin(actor)
        if password is not None and (problem := password_problem(password)):
            raise _invalid("password", problem)
        with self._change(actor, "user.create", "user", {"username": (values or {}).get("username")}, policy=False) as change:
            conn = change.conn
            user = self.records.joined(conn).create(SYSTEM_ACTOR, "user", values)
            change.target = f"user:{user['id']}"
            if password is not None:
                conn.execute(insert(store.credentials).values(user_id=user["id"], password_hash=hash_password(password), changed_at=_now()))
        return user

    def set_password(self, actor: Actor, user_id: Any, password: Any, current_password: Any = None) -> None:
        """Administrators set anyone's password; users change their own with the current one."""
        user_id = _id(user_id, "user_id")
        if not self._is_admin(actor):
            if user_id != actor.id:
                raise Forbidden("You may change only your own password.")
            with self.engine.connect() as conn:
                stored = conn.execute(select(store.credentials.c.password_hash).where(store.credentials.c.user_id == user_id)).scalar()
            if not isinstance(current_password, str) or not verify_password(stored, current_password):
                raise _invalid("current_password", "is not your current password")
        if problem := password_problem(password):
            raise _invalid("password", problem)
        self._live_user(user_id)
        c = store.credentials
        with self._change(actor, "user.password", f"user:{user_id}", {}, policy=False) as change:
            conn = change.conn
            if conn.execute(update(c).where(c.c.user_id == user_id).values(password_hash=hash_password(password), changed_at=_now())).rowcount == 0:
                conn.execute(insert(c).values(user_id=user_id, password_hash=hash_password(password), changed_at=_now()))
            conn.execute(update(store.tokens).where(store.tokens.c.user_id == user_id, store.tokens.c.kind == "session",
                                                    store.tokens.c.revoked_at.is_(None)).values(revoked_at=_now()))

    def delete_user(self, actor: Actor, user_id: Any) -> None:
        """Move a user to the recycle bin: their tokens stop working at once, their memberships go."""
        self._require_admin(actor)
        user_id = _id(user_id, "user_id")
        with self._change(actor, "user.delete", f"user:{user_id}", {}, policy=True) as change:
            conn = change.conn
            self.records.joined(conn).delete(SYSTEM_ACTOR, "user", user_id)
            conn.execute(update(store.tokens).where(store.tokens.c.user_id == user_id, store.tokens.c.revoked_at.is_(None)).values(revoked_at=_now()))
            conn.execute(delete(store.memberships).where(store.memberships.c.user_id == user_id))

    def _live_user(self, user_id: str, conn: Connection | None = None, field: str = "user_id") -> None:
        query = select(USERS.c.id).where(USERS.c.id == user_id, USERS.c.deleted_at.is_(None))
        if conn is None:
            with self.engine.connect() as own:
                found = own.execute(query).first()
        else:
            found = conn.execute(query).first()
        if found is None:
            raise NotFound(f"There is no user with id {user_id}.", field=field)

    # -- the org tree -----------------------------------------------------------------------
    def create_unit(self, actor: Actor, name: Any, parent_id: Any = None, values: dict[str, Any] | None = None) -> dict[str, Any]:
        self._require_admin(actor)
        parent = _id(parent_id, "parent_id") if parent_id is not None else None
        with self._change(actor, "unit.create", "org_unit", {"name": name, "parent_id": parent}, policy=True) as change:
            conn = change.conn
            parent_path = self._unit_path(conn, parent, "parent_id", lock=True) if parent else "/"
            records = self.records.joined(conn)
            unit = records.create(SYSTEM_ACTOR, "org_unit", {**(values or {}), "name": name, "parent": parent})
            change.target = f"org_unit:{unit['id']}"
            return records.update(SYSTEM_ACTOR, "org_unit", unit["id"], {"path": f"{parent_path}{unit['id']}/"})

    def move_unit(self, actor: Actor, unit_id: Any, parent_id: Any) -> dict[str, Any]:
        """Re-parent a unit (``parent_id`` ``None``: make it a root); its subtree's paths follow in
        one statement, in the same transaction."""
        self._require_admin(actor)
        unit_id = _id(unit_id, "id")
        parent = _id(parent_id, "parent_id") if parent_id is not None else None
        with self._change(actor, "unit.move", f"org_unit:{unit_id}", {"parent_id": parent}, policy=True) as change:
            conn = change.conn
            old_path = self._unit_path(conn, unit_id, "id", lock=True)
            new_parent_path = self._unit_path(conn, parent, "parent_id") if parent else "/"
            if new_parent_path.startswith(old_path):
                raise _invalid("parent_id", "is the unit itself or one of its sub-units; a unit cannot move below itself", "CYCLE")
            new_path = f"{new_parent_path}{unit_id}/"
            records = self.records.joined(conn)
            moved = records.update(SYSTEM_ACTOR, "org_unit", unit_id, {"parent": parent, "path": new_path})
            units = table(table_name("org_unit"), column("path"), column("version"), column("updated_at"), column("updated_by"))
            conn.execute(update(units).where(units.c.path.startswith(old_path, autoescape=True), units.c.path != new_path).values(
                path=literal(new_path).concat(func.substr(units.c.path, len(old_path) + 1)),
                version=units.c.version + 1, updated_at=_now(), updated_by=actor.id))
            return moved

    def delete_unit(self, actor: Actor, unit_id: Any) -> None:
        self._require_admin(actor)
        unit_id = _id(unit_id, "id")
        with self._change(actor, "unit.delete", f"org_unit:{unit_id}", {}, policy=True) as change:
            conn = change.conn
            path = self._unit_path(conn, unit_id, "id", lock=True)
            below = conn.execute(select(func.count()).select_from(UNITS).where(
                UNITS.c.path.startswith(path, autoescape=True), UNITS.c.path != path, UNITS.c.deleted_at.is_(None))).scalar_one()
            members = conn.execute(select(func.count()).select_from(store.memberships).where(store.memberships.c.unit_id == unit_id)).scalar_one()
            if below or members:
                raise InUse(f"The unit still has {below} sub-unit(s) and {members} membership(s); move or remove them first.",
                            sub_units=below, memberships=members)
            self.records.joined(conn).delete(SYSTEM_ACTOR, "org_unit", unit_id)

    @staticmethod
    def _unit_path(conn: Connection, unit_id: str, field: str, lock: bool = False) -> str:
        query = select(UNITS.c.path).where(UNITS.c.id == unit_id, UNITS.c.deleted_at.is_(None))
        if lock and not is_sqlite(conn):
            query = query.with_for_update()
        path = conn.execute(query).scalar()
        if path is None:
            raise NotFound(f"There is no org unit with id {unit_id}.", field=field)
        return path

    # -- roles and grants -------------------------------------------------------------------
    def create_role(self, actor: Actor, name: Any, label: Any, description: str = "", administrator: bool = False) -> dict[str, Any]:
        self._require_admin(actor)
        errors = []
        if not isinstance(name, str) or not API_NAME.fullmatch(name):
            errors.append(FieldError("INVALID_NAME", "name", "must start with a lowercase letter and hold lowercase letters, digits and underscores"))
        if not isinstance(label, str) or not label.strip() or len(label) > 255:
            errors.append(FieldError("INVALID_VALUE", "label", "must be 1 to 255 characters"))
        if errors:
            raise ValidationFailed.of(errors)
        now = _now()
        with self._change(actor, "role.create", f"role:{name}", {"label": label, "administrator": bool(administrator)}, policy=True) as change:
            conn = change.conn
            if conn.execute(select(store.roles.c.name).where(store.roles.c.name == name)).first() is not None:
                raise _invalid("name", f"a role named '{name}' already exists", "DUPLICATE_VALUE")
            conn.execute(insert(store.roles).values(name=name, label=label.strip(), description=description or "",
                                                    administrator=bool(administrator), created_at=now, updated_at=now))
        return self.role(actor, name)

    def update_role(self, actor: Actor, name: str, *, label: str | None = None, description: str | None = None,
                    administrator: bool | None = None) -> dict[str, Any]:
        self._require_admin(actor)
        changes: dict[str, Any] = {}
        if label is not None:
            if not isinstance(label, str) or not label.strip() or len(label) > 255:
                raise _invalid("label", "must be 1 to 255 characters")
            changes["label"] = label.strip()
        if description is not None:
            changes["description"] = description
        if administrator is not None:
            changes["administrator"] = bool(administrator)
        with self._change(actor, "role.update", f"role:{name}", changes, policy=True) as change:
            conn = change.conn
            self._role_exists(conn, name)
            if changes.get("administrator") is False and name == ADMINISTRATOR:
                raise Forbidden("The built-in administrator role always administers.")
            conn.execute(update(store.roles).where(store.roles.c.name == name).values(**changes, updated_at=_now()))
        return self.role(actor, name)

    def delete_role(self, actor: Actor, name: str) -> None:
        self._require_admin(actor)
        with self._change(actor, "role.delete", f"role:{name}", {}, policy=True) as change:
            conn = change.conn
            self._role_exists(conn, name)
            if name == ADMINISTRATOR:
                raise Forbidden("The built-in administrator role cannot be deleted.")
            held = conn.execute(select(func.count()).select_from(store.memberships).where(store.memberships.c.role_name == name)).scalar_one()
            if held:
                raise InUse(f"{held} membership(s) still hold the role '{name}'; remove them first.", memberships=held)
            conn.execute(delete(store.roles).where(store.roles.c.name == name))

    def set_object_grant(self, actor: Actor, role: str, object_api_name: str, actions: Any, read_scope: Any = "own",
                         write_scope: Any = "own") -> dict[str, Any]:
        """What ``role`` may do with records of an object (``*``: every object without its own grant)."""
        self._require_admin(actor)
        errors = []
        if object_api_name != "*" and object_api_name not in self.records.catalogs.current().objects:
            errors.append(FieldError("UNKNOWN_OBJECT", "object", f"there is no object named '{object_api_name}'"))
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            errors.append(FieldError("INVALID_TYPE", "actions", "must be a list of actions"))
        else:
            errors.extend(FieldError("INVALID_VALUE", f"actions.{i}", f"must be one of {', '.join(ACTIONS)}")
                          for i, a in enumerate(actions) if a not in ACTIONS)
        for field, scope in (("read_scope", read_scope), ("write_scope", write_scope)):
            if scope not in SCOPES:
                errors.append(FieldError("INVALID_VALUE", field, f"must be one of {', '.join(SCOPES)}"))
        if errors:
            raise ValidationFailed.of(errors)
        actions = [a for a in ACTIONS if a in actions]
        g = store.object_grants
        details = {"object": object_api_name, "actions": actions, "read_scope": read_scope, "write_scope": write_scope}
        with self._change(actor, "grant.object", f"role:{role}", details, policy=True) as change:
            conn = change.conn
            self._role_exists(conn, role)
            conn.execute(delete(g).where(g.c.role_name == role, g.c.object_api_name == object_api_name))
            if actions:
                conn.execute(insert(g).values(role_name=role, object_api_name=object_api_name, actions=actions,
                                              read_scope=read_scope, write_scope=write_scope))
        return self.role(actor, role)

    def set_field_grant(self, actor: Actor, role: str, object_api_name: str, field_api_name: str, access: Any) -> dict[str, Any]:
        """``hidden``, ``read`` (read-only) or ``edit`` (the default: no restriction)."""
        self._require_admin(actor)
        obj = self.records.catalogs.current().objects.get(object_api_name)
        errors = []
        if obj is None:
            errors.append(FieldError("UNKNOWN_OBJECT", "object", f"there is no object named '{object_api_name}'"))
        elif obj.field(field_api_name) is None:
            errors.append(FieldError("UNKNOWN_FIELD", "field", f"'{object_api_name}' has no field named '{field_api_name}'"))
        elif field_api_name in ("id", "version"):
            errors.append(FieldError("INVALID_VALUE", "field", "the id and version of a record are always readable"))
        if access not in FIELD_ACCESS:
            errors.append(FieldError("INVALID_VALUE", "access", f"must be one of {', '.join(FIELD_ACCESS)}"))
        if errors:
            raise ValidationFailed.of(errors)
        g = store.field_grants
        details = {"object": object_api_name, "field": field_api_name, "access": access}
        with self._change(actor, "grant.field", f"role:{role}", details, policy=True) as change:
            conn = change.conn
            self._role_exists(conn, role)
            conn.execute(delete(g).where(g.c.role_name == role, g.c.object_api_name == object_api_name, g.c.field_api_name == field_api_name))
            if access != "edit":
                conn.execute(insert(g).values(role_name=role, object_api_name=object_api_name, field_api_name=field_api_name, access=access))
        return self.role(actor, role)

    def role(self, actor: Actor, name: str) -> dict[str, Any]:
        found = [r for r in self.roles(actor) if r["name"] == name]
        if not found:
            raise NotFound(f"There is no role named '{name}'.", field="name")
        return found[0]

    def roles(self, actor: Actor) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            roles = [dict(r) for r in conn.execute(select(store.roles).order_by(store.roles.c.name)).mappings()]
            objects = conn.execute(select(store.object_grants).order_by(store.object_grants.c.object_api_name)).mappings().all()
            fields = conn.execute(select(store.field_grants).order_by(store.field_grants.c.object_api_name,
                                                                       store.field_grants.c.field_api_name)).mappings().all()
        for role in roles:
            role["objects"] = [{"object": g["object_api_name"], "actions": list(g["actions"]), "read_scope": g["read_scope"],
                                "write_scope": g["write_scope"]} for g in objects if g["role_name"] == role["name"]]
            role["fields"] = [{"object": g["object_api_name"], "field": g["field_api_name"], "access": g["access"]}
                              for g in fields if g["role_name"] == role["name"]]
        return roles

    @staticmethod
    def _role_exists(conn: Connection, name: str) -> None:
        if conn.execute(select(store.roles.c.name).where(store.roles.c.name == name)).first() is None:
            raise NotFound(f"There is no role named '{name}'.", field="role")

    # -- memberships ------------------------------------------------------------------------
    def add_membership(self, actor: Actor, user_id: Any, unit_id: Any, role: str) -> dict[str, Any]:
        self._require_admin(actor)
        user_id, unit_id = _id(user_id, "user_id"), _id(unit_id, "unit_id")
        m = store.memberships
        details = {"user_id": user_id, "unit_id": unit_id, "role": role}
        with self._change(actor, "membership.add", f"user:{user_id}", details, policy=True) as change:
            conn = change.conn
            self._live_user(user_id, conn)
            self._unit_path(conn, unit_id, "unit_id")
            self._role_exists(conn, role)
            exists = conn.execute(select(m.c.user_id).where(m.c.user_id == user_id, m.c.unit_id == unit_id, m.c.role_name == role)).first()
            if exists is None:
                conn.execute(insert(m).values(user_id=user_id, unit_id=unit_id, role_name=role, created_at=_now()))
        return {"user_id": user_id, "unit_id": unit_id, "role": role}

    def remove_membership(self, actor: Actor, user_id: Any, unit_id: Any, role: str) -> None:
        self._require_admin(actor)
        user_id, unit_id = _id(user_id, "user_id"), _id(unit_id, "unit_id")
        m = store.memberships
        details = {"user_id": user_id, "unit_id": unit_id, "role": role}
        with self._change(actor, "membership.remove", f"user:{user_id}", details, policy=True) as change:
            conn = change.conn
            removed = conn.execute(delete(m).where(m.c.user_id == user_id, m.c.unit_id == unit_id, m.c.role_name == role)).rowcount
            if not removed:
                raise NotFound("The user holds no such role in that unit.", field="role")

    def memberships(self, actor: Actor, user_id: Any = None, unit_id: Any = None) -> list[dict[str, Any]]:
        if user_id is None or _id(user_id, "user_id") != actor.id:
            self._require_admin(actor)
        m = store.memberships
        query = select(m.c.user_id, m.c.unit_id, m.c.role_name, m.c.created_at).order_by(m.c.user_id, m.c.created_at, m.c.unit_id, m.c.role_name)
        if user_id is not None:
            query = query.where(m.c.user_id == _id(user_id, "user_id"))
        if unit_id is not None:
            query = query.where(m.c.unit_id == _id(unit_id, "unit_id"))
        with self.engine.connect() as conn:
            return [{"user_id": str(r.user_id), "unit_id": str(r.unit_id), "role": r.role_name, "created_at": r.created_at}
                    for r in conn.execute(query)]

    # -- record shares and teams ------------------------------------------------------------
    def share_record(self, actor: Actor, object_api_name: str, record_id: Any, grantee_id: Any, access: Any = "read") -> dict[str, Any]:
        """Share a record with a user or an org unit (its members and everyone below it)."""
        grantee_id = _id(grantee_id, "grantee_id")
        if access not in SHARE_ACCESS:
            raise _invalid("access", "must be read or edit")
        s = store.record_shares
        details = {"object": object_api_name, "record_id": str(record_id), "grantee_id": grantee_id, "access": access}
        with self._change(actor, "record.share", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            kind = self._grantee_kind(conn, grantee_id)
            conn.execute(delete(s).where(s.c.object_api_name == object_api_name, s.c.record_id == record_id, s.c.grantee_id == grantee_id))
            conn.execute(insert(s).values(object_api_name=object_api_name, record_id=record_id, grantee_id=grantee_id, grantee_kind=kind,
                                          access=access, created_at=_now(), created_by=actor.id))
        return {"object": object_api_name, "record_id": record_id, "grantee_id": grantee_id, "grantee_kind": kind, "access": access}

    def unshare_record(self, actor: Actor, object_api_name: str, record_id: Any, grantee_id: Any) -> None:
        grantee_id = _id(grantee_id, "grantee_id")
        s = store.record_shares
        details = {"object": object_api_name, "record_id": str(record_id), "grantee_id": grantee_id}
        with self._change(actor, "record.unshare", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            if not conn.execute(delete(s).where(s.c.object_api_name == object_api_name, s.c.record_id == record_id,
                                                s.c.grantee_id == grantee_id)).rowcount:
                raise NotFound("The record is not shared with that user or unit.", field="grantee_id")

    def add_team_member(self, actor: Actor, object_api_name: str, record_id: Any, user_id: Any, access: Any = "read",
                        team_role: str = "") -> dict[str, Any]:
        user_id = _id(user_id, "user_id")
        if access not in SHARE_ACCESS:
            raise _invalid("access", "must be read or edit")
        if not isinstance(team_role, str) or len(team_role) > 255:
            raise _invalid("team_role", "must be text of at most 255 characters")
        t = store.team_members
        details = {"object": object_api_name, "record_id": str(record_id), "user_id": user_id, "access": access, "team_role": team_role}
        with self._change(actor, "team.add", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            self._live_user(user_id, conn)
            conn.execute(delete(t).where(t.c.object_api_name == object_api_name, t.c.record_id == record_id, t.c.user_id == user_id))
            conn.execute(insert(t).values(object_api_name=object_api_name, record_id=record_id, user_id=user_id, access=access,
                                          team_role=team_role, created_at=_now(), created_by=actor.id))
        return {"object": object_api_name, "record_id": record_id, "user_id": user_id, "access": access, "team_role": team_role}

    def remove_team_member(self, actor: Actor, object_api_name: str, record_id: Any, user_id: Any) -> None:
        user_id = _id(user_id, "user_id")
        t = store.team_members
        details = {"object": object_api_name, "record_id": str(record_id), "user_id": user_id}
        with self._change(actor, "team.remove", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            if not conn.execute(delete(t).where(t.c.object_api_name == object_api_name, t.c.record_id == record_id,
                                                t.c.user_id == user_id)).rowcount:
                raise NotFound("That user is not on the record's team.", field="user_id")

    def sharing(self, actor: Actor, object_api_name: str, record_id: Any) -> dict[str, list[dict[str, Any]]]:
        """The record's shares and team, for anyone who may read the record."""
        with self.engine.connect() as conn:
            record_id = self._visible_record(conn, actor, object_api_name, record_id, "read")
            s, t = store.record_shares, store.team_members
            shares = conn.execute(select(s.c.grantee_id, s.c.grantee_kind, s.c.access, s.c.created_at, s.c.created_by).where(
                s.c.object_api_name == object_api_name, s.c.record_id == record_id).order_by(s.c.created_at)).mappings().all()
            team = conn.execute(select(t.c.user_id, t.c.access, t.c.team_role, t.c.created_at, t.c.created_by).where(
                t.c.object_api_name == object_api_name, t.c.record_id == record_id).order_by(t.c.created_at)).mappings().all()
        return {"shares": [{**r, "grantee_id": str(r["grantee_id"])} for r in shares],
                "team": [{**r, "user_id": str(r["user_id"])} for r in team]}

    def _editable_record(self, conn: Connection, actor: Actor, object_api_name: str, record_id: Any) -> str:
        """Sharing a record, or changing its team, takes the right to edit it."""
        return self._visible_record(conn, actor, object_api_name, record_id, "update")

    def _visible_record(self, conn: Connection, actor: Actor, object_api_name: str, record_id: Any, action: str) -> str:
        catalog = self.records.catalogs.current()
        obj = catalog.objects.get(object_api_name)
        if obj is None:
            raise _invalid("object", f"there is no object named '{object_api_name}'", "UNKNOWN_OBJECT")
        policy = self.records.policy
        policy.authorize(actor, obj, action)
        record_table = catalog.table(obj.api_name)
        try:
            record_id = str(uuid.UUID(str(record_id)))
        except ValueError:
            raise NotFound(f"There is no {obj.label} record with id {record_id!r}.", field="record_id") from None
        found = conn.execute(select(record_table.c.id).where(
            record_table.c.id == record_id, record_table.c.deleted_at.is_(None),
            policy.row_filter(actor, obj, record_table, action))).first()
        if found is None:
            raise NotFound(f"There is no {obj.label} record with id {record_id!r}.", field="record_id")
        return record_id

    @staticmethod
    def _grantee_kind(conn: Connection, grantee_id: str) -> str:
        if conn.execute(select(USERS.c.id).where(USERS.c.id == grantee_id, USERS.c.deleted_at.is_(None))).first():
            return "user"
        if conn.execute(select(UNITS.c.id).where(UNITS.c.id == grantee_id, UNITS.c.deleted_at.is_(None))).first():
            return "unit"
        raise NotFound(f"There is no user or org unit with id {grantee_id}.", field="grantee_id")

    # -- audit ------------------------------------------------------------------------------
    def audit(self, actor: Actor, limit: int = 100, target: str | None = None) -> list[dict[str, Any]]:
        self._require_admin(actor)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise _invalid("limit", "must be a whole number from 1 to 1000")
        a = store.audit_log
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(a.c.target == target)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
