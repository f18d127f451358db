"""Roll-up fields kept exact: every write of detail records recomputes its masters' summaries.

In the write's transaction, the masters touched (before and after the write) are locked in id
order (``FOR NO KEY UPDATE`` on PostgreSQL: it queues concurrent writers of the same master without
blocking foreign-key checks), then each summary is recomputed from the live children in a new
statement, which under READ COMMITTED sees every child committed before the lock was granted. So
concurrent child writes serialize on the master and the stored value is never a lost update. A
master whose summaries another roll-up reads passes the change on to its own master.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import Connection, select

from ..metadata.catalog import Catalog
from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.derived_fields import rollups_over, summary_update

CHUNK = 500
MAX_DEPTH = 8


def summaries(catalog: Catalog, child: str) -> dict[str, list[tuple[ObjectDef, FieldDef]]]:
    """The roll-ups over ``child``, by the child's master-detail field they follow."""
    def build() -> dict[str, list[tuple[ObjectDef, FieldDef]]]:
        found: dict[str, list[tuple[ObjectDef, FieldDef]]] = {}
        for parent, rollup in rollups_over(catalog.objects, child):
            found.setdefault(rollup.options["relationship_field"], []).append((parent, rollup))
        return found
    return catalog.memo(("rollups-over", child), build)


def inputs(catalog: Catalog, child: str) -> frozenset[str]:
    """The child fields whose change can change a summary (links, aggregated and filtered fields)."""
    def build() -> frozenset[str]:
        from ..metadata.expressions import referenced_fields

        names = {"deleted_at"}
        for link, pairs in summaries(catalog, child).items():
            names.add(link)
            for _, rollup in pairs:
                names.update(n for n in (rollup.options.get("aggregate_field"),) if n)
                if rollup.options.get("filter"):
                    names.update(referenced_fields(rollup.options["filter"]))
        return frozenset(names)
    return catalog.memo(("rollup-inputs", child), build)


def starting_values(obj: ObjectDef) -> dict[str, Any]:
    """What a new master's counts and sums start at (no children yet)."""
    values: dict[str, Any] = {}
    for field in obj.fields:
        if field.type == "rollup" and field.options["function"] in ("count", "sum"):
            scale = field.options.get("scale")
            values[field.api_name] = 0 if scale is None else Decimal(0).scaleb(-scale)
    return values


def masters(catalog: Catalog, child: str, records: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """The master ids ``records`` (child records, as dicts) point to, by link field."""
    links = summaries(catalog, child)
    found: dict[str, set[str]] = {}
    for record in records:
        for link in links:
            if record.get(link) is not None:
                found.setdefault(link, set()).add(record[link])
    return found


def stored_masters(conn: Connection, catalog: Catalog, child: str, ids: list[str]) -> dict[str, set[str]]:
    """The master ids the stored ``child`` records ``ids`` point to, by link field."""
    links = list(summaries(catalog, child))
    if not links or not ids:
        return {}
    table = catalog.table(child)
    found: dict[str, set[str]] = {}
    for start in range(0, len(ids), CHUNK):
        for row in conn.execute(select(*(table.c[link] for link in links)).where(table.c.id.in_(ids[start:start + CHUNK]))):
            for link, value in zip(links, row):
                if value is not None:
                    found.setdefault(link, set()).add(value)
    return found


def lock_masters(conn: Connection, catalog: Catalog, child: str, touched: dict[str, set[str]]) -> None:
    """Lock the masters a write of ``child`` records will recompute, in id order, before it writes."""
    for parent, ids in _by_parent(catalog, child, touched).items():
        table = catalog.table(parent)
        ordered = sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            conn.execute(select(table.c.id).where(table.c.id.in_(ordered[start:start + CHUNK]))
                         .order_by(table.c.id).with_for_update(key_share=True)).all()


def refresh(conn: Connection, catalog: Catalog, child: str, touched: dict[str, set[str]], depth: int = 0) -> None:
    """Recompute the summaries over ``child`` of the masters in ``touched`` (by link field)."""
    if not touched or depth > MAX_DEPTH:
        return
    lock_masters(conn, catalog, child, touched)
    links = summaries(catalog, child)
    child_table = catalog.table(child)
    for parent, ids in _by_parent(catalog, child, touched).items():
        rollups = [rollup for link in touched for owner, rollup in links.get(link, ()) if owner.api_name == parent]
        ordered = sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            conn.execute(summary_update(catalog.table(parent), child_table, rollups, ordered[start:start + CHUNK]))
        if not inputs(catalog, parent).isdisjoint(r.api_name for r in rollups):
            refresh(conn, catalog, parent, stored_masters(conn, catalog, parent, ordered), depth + 1)


def _by_parent(catalog: Catalog, child: str, touched: dict[str, set[str]]) -> dict[str, set[str]]:
    links = summaries(catalog, child)
    parents: dict[str, set[str]] = {}
    for link, ids in touched.items():
        for parent, _ in links.get(link, ()):
            parents.setdefault(parent.api_name, set()).update(ids)
    return parents


def merged(*touched: dict[str, set[str]]) -> dict[str, set[str]]:
    together: dict[str, set[str]] = {}
    for one in touched:
        for link, ids in one.items():
            together.setdefault(link, set()).update(ids)
    return together
