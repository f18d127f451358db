"""When an owner's protection of a record runs out.

A record is protected for ``protection_days`` counted from the latest of its creation, its last
claim from the pool and (activity protection) the creation of its last live activity. With stage
protection, a record that has ever entered the pool's stage stays with its owner for good; the
others are protected from their creation or last claim. The queries below find, in SQL, the live
owned records whose protection started at or before a cutoff instant.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, not_, or_, select

from ...metadata import store as metadata_store
from ...metadata.catalog import Catalog
from .definitions import Pool
from .store import ACTIVITY, CLAIM, STAGE, moves

CHUNK = 500


def idle_records(conn: Connection, catalog: Catalog, pool: Pool, cutoff: datetime) -> list[Any]:
    """``(id, owner_id, version)`` of the live owned records whose protection started at or
    before ``cutoff``, oldest first."""
    table = catalog.table(pool.object_api_name)
    claimed_since = exists().where(moves.c.pool == pool.api_name, moves.c.record_id == table.c.id,
                                   moves.c.action == CLAIM, moves.c.at > cutoff)
    conditions = [table.c.deleted_at.is_(None), table.c.owner_id.is_not(None), table.c.created_at <= cutoff,
                  not_(claimed_since)]
    if pool.protection == ACTIVITY:
        activity = catalog.table(pool.activity_object)
        link = activity.c[pool.activity_field]
        conditions.append(not_(exists().where(link == table.c.id, activity.c.deleted_at.is_(None),
                                              activity.c.created_at > cutoff)))
    elif pool.protection == STAGE:
        history = metadata_store.stage_history
        conditions.append(or_(table.c.stage.is_(None), table.c.stage != pool.stage))
        conditions.append(not_(exists().where(history.c.object_api_name == pool.object_api_name,
                                              history.c.record_id == table.c.id, history.c.stage == pool.stage)))
    query = select(table.c.id, table.c.owner_id, table.c.version).where(and_(*conditions)).order_by(table.c.created_at, table.c.id)
    return conn.execute(query).all()


def protection_starts(conn: Connection, catalog: Catalog, pool: Pool, record_ids: list[str]) -> dict[str, datetime]:
    """When each record's current protection started."""
    table = catalog.table(pool.object_api_name)
    starts: dict[str, datetime] = {}

    def later(record_id, instant) -> None:
        if instant is not None and (record_id not in starts or instant > starts[record_id]):
            starts[record_id] = instant

    for start in range(0, len(record_ids), CHUNK):
        chunk = record_ids[start:start + CHUNK]
        for row in conn.execute(select(table.c.id, table.c.created_at).where(table.c.id.in_(chunk))):
            later(str(row.id), row.created_at)
        for row in conn.execute(select(moves.c.record_id, func.max(moves.c.at)).where(
                moves.c.pool == pool.api_name, moves.c.action == CLAIM, moves.c.record_id.in_(chunk)).group_by(moves.c.record_id)):
            later(str(row[0]), row[1])
        if pool.protection == ACTIVITY:
            activity = catalog.table(pool.activity_object)
            link = activity.c[pool.activity_field]
            for row in conn.execute(select(link, func.max(activity.c.created_at)).where(
                    link.in_(chunk), activity.c.deleted_at.is_(None)).group_by(link)):
                later(str(row[0]), row[1])
    return starts
