"""The public pools API over HTTP GraphQL, on SQLite and PostgreSQL: an administrator sets a pool
up (bad settings refused at their fields), a member lists, claims and releases its records, and
both read the moves; a non-member and a wrong claim get their codes."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.server.app import Settings, create_app

CREATE = """mutation($input: PublicPoolInput!) { createPublicPool(input: $input) {
  apiName label objectApiName protection activityObject activityField stage protectionDays reminderDays
  dailyClaimLimit maxHeld cooldownDays active members { unitId includeBelow role } } }"""
UPDATE = "mutation($name: String!, $input: PublicPoolUpdateInput!) { updatePublicPool(apiName: $name, input: $input) { label dailyClaimLimit } }"
DELETE = "mutation($name: String!) { deletePublicPool(apiName: $name) }"
POOLS = "{ publicPools { apiName } }"
RECORDS = """query($pool: String!, $first: Int, $after: String, $fields: [String!]) {
  publicPoolRecords(pool: $pool, first: $first, after: $after, fields: $fields) {
    nodes { id previousOwnerId values } pageInfo { hasNextPage endCursor } } }"""
CLAIM = "mutation($pool: String!, $id: ID!) { claimPublicPoolRecord(pool: $pool, id: $id) { action actorId toOwnerId } }"
RELEASE = "mutation($pool: String!, $id: ID!, $reason: String!) { releasePublicPoolRecord(pool: $pool, id: $id, reason: $reason) { action reason fromOwnerId } }"
MOVES = "query($pool: String!, $id: ID) { publicPoolMoves(pool: $pool, recordId: $id) { action actorId fromOwnerId toOwnerId reason } }"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock(datetime.now(timezone.utc))).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


@pytest.fixture
def people(api):
    """East with ann and bob selling there, dan in West; ``{name: (user id, token)}``."""
    rt = api.runtime
    rt.metadata.create_objects(S, [{"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
                                    "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                                               {"api_name": "budget", "label": "Budget", "type": "integer"}]},
                                   {"api_name": "visit", "label": "Visit", "plural_api_name": "visits", "plural_label": "Visits",
                                    "fields": [{"api_name": "lead", "label": "Lead", "type": "lookup", "options": {"target": "lead"}}]}])
    sec = rt.security
    sec.create_role(S, "sales", "Sales")
    east, west = sec.create_unit(S, "East")["id"], sec.create_unit(S, "West")["id"]
    found = {"east": east}
    for name, unit in (("ann", east), ("bob", east), ("dan", west)):
        user = sec.create_user(S, {"username": name})
        sec.add_membership(S, user["id"], unit, "sales")
        found[name] = (user["id"], sec.issue_token(S, "tests", user_id=user["id"])["token"])
    return found


def settings(east, **changes):
    return {"apiName": "leads", "label": "Lead pool", "objectApiName": "lead", "protection": "activity",
            "activityObject": "visit", "activityField": "lead", "protectionDays": 30, "reminderDays": 3,
            "dailyClaimLimit": 5, "maxHeld": 10, "cooldownDays": 7, "members": [{"unitId": east, "role": "sales"}], **changes}


def test_an_administrator_sets_up_a_pool_and_a_member_claims_and_releases(api, people):
    east, (ann, ann_token), (bob, bob_token), (_, dan_token) = people["east"], people["ann"], people["bob"], people["dan"]
    status, errors = api.errors(CREATE, {"input": settings(east, objectApiName="nothing", protectionDays=0)})
    assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [
        ("OUT_OF_RANGE", "protection_days"), ("NOT_FOUND", "object_api_name")]
    assert api.data(POOLS) == {"publicPools": []}
    _, errors = api.errors(CREATE, {"input": settings(east)}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"

    made = api.data(CREATE, {"input": settings(east)})["createPublicPool"]
    assert made == {**settings(east, members=[{"unitId": east, "includeBelow": False, "role": "sales"}]), "stage": None, "active": True}
    assert api.data(UPDATE, {"name": "leads", "input": {"label": "Leads", "dailyClaimLimit": 1}})["updatePublicPool"] == {
        "label": "Leads", "dailyClaimLimit": 1}
    assert api.data(POOLS, token=ann_token) == {"publicPools": [{"apiName": "leads"}]}
    assert api.data(POOLS, token=dan_token) == {"publicPools": []}

    records = api.runtime.records
    first = records.create(S, "lead", {"name": "Acme", "budget": 9, "owner_id": ann})
    second = records.create(S, "lead", {"name": "Beta", "owner_id": ann})
    _, errors = api.errors(RELEASE, {"pool": "leads", "id": first["id"], "reason": ""}, token=ann_token)
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("REQUIRED", "reason")]
    for record in (first, second):
        released = api.data(RELEASE, {"pool": "leads", "id": record["id"], "reason": "no budget"}, token=ann_token)
        assert released == {"releasePublicPoolRecord": {"action": "release", "reason": "no budget", "fromOwnerId": ann}}
        api.runtime.clock.advance(1)

    page = api.data(RECORDS, {"pool": "leads", "first": 1, "fields": ["name"]}, token=bob_token)["publicPoolRecords"]
    assert page["nodes"] == [{"id": second["id"], "previousOwnerId": ann, "values": {"id": second["id"], "name": "Beta"}}]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = api.data(RECORDS, {"pool": "leads", "after": page["pageInfo"]["endCursor"], "fields": ["name"]},
                    token=bob_token)["publicPoolRecords"]
    assert [n["values"] for n in rest["nodes"]] == [{"id": first["id"], "name": "Acme"}]
    _, errors = api.errors(RECORDS, {"pool": "leads", "fields": ["budget"]}, token=bob_token)
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("FORBIDDEN", "fields.0")]
    _, errors = api.errors(RECORDS, {"pool": "leads"}, token=dan_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"

    assert api.data(CLAIM, {"pool": "leads", "id": first["id"]}, token=bob_token) == {
        "claimPublicPoolRecord": {"action": "claim", "actorId": bob, "toOwnerId": bob}}
    assert records.get(S, "lead", first["id"])["owner_id"] == bob
    _, errors = api.errors(CLAIM, {"pool": "leads", "id": first["id"]}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    _, errors = api.errors(CLAIM, {"pool": "leads", "id": second["id"]}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "CLAIM_LIMIT"
    _, errors = api.errors(CLAIM, {"pool": "leads", "id": second["id"]}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "COOLDOWN"
    _, errors = api.errors(CLAIM, {"pool": "leads", "id": second["id"]}, token=dan_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert records.get(S, "lead", second["id"])["owner_id"] is None

    expected = [{"action": "release", "actorId": ann, "fromOwnerId": ann, "toOwnerId": None, "reason": "no budget"},
                {"action": "claim", "actorId": bob, "fromOwnerId": None, "toOwnerId": bob, "reason": None}]
    assert api.data(MOVES, {"pool": "leads", "id": first["id"]}, token=ann_token)["publicPoolMoves"] == expected
    assert len(api.data(MOVES, {"pool": "leads"})["publicPoolMoves"]) == 3
    _, errors = api.errors(MOVES, {"pool": "leads"}, token=dan_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"

    _, errors = api.errors(DELETE, {"name": "leads"}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert api.data(DELETE, {"name": "leads"}) == {"deletePublicPool": True}
    assert api.data(POOLS) == {"publicPools": []}
    _, errors = api.errors(MOVES, {"pool": "leads"})
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
