"""Record shares (with a user, or a unit and everything below it) and record teams."""

from __future__ import annotations

import uuid
from typing import Any, Callable

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
        details = {"object": object_api_name, "record_id": str(record_id), "grantee_id": grantee_id, "access": access}
        row = self._put_on_record(actor, "record.share", store.record_shares, "grantee_id", object_api_name, record_id, details,
                                  lambda conn: {"grantee_kind": self._grantee_kind(conn, grantee_id), "access": access})
        return {key: row[key] for key in ("object", "record_id", "grantee_id", "grantee_kind", "access", "created_at", "created_by")}

    def unshare_record(self, actor: Actor, object_api_name: str, record_id: Any, grantee_id: Any) -> None:
        grantee_id = parse_id(grantee_id, "grantee_id")
        details = {"object": object_api_name, "record_id": str(record_id), "grantee_id": grantee_id}
        self._take_off_record(actor, "record.unshare", store.record_shares, "grantee_id", object_api_name, record_id, details,
                              "The record is not shared with that user or unit.")

    def add_team_member(self, actor: Actor, object_api_name: str, record_id: Any, user_id: Any, access: Any = "read",
                        team_role: str = "") -> dict[str, Any]:
        user_id = parse_id(user_id, "user_id")
        if access not in SHARE_ACCESS:
            raise invalid("access", "must be read or edit")
        if not isinstance(team_role, str) or len(team_role) > 255:
            raise invalid("team_role", "must be text of at most 255 characters")
        details = {"object": object_api_name, "record_id": str(record_id), "user_id": user_id, "access": access, "team_role": team_role}

        def member(conn: Connection) -> dict[str, Any]:
            self._live_user(user_id, conn)
            return {"access": access, "team_role": team_role}

        row = self._put_on_record(actor, "team.add", store.team_members, "user_id", object_api_name, record_id, details, member)
        return {key: row[key] for key in ("object", "record_id", "user_id", "access", "team_role", "created_at", "created_by")}

    def remove_team_member(self, actor: Actor, object_api_name: str, record_id: Any, user_id: Any) -> None:
        user_id = parse_id(user_id, "user_id")
        details = {"object": object_api_name, "record_id": str(record_id), "user_id": user_id}
        self._take_off_record(actor, "team.remove", store.team_members, "user_id", object_api_name, record_id, details,
                              "That user is not on the record's team.")

    def _put_on_record(self, actor: Actor, action: str, table, who: str, object_api_name: str, record_id: Any,
                       details: dict[str, Any], values: Callable[[Connection], dict[str, Any]]) -> dict[str, Any]:
        """Give ``details[who]`` a place on a record the actor may edit (a share, a team seat),
        replacing the one they had; the row written, with ``object``."""
        with self._change(actor, action, f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            row = {"object_api_name": object_api_name, "record_id": record_id, who: details[who], **values(conn),
                   "created_at": utc_now(), "created_by": actor.id}
            conn.execute(delete(table).where(table.c.object_api_name == object_api_name, table.c.record_id == record_id,
                                             table.c[who] == details[who]))
            conn.execute(insert(table).values(**row))
        return {"object": object_api_name, **row}

    def _take_off_record(self, actor: Actor, action: str, table, who: str, object_api_name: str, record_id: Any,
                         details: dict[str, Any], missing: str) -> None:
        with self._change(actor, action, f"{object_api_name}:{record_id}", details, policy=False) as change:
            conn = change.conn
            record_id = self._editable_record(conn, actor, object_api_name, record_id)
            if not conn.execute(delete(table).where(table.c.object_api_name == object_api_name, table.c.record_id == record_id,
                                                    table.c[who] == details[who])).rowcount:
                raise NotFound(missing, field=who)

    def sharing(self, actor: Actor, object_api_name: str, record_id: Any) -> dict[str, list[dict[str, Any]]]:
        """The record's shares and team, for anyone who may read the record."""
        with self._connection() as conn:
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
        catalog = self._catalog()
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
