"""Field history: old and new values of tracked fields, and the record's life events."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from ..metadata import store
from ..metadata.actors import Actor
from ..metadata.definitions import ObjectDef


def tracked_changes(obj: ObjectDef, before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, old, new)`` for each tracked field whose value changed, as JSON-ready values."""
    changes = []
    for field in obj.fields:
        if field.tracked and field.api_name in after and before.get(field.api_name) != after[field.api_name]:
            dump = field.field_type.dump
            changes.append((field.api_name, dump(field, before.get(field.api_name)), dump(field, after[field.api_name])))
    return changes


def write_history(conn: Connection, obj: ObjectDef, actor: Actor, at: datetime, entries: list[tuple[str, str | None, str, Any, Any]]) -> None:
    """Store ``(record_id, field, event, old, new)`` entries in one statement."""
    if not entries:
        return
    conn.execute(insert(store.field_history), [
        {"object_api_name": obj.api_name, "record_id": record_id, "field_api_name": field, "event": event,
         "old_value": old, "new_value": new, "actor_id": actor.id, "at": at}
        for record_id, field, event, old, new in entries
    ])
