"""The security tables (prefix ``lc_``): roles and their grants, memberships, credentials and
tokens, record shares and teams, the policy version and the audit log.

Roles, grants and memberships are what Casbin loads as policy lines (:mod:`.adapter`); shares and
teams are per-record data read by the permission predicate itself. Databases made by earlier
versions are brought to this layout at install (:mod:`.upgrades`).
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ...metadata.sqltypes import JsonValue, RecordId, UtcDateTime
from ...metadata.store import NAMING_CONVENTION

security_metadata = MetaData(naming_convention=NAMING_CONVENTION)

policy_version = Table(
    "lc_policy_version", security_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

security_revision = Table(
    "lc_security_revision", security_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", Integer, nullable=False),
)
"""Which of the security tables' layout upgrades (:mod:`.upgrades`) this database has had."""


def grant_business_types_column() -> Column:
    """The business types an object grant is limited to: their api names, sorted and joined by
    commas (``printers,scanners``); null when the grant covers records of every type."""
    return Column("business_types", Text, nullable=True)


def business_types_text(kinds: Iterable[str]) -> str | None:
    return ",".join(sorted(set(kinds))) or None


def business_types_list(stored: str | None) -> list[str]:
    return stored.split(",") if stored else []


roles = Table(
    "lc_role", security_metadata,
    Column("name", String(63), primary_key=True),
    Column("label", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("administrator", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

object_grants = Table(
    "lc_object_grant", security_metadata,
    Column("role_name", String(63), ForeignKey("lc_role.name", ondelete="CASCADE"), primary_key=True),
    Column("object_api_name", String(63), primary_key=True),
    Column("actions", JsonValue, nullable=False),
    Column("read_scope", String(31), nullable=False),
    Column("write_scope", String(31), nullable=False),
    grant_business_types_column(),
)

field_grants = Table(
    "lc_field_grant", security_metadata,
    Column("role_name", String(63), ForeignKey("lc_role.name", ondelete="CASCADE"), primary_key=True),
    Column("object_api_name", String(63), primary_key=True),
    Column("field_api_name", String(63), primary_key=True),
    Column("access", String(15), nullable=False),
)

memberships = Table(
    "lc_membership", security_metadata,
    Column("user_id", RecordId, primary_key=True),
    Column("unit_id", RecordId, primary_key=True),
    Column("role_name", String(63), ForeignKey("lc_role.name"), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_lc_membership_unit", memberships.c.unit_id)

credentials = Table(
    "lc_credential", security_metadata,
    Column("user_id", RecordId, primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

tokens = Table(
    "lc_token", security_metadata,
    Column("id", RecordId, primary_key=True),
    Column("user_id", RecordId, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(15), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("hint", String(15), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

record_shares = Table(
    "lc_record_share", security_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("record_id", RecordId, primary_key=True),
    Column("grantee_id", RecordId, primary_key=True),
    Column("grantee_kind", String(7), nullable=False),
    Column("access", String(7), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
)
Index("ix_lc_record_share_grantee", record_shares.c.object_api_name, record_shares.c.grantee_id, record_shares.c.record_id)

team_members = Table(
    "lc_team_member", security_metadata,
    Column("object_api_name", String(63), primary_key=True),
    Column("record_id", RecordId, primary_key=True),
    Column("user_id", RecordId, primary_key=True),
    Column("access", String(7), nullable=False),
    Column("team_role", String(255), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
)
Index("ix_lc_team_member_user", team_members.c.object_api_name, team_members.c.user_id, team_members.c.record_id)

audit_log = Table(
    "lc_security_audit", security_metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("action", String(63), nullable=False),
    Column("target", String(255), nullable=False),
    Column("details", JsonValue, nullable=True),
)
Index("ix_lc_security_audit_at", audit_log.c.at)
