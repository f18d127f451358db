"""The sales funnel and weighted forecast of an object with stages, and conversion between stages.

The funnel is one aggregate of the caller's visible live records: per period of a date field
(month, quarter, year) and stage (and owner, when asked), the count, the amount and the weighted
amount (amount × the stage's win probability). Amounts are summed exactly in SQL; the weighting is
exact too, since a group has one stage. Conversion rates come from the stage history: of the
records that reached a stage of their type's path to won (entered it or a later one), the share
that reached the next.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from ..metadata import store
from ..metadata.definitions import ObjectDef
from ..metadata.errors import FieldError, ValidationFailed
from .aggregates import DATE_GRANULARITIES, NUMERIC_TYPES, TEMPORAL_TYPES

HUNDRED = Decimal(100)


def funnel_request(obj: ObjectDef, amount_field: Any, date_field: Any, period: Any, by_owner: Any,
                   hidden: frozenset[str]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The aggregate (group by, measures) of a funnel request, or every problem with it."""
    errors = []
    if not obj.has_stages:
        errors.append(FieldError("NO_STAGES", None, f"'{obj.api_name}' has no stages: define business types with stages first"))
    amount = obj.field(amount_field) if isinstance(amount_field, str) else None
    if amount is None or amount.value_type not in NUMERIC_TYPES or not amount.field_type.in_sql(amount):
        errors.append(FieldError("INVALID_VALUE", "amount_field", "name a number, decimal or currency field of the object"))
    elif amount_field in hidden:
        errors.append(FieldError("FORBIDDEN", "amount_field", f"you may not read '{obj.api_name}.{amount_field}'"))
    group_by: list[dict[str, Any]] = []
    date = obj.field(date_field) if isinstance(date_field, str) else None
    if (period is not None or date_field is not None) and (date is None or date.value_type not in TEMPORAL_TYPES or not date.field_type.in_sql(date)):
        errors.append(FieldError("INVALID_VALUE", "date_field", "name a date or datetime field of the object"))
    elif period is not None:
        if period not in DATE_GRANULARITIES or period == "day":
            errors.append(FieldError("INVALID_VALUE", "period", "must be month, quarter or year"))
        else:
            group_by.append({"field": date_field, "granularity": period})
    group_by.append({"field": "stage"})
    if by_owner:
        group_by.append({"field": "owner_id"})
    if errors:
        raise ValidationFailed.of(errors)
    return group_by, [("sum", amount_field)]


def funnel_rows(obj: ObjectDef, groups: list[dict[str, Any]], amount_field: str, date_field: str | None) -> list[dict[str, Any]]:
    """The aggregate's groups as funnel rows in stage order, with probability and weighted amount."""
    order = {stage.api_name: (kind.position, stage.position) for kind in obj.business_types for stage in kind.stages}
    rows = []
    for group in groups:
        stage_name = group["key"].get("stage")
        found = obj.stage(stage_name) if stage_name else None
        amount = group["sum"].get(amount_field)
        probability = found[1].probability if found else None
        rows.append({
            "period": group["key"].get(date_field) if date_field else None,
            "business_type": found[0].api_name if found else None,
            "stage": stage_name,
            "category": found[1].category if found else None,
            "probability": probability,
            "owner_id": group["key"].get("owner_id"),
            "count": group["count"],
            "amount": amount,
            "weighted_amount": None if amount is None or probability is None else amount * probability / HUNDRED,
        })
    rows.sort(key=lambda r: (r["period"] is None, r["period"] or 0, order.get(r["stage"], (1 << 30, 0)), r["owner_id"] or ""))
    return rows


def conversions(conn: Connection, obj: ObjectDef, table: Table, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Per business type, each step of its path through open stages to won: of the visible records
    that reached a stage (entered it or a later one of the path), the share that reached the next."""
    history = store.stage_history
    kind_of = {stage.api_name: index for index, kind in enumerate(obj.business_types) for stage in kind.stages}
    position_of = {stage.api_name: position for kind in obj.business_types
                   for position, stage in enumerate(s for s in kind.stages if s.category != "lost")}
    if not position_of:
        return []
    kind = case(kind_of, value=history.c.stage)
    furthest = (select(kind.label("kind"), func.max(case(position_of, value=history.c.stage)).label("position"))
                .select_from(history.join(table, table.c.id == history.c.record_id))
                .where(history.c.object_api_name == obj.api_name, where)
                .group_by(history.c.record_id, kind).subquery())
    counted = conn.execute(select(furthest.c.kind, furthest.c.position, func.count())
                           .where(furthest.c.position.is_not(None)).group_by(furthest.c.kind, furthest.c.position)).all()
    steps = []
    for index, business_type in enumerate(obj.business_types):
        path = [s for s in business_type.stages if s.category != "lost"]
        reached = [sum(n for k, position, n in counted if k == index and position >= i) for i in range(len(path))]
        for i, (current, following) in enumerate(zip(path, path[1:])):
            steps.append({"business_type": business_type.api_name, "from_stage": current.api_name, "to_stage": following.api_name,
                          "reached": reached[i], "converted": reached[i + 1],
                          "rate": None if not reached[i] else (Decimal(reached[i + 1]) / Decimal(reached[i])).quantize(Decimal("0.0001"))})
    return steps
