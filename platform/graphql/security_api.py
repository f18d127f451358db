"""The security admin API: the signed-in user, the org tree, users, roles and their permissions,
memberships, record shares and teams, API tokens and the security audit log.

Each field calls the security service (``runtime.security``), so every check, the transaction,
the audit entry and the policy version are the same as from any other caller; a change of roles,
grants, memberships or the tree applies from the next request on, in every process. Service
errors keep their code, and their field paths name the GraphQL arguments (``input.parentId``,
``readScope``).

Most of it is fixed (graphene, like the metadata API). The fields that return records of the
system objects -- ``me``, ``memberships``, ``createOrgUnit``, ``moveOrgUnit``, ``createUser``,
``addMembership`` -- return the generated ``OrgUnit`` and ``User`` types (custom fields and
relations included), so they are built with each schema by :class:`RecordLinkedFields`.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import graphene

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLString,
    get_named_type,
)

from ..metadata.actors import Actor
from ..metadata.catalog import Catalog
from ..metadata.errors import FieldError, Forbidden, LowcodeError, ValidationFailed
from ..metadata.names import camel_case
from ..runtime.reading import Selection
from ..runtime.security.grants import ACTIONS, FIELD_ACCESS, SCOPES, SHARE_ACCESS
from .inputs import graphql_path
from .planning import Planner
from .record_types import RELATED, read_value
from .scalars import JSON, DateTime

RecordAction = graphene.Enum("RecordAction", [(a.upper(), a) for a in ACTIONS],
                             description="What a role may do with the records of an object.")
DataScope = graphene.Enum("DataScope", [(s.upper(), s) for s in SCOPES], description=(
    "The records an action reaches: OWN (the user's own), UNIT (and those of the membership's unit), "
    "UNIT_AND_BELOW (and of every unit below it) or ALL."))
FieldAccessLevel = graphene.Enum("FieldAccessLevel", [(a.upper(), a) for a in FIELD_ACCESS],
                                 description="HIDDEN (never returned), READ (read-only) or EDIT (no restriction).")
ShareAccess = graphene.Enum("ShareAccess", [(a.upper(), a) for a in SHARE_ACCESS],
                            description="READ (see the record) or EDIT (see and change it).")


class GranteeKind(graphene.Enum):
    """Whom a record is shared with: a user, or an org unit (its members and everyone below it)."""

    USER = "user"
    UNIT = "unit"


class TokenKind(graphene.Enum):
    """API: issued by name for scripts and integrations; SESSION: from signing in."""

    API = "api"
    SESSION = "session"


# -- output types ---------------------------------------------------------------------------
class ObjectPermission(graphene.ObjectType):
    object = graphene.String(required=True, description="The object's api name; `*`: every object without its own permission.")
    actions = graphene.List(graphene.NonNull(RecordAction), required=True)
    read_scope = graphene.Field(DataScope, required=True, description="The records READ and EXPORT reach.")
    write_scope = graphene.Field(DataScope, required=True, description="The records the other actions reach.")
    business_types = graphene.List(graphene.NonNull(graphene.String), required=True, description=(
        "The api names of the object's business types the permission is limited to; empty: records of every type."))


class FieldPermission(graphene.ObjectType):
    object = graphene.String(required=True)
    field = graphene.String(required=True, description="The field's api name.")
    access = graphene.Field(FieldAccessLevel, required=True)


class Role(graphene.ObjectType):
    """What the holders of a role may do; a user holds roles through memberships of org units."""

    name = graphene.String(required=True)
    label = graphene.String(required=True)
    description = graphene.String(required=True)
    administrator = graphene.Boolean(required=True, description="Every action on every record and field, metadata and security.")
    created_at = graphene.Field(DateTime, required=True)
    updated_at = graphene.Field(DateTime, required=True)
    object_permissions = graphene.List(graphene.NonNull(ObjectPermission), required=True)
    field_permissions = graphene.List(graphene.NonNull(FieldPermission), required=True,
                                      description="Fields restricted below EDIT.")

    @staticmethod
    def resolve_object_permissions(role, _info):
        return role["objects"]

    @staticmethod
    def resolve_field_permissions(role, _info):
        return role["fields"]


class ApiToken(graphene.ObjectType):
    """A token as listed: never the token itself, only its hint."""

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    kind = graphene.Field(TokenKind, required=True)
    hint = graphene.String(required=True, description="The token's first characters, to recognise it.")
    created_at = graphene.Field(DateTime, required=True)
    expires_at = graphene.Field(DateTime)
    revoked_at = graphene.Field(DateTime)
    last_used_at = graphene.Field(DateTime, description="Refreshed at most once a minute.")


class IssuedApiToken(graphene.ObjectType):
    """A new API token: ``token`` is shown here once and stored only as a digest."""

    id = graphene.ID(required=True)
    token = graphene.String(required=True)
    name = graphene.String(required=True)
    kind = graphene.Field(TokenKind, required=True)
    user_id = graphene.ID(required=True)
    expires_at = graphene.Field(DateTime)


class RecordShare(graphene.ObjectType):
    object = graphene.String(required=True)
    record_id = graphene.ID(required=True)
    grantee_id = graphene.ID(required=True)
    grantee_kind = graphene.Field(GranteeKind, required=True)
    access = graphene.Field(ShareAccess, required=True)
    created_at = graphene.Field(DateTime)
    created_by_id = graphene.ID()

    @staticmethod
    def resolve_created_by_id(share, _info):
        return share.get("created_by")


class RecordTeamMember(graphene.ObjectType):
    object = graphene.String(required=True)
    record_id = graphene.ID(required=True)
    user_id = graphene.ID(required=True)
    access = graphene.Field(ShareAccess, required=True)
    team_role = graphene.String(required=True)
    created_at = graphene.Field(DateTime)
    created_by_id = graphene.ID()

    @staticmethod
    def resolve_created_by_id(member, _info):
        return member.get("created_by")


class RecordSharing(graphene.ObjectType):
    """Whom a record is shared with, and its team."""

    shares = graphene.List(graphene.NonNull(RecordShare), required=True)
    team = graphene.List(graphene.NonNull(RecordTeamMember), required=True)


class SecurityAuditEntry(graphene.ObjectType):
    id = graphene.ID(required=True)
    at = graphene.Field(DateTime, required=True)
    actor_id = graphene.ID(description="Null: the platform itself (the service token).")
    action = graphene.String(required=True, description="unit.create, role.update, grant.object, membership.add, ...")
    target = graphene.String(required=True, description="role:<name>, user:<id>, org_unit:<id>, <object>:<record id>, ...")
    details = JSON()


# -- input types ----------------------------------------------------------------------------
class CreateOrgUnitInput(graphene.InputObjectType):
    name = graphene.String(required=True)
    parent_id = graphene.ID(description="Omitted: a root unit.")


class CreateUserInput(graphene.InputObjectType):
    """The user's own fields; custom fields are set afterwards with ``updateUser``."""

    username = graphene.String(required=True)
    email = graphene.String()
    full_name = graphene.String()
    password = graphene.String(description="Omitted: the user cannot sign in until one is set.")


class CreateRoleInput(graphene.InputObjectType):
    name = graphene.String(required=True, description="An api name (lowercase letters, digits, underscores); never changes.")
    label = graphene.String(required=True)
    description = graphene.String()
    administrator = graphene.Boolean()


class UpdateRoleInput(graphene.InputObjectType):
    label = graphene.String()
    description = graphene.String()
    administrator = graphene.Boolean()


INPUT_TYPES = [CreateOrgUnitInput, CreateUserInput]
"""Inputs only the per-schema fields use; the fixed schema must still hold them."""


# -- helpers --------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """Enum members as their values (lists too)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def _camel_path(path: str) -> str:
    return ".".join(s if s.isdigit() else camel_case(s) for s in path.split(".") if s)


def _argument_path(path: str | None, catalog: Catalog, inputs: frozenset[str], renames: Mapping[str, str],
                   record: str | None) -> str | None:
    """A service error path as the GraphQL argument's: ``read_scope`` -> ``readScope``, a field of
    the ``input`` object -> ``input.<name>``, a record value of ``record`` -> its GraphQL name."""
    if not path:
        return path
    head, _, rest = path.partition(".")
    if head in renames:
        return renames[head] + (f".{_camel_path(rest)}" if rest else "")
    if record is not None:
        return graphql_path(catalog, catalog.object(record), path, "input")
    return f"input.{_camel_path(path)}" if head in inputs else _camel_path(path)


def _guard(info: GraphQLResolveInfo, call: Callable[[], Any], *, inputs: tuple[str, ...] = (),
           renames: Mapping[str, str] | None = None, record: str | None = None) -> Any:
    """Run a service call; its errors' paths name the GraphQL arguments (``inputs``: the service
    names given inside ``input``; ``renames``: service names whose argument is named otherwise;
    ``record``: the object whose record values ``input`` holds)."""
    try:
        return call()
    except LowcodeError as error:
        catalog, given, renamed = info.context.catalog, frozenset(inputs), renames or {}
        error.errors = [FieldError(e.code, _argument_path(e.field, catalog, given, renamed, record), e.message, e.ctx)
                        for e in error.errors]
        error.field = _argument_path(error.field, catalog, given, renamed, record)
        raise


def _require_admin(actor: Actor) -> None:
    if actor.is_system or actor.access is not None and actor.access.administrator:
        return
    raise Forbidden("Only administrators manage users, the org tree, roles and grants.")


def _instant(value: str | None, argument: str) -> datetime | None:
    """An ISO 8601 instant with an offset, in UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationFailed.of([FieldError("INVALID_VALUE", argument, "must be an ISO 8601 instant with an offset, such as 2026-03-01T09:30:00Z")])
    return parsed.astimezone(timezone.utc)


def _related(parent: dict[str, Any], info: GraphQLResolveInfo) -> Any:
    """A record read for the response key (aliases included) by the resolver of the list above."""
    return parent.get(RELATED + info.path.key)


def _full_name(me: dict[str, Any], _info: GraphQLResolveInfo) -> str | None:
    """The caller's full name; left out of their record when a field permission hides it."""
    if "full_name" not in me:
        raise Forbidden("You may not read the field 'fullName' of User records.", field="fullName", object="user")
    return me["full_name"]


def _on_record(entry: dict[str, Any], object: str, record_id: str) -> dict[str, Any]:
    return {**entry, "object": object, "record_id": record_id}


# -- the fixed part -------------------------------------------------------------------------
class SecurityQuery(graphene.ObjectType):
    roles = graphene.List(graphene.NonNull(Role), required=True, description="Administrators only.")
    role = graphene.Field(Role, required=True, args={"name": graphene.String(required=True)}, description="Administrators only.")
    api_tokens = graphene.List(graphene.NonNull(ApiToken), required=True, user_id=graphene.ID(
        description="Omitted: your own; another user's: administrators only."))
    record_sharing = graphene.Field(RecordSharing, required=True, object=graphene.String(required=True),
                                    record_id=graphene.ID(required=True), description="For anyone who may read the record.")
    security_audit = graphene.List(graphene.NonNull(SecurityAuditEntry), required=True,
                                   limit=graphene.Int(default_value=100, description="1 to 1000, newest first."),
                                   target=graphene.String(description="Only entries about this target (role:rep, user:<id>)."),
                                   description="Administrators only.")

    @staticmethod
    def resolve_roles(_root, info):
        context = info.context
        _require_admin(context.actor)
        return context.security.roles(context.actor)

    @staticmethod
    def resolve_role(_root, info, name):
        context = info.context
        _require_admin(context.actor)
        return _guard(info, lambda: context.security.role(context.actor, name))

    @staticmethod
    def resolve_api_tokens(_root, info, user_id=None):
        context = info.context
        return _guard(info, lambda: context.security.tokens(context.actor, user_id))

    @staticmethod
    def resolve_record_sharing(_root, info, object, record_id):
        context = info.context
        found = _guard(info, lambda: context.security.sharing(context.actor, object, record_id))
        record_id = str(uuid.UUID(str(record_id)))
        return {"shares": [_on_record(s, object, record_id) for s in found["shares"]],
                "team": [_on_record(t, object, record_id) for t in found["team"]]}

    @staticmethod
    def resolve_security_audit(_root, info, limit=100, target=None):
        context = info.context
        return _guard(info, lambda: context.security.audit(context.actor, limit, target))


def _record_arguments(**extra) -> dict:
    return {"object": graphene.String(required=True, description="The object's api name."),
            "record_id": graphene.ID(required=True), **extra}


class SecurityMutation(graphene.ObjectType):
    delete_org_unit = graphene.ID(required=True, id=graphene.ID(required=True),
                                  description="Only a unit without sub-units and memberships (else IN_USE).")
    set_password = graphene.Boolean(
        required=True, user_id=graphene.ID(required=True), password=graphene.String(required=True),
        current_password=graphene.String(description="Required when changing your own (non-administrators)."),
        description="Administrators set anyone's; users change their own. Ends the user's sign-in sessions.")
    delete_user = graphene.ID(required=True, id=graphene.ID(required=True),
                              description="To the recycle bin: their tokens stop working at once, their memberships go.")
    create_role = graphene.Field(Role, required=True, input=CreateRoleInput(required=True))
    update_role = graphene.Field(Role, required=True, args={"name": graphene.String(required=True)}, input=UpdateRoleInput(required=True))
    delete_role = graphene.String(required=True, args={"name": graphene.String(required=True)},
                                  description="Only a role no membership holds (else IN_USE).")
    set_object_permission = graphene.Field(
        Role, required=True, role=graphene.String(required=True),
        object=graphene.String(required=True, description="An object's api name, or `*` for every object without its own."),
        actions=graphene.List(graphene.NonNull(RecordAction), required=True, description="Empty: remove the permission."),
        read_scope=DataScope(required=True), write_scope=DataScope(required=True),
        business_types=graphene.List(graphene.NonNull(graphene.String), description=(
            "Only the records of these business types of the object (api names); omitted, null or empty: of every type. "
            "A permission on `*` cannot be limited.")))
    set_field_permission = graphene.Field(
        Role, required=True, role=graphene.String(required=True), object=graphene.String(required=True),
        field=graphene.String(required=True, description="The field's api name."), access=FieldAccessLevel(required=True))
    remove_membership = graphene.Boolean(required=True, user_id=graphene.ID(required=True), unit_id=graphene.ID(required=True),
                                         role=graphene.String(required=True))
    share_record = graphene.Field(RecordShare, required=True, **_record_arguments(
        grantee_id=graphene.ID(required=True, description="A user or an org unit."),
        access=ShareAccess(default_value="read")), description="Takes the right to edit the record.")
    unshare_record = graphene.Boolean(required=True, **_record_arguments(grantee_id=graphene.ID(required=True)))
    add_team_member = graphene.Field(RecordTeamMember, required=True, **_record_arguments(
        user_id=graphene.ID(required=True), access=ShareAccess(default_value="read"),
        team_role=graphene.String(default_value="", description="Free text: account manager, ...")),
        description="Takes the right to edit the record.")
    remove_team_member = graphene.Boolean(required=True, **_record_arguments(user_id=graphene.ID(required=True)))
    create_api_token = graphene.Field(
        IssuedApiToken, required=True, args={"name": graphene.String(required=True)}, expires_at=DateTime(),
        user_id=graphene.ID(description="Omitted: for you; another user's: administrators only."))
    revoke_api_token = graphene.ID(required=True, id=graphene.ID(required=True))

    @staticmethod
    def resolve_delete_org_unit(_root, info, id):
        context = info.context
        _guard(info, lambda: context.security.delete_unit(context.actor, id))
        return id

    @staticmethod
    def resolve_set_password(_root, info, user_id, password, current_password=None):
        context = info.context
        _guard(info, lambda: context.security.set_password(context.actor, user_id, password, current_password))
        return True

    @staticmethod
    def resolve_delete_user(_root, info, id):
        context = info.context
        _guard(info, lambda: context.security.delete_user(context.actor, id), renames={"user_id": "id"})
        return id

    @staticmethod
    def resolve_create_role(_root, info, input):
        context = info.context
        return _guard(info, lambda: context.security.create_role(
            context.actor, input.get("name"), input.get("label"), input.get("description") or "", bool(input.get("administrator"))),
            inputs=("name", "label", "description", "administrator"))

    @staticmethod
    def resolve_update_role(_root, info, name, input):
        context = info.context
        return _guard(info, lambda: context.security.update_role(
            context.actor, name, label=input.get("label"), description=input.get("description"),
            administrator=input.get("administrator")), inputs=("label", "description", "administrator"), renames={"role": "name"})

    @staticmethod
    def resolve_delete_role(_root, info, name):
        context = info.context
        _guard(info, lambda: context.security.delete_role(context.actor, name), renames={"role": "name"})
        return name

    @staticmethod
    def resolve_set_object_permission(_root, info, role, object, actions, read_scope, write_scope, business_types=None):
        context = info.context
        return _guard(info, lambda: context.security.set_object_grant(
            context.actor, role, object, _plain(actions), _plain(read_scope), _plain(write_scope), business_types))

    @staticmethod
    def resolve_set_field_permission(_root, info, role, object, field, access):
        context = info.context
        return _guard(info, lambda: context.security.set_field_grant(context.actor, role, object, field, _plain(access)))

    @staticmethod
    def resolve_remove_membership(_root, info, user_id, unit_id, role):
        context = info.context
        _guard(info, lambda: context.security.remove_membership(context.actor, user_id, unit_id, role))
        return True

    @staticmethod
    def resolve_share_record(_root, info, object, record_id, grantee_id, access="read"):
        context = info.context
        security, actor = context.security, context.actor
        return _guard(info, lambda: security.share_record(actor, object, record_id, grantee_id, _plain(access)))

    @staticmethod
    def resolve_unshare_record(_root, info, object, record_id, grantee_id):
        context = info.context
        _guard(info, lambda: context.security.unshare_record(context.actor, object, record_id, grantee_id))
        return True

    @staticmethod
    def resolve_add_team_member(_root, info, object, record_id, user_id, access="read", team_role=""):
        context = info.context
        security, actor = context.security, context.actor
        return _guard(info, lambda: security.add_team_member(actor, object, record_id, user_id, _plain(access), team_role))

    @staticmethod
    def resolve_remove_team_member(_root, info, object, record_id, user_id):
        context = info.context
        _guard(info, lambda: context.security.remove_team_member(context.actor, object, record_id, user_id))
        return True

    @staticmethod
    def resolve_create_api_token(_root, info, name, expires_at=None, user_id=None):
        context = info.context
        return _guard(info, lambda: context.security.issue_token(context.actor, name, _instant(expires_at, "expires_at"), user_id))

    @staticmethod
    def resolve_revoke_api_token(_root, info, id):
        context = info.context
        _guard(info, lambda: context.security.revoke_token(context.actor, id))
        return id


# -- the part built with each schema --------------------------------------------------------
class RecordLinkedFields:
    """Root fields and types of the admin API that return the generated record types of the system
    objects ``user`` and ``org_unit``; their relations and custom fields are read like the record
    API's, planned from the selection (one read per list, whatever its length)."""

    def __init__(self, types: Any, platform: Mapping[str, GraphQLNamedType]):
        self.types = types
        catalog = types.catalog
        self.user = catalog.object("user")
        self.unit = catalog.object("org_unit")
        user_type, unit_type = types.record_type(self.user), types.record_type(self.unit)
        date_time = platform["DateTime"]
        self.platform = platform
        self.membership = GraphQLObjectType("Membership", {
            "userId": GraphQLField(GraphQLNonNull(GraphQLID), resolve=read_value("user_id")),
            "unitId": GraphQLField(GraphQLNonNull(GraphQLID), resolve=read_value("unit_id")),
            "role": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("role"), description="The role's name."),
            "createdAt": GraphQLField(date_time, resolve=read_value("created_at")),
            "user": GraphQLField(user_type, resolve=_related),
            "unit": GraphQLField(unit_type, resolve=_related),
        }, description="A user holds a role in an org unit; the role's scopes count from that unit.")
        memberships = GraphQLNonNull(GraphQLList(GraphQLNonNull(self.membership)))
        self.current_user = GraphQLObjectType("CurrentUser", {
            "id": GraphQLField(GraphQLNonNull(GraphQLID), resolve=read_value("id")),
            "username": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("username")),
            "fullName": GraphQLField(GraphQLString, resolve=_full_name),
            "administrator": GraphQLField(GraphQLNonNull(GraphQLBoolean), resolve=read_value("administrator"),
                                          description="Holds a role that administers (metadata, security, every record)."),
            "memberships": GraphQLField(memberships, resolve=self._own_memberships),
            "user": GraphQLField(GraphQLNonNull(user_type), resolve=self._own_record, description="Your user record (every field you may read)."),
        }, description="The signed-in user.")
        self._memberships_type = memberships

    def query_fields(self) -> dict[str, GraphQLField]:
        return {
            "me": GraphQLField(self.current_user, resolve=self._me,
                               description="The signed-in user; null for the service token, which acts as the platform itself."),
            "memberships": GraphQLField(self._memberships_type, {
                "userId": GraphQLArgument(GraphQLID, description="Your own: anyone; others': administrators only."),
                "unitId": GraphQLArgument(GraphQLID),
            }, resolve=self._memberships, description="Memberships of a user and/or of a unit."),
        }

    def mutation_fields(self) -> dict[str, GraphQLField]:
        unit = GraphQLNonNull(self.types.record_type(self.unit))
        user = GraphQLNonNull(self.types.record_type(self.user))
        required_id = GraphQLArgument(GraphQLNonNull(GraphQLID))
        return {
            "createOrgUnit": GraphQLField(unit, {"input": GraphQLArgument(GraphQLNonNull(self.platform["CreateOrgUnitInput"]))},
                                          resolve=self._create_unit, description="Administrators only."),
            "moveOrgUnit": GraphQLField(unit, {"id": required_id, "parentId": GraphQLArgument(GraphQLID, description="Null: a root unit.")},
                                        resolve=self._move_unit, description="Re-parent a unit with everything below it."),
            "createUser": GraphQLField(user, {"input": GraphQLArgument(GraphQLNonNull(self.platform["CreateUserInput"]))},
                                       resolve=self._create_user, description="Administrators only."),
            "addMembership": GraphQLField(GraphQLNonNull(self.membership), {
                "userId": required_id, "unitId": required_id, "role": GraphQLArgument(GraphQLNonNull(GraphQLString)),
            }, resolve=self._add_membership, description="Administrators only."),
        }

    # -- reading records the selection asks for ------------------------------------------
    def _selection(self, info: GraphQLResolveInfo, obj, rows: int = 1) -> Selection:
        planner = Planner(info, self.types, info.context.limits)
        return _guard(info, lambda: planner.record(obj, get_named_type(info.return_type), info.field_nodes, rows)[0])

    def _written(self, info: GraphQLResolveInfo, obj, selection: Selection, record: dict[str, Any]) -> dict[str, Any]:
        """A record the security service wrote, re-read only when the selection reaches relations."""
        if not (selection.relations or selection.children):
            return record
        context = info.context
        found = _guard(info, lambda: context.records.read_records(context.actor, obj.api_name, [record["id"]], selection))[0]
        return found if found is not None else record

    def _with_records(self, info: GraphQLResolveInfo, memberships: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Memberships with the users and units their selection asks for, one read per relation."""
        context = info.context
        planner = Planner(info, self.types, context.limits)
        for key, nodes in planner.sub_fields(self.membership, info.field_nodes).items():
            name = nodes[0].name.value
            obj = {"user": self.user, "unit": self.unit}.get(name)
            if obj is None or not memberships:
                continue
            record_type = get_named_type(self.membership.fields[name].type)
            selection = _guard(info, lambda: planner.record(obj, record_type, nodes, len(memberships), f"{key}.")[0])
            ids = [m[f"{name}_id"] for m in memberships]
            found = _guard(info, lambda: context.records.read_records(context.actor, obj.api_name, ids, selection))
            for membership, record in zip(memberships, found):
                membership[RELATED + key] = record
        return memberships

    # -- resolvers -----------------------------------------------------------------------
    def _me(self, _root, info: GraphQLResolveInfo):
        context = info.context
        actor = context.actor
        if actor.id is None:
            return None
        record = context.records.read_record(actor, "user", actor.id, Selection(fields=["full_name"]))
        return {**record, "username": actor.name, "administrator": bool(actor.access is not None and actor.access.administrator)}

    def _own_record(self, me: dict[str, Any], info: GraphQLResolveInfo):
        context = info.context
        selection = self._selection(info, self.user)
        return _guard(info, lambda: context.records.read_record(context.actor, "user", me["id"], selection))

    def _own_memberships(self, me: dict[str, Any], info: GraphQLResolveInfo):
        context = info.context
        return self._with_records(info, context.security.memberships(context.actor, user_id=me["id"]))

    def _memberships(self, _root, info: GraphQLResolveInfo, userId=None, unitId=None):
        context = info.context
        return self._with_records(info, _guard(info, lambda: context.security.memberships(context.actor, userId, unitId)))

    def _create_unit(self, _root, info: GraphQLResolveInfo, input):
        context = info.context
        selection = self._selection(info, self.unit)
        unit = _guard(info, lambda: context.security.create_unit(context.actor, input.get("name"), input.get("parent_id")),
                      record=self.unit.api_name)
        return self._written(info, self.unit, selection, unit)

    def _move_unit(self, _root, info: GraphQLResolveInfo, id, parentId=None):
        context = info.context
        selection = self._selection(info, self.unit)
        unit = _guard(info, lambda: context.security.move_unit(context.actor, id, parentId))
        return self._written(info, self.unit, selection, unit)

    def _create_user(self, _root, info: GraphQLResolveInfo, input):
        context = info.context
        selection = self._selection(info, self.user)
        values = {key: value for key, value in input.items() if key != "password"}
        user = _guard(info, lambda: context.security.create_user(context.actor, values, input.get("password")),
                      record=self.user.api_name)
        return self._written(info, self.user, selection, user)

    def _add_membership(self, _root, info: GraphQLResolveInfo, userId, unitId, role):
        context = info.context
        security, actor = context.security, context.actor
        added = _guard(info, lambda: security.add_membership(actor, userId, unitId, role))
        return self._with_records(info, [added])[0]
