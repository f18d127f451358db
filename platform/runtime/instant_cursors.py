"""Cursors over lists ordered by an instant then an id (an inbox, a pool): opaque, checked on the way back."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from ..metadata.errors import FieldError, ValidationFailed


def encode_cursor(instant: datetime, item_id: str) -> str:
    raw = json.dumps([instant.isoformat(), item_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: Any, listing: str) -> tuple[datetime, str]:
    """``(instant, id)`` of the item the cursor points after; refused when malformed, naming the
    ``listing`` (e.g. "the inbox") it should come from."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        instant_text, item_id = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        instant = datetime.fromisoformat(instant_text)
        if instant.tzinfo is None:
            raise ValueError("naive")
        return instant, str(uuid.UUID(item_id))
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed(f"The cursor is not valid for {listing}.", errors=[
            FieldError("INVALID_CURSOR", "after", f"is not an endCursor returned by an earlier page of {listing}")]) from None
