"""Field-level security in the generated GraphQL API, over HTTP with user tokens, on SQLite and PostgreSQL.

A field a caller may not read comes back null with a FORBIDDEN error at its exact path, wherever it
is selected (a record, a list, a to-one relation, a related list, a mutation result) and the rest
of the response stays; filtering, sorting, grouping or measuring it is refused with the GraphQL
path of the offending argument; writing a field the caller may not edit is refused with the input
path, and nothing is written.

The org: one unit, two users. ``ann`` (role ``rep``) may not read ``deal.amount``, ``deal.created_at``,
``account.secret`` or ``line.cost`` and may only read ``deal.notes``; ``vic`` (role ``viewer``) may
not read the lookup ``deal.account`` nor the master-detail ``line.deal``.
"""
from __future__ import annotations

import json

import pytest
from lowcode.graphql.endpoint import GraphQLEndpoint
from lowcode.metadata import SYSTEM_ACTOR as S

PASSWORD = "a long password 1"

OBJECTS = [
    {"apiName": "account", "label": "Account", "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
        {"apiName": "secret", "label": "Secret", "type": "TEXT"},
    ]},
    {"apiName": "deal", "label": "Deal", "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
        {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "options": {"precision": 12, "scale": 2}},
        {"apiName": "close_date", "label": "Close date", "type": "DATE"},
        {"apiName": "notes", "label": "Notes", "type": "TEXT"},
        {"apiName": "account", "label": "Account", "type": "LOOKUP", "options": {"target": "account"}},
    ]},
    {"apiName": "line", "label": "Line", "fields": [
        {"apiName": "quantity", "label": "Quantity", "type": "INTEGER"},
        {"apiName": "cost", "label": "Cost", "type": "INTEGER"},
        {"apiName": "deal", "label": "Deal", "type": "MASTER_DETAIL", "options": {"target": "deal"}},
    ]},
]
CREATE_OBJECT = "mutation ($input: ObjectInput!) { createObject(input: $input) { apiName } }"


class Org:
    """The objects, the records and a token per user."""

    def __init__(self, api):
        self.api = api
        for definition in OBJECTS:
            api.data(CREATE_OBJECT, {"input": definition})
        sec = api.runtime.security
        unit = sec.create_unit(S, "Sales")
        sec.create_role(S, "rep", "Sales rep")
        sec.create_role(S, "viewer", "Viewer")
        for role in ("rep", "viewer"):
            for obj in ("account", "deal", "line"):
                sec.set_object_grant(S, role, obj, ["read", "create", "update"], "all", "all")
        for obj, field, access in [("deal", "amount", "hidden"), ("deal", "created_at", "hidden"), ("deal", "notes", "read"),
                                   ("account", "secret", "hidden"), ("line", "cost", "hidden")]:
            sec.set_field_grant(S, "rep", obj, field, access)
        sec.set_field_grant(S, "viewer", "deal", "account", "hidden")
        sec.set_field_grant(S, "viewer", "line", "deal", "hidden")
        self.tokens = {}
        for username, role in (("ann", "rep"), ("vic", "viewer")):
            user = sec.create_user(S, {"username": username}, PASSWORD)
            sec.add_membership(S, user["id"], unit["id"], role)
            self.tokens[username] = sec.issue_token(S, "test", user_id=user["id"])["token"]
        records = api.runtime.records
        self.acme = records.create(S, "account", {"name": "Acme", "secret": "s-acme"})["id"]
        self.alpha = records.create(S, "deal", {"name": "Alpha", "amount": "100", "close_date": "2026-01-15",
                                                "notes": "n1", "account": self.acme})["id"]
        self.beta = records.create(S, "deal", {"name": "Beta", "amount": "250", "close_date": "2026-02-15"})["id"]
        records.bulk_create(S, "line", [{"deal": self.alpha, "quantity": 2, "cost": 5},
                                        {"deal": self.alpha, "quantity": 3, "cost": 7}])

    def post(self, user: str, query: str, variables: dict | None = None):
        return self.api.post(query, variables, token=self.tokens[user])

    def data(self, user: str, query: str, variables: dict | None = None):
        status, body = self.post(user, query, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def deals(self) -> list[dict]:
        """Every deal as the platform stores it (service token, every field)."""
        query = "{ deals(orderBy: [NAME_ASC]) { nodes { name amount notes version } } }"
        return self.api.data(query)["deals"]["nodes"]


@pytest.fixture
def org(api):
    return Org(api)


def forbidden(path: list, field: str, label: str) -> dict:
    """The error of one unreadable field, as the API reports it."""
    return {"message": f"You may not read the field '{field}' of {label} records.", "path": path,
            "extensions": {"code": "FORBIDDEN", "field": field}}


def without_locations(errors: list[dict]) -> list[dict]:
    found = []
    for error in errors:
        error = dict(error)
        assert error.pop("locations"), error
        extensions = dict(error["extensions"])
        extensions.pop("ctx", None)
        error["extensions"] = extensions
        found.append(error)
    return found


def refused_uses(body: dict) -> list[tuple[str, str]]:
    """``(code, field)`` of a request refused as a whole for what it filters, sorts or measures on
    (``data`` null, or its nullable root field null)."""
    assert body["data"] is None or list(body["data"].values()) == [None], body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert error["message"] == "The request uses fields you may not read; remove the listed parts.", error
    return [(e["code"], e["field"]) for e in error["extensions"]["errors"]]


# -- reading -----------------------------------------------------------------------------------
def test_a_hidden_field_of_a_record_is_null_with_an_error_at_its_path(org):
    status, body = org.post("ann", "query ($id: ID!) { deal(id: $id) { id name amount } }", {"id": org.alpha})
    assert status == 200
    assert body["data"] == {"deal": {"id": org.alpha, "name": "Alpha", "amount": None}}
    assert without_locations(body["errors"]) == [forbidden(["deal", "amount"], "amount", "Deal")]
    assert body["errors"][0]["extensions"]["ctx"] == {"object": "deal"}
    # the service token reads it, and so would ann if her role did not hide it
    assert org.api.data("query ($id: ID!) { deal(id: $id) { amount } }", {"id": org.alpha}) == {"deal": {"amount": "100.00"}}


def test_a_hidden_non_null_system_field_nulls_only_itself(org):
    status, body = org.post("ann", "query ($id: ID!) { deal(id: $id) { createdAt name version } }", {"id": org.alpha})
    assert status == 200
    assert body["data"] == {"deal": {"createdAt": None, "name": "Alpha", "version": 1}}
    assert without_locations(body["errors"]) == [forbidden(["deal", "createdAt"], "createdAt", "Deal")]


def test_hidden_fields_in_a_list_give_one_error_per_record(org):
    status, body = org.post("ann", "{ deals(orderBy: [NAME_ASC]) { totalCount nodes { name amount } "
                                   "edges { node { cash: amount } } } }")
    assert status == 200
    assert body["data"] == {"deals": {"totalCount": 2, "nodes": [{"name": "Alpha", "amount": None}, {"name": "Beta", "amount": None}],
                                      "edges": [{"node": {"cash": None}}, {"node": {"cash": None}}]}}
    assert without_locations(body["errors"]) == [
        forbidden(["deals", "nodes", 0, "amount"], "amount", "Deal"), forbidden(["deals", "nodes", 1, "amount"], "amount", "Deal"),
        forbidden(["deals", "edges", 0, "node", "cash"], "amount", "Deal"), forbidden(["deals", "edges", 1, "node", "cash"], "amount", "Deal"),
    ]


def test_the_planner_reads_no_hidden_column(org):
    org.post("ann", "{ deals { nodes { name amount account { name secret } lines { nodes { quantity cost } } } } }")
    statements = " ".join(org.api.statements).lower()
    assert "quantity" in statements and "name" in statements
    assert "amount" not in statements and "secret" not in statements and "cost" not in statements
    # the same request with the service token reads them
    org.api.post("{ deals { nodes { name amount account { name secret } lines { nodes { quantity cost } } } } }")
    statements = " ".join(org.api.statements).lower()
    assert "amount" in statements and "secret" in statements and "cost" in statements


def test_a_hidden_field_of_a_related_record_and_of_a_related_list(org):
    query = """query ($id: ID!) { deal(id: $id) { name account { name secret }
                 lines(orderBy: [QUANTITY_ASC]) { totalCount nodes { quantity cost } } } }"""
    status, body = org.post("ann", query, {"id": org.alpha})
    assert status == 200
    assert body["data"] == {"deal": {"name": "Alpha", "account": {"name": "Acme", "secret": None},
                                     "lines": {"totalCount": 2, "nodes": [{"quantity": 2, "cost": None}, {"quantity": 3, "cost": None}]}}}
    assert without_locations(body["errors"]) == [
        forbidden(["deal", "account", "secret"], "secret", "Account"),
        forbidden(["deal", "lines", "nodes", 0, "cost"], "cost", "Line"),
        forbidden(["deal", "lines", "nodes", 1, "cost"], "cost", "Line"),
    ]


def test_a_hidden_lookup_hides_its_raw_id_and_its_relation(org):
    query = "query ($id: ID!) { deal(id: $id) { name accountId account { name } } }"
    status, body = org.post("vic", query, {"id": org.alpha})
    assert status == 200
    assert body["data"] == {"deal": {"name": "Alpha", "accountId": None, "account": None}}
    assert without_locations(body["errors"]) == [forbidden(["deal", "accountId"], "accountId", "Deal"),
                                                 forbidden(["deal", "account"], "account", "Deal")]
    # vic reads everything else, ann (who may read the lookup) gets the account
    assert org.data("ann", query, {"id": org.alpha}) == {"deal": {"name": "Alpha", "accountId": org.acme, "account": {"name": "Acme"}}}


def test_a_related_list_whose_link_is_hidden_is_null_with_an_error(org):
    query = "query ($id: ID!) { deal(id: $id) { name amount lines { totalCount } } }"
    status, body = org.post("vic", query, {"id": org.alpha})
    assert status == 200
    assert body["data"] == {"deal": {"name": "Alpha", "amount": "100.00", "lines": None}}
    assert without_locations(body["errors"]) == [forbidden(["deal", "lines"], "deal", "Line")]
    status, body = org.post("vic", "{ lines(orderBy: [QUANTITY_ASC]) { nodes { quantity dealId deal { name } } } }")
    assert body["data"] == {"lines": {"nodes": [{"quantity": 2, "dealId": None, "deal": None}, {"quantity": 3, "dealId": None, "deal": None}]}}
    assert sorted(e["path"] for e in body["errors"]) == [["lines", "nodes", 0, "deal"], ["lines", "nodes", 0, "dealId"],
                                                         ["lines", "nodes", 1, "deal"], ["lines", "nodes", 1, "dealId"]]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


def test_hidden_fields_of_mutation_results(org):
    status, body = org.post("ann", 'mutation { createDeal(input: {name: "Gamma", closeDate: "2026-03-01"}) { name amount closeDate } }')
    assert status == 200
    assert body["data"] == {"createDeal": {"name": "Gamma", "amount": None, "closeDate": "2026-03-01"}}
    assert without_locations(body["errors"]) == [forbidden(["createDeal", "amount"], "amount", "Deal")]
    # re-read for its relation: the related record's hidden field too
    query = "mutation ($a: ID) { createDeal(input: {name: \"Delta\", accountId: $a}) { amount account { name secret } } }"
    status, body = org.post("ann", query, {"a": org.acme})
    assert body["data"] == {"createDeal": {"amount": None, "account": {"name": "Acme", "secret": None}}}
    assert without_locations(body["errors"]) == [forbidden(["createDeal", "amount"], "amount", "Deal"),
                                                 forbidden(["createDeal", "account", "secret"], "secret", "Account")]
    status, body = org.post("ann", 'mutation { createDeals(inputs: [{name: "E1"}, {name: "E2"}]) { name amount } }')
    assert body["data"] == {"createDeals": [{"name": "E1", "amount": None}, {"name": "E2", "amount": None}]}
    assert [e["path"] for e in body["errors"]] == [["createDeals", 0, "amount"], ["createDeals", 1, "amount"]]
    status, body = org.post("ann", 'mutation ($id: ID!) { updateDeal(id: $id, input: {name: "Alpha 2"}) { name amount version } }',
                            {"id": org.alpha})
    assert body["data"] == {"updateDeal": {"name": "Alpha 2", "amount": None, "version": 2}}
    assert without_locations(body["errors"]) == [forbidden(["updateDeal", "amount"], "amount", "Deal")]
    # the hidden values were kept: ann's writes never touched them
    stored = {d["name"]: d["amount"] for d in org.deals()}
    assert stored == {"Alpha 2": "100.00", "Beta": "250.00", "Delta": None, "E1": None, "E2": None, "Gamma": None}


def test_the_fast_path_hands_hidden_selections_to_the_executor(org):
    runtime = org.api.runtime
    actor = runtime.security.authenticate(org.tokens["ann"])
    fast, slow = GraphQLEndpoint(runtime), GraphQLEndpoint(runtime, fast_path=False)
    hidden = {"query": "query ($id: ID!) { deals(orderBy: [NAME_DESC]) { nodes { name amount } } deal(id: $id) { "
                       "account { secret } lines { nodes { cost } } } }", "variables": {"id": org.alpha}}
    visible = {"query": "query ($id: ID!) { deals(orderBy: [NAME_DESC]) { nodes { name closeDate } } deal(id: $id) { "
                        "account { name } lines { nodes { quantity } } } }", "variables": {"id": org.alpha}}
    answer = fast.run(actor, hidden)
    assert fast.fast_answers == 0
    assert json.dumps(answer) == json.dumps(slow.run(actor, hidden))
    assert [e["path"] for e in answer[1]["errors"]] == [["deals", "nodes", 0, "amount"], ["deals", "nodes", 1, "amount"],
                                                        ["deal", "account", "secret"], ["deal", "lines", "nodes", 0, "cost"],
                                                        ["deal", "lines", "nodes", 1, "cost"]]
    answer = fast.run(actor, visible)
    assert fast.fast_answers == 1 and "errors" not in answer[1]
    assert json.dumps(answer) == json.dumps(slow.run(actor, visible))
    assert answer[1]["data"]["deals"]["nodes"] == [{"name": "Beta", "closeDate": "2026-02-15"}, {"name": "Alpha", "closeDate": "2026-01-15"}]
    # through HTTP, the executor's answer reads each table once: no statement of the fast path is repeated
    org.post("ann", hidden["query"], hidden["variables"])
    hidden_statements = statements(org.api)
    org.post("ann", visible["query"], visible["variables"])
    assert len(hidden_statements) == len(statements(org.api)) == 5  # token, Catalog version, deals, deal, its lines


def statements(api) -> list[str]:
    """The SQL statements of the last request (SQLite's explicit BEGINs left out)."""
    return [s for s in api.statements if s != "BEGIN"]


def test_a_user_token_adds_one_statement(org):
    query = "{ deals(orderBy: [NAME_ASC]) { nodes { name notes account { name } lines { nodes { quantity } } } } }"
    for _ in range(2):  # the first request of a token records its use
        org.data("ann", query)
    user = org.data("ann", query)
    user_statements = statements(org.api)
    assert org.api.data(query) == user
    service_statements = statements(org.api)
    assert len(service_statements) == 3  # the Catalog version, the deals with their accounts, the lines
    assert user_statements[0].startswith("SELECT lc_token.id") and user_statements[1:] == service_statements
    # hidden fields cost nothing more
    status, body = org.post("ann", query.replace("notes", "amount"))
    assert len(body["errors"]) == 2 and len(statements(org.api)) == len(user_statements)


# -- filters, sorts, groups and measures -------------------------------------------------------------
def test_filtering_on_a_hidden_field_is_refused_with_its_argument_path(org):
    status, body = org.post("ann", '{ deals(filter: {amount: {gt: "1"}}) { totalCount } }')
    assert status == 200 and refused_uses(body) == [("FORBIDDEN", "filter.amount")]
    assert body["errors"][0]["path"] == ["deals"]
    status, body = org.post("ann", '{ deals(filter: {and: [{name: {eq: "Alpha"}}, {not: {closeDate: {isNull: true}, amount: {gt: "1"}}}]}) '
                                   '{ totalCount } }')
    assert refused_uses(body) == [("FORBIDDEN", "filter.and.1.not.amount")]


def test_filtering_through_a_lookup_on_a_hidden_field_is_refused(org):
    status, body = org.post("ann", '{ deals(filter: {account: {secret: {eq: "s-acme"}}}) { totalCount } }')
    assert refused_uses(body) == [("FORBIDDEN", "filter.account.secret")]
    # ann may filter on the account's name
    assert org.data("ann", '{ deals(filter: {account: {name: {eq: "Acme"}}}) { nodes { name } } }') == {"deals": {"nodes": [{"name": "Alpha"}]}}


def test_filtering_on_a_hidden_lookup_names_the_key_used(org):
    status, body = org.post("vic", '{ deals(filter: {account: {name: {eq: "Acme"}}}) { totalCount } }')
    assert refused_uses(body) == [("FORBIDDEN", "filter.account")]
    status, body = org.post("vic", "{ deals(filter: {accountId: {isNull: false}}) { totalCount } }")
    assert refused_uses(body) == [("FORBIDDEN", "filter.accountId")]


def test_sorting_on_a_hidden_field_is_refused(org):
    status, body = org.post("ann", "{ deals(orderBy: [NAME_ASC, AMOUNT_DESC]) { totalCount } }")
    assert refused_uses(body) == [("FORBIDDEN", "orderBy.1")]


def test_filtering_or_sorting_a_related_list_on_a_hidden_field_names_the_list(org):
    query = "query ($id: ID!) { deal(id: $id) { name lines(filter: {cost: {gt: 1}}, orderBy: [QUANTITY_ASC, COST_DESC]) { totalCount } } }"
    status, body = org.post("ann", query, {"id": org.alpha})
    assert status == 200 and refused_uses(body) == [("FORBIDDEN", "lines.filter.cost"), ("FORBIDDEN", "lines.orderBy.1")]
    assert body["data"] == {"deal": None} and body["errors"][0]["path"] == ["deal"]
    query = "{ deals { nodes { items: lines(filter: {or: [{quantity: {gt: 1}}, {cost: {lt: 9}}]}) { totalCount } } } }"
    status, body = org.post("ann", query)
    assert status == 200 and refused_uses(body) == [("FORBIDDEN", "items.filter.or.1.cost")]
    assert body["errors"][0]["path"] == ["deals"]


def test_grouping_by_a_hidden_field_is_refused(org):
    status, body = org.post("ann", "{ dealAggregate(groupBy: [NAME, CLOSE_DATE__MONTH, AMOUNT]) { count } }")
    assert refused_uses(body) == [("FORBIDDEN", "groupBy.2")]
    assert body["errors"][0]["path"] == ["dealAggregate"]
    rows = org.data("ann", "{ dealAggregate(groupBy: [CLOSE_DATE__MONTH]) { key { closeDate } count } }")["dealAggregate"]
    assert rows == [{"key": {"closeDate": "2026-01-01"}, "count": 1}, {"key": {"closeDate": "2026-02-01"}, "count": 1}]


def test_measuring_a_hidden_field_is_refused(org):
    status, body = org.post("ann", "{ dealAggregate { count max { closeDate } sum { amount } } }")
    assert refused_uses(body) == [("FORBIDDEN", "sum.amount")]
    status, body = org.post("ann", '{ dealAggregate(filter: {amount: {gt: "1"}}) { count } }')
    assert refused_uses(body) == [("FORBIDDEN", "filter.amount")]
    assert org.data("ann", "{ dealAggregate { count max { closeDate } } }") == {"dealAggregate": [{"count": 2, "max": {"closeDate": "2026-02-15"}}]}


# -- writing -----------------------------------------------------------------------------------
def refused_write(body: dict) -> list[tuple[str, str]]:
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert error["message"] == "The input writes fields you may not edit; remove the listed parts.", error
    return [(e["code"], e["field"]) for e in error["extensions"]["errors"]]


def test_writing_a_hidden_or_read_only_field_is_refused_and_nothing_is_written(org):
    before = org.deals()
    status, body = org.post("ann", 'mutation { createDeal(input: {name: "X", amount: "5", notes: "n"}) { id } }')
    assert status == 200 and refused_write(body) == [("FORBIDDEN", "input.amount"), ("FORBIDDEN", "input.notes")]
    status, body = org.post("ann", 'mutation { createDeals(inputs: [{name: "X"}, {name: "Y"}, {name: "Z", notes: "n"}]) { id } }')
    assert refused_write(body) == [("FORBIDDEN", "inputs.2.notes")]
    status, body = org.post("ann", 'mutation ($id: ID!) { updateDeal(id: $id, input: {name: "X", amount: "5"}) { id } }', {"id": org.alpha})
    assert refused_write(body) == [("FORBIDDEN", "input.amount")]
    status, body = org.post("ann", """mutation ($a: ID!, $b: ID!) { updateDeals(items: [{id: $a, input: {name: "X"}},
                                      {id: $b, input: {closeDate: "2026-05-01", notes: "n"}}]) { id } }""", {"a": org.alpha, "b": org.beta})
    assert refused_write(body) == [("FORBIDDEN", "items.1.input.notes")]
    assert org.deals() == before
    # vic, to whom the lookup is hidden, may not set it either
    status, body = org.post("vic", 'mutation ($a: ID) { createDeal(input: {name: "X", amount: "1", accountId: $a}) { id } }', {"a": org.acme})
    assert refused_write(body) == [("FORBIDDEN", "input.accountId")]
    assert org.deals() == before


def test_a_read_only_field_is_readable_but_not_writable(org):
    assert org.data("ann", "query ($id: ID!) { deal(id: $id) { notes } }", {"id": org.alpha}) == {"deal": {"notes": "n1"}}
    status, body = org.post("ann", 'mutation ($id: ID!) { updateDeal(id: $id, input: {notes: "changed"}) { notes } }', {"id": org.alpha})
    assert refused_write(body) == [("FORBIDDEN", "input.notes")]
    assert org.data("ann", "query ($id: ID!) { deal(id: $id) { notes version } }", {"id": org.alpha}) == {"deal": {"notes": "n1", "version": 1}}
    # vic's role leaves it editable
    written = org.data("vic", 'mutation ($id: ID!) { updateDeal(id: $id, input: {notes: "changed"}) { notes version } }', {"id": org.alpha})
    assert written == {"updateDeal": {"notes": "changed", "version": 2}}


def test_only_fields_no_grant_can_hide_are_non_null(org):
    """Any other field may be hidden from some caller and then reads as null (with its error)
    without nulling the record around it: required fields, createdAt, relations, related lists."""
    status, body = org.post("ann", '{ __type(name: "Deal") { fields { name type { kind ofType { name } } } } }')
    kinds = {f["name"]: f["type"]["kind"] for f in body["data"]["__type"]["fields"]}
    assert {name for name, kind in kinds.items() if kind == "NON_NULL"} == {"id", "version"}
    assert (kinds["name"], kinds["createdAt"], kinds["account"], kinds["lines"]) == ("SCALAR", "SCALAR", "OBJECT", "OBJECT")
