"""Who is acting on the platform."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """A user (``id`` of a ``user`` record) or the platform itself (``is_system``).

    Services take an actor on every call: it is written to change logs and history, and the
    permission layer decides from it what the call may see and do.
    """

    id: str | None
    name: str = ""
    is_system: bool = False


SYSTEM_ACTOR = Actor(None, "system", True)
