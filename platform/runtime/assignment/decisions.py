"""Which entry of a rule decides for a record, and whom (or which pool) it names.

Entries are tried in order; the first whose condition holds (no condition: always) and that finds
a receiver decides. An entry that finds nobody now (its designated user was deactivated, its group
or region has no active member left, the record's region is not mapped and there is no fallback,
its pool was deleted) is passed over, so a record is never given to nobody by accident; when no
entry decides, the record stays where it is. Round robins take their turn here (see
:mod:`.round_robin`), in the caller's transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ...metadata.actors import Actor
from ...metadata.catalog import Catalog
from ...metadata.definitions import ObjectDef
from ..pools.store import pools as POOLS
from ..rules import condition_holds
from . import candidates
from .round_robin import Turns, take_turn
from .settings import POOL, REGION, ROUND_ROBIN, USER, Entry, Group, RuleSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    entry: int
    method: str
    owner_id: str | None = None
    org_unit_id: str | None = None
    """The record's unit (a region's); ``None``: the unit follows the new owner."""
    pool: str | None = None


def decide(conn: Connection, catalog: Catalog, obj: ObjectDef, rule: str, settings: RuleSettings, record: dict[str, Any],
           actor: Actor, now: datetime) -> Decision | None:
    for entry in settings.entries:
        if not condition_holds(catalog, obj, entry.condition, actor, record, None, now):
            continue
        decision = _receiver(conn, obj, rule, entry, record, now)
        if decision is not None:
            return decision
        log.warning("assignment rule %s.%s: entry %d matched record %s but found nobody to assign it to",
                    obj.api_name, rule, entry.index, record.get("id"))
    return None


def _receiver(conn: Connection, obj: ObjectDef, rule: str, entry: Entry, record: dict[str, Any], now: datetime) -> Decision | None:
    if entry.method == USER:
        return Decision(entry.index, USER, owner_id=entry.user) if candidates.user_states(conn, [entry.user]).get(entry.user) else None
    if entry.method == ROUND_ROBIN and entry.group is None:
        found = candidates.listed(conn, entry.users)
        if not found:
            return None
        chosen = take_turn(conn, Turns(obj.api_name, rule, str(entry.index)), found,
                           lambda user_id: candidates.place_in_list(entry.users, user_id), now)
        return Decision(entry.index, ROUND_ROBIN, owner_id=chosen)
    if entry.method == ROUND_ROBIN:
        chosen = _turn_in_group(conn, Turns(obj.api_name, rule, str(entry.index)), entry.group, now)
        return None if chosen is None else Decision(entry.index, ROUND_ROBIN, owner_id=chosen)
    if entry.method == REGION:
        group = entry.region_group(record.get(entry.field))
        if group is None:
            return None
        chosen = _turn_in_group(conn, Turns(obj.api_name, rule, f"{entry.index}:{group.unit}"), group, now)
        return None if chosen is None else Decision(entry.index, REGION, owner_id=chosen, org_unit_id=group.unit)
    if entry.method == POOL:
        found = conn.execute(select(POOLS.c.api_name).where(
            POOLS.c.api_name == entry.pool, POOLS.c.object_api_name == obj.api_name)).first()
        return None if found is None else Decision(entry.index, POOL, pool=entry.pool)
    return None


def _turn_in_group(conn: Connection, turns: Turns, group: Group, now: datetime) -> str | None:
    found = candidates.members(conn, group)
    if not found:
        return None
    return take_turn(conn, turns, found, lambda user_id: candidates.username_key(conn, user_id), now)
