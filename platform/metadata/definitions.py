"""Immutable definitions of objects and fields, as held by a Catalog."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

from .fieldtypes import FieldType, registry
from .names import table_name


def freeze(value: Any) -> Any:
    """A read-only deep copy of plain JSON-like data."""
    kind = type(value)
    if kind is dict or kind is MappingProxyType:
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain, mutable JSON-like data from a frozen value."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class FieldDef:
    api_name: str
    label: str
    type: str
    required: bool = False
    unique: bool = False
    indexed: bool = False
    tracked: bool = False
    default: Any = None
    help_text: str = ""
    description: str = ""
    options: Mapping[str, Any] = dc_field(default_factory=lambda: MappingProxyType({}))
    system: bool = False
    """Built in: every record has it; it is not stored in ``lc_field`` and cannot change."""
    position: int = 0

    @cached_property
    def field_type(self) -> FieldType:
        return registry.get(self.type)

    @cached_property
    def value(self) -> "FieldDef":
        """This field as its values are typed: itself, or a formula's or roll-up's result."""
        return self.field_type.value_field(self)

    @property
    def value_type(self) -> str:
        return self.value.type

    @property
    def writable(self) -> bool:
        return not self.system and self.field_type.writable

    @property
    def target(self) -> str | None:
        """The referenced object of a lookup or master-detail field."""
        return self.options.get("target") if self.field_type.references else None

    @property
    def is_unique(self) -> bool:
        return self.unique or self.field_type.always_unique

    @property
    def is_indexed(self) -> bool:
        return self.indexed or self.is_unique or self.field_type.always_indexed

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_name": self.api_name, "label": self.label, "type": self.type, "required": self.required,
            "unique": self.unique, "indexed": self.indexed, "tracked": self.tracked, "default": thaw(self.default),
            "help_text": self.help_text, "description": self.description, "options": thaw(self.options),
        }


STAGE_CATEGORIES = ("open", "won", "lost")


@dataclass(frozen=True)
class StageDef:
    """One step of a business type's process: how likely a record there is to be won, whether it
    is still open, how long it should stay, and what it needs to enter."""

    api_name: str
    label: str
    probability: int
    category: str = "open"
    expected_days: int | None = None
    required_fields: tuple[str, ...] = ()
    position: int = 0

    @property
    def closed(self) -> bool:
        return self.category != "open"

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "label": self.label, "probability": self.probability, "category": self.category,
                "expected_days": self.expected_days, "required_fields": list(self.required_fields)}


@dataclass(frozen=True)
class BusinessTypeDef:
    """A kind of record of one object (a product sale, a project sale) with its own picklist values
    and its own ordered stages."""

    api_name: str
    label: str
    description: str = ""
    active: bool = True
    default: bool = False
    picklists: Mapping[str, tuple[str, ...]] = dc_field(default_factory=lambda: MappingProxyType({}))
    """Picklist field -> the values records of this type may take (fields not named: all values)."""
    stages: tuple[StageDef, ...] = ()
    position: int = 0

    def stage(self, api_name: str) -> StageDef | None:
        return next((s for s in self.stages if s.api_name == api_name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "label": self.label, "description": self.description, "active": self.active,
                "default": self.default, "picklists": thaw(self.picklists), "stages": [s.as_dict() for s in self.stages]}


@dataclass(frozen=True)
class ValidationRuleDef:
    """A CEL expression over ``record`` (and ``old`` on update, ``user``, ``now``) that must hold for a
    write to pass; otherwise ``message`` is reported on ``field``."""

    api_name: str
    expression: str
    message: str
    field: str | None = None
    business_type: str | None = None
    """Only records of this business type (all when ``None``)."""
    active: bool = True
    position: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "expression": self.expression, "message": self.message, "field": self.field,
                "business_type": self.business_type, "active": self.active}


@dataclass(frozen=True)
class BookingRuleDef:
    """Records of the object book ``resource_field``'s record from ``start_field`` to ``end_field``
    (dates, both days included); two active bookings of one resource never overlap. Active: the
    ``status_field`` holds one of ``active_values`` (every record when there is no status field)."""

    api_name: str
    label: str
    resource_field: str
    start_field: str
    end_field: str
    status_field: str | None = None
    active_values: tuple[str, ...] = ()
    message: str = "The resource is already booked for part of this period."

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.resource_field, self.start_field, self.end_field, self.status_field) if f)

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "label": self.label, "resource_field": self.resource_field,
                "start_field": self.start_field, "end_field": self.end_field, "status_field": self.status_field,
                "active_values": list(self.active_values), "message": self.message}


@dataclass(frozen=True)
class AutomationDef:
    """Automation configured on an object: an assignment or duplicate rule, an approval process, a
    record trigger or a reminder. ``kind`` says which; ``settings`` is checked by that kind when saved
    and read by it at run time. Automations of one kind apply in ``position`` order."""

    api_name: str
    kind: str
    label: str
    settings: Mapping[str, Any]
    active: bool = True
    position: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "kind": self.kind, "label": self.label, "settings": thaw(self.settings),
                "active": self.active, "position": self.position}


@dataclass(frozen=True)
class LayoutDef:
    """How a record form of one object is laid out (for one business type and/or role, or the
    default): ordered sections of fields flagged required or read-only, and related lists."""

    api_name: str
    label: str
    business_type: str | None = None
    role: str | None = None
    sections: tuple[Mapping[str, Any], ...] = ()
    """``{"label", "fields": ({"field", "required", "read_only"}, ...)}``"""
    related_lists: tuple[Mapping[str, Any], ...] = ()
    """``{"object", "field", "label", "columns": (field, ...)}``: records of ``object`` whose ``field`` points here."""

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(item["field"] for section in self.sections for item in section["fields"] if item.get("required"))

    def as_dict(self) -> dict[str, Any]:
        return {"api_name": self.api_name, "label": self.label, "business_type": self.business_type, "role": self.role,
                "sections": thaw(self.sections), "related_lists": thaw(self.related_lists)}


def _system_fields(object_api_name: str, staged: bool = False) -> tuple[FieldDef, ...]:
    def ref(name, label, target):
        return FieldDef(name, label, "lookup", system=True, options=freeze({"target": target}))

    def instant(name, label):
        return FieldDef(name, label, "datetime", system=True)

    return (
        ref("id", "Record ID", object_api_name),
        ref("owner_id", "Owner", "user"),
        FieldDef("org_unit_id", "Org unit", "lookup", system=True, options=freeze({"target": "org_unit"})),
        FieldDef("business_type", "Business type", "text", system=True, options=freeze({"max_length": 63})),
        instant("created_at", "Created at"),
        ref("created_by", "Created by", "user"),
        instant("updated_at", "Updated at"),
        ref("updated_by", "Updated by", "user"),
        FieldDef("version", "Version", "integer", system=True, options=freeze({})),
        instant("deleted_at", "Deleted at"),
        *((FieldDef("stage", "Stage", "text", system=True, options=freeze({"max_length": 63})),
           instant("stage_entered_at", "Stage entered at")) if staged else ()),
    )


@dataclass(frozen=True)
class ObjectDef:
    api_name: str
    label: str
    plural_api_name: str
    plural_label: str
    description: str = ""
    system: bool = False
    """Built in (``user``): fields may be added, the object may not be deleted."""
    fields: tuple[FieldDef, ...] = ()
    """Custom fields, in display order; system fields are in :attr:`system_fields`."""
    business_types: tuple[BusinessTypeDef, ...] = ()
    validation_rules: tuple[ValidationRuleDef, ...] = ()
    layouts: tuple[LayoutDef, ...] = ()
    booking_rules: tuple[BookingRuleDef, ...] = ()
    automations: tuple[AutomationDef, ...] = ()

    def automations_of(self, kind: str) -> tuple[AutomationDef, ...]:
        """The object's active automations of one kind, in order."""
        return tuple(a for a in self.automations if a.kind == kind and a.active)

    @property
    def table_name(self) -> str:
        return table_name(self.api_name)

    @cached_property
    def has_stages(self) -> bool:
        """Records move through stages (some business type has them): ``stage`` and
        ``stage_entered_at`` are then fields of the object."""
        return any(t.stages for t in self.business_types)

    @cached_property
    def system_fields(self) -> tuple[FieldDef, ...]:
        return _system_fields(self.api_name, self.has_stages)

    def business_type(self, api_name: str) -> BusinessTypeDef | None:
        return next((t for t in self.business_types if t.api_name == api_name), None)

    @property
    def default_business_type(self) -> BusinessTypeDef | None:
        return next((t for t in self.business_types if t.default), None)

    def layout_for(self, business_type: str | None, roles: tuple[str, ...] = ()) -> LayoutDef | None:
        """The most specific layout: type and one of the roles, type alone, a role alone, the default."""
        candidates = [(business_type, role) for role in roles] + [(business_type, None)] + [(None, role) for role in roles] + [(None, None)]
        for kind, role in candidates:
            found = next((layout for layout in self.layouts if layout.business_type == kind and layout.role == role), None)
            if found is not None:
                return found
        return None

    def stage(self, api_name: str) -> tuple[BusinessTypeDef, StageDef] | None:
        """The business type a stage belongs to, and the stage (a stage belongs to one type)."""
        for kind in self.business_types:
            found = kind.stage(api_name)
            if found is not None:
                return kind, found
        return None

    @cached_property
    def fields_by_name(self) -> Mapping[str, FieldDef]:
        return MappingProxyType({f.api_name: f for f in (*self.system_fields, *self.fields)})

    def field(self, api_name: str) -> FieldDef | None:
        return self.fields_by_name.get(api_name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_name": self.api_name, "label": self.label, "plural_api_name": self.plural_api_name,
            "plural_label": self.plural_label, "description": self.description,
            "fields": [f.as_dict() for f in self.fields],
        }
