"""Engines that behave alike on SQLite and PostgreSQL.

SQLite's Python driver starts transactions lazily and never before DDL, which would let a failed
metadata change leave half a schema behind. The engine takes over: every transaction starts with an
explicit ``BEGIN`` (``BEGIN IMMEDIATE`` for writers, so two writers queue instead of failing), DDL
included; foreign keys are enforced; file databases use WAL so readers never wait for writers;
``lower``/``upper`` fold every script, as PostgreSQL's do. Map queries (:mod:`lowcode.runtime.geo`)
use ``sin``, ``cos``, ``power`` and ``floor``: SQLite builds without its math functions get
deterministic Python ones of the same names on every connection (:data:`MATH_FUNCTIONS`).
"""
from __future__ import annotations

import math
import sqlite3
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

WRITE = {"sqlite_begin": "IMMEDIATE"}
"""Execution options for a connection that will write: on SQLite, take the write lock at BEGIN."""


def database_engine(url: str, **kwargs) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
    engine = create_engine(parsed, **kwargs)
    in_memory = parsed.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
        dbapi_connection.create_function("upper", 1, _upper, deterministic=True)
        if not sqlite_has_math_functions():
            _add_math_functions(dbapi_connection)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}".strip())

    return engine


def _lower(value):
    """SQLite's own ``lower`` folds ASCII only; case-insensitive filters must match ``Müller`` too."""
    return value.lower() if isinstance(value, str) else value


def _upper(value):
    return value.upper() if isinstance(value, str) else value


def _floor(value):
    return float(math.floor(value)) if isinstance(value, float) else math.floor(value)


MATH_FUNCTIONS = {"sin": (1, math.sin), "cos": (1, math.cos), "power": (2, math.pow), "floor": (1, _floor)}
"""The math functions SQL of the platform calls, by name: (argument count, Python function)."""


@lru_cache(maxsize=1)
def sqlite_has_math_functions() -> bool:
    """Whether the linked SQLite was built with its math functions (once per process)."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT sin(0), cos(0), power(2, 2), floor(0.5)").fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def _add_math_functions(dbapi_connection) -> None:
    for name, (arguments, function) in MATH_FUNCTIONS.items():
        dbapi_connection.create_function(name, arguments, _null_safe(function), deterministic=True)


def _null_safe(function):
    """As SQLite's own: null for a null argument and for a result outside the reals."""
    def call(*arguments):
        if any(a is None for a in arguments):
            return None
        try:
            result = function(*arguments)
        except (ValueError, OverflowError, TypeError):
            return None
        return None if isinstance(result, float) and math.isnan(result) else result

    return call


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"
