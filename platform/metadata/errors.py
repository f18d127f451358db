"""The platform's errors, as data.

Every error carries a stable ``code`` (the GraphQL ``extensions.code``), an HTTP status, a message
that says how to fix it and, for validation, a list of :class:`FieldError` naming each bad field.
Transports map these in one place; nothing below them formats errors for a client.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``field`` is a dotted path (``fields.2.options.max_length``)."""

    code: str
    field: str | None
    message: str
    ctx: dict[str, Any] = dc_field(default_factory=dict)

    def at(self, prefix: str | int) -> "FieldError":
        """The same error seen from one level up (a row of a bulk write, an item of a list)."""
        path = f"{prefix}.{self.field}" if self.field else str(prefix)
        return FieldError(self.code, path, self.message, self.ctx)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message, **({"ctx": self.ctx} if self.ctx else {})}


class LowcodeError(Exception):
    """Base of every error the platform reports to a caller."""

    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, field: str | None = None, errors: list[FieldError] | None = None, **ctx: Any):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = list(errors or [])
        self.ctx = ctx

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        if self.ctx:
            body["ctx"] = self.ctx
        return body


class ValidationFailed(LowcodeError):
    """A record's values break the object's rules; ``errors`` lists every problem at once."""

    code = "VALIDATION_FAILED"
    http_status = 422

    @classmethod
    def of(cls, errors: list[FieldError]) -> "ValidationFailed":
        count = len(errors)
        return cls(f"{count} value{'s' if count != 1 else ''} failed validation: fix the listed fields.", errors=errors)


class InvalidDefinition(LowcodeError):
    """A metadata definition (object, field, option) is malformed; ``errors`` names each problem."""

    code = "INVALID_DEFINITION"
    http_status = 422


class UnsafeChange(LowcodeError):
    """A metadata change that would lose or corrupt existing data."""

    code = "UNSAFE_CHANGE"
    http_status = 409


class InUse(LowcodeError):
    """An object, field or record is referenced by others and cannot be removed."""

    code = "IN_USE"
    http_status = 409


class NotFound(LowcodeError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(LowcodeError):
    """The target changed since the caller read it (optimistic locking), or already exists."""

    code = "CONFLICT"
    http_status = 409


class Forbidden(LowcodeError):
    code = "FORBIDDEN"
    http_status = 403


class SchemaChangeFailed(LowcodeError):
    """The database refused a schema change; nothing of the metadata change was kept."""

    code = "SCHEMA_CHANGE_FAILED"
    http_status = 409


class Unauthenticated(LowcodeError):
    """No valid credentials: a missing, unknown, expired or revoked token, or a wrong password."""

    code = "UNAUTHENTICATED"
    http_status = 401


class RateLimited(LowcodeError):
    """Too many attempts; ``ctx.retry_after`` says how many seconds to wait."""

    code = "RATE_LIMITED"
    http_status = 429
