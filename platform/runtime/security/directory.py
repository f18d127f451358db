"""Users and the org tree: the records the admin API alone creates, moves and deletes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    column,
    delete,
    func,
    insert,
    literal,
    select,
    table,
    update,
)

from ...metadata.actors import Actor
from ...metadata.errors import (
    InUse,
)
from ...metadata.names import table_name
from . import store
from .changes import (
    SecurityBase,
    invalid,
    parse_id,
    utc_now,
)
from .credentials import (
    hash_password,
    password_problem,
)
from .policies import UNITS


class Directory(SecurityBase):
    def create_user(self, actor: Actor, values: dict[str, Any], password: str | None = None) -> dict[str, Any]:
        """A user record (any of the user object's fields) with an optional password."""
        self._require_admin(actor)
        if password is not None and (problem := password_problem(password)):
            raise invalid("password", problem)
        with self._change(actor, "user.create", "user", {"username": (values or {}).get("username")}, policy=False) as change:
            conn = change.conn
            user = self.records.joined(conn).create(self._trusted(actor), "user", values)
            change.target = f"user:{user['id']}"
            if password is not None:
                conn.execute(insert(store.credentials).values(user_id=user["id"], password_hash=hash_password(password), changed_at=utc_now()))
        return user

    def delete_user(self, actor: Actor, user_id: Any) -> None:
        """Move a user to the recycle bin: their tokens stop working at once, their memberships go."""
        self._require_admin(actor)
        user_id = parse_id(user_id, "user_id")
        with self._change(actor, "user.delete", f"user:{user_id}", {}, policy=True) as change:
            conn = change.conn
            self.records.joined(conn).delete(self._trusted(actor), "user", user_id)
            conn.execute(update(store.tokens).where(store.tokens.c.user_id == user_id, store.tokens.c.revoked_at.is_(None)).values(revoked_at=utc_now()))
            conn.execute(delete(store.memberships).where(store.memberships.c.user_id == user_id))

    def create_unit(self, actor: Actor, name: Any, parent_id: Any = None, values: dict[str, Any] | None = None) -> dict[str, Any]:
        self._require_admin(actor)
        parent = parse_id(parent_id, "parent_id") if parent_id is not None else None
        with self._change(actor, "unit.create", "org_unit", {"name": name, "parent_id": parent}, policy=True) as change:
            conn = change.conn
            parent_path = self._unit_path(conn, parent, "parent_id", lock=True) if parent else "/"
            records = self.records.joined(conn)
            unit = records.create(self._trusted(actor), "org_unit", {**(values or {}), "name": name, "parent": parent})
            change.target = f"org_unit:{unit['id']}"
            return records.update(self._trusted(actor), "org_unit", unit["id"], {"path": f"{parent_path}{unit['id']}/"})

    def move_unit(self, actor: Actor, unit_id: Any, parent_id: Any) -> dict[str, Any]:
        """Re-parent a unit (``parent_id`` ``None``: make it a root); its subtree's paths follow in
        one statement, in the same transaction."""
        self._require_admin(actor)
        unit_id = parse_id(unit_id, "id")
        parent = parse_id(parent_id, "parent_id") if parent_id is not None else None
        with self._change(actor, "unit.move", f"org_unit:{unit_id}", {"parent_id": parent}, policy=True) as change:
            conn = change.conn
            old_path = self._unit_path(conn, unit_id, "id", lock=True)
            new_parent_path = self._unit_path(conn, parent, "parent_id") if parent else "/"
            if new_parent_path.startswith(old_path):
                raise invalid("parent_id", "is the unit itself or one of its sub-units; a unit cannot move below itself", "CYCLE")
            new_path = f"{new_parent_path}{unit_id}/"
            records = self.records.joined(conn)
            moved = records.update(self._trusted(actor), "org_unit", unit_id, {"parent": parent, "path": new_path})
            units = table(table_name("org_unit"), column("path"), column("version"), column("updated_at"), column("updated_by"))
            conn.execute(update(units).where(units.c.path.startswith(old_path, autoescape=True), units.c.path != new_path).values(
                path=literal(new_path).concat(func.substr(units.c.path, len(old_path) + 1)),
                version=units.c.version + 1, updated_at=utc_now(), updated_by=actor.id))
            return moved

    def delete_unit(self, actor: Actor, unit_id: Any) -> None:
        self._require_admin(actor)
        unit_id = parse_id(unit_id, "id")
        with self._change(actor, "unit.delete", f"org_unit:{unit_id}", {}, policy=True) as change:
            conn = change.conn
            path = self._unit_path(conn, unit_id, "id", lock=True)
            below = conn.execute(select(func.count()).select_from(UNITS).where(
                UNITS.c.path.startswith(path, autoescape=True), UNITS.c.path != path, UNITS.c.deleted_at.is_(None))).scalar_one()
            members = conn.execute(select(func.count()).select_from(store.memberships).where(store.memberships.c.unit_id == unit_id)).scalar_one()
            if below or members:
                raise InUse(f"The unit still has {below} sub-unit(s) and {members} membership(s); move or remove them first.",
                            sub_units=below, memberships=members)
            self.records.joined(conn).delete(self._trusted(actor), "org_unit", unit_id)
