"""Business types and stages applied to a record being written.

A record of an object with business types always has one (the default unless given; an active
one when chosen); its picklists take only the values its type allows; its stage is one of its
type's stages (the first one unless given), and entering a stage takes the fields the stage
requires. Leaving a closed stage (won or lost) is reopening: an action of its own. Every stage a
record enters is kept in the stage history with who moved it and how long it stayed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, false, insert, or_, select, update

from ..metadata import store
from ..metadata.definitions import BusinessTypeDef, ObjectDef, StageDef
from ..metadata.errors import FieldError


@dataclass(frozen=True)
class StageMove:
    """A record entering ``stage`` (``None``: no stage any more), leaving ``left`` if it had one."""

    record_id: str
    business_type: str | None
    stage: str | None
    left: str | None


def settle(obj: ObjectDef, current: dict[str, Any] | None, values: dict[str, Any]) -> tuple[list[FieldError], bool]:
    """Fill in the business type and stage of ``values`` (the coerced input, changed in place) and
    check them against the record as it will be; returns the problems and whether the record
    leaves a closed stage (a reopening)."""
    if not obj.business_types:
        return ([FieldError("NOT_ALLOWED", "business_type", f"'{obj.api_name}' has no business types")]
                if values.get("business_type") is not None else []), False
    errors: list[FieldError] = []
    creating = current is None
    before = current or {}
    if not creating and before.get("business_type") is None and values.get("business_type") is None:
        return [], False  # a record from before its object had business types, not given one now
    if creating and values.get("business_type") is None:
        default = obj.default_business_type
        values["business_type"] = default.api_name if default else None
    kind_name = values.get("business_type", before.get("business_type"))
    kind = obj.business_type(kind_name) if kind_name else None
    if kind is None:
        errors.append(FieldError("INVALID_VALUE", "business_type", f"'{kind_name}' is not a business type of '{obj.api_name}'"
                                 if kind_name else "is required"))
        return errors, False
    if (creating or "business_type" in values and values["business_type"] != before.get("business_type")) and not kind.active:
        errors.append(FieldError("INACTIVE", "business_type", f"'{kind.api_name}' is no longer in use for new records"))
    record = {**before, **values}
    type_changed = not creating and kind.api_name != before.get("business_type")
    errors.extend(_picklist_problems(kind, record, values, type_changed or creating))
    reopening = False
    if obj.has_stages:
        stage_errors, reopening = _stage(obj, kind, before, values, record, creating, type_changed)
        errors.extend(stage_errors)
    return errors, reopening


def _picklist_problems(kind: BusinessTypeDef, record: dict[str, Any], values: dict[str, Any], everything: bool) -> list[FieldError]:
    errors = []
    for name, allowed in kind.picklists.items():
        if not everything and name not in values:
            continue
        value = record.get(name)
        chosen = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
        for item in chosen:
            if item not in allowed:
                errors.append(FieldError("NOT_ALLOWED_FOR_TYPE", name, f"'{item}' is not a value for {kind.label} records"))
    return errors


def _stage(obj: ObjectDef, kind: BusinessTypeDef, before: dict[str, Any], values: dict[str, Any], record: dict[str, Any],
           creating: bool, type_changed: bool) -> tuple[list[FieldError], bool]:
    if not kind.stages:
        if values.get("stage") is not None:
            return [FieldError("INVALID_STAGE", "stage", f"{kind.label} records have no stages")], False
        if before.get("stage") is not None:
            values["stage"] = None
        return [], False
    if not creating and not type_changed and before.get("stage") is None and values.get("stage") is None:
        return [], False  # a record from before its type had stages, not moved now
    if creating and values.get("stage") is None:
        values["stage"] = kind.stages[0].api_name
    name = values.get("stage", before.get("stage"))
    stage = kind.stage(name) if name else None
    if stage is None:
        where = f"'{name}' is not a stage of {kind.label} records" if name else "is required"
        if type_changed and "stage" not in values:
            where += f"; give one of {kind.label}'s stages with the new business type"
        return [FieldError("INVALID_STAGE", "stage", where)], False
    entering = creating or name != before.get("stage")
    if not entering:
        return [], False
    values["stage"] = name
    errors = [FieldError("REQUIRED_FOR_STAGE", field, f"is required to enter the stage '{stage.label}'")
              for field in stage.required_fields if _empty(record.get(field))]
    left = obj.stage(before["stage"]) if before.get("stage") else None
    reopening = left is not None and left[1].closed and not creating
    return errors, reopening


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def due_predicate(obj: ObjectDef, table, within_days: int, now: datetime):
    """Records whose time in their stage runs out within ``within_days`` days (0: already past the
    stage's expected days), in open stages that expect a duration; one indexable predicate."""
    terms = [and_(table.c.stage == stage.api_name, table.c.stage_entered_at <= now - timedelta(days=stage.expected_days - within_days))
             for kind in obj.business_types for stage in kind.stages if stage.expected_days is not None and not stage.closed]
    return or_(*terms) if terms else false()


def probability(obj: ObjectDef, stage_name: str | None) -> int | None:
    found = obj.stage(stage_name) if stage_name else None
    return found[1].probability if found else None


def stage_of(obj: ObjectDef, stage_name: str | None) -> StageDef | None:
    found = obj.stage(stage_name) if stage_name else None
    return found[1] if found else None


def record_moves(conn: Connection, obj: ObjectDef, moves: list[StageMove], actor_id: str | None, at: datetime) -> None:
    """Close each record's open stage-history entry and open one for the stage it entered."""
    if not moves:
        return
    history = store.stage_history
    leaving = [m.record_id for m in moves if m.left is not None]
    if leaving:
        open_entries = conn.execute(select(history.c.id, history.c.entered_at).where(
            history.c.object_api_name == obj.api_name, history.c.record_id.in_(leaving), history.c.left_at.is_(None))).all()
        for entry in open_entries:
            conn.execute(update(history).where(history.c.id == entry.id).values(
                left_at=at, left_by=actor_id, seconds_in_stage=max(int((at - entry.entered_at).total_seconds()), 0)))
    entering = [m for m in moves if m.stage is not None]
    if entering:
        conn.execute(insert(history), [
            {"object_api_name": obj.api_name, "record_id": m.record_id, "business_type": m.business_type, "stage": m.stage,
             "entered_at": at, "entered_by": actor_id} for m in entering])


def stage_history(conn: Connection, obj: ObjectDef, record_id: str) -> list[dict[str, Any]]:
    history = store.stage_history
    rows = conn.execute(select(history).where(history.c.object_api_name == obj.api_name, history.c.record_id == record_id)
                        .order_by(history.c.entered_at, history.c.id)).mappings()
    return [{"stage": r["stage"], "business_type": r["business_type"], "entered_at": r["entered_at"], "entered_by": r["entered_by"],
             "left_at": r["left_at"], "left_by": r["left_by"], "seconds_in_stage": r["seconds_in_stage"]} for r in rows]
