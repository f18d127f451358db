"""Who is acting on the platform."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Actor:
    """A user (``id`` of a ``user`` record) or the platform itself (``is_system``).

    Services take an actor on every call: it is written to change logs and history, and the
    permission layer decides from it what the call may see and do. ``access`` is what the security
    layer resolved for this request (the user's roles and scopes at one policy version); an actor
    without it has no rights unless ``is_system`` (the platform itself, or a trusted in-process
    caller such as the CLI acting on a user's behalf).
    """

    id: str | None
    name: str = ""
    is_system: bool = False
    access: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.id is not None:
            try:
                object.__setattr__(self, "id", str(uuid.UUID(str(self.id))))
            except ValueError:
                raise ValueError(f"an actor id is the id of a user record (a UUID), not {self.id!r}") from None


SYSTEM_ACTOR = Actor(None, "system", True)
