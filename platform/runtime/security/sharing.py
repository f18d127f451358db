"""Record shares (with a user, or a unit and everything below it) and record teams."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    insert,
    select,
)

from ...metadata.actors import Actor
from ...metadata.errors import (
    NotFound,
)
from . import store
from .changes import (
    USERS,
    SecurityBase,
    invalid,
    parse_id,
    utc_now,
)
from .grants import SHARE_ACCESS
from .policies import UNITS


class Sharing(SecurityBase):
    def share_record(self, actor: Actor, object_api_name: str, record_id: Any, grantee_id: Any, access: Any = "read") -> dict[str, Any]:
        """Share a record with a user or an org unit (its members and everyone below it)."""
        grantee_id = parse_id(grantee_id, "grantee_id")
        if access not in SHARE_ACCESS:
            raise invalid("access", "must be read or edit")
        s = store.record_shares
        details = {"object": object_api_name, "record_id": str(record_id), "grantee_id": grantee_id, "access": access}
        with self._change(actor, "record.share", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            kind = self._grantee_kind(conn, grantee_id)
            conn.execute(delete(s).where(s.c.object_api_name == object_api_name, s.c.record_id == record_id, s.c.grantee_id == grantee_id))
            created_at = utc_now()
            conn.execute(insert(s).values(object_api_name=object_api_name, record_id=record_id, grantee_id=grantee_id, grantee_kind=kind,
                                          access=access, created_at=created_at, created_by=actor.id))
        return {"object": object_api_name, "record_id": record_id, "grantee_id": grantee_id, "grantee_kind": kind, "access": access,
                "created_at": created_at, "created_by": actor.id}

    def unshare_record(self, actor: Actor, object_api_name: str, record_id: Any, grantee_id: Any) -> None:
        grantee_id = parse_id(grantee_id, "grantee_id")
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
        user_id = parse_id(user_id, "user_id")
        if access not in SHARE_ACCESS:
            raise invalid("access", "must be read or edit")
        if not isinstance(team_role, str) or len(team_role) > 255:
            raise invalid("team_role", "must be text of at most 255 characters")
        t = store.team_members
        details = {"object": object_api_name, "record_id": str(record_id), "user_id": user_id, "access": access, "team_role": team_role}
        with self._change(actor, "team.add", f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            self._live_user(user_id, conn)
            conn.execute(delete(t).where(t.c.object_api_name == object_api_name, t.c.record_id == record_id, t.c.user_id == user_id))
            created_at = utc_now()
            conn.execute(insert(t).values(object_api_name=object_api_name, record_id=record_id, user_id=user_id, access=access,
                                          team_role=team_role, created_at=created_at, created_by=actor.id))
        return {"object": object_api_name, "record_id": record_id, "user_id": user_id, "access": access, "team_role": team_role,
                "created_at": created_at, "created_by": actor.id}

    def remove_team_member(self, actor: Actor, object_api_name: str, record_id: Any, user_id: Any) -> None:
        user_id = parse_id(user_id, "user_id")
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
            raise invalid("object", f"there is no object named '{object_api_name}'", "UNKNOWN_OBJECT")
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
