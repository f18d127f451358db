"""Column types that behave the same on SQLite and PostgreSQL.

Backend differences stay here, inside SQLAlchemy types, never in per-database branches elsewhere.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Numeric, Text, TypeDecorator, Uuid
from sqlalchemy.dialects.postgresql import JSONB

RecordId = Uuid(as_uuid=False)
"""Record ids: native ``uuid`` on PostgreSQL, 32 hex characters on SQLite; strings in Python."""

class JsonDocument(TypeDecorator):
    """A JSON document: ``jsonb`` on PostgreSQL; on SQLite, text (a column declared ``JSON`` would
    get numeric affinity there and turn a document such as ``12345678901234567890`` into a float)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    def process_result_value(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


JsonValue = JsonDocument()


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
    """An exact decimal: ``NUMERIC(p, s)`` on PostgreSQL; on SQLite, which has no decimal type and
    would round through a double, an integer count of ``10**-scale`` units (so at most 18 digits).

    Comparisons and sorting work on both, since bound values pass through the same conversion.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        return int(Decimal(value).scaleb(self.scale).to_integral_value())

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale).quantize(self._quantum)
        return Decimal(value).quantize(self._quantum)
