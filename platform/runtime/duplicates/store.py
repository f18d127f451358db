"""The match keys of duplicate rules: per record and matcher (a field compared one way), the keys its
value reduces to (:mod:`.normalize`), so that candidates are found by an indexed lookup.

Keys are kept per matcher, not per rule: rules comparing a field the same way share them, and a
rule's threshold, action or condition can change without touching them. The keys of a matcher are
complete while an active rule of the object uses it: written for each record saved (create and
update, in the write's transaction) and built for every existing record when a rule starts using a
matcher no other active rule of the object used (:func:`rebuild`, inside the metadata change).
Keys of deleted records stay (a restored record matches again); candidates are joined to the
record table and only live records count.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
)

from ...metadata.definitions import ObjectDef
from ...metadata.sqltypes import RecordId
from ...metadata.store import NAMING_CONVENTION
from .normalize import keys as keys_of_value

duplicates_metadata = MetaData(naming_convention=NAMING_CONVENTION)
REBUILD_CHUNK = 1000

match_keys = Table(
    "lc_duplicate_key", duplicates_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("field", String(63), primary_key=True),
    Column("method", String(15), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("record_id", RecordId, primary_key=True),
    Column("size", Integer, nullable=False),
    Index("ix_lc_duplicate_key_record", "object_api_name", "record_id"),
)
"""``size``: how many keys the record has for the matcher (one, or its bigrams for fuzzy matching)."""

Matcher = tuple[str, str]


def rows_of(object_api_name: str, record: dict[str, Any], matchers: Iterable[Matcher]) -> list[dict[str, Any]]:
    rows = []
    for field, method in sorted(matchers):
        value = record.get(field)
        found = keys_of_value(method, value) if isinstance(value, str) else frozenset()
        rows += [{"object_api_name": object_api_name, "field": field, "method": method, "key": key,
                  "record_id": record["id"], "size": len(found)} for key in sorted(found)]
    return rows


def replace(conn: Connection, object_api_name: str, record: dict[str, Any], matchers: set[Matcher], *, new: bool) -> None:
    """The record's keys for ``matchers`` (those it had go, unless it is ``new``)."""
    if not new:
        conn.execute(delete(match_keys).where(match_keys.c.object_api_name == object_api_name, match_keys.c.record_id == record["id"]))
    rows = rows_of(object_api_name, record, matchers)
    if rows:
        conn.execute(insert(match_keys), rows)


def rebuild(conn: Connection, obj: ObjectDef, table: Table, matchers: set[Matcher]) -> None:
    """The keys of every record of ``obj`` (deleted ones too: a restore brings them back) for
    ``matchers``, read and written a chunk of records at a time."""
    if not matchers:
        return
    conn.execute(delete(match_keys).where(match_keys.c.object_api_name == obj.api_name, _of(matchers)))
    names = sorted({field for field, _ in matchers})
    after = None
    while True:
        query = select(table.c.id, *(table.c[name] for name in names)).order_by(table.c.id).limit(REBUILD_CHUNK)
        if after is not None:
            query = query.where(table.c.id > after)
        chunk = conn.execute(query).mappings().all()
        rows = [row for record in chunk for row in rows_of(obj.api_name, dict(record), matchers)]
        if rows:
            conn.execute(insert(match_keys), rows)
        if len(chunk) < REBUILD_CHUNK:
            return
        after = chunk[-1]["id"]


def forget(conn: Connection, object_api_name: str, field_api_name: str | None) -> None:
    """Drop the keys of a deleted object or field."""
    where = match_keys.c.object_api_name == object_api_name
    if field_api_name is not None:
        where = and_(where, match_keys.c.field == field_api_name)
    conn.execute(delete(match_keys).where(where))


def _of(matchers: set[Matcher]):
    return or_(*(and_(match_keys.c.field == field, match_keys.c.method == method) for field, method in sorted(matchers)))

