"""Sign-in, bearer tokens and passwords."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError

from ...metadata.actors import Actor
from ...metadata.database import WRITE
from ...metadata.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from ..records import new_record_id
from . import store
from .changes import (
    TOUCH_SECONDS,
    USERS,
    SecurityBase,
    invalid,
    log,
    parse_id,
    utc_now,
)
from .credentials import (
    hash_password,
    new_token,
    password_problem,
    token_digest,
    token_hint,
    verify_password,
)


class Authentication(SecurityBase):
    def sign_in(self, username: Any, password: Any, client: str = "") -> dict[str, Any]:
        """A session token for a user's name and password; failures are counted per name and client."""
        if not isinstance(username, str) or not username or not isinstance(password, str):
            raise invalid("username", "give a username and a password")
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
        expires = utc_now() + timedelta(hours=self.session_hours)
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
            now = utc_now()
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
            change.conn.execute(update(t).where(t.c.id == row.id, t.c.revoked_at.is_(None)).values(revoked_at=utc_now()))

    def issue_token(self, actor: Actor, name: Any, expires_at: datetime | None = None, user_id: str | None = None) -> dict[str, Any]:
        """A named API token for ``actor`` (or, for administrators, another user); the plain token
        is in the answer and nowhere else."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise invalid("name", "give the token a name of 1 to 255 characters")
        if expires_at is not None and expires_at <= utc_now():
            raise invalid("expires_at", "must be in the future")
        owner = actor.id
        if user_id is not None and parse_id(user_id, "user_id") != actor.id:
            self._require_admin(actor)
            owner = parse_id(user_id, "user_id")
        if owner is None:
            raise invalid("user_id", "name the user the token is for")
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
                created_at=utc_now(), expires_at=expires_at))
        return {"id": token_id, "token": token, "name": name, "kind": kind, "user_id": user_id, "expires_at": expires_at}

    def revoke_token(self, actor: Actor, token_id: Any) -> None:
        token_id = parse_id(token_id, "id")
        t = store.tokens
        with self._change(actor, "token.revoke", f"token:{token_id}", {}, policy=False) as change:
            conn = change.conn
            row = conn.execute(select(t.c.user_id).where(t.c.id == token_id)).first()
            if row is None or str(row.user_id) != actor.id and not self._is_admin(actor):
                raise NotFound(f"There is no token with id {token_id}.", field="id")
            conn.execute(update(t).where(t.c.id == token_id, t.c.revoked_at.is_(None)).values(revoked_at=utc_now()))

    def tokens(self, actor: Actor, user_id: str | None = None) -> list[dict[str, Any]]:
        owner = actor.id if user_id is None else parse_id(user_id, "user_id")
        if owner is None:
            raise invalid("user_id", "name the user whose tokens to list")
        if owner != actor.id:
            self._require_admin(actor)
        t = store.tokens
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.name, t.c.kind, t.c.hint, t.c.created_at, t.c.expires_at, t.c.revoked_at,
                                       t.c.last_used_at).where(t.c.user_id == owner).order_by(t.c.created_at)).mappings().all()
        return [{**r, "id": str(r["id"])} for r in rows]

    def set_password(self, actor: Actor, user_id: Any, password: Any, current_password: Any = None) -> None:
        """Administrators set anyone's password; users change their own with the current one."""
        user_id = parse_id(user_id, "user_id")
        if not self._is_admin(actor):
            if user_id != actor.id:
                raise Forbidden("You may change only your own password.")
            with self.engine.connect() as conn:
                stored = conn.execute(select(store.credentials.c.password_hash).where(store.credentials.c.user_id == user_id)).scalar()
            if not isinstance(current_password, str) or not verify_password(stored, current_password):
                raise invalid("current_password", "is not your current password")
        if problem := password_problem(password):
            raise invalid("password", problem)
        self._live_user(user_id)
        c = store.credentials
        with self._change(actor, "user.password", f"user:{user_id}", {}, policy=False) as change:
            conn = change.conn
            if conn.execute(update(c).where(c.c.user_id == user_id).values(password_hash=hash_password(password), changed_at=utc_now())).rowcount == 0:
                conn.execute(insert(c).values(user_id=user_id, password_hash=hash_password(password), changed_at=utc_now()))
            conn.execute(update(store.tokens).where(store.tokens.c.user_id == user_id, store.tokens.c.kind == "session",
                                                    store.tokens.c.revoked_at.is_(None)).values(revoked_at=utc_now()))
