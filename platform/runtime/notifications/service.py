"""The notification inbox: what reminders, approvals, triggers and announcements deliver to users.

A notification is a row per user. Delivering inside a caller's transaction makes it exist exactly
when that transaction commits; a key makes a second delivery of the same notification to the same
user a no-op (a retried job notifies once). Each user reads and marks only their own inbox: another
user's notification is NOT_FOUND, as if it did not exist. A link to a record is only its object and
id; opening it goes through the record service, so a user who lost access to the record still sees
the notification but not the record.
"""
from __future__ import annotations

import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...metadata.actors import Actor
from ...metadata.database import WRITE
from ...metadata.errors import FieldError, Forbidden, NotFound, ValidationFailed
from ...metadata.names import API_NAME
from ..clock import Clock, SystemClock
from ..instant_cursors import decode_cursor, encode_cursor
from . import recipients, store

NOTIFICATIONS = store.notifications
C = NOTIFICATIONS.c

KIND = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
MAX_BODY_LENGTH = 4000
MAX_PAGE = 200
MAX_MARKED = 1000
NO_INBOX = ("The platform itself (the service token, or the system actor) has no inbox; "
            "read notifications with a user's sign-in or API token.")


@dataclass(frozen=True)
class Delivery:
    """One notification for one user, under a key that delivers it once."""

    user_id: str
    kind: str
    title: str
    key: str
    body: str = ""
    record: tuple[str, str] | None = None


@dataclass(frozen=True)
class Notification:
    id: str
    user_id: str
    kind: str
    title: str
    body: str
    object_api_name: str | None
    record_id: str | None
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def from_row(cls, row) -> "Notification":
        values = row._mapping
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at, self.id)


@dataclass(frozen=True)
class InboxPage:
    """One page of a user's inbox, newest first, and how many of all their notifications are unread."""

    notifications: list[Notification]
    has_next_page: bool
    unread_count: int
    after: str | None = None
    """The cursor the page starts after (``None``: the first page)."""

    @property
    def end_cursor(self) -> str | None:
        return self.notifications[-1].cursor if self.notifications else None


@dataclass(frozen=True)
class Message:
    """What is delivered, checked once whatever the recipients."""

    kind: str
    title: str
    body: str
    object_api_name: str | None
    record_id: str | None
    key: str | None


class NotificationService:
    def __init__(self, engine: Engine, clock: Clock | None = None):
        self.engine = engine
        self.clock = clock or SystemClock()

    def install(self) -> None:
        """Create the notifications table when missing."""
        with self._transaction() as conn:
            store.notifications_metadata.create_all(conn)

    # -- delivering ---------------------------------------------------------------------------
    def notify(self, user_ids: Any, kind: str, title: str, body: str = "", *, record: tuple[str, str] | None = None,
               key: str | None = None, conn: Connection | None = None) -> int:
        """Deliver a notification to each of these active users; returns how many received it
        (a user who already has one under ``key`` does not receive it again).

        Nothing is delivered when any input is wrong: each problem is listed, an unknown, deleted
        or deactivated user at ``user_ids.<index>``. With ``conn`` the delivery joins that open
        transaction and exists only if the caller commits.
        """
        ids, problems = recipients.id_list(user_ids, "user_ids", "user")
        message, message_problems = _message(kind, title, body, record, key)
        problems += message_problems
        with self._joined(conn) as conn:
            problems += recipients.inactive_users(conn, ids)
            if problems:
                raise ValidationFailed.of(problems)
            return self._deliver(conn, ids, message)

    def notify_units(self, unit_ids: Any, kind: str, title: str, body: str = "", *, include_below: bool = False,
                     roles: Any = None, record: tuple[str, str] | None = None, key: str | None = None,
                     conn: Connection | None = None) -> int:
        """Deliver to the active members of these org units (with ``include_below``, of their
        sub-units too), in any role or only in ``roles``; a user with several memberships receives
        it once. Returns how many received it."""
        ids, problems = recipients.id_list(unit_ids, "unit_ids", "org unit")
        message, message_problems = _message(kind, title, body, record, key)
        problems += message_problems
        with self._joined(conn) as conn:
            paths, unit_problems = recipients.unit_paths(conn, ids)
            problems += unit_problems
            role_names = None
            if roles is not None:
                role_names, role_problems = recipients.checked_roles(conn, roles, "roles")
                problems += role_problems
            if problems:
                raise ValidationFailed.of(problems)
            users = recipients.members(conn, paths, include_below=include_below, roles=role_names)
            return self._deliver(conn, users, message)

    def notify_roles(self, role_names: Any, kind: str, title: str, body: str = "", *, unit_id: Any = None,
                     include_below: bool = False, record: tuple[str, str] | None = None, key: str | None = None,
                     conn: Connection | None = None) -> int:
        """Deliver to the active users holding any of these roles: anywhere, or with ``unit_id`` in
        that unit (and, with ``include_below``, its sub-units). Returns how many received it."""
        if unit_id is not None:
            return self.notify_units([unit_id], kind, title, body, include_below=include_below, roles=role_names,
                                     record=record, key=key, conn=conn)
        message, problems = _message(kind, title, body, record, key)
        with self._joined(conn) as conn:
            names, role_problems = recipients.checked_roles(conn, role_names, "role_names")
            problems += role_problems
            if problems:
                raise ValidationFailed.of(problems)
            users = recipients.members(conn, None, include_below=False, roles=names)
            return self._deliver(conn, users, message)

    def notify_each(self, deliveries: list[Delivery], *, conn: Connection | None = None) -> int:
        """Deliver many different notifications, each to its own user and under its own key (a
        scan's reminders): a few statements whatever their number; returns how many were new.
        The caller vouches for the users (found active by its own query); a malformed delivery
        is listed at ``deliveries.<index>`` and nothing is delivered."""
        rows, problems = [], []
        now = self.clock.now()
        for i, delivery in enumerate(deliveries):
            message, message_problems = _message(delivery.kind, delivery.title, delivery.body, delivery.record, delivery.key)
            if delivery.key is None:
                message_problems.append(FieldError("REQUIRED", "key", "a delivery of many needs its key"))
            problems += [p.at(f"deliveries.{i}") for p in message_problems]
            rows.append(_row(delivery.user_id, message, now))
        if problems:
            raise ValidationFailed.of(problems)
        with self._joined(conn) as conn:
            return sum(self._insert_new(conn, chunk) for chunk in recipients.chunks(rows))

    def _deliver(self, conn: Connection, user_ids: list[str], message: Message) -> int:
        now = self.clock.now()
        delivered = 0
        for chunk in recipients.chunks(sorted(set(user_ids))):
            rows = [_row(user_id, message, now) for user_id in chunk]
            if message.key is None:
                conn.execute(insert(NOTIFICATIONS), rows)
                delivered += len(rows)
            else:
                delivered += self._insert_new(conn, rows)
        return delivered

    @staticmethod
    def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert the rows whose (user, key) no notification has yet; how many that was."""
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = (dialect_insert(NOTIFICATIONS).values(rows)
                     .on_conflict_do_nothing(index_elements=[C.user_id, C.dedupe_key]).returning(C.id))
        return len(conn.execute(statement).all())

    # -- one user's inbox ---------------------------------------------------------------------
    def inbox(self, actor: Actor, unread_only: bool = False, first: int = 50, after: str | None = None) -> InboxPage:
        """The actor's notifications, newest first, ``first`` (1 to 200) after the cursor ``after``."""
        user_id = _inbox_owner(actor)
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= MAX_PAGE:
            raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "first", f"must be between 1 and {MAX_PAGE}")])
        query = select(NOTIFICATIONS).where(C.user_id == user_id).order_by(C.created_at.desc(), C.id.desc()).limit(first + 1)
        if unread_only:
            query = query.where(C.read_at.is_(None))
        if after is not None:
            created_at, last_id = decode_cursor(after, "the inbox")
            query = query.where(or_(C.created_at < created_at, and_(C.created_at == created_at, C.id < last_id)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            unread = self._unread(conn, user_id)
        found = [Notification.from_row(row) for row in rows[:first]]
        return InboxPage(found, len(rows) > first, unread, after)

    def unread_count(self, actor: Actor) -> int:
        user_id = _inbox_owner(actor)
        with self.engine.connect() as conn:
            return self._unread(conn, user_id)

    @staticmethod
    def _unread(conn: Connection, user_id: str) -> int:
        return conn.execute(select(func.count()).select_from(NOTIFICATIONS)
                            .where(C.user_id == user_id, C.read_at.is_(None))).scalar_one()

    def mark_read(self, actor: Actor, ids: Any) -> int:
        """Mark these notifications of the actor's read; returns how many were unread. An id that
        is not one of the actor's notifications is NOT_FOUND, and then nothing is marked."""
        user_id = _inbox_owner(actor)
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, set, frozenset)):
            raise ValidationFailed.of([FieldError("INVALID_VALUE", "ids", "must be a list of notification ids")])
        ids = list(ids)
        if len(ids) > MAX_MARKED:
            raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "ids", f"must hold at most {MAX_MARKED} ids")])
        wanted = [_as_id(value) for value in ids]
        with self._transaction() as conn:
            own = set()
            for chunk in recipients.chunks(sorted(set(filter(None, wanted)))):
                own.update(str(i) for i in conn.execute(select(C.id).where(C.user_id == user_id, C.id.in_(chunk))).scalars())
            for index, (given, found) in enumerate(zip(ids, wanted)):
                if found not in own:
                    raise NotFound(f"There is no notification with id '{given}' in your inbox.", field=f"ids.{index}")
            now, changed = self.clock.now(), 0
            for chunk in recipients.chunks(sorted(own)):
                changed += conn.execute(update(NOTIFICATIONS).where(
                    C.user_id == user_id, C.id.in_(chunk), C.read_at.is_(None)).values(read_at=now)).rowcount
            return changed

    def mark_all_read(self, actor: Actor) -> int:
        """Mark every unread notification of the actor's read; returns how many there were."""
        user_id = _inbox_owner(actor)
        with self._transaction() as conn:
            return conn.execute(update(NOTIFICATIONS).where(C.user_id == user_id, C.read_at.is_(None))
                                .values(read_at=self.clock.now())).rowcount

    # -- retention ----------------------------------------------------------------------------
    def purge(self, older_than: datetime | timedelta) -> int:
        """Delete the read notifications delivered before ``older_than`` (an instant, or an age
        counted back from now); unread ones stay. Returns how many were deleted."""
        if isinstance(older_than, timedelta):
            cutoff = self.clock.now() - older_than
        elif isinstance(older_than, datetime) and older_than.tzinfo is not None:
            cutoff = older_than
        else:
            raise ValidationFailed.of([FieldError("INVALID_VALUE", "older_than",
                                                  "must be a timedelta or a timezone-aware datetime")])
        with self._transaction() as conn:
            return conn.execute(delete(NOTIFICATIONS).where(C.read_at.is_not(None), C.created_at < cutoff)).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn

    @contextmanager
    def _joined(self, conn: Connection | None) -> Iterator[Connection]:
        """The caller's open transaction, or a new one committed at the end."""
        if conn is not None:
            yield conn
            return
        with self._transaction() as own:
            yield own


def _row(user_id: str, message: Message, now: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "user_id": user_id, "kind": message.kind, "title": message.title, "body": message.body,
            "object_api_name": message.object_api_name, "record_id": message.record_id, "created_at": now,
            "dedupe_key": message.key}


def _inbox_owner(actor: Actor) -> str:
    if actor.is_system or actor.id is None:
        raise Forbidden(NO_INBOX)
    return actor.id


def _as_id(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _message(kind: Any, title: Any, body: Any, record: Any, key: Any) -> tuple[Message, list[FieldError]]:
    problems = []
    if not isinstance(kind, str) or not KIND.match(kind):
        problems.append(FieldError("INVALID_VALUE", "kind", "must be 1 to 63 lowercase letters, digits, '_' or '.', "
                                                            "starting with a letter (such as 'reminder')"))
    if not isinstance(title, str) or not title.strip() or len(title) > C.title.type.length:
        problems.append(FieldError("INVALID_VALUE", "title", "must be text of 1 to 255 characters"))
    if not isinstance(body, str) or len(body) > MAX_BODY_LENGTH:
        problems.append(FieldError("INVALID_VALUE", "body", f"must be text of at most {MAX_BODY_LENGTH} characters"))
    object_api_name = record_id = None
    if record is not None:
        if (not isinstance(record, (tuple, list)) or len(record) != 2 or not isinstance(record[0], str)
                or not API_NAME.match(record[0]) or _as_id(record[1]) is None):
            problems.append(FieldError("INVALID_VALUE", "record", "must be (object api name, record id)"))
        else:
            object_api_name, record_id = record[0], _as_id(record[1])
    if key is not None and (not isinstance(key, str) or not key or len(key) > C.dedupe_key.type.length):
        problems.append(FieldError("INVALID_VALUE", "key", "must be a string of 1 to 255 characters"))
    return Message(kind, title, body, object_api_name, record_id, key), problems
