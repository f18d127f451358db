"""Why a claim is refused, each with its own stable code (the GraphQL ``extensions.code``)."""
from __future__ import annotations

from ...metadata.errors import Conflict


class ClaimLimitReached(Conflict):
    """The user claimed as many records from this pool today (UTC) as the pool allows."""

    code = "CLAIM_LIMIT"


class HoldingCapReached(Conflict):
    """The user already owns as many records of the pooled object as the pool allows."""

    code = "HOLDING_CAP"


class CoolingDown(Conflict):
    """The user gave this record up (released, or it was recycled from them) too recently."""

    code = "COOLDOWN"
