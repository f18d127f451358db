"""Which function runs a job of each kind.

Handlers register on a service (``runtime.jobs.register``) or, for worker processes that import
them by module (``lowcode worker --import MODULE``), on :data:`default_handlers` with the
:func:`job_handler` decorator. A handler must be idempotent: a job may run again after a failure
or after its worker died past the lease, so repeating it must leave things as one run would.
"""
from __future__ import annotations

from typing import Callable

Handler = Callable[..., None]
"""Called with the running :class:`~.service.Job`; returns nothing, raises to fail the attempt."""


class FinalFailure(Exception):
    """Raised by a handler whose job can never succeed (a webhook answering 404): the job is marked
    failed at once, without the retries an ordinary error gets."""


class Handlers:
    """Handlers by job kind; a kind has one handler, so registering a second one raises."""

    def __init__(self, fallback: "Handlers | None" = None):
        self._by_kind: dict[str, Handler] = {}
        self._fallback = fallback

    def register(self, kind: str, handler: Handler) -> Handler:
        if not kind or not isinstance(kind, str):
            raise ValueError("a job kind is a non-empty string such as 'stage.overdue_check'")
        current = self._by_kind.get(kind)
        if current is not None and current is not handler:
            raise ValueError(f"job kind '{kind}' already has the handler {current.__module__}.{current.__qualname__}")
        self._by_kind[kind] = handler
        return handler

    def handler(self, kind: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""
        return lambda function: self.register(kind, function)

    def find(self, kind: str) -> Handler | None:
        found = self._by_kind.get(kind)
        if found is None and self._fallback is not None:
            return self._fallback.find(kind)
        return found

    def kinds(self) -> list[str]:
        own = set(self._by_kind)
        return sorted(own | set(self._fallback.kinds()) if self._fallback else own)


default_handlers = Handlers()
"""Handlers every job service of the process knows (registered when their module is imported)."""

job_handler = default_handlers.handler
