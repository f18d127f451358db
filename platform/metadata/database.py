"""Engines that behave alike on SQLite and PostgreSQL.

SQLite's Python driver starts transactions lazily and never before DDL, which would let a failed
metadata change leave half a schema behind. The engine takes over: every transaction starts with an
explicit ``BEGIN`` (``BEGIN IMMEDIATE`` for writers, so two writers queue instead of failing), DDL
included; foreign keys are enforced; file databases use WAL so readers never wait for writers;
``lower``/``upper`` fold every script, as PostgreSQL's do.
"""
from __future__ import annotations

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


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"
