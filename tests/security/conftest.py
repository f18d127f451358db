"""Fixtures of the security acceptance tests: a fresh database per module (SQLite, PostgreSQL)
and the org of :mod:`security_org` built on it once."""
from __future__ import annotations

import os

import pytest
import sqlalchemy
from security_org import Client, Org
from sqlalchemy.pool import NullPool

# -- fixtures -----------------------------------------------------------------------------------

def _service_url(var: str, what: str) -> str:
    url = os.environ.get(var)
    if not url:
        message = f"{what} not configured ({var} unset): run bash .ci/run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request, tmp_path_factory):
    """A fresh database per module: a new SQLite file, or the PostgreSQL schema reset once."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('security')}/lowcode.db"
    url = _service_url("LOWCODE_TEST_POSTGRES_URL", "PostgreSQL")
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
            conn.execute(sqlalchemy.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def org(module_database_url):
    client = Client(module_database_url)
    try:
        yield Org(client).build()
    finally:
        client.close()
