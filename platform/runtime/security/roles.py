"""Roles, their grants on objects and fields, and the memberships that give them to users in units."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)

from ...metadata.actors import Actor
from ...metadata.definitions import ObjectDef
from ...metadata.errors import (
    FieldError,
    Forbidden,
    InUse,
    NotFound,
    ValidationFailed,
)
from ...metadata.names import API_NAME
from ...metadata.store import layouts as layout_table
from . import store
from .changes import (
    ADMINISTRATOR,
    SecurityBase,
    invalid,
    parse_id,
    utc_now,
)
from .grants import ACTIONS, FIELD_ACCESS, SCOPES


class Roles(SecurityBase):
    def create_role(self, actor: Actor, name: Any, label: Any, description: str = "", administrator: bool = False) -> dict[str, Any]:
        self._require_admin(actor)
        errors = []
        if not isinstance(name, str) or not API_NAME.fullmatch(name):
            errors.append(FieldError("INVALID_NAME", "name", "must start with a lowercase letter and hold lowercase letters, digits and underscores"))
        if not isinstance(label, str) or not label.strip() or len(label) > 255:
            errors.append(FieldError("INVALID_VALUE", "label", "must be 1 to 255 characters"))
        if errors:
            raise ValidationFailed.of(errors)
        now = utc_now()
        with self._change(actor, "role.create", f"role:{name}", {"label": label, "administrator": bool(administrator)}, policy=True) as change:
            conn = change.conn
            if conn.execute(select(store.roles.c.name).where(store.roles.c.name == name)).first() is not None:
                raise invalid("name", f"a role named '{name}' already exists", "DUPLICATE_VALUE")
            conn.execute(insert(store.roles).values(name=name, label=label.strip(), description=description or "",
                                                    administrator=bool(administrator), created_at=now, updated_at=now))
        return self.role(actor, name)

    def update_role(self, actor: Actor, name: str, *, label: str | None = None, description: str | None = None,
                    administrator: bool | None = None) -> dict[str, Any]:
        self._require_admin(actor)
        changes: dict[str, Any] = {}
        if label is not None:
            if not isinstance(label, str) or not label.strip() or len(label) > 255:
                raise invalid("label", "must be 1 to 255 characters")
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
            conn.execute(update(store.roles).where(store.roles.c.name == name).values(**changes, updated_at=utc_now()))
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
            conn.execute(select(store.roles.c.name).where(store.roles.c.name == name).with_for_update())
            naming = [f"{row.object_api_name}.{row.api_name}" for row in conn.execute(
                select(layout_table.c.object_api_name, layout_table.c.api_name).where(layout_table.c.role == name)
                .order_by(layout_table.c.object_api_name, layout_table.c.api_name))]
            if naming:
                raise InUse(f"The layout(s) {', '.join(naming)} name the role '{name}'; change or delete them first.",
                            field="name", layouts=naming)
            for grants in (store.object_grants, store.field_grants):
                conn.execute(delete(grants).where(grants.c.role_name == name))
            conn.execute(delete(store.roles).where(store.roles.c.name == name))

    def set_object_grant(self, actor: Actor, role: str, object_api_name: str, actions: Any, read_scope: Any = "own",
                         write_scope: Any = "own", business_types: Any = None) -> dict[str, Any]:
        """What ``role`` may do with records of an object (``*``: every object without its own grant);
        with ``business_types``, only with the records of those business types of the object
        (``None`` or empty: of every type)."""
        self._require_admin(actor)
        errors = []
        obj = self._catalog().objects.get(object_api_name)
        if object_api_name != "*" and obj is None:
            errors.append(FieldError("UNKNOWN_OBJECT", "object", f"there is no object named '{object_api_name}'"))
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            errors.append(FieldError("INVALID_TYPE", "actions", "must be a list of actions"))
        else:
            errors.extend(FieldError("INVALID_VALUE", f"actions.{i}", f"must be one of {', '.join(ACTIONS)}")
                          for i, a in enumerate(actions) if a not in ACTIONS)
        for field, scope in (("read_scope", read_scope), ("write_scope", write_scope)):
            if scope not in SCOPES:
                errors.append(FieldError("INVALID_VALUE", field, f"must be one of {', '.join(SCOPES)}"))
        errors.extend(self._business_type_problems(object_api_name, obj, business_types))
        if errors:
            raise ValidationFailed.of(errors)
        actions = [a for a in ACTIONS if a in actions]
        kinds = store.business_types_text(business_types or ())
        g = store.object_grants
        details = {"object": object_api_name, "actions": actions, "read_scope": read_scope, "write_scope": write_scope}
        if kinds is not None:
            details["business_types"] = store.business_types_list(kinds)
        with self._change(actor, "grant.object", f"role:{role}", details, policy=True) as change:
            conn = change.conn
            self._role_exists(conn, role)
            conn.execute(delete(g).where(g.c.role_name == role, g.c.object_api_name == object_api_name))
            if actions:
                conn.execute(insert(g).values(role_name=role, object_api_name=object_api_name, actions=actions,
                                              read_scope=read_scope, write_scope=write_scope, business_types=kinds))
        return self.role(actor, role)

    @staticmethod
    def _business_type_problems(object_api_name: str, obj: ObjectDef | None, business_types: Any) -> list[FieldError]:
        if business_types is None:
            return []
        if not isinstance(business_types, (list, tuple)) or not all(isinstance(k, str) for k in business_types):
            return [FieldError("INVALID_TYPE", "business_types", "must be a list of business type api names")]
        if not business_types:
            return []
        if object_api_name == "*":
            return [FieldError("INVALID_VALUE", "business_types",
                               "a grant on * covers every object and cannot be limited to business types; "
                               "limit the grants of single objects instead")]
        if obj is None:
            return []
        known = ", ".join(k.api_name for k in obj.business_types)
        hint = f"its business types are {known}" if known else "it has no business types"
        return [FieldError("UNKNOWN_BUSINESS_TYPE", f"business_types.{i}",
                           f"'{object_api_name}' has no business type named '{kind}' ({hint})")
                for i, kind in enumerate(business_types) if obj.business_type(kind) is None]

    def set_field_grant(self, actor: Actor, role: str, object_api_name: str, field_api_name: str, access: Any) -> dict[str, Any]:
        """``hidden``, ``read`` (read-only) or ``edit`` (the default: no restriction)."""
        self._require_admin(actor)
        obj = self._catalog().objects.get(object_api_name)
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
        self._require_admin(actor)
        with self._connection() as conn:
            roles = [dict(r) for r in conn.execute(select(store.roles).order_by(store.roles.c.name)).mappings()]
            objects = conn.execute(select(store.object_grants).order_by(store.object_grants.c.object_api_name)).mappings().all()
            fields = conn.execute(select(store.field_grants).order_by(store.field_grants.c.object_api_name,
                                                                       store.field_grants.c.field_api_name)).mappings().all()
        for role in roles:
            role["objects"] = [{"object": g["object_api_name"], "actions": list(g["actions"]), "read_scope": g["read_scope"],
                                "write_scope": g["write_scope"], "business_types": store.business_types_list(g["business_types"])}
                               for g in objects if g["role_name"] == role["name"]]
            role["fields"] = [{"object": g["object_api_name"], "field": g["field_api_name"], "access": g["access"]}
                              for g in fields if g["role_name"] == role["name"]]
        return roles

    def add_membership(self, actor: Actor, user_id: Any, unit_id: Any, role: str) -> dict[str, Any]:
        self._require_admin(actor)
        user_id, unit_id = parse_id(user_id, "user_id"), parse_id(unit_id, "unit_id")
        m = store.memberships
        details = {"user_id": user_id, "unit_id": unit_id, "role": role}
        with self._change(actor, "membership.add", f"user:{user_id}", details, policy=True) as change:
            conn = change.conn
            self._live_user(user_id, conn)
            self._unit_path(conn, unit_id, "unit_id")
            self._role_exists(conn, role)
            created_at = conn.execute(select(m.c.created_at).where(m.c.user_id == user_id, m.c.unit_id == unit_id, m.c.role_name == role)).scalar()
            if created_at is None:
                created_at = utc_now()
                conn.execute(insert(m).values(user_id=user_id, unit_id=unit_id, role_name=role, created_at=created_at))
        return {"user_id": user_id, "unit_id": unit_id, "role": role, "created_at": created_at}

    def remove_membership(self, actor: Actor, user_id: Any, unit_id: Any, role: str) -> None:
        self._require_admin(actor)
        user_id, unit_id = parse_id(user_id, "user_id"), parse_id(unit_id, "unit_id")
        m = store.memberships
        details = {"user_id": user_id, "unit_id": unit_id, "role": role}
        with self._change(actor, "membership.remove", f"user:{user_id}", details, policy=True) as change:
            conn = change.conn
            removed = conn.execute(delete(m).where(m.c.user_id == user_id, m.c.unit_id == unit_id, m.c.role_name == role)).rowcount
            if not removed:
                raise NotFound("The user holds no such role in that unit.", field="role")

    def memberships(self, actor: Actor, user_id: Any = None, unit_id: Any = None) -> list[dict[str, Any]]:
        if user_id is None or parse_id(user_id, "user_id") != actor.id:
            self._require_admin(actor)
        m = store.memberships
        query = select(m.c.user_id, m.c.unit_id, m.c.role_name, m.c.created_at).order_by(m.c.user_id, m.c.created_at, m.c.unit_id, m.c.role_name)
        if user_id is not None:
            query = query.where(m.c.user_id == parse_id(user_id, "user_id"))
        if unit_id is not None:
            query = query.where(m.c.unit_id == parse_id(unit_id, "unit_id"))
        with self._connection() as conn:
            return [{"user_id": str(r.user_id), "unit_id": str(r.unit_id), "role": r.role_name, "created_at": r.created_at}
                    for r in conn.execute(query)]
