"""Column types that behave the same on SQLite and PostgreSQL.

Backend differences stay here, inside SQLAlchemy types, never in per-database branches elsewhere.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import JSON, DateTime, Numeric, TypeDecorator, Uuid
from sqlalchemy.dialects.postgresql import JSONB

RecordId = Uuid(as_uuid=False)
"""Record ids: native ``uuid`` on PostgreSQL, 32 hex characters on SQLite; strings in Python."""

JsonValue = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator):
    """A timezone-aware instant, stored in UTC; naive values are refused before they get here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class ExactDecimal(TypeDecorator):
    """``NUMERIC(p, s)``: exact on PostgreSQL; on SQLite (no decimal type) read back and quantized."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Numeric(self.impl.precision, self.scale, asdecimal=False))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        return float(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            value = Decimal(repr(value))
        return value.quantize(self._quantum)
