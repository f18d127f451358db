"""Malformed requests, invalid queries, limits and hostile input, through HTTP on SQLite and PostgreSQL.

Every failure must be a structured error (``extensions.code``), never an HTTP 500 or an
``INTERNAL`` error, and a failed request writes nothing.
"""
from __future__ import annotations

import pytest
import sqlalchemy
from graphql import get_introspection_query
from lowcode.graphql.limits import Limits
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from sqlalchemy import event

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SCHEMA = [
    '''mutation { createObject(input: {apiName: "account", label: "Account", fields: [
        {apiName: "name", label: "Name", type: TEXT}]}) { apiName } }''',
    '''mutation { createObject(input: {apiName: "deal", label: "Deal", fields: [
        {apiName: "name", label: "Name", type: TEXT, options: {maxLength: 50}},
        {apiName: "amount", label: "Amount", type: DECIMAL, options: {precision: 12, scale: 2}},
        {apiName: "close_date", label: "Close date", type: DATE},
        {apiName: "status", label: "Status", type: PICKLIST, options: {values: [
            {apiName: "open", label: "Open"}, {apiName: "won", label: "Won"}]}},
        {apiName: "account", label: "Account", type: LOOKUP, options: {target: "account"}}]}) { apiName } }''',
    '''mutation { createObject(input: {apiName: "line", label: "Line", fields: [
        {apiName: "qty", label: "Quantity", type: INTEGER},
        {apiName: "deal", label: "Deal", type: MASTER_DETAIL, options: {target: "deal"}}]}) { apiName } }''',
]

CREATE_DEAL = 'mutation { createDeal(input: {name: "should not exist"}) { id } }'


class Client:
    """The app over one database with the given limits, and the SQL statements of the last request."""

    def __init__(self, database_url: str, limits: Limits):
        self.runtime = Runtime.connect(database_url).install()
        self.app = create_app(Settings(database_url=database_url, api_token=TOKEN, limits=limits), runtime=self.runtime)
        self.http = self.app.test_client()
        self.statements: list[str] = []
        self._counting = False
        event.listen(self.runtime.engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args):
        if self._counting:
            self.statements.append(statement)

    def raw(self, method: str = "post", path: str = "/graphql", **kwargs):
        self.statements = []
        self._counting = True
        try:
            response = getattr(self.http, method)(path, **kwargs)
        finally:
            self._counting = False
        assert response.status_code != 500, response.get_data(as_text=True)
        return response

    def post(self, query: str, variables: dict | None = None, operation_name: str | None = None):
        body: dict = {"query": query}
        if variables is not None:
            body["variables"] = variables
        if operation_name is not None:
            body["operationName"] = operation_name
        response = self.raw(json=body, headers=AUTH)
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, **kwargs):
        status, body = self.post(query, variables, **kwargs)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def fails(self, query: str, variables: dict | None = None, *, code: str, status: int | None = None, **kwargs):
        """The errors of a request that must fail with ``code`` (and ``status`` when given)."""
        got_status, body = self.post(query, variables, **kwargs)
        assert got_status != 500, body
        if status is not None:
            assert got_status == status, body
        errors = body.get("errors")
        assert errors, body
        assert all(e.get("extensions", {}).get("code") for e in errors), errors
        assert all(e["extensions"]["code"] != "INTERNAL" for e in errors), errors
        assert any(e["extensions"]["code"] == code for e in errors), errors
        assert all(isinstance(e.get("message"), str) and e["message"] for e in errors), errors
        return errors

    def count(self, table: str, *, alive_only: bool = False) -> int:
        where = " WHERE deleted_at IS NULL" if alive_only else ""
        with self.runtime.engine.connect() as conn:
            return conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}{where}")).scalar_one()

    def record_selects(self) -> list[str]:
        """Statements of the last request that read a record table (other than the token lookup,
        which reads the token's user)."""
        return [s for s in self.statements if "obj_" in s and "lc_token" not in s]

    def close(self):
        self.runtime.close()


@pytest.fixture
def make_client(database_url):
    made: list[Client] = []

    def make(limits: Limits | None = None, *, schema: bool = True) -> Client:
        client = Client(database_url, limits or Limits())
        made.append(client)
        if schema:
            for mutation in SCHEMA:
                client.data(mutation)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client) -> Client:
    return make_client()


def single_error(response) -> dict:
    body = response.get_json()
    assert body is not None, response.get_data(as_text=True)
    assert isinstance(body.get("errors"), list) and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert isinstance(error["message"], str) and error["message"], error
    return error


def create_deals(client: Client, inputs: list[dict]) -> list[str]:
    created = client.data('mutation($i: [DealCreateInput!]!) { createDeals(inputs: $i) { id } }', {"i": inputs})
    return [r["id"] for r in created["createDeals"]]


# -- the HTTP body ---------------------------------------------------------------------------
def test_malformed_json_body(client):
    for raw in ('{"query": ', "{bad json}", "", "nul"):
        response = client.raw(data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert response.status_code == 400
        assert single_error(response)["extensions"]["code"] == "BAD_QUERY"
    assert client.count("obj_deal") == 0


@pytest.mark.parametrize("body", [[{"query": CREATE_DEAL}], CREATE_DEAL, 42, True, None])
def test_body_that_is_not_an_object(client, body):
    import json

    response = client.raw(data=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    error = single_error(response)
    assert error["extensions"]["code"] == "BAD_QUERY"
    assert client.count("obj_deal") == 0


@pytest.mark.parametrize("body", [{}, {"query": ""}, {"query": "   \n "}, {"query": None}, {"query": 5},
                                  {"query": ["{ deals { totalCount } }"]}, {"variables": {}}])
def test_missing_or_empty_query(client, body):
    response = client.raw(json=body, headers=AUTH)
    assert response.status_code == 400
    error = single_error(response)
    assert error["extensions"]["code"] == "BAD_QUERY"
    assert "query" in error["message"]


@pytest.mark.parametrize("variables", [[1, 2], "name=x", 3, True])
def test_variables_that_are_not_an_object(client, variables):
    response = client.raw(json={"query": 'mutation($n: String) { createDeal(input: {name: $n}) { id } }', "variables": variables},
                          headers=AUTH)
    assert response.status_code == 400
    error = single_error(response)
    assert error["extensions"]["code"] == "BAD_QUERY"
    assert "variables" in error["message"]
    assert client.count("obj_deal") == 0


def test_unknown_body_keys_and_a_non_string_operation_name(client):
    response = client.raw(json={"query": CREATE_DEAL, "varibles": {}, "mutation": "x"}, headers=AUTH)
    assert response.status_code == 400
    error = single_error(response)
    assert error["extensions"]["code"] == "BAD_QUERY"
    assert "varibles" in error["message"] and "mutation" in error["message"]

    response = client.raw(json={"query": CREATE_DEAL, "operationName": 7}, headers=AUTH)
    assert response.status_code == 400
    assert single_error(response)["extensions"]["code"] == "BAD_QUERY"
    assert client.count("obj_deal") == 0

    # the keys of the GraphQL-over-HTTP convention are accepted
    response = client.raw(json={"query": "{ deals { totalCount } }", "variables": None, "operationName": None,
                                "extensions": {}}, headers=AUTH)
    assert response.status_code == 200 and response.get_json() == {"data": {"deals": {"totalCount": 0}}}


def test_a_query_longer_than_the_limit(client):
    query = "{ deals { totalCount } }" + " " * 100_001
    response = client.raw(json={"query": query}, headers=AUTH)
    assert response.status_code == 400
    assert single_error(response)["extensions"]["code"] == "BAD_QUERY"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/graphql", None])
def test_non_json_content_type(client, content_type):
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    import json

    response = client.raw(data=json.dumps({"query": CREATE_DEAL}), headers=headers)
    assert response.status_code == 415
    assert response.is_json
    assert single_error(response)["extensions"]["code"] == "BAD_QUERY"
    assert client.count("obj_deal") == 0


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN,
                                           f"Bearer{TOKEN}"])
def test_wrong_or_missing_token(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.raw(json={"query": CREATE_DEAL}, headers=headers)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert single_error(response)["extensions"]["code"] == "UNAUTHENTICATED"
    assert not client.record_selects()
    assert client.count("obj_deal") == 0

    # a body that is no JSON at all is still refused for the token first
    response = client.raw(data="{not json", headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert single_error(response)["extensions"]["code"] == "UNAUTHENTICATED"


def test_get_graphql_serves_the_ide_without_a_token(client):
    response = client.raw("get", "/graphql")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "graphiql" in response.get_data(as_text=True).lower()


@pytest.mark.parametrize("method,path", [("get", "/nope"), ("post", "/graphql/extra"), ("get", "/")])
def test_unknown_route_is_a_json_404(client, method, path):
    response = client.raw(method, path, headers=AUTH)
    assert response.status_code == 404
    assert response.is_json
    assert single_error(response)["extensions"]["code"] in ("NOT_FOUND", "BAD_QUERY")


# -- invalid documents -------------------------------------------------------------------------
def test_syntax_errors(client):
    for query in ("{ deals { totalCount ", "mutation { createDeal(input: {name: }) { id } }", "{ deals(first: ) { totalCount } }",
                  "query { deals { nodes { name } } } }", "deals"):
        errors = client.fails(query, code="BAD_QUERY", status=400)
        assert errors[0]["message"].startswith("Syntax Error"), errors
        assert errors[0]["locations"], errors
    assert client.count("obj_deal") == 0


def test_unknown_fields_are_refused_with_a_suggestion(client):
    errors = client.fails("{ deals { totalCont } }", code="BAD_QUERY", status=400)
    assert "totalCont" in errors[0]["message"] and "totalCount" in errors[0]["message"]
    errors = client.fails("{ deals { nodes { nam } } }", code="BAD_QUERY", status=400)
    assert "'name'" in errors[0]["message"]
    errors = client.fails('mutation { createDeal(input: {name: "x"}) { id nme } }', code="BAD_QUERY", status=400)
    assert "'name'" in errors[0]["message"]
    errors = client.fails('mutation { createDeal(input: {nmae: "x"}) { id } }', code="BAD_QUERY", status=400)
    assert "nmae" in errors[0]["message"]
    errors = client.fails("{ dels { totalCount } }", code="BAD_QUERY", status=400)
    assert "'deals'" in errors[0]["message"]
    assert client.count("obj_deal") == 0


def test_unknown_arguments(client):
    errors = client.fails("{ deals(frist: 2) { totalCount } }", code="BAD_QUERY", status=400)
    assert "frist" in errors[0]["message"] and "'first'" in errors[0]["message"]
    client.fails('mutation { createDeal(input: {name: "x"}, force: true) { id } }', code="BAD_QUERY", status=400)
    client.fails('{ deals(filter: {name: {like: "x"}}) { totalCount } }', code="BAD_QUERY", status=400)
    assert client.count("obj_deal") == 0


@pytest.mark.parametrize("definition,value", [
    ("$v: Int", "ten"),
    ("$v: Int", 1.5),
    ("$v: Int!", None),
    ("$v: DealStatus", "LOST"),
    ("$v: DealStatus", "open"),
    ("$v: Decimal", {"amount": 1}),
    ("$v: Decimal", [1]),
    ("$v: String", {"x": 1}),
    ("$v: DealFilter", {"unknown": {"eq": 1}}),
    ("$v: [DealOrderBy!]", ["NAME_ASC", "SIDEWAYS"]),
    ("$v: Boolean!", "yes"),
])
def test_variables_of_the_wrong_type(client, definition, value):
    uses = {"Int": "deals(first: $v)", "Int!": "deals(first: $v)", "DealStatus": "deals(filter: {status: {eq: $v}})",
            "Decimal": "deals(filter: {amount: {gte: $v}})", "String": "deals(filter: {name: {eq: $v}})",
            "DealFilter": "deals(filter: $v)", "[DealOrderBy!]": "deals(orderBy: $v)",
            "Boolean!": "deals @include(if: $v)"}[definition.split(": ")[1]]
    query = f"query({definition}) {{ {uses} {{ totalCount }} }}"
    errors = client.fails(query, {"v": value}, code="BAD_QUERY", status=400)
    assert "$v" in errors[0]["message"]
    assert not client.record_selects()


def test_missing_required_variables(client):
    errors = client.fails('mutation($n: String!) { createDeal(input: {name: $n}) { id } }', {}, code="BAD_QUERY", status=400)
    assert "$n" in errors[0]["message"]
    errors = client.fails('mutation($n: String!) { createDeal(input: {name: $n}) { id } }', code="BAD_QUERY", status=400)
    assert "$n" in errors[0]["message"]
    # an undeclared variable is a validation error too
    client.fails('mutation { createDeal(input: {name: $n}) { id } }', {"n": "x"}, code="BAD_QUERY", status=400)
    assert client.count("obj_deal") == 0


def test_operation_name_selects_among_several_operations(client):
    document = """query Deals { deals { totalCount } }
      query Accounts { accounts { totalCount } }
      mutation Create { createDeal(input: {name: "picked"}) { name } }"""
    errors = client.fails(document, code="BAD_QUERY", status=400)
    assert "operation name" in errors[0]["message"].lower()
    errors = client.fails(document, operation_name="Nope", code="BAD_QUERY", status=400)
    assert "Nope" in errors[0]["message"]
    assert client.count("obj_deal") == 0

    assert client.data(document, operation_name="Accounts") == {"accounts": {"totalCount": 0}}
    assert client.data(document, operation_name="Create") == {"createDeal": {"name": "picked"}}
    assert client.data(document, operation_name="Deals") == {"deals": {"totalCount": 1}}


# -- depth -----------------------------------------------------------------------------------
DEPTH_10 = """{ deals(first: 1) { nodes { lines(first: 1) { nodes { deal { lines(first: 1) { nodes {
  deal { account { name } } } } } } } } } }"""
DEPTH_11 = """{ deals(first: 1) { nodes { lines(first: 1) { nodes { deal { lines(first: 1) { nodes {
  deal { lines(first: 1) { nodes { qty } } } } } } } } } } }"""


def test_default_depth_limit(client):
    assert client.data(DEPTH_10) == {"deals": {"nodes": []}}
    errors = client.fails(DEPTH_11, code="BAD_QUERY", status=400)
    assert "11" in errors[0]["message"] and "10" in errors[0]["message"]
    assert not client.record_selects()


def test_custom_depth_limit_counts_through_fragments(make_client):
    client = make_client(Limits(max_depth=3))
    assert client.data("{ deals { nodes { name } } }") == {"deals": {"nodes": []}}
    for query in ("{ deals { nodes { account { name } } } }",
                  "{ deals { ...Page } } fragment Page on DealConnection { nodes { account { name } } }",
                  "{ deals { ... on DealConnection { edges { node { name } } } } }",
                  'mutation { createDeal(input: {name: "deep"}) { lines { nodes { qty } } } }'):
        errors = client.fails(query, code="BAD_QUERY", status=400)
        assert "3" in errors[0]["message"], errors
        assert not client.record_selects()
    assert client.count("obj_deal") == 0


def test_fragment_cycles_and_unknown_fragments_are_bad_queries(client):
    cycles = [
        "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "{ deals { nodes { ...D } } } fragment D on Deal { name lines { nodes { deal { ...D } } } }",
        "{ deals { nodes { ...D } } } fragment D on Deal { ...D }",
    ]
    for query in cycles:
        errors = client.fails(query, code="BAD_QUERY", status=400)
        assert any("within itself" in e["message"] for e in errors), errors
    for query in ("{ ...Missing }", "{ deals { nodes { ...Missing } } }",
                  "mutation { createDeal(input: {name: \"x\"}) { ...Missing } }"):
        errors = client.fails(query, code="BAD_QUERY", status=400)
        assert any("Missing" in e["message"] for e in errors), errors
    assert client.count("obj_deal") == 0


def test_introspection_is_not_blocked_by_the_depth_limit(make_client):
    client = make_client(Limits(max_depth=3))
    data = client.data(get_introspection_query())
    names = {t["name"] for t in data["__schema"]["types"]}
    assert {"Deal", "DealConnection", "DealFilter", "Line"} <= names
    # introspection inside a shallow query is fine too; the record fields still count
    assert client.data("{ __type(name: \"Deal\") { fields { type { ofType { ofType { name } } } } } }")["__type"]["fields"]


# -- page sizes ------------------------------------------------------------------------------
def test_page_sizes_outside_the_limits(client):
    deal = create_deals(client, [{"name": "p"}])[0]
    for first in (501, -1, 10_000):
        errors = client.fails(f"{{ deals(first: {first}) {{ totalCount }} }}", code="BAD_QUERY")
        assert errors[0]["extensions"].get("ctx", {}).get("limit") == 500 or "500" in errors[0]["message"], errors
        assert errors[0]["extensions"]["field"] == "first"
        assert not client.record_selects()
        # nested, in a list and under one record
        errors = client.fails(f"{{ deals {{ nodes {{ lines(first: {first}) {{ totalCount }} }} }} }}", code="BAD_QUERY")
        assert "500" in errors[0]["message"] and errors[0]["extensions"]["field"] == "lines.first"
        assert not client.record_selects()
        errors = client.fails(f'query($id: ID!) {{ deal(id: $id) {{ lines(first: {first}) {{ totalCount }} }} }}', {"id": deal},
                              code="BAD_QUERY")
        assert "500" in errors[0]["message"]
        assert not client.record_selects()
        # through a variable
        errors = client.fails("query($n: Int) { deals(first: $n) { totalCount } }", {"n": first}, code="BAD_QUERY")
        assert "500" in errors[0]["message"]
    assert client.data("{ deals(first: 500) { totalCount } }") == {"deals": {"totalCount": 1}}
    assert client.data("{ deals(first: 0) { nodes { id } } }") == {"deals": {"nodes": []}}


def test_a_mutation_whose_selection_breaks_a_limit_writes_nothing(client):
    for query in ('mutation { createDeal(input: {name: "x"}) { id lines(first: 501) { totalCount } } }',
                  'mutation { createDeals(inputs: [{name: "x"}, {name: "y"}]) { id lines(first: -1) { totalCount } } }'):
        errors = client.fails(query, code="BAD_QUERY")
        assert "500" in errors[0]["message"]
    assert client.count("obj_deal") == 0


def test_the_default_page_size_applies_when_first_is_omitted(client):
    deal = create_deals(client, [{"name": f"d{i:03d}"} for i in range(120)])[0]
    client.data('mutation($i: [LineCreateInput!]!) { createLines(inputs: $i) { id } }',
                {"i": [{"qty": q, "dealId": deal} for q in range(120)]})
    data = client.data("{ deals { totalCount pageInfo { hasNextPage } nodes { name } } }")["deals"]
    assert data["totalCount"] == 120
    assert len(data["nodes"]) == 100
    assert data["pageInfo"]["hasNextPage"] is True
    nested = client.data('query($id: ID!) { deal(id: $id) { lines { totalCount pageInfo { hasNextPage } nodes { qty } } } }',
                         {"id": deal})["deal"]["lines"]
    assert nested["totalCount"] == 120 and len(nested["nodes"]) == 100 and nested["pageInfo"]["hasNextPage"] is True


def test_a_custom_default_page_size(make_client):
    client = make_client(Limits(default_page_size=3, max_page_size=4))
    create_deals(client, [{"name": f"d{i}"} for i in range(5)])
    assert len(client.data("{ deals { nodes { id } } }")["deals"]["nodes"]) == 3
    assert len(client.data("{ deals(first: 4) { nodes { id } } }")["deals"]["nodes"]) == 4
    errors = client.fails("{ deals(first: 5) { nodes { id } } }", code="BAD_QUERY")
    assert "4" in errors[0]["message"]


# -- cost --------------------------------------------------------------------------------------
def test_query_cost_multiplies_page_sizes(make_client):
    client = make_client(Limits(max_cost=50))
    deal = create_deals(client, [{"name": "c"}])[0]
    client.data('mutation($d: ID!) { createLines(inputs: [{qty: 1, dealId: $d}]) { id } }', {"d": deal})

    # 5 deals + 5 x 9 lines = 50: allowed
    data = client.data("{ deals(first: 5) { nodes { name lines(first: 9) { nodes { qty } } } } }")
    assert data == {"deals": {"nodes": [{"name": "c", "lines": {"nodes": [{"qty": 1}]}}]}}

    # 5 deals + 5 x 10 lines = 55: refused before anything is read
    for query in ("{ deals(first: 5) { nodes { name lines(first: 10) { nodes { qty } } } } }",
                  "{ deals(first: 10) { edges { node { lines(first: 10) { totalCount nodes { deal { name } } } } } } }",
                  "{ deals { nodes { name } } }",  # the default page size (100) alone is over the budget
                  "query($n: Int) { deals(first: 5) { nodes { lines(first: $n) { nodes { qty } } } } }"):
        errors = client.fails(query, {"n": 10} if "$n" in query else None, code="BAD_QUERY")
        assert "50" in errors[0]["message"], errors
        assert not client.record_selects(), client.statements


def test_query_cost_is_counted_over_the_whole_request(make_client):
    client = make_client(Limits(max_cost=50))
    create_deals(client, [{"name": "c"}])
    # each list alone is within budget; together they ask for up to 60 records
    query = "{ a: deals(first: 30) { nodes { name } } b: deals(first: 30) { nodes { name } } }"
    errors = client.fails(query, code="BAD_QUERY")
    assert "50" in errors[0]["message"]
    assert not client.record_selects(), client.statements


def test_a_mutation_over_the_cost_budget_writes_nothing(make_client):
    client = make_client(Limits(max_cost=50))
    errors = client.fails('mutation { createDeal(input: {name: "x"}) { id lines(first: 100) { totalCount } } }', code="BAD_QUERY")
    assert "50" in errors[0]["message"]
    assert client.count("obj_deal") == 0


# -- bulk size -----------------------------------------------------------------------------------
def test_bulk_size_limit(make_client):
    client = make_client(Limits(max_bulk=5))
    six = [{"name": f"n{i}"} for i in range(6)]
    errors = client.fails('mutation($i: [DealCreateInput!]!) { createDeals(inputs: $i) { id } }', {"i": six}, code="BAD_QUERY")
    assert "5" in errors[0]["message"]
    assert errors[0]["extensions"].get("field") == "inputs"
    assert client.count("obj_deal") == 0

    ids = create_deals(client, six[:5])
    assert client.count("obj_deal") == 5
    items = [{"id": i, "input": {"name": "changed"}} for i in ids] + [{"id": ids[0], "input": {"name": "changed"}}]
    errors = client.fails('mutation($i: [DealUpdateItem!]!) { updateDeals(items: $i) { id } }', {"i": items}, code="BAD_QUERY")
    assert "5" in errors[0]["message"]
    assert errors[0]["extensions"].get("field") == "items"
    names = client.data("{ deals { nodes { name version } } }")["deals"]["nodes"]
    assert sorted(n["name"] for n in names) == [f"n{i}" for i in range(5)]
    assert all(n["version"] == 1 for n in names)


# -- hostile input -------------------------------------------------------------------------------
HOSTILE = [
    "'; DROP TABLE obj_deal; --",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "a%b_c\\d",
    "Ünïcødé ✓ 日本語 🎉",
    "' OR ''='",
    "$1; SELECT pg_sleep(0)",
]


def test_injection_looking_values_are_stored_and_returned_verbatim(client):
    ids = {}
    for value in HOSTILE:
        created = client.data('mutation($n: String) { createDeal(input: {name: $n}) { id name } }', {"n": value})["createDeal"]
        assert created["name"] == value
        ids[value] = created["id"]
    # inline literals too (GraphQL string escapes)
    inline = client.data('mutation { createAccount(input: {name: "\\"; DROP TABLE obj_account; -- \\u00e9"}) { name } }')
    assert inline == {"createAccount": {"name": '"; DROP TABLE obj_account; -- é'}}
    for value, record_id in ids.items():
        got = client.data('query($id: ID!) { deal(id: $id) { name } }', {"id": record_id})
        assert got == {"deal": {"name": value}}
    updated = client.data('mutation($id: ID!, $n: String) { updateDeal(id: $id, input: {name: $n}) { name } }',
                          {"id": ids["%"], "n": "100% _sure_ \\o/"})
    assert updated == {"updateDeal": {"name": "100% _sure_ \\o/"}}
    # the tables are intact
    assert client.count("obj_deal") == len(HOSTILE)
    assert client.count("obj_account") == 1
    assert client.data("{ deals { totalCount } accounts { totalCount } }") == {
        "deals": {"totalCount": len(HOSTILE)}, "accounts": {"totalCount": 1}}


def test_filters_match_injection_looking_values_literally(client):
    names = HOSTILE + ["plain", "100 percent", "a b c d"]
    create_deals(client, [{"name": n} for n in names])
    query = """query($v: String) {
      eq: deals(filter: {name: {eq: $v}}) { nodes { name } }
      contains: deals(filter: {name: {contains: $v}}) { nodes { name } }
      starts: deals(filter: {name: {startsWith: $v}}) { nodes { name } } }"""
    for value in HOSTILE + ["1=1", "OR", "' OR '1'='1"]:
        data = client.data(query, {"v": value})
        assert [n["name"] for n in data["eq"]["nodes"]] == [n for n in names if n == value], value
        expected_contains = sorted(n for n in names if value.lower() in n.lower())
        assert sorted(n["name"] for n in data["contains"]["nodes"]) == expected_contains, value
        expected_starts = sorted(n for n in names if n.lower().startswith(value.lower()))
        assert sorted(n["name"] for n in data["starts"]["nodes"]) == expected_starts, value
    # '%' and '_' are not wildcards: only names holding them literally match
    percent = client.data(query, {"v": "%"})
    assert sorted(n["name"] for n in percent["contains"]["nodes"]) == ["%", "a%b_c\\d"]
    underscore = client.data(query, {"v": "_"})
    assert sorted(n["name"] for n in underscore["contains"]["nodes"]) == sorted(
        ["'; DROP TABLE obj_deal; --", "_", "a%b_c\\d", "$1; SELECT pg_sleep(0)"])
    assert client.count("obj_deal") == len(names)


def test_the_nul_character_is_refused_clearly(client):
    for value in ("a\u0000b", "\u0000"):
        errors = client.fails('mutation($n: String) { createDeal(input: {name: $n}) { id } }', {"n": value},
                              code="VALIDATION_FAILED")
        assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["input.name"]
        errors = client.fails('query($n: String) { deals(filter: {name: {contains: $n}}) { totalCount } }', {"n": value},
                              code="VALIDATION_FAILED")
        assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["filter.name.contains"]
        errors = client.fails('query($n: String) { deals(filter: {name: {eq: $n}}) { totalCount } }', {"n": value},
                              code="VALIDATION_FAILED")
        assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["filter.name.eq"]
    errors = client.fails('mutation($i: [DealCreateInput!]!) { createDeals(inputs: $i) { id } }',
                          {"i": [{"name": "fine"}, {"name": "bad\u0000"}]}, code="VALIDATION_FAILED")
    assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["inputs.1.name"]
    assert client.count("obj_deal") == 0


def test_strings_over_max_length_are_refused(client):
    errors = client.fails('mutation($n: String) { createDeal(input: {name: $n}) { id } }', {"n": "x" * 51}, code="VALIDATION_FAILED")
    assert [(e["field"], e["code"]) for e in errors[0]["extensions"]["errors"]] == [("input.name", "TOO_LONG")]
    errors = client.fails('mutation($n: String) { createAccount(input: {name: $n}) { id } }', {"n": "y" * 1_000_000},
                          code="VALIDATION_FAILED")
    assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["input.name"]
    deal = create_deals(client, [{"name": "x" * 50}])[0]
    errors = client.fails('mutation($id: ID!, $n: String) { updateDeal(id: $id, input: {name: $n}) { id } }',
                          {"id": deal, "n": "é" * 51}, code="VALIDATION_FAILED")
    assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["input.name"]
    assert client.count("obj_deal") == 1 and client.count("obj_account") == 0
    assert client.data('query($id: ID!) { deal(id: $id) { name version } }', {"id": deal}) == {
        "deal": {"name": "x" * 50, "version": 1}}


@pytest.mark.parametrize("operator", ["eq", "contains", "startsWith"])
def test_a_very_long_filter_value_matches_nothing_or_is_refused(client, operator):
    create_deals(client, [{"name": "z" * 50}])
    query = f'query($n: String) {{ deals(filter: {{name: {{{operator}: $n}}}}) {{ totalCount }} }}'
    status, body = client.post(query, {"n": "z" * 100_000})
    assert status != 500, body
    if "errors" in body:
        [error] = body["errors"]
        assert error["extensions"]["code"] == "VALIDATION_FAILED", error
        assert [e["field"] for e in error["extensions"]["errors"]] == [f"filter.name.{operator}"], error
    else:
        assert body == {"data": {"deals": {"totalCount": 0}}}


@pytest.mark.parametrize("api_name", ["x; drop table", "Robert'); --", "obj_deal; DROP TABLE obj_deal", "a b", "deal--",
                                      "\"quoted\"", "ünï"])
def test_injection_looking_names_in_metadata_are_invalid_definitions(client, api_name):
    version = client.data("{ metadataVersion }")["metadataVersion"]
    errors = client.fails('mutation($n: String!) { createObject(input: {apiName: $n, label: "X"}) { apiName } }',
                          {"n": api_name}, code="INVALID_DEFINITION")
    assert any(e["field"].endswith("api_name") or e["field"].endswith("apiName") for e in errors[0]["extensions"]["errors"]), errors
    errors = client.fails('mutation($n: String!) { createField(object: "deal", input: {apiName: $n, label: "X", type: TEXT}) { apiName } }',
                          {"n": api_name}, code="INVALID_DEFINITION")
    assert errors[0]["extensions"]["errors"], errors
    errors = client.fails('''mutation($n: String!) { createObject(input: {apiName: "fine", label: "Fine",
                              fields: [{apiName: $n, label: "X", type: TEXT}]}) { apiName } }''',
                          {"n": api_name}, code="INVALID_DEFINITION")
    path = errors[0]["extensions"]["errors"][0]["field"]
    assert path.endswith(("fields.0.apiName", "fields.0.api_name")), errors
    assert client.data("{ metadataVersion }")["metadataVersion"] == version
    assert client.count("obj_deal") == 0
    assert {o["apiName"] for o in client.data("{ objects(includeSystem: false) { apiName } }")["objects"]} >= {"deal", "account", "line"}
    assert "fine" not in {o["apiName"] for o in client.data("{ objects { apiName } }")["objects"]}


# -- error paths -------------------------------------------------------------------------------------
def test_validation_errors_name_the_graphql_path(client):
    def paths(errors):
        assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
        return [e["field"] for e in errors[0]["extensions"]["errors"]]

    errors = client.fails('mutation { createDeal(input: {closeDate: "2024-02-30"}) { id } }', code="VALIDATION_FAILED")
    assert paths(errors) == ["input.closeDate"]
    errors = client.fails('mutation { createDeal(input: {name: "ok", amount: "12345678901.5"}) { id } }', code="VALIDATION_FAILED")
    assert paths(errors) == ["input.amount"]
    errors = client.fails('mutation($i: [DealCreateInput!]!) { createDeals(inputs: $i) { id } }',
                          {"i": [{"amount": "1"}, {"amount": "not a number"}, {"closeDate": "2024-01-01"}]},
                          code="VALIDATION_FAILED")
    assert paths(errors) == ["inputs.1.amount"]
    errors = client.fails('{ deals(filter: {amount: {gte: "lots"}}) { totalCount } }', code="VALIDATION_FAILED")
    assert paths(errors) == ["filter.amount.gte"]
    errors = client.fails('{ deals(filter: {closeDate: {lt: "yesterday"}}) { totalCount } }', code="VALIDATION_FAILED")
    assert paths(errors) == ["filter.closeDate.lt"]
    errors = client.fails('{ deals { nodes { lines(filter: {qty: {gte: 1}}) { totalCount } } } deals2: deals(filter: {or: [{name: {eq: "a"}}, {amount: {gte: "x"}}]}) { totalCount } }',
                          code="VALIDATION_FAILED")
    assert paths(errors) == ["filter.or.1.amount.gte"]

    ids = create_deals(client, [{"name": "a"}, {"name": "b"}])
    errors = client.fails('mutation($i: [DealUpdateItem!]!) { updateDeals(items: $i) { id } }',
                          {"i": [{"id": ids[0], "input": {"amount": "2"}}, {"id": ids[1], "input": {"closeDate": "13/01/2024"}}]},
                          code="VALIDATION_FAILED")
    assert paths(errors) == ["items.1.input.closeDate"]
    errors = client.fails('mutation($id: ID!) { updateDeal(id: $id, input: {amount: "x"}) { id } }', {"id": ids[0]},
                          code="VALIDATION_FAILED")
    assert paths(errors) == ["input.amount"]
    assert client.data("{ deals { nodes { amount closeDate version } } }") == {"deals": {"nodes": [
        {"amount": None, "closeDate": None, "version": 1}, {"amount": None, "closeDate": None, "version": 1}]}}


def test_a_bad_order_by_value_is_a_bad_query(client):
    errors = client.fails("{ deals(orderBy: [NAME_SIDEWAYS]) { totalCount } }", code="BAD_QUERY", status=400)
    assert "NAME_SIDEWAYS" in errors[0]["message"]
    errors = client.fails('query($o: [DealOrderBy!]) { deals(orderBy: $o) { totalCount } }', {"o": ["NAME_ASC", "name"]},
                          code="BAD_QUERY", status=400)
    assert "o[1]" in errors[0]["message"] or "1" in errors[0]["message"]
    errors = client.fails('{ deals { nodes { lines(orderBy: [NAME_ASC]) { totalCount } } } }', code="BAD_QUERY", status=400)
    assert "LineOrderBy" in errors[0]["message"]


# -- not found -------------------------------------------------------------------------------------
MISSING_IDS = ["not-an-id", "", "'; DROP TABLE obj_deal; --", "00000000-0000-7000-8000-000000000000",
               "01a223eb-ea2d-7000-879a-a8fb389ee317"]


@pytest.mark.parametrize("missing", MISSING_IDS)
def test_not_found_for_malformed_and_missing_ids(client, missing):
    deal = create_deals(client, [{"name": "keep"}])[0]
    operations = {
        "deal": 'query($id: ID!) { deal(id: $id) { id } }',
        "updateDeal": 'mutation($id: ID!) { updateDeal(id: $id, input: {name: "changed"}) { id } }',
        "deleteDeal": 'mutation($id: ID!) { deleteDeal(id: $id) }',
        "restoreDeal": 'mutation($id: ID!) { restoreDeal(id: $id) { id } }',
    }
    fields = {}
    for name, query in operations.items():
        status, body = client.post(query, {"id": missing})
        assert status == 200, body
        assert body["data"] in (None, {name: None}), body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND", (name, error)
        assert error["path"] == [name], (name, error)
        fields[name] = error["extensions"].get("field")
    assert client.data('query($id: ID!) { deal(id: $id) { name version } }', {"id": deal}) == {"deal": {"name": "keep", "version": 1}}
    assert client.count("obj_deal", alive_only=True) == 1
    # the missing id is the 'id' argument of every operation (not a field of updateDeal's input)
    assert fields == {name: "id" for name in operations}


def test_not_found_for_records_in_and_out_of_the_recycle_bin(client):
    live, binned = create_deals(client, [{"name": "live"}, {"name": "binned"}])
    client.data('mutation($id: ID!) { deleteDeal(id: $id) }', {"id": binned})
    for query, record_id in (('query($id: ID!) { deal(id: $id) { id } }', binned),
                             ('query($id: ID!) { deal(id: $id, inRecycleBin: true) { id } }', live),
                             ('mutation($id: ID!) { updateDeal(id: $id, input: {name: "x"}) { id } }', binned),
                             ('mutation($id: ID!) { deleteDeal(id: $id) }', binned),
                             ('mutation($id: ID!) { restoreDeal(id: $id) { id } }', live)):
        errors = client.fails(query, {"id": record_id}, code="NOT_FOUND", status=200)
        assert len(errors) == 1
    assert client.data('query($id: ID!) { deal(id: $id, inRecycleBin: true) { name } }', {"id": binned}) == {"deal": {"name": "binned"}}
    assert client.data("{ deals { nodes { name version } } }") == {"deals": {"nodes": [{"name": "live", "version": 1}]}}


@pytest.mark.parametrize("cursor", ["garbage", "", "W1siaWQiLCJhIl0sWyJ4Il1d", "eyJ4IjoxfQ", "%%%", "'; DROP TABLE obj_deal; --"])
def test_a_forged_cursor_is_a_validation_error(client, cursor):
    deal = create_deals(client, [{"name": "c"}])[0]
    client.data('mutation($d: ID!) { createLines(inputs: [{qty: 1, dealId: $d}]) { id } }', {"d": deal})
    for query, variables in (('query($c: String) { deals(after: $c) { nodes { name } } }', {"c": cursor}),
                             ('query($c: String) { deals(orderBy: [NAME_DESC], after: $c) { nodes { name } } }', {"c": cursor}),
                             ('query($id: ID!, $c: String) { deal(id: $id) { lines(after: $c) { nodes { qty } } } }',
                              {"id": deal, "c": cursor})):
        if cursor == "":
            # an empty cursor is no cursor at all or a refused one; never a crash
            status, body = client.post(query, variables)
            assert status == 200 and all(e["extensions"]["code"] == "VALIDATION_FAILED" for e in body.get("errors", [])), body
            continue
        errors = client.fails(query, variables, code="VALIDATION_FAILED", status=200)
        assert [e["field"] for e in errors[0]["extensions"]["errors"]] == ["after"]
    assert client.count("obj_deal") == 1
