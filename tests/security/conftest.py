"""Fixtures of the security acceptance tests: the org of :mod:`security_org`, built once per module
on a fresh database (``module_database_url``: SQLite, PostgreSQL)."""
from __future__ import annotations

import pytest
from security_org import Client, Org


@pytest.fixture(scope="module")
def org(module_database_url):
    client = Client(module_database_url)
    try:
        yield Org(client).build()
    finally:
        client.close()
