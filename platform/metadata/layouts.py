"""Layouts: how they are checked and stored. The record service enforces their required fields.

A layout serves a business type and/or a role (an existing one; a role named by layouts cannot be
deleted). The one applying to a user (``ObjectDef.layout_for``) is the most specific: type and role,
type, role, the default. Between layouts as specific for several roles of the user, the role that
comes first wins: roles are given in the order of the user's memberships, the oldest first.
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, column, delete, insert, inspect, select, table

from . import store
from .definitions import LayoutDef, ObjectDef, freeze, thaw
from .errors import FieldError
from .schemas import setting_name

MAX_SECTIONS = 50
MAX_ITEMS = 500

ROLES = table("lc_role", column("name"))
"""The roles of the security layer, which owns and writes the table; read here only to check the
role a layout names (this layer imports nothing from the runtime)."""


class LayoutItemSchema(Schema):
    field = fields.String(required=True)
    required = fields.Boolean(load_default=False)
    read_only = fields.Boolean(load_default=False)


class SectionSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(1, 255))
    columns = fields.Integer(load_default=2, strict=True, validate=validate.Range(1, 4))
    fields = fields.List(fields.Nested(LayoutItemSchema), required=True, validate=validate.Length(max=MAX_ITEMS))


class RelatedListSchema(Schema):
    object = fields.String(required=True)
    field = fields.String(required=True)
    label = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 255))
    columns = fields.List(fields.String(), load_default=list)


class LayoutSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    business_type = fields.String(load_default=None, allow_none=True)
    role = fields.String(load_default=None, allow_none=True, validate=setting_name)
    sections = fields.List(fields.Nested(SectionSchema), required=True, validate=validate.Length(1, MAX_SECTIONS))
    related_lists = fields.List(fields.Nested(RelatedListSchema), load_default=list)


class LayoutUpdateSchema(LayoutSchema):
    class Meta:
        exclude = ("api_name",)

    label = fields.String(validate=validate.Length(1, 255))
    business_type = fields.String(allow_none=True)
    role = fields.String(allow_none=True, validate=setting_name)
    sections = fields.List(fields.Nested(SectionSchema), validate=validate.Length(1, MAX_SECTIONS))
    related_lists = fields.List(fields.Nested(RelatedListSchema))


def layout_def(data: dict[str, Any]) -> LayoutDef:
    return LayoutDef(api_name=data["api_name"], label=data["label"], business_type=data.get("business_type"),
                     role=data.get("role"), sections=freeze(data.get("sections") or []),
                     related_lists=freeze(data.get("related_lists") or []))


def problems(objects: dict[str, ObjectDef], obj: ObjectDef, layout: LayoutDef) -> list[FieldError]:
    """Unknown fields (or fields of another object), fields placed twice, unknown business types,
    related lists of objects that do not point at this one."""
    errors = []
    if layout.business_type is not None and obj.business_type(layout.business_type) is None:
        errors.append(FieldError("UNKNOWN_BUSINESS_TYPE", "business_type", f"'{obj.api_name}' has no business type '{layout.business_type}'"))
    placed: dict[str, str] = {}
    for s, section in enumerate(layout.sections):
        for i, item in enumerate(section["fields"]):
            name, path = item["field"], f"sections.{s}.fields.{i}.field"
            if obj.field(name) is None:
                elsewhere = [o.api_name for o in objects.values() if o.api_name != obj.api_name and o.field(name) is not None]
                hint = f" (it is a field of '{elsewhere[0]}')" if elsewhere else ""
                errors.append(FieldError("UNKNOWN_FIELD", path, f"'{obj.api_name}' has no field named '{name}'{hint}"))
            elif name in placed:
                errors.append(FieldError("DUPLICATE", path, f"'{name}' is already placed at {placed[name]}"))
            else:
                placed[name] = path
            if item.get("required") and item.get("read_only"):
                errors.append(FieldError("INVALID_VALUE", f"sections.{s}.fields.{i}", "a field cannot be both required and read-only"))
            elif item.get("required") and (field := obj.field(name)) is not None and not field.field_type.writable:
                errors.append(FieldError("INVALID_VALUE", f"sections.{s}.fields.{i}.required",
                                         f"the platform computes or assigns a {field.type} field, so a layout cannot require it"))
    for r, related in enumerate(layout.related_lists):
        child = objects.get(related["object"])
        link = child.field(related["field"]) if child else None
        if child is None:
            errors.append(FieldError("UNKNOWN_OBJECT", f"related_lists.{r}.object", f"there is no object named '{related['object']}'"))
        elif link is None or link.target != obj.api_name or link.api_name == "id":
            errors.append(FieldError("NOT_A_RELATION", f"related_lists.{r}.field",
                                     f"'{related['object']}.{related['field']}' does not point at '{obj.api_name}'"))
        else:
            errors.extend(FieldError("UNKNOWN_FIELD", f"related_lists.{r}.columns.{c}", f"'{child.api_name}' has no field named '{name}'")
                          for c, name in enumerate(related.get("columns") or ()) if child.field(name) is None)
    return errors


def role_problems(conn: Connection, layout: LayoutDef) -> list[FieldError]:
    """The role the layout names must exist. Its row stays share-locked until the change commits,
    so that deleting the role (which refuses while layouts name it) waits and then sees the layout."""
    if layout.role is None:
        return []
    query = select(ROLES.c.name).where(ROLES.c.name == layout.role).with_for_update(key_share=True)
    if inspect(conn).has_table(ROLES.name) and conn.execute(query).first() is not None:
        return []
    return [FieldError("UNKNOWN_ROLE", "role", f"there is no role named '{layout.role}'")]


def write(conn: Connection, object_api_name: str, layouts: tuple[LayoutDef, ...]) -> None:
    table = store.layouts
    conn.execute(delete(table).where(table.c.object_api_name == object_api_name))
    for layout in layouts:
        conn.execute(insert(table).values(
            object_api_name=object_api_name, api_name=layout.api_name, label=layout.label, business_type=layout.business_type,
            role=layout.role, sections=thaw(layout.sections), related_lists=thaw(layout.related_lists)))
