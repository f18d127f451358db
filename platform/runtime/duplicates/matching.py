"""Finding the records a duplicate rule matches, in SQL through the match keys.

One statement per rule (``match: all``: the keys of every field joined on the record) or per field
(``match: any``), whatever the number of records: candidates come from the key index, joined to the
record table for the live records, their owner and whether the caller may read them (the record
service's own read predicate, as a column). Fuzzy fields are filtered in SQL by the shared bigram
count the threshold needs and scored from it. At most :data:`CANDIDATES` records per statement,
best first. One more statement names the owners.

Score of a match: exact, normalized and phone fields count 1, fuzzy ones their similarity; with
``all`` the score is the mean over the fields, with ``any`` the best field's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, case, func, literal, select

from ...metadata.catalog import Catalog
from ...metadata.definitions import ObjectDef
from . import normalize
from .definitions import DuplicateRule, FieldMatch
from .store import match_keys

CANDIDATES = 50
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Match:
    record_id: str
    owner_id: str | None
    visible: bool
    rule: str
    score: float
    fields: tuple[str, ...]


def find(conn: Connection, obj: ObjectDef, table: Table, read_predicate: Any, rule: DuplicateRule, record: dict[str, Any],
         own_id: str | None) -> list[Match]:
    """The live records other than ``own_id`` that ``rule`` finds alike ``record``, best first."""
    keyed = [(field, _keys(field, record.get(field.field))) for field in rule.fields]
    if rule.match == "all":
        if any(not keys for _, keys in keyed):
            return []
        return _matches(conn, obj, table, read_predicate, rule, keyed, own_id)
    best: dict[str, Match] = {}
    for field, keys in keyed:
        if not keys:
            continue
        for match in _matches(conn, obj, table, read_predicate, rule, [(field, keys)], own_id):
            known = best.get(match.record_id)
            if known is None:
                best[match.record_id] = match
            else:
                best[match.record_id] = Match(match.record_id, match.owner_id, match.visible, rule.api_name,
                                              max(known.score, match.score), (*known.fields, *match.fields))
    return sorted(best.values(), key=lambda m: (-m.score, m.record_id))


def owner_names(conn: Connection, catalog: Catalog, owner_ids: set[str]) -> dict[str, str]:
    """Each owner's full name, or username when it has none."""
    if not owner_ids:
        return {}
    users = catalog.table("user")
    rows = conn.execute(select(users.c.id, users.c.username, users.c.full_name).where(users.c.id.in_(sorted(owner_ids))))
    return {str(row.id): row.full_name or row.username for row in rows}


def _keys(field: FieldMatch, value: Any) -> frozenset[str]:
    return normalize.keys(field.method, value) if isinstance(value, str) else frozenset()


def _matches(conn, obj, table, read_predicate, rule: DuplicateRule, keyed: list[tuple[FieldMatch, frozenset[str]]],
             own_id: str | None) -> list[Match]:
    parts = [_candidates(obj, field, keys).subquery(f"match_{i}") for i, (field, keys) in enumerate(keyed)]
    scores = [part.c.shared * 2.0 / (len(keys) + part.c.size) if field.method == "fuzzy" else literal(1.0)
              for part, (field, keys) in zip(parts, keyed)]
    query = select(table.c.id, table.c.owner_id, case((read_predicate, 1), else_=0).label("visible"),
                   *(part.c.shared.label(f"shared_{i}") for i, part in enumerate(parts)),
                   *(part.c.size.label(f"size_{i}") for i, part in enumerate(parts))).select_from(table)
    for part in parts:
        query = query.join(part, part.c.record_id == table.c.id)
    query = query.where(table.c.deleted_at.is_(None))
    if own_id is not None:
        query = query.where(table.c.id != own_id)
    rows = conn.execute(query.order_by(sum(scores[1:], scores[0]).desc(), table.c.id).limit(CANDIDATES)).all()
    found = []
    for row in rows:
        each = [normalize.dice(getattr(row, f"shared_{i}"), len(keys), getattr(row, f"size_{i}")) if field.method == "fuzzy" else 1.0
                for i, (field, keys) in enumerate(keyed)]
        if any(score + TOLERANCE < field.threshold for score, (field, _) in zip(each, keyed)):
            continue
        found.append(Match(str(row.id), None if row.owner_id is None else str(row.owner_id), bool(row.visible), rule.api_name,
                           round(sum(each) / len(each), 4), tuple(field.field for field, _ in keyed)))
    return found


def _candidates(obj: ObjectDef, field: FieldMatch, keys: frozenset[str]):
    """The records sharing keys with the value: per record how many and how many it has."""
    k = match_keys.c
    of_matcher = (k.object_api_name == obj.api_name, k.field == field.field, k.method == field.method)
    if field.method != "fuzzy":
        return select(k.record_id, literal(1).label("shared"), k.size).where(*of_matcher, k.key.in_(sorted(keys)))
    shared, size = func.count(), func.max(k.size)
    return (select(k.record_id, shared.label("shared"), size.label("size")).where(*of_matcher, k.key.in_(sorted(keys)))
            .group_by(k.record_id).having(shared * 2 >= (size + len(keys)) * (field.threshold - TOLERANCE)))
