"""A reminder's due records as inbox deliveries, one key per occasion.

Each notification carries the key ``reminder:<object>:<reminder>:<record id>:<occasion>``; the
inbox delivers a key once per user, so a second delivery of the same occasion is a no-op, whichever
scan, worker or restarted process tries it. The inbox takes them all in a few statements.
"""
from __future__ import annotations

import hashlib

from ..notifications import Delivery
from ..notifications.store import notifications
from .due import Due
from .settings import Reminder

MAX_KEY = notifications.c.dedupe_key.type.length


def notification_key(reminder: Reminder, record_id: str, occasion: str) -> str:
    """The key of one occasion; a key too long for the inbox is replaced by its digest."""
    key = f"reminder:{reminder.object_api_name}:{reminder.api_name}:{record_id}:{occasion}"
    return key if len(key) <= MAX_KEY else f"reminder:{hashlib.sha256(key.encode()).hexdigest()}"


def deliveries(reminder: Reminder, found: list[Due]) -> list[Delivery]:
    return [Delivery(item.user_id, f"reminder.{reminder.type}", reminder.title, notification_key(reminder, item.record_id, item.occasion),
                     item.body, (reminder.object_api_name, item.record_id)) for item in found]
