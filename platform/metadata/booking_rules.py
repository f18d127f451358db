"""Booking rules: how they are checked and stored, and the SQL that tells two bookings overlap.

The database guards a rule (``ddl.SchemaEditor.add_booking_guard``); the record service checks the
same predicate first to name the conflict, and reads availability and occupancy with it.
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import (
    Connection,
    and_,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
)

from . import store
from .definitions import BookingRuleDef, ObjectDef
from .errors import FieldError
from .fieldtypes.picklist import ordered_values
from .names import constraint_name
from .schemas import setting_name

RESOURCE_TYPES = ("lookup", "master_detail")


class BookingRuleSchema(Schema):
    api_name = fields.String(required=True, validate=setting_name)
    label = fields.String(required=True, validate=validate.Length(1, 255))
    resource_field = fields.String(required=True)
    start_field = fields.String(required=True)
    end_field = fields.String(required=True)
    status_field = fields.String(load_default=None, allow_none=True)
    active_values = fields.List(fields.String(), load_default=list)
    message = fields.String(load_default=BookingRuleDef.message, validate=validate.Length(1, 1000))


class BookingRuleUpdateSchema(BookingRuleSchema):
    class Meta:
        exclude = ("api_name",)

    label = fields.String(validate=validate.Length(1, 255))
    resource_field = fields.String()
    start_field = fields.String()
    end_field = fields.String()
    status_field = fields.String(allow_none=True)
    active_values = fields.List(fields.String())
    message = fields.String(validate=validate.Length(1, 1000))


def rule_def(data: dict[str, Any]) -> BookingRuleDef:
    return BookingRuleDef(api_name=data["api_name"], label=data["label"], resource_field=data["resource_field"],
                          start_field=data["start_field"], end_field=data["end_field"], status_field=data.get("status_field"),
                          active_values=tuple(data.get("active_values") or ()), message=data.get("message") or BookingRuleDef.message)


def problems(obj: ObjectDef, rule: BookingRuleDef) -> list[FieldError]:
    """What makes the rule unusable on ``obj``: each setting naming a field of the wrong kind."""
    errors = []
    if any(other.api_name != rule.api_name for other in obj.booking_rules):
        errors.append(FieldError("ONE_PER_OBJECT", "api_name", f"'{obj.api_name}' already has a booking rule; change that one"))

    def field_of(setting: str, name: str, types: tuple[str, ...], kind: str):
        field = obj.field(name)
        if field is None:
            errors.append(FieldError("UNKNOWN_FIELD", setting, f"'{obj.api_name}' has no field named '{name}'"))
        elif field.type not in types or field.api_name == "id":
            errors.append(FieldError("INVALID_FIELD_TYPE", setting, f"'{name}' is a {field.type} field; it must be {kind}"))
        return field

    field_of("resource_field", rule.resource_field, RESOURCE_TYPES, "a lookup or master-detail field (the booked record)")
    field_of("start_field", rule.start_field, ("date",), "a date field")
    field_of("end_field", rule.end_field, ("date",), "a date field")
    if rule.start_field == rule.end_field:
        errors.append(FieldError("INVALID_VALUE", "end_field", "must be another field than start_field"))
    if rule.status_field is None:
        if rule.active_values:
            errors.append(FieldError("INVALID_VALUE", "active_values", "needs a status_field the values belong to"))
        return errors
    status = field_of("status_field", rule.status_field, ("picklist",), "a picklist field")
    if not rule.active_values:
        errors.append(FieldError("REQUIRED", "active_values", "name the statuses whose bookings hold the resource"))
    elif status is not None and status.type == "picklist":
        known = {v["api_name"] for v in ordered_values(status.options)}
        for i, value in enumerate(rule.active_values):
            if value not in known:
                errors.append(FieldError("UNKNOWN_VALUE", f"active_values.{i}", f"'{rule.status_field}' has no value '{value}'"))
    return errors


def rules_using(obj: ObjectDef, field_api_name: str) -> list[str]:
    return [f"booking rule '{r.api_name}'" for r in obj.booking_rules if field_api_name in r.fields]


def guard_name(obj: ObjectDef, rule: BookingRuleDef) -> str:
    """The name of the database object enforcing the rule (constraint, or trigger prefix on SQLite)."""
    return constraint_name("bk", obj.table_name, rule.api_name)


def active(table, rule: BookingRuleDef):
    """Rows of ``table`` that hold their resource: live, with a resource and both dates, in an
    active status. The statuses are written into the statement, as in the guard's predicate, so
    that PostgreSQL may use the guard's partial index also for prepared statements."""
    columns = table.c
    held = and_(columns.deleted_at.is_(None), columns[rule.resource_field].is_not(None),
                columns[rule.start_field].is_not(None), columns[rule.end_field].is_not(None))
    if rule.status_field is None:
        return held
    return and_(held, columns[rule.status_field].in_([literal(v, literal_execute=True) for v in rule.active_values]))


def overlapping(table, rule: BookingRuleDef, start, end, *, ranges: bool = False):
    """Rows of ``table`` whose period shares a day with ``start``..``end`` (both included).
    ``ranges``: as PostgreSQL ranges, which the guard's GiST index serves."""
    if ranges:
        return day_range(table.c[rule.start_field], table.c[rule.end_field]).op("&&")(day_range(start, end))
    return and_(table.c[rule.start_field] <= end, table.c[rule.end_field] >= start)


def day_range(start, end):
    """PostgreSQL's ``daterange(start, end, '[]')``: both days included."""
    return func.daterange(start, end, literal_column("'[]'"))


def overlaps_in_data(conn: Connection, obj: ObjectDef, rule: BookingRuleDef, table) -> int:
    """How many pairs of active rows of ``table`` already overlap (a rule cannot be made then)."""
    a, b = table.alias("a"), table.alias("b")
    same_resource = and_(a.c[rule.resource_field] == b.c[rule.resource_field], a.c.id < b.c.id)
    query = select(func.count()).select_from(a.join(b, same_resource)).where(
        active(a, rule), active(b, rule), overlapping(b, rule, a.c[rule.start_field], a.c[rule.end_field]))
    return conn.execute(query).scalar_one()


def backwards_in_data(conn: Connection, rule: BookingRuleDef, table) -> int:
    """How many active rows end before they start."""
    return conn.execute(select(func.count()).select_from(table).where(
        active(table, rule), table.c[rule.end_field] < table.c[rule.start_field])).scalar_one()


def write(conn: Connection, object_api_name: str, rules: tuple[BookingRuleDef, ...]) -> None:
    table = store.booking_rules
    conn.execute(delete(table).where(table.c.object_api_name == object_api_name))
    for rule in rules:
        conn.execute(insert(table).values(object_api_name=object_api_name, **{
            **rule.as_dict(), "active_values": list(rule.active_values)}))

