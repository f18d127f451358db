"""The platform's own tables (prefix ``lc_``): metadata, its version and its change log.

Names of constraints follow one convention, so a database error maps to its constraint by name.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from .sqltypes import JsonValue, RecordId, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

platform_metadata = MetaData(naming_convention=NAMING_CONVENTION)

meta_version = Table(
    "lc_meta_version", platform_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

objects = Table(
    "lc_object", platform_metadata,
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("plural_api_name", String(63), nullable=False, unique=True),
    Column("plural_label", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("system", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

fields = Table(
    "lc_field", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("type", String(31), nullable=False),
    Column("required", Boolean, nullable=False),
    Column("unique", Boolean, nullable=False),
    Column("indexed", Boolean, nullable=False),
    Column("tracked", Boolean, nullable=False),
    Column("default", JsonValue, nullable=True),
    Column("help_text", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("options", JsonValue, nullable=False),
    Column("position", Integer, nullable=False),
)

meta_changes = Table(
    "lc_meta_change", platform_metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False, index=True),
    Column("actor_id", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("action", String(31), nullable=False),
    Column("object_api_name", String(63), nullable=False),
    Column("field_api_name", String(63), nullable=True),
    Column("before", JsonValue, nullable=True),
    Column("after", JsonValue, nullable=True),
)

auto_numbers = Table(
    "lc_auto_number", platform_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("field_api_name", String(63), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

field_history = Table(
    "lc_field_history", platform_metadata,
    Column("id", Integer, primary_key=True),
    Column("object_api_name", String(63), nullable=False),
    Column("record_id", RecordId, nullable=False),
    Column("field_api_name", String(63), nullable=True),
    Column("event", String(15), nullable=False),
    Column("old_value", JsonValue, nullable=True),
    Column("new_value", JsonValue, nullable=True),
    Column("actor_id", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False),
)

Index("ix_lc_field_history_record", field_history.c.object_api_name, field_history.c.record_id, field_history.c.at)

business_types = Table(
    "lc_business_type", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("picklists", JsonValue, nullable=False),
    Column("position", Integer, nullable=False),
)

stages = Table(
    "lc_stage", platform_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("business_type", String(63), nullable=False),
    Column("label", String(255), nullable=False),
    Column("probability", Integer, nullable=False),
    Column("category", String(15), nullable=False),
    Column("expected_days", Integer, nullable=True),
    Column("required_fields", JsonValue, nullable=False),
    Column("position", Integer, nullable=False),
    ForeignKeyConstraint(["object_api_name", "business_type"], ["lc_business_type.object_api_name", "lc_business_type.api_name"],
                         ondelete="CASCADE"),
)

stage_history = Table(
    "lc_stage_history", platform_metadata,
    Column("id", Integer, primary_key=True),
    Column("object_api_name", String(63), nullable=False),
    Column("record_id", RecordId, nullable=False),
    Column("business_type", String(63), nullable=True),
    Column("stage", String(63), nullable=False),
    Column("entered_at", UtcDateTime, nullable=False),
    Column("entered_by", String(64), nullable=True),
    Column("left_at", UtcDateTime, nullable=True),
    Column("left_by", String(64), nullable=True),
    Column("seconds_in_stage", BigInteger, nullable=True),
)

Index("ix_lc_stage_history_record", stage_history.c.object_api_name, stage_history.c.record_id, stage_history.c.entered_at)

platform_revision = Table(
    "lc_platform_revision", platform_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", Integer, nullable=False),
)
"""Which of the platform's own layout upgrades (``lowcode.metadata.upgrades``) this database has had."""

validation_rules = Table(
    "lc_validation_rule", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("business_type", String(63), nullable=True),
    Column("expression", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("field", String(63), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
)

booking_rules = Table(
    "lc_booking_rule", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("resource_field", String(63), nullable=False),
    Column("start_field", String(63), nullable=False),
    Column("end_field", String(63), nullable=False),
    Column("status_field", String(63), nullable=True),
    Column("active_values", JsonValue, nullable=False),
    Column("message", Text, nullable=False),
)

automations = Table(
    "lc_automation", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("kind", String(63), nullable=False),
    Column("label", String(255), nullable=False),
    Column("settings", JsonValue, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
)

layouts = Table(
    "lc_layout", platform_metadata,
    Column("object_api_name", String(63), ForeignKey("lc_object.api_name", ondelete="CASCADE"), primary_key=True),
    Column("api_name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("business_type", String(63), nullable=True),
    Column("role", String(63), nullable=True),
    Column("sections", JsonValue, nullable=False),
    Column("related_lists", JsonValue, nullable=False),
)
