"""Inbox cursors: the position after one notification in the newest-first order."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from ...metadata.errors import FieldError, ValidationFailed


def encode_cursor(created_at: datetime, notification_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), notification_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of the notification the cursor points after; refused when malformed."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, notification_id = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        instant = datetime.fromisoformat(created_at)
        if instant.tzinfo is None:
            raise ValueError("naive")
        return instant, str(uuid.UUID(notification_id))
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed("The cursor is not valid for the inbox.", errors=[
            FieldError("INVALID_CURSOR", "after", "is not an endCursor returned by an earlier page of the inbox")]) from None
