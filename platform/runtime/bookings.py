"""Bookings of resources over dates (an object's booking rule): overlaps, availability, occupancy.

A booking holds its resource from its start day to its end day, both included, while it is live and
in an active status. The database refuses two overlapping active bookings of one resource (see
``SchemaEditor.add_booking_guard``); :func:`overlap_problems` finds them first, to report which
field and row, and the guard settles races. Availability and occupancy count every active booking,
whoever may read it: they say a resource is taken, never by whom.
"""
from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Integer,
    and_,
    cast,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.booking_rules import active, overlapping
from ..metadata.catalog import Catalog
from ..metadata.database import is_sqlite
from ..metadata.definitions import BookingRuleDef, ObjectDef
from ..metadata.errors import FieldError, NotFound, ValidationFailed

MAX_MONTHS = 36
"""The longest period an occupancy report covers, in calendar months."""
RATE_PLACES = Decimal("0.0001")


def booking_rule(catalog: Catalog, object_name: str) -> tuple[ObjectDef, BookingRuleDef, ObjectDef]:
    """The booking object, its rule and the object of the resources it books."""
    obj = catalog.object(object_name)
    if not obj.booking_rules:
        raise NotFound(f"'{object_name}' has no booking rule.", field="object")
    rule = obj.booking_rules[0]
    return obj, rule, catalog.object(obj.field(rule.resource_field).target)


def holds(rule: BookingRuleDef, record: dict[str, Any]) -> bool:
    """Whether a record (as it would be saved) holds its resource."""
    if record.get("deleted_at") is not None:
        return False
    if any(record.get(name) is None for name in (rule.resource_field, rule.start_field, rule.end_field)):
        return False
    return rule.status_field is None or record.get(rule.status_field) in rule.active_values


def overlap_problems(conn: Connection, obj: ObjectDef, table, records: list[dict[str, Any]],
                     own_ids: list[Any]) -> list[tuple[int, FieldError]]:
    """Per record (by index): ends before it starts, or overlaps an active booking of its resource:
    one already stored (other than itself), or an earlier record of the batch. Each resource's
    records are swept in order of their first day, so a batch costs about its length."""
    found: list[tuple[int, FieldError]] = []
    for rule in obj.booking_rules:
        by_resource: dict[Any, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            if not holds(rule, record):
                continue
            if record[rule.end_field] < record[rule.start_field]:
                found.append((i, FieldError("INVALID_RANGE", rule.end_field, f"must be on or after {rule.start_field}")))
            else:
                by_resource[record[rule.resource_field]].append(i)
        if not by_resource:
            continue
        clash = FieldError("OVERLAP", rule.start_field, rule.message, {"booking_rule": rule.api_name})
        stored = _stored_bookings(conn, rule, table, records, by_resource, {own_ids[i] for held in by_resource.values() for i in held})
        clashing: set[int] = set()
        for resource, held in by_resource.items():
            taken = stored.get(resource, [])
            running: list[tuple[date, int]] = []
            for i in sorted(held, key=lambda i: (records[i][rule.start_field], i)):
                start, end = records[i][rule.start_field], records[i][rule.end_field]
                running = [(last, k) for last, k in running if last >= start]
                clashing.update(max(i, k) for _, k in running)
                running.append((end, i))
                if any(first <= end and last >= start for first, last in taken):
                    clashing.add(i)
        found.extend((i, clash) for i in sorted(clashing))
    return found


def _stored_bookings(conn: Connection, rule: BookingRuleDef, table, records: list[dict[str, Any]],
                     by_resource: dict[Any, list[int]], own: set[Any]) -> dict[Any, list[tuple[date, date]]]:
    """The stored active bookings of these resources within the batch's days (but the batch's own), by resource."""
    columns = table.c
    held = [i for indexes in by_resource.values() for i in indexes]
    first = min(records[i][rule.start_field] for i in held)
    last = max(records[i][rule.end_field] for i in held)
    stored: dict[Any, list[tuple[date, date]]] = defaultdict(list)
    for row_id, resource, start, end in conn.execute(
            select(columns.id, columns[rule.resource_field], columns[rule.start_field], columns[rule.end_field])
            .where(active(table, rule), columns[rule.resource_field].in_(sorted(by_resource)),
                   overlapping(table, rule, first, last, ranges=not is_sqlite(conn)))):
        if row_id not in own:
            stored[resource].append((start, end))
    return stored


def period(start: Any, end: Any) -> tuple[date, date]:
    """The requested days, checked: two dates, the end on or after the start."""
    errors, days = [], []
    for name, value in (("from", start), ("to", end)):
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                pass
        if not isinstance(value, date) or isinstance(value, datetime):
            errors.append(FieldError("INVALID_TYPE", name, "must be a date (YYYY-MM-DD)"))
        days.append(value)
    start, end = days
    if not errors and end < start:
        errors.append(FieldError("INVALID_RANGE", "to", "must be on or after from"))
    if errors:
        raise ValidationFailed("The period has problems; fix the listed parts.", errors=errors)
    return start, end


def free_predicate(catalog: Catalog, obj: ObjectDef, rule: BookingRuleDef, resources_table, start: date, end: date, *,
                   ranges: bool) -> ColumnElement:
    """Resources (rows of ``resources_table``) no active booking holds on any day from ``start`` to
    ``end``. With ``ranges`` (PostgreSQL) the bookings of the period are found through the guard's
    GiST index first."""
    bookings = catalog.table(obj.api_name).alias("booking")
    taken = select(bookings.c[rule.resource_field]).where(active(bookings, rule), overlapping(bookings, rule, start, end, ranges=ranges))
    if ranges:
        return resources_table.c.id.not_in(taken)
    return ~exists(taken.where(bookings.c[rule.resource_field] == resources_table.c.id))


def months(start: date, end: date) -> list[tuple[date, date]]:
    """Each calendar month from ``start`` to ``end``, clipped to them: ``(first day, last day)``."""
    found, first = [], start.replace(day=1)
    while first <= end:
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
        found.append((max(first, start), min(last, end)))
        first = last + timedelta(days=1)
    if len(found) > MAX_MONTHS:
        raise ValidationFailed.of([FieldError("OUT_OF_RANGE", "to", f"an occupancy report covers at most {MAX_MONTHS} months")])
    return found


def occupancy(conn: Connection, catalog: Catalog, obj: ObjectDef, rule: BookingRuleDef, resources, resource_ids: list[Any],
              start: date, end: date, statuses: list[str] | None) -> list[dict[str, Any]]:
    """Per resource (``resource_ids``, in that order, also selected by the ``resources`` subquery)
    and month: the days of the month within the period, the days active bookings (of ``statuses``
    if given) hold, and their ratio; one statement."""
    spans = months(start, end)
    if not resource_ids:
        return []
    bookings = catalog.table(obj.api_name)
    columns = bookings.c
    month = union_all(*(select(literal(first, Date).label("first_day"), literal(last, Date).label("last_day"))
                        for first, last in spans)).subquery("month")
    sqlite = is_sqlite(conn)
    latest_start = (func.max if sqlite else func.greatest)(columns[rule.start_field], month.c.first_day)
    earliest_end = (func.min if sqlite else func.least)(columns[rule.end_field], month.c.last_day)
    days = (func.julianday(earliest_end) - func.julianday(latest_start) + 1) if sqlite else (earliest_end - latest_start + 1)
    chosen = and_(active(bookings, rule), columns[rule.resource_field].in_(resources),
                  overlapping(bookings, rule, start, end, ranges=not sqlite))
    if statuses:
        chosen = and_(chosen, columns[rule.status_field].in_(statuses))
    booked: dict[tuple[Any, date], int] = {}
    for resource, first_day, total in conn.execute(
            select(columns[rule.resource_field], month.c.first_day, func.sum(cast(days, Integer)))
            .select_from(bookings.join(month, overlapping(bookings, rule, month.c.first_day, month.c.last_day)))
            .where(chosen).group_by(columns[rule.resource_field], month.c.first_day)):
        booked[(resource, _as_date(first_day))] = int(total or 0)
    rows = []
    for resource in resource_ids:
        for first, last in spans:
            length = (last - first).days + 1
            taken = booked.get((resource, first), 0)
            rows.append({"resource_id": resource, "month": first.replace(day=1), "from": first, "to": last, "days": length,
                         "booked_days": taken, "rate": (Decimal(taken) / Decimal(length)).quantize(RATE_PLACES, ROUND_HALF_UP)})
    return rows


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
