"""Connections the database server closed are replaced without failing a request."""
from __future__ import annotations

import sqlalchemy
from lowcode.graphql.limits import Limits
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from sqlalchemy.pool import NullPool


def _close_every_other_session(url: str) -> int:
    admin = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with admin.connect() as conn:
            return len(conn.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
    finally:
        admin.dispose()


def test_requests_survive_the_server_closing_pooled_connections(postgres_url):
    runtime = Runtime.connect(postgres_url).install()
    app = create_app(Settings(database_url=postgres_url, api_token="t", limits=Limits()), runtime=runtime)
    client = app.test_client()
    headers = {"Authorization": "Bearer t"}

    def post(query):
        response = client.post("/graphql", json={"query": query}, headers=headers)
        return response.status_code, response.get_json()

    try:
        assert post('mutation { createObject(input: {apiName: "note", label: "Note", fields: ['
                    '{apiName: "body", label: "Body", type: TEXT}]}) { apiName } }')[0] == 200
        assert post('mutation { createNote(input: {body: "before"}) { body } }') == (200, {"data": {"createNote": {"body": "before"}}})
        assert _close_every_other_session(postgres_url) >= 1

        status, body = post("{ notes { totalCount nodes { body } } }")
        assert (status, body) == (200, {"data": {"notes": {"totalCount": 1, "nodes": [{"body": "before"}]}}})
        assert _close_every_other_session(postgres_url) >= 1
        status, body = post('mutation { createNote(input: {body: "after"}) { body } }')
        assert (status, body) == (200, {"data": {"createNote": {"body": "after"}}})
        assert post("{ notes { totalCount } }") == (200, {"data": {"notes": {"totalCount": 2}}})
    finally:
        runtime.close()
