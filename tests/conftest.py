"""Shared service fixtures.

Environment variables (exported by ``bash .ci/run``, which starts the services):

* ``LOWCODE_TEST_POSTGRES_URL`` -- SQLAlchemy URL of a PostgreSQL database that
  the tests may wipe, e.g. ``postgresql+psycopg://postgres:pw@127.0.0.1:5432/lowcode_test``.
* ``LOWCODE_TEST_REDIS_URL`` -- URL of a Redis database that the tests may
  flush, e.g. ``redis://127.0.0.1:6399/0``.

When a variable is missing, tests needing that service are skipped locally and
fail when ``CI=true`` (CI must never silently skip a backend).

Fixtures:

* ``database_url`` -- parametrized: ``[sqlite]`` (fresh file per test) and
  ``[postgresql]`` (``public`` schema dropped and recreated per test).
* ``postgres_url`` -- PostgreSQL only, same reset (for real concurrency tests).
* ``module_database_url`` -- like ``database_url``, once per test module.
* ``redis_url`` -- Redis, database flushed per test.

Tests run serially, so resetting the shared database per test is safe.
"""

import os

import pytest
import redis
import sqlalchemy
from sqlalchemy.pool import NullPool


def _service_url(var: str, what: str) -> str:
    url = os.environ.get(var)
    if not url:
        message = f"{what} not configured ({var} unset): run bash .ci/run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


def _fresh_postgres() -> str:
    url = _service_url("LOWCODE_TEST_POSTGRES_URL", "PostgreSQL")
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
            conn.execute(sqlalchemy.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url():
    return _fresh_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lowcode.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request, tmp_path_factory):
    """A fresh database per test module (for data built once and only read by the module's tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('module')}/lowcode.db"
    return _fresh_postgres()


@pytest.fixture
def redis_url():
    url = _service_url("LOWCODE_TEST_REDIS_URL", "Redis")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture
def runtime(database_url):
    """An installed platform on the parametrized database (SQLite, then PostgreSQL)."""
    from lowcode.runtime import Runtime

    rt = Runtime.connect(database_url).install()
    yield rt
    rt.close()


CHANGE_COUNTERS = ("lc_meta_change", "lc_security_audit", "lc_meta_version", "lc_policy_version")
"""Tables that count every change (versions, change logs): they grow, by design."""


@pytest.fixture
def database_snapshot():
    """``snapshot(runtime)``: every table, and every row of the platform's tables but the change
    counters and logs; two snapshots are equal when a change left the database as it was."""
    from sqlalchemy import inspect, text

    def snapshot(rt) -> dict:
        with rt.engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
            rows = {name: sorted(map(repr, conn.execute(text(f'SELECT * FROM "{name}"')).all()))
                    for name in tables if name.startswith("lc_") and name not in CHANGE_COUNTERS}
        return {"tables": tables, "rows": rows}

    return snapshot
