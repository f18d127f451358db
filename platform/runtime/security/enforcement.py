"""The access policy the record service asks: Casbin's answers turned into SQL.

A user's scope on an object becomes one predicate on the record table: their own records, records
of the units they hold the role in and of the subtrees below those units (one ``IN`` over their
unit ids, taken from the org tree's materialized paths as loaded with the policy), and records
shared with them or their units or whose team they are on. A membership whose grant is limited to
business types reaches only records of those types (``business_type IN (...)`` beside its units);
shares and teams are not limited by type. It is built once per user, object, action and table for
each policy version (type limits are part of the policy). Administrators and the platform itself
pass unfiltered."""
from __future__ import annotations

from sqlalchemy import Table, and_, false, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from ...metadata.actors import Actor
from ...metadata.definitions import ObjectDef
from ...metadata.errors import Forbidden
from ..access import FieldAccess
from . import store
from .grants import MANAGED_ACTIONS, MANAGED_FIELDS, READ_ACTIONS, Scope
from .policies import UNITS, PolicyStore

SHARED_ACTIONS = frozenset({"read", "export", "update"})
"""The actions a record share or a team membership extends (``edit`` access for ``update``)."""

ACTION_WORDS = {"read": "read", "create": "create", "update": "edit", "delete": "delete", "export": "export",
                "transfer": "transfer", "restore": "restore", "reopen": "reopen closed"}


class RolePolicy:
    def __init__(self, policies: PolicyStore):
        self.policies = policies

    def authorize(self, actor: Actor, obj: ObjectDef, action: str) -> None:
        if actor.is_system:
            return
        access = actor.access
        if access is None:
            raise Forbidden("Sign in first: this request carries no user.")
        if action in MANAGED_ACTIONS.get(obj.api_name, ()):
            raise Forbidden(f"{obj.plural_label} are managed through the admin API, not as plain records.", object=obj.api_name)
        if access.administrator or access.on(obj.api_name).allows(action):
            return
        raise Forbidden(f"None of your roles allows you to {ACTION_WORDS.get(action, action)} {obj.label} records.",
                        object=obj.api_name, action=action)

    def row_filter(self, actor: Actor, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        access = actor.access
        if actor.is_system or access is not None and access.administrator:
            return true()
        if access is None:
            return false()
        return access.remember(("rows", obj.api_name, action, table), lambda: self._predicate(access, obj, table, action))

    def _predicate(self, access, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        parts = access.on(obj.api_name).parts(action)
        if not parts:
            return false()
        if parts[0].everything and parts[0].business_types is None:
            return true()
        terms = [self._reach(access, part, table) for part in parts]
        if action in SHARED_ACTIONS:
            levels = ("read", "edit") if action in READ_ACTIONS else ("edit",)
            shares, team = store.record_shares, store.team_members
            terms.append(table.c.id.in_(select(shares.c.record_id).where(
                shares.c.object_api_name == obj.api_name, shares.c.grantee_id.in_(sorted({access.user_id, *access.reach})),
                shares.c.access.in_(levels))))
            terms.append(table.c.id.in_(select(team.c.record_id).where(
                team.c.object_api_name == obj.api_name, team.c.user_id == access.user_id, team.c.access.in_(levels))))
        return or_(*terms)

    def _reach(self, access, part: Scope, table: Table) -> ColumnElement[bool]:
        """The rows of one scope part: own records, its units and subtrees, of its types if limited."""
        kinds = table.c.business_type.in_(sorted(part.business_types)) if part.business_types is not None else None
        if part.everything:
            return kinds
        terms = [table.c.owner_id == access.user_id]
        below = self.policies.units_below(part.subtrees) if part.subtrees else ()
        if below is None:
            reached = or_(*(UNITS.c.path.startswith(path, autoescape=True) for path in part.subtrees))
            terms.append(table.c.org_unit_id.in_(select(UNITS.c.id).where(reached)))
            below = ()
        units = sorted(part.units.union(below))
        if units:
            terms.append(table.c.org_unit_id.in_(units))
        rows = or_(*terms)
        return rows if kinds is None else and_(kinds, rows)

    def field_access(self, actor: Actor, obj: ObjectDef) -> FieldAccess:
        managed = MANAGED_FIELDS.get(obj.api_name, frozenset())
        access = actor.access
        if actor.is_system:
            return FieldAccess()
        if access is None or access.administrator:
            return FieldAccess(read_only=managed)
        granted = access.on(obj.api_name)
        return FieldAccess(hidden=granted.hidden, read_only=granted.read_only)

    def owning_unit(self, actor: Actor, obj: ObjectDef, business_type: str | None = None) -> str | None:
        access = actor.access
        if access is None:
            return None
        return self._home(access, obj, business_type)

    def home_unit(self, user_id: str, obj: ObjectDef, business_type: str | None = None) -> str | None:
        self.policies.reload_if_stale()
        return self._home(self.policies.loaded_access(user_id), obj, business_type)

    @staticmethod
    def _home(access, obj: ObjectDef, business_type: str | None) -> str | None:
        """The unit of the first membership whose role may create ``obj`` records (of that business
        type), else the first."""
        unit = access.on(obj.api_name).create_unit_for(business_type)
        if unit is None and access.memberships:
            return access.memberships[0].unit_id
        return unit
