"""Auto numbers: unique and gap-free per field, under any concurrency.

The counter row is updated inside the record's own transaction, so the row lock queues concurrent
writers and a rolled-back insert gives its numbers back.
"""
from __future__ import annotations

from sqlalchemy import Connection, update

from ..metadata import store
from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.fieldtypes.auto_number import render


def assign_numbers(conn: Connection, obj: ObjectDef, rows: list[dict]) -> None:
    """Fill every auto-number field of ``rows`` with the next numbers, in row order."""
    for field in obj.fields:
        if field.type == "auto_number":
            _assign(conn, obj, field, rows)


def _assign(conn: Connection, obj: ObjectDef, field: FieldDef, rows: list[dict]) -> None:
    counter = store.auto_numbers
    after = conn.execute(
        update(counter)
        .where(counter.c.object_api_name == obj.api_name, counter.c.field_api_name == field.api_name)
        .values(next_value=counter.c.next_value + len(rows))
        .returning(counter.c.next_value)
    ).scalar_one()
    first = after - len(rows)
    pattern = field.options["format"]
    for offset, row in enumerate(rows):
        row[field.api_name] = render(pattern, first + offset)
