"""The settings of a reminder, checked against the Catalog into what a scan runs.

Three types share ``notify`` (``owner``, the default, or a lookup field to users) and ``title``
(the notification's title; the automation's label when absent):

* ``visit_cycle`` -- records of this object (accounts) are visited every ``cycle_days[grade]``
  days, counted from the last ``activity_object`` record pointing at them through
  ``activity_field`` (its ``activity_date_field``, ``created_at`` by default; only activities
  matching ``activity_filter``, and only those that already happened) or, never visited, from the
  record's creation. Records of a grade missing from ``cycle_days`` have no cycle.
* ``stage_overdue`` -- records that stayed in an open stage longer than the stage's expected days
  (``days_before`` > 0: that many days before), the predicate of the stages' due query.
* ``date_due`` -- records whose ``date_field`` is reached ``days_before`` days ahead (negative:
  days after), among those matching ``filter``.

The same check runs when the reminder is saved and on every scan, so a reminder whose fields
changed under it is skipped rather than misread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import true
from sqlalchemy.sql.elements import ColumnElement

from ...metadata.catalog import Catalog
from ...metadata.definitions import FieldDef, ObjectDef
from ...metadata.errors import FieldError, ValidationFailed
from ...metadata.fieldtypes.picklist import ordered_values
from ..filters import FilterCompiler

VISIT_CYCLE = "visit_cycle"
STAGE_OVERDUE = "stage_overdue"
DATE_DUE = "date_due"
TYPES = (VISIT_CYCLE, STAGE_OVERDUE, DATE_DUE)
OWNER = "owner"
MAX_DAYS = 3650
DATE_TYPES = ("date", "datetime")
COMMON_KEYS = ("type", "notify", "title")
KEYS = {
    VISIT_CYCLE: ("grade_field", "cycle_days", "activity_object", "activity_field", "activity_date_field", "activity_filter"),
    STAGE_OVERDUE: ("days_before",),
    DATE_DUE: ("date_field", "days_before", "filter"),
}


@dataclass(frozen=True)
class VisitCycle:
    grade_field: str
    cycle_days: Mapping[str, int]
    activity_object: str
    activity_field: str
    activity_date_field: str
    activity_filter: ColumnElement[bool]


@dataclass(frozen=True)
class StageOverdue:
    days_before: int


@dataclass(frozen=True)
class DateDue:
    date_field: str
    days_before: int
    filter: ColumnElement[bool]


@dataclass(frozen=True)
class Reminder:
    """One checked reminder: who hears it, under what title, and when its records are due."""

    object_api_name: str
    api_name: str
    type: str
    recipient_field: str
    title: str
    rule: VisitCycle | StageOverdue | DateDue


def checked(catalog: Catalog, obj: ObjectDef, api_name: str, settings: Any, label: str | None = None) -> tuple[Reminder | None, list[FieldError]]:
    """The reminder the settings describe, or ``None`` and every problem at its path in the settings;
    ``label`` (the automation's) is the title when the settings give none."""
    if not isinstance(settings, dict):
        return None, [FieldError("INVALID_TYPE", None, "must be an object of reminder settings")]
    kind = settings.get("type")
    if kind not in TYPES:
        message = "is required" if kind is None else f"'{kind}' is not a reminder type"
        return None, [FieldError("REQUIRED" if kind is None else "INVALID_VALUE", "type", f"{message} (one of: {', '.join(TYPES)})")]
    problems = [FieldError("UNKNOWN_SETTING", key, f"a {kind} reminder has no setting '{key}'")
                for key in settings if key not in COMMON_KEYS + KEYS[kind]]
    recipient = _recipient(obj, settings.get("notify", OWNER), problems)
    title = settings.get("title", label or api_name)
    if not isinstance(title, str) or not title.strip() or len(title) > 255:
        problems.append(FieldError("INVALID_VALUE", "title", "must be text of 1 to 255 characters"))
    if kind == VISIT_CYCLE:
        rule = _visit_cycle(catalog, obj, settings, problems)
    elif kind == STAGE_OVERDUE:
        rule = _stage_overdue(obj, settings, problems)
    else:
        rule = _date_due(catalog, obj, settings, problems)
    if problems:
        return None, problems
    return Reminder(obj.api_name, api_name, kind, recipient, title, rule), []


def fields_used(obj: ObjectDef, settings: Any) -> set[str]:
    """The fields of ``obj`` the settings name (the grade, the date, the recipient, the filter's)."""
    if not isinstance(settings, dict):
        return set()
    named = {settings.get("grade_field"), settings.get("date_field"), settings.get("notify")}
    named |= _filter_fields(settings.get("filter"))
    return {name for name in named if isinstance(name, str) and obj.field(name) is not None}


def fields_used_elsewhere(settings: Any) -> set[tuple[str, str]]:
    """A visit cycle's fields of its activity object: the lookup, the date and the filter's."""
    if not isinstance(settings, dict) or not isinstance(settings.get("activity_object"), str):
        return set()
    named = {settings.get("activity_field"), settings.get("activity_date_field")} | _filter_fields(settings.get("activity_filter"))
    return {(settings["activity_object"], name) for name in named if isinstance(name, str)}


def _filter_fields(spec: Any) -> set[str]:
    if isinstance(spec, list):
        return {name for item in spec for name in _filter_fields(item)}
    if not isinstance(spec, dict):
        return set()
    found = set()
    for key, value in spec.items():
        found |= _filter_fields(value) if key in ("and", "or", "not") else {key}
    return found


def _recipient(obj: ObjectDef, notify: Any, problems: list[FieldError]) -> str:
    if notify == OWNER:
        return "owner_id"
    field = obj.field(notify) if isinstance(notify, str) else None
    if field is None or field.target != "user":
        problems.append(FieldError("INVALID_VALUE", "notify", f"must be '{OWNER}' or a field of '{obj.api_name}' that looks up a user"))
        return ""
    return field.api_name


def _visit_cycle(catalog: Catalog, obj: ObjectDef, settings: dict, problems: list[FieldError]) -> VisitCycle | None:
    grade = _field(obj, settings, "grade_field", problems, ("picklist",))
    cycle_days = _cycle_days(grade, settings.get("cycle_days"), problems)
    activity = _object(catalog, settings, "activity_object", problems)
    link = date = None
    activity_filter = true()
    if activity is not None:
        link = _field(activity, settings, "activity_field", problems, ("lookup", "master_detail"))
        if link is not None and link.target != obj.api_name:
            problems.append(FieldError("WRONG_TARGET", "activity_field", f"must look up '{obj.api_name}' (it looks up '{link.target}')"))
        date = _date_field(catalog, activity, settings, "activity_date_field", problems, default="created_at")
        activity_filter = _filter(catalog, activity, settings, "activity_filter", problems)
    if grade is None or cycle_days is None or activity is None or link is None or date is None:
        return None
    return VisitCycle(grade.api_name, cycle_days, activity.api_name, link.api_name, date.api_name, activity_filter)


def _cycle_days(grade: FieldDef | None, given: Any, problems: list[FieldError]) -> dict[str, int] | None:
    if given is None:
        problems.append(FieldError("REQUIRED", "cycle_days", "is required: the days between visits for each grade"))
        return None
    if not isinstance(given, dict) or not given:
        problems.append(FieldError("INVALID_TYPE", "cycle_days", "must map grades to the days between visits"))
        return None
    values = {v["api_name"] for v in ordered_values(grade.options)} if grade is not None else None
    found = {}
    for value, days in given.items():
        if values is not None and value not in values:
            problems.append(FieldError("UNKNOWN_VALUE", f"cycle_days.{value}", f"'{value}' is not a value of '{grade.api_name}'"))
        elif not _whole(days) or not 1 <= days <= MAX_DAYS:
            problems.append(FieldError("OUT_OF_RANGE", f"cycle_days.{value}", f"must be a whole number of days from 1 to {MAX_DAYS}"))
        else:
            found[value] = days
    return found if values is not None and len(found) == len(given) else None


def _stage_overdue(obj: ObjectDef, settings: dict, problems: list[FieldError]) -> StageOverdue | None:
    timed = [stage for kind in obj.business_types for stage in kind.stages if stage.expected_days is not None and not stage.closed]
    if not timed:
        problems.append(FieldError("NO_TIMED_STAGES", "type", f"no open stage of '{obj.api_name}' has expected days to overstay"))
    days_before = _days(settings, "days_before", problems, 0, MAX_DAYS)
    return StageOverdue(days_before) if timed and days_before is not None else None


def _date_due(catalog: Catalog, obj: ObjectDef, settings: dict, problems: list[FieldError]) -> DateDue | None:
    date = _date_field(catalog, obj, settings, "date_field", problems)
    days_before = _days(settings, "days_before", problems, -MAX_DAYS, MAX_DAYS)
    record_filter = _filter(catalog, obj, settings, "filter", problems)
    return DateDue(date.api_name, days_before, record_filter) if date is not None and days_before is not None else None


def _days(settings: dict, key: str, problems: list[FieldError], low: int, high: int) -> int | None:
    days = settings.get(key, 0)
    if not _whole(days) or not low <= days <= high:
        problems.append(FieldError("OUT_OF_RANGE", key, f"must be a whole number of days from {low} to {high}"))
        return None
    return days


def _object(catalog: Catalog, settings: dict, key: str, problems: list[FieldError]) -> ObjectDef | None:
    name = settings.get(key)
    if name is None:
        problems.append(FieldError("REQUIRED", key, "is required"))
        return None
    found = catalog.objects.get(name) if isinstance(name, str) else None
    if found is None:
        problems.append(FieldError("UNKNOWN_OBJECT", key, f"there is no object named '{name}'"))
    return found


def _field(obj: ObjectDef, settings: dict, key: str, problems: list[FieldError], types: tuple[str, ...],
           default: str | None = None) -> FieldDef | None:
    name = settings.get(key, default)
    if name is None:
        problems.append(FieldError("REQUIRED", key, "is required"))
        return None
    field = obj.field(name) if isinstance(name, str) else None
    if field is None:
        problems.append(FieldError("UNKNOWN_FIELD", key, f"'{obj.api_name}' has no field named '{name}'"))
        return None
    if field.value_type not in types:
        problems.append(FieldError("WRONG_FIELD_TYPE", key, f"must be a {' or '.join(types)} field ('{name}' is {field.value_type})"))
        return None
    return field


def _date_field(catalog: Catalog, obj: ObjectDef, settings: dict, key: str, problems: list[FieldError],
                default: str | None = None) -> FieldDef | None:
    field = _field(obj, settings, key, problems, DATE_TYPES, default)
    if field is not None and field.field_type.selectable(field, catalog.table(obj.api_name)) is None:
        problems.append(FieldError("NOT_FILTERABLE", key, f"'{field.api_name}' is computed after reading, so it cannot be compared in SQL"))
        return None
    return field


def _filter(catalog: Catalog, obj: ObjectDef, settings: dict, key: str, problems: list[FieldError]) -> ColumnElement[bool]:
    spec = settings.get(key)
    if spec is None:
        return true()
    try:
        return FilterCompiler(catalog, lambda _obj, _table: true()).compile(obj, spec, key)
    except ValidationFailed as failed:
        problems.extend(failed.errors)
        return true()


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
