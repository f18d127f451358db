"""Business types and their stages: how they are checked and stored.

A business type is a kind of record of one object (a product sale, a project sale): its own subset
of picklist values and its own ordered stages, each with a win probability, a category (open, won,
lost), the days a record should stay there and the fields it needs to enter. A stage belongs to
one business type, so a record's stage also names its type's process.
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, column, delete, func, insert, select, table

from . import store
from .definitions import (
    STAGE_CATEGORIES,
    BusinessTypeDef,
    ObjectDef,
    StageDef,
    freeze,
    thaw,
)
from .errors import FieldError
from .schemas import setting_name

MAX_STAGES = 50
STAGE_FIELDS_NOT_REQUIRABLE = frozenset({"id", "version", "created_at", "created_by", "updated_at", "updated_by",
                                        "deleted_at", "stage", "stage_entered_at", "business_type"})


class StageSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    probability = fields.Integer(required=True, strict=True, validate=validate.Range(0, 100, error="must be from 0 to 100"))
    category = fields.String(load_default="open", validate=validate.OneOf(STAGE_CATEGORIES, error="must be one of: {choices}"))
    expected_days = fields.Integer(load_default=None, allow_none=True, strict=True,
                                   validate=validate.Range(0, 3650, error="must be from 0 to 3650 days"))
    required_fields = fields.List(fields.String(), load_default=list)


class BusinessTypeSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    description = fields.String(load_default="", validate=validate.Length(0, 4000))
    active = fields.Boolean(load_default=True)
    default = fields.Boolean(load_default=False)
    picklists = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), load_default=dict)
    stages = fields.List(fields.Nested(StageSchema), load_default=list,
                         validate=validate.Length(max=MAX_STAGES, error=f"at most {MAX_STAGES} stages"))

    @validates_schema(skip_on_field_errors=False)
    def _stages_once(self, data, **kwargs):
        seen: dict[str, int] = {}
        for i, stage in enumerate(data.get("stages") or []):
            if not isinstance(stage, dict) or "api_name" not in stage:
                continue
            if stage["api_name"] in seen:
                raise ValidationError(f"'{stage['api_name']}' is already stage {seen[stage['api_name']]} of this type", f"stages.{i}.api_name")
            seen[stage["api_name"]] = i


class BusinessTypeUpdateSchema(BusinessTypeSchema):
    """Every part optional; ``stages`` given replaces the whole ordered list."""

    class Meta:
        exclude = ("api_name",)

    label = fields.String(validate=validate.Length(1, 255))
    description = fields.String(validate=validate.Length(0, 4000))
    active = fields.Boolean()
    default = fields.Boolean()
    picklists = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    stages = fields.List(fields.Nested(StageSchema), validate=validate.Length(max=MAX_STAGES, error=f"at most {MAX_STAGES} stages"))


def business_type_def(data: dict[str, Any], position: int) -> BusinessTypeDef:
    return BusinessTypeDef(
        api_name=data["api_name"], label=data["label"], description=data.get("description", ""),
        active=data.get("active", True), default=data.get("default", False), picklists=freeze(data.get("picklists") or {}),
        stages=tuple(StageDef(api_name=s["api_name"], label=s["label"], probability=s["probability"], category=s["category"],
                              expected_days=s.get("expected_days"), required_fields=tuple(s.get("required_fields") or ()),
                              position=i) for i, s in enumerate(data.get("stages") or ())),
        position=position,
    )


def problems(obj: ObjectDef, kind: BusinessTypeDef, others: tuple[BusinessTypeDef, ...]) -> list[FieldError]:
    """What is wrong with ``kind`` on ``obj`` next to the object's ``others`` types."""
    errors: list[FieldError] = []
    for name, values in kind.picklists.items():
        field = obj.field(name)
        if field is None:
            errors.append(FieldError("UNKNOWN_FIELD", f"picklists.{name}", f"'{obj.api_name}' has no field named '{name}'"))
        elif field.type not in ("picklist", "multi_picklist"):
            errors.append(FieldError("NOT_A_PICKLIST", f"picklists.{name}", f"'{name}' is a {field.type} field, not a picklist"))
        elif not values:
            errors.append(FieldError("INVALID_VALUE", f"picklists.{name}", "list at least one value, or leave the field out for all"))
        else:
            known = {v["api_name"] for v in field.options.get("values", ())}
            errors.extend(FieldError("UNKNOWN_VALUE", f"picklists.{name}.{i}", f"'{value}' is not a value of '{name}'")
                          for i, value in enumerate(values) if value not in known)
    taken = {s.api_name: other.api_name for other in others for s in other.stages}
    for i, stage in enumerate(kind.stages):
        if stage.api_name in taken:
            errors.append(FieldError("DUPLICATE_STAGE", f"stages.{i}.api_name",
                                     f"'{stage.api_name}' already belongs to business type '{taken[stage.api_name]}'; a stage belongs to one type"))
        for j, name in enumerate(stage.required_fields):
            field = obj.field(name)
            if field is None:
                errors.append(FieldError("UNKNOWN_FIELD", f"stages.{i}.required_fields.{j}", f"'{obj.api_name}' has no field named '{name}'"))
            elif name in STAGE_FIELDS_NOT_REQUIRABLE:
                errors.append(FieldError("INVALID_VALUE", f"stages.{i}.required_fields.{j}", f"'{name}' is kept by the platform"))
    if kind.default and not kind.active:
        errors.append(FieldError("INVALID_VALUE", "default", "the default business type must be active"))
    return errors


def records_using(conn: Connection, obj: ObjectDef, column_name: str, values: list[str]) -> int:
    """How many records (in the recycle bin too) hold one of ``values`` in a system column."""
    if not values:
        return 0
    records = table(obj.table_name, column(column_name))
    return conn.execute(select(func.count()).select_from(records).where(records.c[column_name].in_(values))).scalar_one()


def write(conn: Connection, object_api_name: str, kinds: tuple[BusinessTypeDef, ...]) -> None:
    """Store the object's business types and stages as given (replacing what was stored)."""
    conn.execute(delete(store.stages).where(store.stages.c.object_api_name == object_api_name))
    conn.execute(delete(store.business_types).where(store.business_types.c.object_api_name == object_api_name))
    for position, kind in enumerate(kinds):
        conn.execute(insert(store.business_types).values(
            object_api_name=object_api_name, api_name=kind.api_name, label=kind.label, description=kind.description,
            active=kind.active, is_default=kind.default, picklists=thaw(kind.picklists), position=position))
        for index, stage in enumerate(kind.stages):
            conn.execute(insert(store.stages).values(
                object_api_name=object_api_name, api_name=stage.api_name, business_type=kind.api_name, label=stage.label,
                probability=stage.probability, category=stage.category, expected_days=stage.expected_days,
                required_fields=list(stage.required_fields), position=index))
