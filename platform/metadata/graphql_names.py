"""Every GraphQL name the generated API derives from metadata, and the collisions among them.

The schema builder names types, root fields and record fields only through these functions, and
the metadata service refuses a change whose names would collide (graphene and graphql-core would
otherwise merge or reject two types of one name long after the change was saved).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from .definitions import FieldDef, ObjectDef
from .errors import FieldError
from .names import camel_case, pascal_case

TYPE_SUFFIXES = (
    "", "Connection", "Edge", "Filter", "OrderBy", "GroupField", "Group", "GroupKey", "Sums", "Averages",
    "Extremes", "CreateInput", "UpdateInput", "UpdateItem",
)
"""The types generated for each object: ``Opportunity``, ``OpportunityConnection``, ..."""

DATE_GRANULARITIES = ("day", "month", "quarter", "year")

PLATFORM_TYPE_NAMES = frozenset("""
    Query Mutation String Int Float Boolean ID Decimal Date DateTime JSON Geolocation GeolocationInput
    PageInfo StringFilter LongTextFilter IntFilter DecimalFilter DateFilter DateTimeFilter BooleanFilter
    IDFilter NullFilter ObjectDefinition FieldDefinition FieldTypeName FieldTypeInfo FieldOptions FieldOptionsInput
    PicklistValue PicklistValueInput OnDelete ObjectInput ObjectUpdateInput FieldInput FieldUpdateInput
    MetadataChange
    CurrentUser Membership Role ObjectPermission FieldPermission RecordAction DataScope FieldAccessLevel
    ApiToken IssuedApiToken TokenKind RecordSharing RecordShare RecordTeamMember GranteeKind ShareAccess
    SecurityAuditEntry CreateOrgUnitInput CreateUserInput CreateRoleInput UpdateRoleInput
    BusinessTypeDefinition StageDefinition StageCategory PicklistSubset BusinessTypeInput BusinessTypeUpdateInput
    StageInput PicklistSubsetInput StageHistoryEntry FunnelPeriod StageConversion
    ValidationRuleDefinition ValidationRuleInput ValidationRuleUpdateInput
    Layout LayoutSection LayoutField LayoutRelatedList LayoutInput LayoutUpdateInput LayoutSectionInput
    App UninstalledApp
    BackgroundJob BackgroundJobStatus
    InboxNotification InboxConnection
    PublicPool PublicPoolMember PublicPoolMemberInput PublicPoolInput PublicPoolUpdateInput PublicPoolRecord
    PublicPoolRecordConnection PublicPoolMove
    LayoutFieldInput LayoutRelatedListInput
    GeolocationFilter GeoBoxInput GeoRadiusInput MapCell
    BookingRuleDefinition BookingRuleInput BookingRuleUpdateInput
    AutomationDefinition AutomationInput AutomationUpdateInput AssignmentOutcome DuplicateMatch ApprovalRequest ApprovalAction
""".split())
"""Names of the platform's own types, which no object may generate (the metadata API's, then the
security admin API's, then those of business types and stages: ``StageHistoryEntry`` is in the
schema only while some object has stages, the others always), then those of funnels and conversions
(``FunnelPeriod``, ``StageConversion``: there while some object has stages), validation rules, layouts,
map queries over geolocation fields and booking rules, then the background jobs admin API's, then
the inbox API's, then the public pools API's, then automations' (and those of assignment, duplicate
rules and approvals)."""

FILTER_LOGIC_FIELDS = frozenset({"and", "or", "not"})
"""Fields every ``<Type>Filter`` has beside one per record field and relation (``and_id`` would take ``and``)."""

PLATFORM_QUERY_FIELDS = frozenset({
    "objects", "object", "fieldTypes", "metadataChanges", "metadataVersion",
    "me", "roles", "role", "memberships", "apiTokens", "recordSharing", "securityAudit", "layout", "apps", "backgroundJobs",
    "inbox", "inboxUnreadCount", "publicPools", "publicPoolRecords", "publicPoolMoves", "duplicates",
    "approvalRequests", "approvalRequest",
})
PLATFORM_MUTATION_FIELDS = frozenset({
    "createObject", "updateObject", "deleteObject", "createField", "updateField", "deleteField",
    "createBusinessType", "updateBusinessType", "deleteBusinessType",
    "createValidationRule", "updateValidationRule", "deleteValidationRule", "createLayout", "updateLayout", "deleteLayout",
    "createBookingRule", "updateBookingRule", "deleteBookingRule", "createAutomation", "updateAutomation", "deleteAutomation",
    "createOrgUnit", "moveOrgUnit", "deleteOrgUnit", "createUser", "setPassword", "deleteUser",
    "createRole", "updateRole", "deleteRole", "setObjectPermission", "setFieldPermission",
    "addMembership", "removeMembership", "shareRecord", "unshareRecord", "addTeamMember", "removeTeamMember",
    "createApiToken", "revokeApiToken", "installApp", "upgradeApp", "uninstallApp", "retryBackgroundJob",
    "markInboxRead", "markAllInboxRead", "createPublicPool", "updatePublicPool", "deletePublicPool",
    "claimPublicPoolRecord", "releasePublicPoolRecord", "assignRecords",
    "submitForApproval", "approveRequest", "rejectRequest", "recallRequest",
})


def type_name(obj: ObjectDef, suffix: str = "") -> str:
    return pascal_case(obj.api_name) + suffix


def enum_type_name(obj: ObjectDef, field: FieldDef) -> str:
    """The enum of a restricted picklist's values: ``OpportunityStage``."""
    return pascal_case(obj.api_name) + pascal_case(field.api_name)


PROCESS_FIELDS = ("business_type", "stage")
"""System fields that are enums on objects with business types (``business_type``) and stages
(``stage``): ``OpportunityBusinessType`` and ``OpportunityStage``, named like picklist enums."""

STAGE_RECORD_FIELDS = {
    "probability": "the win probability of the stage",
    "stageCategory": "the category of the stage",
    "daysInStage": "the days in the stage",
    "stageDueAt": "the due time of the stage",
    "stageHistory": "the stage history",
}
"""Record fields computed from the stage of records of objects with stages, by GraphQL name."""


def process_fields(obj: ObjectDef) -> tuple[str, ...]:
    """The process fields the object has as enums: ``business_type`` with business types, ``stage`` with stages."""
    if not obj.business_types:
        return ()
    return PROCESS_FIELDS if obj.has_stages else PROCESS_FIELDS[:1]


def process_enum_name(obj: ObjectDef, api_name: str) -> str:
    """``OpportunityBusinessType`` or ``OpportunityStage``: the values of a process field."""
    return pascal_case(obj.api_name) + pascal_case(api_name)


def process_filter_name(obj: ObjectDef, api_name: str) -> str:
    """``OpportunityStageFilter``: conditions on a process field, with its enum."""
    return process_enum_name(obj, api_name) + "Filter"


def process_type_names(obj: ObjectDef) -> list[str]:
    """The types an object's business types and stages generate (none without business types)."""
    return [name for api_name in process_fields(obj) for name in (process_enum_name(obj, api_name), process_filter_name(obj, api_name))]


def due_field(obj: ObjectDef) -> str:
    """The query of the records running out of time in their stage: ``opportunitiesDueInStage``."""
    return camel_case(obj.plural_api_name) + "DueInStage"


def availability_field(obj: ObjectDef) -> str:
    """The free resources of a booking object: ``mediaBookingsAvailability``."""
    return camel_case(obj.plural_api_name) + "Availability"


def occupancy_field(obj: ObjectDef) -> str:
    """The occupancy per resource and month of a booking object: ``mediaBookingsOccupancy``."""
    return camel_case(obj.plural_api_name) + "Occupancy"


def occupancy_type_name(obj: ObjectDef) -> str:
    """``MediaBookingOccupancy``: one resource's month."""
    return pascal_case(obj.api_name) + "Occupancy"


def funnel_field(obj: ObjectDef) -> str:
    """The funnel query of an object with stages: ``opportunityFunnel``."""
    return camel_case(obj.api_name) + "Funnel"


def conversions_field(obj: ObjectDef) -> str:
    """The stage conversion query of an object with stages: ``opportunityStageConversions``."""
    return camel_case(obj.api_name) + "StageConversions"


FUNNEL_TYPE_SUFFIXES = ("FunnelRow", "FunnelAmount", "FunnelDate")
"""The types of an object's funnel: its rows, the enums of its numeric and of its date fields."""


def funnel_type_names(obj: ObjectDef) -> list[str]:
    """``OpportunityFunnelRow``, ``OpportunityFunnelAmount``, ``OpportunityFunnelDate`` (objects with stages)."""
    return [type_name(obj, suffix) for suffix in FUNNEL_TYPE_SUFFIXES] if obj.has_stages else []


def geolocation_fields(obj: ObjectDef) -> list[FieldDef]:
    """The fields an object's map grid may count by (an object without any has no map grid)."""
    return [f for f in obj.fields if f.type == "geolocation"]


def map_grid_field(obj: ObjectDef) -> str:
    """The map grid query of an object with geolocation fields: ``sitesMapGrid``."""
    return camel_case(obj.plural_api_name) + "MapGrid"


def geo_field_type_name(obj: ObjectDef) -> str:
    """The enum of an object's geolocation fields, the map grid's ``field`` argument: ``SiteGeoField``."""
    return type_name(obj, "GeoField")


def map_type_names(obj: ObjectDef) -> list[str]:
    """``SiteGeoField`` for an object with geolocation fields, else none."""
    return [geo_field_type_name(obj)] if geolocation_fields(obj) else []


def stage_record_fields(obj: ObjectDef) -> tuple[str, ...]:
    """The computed stage fields of the object's record type (none without stages)."""
    return tuple(STAGE_RECORD_FIELDS) if obj.has_stages else ()


def is_choice(field: FieldDef) -> bool:
    return field.type in ("picklist", "multi_picklist")


def is_enum(field: FieldDef) -> bool:
    return is_choice(field) and field.options.get("restricted", True)


def choice_filter_type_name(obj: ObjectDef, field: FieldDef) -> str:
    """The filter input of a picklist, restricted or not: ``OpportunityStageFilter``."""
    return enum_type_name(obj, field) + "Filter"


def enum_value_name(value_api_name: str) -> str:
    return value_api_name.upper()


def get_field(obj: ObjectDef) -> str:
    return camel_case(obj.api_name)


def list_field(obj: ObjectDef) -> str:
    return camel_case(obj.plural_api_name)


def aggregate_field(obj: ObjectDef) -> str:
    return camel_case(obj.api_name) + "Aggregate"


SYSTEM_OBJECT_OPERATIONS = ("update", "update_many")
"""The record mutations a system object (``user``, ``org_unit``) has: the admin API creates,
deletes, restores and moves them (``createUser``, ``deleteOrgUnit``, ...) under its own names."""


def mutation_fields(obj: ObjectDef) -> dict[str, str]:
    """Mutation name by operation (``create``, ``create_many``, ``update``, ``update_many``,
    ``delete``, ``restore``, ``transfer``); system objects have only their updates."""
    one, many = pascal_case(obj.api_name), pascal_case(obj.plural_api_name)
    named = {
        "create": f"create{one}", "create_many": f"create{many}", "update": f"update{one}",
        "update_many": f"update{many}", "delete": f"delete{one}", "restore": f"restore{one}",
        "transfer": f"transfer{one}",
    }
    if obj.system:
        return {operation: named[operation] for operation in SYSTEM_OBJECT_OPERATIONS}
    return named


def value_field(field: FieldDef) -> str:
    """The record field holding the stored value (for a lookup: the raw id, ``accountId``)."""
    if field.target and not field.api_name.endswith("_id") and field.api_name != "id":
        return camel_case(field.api_name) + "Id"
    return camel_case(field.api_name)


def relation_field(field: FieldDef) -> str | None:
    """The record field resolving a lookup to its record (``account``, ``owner``), else ``None``."""
    if not field.target or field.api_name == "id":
        return None
    name = field.api_name[:-3] if field.api_name.endswith("_id") else field.api_name
    return camel_case(name)


def children_name(child: ObjectDef, field: FieldDef) -> str | None:
    """The connection a master (or lookup target) exposes for the records pointing at it.

    Master-detail fields always give one, named by ``relationship_name`` or the detail's plural;
    lookups give one only when they name it with ``relationship_name``.
    """
    explicit = field.options.get("relationship_name")
    if explicit:
        return camel_case(explicit)
    if field.type == "master_detail":
        return camel_case(child.plural_api_name)
    return None


def order_value(field: FieldDef, descending: bool) -> str:
    return field.api_name.upper() + ("_DESC" if descending else "_ASC")


def group_value(field: FieldDef, granularity: str | None = None) -> str:
    """``CLOSE_DATE`` or ``CLOSE_DATE__MONTH`` (api names never hold ``__``, so these never clash)."""
    return field.api_name.upper() + (f"__{granularity.upper()}" if granularity and granularity != "day" else "")


@dataclass(frozen=True)
class Source:
    """What gives a GraphQL name: an object (``field`` is ``None``) or one of its fields, and the
    ``setting`` of that definition which, changed, would rename it."""

    object: str
    field: str | None
    setting: str
    what: str


@dataclass(frozen=True)
class Collision:
    """A GraphQL name that two sources would share, or that one source would take from the platform.

    ``kind`` is ``type``, ``query``, ``mutation`` or ``field`` (then ``name`` is ``Type.field``);
    ``owners`` are the objects whose part of the schema it breaks.
    """

    kind: str
    name: str
    sources: tuple[Source, ...]
    owners: tuple[str, ...]
    reserved: bool = False

    @property
    def message(self) -> str:
        whats = list(dict.fromkeys(s.what for s in self.sources))
        what = " and ".join(whats)
        if self.reserved:
            return f"{what} would generate the GraphQL {self.kind} '{self.name}', which the platform uses"
        if len(whats) == 1:
            return f"{what} would generate the GraphQL {self.kind} '{self.name}' twice"
        if self.kind == "field":
            return f"{what} would share the GraphQL field '{self.name}'"
        return f"{what} would generate the same GraphQL {self.kind} '{self.name}'"


def _object_source(obj: ObjectDef, setting: str = "api_name") -> Source:
    return Source(obj.api_name, None, setting, f"object '{obj.api_name}'")


def _children_by_target(objects: Mapping[str, ObjectDef]) -> dict[str, list[tuple[ObjectDef, FieldDef]]]:
    children: dict[str, list[tuple[ObjectDef, FieldDef]]] = defaultdict(list)
    for child in objects.values():
        for field in child.fields:
            if field.target:
                children[field.target].append((child, field))
    return children


def _record_field_sources(obj: ObjectDef, children: Mapping[str, list[tuple[ObjectDef, FieldDef]]]) -> dict[str, list[Source]]:
    sources: dict[str, list[Source]] = defaultdict(list)
    for field in obj.fields_by_name.values():
        sources[value_field(field)].append(Source(obj.api_name, field.api_name, "api_name", f"field '{field.api_name}'"))
        if (relation := relation_field(field)):
            sources[relation].append(Source(obj.api_name, field.api_name, "api_name", f"the relation of field '{field.api_name}'"))
    for name in stage_record_fields(obj):
        sources[name].append(Source(obj.api_name, None, "business_types", STAGE_RECORD_FIELDS[name]))
    for child, field in children.get(obj.api_name, ()):
        if (name := children_name(child, field)):
            sources[name].append(Source(child.api_name, field.api_name, "options.relationship_name",
                                        f"the related list of '{child.api_name}.{field.api_name}'"))
    return sources


def record_field_sources(obj: ObjectDef, objects: Mapping[str, ObjectDef]) -> dict[str, list[str]]:
    """Every field of the object's type, by GraphQL name, with what it comes from (two or more: a clash)."""
    sources = _record_field_sources(obj, _children_by_target(objects))
    return {name: [s.what for s in found] for name, found in sources.items()}


def find_collisions(objects: Mapping[str, ObjectDef]) -> list[Collision]:
    """Every GraphQL name two sources would share or one would take from the platform."""
    types: dict[str, list[Source]] = defaultdict(list)
    query: dict[str, list[Source]] = defaultdict(list)
    mutation: dict[str, list[Source]] = defaultdict(list)
    plural_mutations = {"create_many", "update_many"}
    for obj in objects.values():
        for suffix in TYPE_SUFFIXES:
            types[type_name(obj, suffix)].append(_object_source(obj))
        for field in filter(is_choice, obj.fields):
            picklist = Source(obj.api_name, field.api_name, "api_name", f"picklist '{obj.api_name}.{field.api_name}'")
            if is_enum(field):
                types[enum_type_name(obj, field)].append(picklist)
            types[choice_filter_type_name(obj, field)].append(picklist)
        for name in process_type_names(obj):
            types[name].append(Source(obj.api_name, None, "api_name", f"the business types of object '{obj.api_name}'"))
        for name in funnel_type_names(obj):
            types[name].append(Source(obj.api_name, None, "api_name", f"the funnel of object '{obj.api_name}'"))
        if obj.has_stages:
            query[due_field(obj)].append(Source(obj.api_name, None, "plural_api_name", f"the stages of object '{obj.api_name}'"))
            query[funnel_field(obj)].append(Source(obj.api_name, None, "api_name", f"the funnel of object '{obj.api_name}'"))
            query[conversions_field(obj)].append(Source(obj.api_name, None, "api_name",
                                                        f"the stage conversions of object '{obj.api_name}'"))
        if obj.booking_rules:
            booking = Source(obj.api_name, None, "plural_api_name", f"the booking rule of object '{obj.api_name}'")
            query[availability_field(obj)].append(booking)
            query[occupancy_field(obj)].append(booking)
            types[occupancy_type_name(obj)].append(Source(obj.api_name, None, "api_name", f"the booking rule of object '{obj.api_name}'"))
        mapped = geolocation_fields(obj)
        if mapped:
            # Named by the plural, there because of the first geolocation field: a change adding it is blamed.
            grid = Source(obj.api_name, mapped[0].api_name, "type", f"the map grid of object '{obj.api_name}'")
            query[map_grid_field(obj)].append(grid)
            for name in map_type_names(obj):
                types[name].append(grid)
        query[get_field(obj)].append(_object_source(obj))
        query[list_field(obj)].append(_object_source(obj, "plural_api_name"))
        query[aggregate_field(obj)].append(_object_source(obj))
        for operation, name in mutation_fields(obj).items():
            mutation[name].append(_object_source(obj, "plural_api_name" if operation in plural_mutations else "api_name"))
    found: list[Collision] = []
    for kind, by_name, reserved in (("type", types, PLATFORM_TYPE_NAMES), ("query", query, PLATFORM_QUERY_FIELDS),
                                    ("mutation", mutation, PLATFORM_MUTATION_FIELDS)):
        for name, sources in by_name.items():
            if name in reserved:
                found.extend(Collision(kind, name, (s,), (s.object,), reserved=True) for s in dict.fromkeys(sources))
            elif len(sources) > 1:
                found.append(Collision(kind, name, tuple(sources), tuple(dict.fromkeys(s.object for s in sources))))
    children = _children_by_target(objects)
    for obj in objects.values():
        for name, sources in _record_field_sources(obj, children).items():
            if len(sources) > 1:
                found.append(Collision("field", f"{type_name(obj)}.{name}", tuple(sources), (obj.api_name,)))
            if name in FILTER_LOGIC_FIELDS:
                found.extend(Collision("field", f"{type_name(obj, 'Filter')}.{name}", (s,), (obj.api_name,), reserved=True)
                             for s in sources if s.setting == "api_name")
    return found


def collisions(objects: Mapping[str, ObjectDef]) -> list[tuple[str, str]]:
    """``(object api name, message)`` for every GraphQL name two things would share."""
    return list(dict.fromkeys((owner, c.message) for c in find_collisions(objects) for owner in c.owners))


def collision_errors(objects: Mapping[str, ObjectDef], touched: Iterable[str]) -> list[FieldError]:
    """Collisions involving the objects a change touches, as errors for the caller."""
    touched = set(touched)
    return [FieldError("NAME_COLLISION", None, message, {"object": owner})
            for owner, message in collisions(objects) if owner in touched]
