"""Why an approval operation is refused, each with its own stable code (the GraphQL ``extensions.code``)."""
from __future__ import annotations

from ...metadata.errors import Conflict


class RecordLocked(Conflict):
    """The record waits for an approval: nobody but the platform changes, transfers or deletes it."""

    code = "LOCKED"


class AlreadyPending(Conflict):
    """The record already has a pending request; recall it or wait for its decision."""

    code = "ALREADY_PENDING"


class NoProcess(Conflict):
    """No active approval process of the object applies to the record (or the one named does not)."""

    code = "NO_PROCESS"


class NoApprover(Conflict):
    """A step of the plan has nobody (but the submitter) who could decide it."""

    code = "NO_APPROVER"

