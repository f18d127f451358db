"""An HTTP client of the GraphQL server over each database.

``api`` posts GraphQL requests through Flask's test client (the real WSGI app, routing, auth and
JSON handling included) and returns ``(status, body)``; ``api.data(...)`` returns ``data`` and
fails the test on any error; ``api.statements`` counts SQL statements of the last request.
"""
from __future__ import annotations

import pytest
from lowcode.graphql.limits import Limits
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from sqlalchemy import event

TOKEN = "test-token"


class Api:
    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime
        self.client = app.test_client()
        self.statements: list[str] = []
        self._counting = False
        event.listen(runtime.engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args):
        if self._counting:
            self.statements.append(statement)

    def post(self, query: str, variables: dict | None = None, operation_name: str | None = None, *, token: str | None = TOKEN):
        body = {"query": query}
        if variables is not None:
            body["variables"] = variables
        if operation_name is not None:
            body["operationName"] = operation_name
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.statements = []
        self._counting = True
        try:
            response = self.client.post("/graphql", json=body, headers=headers)
        finally:
            self._counting = False
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, **kwargs):
        status, body = self.post(query, variables, **kwargs)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def errors(self, query: str, variables: dict | None = None, **kwargs):
        """The errors of a request expected to fail (status and body returned for more checks)."""
        status, body = self.post(query, variables, **kwargs)
        assert body.get("errors"), body
        return status, body["errors"]


def make_api(database_url: str, limits: Limits | None = None) -> Api:
    runtime = Runtime.connect(database_url).install()
    app = create_app(Settings(database_url=database_url, api_token=TOKEN, limits=limits or Limits()), runtime=runtime)
    return Api(app, runtime)


@pytest.fixture
def api(database_url):
    client = make_api(database_url)
    yield client
    client.runtime.close()
