"""The fast path answers record queries exactly as graphql-core's executor would.

Every query here runs through two endpoints on the same runtime, one shaping responses itself
and one using the executor; the JSON must be identical, key order included.
"""
from __future__ import annotations

import json

import pytest
from lowcode.graphql.endpoint import GraphQLEndpoint
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.runtime import Runtime

PICK = {"values": [{"api_name": "energy", "label": "Energy"}, {"api_name": "retail", "label": "Retail"},
                   {"api_name": "legacy", "label": "Legacy", "active": False}]}


@pytest.fixture
def endpoints(database_url):
    runtime = Runtime.connect(database_url).install()
    actor = SYSTEM_ACTOR
    runtime.metadata.create_objects(actor, [
        {"api_name": "account", "label": "Account", "fields": [
            {"api_name": "name", "label": "Name", "type": "text"},
            {"api_name": "industry", "label": "Industry", "type": "picklist", "options": PICK},
            {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK},
            {"api_name": "location", "label": "Location", "type": "geolocation"},
            {"api_name": "profile", "label": "Profile", "type": "json"},
            {"api_name": "parent", "label": "Parent", "type": "lookup", "options": {"target": "account", "relationship_name": "subsidiaries"}},
        ]},
        {"api_name": "deal", "label": "Deal", "fields": [
            {"api_name": "name", "label": "Name", "type": "text"},
            {"api_name": "amount", "label": "Amount", "type": "currency"},
            {"api_name": "close_date", "label": "Close date", "type": "date"},
            {"api_name": "signed_at", "label": "Signed at", "type": "datetime"},
            {"api_name": "won", "label": "Won", "type": "boolean"},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account", "relationship_name": "deals"}},
        ]},
        {"api_name": "line", "label": "Line", "fields": [
            {"api_name": "deal", "label": "Deal", "type": "master_detail", "options": {"target": "deal"}},
            {"api_name": "quantity", "label": "Quantity", "type": "integer"},
            {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "L-{0000}"}},
        ]},
    ])
    records = runtime.records
    user = records.create(actor, "user", {"username": "ana", "full_name": "Ana Lima"})
    group = records.create(actor, "account", {"name": "Group", "industry": "energy", "tags": ["energy", "retail"],
                                              "location": {"latitude": 31.2, "longitude": 121.5}, "profile": {"tier": [1, "a"]}})
    accounts = records.bulk_create(actor, "account", [
        {"name": f"Sub {i}", "industry": "retail" if i % 2 else None, "parent": group["id"], "owner_id": user["id"]} for i in range(3)])
    deals = records.bulk_create(actor, "deal", [
        {"name": f"Deal {i}", "amount": f"{i * 10}.5", "close_date": f"2026-0{1 + i % 9}-15", "signed_at": "2026-03-01T09:30:00+08:00",
         "won": i % 3 == 0, "account": accounts[i % 3]["id"] if i % 4 else None, "owner_id": user["id"]} for i in range(12)])
    records.bulk_create(actor, "line", [{"deal": d["id"], "quantity": q} for i, d in enumerate(deals[:6]) for q in range(i % 4)])
    fast, slow = GraphQLEndpoint(runtime), GraphQLEndpoint(runtime, fast_path=False)
    yield fast, slow, {"deal": deals[5]["id"], "account": group["id"]}
    runtime.close()


QUERIES = [
    ("{ deals { totalCount edges { cursor node { id name amount closeDate signedAt won version createdAt ownerId } } "
     "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", {}),
    ("query($n: Int, $f: DealFilter) { __typename page: deals(first: $n, filter: $f, orderBy: [AMOUNT_DESC]) { __typename "
     "nodes { __typename name account { name industry tags location { latitude longitude } profile parent { name } } owner { fullName } } } }",
     {"n": 4, "f": {"or": [{"won": {"eq": True}}, {"accountId": {"isNull": True}}]}}),
    ("query($skip: Boolean!) { deals(first: 5) { edges { node { ...Parts a: account @skip(if: $skip) { name } "
     "b: account @include(if: $skip) { id } } } } } fragment Parts on Deal { name ... on Deal { lines(first: 2, orderBy: [QUANTITY_DESC]) "
     "{ totalCount pageInfo { hasNextPage endCursor } nodes { quantity number deal { name } } } } }", {"skip": False}),
    ("query($skip: Boolean!) { deals(first: 5) { edges { node { name a: account @skip(if: $skip) { name } "
     "b: account @include(if: $skip) { id } } } } }", {"skip": True}),
    ("query($id: ID!) { deal(id: $id) { name lines { nodes { quantity } } } again: deal(id: $id) { id } }", "deal"),
    ("query($id: ID!) { account(id: $id) { name subsidiaries(orderBy: [NAME_DESC]) { totalCount nodes { name deals(first: 1) "
     "{ totalCount nodes { name } } } } } }", "account"),
    ("{ dealAggregate(groupBy: [CLOSE_DATE__QUARTER, WON]) { key { closeDate won } count sum { amount } avg { amount } "
     "min { amount closeDate signedAt } max { amount } } }", {}),
    ("{ accounts(filter: {industry: {in: [RETAIL, LEGACY]}}) { nodes { name industry } } deals(first: 0) { totalCount "
     "pageInfo { hasNextPage endCursor } } }", {}),
]


@pytest.mark.parametrize("query, variables", QUERIES)
def test_fast_path_matches_the_executor(endpoints, query, variables):
    fast, slow, ids = endpoints
    if isinstance(variables, str):
        variables = {"id": ids[variables]}
    body = {"query": query, "variables": variables}
    before = fast.fast_answers
    fast_answer = fast.run(SYSTEM_ACTOR, body)
    assert fast.fast_answers == before + 1, fast_answer
    slow_answer = slow.run(SYSTEM_ACTOR, body)
    assert slow.fast_answers == 0
    assert fast_answer[0] == slow_answer[0] == 200
    assert "errors" not in fast_answer[1], fast_answer
    assert json.dumps(fast_answer[1]) == json.dumps(slow_answer[1])


@pytest.mark.parametrize("query, variables, code", [
    ('{ deal(id: "00000000-0000-0000-0000-000000000000") { name } }', {}, "NOT_FOUND"),
    ("{ deals(first: 10000) { totalCount } }", {}, "BAD_QUERY"),
    ('{ deals(after: "not-a-cursor") { totalCount } }', {}, "VALIDATION_FAILED"),
    ('{ deals(filter: {amount: {gt: "1.234"}}) { totalCount } }', {}, "VALIDATION_FAILED"),
])
def test_errors_are_reported_by_the_executor(endpoints, query, variables, code):
    fast, slow, _ = endpoints
    fast_answer = fast.run(SYSTEM_ACTOR, {"query": query, "variables": variables})
    assert fast.fast_answers == 0
    assert fast_answer == slow.run(SYSTEM_ACTOR, {"query": query, "variables": variables})
    assert fast_answer[1]["errors"][0]["extensions"]["code"] == code


def test_mutations_and_metadata_queries_take_the_executor(endpoints):
    fast, _, _ = endpoints
    status, body = fast.run(SYSTEM_ACTOR, {"query": 'mutation { createDeal(input: {name: "x"}) { name } }'})
    assert (status, body) == (200, {"data": {"createDeal": {"name": "x"}}})
    status, body = fast.run(SYSTEM_ACTOR, {"query": "{ metadataVersion deals(first: 1) { totalCount } }"})
    assert status == 200 and body["data"]["deals"]["totalCount"] == 13
    assert fast.fast_answers == 0
