"""API names and the names derived from them.

An api name is ``^[a-z][a-z0-9_]{0,62}$`` without a double underscore (reserved for the columns a
field type adds, such as ``location__lat``), never an SQL or GraphQL reserved word, and never
changed once created. GraphQL type and field names are derived here and only here, so a collision
is found when metadata is saved rather than silently merged by graphene later.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as _POSTGRES_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer
from sqlalchemy.sql.compiler import RESERVED_WORDS as _ANSI_RESERVED

API_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_OBJECT_NAME = 59
"""``obj_`` + the name must fit PostgreSQL's 63-byte identifiers."""
MAX_FIELD_NAME = 58
"""Room for the suffix of a type's extra columns (``__lat``) within 63 bytes."""
MAX_IDENTIFIER = 63

GRAPHQL_RESERVED = frozenset(
    """query mutation subscription fragment on true false null type input enum schema scalar
    interface union directive extend implements repeatable node edges cursor pageinfo
    totalcount""".split()
)
SQL_RESERVED = frozenset(
    w.lower() for w in (*_ANSI_RESERVED, *_POSTGRES_RESERVED, *SQLiteIdentifierPreparer.reserved_words)
) | frozenset("""user current_user session_user system_user rowid oid ctid xmin xmax cmin cmax
    tableoid _rowid_ order group limit offset""".split())

SYSTEM_FIELD_NAMES = frozenset(
    """id owner_id org_unit_id business_type created_at created_by updated_at updated_by version
    deleted_at stage stage_entered_at""".split()
)
"""Columns every record table has (or may gain); custom fields never take these names."""

OBJECT_TABLE_PREFIX = "obj_"


def name_problem(name: object, *, column: bool = True) -> str | None:
    """Why ``name`` cannot be an api name, or ``None`` when it can.

    SQL reserved words matter for names that become columns; object names become prefixed table
    names (``obj_user``), so for them only GraphQL's words are reserved.
    """
    if not isinstance(name, str) or not API_NAME.match(name):
        return "must start with a lowercase letter and hold only lowercase letters, digits and underscores (at most 63)"
    longest = MAX_FIELD_NAME if column else MAX_OBJECT_NAME
    if len(name) > longest:
        return f"must be at most {longest} characters"
    if "__" in name or name.endswith("_"):
        return "may not contain a double underscore or end with an underscore"
    if column and name in SQL_RESERVED:
        return f"'{name}' is an SQL reserved word; choose another name"
    if name in GRAPHQL_RESERVED:
        return f"'{name}' is a GraphQL reserved word; choose another name"
    return None


def table_name(object_api_name: str) -> str:
    return OBJECT_TABLE_PREFIX + object_api_name


def constraint_name(kind: str, table: str, column: str) -> str:
    """``<kind>_<table>_<column>``, or when that is too long for PostgreSQL, a shortened form
    ending in a hash of the full name, so names stay unique and map back to their field."""
    full = f"{kind}_{table}_{column}"
    if len(full) <= MAX_IDENTIFIER:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:10]
    return f"{kind}_{table[:24]}_{column[:24]}_{digest}"


def plural(api_name: str) -> str:
    """The default plural of an api name, by the regular English rules (``opportunity`` ->
    ``opportunities``, ``address`` -> ``addresses``); irregular ones are given explicitly."""
    if api_name.endswith("y") and api_name[-2:-1] not in ("a", "e", "i", "o", "u", "_"):
        return api_name[:-1] + "ies"
    if api_name.endswith(("s", "x", "z", "ch", "sh")):
        return api_name + "es"
    return api_name + "s"


@lru_cache(maxsize=65536)
def pascal_case(api_name: str) -> str:
    """GraphQL type name: ``sales_order`` becomes ``SalesOrder``."""
    return "".join(part[:1].upper() + part[1:] for part in api_name.split("_"))


@lru_cache(maxsize=65536)
def camel_case(api_name: str) -> str:
    """GraphQL field name: ``close_date`` becomes ``closeDate``."""
    pascal = pascal_case(api_name)
    return pascal[:1].lower() + pascal[1:]
