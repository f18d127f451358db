"""Racing writers of the same duplicate, made to take turns (PostgreSQL).

Before a write is checked, it takes a transaction-scoped advisory lock on each value it would be
matched by (object, field, method, key); for a fuzzy field, whose neighbours have no key in common
to lock on, on the object and field as a whole. A second writer of the same value waits for the
first to commit, and its check (a new statement under READ COMMITTED) then sees the first's keys.
Locks are taken in sorted order, so two writers never wait on each other. SQLite runs one writer
at a time and needs none of this.
"""
from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, text

from . import normalize
from .definitions import DuplicateRule


def lock_names(object_api_name: str, rules: list[DuplicateRule], record: dict[str, Any]) -> list[str]:
    names = set()
    for rule in rules:
        for field in rule.fields:
            value = record.get(field.field)
            if not isinstance(value, str) or not normalize.comparable(field.method, value):
                continue
            if field.method == "fuzzy":
                names.add(f"{object_api_name}:{field.field}:fuzzy")
            else:
                names.update(f"{object_api_name}:{field.field}:{field.method}:{key}" for key in normalize.keys(field.method, value))
    return sorted(names)


def take_turns(conn: Connection, object_api_name: str, rules: list[DuplicateRule], record: dict[str, Any]) -> None:
    """Take the write's locks in one statement, in sorted order."""
    if conn.dialect.name != "postgresql":
        return
    numbers = sorted(int.from_bytes(hashlib.sha256(f"duplicate:{name}".encode()).digest()[:8], "big", signed=True)
                     for name in lock_names(object_api_name, rules, record))
    if numbers:
        conn.execute(LOCK_ALL, {"numbers": numbers})


LOCK_ALL = text("SELECT count(pg_advisory_xact_lock(n)) FROM (SELECT unnest(CAST(:numbers AS bigint[])) AS n ORDER BY 1) AS sorted")
