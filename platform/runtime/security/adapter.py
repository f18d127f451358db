"""Casbin's ``Adapter`` over the platform's own security tables.

Policy changes are written by :class:`~lowcode.security.service.SecurityService` in the same
transaction as their audit entry and the policy version bump; Casbin only ever loads. The lines:

- ``g, <user id>, <role>, <unit id>``: a membership (the org unit is the domain);
- ``p, <role>, <object>, <action>, <scope>``: a role may ``action`` records of ``object`` within
  ``scope`` (read and export carry the read scope, the other actions the write scope);
- ``p, <role>, <object>/<business type>, <action>, <scope>``: the same, for the records of that
  business type only: a grant limited to types gives one such line per type and action;
- ``p, <role>, <object>.<field>, field, hidden|read``: a field restricted for that role;
- ``p, <role>, *, *, all``: an administrator role.
"""
from __future__ import annotations

from casbin import persist
from sqlalchemy import Connection, select

from . import store
from .grants import typed_object

READ_ACTIONS = ("read", "export")
ADMIN_RULE = ("*", "*", "all")


def policy_lines(conn: Connection) -> list[tuple[str, ...]]:
    """Every policy line, in a stable order."""
    lines: list[tuple[str, ...]] = []
    for role in conn.execute(select(store.roles.c.name, store.roles.c.administrator).order_by(store.roles.c.name)):
        if role.administrator:
            lines.append(("p", role.name, *ADMIN_RULE))
    grants = store.object_grants
    for row in conn.execute(select(grants).order_by(grants.c.role_name, grants.c.object_api_name)):
        kinds = store.business_types_list(row.business_types)
        objects = [typed_object(row.object_api_name, kind) for kind in kinds] if kinds else [row.object_api_name]
        for policy_object in objects:
            for action in row.actions:
                scope = row.read_scope if action in READ_ACTIONS else row.write_scope
                lines.append(("p", row.role_name, policy_object, action, scope))
    fields = store.field_grants
    for row in conn.execute(select(fields).order_by(fields.c.role_name, fields.c.object_api_name, fields.c.field_api_name)):
        lines.append(("p", row.role_name, f"{row.object_api_name}.{row.field_api_name}", "field", row.access))
    m = store.memberships
    for row in conn.execute(select(m.c.user_id, m.c.role_name, m.c.unit_id).order_by(m.c.user_id, m.c.created_at, m.c.unit_id, m.c.role_name)):
        lines.append(("g", str(row.user_id), row.role_name, str(row.unit_id)))
    return lines


class PlatformTablesAdapter(persist.Adapter):
    """Loads the policy from the security tables."""

    def __init__(self, engine):
        self.engine = engine
        self.conn = None
        """The connection of the load in progress (one snapshot with the unit paths), if any."""
        self.loaded_version: int | None = None

    def load_policy(self, model) -> None:
        if self.conn is not None:
            self._load(self.conn, model)
            return
        with self.engine.connect() as conn:
            self._load(conn, model)

    def _load(self, conn, model) -> None:
        self.loaded_version = conn.execute(select(store.policy_version.c.version)).scalar_one()
        for line in policy_lines(conn):
            persist.load_policy_line(", ".join(line), model)

    def save_policy(self, model) -> bool:
        raise ReadOnlyPolicy()

    def add_policy(self, sec, ptype, rule) -> None:
        raise ReadOnlyPolicy()

    def remove_policy(self, sec, ptype, rule) -> None:
        raise ReadOnlyPolicy()

    def remove_filtered_policy(self, sec, ptype, field_index, *field_values) -> None:
        raise ReadOnlyPolicy()


class ReadOnlyPolicy(RuntimeError):
    """Casbin's own policy-writing calls are refused: the security service changes the tables, in
    one transaction with the audit entry and the policy version."""

    def __init__(self):
        super().__init__("Policies are changed through the security service, never saved from Casbin.")
