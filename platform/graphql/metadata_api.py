"""The metadata API: objects, fields, business types, validation rules and layouts for
administrators, in the same endpoint as the records (and the layout a form of the caller uses).

Written with graphene (the types are fixed); each mutation calls the metadata service, so every
check, the transaction and the change log are the same as from the CLI. A change's new schema is
served from the next request on, in this process and every other one.
"""
from __future__ import annotations

from typing import Any

import graphene

from ..metadata import graphql_names
from ..metadata.definitions import (
    BusinessTypeDef,
    FieldDef,
    LayoutDef,
    ObjectDef,
    StageDef,
    thaw,
)
from ..metadata.errors import (
    FieldError,
    InvalidDefinition,
    LowcodeError,
    ValidationFailed,
)
from ..metadata.fieldtypes import registry
from ..metadata.names import camel_case
from ..runtime.access import FieldAccess
from .scalars import JSON, DateTime, Decimal

FieldTypeName = graphene.Enum("FieldTypeName", [(name.upper(), name) for name in registry.names()],
                              description="The kinds of field an object can have.")


class OnDelete(graphene.Enum):
    """What deleting a lookup's target does to the records pointing at it (master-detail: cascade)."""

    SET_NULL = "set_null"
    RESTRICT = "restrict"


class PicklistValue(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    order = graphene.Int()
    active = graphene.Boolean(required=True)
    graphql_name = graphene.String(required=True, description="The enum value clients use.")

    @staticmethod
    def resolve_graphql_name(value, _info):
        return graphql_names.enum_value_name(value["api_name"])

    @staticmethod
    def resolve_active(value, _info):
        return value.get("active", True)


class PicklistValueInput(graphene.InputObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    order = graphene.Int()
    active = graphene.Boolean()


def _option_fields(values_type) -> dict:
    """The settings of a field, for the output type and the input type alike; each field type uses some."""
    return {
        "max_length": graphene.Int(), "pattern": graphene.String(), "precision": graphene.Int(), "scale": graphene.Int(),
        "min": Decimal(), "max": Decimal(), "values": graphene.List(graphene.NonNull(values_type)),
        "restricted": graphene.Boolean(), "target": graphene.String(), "on_delete": OnDelete(),
        "relationship_name": graphene.String(), "format": graphene.String(), "start": graphene.Int(),
        "expression": graphene.String(description="Formula: a CEL expression over `record` (and `now`)."),
        "result_type": graphene.String(description="Formula: text, integer, decimal, currency, percent, boolean, date or datetime."),
        "child_object": graphene.String(description="Roll-up: the detail object summarized."),
        "relationship_field": graphene.String(description="Roll-up: the detail's master-detail field pointing here (when it has several)."),
        "function": graphene.String(description="Roll-up: count, sum, min or max."),
        "aggregate_field": graphene.String(description="Roll-up: the detail field summed, or whose least or greatest value is kept."),
        "filter": graphene.String(description="Roll-up: a CEL condition over the detail `record`; only details meeting it count."),
    }


FieldOptions = type("FieldOptions", (graphene.ObjectType,), {
    **_option_fields(PicklistValue),
    "in_sql": graphene.Boolean(description="Formula: computed by the database, so it can be filtered, sorted and grouped on."),
    "not_in_sql_because": graphene.String(description="Formula: why it is computed after reading instead."),
})
FieldOptionsInput = type("FieldOptionsInput", (graphene.InputObjectType,), _option_fields(PicklistValueInput))


class FieldDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    type = graphene.Field(FieldTypeName, required=True)
    required = graphene.Boolean(required=True)
    unique = graphene.Boolean(required=True)
    indexed = graphene.Boolean(required=True)
    tracked = graphene.Boolean(required=True)
    help_text = graphene.String(required=True)
    description = graphene.String(required=True)
    default_value = JSON()
    options = graphene.Field(FieldOptions, required=True)
    system = graphene.Boolean(required=True, description="Built in; cannot be changed or deleted.")
    graphql_name = graphene.String(required=True, description="The field holding the value in record types.")
    relation_name = graphene.String(description="For lookups: the field resolving the related record.")

    @staticmethod
    def resolve_default_value(field: FieldDef, _info):
        return thaw(field.default)

    @staticmethod
    def resolve_options(field: FieldDef, _info):
        return thaw(field.options)

    @staticmethod
    def resolve_graphql_name(field: FieldDef, _info):
        return graphql_names.value_field(field)

    @staticmethod
    def resolve_relation_name(field: FieldDef, _info):
        return graphql_names.relation_field(field)


class StageCategory(graphene.Enum):
    """Where a stage leaves a record: still open, won or lost (leaving won or lost is reopening)."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class StageDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    probability = graphene.Int(required=True, description="The win probability of records in this stage, 0 to 100.")
    category = graphene.Field(StageCategory, required=True)
    expected_days = graphene.Int(description="How long a record should stay; null: no limit.")
    required_fields = graphene.List(graphene.NonNull(graphene.String), required=True,
                                    description="Fields (api names) a record needs to enter this stage.")
    graphql_name = graphene.String(required=True, description="The stage's value in the record API's stage enum.")

    @staticmethod
    def resolve_required_fields(stage: StageDef, _info):
        return list(stage.required_fields)

    @staticmethod
    def resolve_graphql_name(stage: StageDef, _info):
        return graphql_names.enum_value_name(stage.api_name)


class PicklistSubset(graphene.ObjectType):
    field = graphene.String(required=True, description="The picklist field (api name).")
    values = graphene.List(graphene.NonNull(graphene.String), required=True,
                           description="The values (api names) records of this type may take.")


class BusinessTypeDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    description = graphene.String(required=True)
    active = graphene.Boolean(required=True, description="Inactive types stay on their records and are refused on new ones.")
    default = graphene.Boolean(required=True, description="The type of new records that name none.")
    picklists = graphene.List(graphene.NonNull(PicklistSubset), required=True,
                              description="Picklists limited to some of their values (the others: every value).")
    stages = graphene.List(graphene.NonNull(StageDefinition), required=True, description="In order.")
    graphql_name = graphene.String(required=True, description="The type's value in the record API's business type enum.")

    @staticmethod
    def resolve_picklists(kind: BusinessTypeDef, _info):
        return [{"field": name, "values": list(values)} for name, values in kind.picklists.items()]

    @staticmethod
    def resolve_stages(kind: BusinessTypeDef, _info):
        return list(kind.stages)

    @staticmethod
    def resolve_graphql_name(kind: BusinessTypeDef, _info):
        return graphql_names.enum_value_name(kind.api_name)


class ValidationRuleDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    expression = graphene.String(required=True, description="CEL over record, old (null on create), user and now; must be true.")
    message = graphene.String(required=True, description="Reported when the expression is not true.")
    field = graphene.String(description="The field (api name) the message is reported on.")
    business_type = graphene.String(description="Only records of this business type (api name); null: every record.")
    active = graphene.Boolean(required=True)


class BookingRuleDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    resource_field = graphene.String(required=True, description="The lookup naming the booked record.")
    start_field = graphene.String(required=True, description="The date field of the first day.")
    end_field = graphene.String(required=True, description="The date field of the last day (included).")
    status_field = graphene.String(description="The picklist saying whether a booking is active; null: every booking is.")
    active_values = graphene.List(graphene.NonNull(graphene.String), required=True,
                                  description="The statuses whose bookings hold the resource.")
    message = graphene.String(required=True, description="Reported on the start field when bookings would overlap.")


class AutomationDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    kind = graphene.String(required=True, description="assignment_rule, duplicate_rule, approval_process, trigger or reminder.")
    label = graphene.String(required=True)
    settings = graphene.Field(JSON, required=True, description="What the kind needs; checked by the kind when saved.")
    active = graphene.Boolean(required=True)
    position = graphene.Int(required=True, description="Automations of one kind apply in this order.")

    @staticmethod
    def resolve_settings(automation, _info):
        return automation.as_dict()["settings"]


class AutomationInput(graphene.InputObjectType):
    api_name = graphene.String(required=True)
    kind = graphene.String(required=True)
    label = graphene.String(required=True)
    settings = JSON(required=True)
    active = graphene.Boolean()
    position = graphene.Int()


class AutomationUpdateInput(graphene.InputObjectType):
    label = graphene.String()
    settings = JSON(description="Replaces the settings whole.")
    active = graphene.Boolean()
    position = graphene.Int()


class LayoutField(graphene.ObjectType):
    field = graphene.String(required=True, description="The field's api name.")
    graphql_name = graphene.String(required=True, description="The record field holding its value.")
    label = graphene.String(required=True)
    type = graphene.Field(FieldTypeName, required=True)
    required = graphene.Boolean(required=True, description="Refused empty on create (and when the business type changes).")
    read_only = graphene.Boolean(required=True)


class LayoutSection(graphene.ObjectType):
    label = graphene.String(required=True)
    columns = graphene.Int(required=True)
    fields = graphene.List(graphene.NonNull(LayoutField), required=True)


class LayoutRelatedList(graphene.ObjectType):
    object = graphene.String(required=True, description="The related object (api name).")
    field = graphene.String(required=True, description="Its field pointing at this object.")
    label = graphene.String(required=True)
    columns = graphene.List(graphene.NonNull(graphene.String), required=True, description="Fields (api names) shown.")
    graphql_name = graphene.String(description="The related list's connection in the record type, if it has one.")


class Layout(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    business_type = graphene.String(description="For records of this business type (api name); null: any.")
    role = graphene.String(description="For users with this role; null: any.")
    sections = graphene.List(graphene.NonNull(LayoutSection), required=True)
    related_lists = graphene.List(graphene.NonNull(LayoutRelatedList), required=True)


def layout_view(catalog, obj: ObjectDef, layout: LayoutDef, access: FieldAccess | None = None) -> dict[str, Any]:
    """A layout with what a client needs to render its form: each field's label, type and GraphQL name.
    With the caller's ``access``, fields they may not read are left out and those they may not edit
    are read-only."""
    access = access or FieldAccess()

    def item(entry):
        field = obj.field(entry["field"])
        read_only = bool(entry.get("read_only")) or entry["field"] in access.read_only
        return {"field": entry["field"], "graphql_name": graphql_names.value_field(field) if field else camel_case(entry["field"]),
                "label": field.label if field else entry["field"], "type": field.type if field else "text",
                "required": bool(entry.get("required")), "read_only": read_only}

    def related(entry):
        child = catalog.objects.get(entry["object"])
        link = child.field(entry["field"]) if child else None
        return {"object": entry["object"], "field": entry["field"], "columns": list(entry.get("columns") or ()),
                "label": entry.get("label") or (child.plural_label if child else entry["object"]),
                "graphql_name": graphql_names.children_name(child, link) if link else None}

    return {"api_name": layout.api_name, "label": layout.label, "business_type": layout.business_type, "role": layout.role,
            "sections": [{"label": section["label"], "columns": section.get("columns", 2),
                          "fields": [item(entry) for entry in section["fields"] if entry["field"] not in access.hidden]}
                         for section in layout.sections],
            "related_lists": [related(entry) for entry in layout.related_lists]}


class ObjectDefinition(graphene.ObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    plural_api_name = graphene.String(required=True)
    plural_label = graphene.String(required=True)
    description = graphene.String(required=True)
    system = graphene.Boolean(required=True)
    fields = graphene.List(graphene.NonNull(FieldDefinition), required=True, include_system=graphene.Boolean(default_value=False))
    graphql_type = graphene.String(required=True, description="The record type's name in this schema.")
    business_types = graphene.List(graphene.NonNull(BusinessTypeDefinition), required=True,
                                   description="Kinds of record with their own picklist values and stages, in order.")
    validation_rules = graphene.List(graphene.NonNull(ValidationRuleDefinition), required=True,
                                     description="Checks every write of the object's records must pass, in order.")
    layouts = graphene.List(graphene.NonNull(Layout), required=True, description="Form layouts, by business type and role.")
    booking_rules = graphene.List(graphene.NonNull(BookingRuleDefinition), required=True,
                                  description="At most one: the object's records book a resource over dates.")
    automations = graphene.List(graphene.NonNull(AutomationDefinition), required=True, kind=graphene.String(),
                                description="Assignment and duplicate rules, approvals, triggers and reminders, by kind and order.")

    @staticmethod
    def resolve_business_types(obj: ObjectDef, _info):
        return list(obj.business_types)

    @staticmethod
    def resolve_validation_rules(obj: ObjectDef, _info):
        return list(obj.validation_rules)

    @staticmethod
    def resolve_booking_rules(obj: ObjectDef, _info):
        return list(obj.booking_rules)

    @staticmethod
    def resolve_automations(obj: ObjectDef, _info, kind=None):
        return [a for a in obj.automations if kind is None or a.kind == kind]

    @staticmethod
    def resolve_layouts(obj: ObjectDef, info):
        return [layout_view(info.context.catalog, obj, layout) for layout in obj.layouts]

    @staticmethod
    def resolve_fields(obj: ObjectDef, _info, include_system=False):
        return list(obj.fields_by_name.values()) if include_system else list(obj.fields)

    @staticmethod
    def resolve_graphql_type(obj: ObjectDef, _info):
        return graphql_names.type_name(obj)


class FieldTypeInfo(graphene.ObjectType):
    name = graphene.Field(FieldTypeName, required=True)
    operators = graphene.List(graphene.NonNull(graphene.String), required=True)
    sortable = graphene.Boolean(required=True)
    writable = graphene.Boolean(required=True)


class MetadataChange(graphene.ObjectType):
    version = graphene.Int(required=True)
    actor_id = graphene.ID()
    at = graphene.Field(DateTime, required=True)
    action = graphene.String(required=True)
    object_api_name = graphene.String(required=True)
    field_api_name = graphene.String()
    before = JSON()
    after = JSON()


class ObjectInput(graphene.InputObjectType):
    api_name = graphene.String(required=True)
    label = graphene.String(required=True)
    plural_api_name = graphene.String()
    plural_label = graphene.String()
    description = graphene.String()
    fields = graphene.List(graphene.NonNull(lambda: FieldInput), description="Fields created with the object.")


class ObjectUpdateInput(graphene.InputObjectType):
    label = graphene.String()
    plural_label = graphene.String()
    description = graphene.String()


def _field_settings(creating: bool) -> dict:
    """A field's settings as input: all of them to create one (api name, label and type required),
    any of them to change one (its api name never changes)."""
    name = {"api_name": graphene.String(required=True)} if creating else {}
    settings = {
        "label": graphene.String(required=creating), "type": FieldTypeName(required=creating),
        "required": graphene.Boolean(), "unique": graphene.Boolean(), "indexed": graphene.Boolean(),
        "tracked": graphene.Boolean(), "help_text": graphene.String(), "description": graphene.String(),
        "default_value": JSON(), "options": FieldOptionsInput(),
    }
    return {**name, **settings}


FieldInput = type("FieldInput", (graphene.InputObjectType,), _field_settings(creating=True))
FieldUpdateInput = type("FieldUpdateInput", (graphene.InputObjectType,), _field_settings(creating=False))


class StageInput(graphene.InputObjectType):
    api_name = graphene.String(required=True, description="Unique among the stages of every business type of the object.")
    label = graphene.String(required=True)
    probability = graphene.Int(required=True, description="0 to 100.")
    category = StageCategory(description="Defaults to OPEN.")
    expected_days = graphene.Int(description="0 to 3650; null: no limit.")
    required_fields = graphene.List(graphene.NonNull(graphene.String), description="Field api names needed to enter the stage.")


class PicklistSubsetInput(graphene.InputObjectType):
    field = graphene.String(required=True)
    values = graphene.List(graphene.NonNull(graphene.String), required=True)


def _business_type_settings(creating: bool) -> dict:
    """A business type as input: api name and label required to create one; any part to change one
    (``stages`` and ``picklists`` given replace the whole list)."""
    name = {"api_name": graphene.String(required=True)} if creating else {}
    return {
        **name, "label": graphene.String(required=creating), "description": graphene.String(), "active": graphene.Boolean(),
        "default": graphene.Boolean(description="Make this the default type (the first type of an object is)."),
        "picklists": graphene.List(graphene.NonNull(PicklistSubsetInput), description="Picklists limited to some values; "
                                   "the list replaces the type's subsets."),
        "stages": graphene.List(graphene.NonNull(StageInput), description="The ordered stages; the list replaces the type's stages."),
    }


BusinessTypeInput = type("BusinessTypeInput", (graphene.InputObjectType,), _business_type_settings(creating=True))
BusinessTypeUpdateInput = type("BusinessTypeUpdateInput", (graphene.InputObjectType,), _business_type_settings(creating=False))


def _rule_settings(creating: bool) -> dict:
    """A validation rule as input: api name, expression and message to create one; any of them (but
    the api name) to change one."""
    name = {"api_name": graphene.String(required=True)} if creating else {}
    return {**name, "expression": graphene.String(required=creating, description="CEL; must evaluate to true."),
            "message": graphene.String(required=creating), "field": graphene.String(description="Report the message on this field."),
            "business_type": graphene.String(description="Only records of this business type."), "active": graphene.Boolean()}


def _booking_rule_settings(creating: bool) -> dict:
    """A booking rule as input: everything to create one; any setting (but the api name) to change one."""
    name = {"api_name": graphene.String(required=True)} if creating else {}
    return {**name, "label": graphene.String(required=creating), "resource_field": graphene.String(required=creating),
            "start_field": graphene.String(required=creating), "end_field": graphene.String(required=creating),
            "status_field": graphene.String(), "active_values": graphene.List(graphene.NonNull(graphene.String)),
            "message": graphene.String()}


BookingRuleInput = type("BookingRuleInput", (graphene.InputObjectType,), _booking_rule_settings(creating=True))
BookingRuleUpdateInput = type("BookingRuleUpdateInput", (graphene.InputObjectType,), _booking_rule_settings(creating=False))
ValidationRuleInput = type("ValidationRuleInput", (graphene.InputObjectType,), _rule_settings(creating=True))
ValidationRuleUpdateInput = type("ValidationRuleUpdateInput", (graphene.InputObjectType,), _rule_settings(creating=False))


class LayoutFieldInput(graphene.InputObjectType):
    field = graphene.String(required=True)
    required = graphene.Boolean()
    read_only = graphene.Boolean()


class LayoutSectionInput(graphene.InputObjectType):
    label = graphene.String(required=True)
    columns = graphene.Int(description="1 to 4; defaults to 2.")
    fields = graphene.List(graphene.NonNull(LayoutFieldInput), required=True)


class LayoutRelatedListInput(graphene.InputObjectType):
    object = graphene.String(required=True)
    field = graphene.String(required=True, description="The related object's field pointing at this object.")
    label = graphene.String()
    columns = graphene.List(graphene.NonNull(graphene.String))


def _layout_settings(creating: bool) -> dict:
    name = {"api_name": graphene.String(required=True)} if creating else {}
    return {**name, "label": graphene.String(required=creating), "business_type": graphene.String(), "role": graphene.String(),
            "sections": graphene.List(graphene.NonNull(LayoutSectionInput), required=creating),
            "related_lists": graphene.List(graphene.NonNull(LayoutRelatedListInput))}


LayoutInput = type("LayoutInput", (graphene.InputObjectType,), _layout_settings(creating=True))
LayoutUpdateInput = type("LayoutUpdateInput", (graphene.InputObjectType,), _layout_settings(creating=False))


def _plain(value: Any) -> Any:
    """Input containers and enum members as plain data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def field_definition(data: dict[str, Any]) -> dict[str, Any]:
    """A FieldInput as the metadata service's definition."""
    definition = _plain(data)
    if "default_value" in definition:
        definition["default"] = definition.pop("default_value")
    options = definition.get("options")
    if options:
        if definition.get("type") == "integer":
            for bound in ("min", "max"):
                if isinstance(options.get(bound), str) and options[bound].lstrip("-").isdigit():
                    options[bound] = int(options[bound])
        if isinstance(options.get("values"), list):
            options["values"] = [{k: v for k, v in item.items() if v is not None} for item in options["values"]]
    return definition


def _object_definition(data: dict[str, Any]) -> dict[str, Any]:
    definition = _plain(data)
    if definition.get("fields") is not None:
        definition["fields"] = [field_definition(f) for f in data["fields"]]
    return definition


class MetadataQuery(graphene.ObjectType):
    objects = graphene.List(graphene.NonNull(ObjectDefinition), required=True, include_system=graphene.Boolean(default_value=True))
    object = graphene.Field(ObjectDefinition, required=True, api_name=graphene.String(required=True))
    field_types = graphene.List(graphene.NonNull(FieldTypeInfo), required=True)
    metadata_version = graphene.Int(required=True)
    metadata_changes = graphene.List(graphene.NonNull(MetadataChange), required=True,
                                     object=graphene.String(), limit=graphene.Int(default_value=50))

    layout = graphene.Field(Layout, object=graphene.String(required=True), business_type=graphene.String(
        description="The record's business type (api name); defaults to the object's default type."),
        description="The layout your forms of this object use (for the business type and your roles); null: none.")

    @staticmethod
    def resolve_layout(_root, info, object, business_type=None):
        context = info.context
        obj = context.catalog.object(object)
        if business_type is None and obj.default_business_type is not None:
            business_type = obj.default_business_type.api_name
        elif business_type is not None and obj.business_type(business_type) is None:
            raise ValidationFailed.of([FieldError("UNKNOWN_BUSINESS_TYPE", "businessType",
                                                  f"'{object}' has no business type '{business_type}'")])
        roles = tuple(dict.fromkeys(m.role for m in getattr(context.actor.access, "memberships", ())))
        layout = obj.layout_for(business_type, roles)
        access = context.records.field_access(context.actor, obj.api_name)
        return None if layout is None else layout_view(context.catalog, obj, layout, access)

    @staticmethod
    def resolve_objects(_root, info, include_system=True):
        objects = sorted(info.context.catalog.objects.values(), key=lambda o: o.api_name)
        return [o for o in objects if include_system or not o.system]

    @staticmethod
    def resolve_object(_root, info, api_name):
        return info.context.catalog.object(api_name)

    @staticmethod
    def resolve_field_types(_root, _info):
        return [
            {"name": name, "operators": sorted(t.operators), "sortable": t.sortable, "writable": t.writable}
            for name in registry.names() for t in [registry.get(name)]
        ]

    @staticmethod
    def resolve_metadata_version(_root, info):
        return info.context.catalog.version

    @staticmethod
    def resolve_metadata_changes(_root, info, object=None, limit=50):
        return info.context.metadata.changes(object, limit=max(1, min(limit, 500)))


def _input_path(path: str | None) -> str:
    """A definition path (``fields.1.options.max_length``) as the GraphQL input's (``input.fields.1.options.maxLength``)."""
    segments = [s if s.isdigit() else "defaultValue" if s == "default" else camel_case(s) for s in (path or "").split(".") if s]
    return ".".join(["input", *segments])


def _changing(call):
    """Run a metadata change; its error paths name the GraphQL input."""
    try:
        return call()
    except LowcodeError as error:
        error.errors = [FieldError(e.code, _input_path(e.field), e.message, e.ctx) for e in error.errors]
        if error.field and error.field not in ("object", "field"):
            error.field = _input_path(error.field)
        raise


def business_type_definition(data: dict[str, Any]) -> dict[str, Any]:
    """A BusinessTypeInput as the metadata service's definition (picklist subsets as a mapping);
    a picklist listed twice is refused here, with its input path."""
    definition = _plain(data)
    subsets = definition.get("picklists")
    if isinstance(subsets, list):
        seen: dict[str, int] = {}
        errors = []
        for i, subset in enumerate(subsets):
            if subset["field"] in seen:
                errors.append(FieldError("DUPLICATE", f"input.picklists.{i}.field",
                                         f"'{subset['field']}' is already item {seen[subset['field']]} of the list"))
            seen.setdefault(subset["field"], i)
        if errors:
            raise InvalidDefinition("The business type has problems; fix the listed fields.", errors=errors)
        definition["picklists"] = {subset["field"]: subset["values"] for subset in subsets}
    for stage in definition.get("stages") or ():
        if stage.get("category") is None:
            stage.pop("category", None)
    return definition


def _changing_automation(call):
    """Run an automation change; error paths name the input (``input.settings.steps.0.role``), the
    settings' own keys kept as they are written."""
    def path(field: str | None) -> str | None:
        if not field or field in ("object", "field"):
            return field
        head, _, rest = field.partition(".")
        return ".".join(["input", camel_case(head), *([rest] if rest else [])])

    try:
        return call()
    except LowcodeError as error:
        error.errors = [FieldError(e.code, path(e.field), e.message, e.ctx) for e in error.errors]
        error.field = "apiName" if error.field == "api_name" and error.code == "NOT_FOUND" else path(error.field)
        raise


def _business_type_path(path: str | None, data: dict[str, Any] | None) -> str:
    """A business type definition path as the GraphQL input's: ``stages.1.required_fields.0`` is
    ``input.stages.1.requiredFields.0``; a picklist (``picklists.source.2``) is named by its place in
    the input's list (``input.picklists.0.values.2``, ``input.picklists.0.field``)."""
    segments = [s for s in (path or "").split(".") if s]
    if len(segments) >= 2 and segments[0] == "picklists":
        listed = [subset.get("field") for subset in (data or {}).get("picklists") or ()]
        if segments[1] in listed:
            index = listed.index(segments[1])
            rest = ["values", *segments[2:]] if len(segments) > 2 else ["field"]
            return ".".join(["input", "picklists", str(index), *rest])
        return "input.picklists"
    return ".".join(["input", *(s if s.isdigit() else camel_case(s) for s in segments)])


def _changing_business_type(call, data: dict[str, Any] | None = None):
    """Run a business type change; its error paths name the GraphQL input (``input.stages.1.probability``)
    or the argument (``apiName``, ``object``)."""
    try:
        return call()
    except LowcodeError as error:
        if getattr(error, "in_graphql_names", False):
            raise
        error.errors = [FieldError(e.code, e.field if (e.field or "").startswith("input.") else _business_type_path(e.field, data),
                                   e.message, e.ctx) for e in error.errors]
        if error.field == "api_name" and (data is None or error.code == "NOT_FOUND"):
            error.field = "apiName"
        elif error.field and error.field not in ("object", "field"):
            error.field = _business_type_path(error.field, data)
        raise


def _layout_definition(data: dict[str, Any]) -> dict[str, Any]:
    """A LayoutInput as the metadata service's definition (options left out take their defaults)."""
    definition = _plain(data)
    for section in definition.get("sections") or ():
        if section.get("columns") is None:
            section.pop("columns", None)
        section["fields"] = [{k: v for k, v in item.items() if v is not None} for item in section.get("fields") or ()]
    for related in definition.get("related_lists") or ():
        for key in ("label", "columns"):
            if related.get(key) is None:
                related.pop(key, None)
    return definition


def _changed_object(context, api_name: str) -> ObjectDef:
    """The object as the request's Catalog has it (labels and types of a layout's fields)."""
    return context.catalog.object(api_name)


class MetadataMutation(graphene.ObjectType):
    create_object = graphene.Field(ObjectDefinition, required=True, input=ObjectInput(required=True))
    update_object = graphene.Field(ObjectDefinition, required=True, api_name=graphene.String(required=True),
                                   input=ObjectUpdateInput(required=True))
    delete_object = graphene.String(required=True, api_name=graphene.String(required=True))
    create_field = graphene.Field(FieldDefinition, required=True, object=graphene.String(required=True),
                                  input=FieldInput(required=True))
    update_field = graphene.Field(FieldDefinition, required=True, object=graphene.String(required=True),
                                  api_name=graphene.String(required=True), input=FieldUpdateInput(required=True))
    delete_field = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True))
    create_business_type = graphene.Field(BusinessTypeDefinition, required=True, object=graphene.String(required=True),
                                          input=BusinessTypeInput(required=True),
                                          description="A new kind of record of the object; its first is the default.")
    update_business_type = graphene.Field(BusinessTypeDefinition, required=True, object=graphene.String(required=True),
                                          api_name=graphene.String(required=True), input=BusinessTypeUpdateInput(required=True),
                                          description="Stages given replace the list; stages records are in may not go.")
    delete_business_type = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True),
                                           description="Only a type no record has; the default goes last.")

    create_validation_rule = graphene.Field(ValidationRuleDefinition, required=True, object=graphene.String(required=True),
                                            input=ValidationRuleInput(required=True))
    update_validation_rule = graphene.Field(ValidationRuleDefinition, required=True, object=graphene.String(required=True),
                                            api_name=graphene.String(required=True), input=ValidationRuleUpdateInput(required=True))
    delete_validation_rule = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True))
    create_booking_rule = graphene.Field(BookingRuleDefinition, required=True, object=graphene.String(required=True),
                                         input=BookingRuleInput(required=True), description=(
                                             "Make the object's records bookings: two active bookings of one resource never "
                                             "overlap (refused while records already do)."))
    update_booking_rule = graphene.Field(BookingRuleDefinition, required=True, object=graphene.String(required=True),
                                         api_name=graphene.String(required=True), input=BookingRuleUpdateInput(required=True))
    delete_booking_rule = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True))
    create_automation = graphene.Field(AutomationDefinition, required=True, object=graphene.String(required=True),
                                       input=AutomationInput(required=True),
                                       description="Configure automation on an object; refused with every problem of its settings.")
    update_automation = graphene.Field(AutomationDefinition, required=True, object=graphene.String(required=True),
                                       api_name=graphene.String(required=True), input=AutomationUpdateInput(required=True))
    delete_automation = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True))
    create_layout = graphene.Field(Layout, required=True, object=graphene.String(required=True), input=LayoutInput(required=True),
                                   description="A form layout for a business type and/or role (neither: the default).")
    update_layout = graphene.Field(Layout, required=True, object=graphene.String(required=True), api_name=graphene.String(required=True),
                                   input=LayoutUpdateInput(required=True), description="Sections and related lists given replace the lists.")
    delete_layout = graphene.String(required=True, object=graphene.String(required=True), api_name=graphene.String(required=True))

    @staticmethod
    def resolve_create_validation_rule(_root, info, object, input):
        context = info.context
        data = _plain(input)
        return _changing_business_type(lambda: context.metadata.create_validation_rule(context.actor, object, data), data)

    @staticmethod
    def resolve_update_validation_rule(_root, info, object, api_name, input):
        context = info.context
        data = _plain(input)
        return _changing_business_type(lambda: context.metadata.update_validation_rule(context.actor, object, api_name, data), data)

    @staticmethod
    def resolve_delete_validation_rule(_root, info, object, api_name):
        context = info.context
        _changing_business_type(lambda: context.metadata.delete_validation_rule(context.actor, object, api_name))
        return api_name

    @staticmethod
    def resolve_create_booking_rule(_root, info, object, input):
        context = info.context
        data = _plain(input)
        return _changing_business_type(lambda: context.metadata.create_booking_rule(context.actor, object, data), data)

    @staticmethod
    def resolve_update_booking_rule(_root, info, object, api_name, input):
        context = info.context
        data = _plain(input)
        return _changing_business_type(lambda: context.metadata.update_booking_rule(context.actor, object, api_name, data), data)

    @staticmethod
    def resolve_delete_booking_rule(_root, info, object, api_name):
        context = info.context
        _changing_business_type(lambda: context.metadata.delete_booking_rule(context.actor, object, api_name))
        return api_name

    @staticmethod
    def resolve_create_automation(_root, info, object, input):
        context = info.context
        data = _plain(input)
        return _changing_automation(lambda: context.metadata.create_automation(context.actor, object, data))

    @staticmethod
    def resolve_update_automation(_root, info, object, api_name, input):
        context = info.context
        data = _plain(input)
        return _changing_automation(lambda: context.metadata.update_automation(context.actor, object, api_name, data))

    @staticmethod
    def resolve_delete_automation(_root, info, object, api_name):
        context = info.context
        _changing_automation(lambda: context.metadata.delete_automation(context.actor, object, api_name))
        return api_name

    @staticmethod
    def resolve_create_layout(_root, info, object, input):
        context = info.context
        data = _layout_definition(input)
        layout = _changing_business_type(lambda: context.metadata.create_layout(context.actor, object, data), data)
        return layout_view(context.catalog, _changed_object(context, object), layout)

    @staticmethod
    def resolve_update_layout(_root, info, object, api_name, input):
        context = info.context
        data = _layout_definition(input)
        layout = _changing_business_type(lambda: context.metadata.update_layout(context.actor, object, api_name, data), data)
        return layout_view(context.catalog, _changed_object(context, object), layout)

    @staticmethod
    def resolve_delete_layout(_root, info, object, api_name):
        context = info.context
        _changing_business_type(lambda: context.metadata.delete_layout(context.actor, object, api_name))
        return api_name

    @staticmethod
    def resolve_create_object(_root, info, input):
        context = info.context
        return _changing(lambda: context.metadata.create_object(context.actor, _object_definition(input)))

    @staticmethod
    def resolve_update_object(_root, info, api_name, input):
        context = info.context
        return _changing(lambda: context.metadata.update_object(context.actor, api_name, _plain(input)))

    @staticmethod
    def resolve_delete_object(_root, info, api_name):
        context = info.context
        context.metadata.delete_object(context.actor, api_name)
        return api_name

    @staticmethod
    def resolve_create_field(_root, info, object, input):
        context = info.context
        return _changing(lambda: context.metadata.create_field(context.actor, object, field_definition(input)))

    @staticmethod
    def resolve_update_field(_root, info, object, api_name, input):
        context = info.context
        return _changing(lambda: context.metadata.update_field(context.actor, object, api_name, field_definition(input)))

    @staticmethod
    def resolve_delete_field(_root, info, object, api_name):
        context = info.context
        context.metadata.delete_field(context.actor, object, api_name)
        return api_name

    @staticmethod
    def resolve_create_business_type(_root, info, object, input):
        context = info.context
        return _changing_business_type(
            lambda: context.metadata.create_business_type(context.actor, object, business_type_definition(input)), _plain(input))

    @staticmethod
    def resolve_update_business_type(_root, info, object, api_name, input):
        context = info.context
        return _changing_business_type(
            lambda: context.metadata.update_business_type(context.actor, object, api_name, business_type_definition(input)),
            _plain(input))

    @staticmethod
    def resolve_delete_business_type(_root, info, object, api_name):
        context = info.context
        _changing_business_type(lambda: context.metadata.delete_business_type(context.actor, object, api_name))
        return api_name
