"""Which records a reminder is due for now: one SQL statement per reminder, whatever the row count.

Each due record comes with its *occasion*: what makes this reminder distinct from the next one for
the same record (the visit's due date, the stage entry, the date reached). A record is delivered
once per occasion; a new visit, a new stage entry or a changed date is a new occasion.

Days are UTC days: a visit on day D of an account visited every 7 days is due from day D + 7.
Only active users receive; records without a recipient are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Connection, Table, and_, func, or_, select

from ...metadata.catalog import Catalog
from ...metadata.definitions import ObjectDef
from ..processes import due_predicate, stage_of
from .settings import (
    DATE_DUE,
    STAGE_OVERDUE,
    VISIT_CYCLE,
    DateDue,
    Reminder,
    StageOverdue,
    VisitCycle,
)


@dataclass(frozen=True)
class Due:
    """One record due: who hears about it, for which occasion, and what they read."""

    record_id: str
    user_id: str
    occasion: str
    body: str


def due(conn: Connection, catalog: Catalog, reminder: Reminder, now: datetime) -> list[Due]:
    """The records the reminder is due for at ``now`` (delivered before or not)."""
    finders = {VISIT_CYCLE: _visit_cycle, STAGE_OVERDUE: _stage_overdue, DATE_DUE: _date_due}
    return finders[reminder.type](conn, catalog, reminder, now)


def _visit_cycle(conn: Connection, catalog: Catalog, reminder: Reminder, now: datetime) -> list[Due]:
    rule: VisitCycle = reminder.rule
    obj, table = _object(catalog, reminder)
    activity_obj = catalog.object(rule.activity_object)
    activity = catalog.table(activity_obj.api_name)
    link = activity.c[rule.activity_field]
    when_field = activity_obj.field(rule.activity_date_field)
    when = when_field.field_type.selectable(when_field, activity)[0]
    dated = when_field.value_type == "date"
    today = now.date()
    last = (select(link.label("record_id"), func.max(when).label("visited"))
            .where(activity.c.deleted_at.is_(None), link.is_not(None), when <= (today if dated else now), rule.activity_filter)
            .group_by(link).subquery())
    grade = table.c[rule.grade_field]
    overdue = []
    for value, days in rule.cycle_days.items():
        last_day = today - timedelta(days=days)
        ends = _midnight(last_day + timedelta(days=1))
        visited_long_ago = last.c.visited <= last_day if dated else last.c.visited < ends
        overdue.append(and_(grade == value, or_(visited_long_ago, and_(last.c.visited.is_(None), table.c.created_at < ends))))
    recipient = table.c[reminder.recipient_field]
    query = (select(table.c.id, recipient.label("user_id"), grade.label("grade"), table.c.created_at, last.c.visited)
             .select_from(table.outerjoin(last, last.c.record_id == table.c.id))
             .where(table.c.deleted_at.is_(None), _active_user(catalog, recipient), or_(*overdue)))
    found = []
    for row in conn.execute(query):
        since_day = _day(row.visited if row.visited is not None else row.created_at)
        due_on = since_day + timedelta(days=rule.cycle_days[row.grade])
        what = f"last visited on {since_day.isoformat()}" if row.visited is not None else f"not visited since its creation on {since_day.isoformat()}"
        found.append(Due(str(row.id), str(row.user_id), due_on.isoformat(),
                         f"This {obj.label.lower()} is visited every {rule.cycle_days[row.grade]} days and was {what}: "
                         f"a visit is due since {due_on.isoformat()}."))
    return found


def _stage_overdue(conn: Connection, catalog: Catalog, reminder: Reminder, now: datetime) -> list[Due]:
    rule: StageOverdue = reminder.rule
    obj, table = _object(catalog, reminder)
    recipient = table.c[reminder.recipient_field]
    query = (select(table.c.id, recipient.label("user_id"), table.c.stage, table.c.stage_entered_at)
             .where(table.c.deleted_at.is_(None), _active_user(catalog, recipient), due_predicate(obj, table, rule.days_before, now)))
    found = []
    for row in conn.execute(query):
        stage = stage_of(obj, row.stage)
        entered = row.stage_entered_at.astimezone(timezone.utc)
        ends = entered + timedelta(days=stage.expected_days)
        found.append(Due(str(row.id), str(row.user_id), f"{row.stage}@{entered.strftime('%Y%m%dT%H%M%S%f')}",
                         f"In the stage '{stage.label}' since {entered.date().isoformat()}; it is expected to take "
                         f"{stage.expected_days} days, until {ends.date().isoformat()}."))
    return found


def _date_due(conn: Connection, catalog: Catalog, reminder: Reminder, now: datetime) -> list[Due]:
    rule: DateDue = reminder.rule
    obj, table = _object(catalog, reminder)
    field = obj.field(rule.date_field)
    value = field.field_type.selectable(field, table)[0]
    dated = field.value_type == "date"
    reached = value <= ((now.date() if dated else now) + timedelta(days=rule.days_before))
    recipient = table.c[reminder.recipient_field]
    query = (select(table.c.id, recipient.label("user_id"), value.label("due"))
             .where(table.c.deleted_at.is_(None), _active_user(catalog, recipient), value.is_not(None), reached, rule.filter))
    return [Due(str(row.id), str(row.user_id), row.due.isoformat(), f"{field.label}: {row.due.isoformat()}.")
            for row in conn.execute(query)]


def _object(catalog: Catalog, reminder: Reminder) -> tuple[ObjectDef, Table]:
    return catalog.object(reminder.object_api_name), catalog.table(reminder.object_api_name)


def _active_user(catalog: Catalog, recipient):
    users = catalog.table("user")
    return recipient.in_(select(users.c.id).where(users.c.active, users.c.deleted_at.is_(None)))


def _day(value: date | datetime) -> date:
    """The UTC day of an instant, or the date itself."""
    return value.astimezone(timezone.utc).date() if isinstance(value, datetime) else value


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)
