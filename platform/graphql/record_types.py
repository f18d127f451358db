"""The GraphQL types of every object in a Catalog, built with graphql-core directly.

graphene's class layer costs milliseconds per generated type; these types change with metadata
and are rebuilt per Catalog version, so they are plain graphql-core objects (graphene is built on
it). Every name comes from :mod:`lowcode.metadata.graphql_names`, which the metadata service
checks for collisions when metadata is saved. Each generated field keeps a :class:`Binding` to the
metadata it serves, which the planner reads to turn a selection into one plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
)

from ..metadata import graphql_names as names
from ..metadata.catalog import Catalog
from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.fieldtypes.picklist import ordered_values
from ..runtime.aggregates import MEASURABLE, NUMERIC_TYPES, TEMPORAL_TYPES, groupable
from ..runtime.processes import stage_of
from ..runtime.security.grants import MANAGED_FIELDS
from .errors import unreadable

NON_NULL_SYSTEM = frozenset({"id", "version"})
"""Record fields that are never null: the only ones no field grant can hide. Every other field
(``createdAt`` and required fields included) may be hidden from a caller, and then reads as null
with a FORBIDDEN error at its path, leaving the rest of the record in place; related lists too."""

OWNERSHIP_INPUTS = ("owner_id", "org_unit_id")
"""Given on create only (within the caller's scope); afterwards changed by the transfer mutation."""

FILTER_BY_TYPE = {
    "text": "StringFilter", "email": "StringFilter", "phone": "StringFilter", "url": "StringFilter",
    "auto_number": "StringFilter", "textarea": "LongTextFilter", "integer": "IntFilter", "decimal": "DecimalFilter",
    "currency": "DecimalFilter", "percent": "DecimalFilter", "date": "DateFilter", "datetime": "DateTimeFilter",
    "boolean": "BooleanFilter", "lookup": "IDFilter", "master_detail": "IDFilter", "json": "NullFilter",
    "geolocation": "GeolocationFilter",
}
"""The shared filter input of each field type; picklists get their own (typed by their values)."""

RELATED = "@"
"""Prefix of the keys related records are stored under in a record (never part of an api name)."""

SCALARS = {"String": GraphQLString, "Int": GraphQLInt, "Boolean": GraphQLBoolean, "ID": GraphQLID}


@dataclass(frozen=True)
class Binding:
    """What a field of a generated record type serves."""

    kind: str
    """``value`` (a stored value), ``relation`` (the record a lookup points at), ``children``,
    ``computed`` (worked out from stored values: ``probability``) or ``history`` (the stage history,
    read by its resolver: one statement, so only on a single record)."""
    field: FieldDef
    """The field itself; for ``children``, the child's field pointing at this object; for
    ``computed`` and ``history``, the first field it reads."""
    obj: ObjectDef
    """The object owning ``field`` (for ``children``: the child object)."""
    needs: tuple[str, ...] = ()
    """``computed`` and ``history``: the stored values (api names) it reads; hidden from the
    caller, it is too."""


@dataclass(frozen=True)
class FilterBinding:
    api_name: str
    related: ObjectDef | None = None
    """For a lookup's relation entry: the target object, filtered with its own filter."""


def read_value(api_name: str) -> Callable[[Any, Any], Any]:
    def resolve(record, _info):
        return record.get(api_name)

    resolve.reads = api_name
    return resolve


def read_field(obj: ObjectDef, field: FieldDef, name: str) -> Callable[[Any, Any], Any]:
    """A record's value. Fields the caller may not read are left out of the record (the planner
    never selects them, the record service strips them): absent, the field is FORBIDDEN."""
    api_name = field.api_name

    def resolve(record, info):
        try:
            return record[api_name]
        except KeyError:
            return unread(info, obj, api_name, name)

    resolve.reads = api_name
    return resolve


def read_relation(obj: ObjectDef, field: FieldDef) -> Callable[[Any, Any], Any]:
    """Relations are stored under ``@`` and the response key (aliases included); absent when the
    caller may not read the lookup."""
    api_name = field.api_name

    def resolve(record, info):
        try:
            return record[RELATED + info.path.key]
        except KeyError:
            return unread(info, obj, api_name, info.field_name)

    resolve.reads_response_key = True
    return resolve


def read_computed(obj: ObjectDef, name: str, needs: tuple[str, ...], compute: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """A value worked out from stored ones (``needs``), with the request's Catalog: no statement."""
    def resolve(record, info):
        values = []
        for api_name in needs:
            try:
                values.append(record[api_name])
            except KeyError:
                return unread(info, obj, api_name, name)
        return compute(*values)

    return resolve


def read_stage_history(obj: ObjectDef, name: str) -> Callable[[Any, Any], Any]:
    """The stages a record went through, oldest first, read from the record service (one statement;
    the planner allows it only on a single record). Stages and business types are named as in
    their enums (``FIRST_CONTACT``), as strings: the history keeps stages since removed."""
    def resolve(record, info):
        if "stage" not in record:
            return unread(info, obj, "stage", name)
        context = info.context
        entries = context.records.stage_history(context.actor, obj.api_name, record["id"])
        return [{**entry, "stage": names.enum_value_name(entry["stage"]),
                 "business_type": names.enum_value_name(entry["business_type"]) if entry["business_type"] else None}
                for entry in entries]

    return resolve


def _instant(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def stage_computations(obj: ObjectDef, category_type: Any) -> dict[str, tuple[tuple[str, ...], Any, Callable[..., Any], str]]:
    """The computed stage fields of a record type: GraphQL name -> (stored values read, output type,
    computation, description)."""
    def probability(stage):
        found = stage_of(obj, stage)
        return found.probability if found else None

    def category(stage):
        found = stage_of(obj, stage)
        return found.category if found else None

    def days_in_stage(entered_at):
        if entered_at is None:
            return None
        return max(int((datetime.now(timezone.utc) - _instant(entered_at)).total_seconds() // 86400), 0)

    def due_at(stage, entered_at):
        found = stage_of(obj, stage)
        if found is None or found.expected_days is None or found.closed or entered_at is None:
            return None
        return _instant(entered_at) + timedelta(days=found.expected_days)

    return {
        "probability": (("stage",), GraphQLInt, probability, "The win probability of the record's stage, 0 to 100."),
        "stageCategory": (("stage",), category_type, category, "Whether the record's stage is open, won or lost."),
        "daysInStage": (("stage_entered_at",), GraphQLInt, days_in_stage, "Whole days since the record entered its stage."),
        "stageDueAt": (("stage", "stage_entered_at"), None, due_at,
                       "When the record's time in its stage runs out: entered plus the stage's expected days; "
                       "null when the stage expects none or is won or lost."),
    }


def unread(info, obj: ObjectDef, api_name: str, name: str) -> None:
    """A field missing from a record: FORBIDDEN when hidden from the caller, else null."""
    context = info.context
    if api_name in context.records.field_access(context.actor, obj.api_name).hidden:
        raise unreadable(obj.label, obj.api_name, name)
    return None


class RecordTypes:
    """Types, inputs and bindings for every object of one Catalog."""

    def __init__(self, catalog: Catalog, shared: dict[str, GraphQLNamedType], resolvers: Any):
        self.catalog = catalog
        self.shared = shared
        self.resolvers = resolvers
        self.bindings: dict[str, dict[str, Binding]] = {}
        self.filter_bindings: dict[str, dict[str, FilterBinding]] = {}
        self.input_bindings: dict[str, dict[str, str]] = {}
        self.objects_by_type: dict[str, ObjectDef] = {}
        self.read_roots: set[str] = set()
        """Root query fields that only read records (answered by the fast path)."""
        self.root_kinds: dict[str, tuple[str, ObjectDef]] = {}
        """Root field -> (``get``, ``list``, ``aggregate``, ``create``, ..., the object)."""
        self._types: dict[str, Any] = {}
        self._enums: dict[tuple[str, str], GraphQLEnumType] = {}
        for obj in catalog.objects.values():
            self.objects_by_type[names.type_name(obj)] = obj
        self._clashing: set[tuple[str, str]] = set()
        if any(obj.business_types for obj in catalog.objects.values()):
            self._clashing = {(c.kind, c.name) for c in catalog.memo(("graphql_collisions",), lambda: names.find_collisions(catalog.objects))}
        """GraphQL names generated twice. The metadata service refuses changes making any, but a
        business type change it let through must not break the whole schema: such an object's
        business type and stage stay plain strings, its due query is left out (see :meth:`process_fields`)."""

    def process_fields(self, obj: ObjectDef) -> tuple[str, ...]:
        """The object's process fields typed by their enums (``business_type``, ``stage``); none
        while one of the object's process type names clashes with another generated name."""
        found = names.process_fields(obj)
        if found and any(("type", name) in self._clashing for name in names.process_type_names(obj)):
            return ()
        return found

    # -- named types, built once each ------------------------------------------------------
    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        found = self._types.get(name)
        if found is None:
            found = self._types[name] = build()
        return found

    def record_type(self, obj: ObjectDef) -> GraphQLObjectType:
        name = names.type_name(obj)
        return self._once(name, lambda: GraphQLObjectType(name, lambda: self._record_fields(obj), description=obj.description or obj.label))

    def connection_type(self, obj: ObjectDef) -> GraphQLObjectType:
        name = names.type_name(obj, "Connection")
        edge = names.type_name(obj, "Edge")

        def build():
            record = GraphQLNonNull(self.record_type(obj))
            edge_type = GraphQLObjectType(edge, {
                "cursor": GraphQLField(GraphQLNonNull(GraphQLString), resolve=_edge_cursor),
                "node": GraphQLField(record, resolve=_edge_node),
            })
            return GraphQLObjectType(name, {
                "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(edge_type))), resolve=_edges),
                "nodes": GraphQLField(GraphQLNonNull(GraphQLList(record)), resolve=_nodes),
                "pageInfo": GraphQLField(GraphQLNonNull(self.shared["PageInfo"]), resolve=_page_info),
                "totalCount": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=_total_count,
                                           description="Counted only when asked for."),
            })

        return self._once(name, build)

    def enum_type(self, obj: ObjectDef, field: FieldDef) -> GraphQLEnumType:
        key = (obj.api_name, field.api_name)
        if key not in self._enums:
            self._enums[key] = GraphQLEnumType(names.enum_type_name(obj, field), {
                names.enum_value_name(v["api_name"]): GraphQLEnumValue(
                    v["api_name"], description=v["label"],
                    deprecation_reason=None if v.get("active", True) else "Inactive: kept on old records, not accepted in new values.")
                for v in ordered_values(field.options)
            })
        return self._enums[key]

    def process_enum(self, obj: ObjectDef, api_name: str) -> GraphQLEnumType:
        """``OpportunityBusinessType`` (inactive types deprecated, like picklist values) or
        ``OpportunityStage`` (every stage of every type, in the types' order, then each type's)."""
        name = names.process_enum_name(obj, api_name)

        def build():
            if api_name == "business_type":
                values = {names.enum_value_name(kind.api_name): GraphQLEnumValue(
                    kind.api_name, description=kind.label,
                    deprecation_reason=None if kind.active else "Inactive: kept on old records, not accepted for new ones.")
                    for kind in obj.business_types}
            else:
                values = {names.enum_value_name(stage.api_name): GraphQLEnumValue(
                    stage.api_name, description=f"{stage.label} ({kind.label}, {stage.probability}%, {stage.category})")
                    for kind in obj.business_types for stage in kind.stages}
            return GraphQLEnumType(name, values, description=f"The {'business types' if api_name == 'business_type' else 'stages'} "
                                                             f"of {obj.plural_label}.")

        return self._once(name, build)

    def process_filter(self, obj: ObjectDef, api_name: str) -> GraphQLInputObjectType:
        name = names.process_filter_name(obj, api_name)

        def build():
            item = self.process_enum(obj, api_name)
            many = GraphQLList(GraphQLNonNull(item))
            return GraphQLInputObjectType(name, {
                "eq": GraphQLInputField(item), "ne": GraphQLInputField(item), "in": GraphQLInputField(many),
                "notIn": GraphQLInputField(many, out_name="not_in"), "isNull": GraphQLInputField(GraphQLBoolean, out_name="is_null"),
            })

        return self._once(name, build)

    def stage_history_type(self) -> GraphQLObjectType:
        def build():
            date_time = self.shared["DateTime"]
            return GraphQLObjectType("StageHistoryEntry", {
                "stage": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("stage"),
                                      description="The stage as named in the object's stage enum (FIRST_CONTACT)."),
                "businessType": GraphQLField(GraphQLString, resolve=read_value("business_type"),
                                             description="The record's business type then, as named in its enum."),
                "enteredAt": GraphQLField(GraphQLNonNull(date_time), resolve=read_value("entered_at")),
                "enteredById": GraphQLField(GraphQLID, resolve=read_value("entered_by"), description="The user who moved it in."),
                "leftAt": GraphQLField(date_time, resolve=read_value("left_at"), description="Null while the record is in the stage."),
                "leftById": GraphQLField(GraphQLID, resolve=read_value("left_by"), description="The user who moved it on."),
                "secondsInStage": GraphQLField(GraphQLInt, resolve=read_value("seconds_in_stage"),
                                               description="Once the record left the stage."),
            }, description="A stage a record went through.")

        return self._once("StageHistoryEntry", build)

    def filter_type(self, obj: ObjectDef) -> GraphQLInputObjectType:
        name = names.type_name(obj, "Filter")
        return self._once(name, lambda: GraphQLInputObjectType(name, lambda: self._filter_fields(obj),
                                                                description=f"Conditions on {obj.plural_label}; fields combine with AND."))

    def order_type(self, obj: ObjectDef) -> GraphQLEnumType:
        name = names.type_name(obj, "OrderBy")

        def build():
            values = {}
            for field in obj.fields_by_name.values():
                if field.value.field_type.sortable and field.field_type.in_sql(field):
                    values[names.order_value(field, False)] = GraphQLEnumValue(field.api_name)
                    values[names.order_value(field, True)] = GraphQLEnumValue("-" + field.api_name)
            return GraphQLEnumType(name, values)

        return self._once(name, build)

    def input_type(self, obj: ObjectDef, creating: bool) -> GraphQLInputObjectType:
        name = names.type_name(obj, "CreateInput" if creating else "UpdateInput")
        transfer = names.mutation_fields(obj).get("transfer")
        description = None
        if not creating and transfer:
            description = f"Fields to change; the owner and org unit change through {transfer}."
        return self._once(name, lambda: GraphQLInputObjectType(name, lambda: self._input_fields(obj, creating),
                                                                description=description))

    def update_item_type(self, obj: ObjectDef) -> GraphQLInputObjectType:
        name = names.type_name(obj, "UpdateItem")
        return self._once(name, lambda: GraphQLInputObjectType(name, {
            "id": GraphQLInputField(GraphQLNonNull(GraphQLID)),
            "input": GraphQLInputField(GraphQLNonNull(self.input_type(obj, False))),
            "expectedVersion": GraphQLInputField(GraphQLInt, description="Refuse (CONFLICT) if the record moved past this version."),
        }))

    # -- fields ----------------------------------------------------------------------------
    def value_type(self, obj: ObjectDef, field: FieldDef, *, as_input: bool = False):
        if field.system and field.api_name in self.process_fields(obj):
            return self.process_enum(obj, field.api_name)
        scalar = field.field_type.scalar_for(field)
        if scalar == "Enum":
            item = self.enum_type(obj, field) if names.is_enum(field) else GraphQLString
            return GraphQLList(GraphQLNonNull(item)) if field.type == "multi_picklist" else item
        if scalar == "Geolocation":
            return self.shared["GeolocationInput" if as_input else "Geolocation"]
        return SCALARS.get(scalar) or self.shared[scalar]

    def _record_fields(self, obj: ObjectDef) -> dict[str, GraphQLField]:
        type_name = names.type_name(obj)
        bindings = self.bindings.setdefault(type_name, {})
        fields: dict[str, GraphQLField] = {}
        for field in obj.fields_by_name.values():
            name = names.value_field(field)
            output = self.value_type(obj, field)
            if field.system and field.api_name in NON_NULL_SYSTEM:
                output = GraphQLNonNull(output)
            fields[name] = GraphQLField(output, resolve=read_field(obj, field, name), description=field.help_text or field.label)
            bindings[name] = Binding("value", field, obj)
            relation = names.relation_field(field)
            if relation and field.target in self.catalog.objects:
                target = self.catalog.objects[field.target]
                fields[relation] = GraphQLField(self.record_type(target), resolve=read_relation(obj, field), description=field.label)
                bindings[relation] = Binding("relation", field, obj)
        self._stage_fields(obj, fields, bindings)
        for child, link in self.catalog.referrers(obj.api_name):
            name = names.children_name(child, link)
            if name:
                fields[name] = GraphQLField(self.connection_type(child), self.list_arguments(child),
                                            resolve=self.resolvers.children(child, link),
                                            description=f"{child.plural_label} of this {obj.label}; null (FORBIDDEN) "
                                                        f"when you may not read their '{link.label}'.")
                bindings[name] = Binding("children", link, child)
        return fields

    def _stage_fields(self, obj: ObjectDef, fields: dict[str, GraphQLField], bindings: dict[str, Binding]) -> None:
        """The fields computed from the stage (objects with stages). A stored field of the same name
        (possible only when stages came after it: the metadata service refuses it otherwise) keeps it."""
        if not names.stage_record_fields(obj):
            return
        computed = stage_computations(obj, self.shared["StageCategory"])
        for name, (needs, output, compute, description) in computed.items():
            if name in fields:
                continue
            fields[name] = GraphQLField(output or self.shared["DateTime"], resolve=read_computed(obj, name, needs, compute),
                                        description=description)
            bindings[name] = Binding("computed", obj.field(needs[0]), obj, needs)
        if "stageHistory" not in fields:
            fields["stageHistory"] = GraphQLField(
                GraphQLList(GraphQLNonNull(self.stage_history_type())), resolve=read_stage_history(obj, "stageHistory"),
                description="The stages the record went through, oldest first. Read with one statement, so only on a single "
                            "record: the record query by id and mutations returning one record.")
            bindings["stageHistory"] = Binding("history", obj.field("stage"), obj, ("stage",))

    def list_arguments(self, obj: ObjectDef) -> dict[str, GraphQLArgument]:
        return {
            "filter": GraphQLArgument(self.filter_type(obj)),
            "orderBy": GraphQLArgument(GraphQLList(GraphQLNonNull(self.order_type(obj)))),
            "first": GraphQLArgument(GraphQLInt, description="Page size."),
            "after": GraphQLArgument(GraphQLString, description="The endCursor of the previous page."),
        }

    def _filter_fields(self, obj: ObjectDef) -> dict[str, GraphQLInputField]:
        own = self.filter_type(obj)
        fields = {
            "and": GraphQLInputField(GraphQLList(GraphQLNonNull(own)), description="Every one of these holds."),
            "or": GraphQLInputField(GraphQLList(GraphQLNonNull(own)), description="At least one of these holds."),
            "not": GraphQLInputField(own, description="This does not hold (nulls included)."),
        }
        bindings = self.filter_bindings.setdefault(names.type_name(obj, "Filter"), {})
        for field in obj.fields_by_name.values():
            kind = self._value_filter(obj, field)
            if kind is not None:
                fields[names.value_field(field)] = GraphQLInputField(kind)
                bindings[names.value_field(field)] = FilterBinding(field.api_name)
            relation = names.relation_field(field)
            if relation and field.target in self.catalog.objects:
                target = self.catalog.objects[field.target]
                fields[relation] = GraphQLInputField(self.filter_type(target), description=f"Conditions on the {field.label}.")
                bindings[relation] = FilterBinding(field.api_name, target)
        return fields

    def _value_filter(self, obj: ObjectDef, field: FieldDef):
        if field.system and field.api_name in self.process_fields(obj):
            return self.process_filter(obj, field.api_name)
        if field.type in ("picklist", "multi_picklist"):
            return self._choice_filter(obj, field)
        name = FILTER_BY_TYPE.get(field.value_type) if field.field_type.in_sql(field) else None
        return self.shared[name] if name else None

    def _choice_filter(self, obj: ObjectDef, field: FieldDef) -> GraphQLInputObjectType:
        name = names.choice_filter_type_name(obj, field)

        def build():
            item = self.enum_type(obj, field) if names.is_enum(field) else GraphQLString
            many = GraphQLList(GraphQLNonNull(item))
            if field.type == "multi_picklist":
                ops = {"contains": GraphQLInputField(item, description="Holds this value."),
                       "eq": GraphQLInputField(many, description="Holds exactly these values.")}
            else:
                ops = {"eq": GraphQLInputField(item), "ne": GraphQLInputField(item), "in": GraphQLInputField(many),
                       "notIn": GraphQLInputField(many, out_name="not_in")}
            ops["isNull"] = GraphQLInputField(GraphQLBoolean, out_name="is_null")
            return GraphQLInputObjectType(name, ops)

        return self._once(name, build)

    def _input_fields(self, obj: ObjectDef, creating: bool) -> dict[str, GraphQLInputField]:
        """Writable fields; on create also the owner and org unit (updates leave them to the
        transfer mutation). Fields only the admin API writes (the org tree's shape) are left out."""
        bindings = self.input_bindings.setdefault(names.type_name(obj), {})
        fields = {}
        if creating:
            for api_name, description in zip(OWNERSHIP_INPUTS, (
                    "Defaults to the caller.",
                    "Defaults to the unit of your first membership whose role may create these records.")):
                field = obj.field(api_name)
                fields[names.value_field(field)] = GraphQLInputField(GraphQLID, description=description)
                bindings[names.value_field(field)] = field.api_name
        for api_name in self.process_fields(obj):
            field = obj.field(api_name)
            fields[names.value_field(field)] = GraphQLInputField(self.process_enum(obj, api_name), description=(
                "Defaults to the default business type." if api_name == "business_type" else "Defaults to the first stage of the record's type.")
                if creating else None)
            bindings[names.value_field(field)] = api_name
        for field in self.updatable_fields(obj):
            name = names.value_field(field)
            fields[name] = GraphQLInputField(self.value_type(obj, field, as_input=True), description=field.help_text or field.label)
            bindings[name] = field.api_name
        return fields

    @staticmethod
    def updatable_fields(obj: ObjectDef) -> list[FieldDef]:
        """The fields create and update inputs take (beside the owner and unit on create): the
        writable ones but those only the admin API writes (the org tree's shape). An object
        without any has no update mutations (an input type needs a field)."""
        managed = MANAGED_FIELDS.get(obj.api_name, frozenset())
        return [f for f in obj.fields if f.writable and f.api_name not in managed]

    # -- aggregates ------------------------------------------------------------------------
    def group_field_type(self, obj: ObjectDef) -> GraphQLEnumType | None:
        name = names.type_name(obj, "GroupField")

        def build():
            values = {}
            for field in self.groupable_fields(obj):
                if field.value_type in TEMPORAL_TYPES:
                    for granularity in names.DATE_GRANULARITIES:
                        values[names.group_value(field, granularity)] = GraphQLEnumValue((field.api_name, granularity))
                else:
                    values[names.group_value(field)] = GraphQLEnumValue((field.api_name, None))
            return GraphQLEnumType(name, values)

        return self._once(name, build)

    @staticmethod
    def groupable_fields(obj: ObjectDef) -> list[FieldDef]:
        return [f for f in obj.fields_by_name.values() if groupable(f)]

    def group_type(self, obj: ObjectDef) -> GraphQLObjectType:
        name = names.type_name(obj, "Group")

        def build():
            key_fields = {}
            for field in self.groupable_fields(obj):
                output = self.shared["Date"] if field.value_type in TEMPORAL_TYPES else self.value_type(obj, field)
                key_fields[names.value_field(field)] = GraphQLField(output, resolve=read_value(field.api_name),
                                                                    description="Dates and instants: the first day of the period.")
            measurable = [f for f in obj.fields_by_name.values() if f.field_type.in_sql(f)]
            numeric = [f for f in measurable if f.value_type in MEASURABLE["sum"]]
            ranged = [f for f in measurable if f.value_type in MEASURABLE["max"]]
            fields = {
                "key": GraphQLField(GraphQLNonNull(GraphQLObjectType(names.type_name(obj, "GroupKey"), key_fields)), resolve=read_value("key")),
                "count": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("count")),
            }
            if numeric:
                sums = GraphQLObjectType(names.type_name(obj, "Sums"), {
                    names.value_field(f): GraphQLField(self.shared["Decimal"], resolve=read_value(f.api_name)) for f in numeric})
                averages = GraphQLObjectType(names.type_name(obj, "Averages"), {
                    names.value_field(f): GraphQLField(GraphQLFloat, resolve=read_value(f.api_name)) for f in numeric})
                fields["sum"] = GraphQLField(GraphQLNonNull(sums), resolve=read_value("sum"))
                fields["avg"] = GraphQLField(GraphQLNonNull(averages), resolve=read_value("avg"))
            if ranged:
                extremes = GraphQLObjectType(names.type_name(obj, "Extremes"), {
                    names.value_field(f): GraphQLField(self.value_type(obj, f), resolve=read_value(f.api_name)) for f in ranged})
                fields["min"] = GraphQLField(GraphQLNonNull(extremes), resolve=read_value("min"))
                fields["max"] = GraphQLField(GraphQLNonNull(extremes), resolve=read_value("max"))
            return GraphQLObjectType(name, fields)

        return self._once(name, build)

    # -- root fields -----------------------------------------------------------------------
    def query_fields(self) -> dict[str, GraphQLField]:
        fields: dict[str, GraphQLField] = {}
        r = self.resolvers
        recycle_bin = GraphQLArgument(GraphQLBoolean, default_value=False, description="Read the recycle bin instead.")
        for obj in self.catalog.objects.values():
            self.root_kinds.update({names.get_field(obj): ("get", obj), names.list_field(obj): ("list", obj),
                                    names.aggregate_field(obj): ("aggregate", obj)})
            fields[names.get_field(obj)] = GraphQLField(
                self.record_type(obj), {"id": GraphQLArgument(GraphQLNonNull(GraphQLID)), "inRecycleBin": recycle_bin},
                resolve=r.get(obj), description=f"One {obj.label} by id.")
            fields[names.list_field(obj)] = GraphQLField(
                GraphQLNonNull(self.connection_type(obj)), {**self.list_arguments(obj), "inRecycleBin": recycle_bin},
                resolve=r.list(obj), description=f"{obj.plural_label}, a page at a time.")
            fields[names.aggregate_field(obj)] = GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(self.group_type(obj)))),
                {"filter": GraphQLArgument(self.filter_type(obj)),
                 "groupBy": GraphQLArgument(GraphQLList(GraphQLNonNull(self.group_field_type(obj))))},
                resolve=r.aggregate(obj), description=f"Counts, sums, averages and ranges of {obj.plural_label}, by group.")
            if obj.has_stages and ("query", names.due_field(obj)) not in self._clashing:
                self.root_kinds[names.due_field(obj)] = ("due", obj)
                fields[names.due_field(obj)] = GraphQLField(
                    GraphQLNonNull(self.connection_type(obj)), {
                        "withinDays": GraphQLArgument(GraphQLInt, default_value=0, description=(
                            "0 (or null): records already past their stage's expected days; N: those whose time runs out "
                            "within N days (0 to 3650).")),
                        **self.list_arguments(obj)},
                    resolve=r.due(obj), description=f"{obj.plural_label} in open stages with expected days, whose time in "
                                                    f"their stage has run out (or runs out within withinDays days).")
        self.read_roots.update(fields)
        for obj in self.catalog.objects.values():
            fields.update(self.funnel_fields(obj))
            fields.update(self.map_fields(obj))
            bookings = self.booking_fields(obj)
            self.read_roots.update(bookings)
            fields.update(bookings)
        return fields

    # -- bookings --------------------------------------------------------------------------
    def booking_fields(self, obj: ObjectDef) -> dict[str, GraphQLField]:
        """``mediaBookingsAvailability`` and ``mediaBookingsOccupancy`` of an object with a booking
        rule: the free resources of a period, and the booked days per resource and month."""
        if not obj.booking_rules:
            return {}
        rule = obj.booking_rules[0]
        resource = self.catalog.objects[obj.field(rule.resource_field).target]
        period = {"from": GraphQLArgument(GraphQLNonNull(self.shared["Date"]), description="The first day."),
                  "to": GraphQLArgument(GraphQLNonNull(self.shared["Date"]), description="The last day (included).")}
        fields: dict[str, GraphQLField] = {}
        available, occupied = names.availability_field(obj), names.occupancy_field(obj)
        if ("query", available) not in self._clashing:
            self.root_kinds[available] = ("availability", resource)
            fields[available] = GraphQLField(
                GraphQLNonNull(self.connection_type(resource)), {**period, **self.list_arguments(resource)},
                resolve=self.resolvers.availability(obj, resource),
                description=f"Your {resource.plural_label} that no active {obj.label} holds on any day of the period "
                            f"(every booking counts, also those you cannot read).")
        row_name = names.occupancy_type_name(obj)
        if ("query", occupied) not in self._clashing and ("type", row_name) not in self._clashing:
            status = obj.field(rule.status_field) if rule.status_field else None
            arguments = {**period, "filter": GraphQLArgument(self.filter_type(resource), description=(
                f"Which {resource.plural_label} (at most 1,000).")) }
            if status is not None:
                arguments["statuses"] = GraphQLArgument(GraphQLList(GraphQLNonNull(self.value_type(obj, status))), description=(
                    "Count only bookings in these statuses (all active ones by default)."))
            self.root_kinds[occupied] = ("occupancy", obj)
            fields[occupied] = GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(self.occupancy_type(obj, resource)))), arguments,
                resolve=self.resolvers.occupancy(obj, resource),
                description=f"Per {resource.label} you may read and calendar month of the period: the days active "
                            f"{obj.plural_label} hold, in {resource.label} order then month order.")
        return fields

    def occupancy_type(self, obj: ObjectDef, resource: ObjectDef) -> GraphQLObjectType:
        name = names.occupancy_type_name(obj)
        return self._once(name, lambda: GraphQLObjectType(name, {
            "resourceId": GraphQLField(GraphQLNonNull(GraphQLID), resolve=read_value("resource_id")),
            "resource": GraphQLField(self.record_type(resource), resolve=_funnel_owner, description=f"The {resource.label}."),
            "month": GraphQLField(GraphQLNonNull(self.shared["Date"]), resolve=read_value("month"),
                                  description="The first day of the month."),
            "from": GraphQLField(GraphQLNonNull(self.shared["Date"]), resolve=read_value("from"),
                                 description="The first day counted (the month's, or the period's)."),
            "to": GraphQLField(GraphQLNonNull(self.shared["Date"]), resolve=read_value("to"), description="The last day counted."),
            "days": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("days"), description="Days counted."),
            "bookedDays": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("booked_days"),
                                       description="Of those, the days an active booking holds."),
            "rate": GraphQLField(GraphQLNonNull(self.shared["Decimal"]), resolve=read_value("rate"),
                                 description="bookedDays / days, 4 decimal places."),
        }, description=f"How much of one month one resource of {obj.plural_label} is booked."))

    # -- maps ------------------------------------------------------------------------------
    def map_fields(self, obj: ObjectDef) -> dict[str, GraphQLField]:
        """``sitesMapGrid`` of an object with geolocation fields: record counts per grid cell."""
        mapped = names.geolocation_fields(obj)
        if not mapped:
            return {}
        enum_name = names.geo_field_type_name(obj)
        geo_field = self._once(enum_name, lambda: GraphQLEnumType(enum_name, {
            names.group_value(f): GraphQLEnumValue(f.api_name, description=f.label) for f in mapped},
            description=f"The geolocation fields of {obj.plural_label}."))
        name = names.map_grid_field(obj)
        self.root_kinds[name] = ("map_grid", obj)
        return {name: GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(self.shared["MapCell"]))), {
                "field": GraphQLArgument(GraphQLNonNull(geo_field), description="The points counted."),
                "cellDegrees": GraphQLArgument(GraphQLNonNull(GraphQLFloat), description=(
                    "The cell size in degrees, 0.001 to 90; cells lie on its multiples. At most 10,000 cells may hold records.")),
                "filter": GraphQLArgument(self.filter_type(obj)),
                "box": GraphQLArgument(self.shared["GeoBoxInput"], description="Only the points within this box."),
            },
            resolve=self.resolvers.map_grid(obj),
            description=f"Your {obj.plural_label} with a value of the field, counted per grid cell (for a zoomed-out map), "
                        f"south to north, then west to east; zoomed in, list them with a withinBox filter.")}

    # -- funnels ---------------------------------------------------------------------------
    def funnel_period_type(self) -> GraphQLEnumType:
        return self._once("FunnelPeriod", lambda: GraphQLEnumType("FunnelPeriod", {
            "MONTH": GraphQLEnumValue("month"), "QUARTER": GraphQLEnumValue("quarter"), "YEAR": GraphQLEnumValue("year")},
            description="The periods a funnel is counted by (of its date field; the period's first day names it)."))

    def stage_conversion_type(self) -> GraphQLObjectType:
        def build():
            return GraphQLObjectType("StageConversion", {
                "businessType": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("business_type"),
                                             description="As named in the object's business type enum."),
                "fromStage": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("from_stage"),
                                          description="As named in the object's stage enum."),
                "toStage": GraphQLField(GraphQLNonNull(GraphQLString), resolve=read_value("to_stage")),
                "reached": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("reached"),
                                        description="Records that reached fromStage (or a later stage of the path)."),
                "converted": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("converted"),
                                          description="Of those, the records that reached toStage (or later)."),
                "rate": GraphQLField(self.shared["Decimal"], resolve=read_value("rate"),
                                     description="converted / reached, 4 decimal places; null when none reached fromStage."),
            }, description="One step of a business type's path through its open stages to won.")

        return self._once("StageConversion", build)

    @staticmethod
    def funnel_amount_fields(obj: ObjectDef) -> list[FieldDef]:
        return [f for f in obj.fields_by_name.values() if f.value_type in NUMERIC_TYPES and not f.system and f.field_type.in_sql(f)]

    @staticmethod
    def funnel_date_fields(obj: ObjectDef) -> list[FieldDef]:
        return [f for f in obj.fields_by_name.values()
                if f.value_type in TEMPORAL_TYPES and f.api_name != "deleted_at" and f.field_type.in_sql(f)]

    def funnel_row_type(self, obj: ObjectDef) -> GraphQLObjectType:
        name = names.type_name(obj, "FunnelRow")

        def build():
            processes = self.process_fields(obj)
            kind = self.process_enum(obj, "business_type") if "business_type" in processes else GraphQLString
            stage = self.process_enum(obj, "stage") if "stage" in processes else GraphQLString
            user = self.catalog.objects.get("user")
            fields = {
                "period": GraphQLField(self.shared["Date"], resolve=read_value("period"),
                                       description="The first day of the period (null without a period)."),
                "businessType": GraphQLField(kind, resolve=read_value("business_type")),
                "stage": GraphQLField(stage, resolve=read_value("stage")),
                "probability": GraphQLField(GraphQLInt, resolve=read_value("probability")),
                "category": GraphQLField(self.shared["StageCategory"], resolve=read_value("category")),
                "ownerId": GraphQLField(GraphQLID, resolve=read_value("owner_id"), description="With byOwner only."),
                "count": GraphQLField(GraphQLNonNull(GraphQLInt), resolve=read_value("count")),
                "amount": GraphQLField(self.shared["Decimal"], resolve=read_value("amount"), description="The sum, exact."),
                "weightedAmount": GraphQLField(self.shared["Decimal"], resolve=read_value("weighted_amount"),
                                               description="amount × probability / 100."),
            }
            if user is not None:
                fields["owner"] = GraphQLField(self.record_type(user), resolve=_funnel_owner, description="With byOwner only.")
            return GraphQLObjectType(name, fields, description=f"The {obj.plural_label} of one stage (period, owner).")

        return self._once(name, build)

    def funnel_fields(self, obj: ObjectDef) -> dict[str, GraphQLField]:
        """``opportunityFunnel`` and ``opportunityStageConversions`` of an object with stages (the
        funnel only with a numeric field to sum); left out while one of their names clashes."""
        if not obj.has_stages:
            return {}
        r = self.resolvers
        fields: dict[str, GraphQLField] = {}
        scope = {"filter": GraphQLArgument(self.filter_type(obj)),
                 "unit": GraphQLArgument(GraphQLID, description="Only records of this org unit and the units below it.")}
        funnel = names.funnel_field(obj)
        amounts = self.funnel_amount_fields(obj)
        if amounts and ("query", funnel) not in self._clashing and not any(
                ("type", t) in self._clashing for t in names.funnel_type_names(obj)):
            amount_type = self._once(names.type_name(obj, "FunnelAmount"), lambda: GraphQLEnumType(
                names.type_name(obj, "FunnelAmount"), {names.group_value(f): GraphQLEnumValue(f.api_name, description=f.label)
                                                       for f in amounts}, description=f"The numeric fields of {obj.plural_label}."))
            arguments = {"amountField": GraphQLArgument(GraphQLNonNull(amount_type), description="The field summed.")}
            dates = self.funnel_date_fields(obj)
            if dates:
                date_type = self._once(names.type_name(obj, "FunnelDate"), lambda: GraphQLEnumType(
                    names.type_name(obj, "FunnelDate"), {names.group_value(f): GraphQLEnumValue(f.api_name, description=f.label)
                                                         for f in dates}, description=f"The date fields of {obj.plural_label}."))
                arguments["dateField"] = GraphQLArgument(date_type, description="The date the periods are of (with period).")
                arguments["period"] = GraphQLArgument(self.funnel_period_type())
            arguments["byOwner"] = GraphQLArgument(GraphQLBoolean, default_value=False, description="A row per owner too.")
            self.root_kinds[funnel] = ("funnel", obj)
            fields[funnel] = GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(self.funnel_row_type(obj)))), {**arguments, **scope},
                resolve=r.funnel(obj), description=f"Count, amount and weighted amount of your {obj.plural_label} per stage "
                                                   f"(and period, owner), in stage order.")
        conversions = names.conversions_field(obj)
        if ("query", conversions) not in self._clashing:
            self.root_kinds[conversions] = ("conversions", obj)
            fields[conversions] = GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(self.stage_conversion_type()))), scope, resolve=r.conversions(obj),
                description=f"How your {obj.plural_label} moved along each business type's stages (from the stage history).")
        return fields

    def mutation_fields(self) -> dict[str, GraphQLField]:
        """The record mutations of every object, as many as ``graphql_names.mutation_fields`` names
        (system objects: their updates only; the admin API creates and deletes users and units)."""
        fields: dict[str, GraphQLField] = {}
        r = self.resolvers
        for obj in self.catalog.objects.values():
            record = self.record_type(obj)
            record_id = GraphQLArgument(GraphQLNonNull(GraphQLID))
            acknowledge = GraphQLArgument(GraphQLList(GraphQLNonNull(GraphQLString)), description=(
                "Warnings seen and accepted, so the write goes ahead: POSSIBLE_DUPLICATE."))
            named = names.mutation_fields(obj)
            self.root_kinds.update({name: (kind, obj) for kind, name in named.items()})
            if "create" in named:
                fields[named["create"]] = GraphQLField(
                    GraphQLNonNull(record), {"input": GraphQLArgument(GraphQLNonNull(self.input_type(obj, True))),
                                             "acknowledge": acknowledge},
                    resolve=r.create(obj))
            if "create_many" in named:
                fields[named["create_many"]] = GraphQLField(
                    GraphQLNonNull(GraphQLList(GraphQLNonNull(record))),
                    {"inputs": GraphQLArgument(GraphQLNonNull(GraphQLList(GraphQLNonNull(self.input_type(obj, True))))),
                     "acknowledge": acknowledge},
                    resolve=r.create_many(obj), description="All or nothing.")
            updatable = self.updatable_fields(obj) or self.process_fields(obj)
            if "update" in named and updatable:
                fields[named["update"]] = GraphQLField(GraphQLNonNull(record), {
                    "id": record_id, "input": GraphQLArgument(GraphQLNonNull(self.input_type(obj, False))),
                    "expectedVersion": GraphQLArgument(GraphQLInt, description="Refuse (CONFLICT) if the record moved past this version."),
                    "acknowledge": acknowledge,
                }, resolve=r.update(obj))
            if "update_many" in named and updatable:
                fields[named["update_many"]] = GraphQLField(
                    GraphQLNonNull(GraphQLList(GraphQLNonNull(record))),
                    {"items": GraphQLArgument(GraphQLNonNull(GraphQLList(GraphQLNonNull(self.update_item_type(obj))))),
                     "acknowledge": acknowledge},
                    resolve=r.update_many(obj), description="All or nothing.")
            if "delete" in named:
                fields[named["delete"]] = GraphQLField(GraphQLNonNull(GraphQLID), {"id": record_id}, resolve=r.delete(obj),
                                                       description="Moves the record (and its details) to the recycle bin.")
            if "restore" in named:
                fields[named["restore"]] = GraphQLField(GraphQLNonNull(record), {"id": record_id}, resolve=r.restore(obj),
                                                        description="Brings the record (and its details) back from the recycle bin.")
            if "transfer" in named:
                fields[named["transfer"]] = GraphQLField(GraphQLNonNull(record), {
                    "id": record_id, "ownerId": GraphQLArgument(GraphQLNonNull(GraphQLID), description="The new owner."),
                    "orgUnitId": GraphQLArgument(GraphQLID, description="Defaults to the new owner's unit."),
                }, resolve=r.transfer(obj), description="Gives the record to another owner (and org unit); kept in its history.")
        return fields


def _funnel_owner(row, info):
    """The related record of a row (a funnel's owner, an occupancy's resource), read by the root
    resolver for every row at once."""
    return row.get(RELATED + info.path.key)


class Connection:
    """A page as the connection types read it."""

    __slots__ = ("branch", "after")

    def __init__(self, branch, after: str | None):
        self.branch = branch
        self.after = after


def _edges(connection: Connection, _info):
    branch = connection.branch
    return [(branch, index) for index in range(len(branch.records))]


def _nodes(connection: Connection, _info):
    return connection.branch.records


def _edge_cursor(edge, _info):
    branch, index = edge
    return branch.cursor(index)


def _edge_node(edge, _info):
    branch, index = edge
    return branch.records[index]


def _page_info(connection: Connection, _info):
    branch = connection.branch
    return {
        "has_next_page": branch.has_next_page, "has_previous_page": connection.after is not None,
        "start_cursor": branch.cursor(0) if branch.records else None, "end_cursor": branch.end_cursor,
    }


def _total_count(connection: Connection, _info):
    return connection.branch.total_count
