"""Attempts to get around the permission rules through the GraphQL API, on SQLite and PostgreSQL.

Guessed ids, nesting into invisible parents and children, filters and groupings on hidden fields,
counting through aggregates, mixed bulk writes, transfers, references to invisible records,
revoked, expired and orphaned tokens, removed memberships, the org tree's managed fields and
metadata changes. Every refusal is checked for its exact code, and for leaving nothing changed.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from security_org import SERVICE_TOKEN, SYSTEM_ACTOR, USERS, Client, Model

S = SYSTEM_ACTOR

GET_DEAL = "query ($id: ID!) { deal(id: $id) { id name } }"
GET_DEAL_IN_BIN = "query ($id: ID!) { deal(id: $id, inRecycleBin: true) { id name } }"
UPDATE_DEAL = "mutation ($id: ID!) { updateDeal(id: $id, input: {note: \"guess\"}) { id note } }"
UPDATE_DEAL_VERSION = "mutation ($id: ID!) { updateDeal(id: $id, input: {note: \"guess\"}, expectedVersion: 999) { id } }"
DELETE_DEAL = "mutation ($id: ID!) { deleteDeal(id: $id) }"
RESTORE_DEAL = "mutation ($id: ID!) { restoreDeal(id: $id) { id } }"
TRANSFER_DEAL = "mutation ($id: ID!, $owner: ID!) { transferDeal(id: $id, ownerId: $owner) { id ownerId } }"
GET_LINE = "query ($id: ID!) { dealLine(id: $id) { id name } }"
GET_ACCOUNT = "query ($id: ID!) { account(id: $id) { id name } }"


def blank(body: dict, *ids: str) -> str:
    """A whole response body with the given ids blanked."""
    text = json.dumps(body, sort_keys=True)
    for i in ids:
        text = text.replace(i, "<id>")
    return text


def invisible(org, user: str, obj: str, action: str = "read"):
    """Records of ``obj`` outside the user's scope for ``action`` (per the model)."""
    return [r for r in org.records[obj] if not org.model.can(user, action, r)]


_counter = [0]


def new_user(org, memberships, name: str = "temp") -> tuple[str, str, str]:
    """A new user with ``memberships`` [(unit, role)]: (user id, token, username)."""
    _counter[0] += 1
    username = f"{name}{_counter[0]}"
    user = org.sec.create_user(S, {"username": username})
    for unit, role in memberships:
        org.sec.add_membership(S, user["id"], org.unit_ids[unit], role)
    token = org.sec.issue_token(S, "bypass", user_id=user["id"])
    return user["id"], token["token"], username


def new_role(org, grants, name: str = "role") -> str:
    _counter[0] += 1
    role = f"{name}{_counter[0]}"
    org.sec.create_role(S, role, role.title())
    for obj, actions, read, write in grants:
        org.sec.set_object_grant(S, role, obj, actions, read, write)
    return role


def live_note(org, obj: str, record_id: str):
    return org.runtime.records.get(S, obj, record_id)["note"]


# -- guessing ids -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "action"), [
    (GET_DEAL, "read"), (GET_DEAL_IN_BIN, "read"), (UPDATE_DEAL, "update"), (UPDATE_DEAL_VERSION, "update"),
    (DELETE_DEAL, "delete"), (RESTORE_DEAL, "restore"),
], ids=["get", "get-in-bin", "update", "update-stale-version", "delete", "restore"])
def test_invisible_ids_answer_exactly_like_random_ones(org, query, action):
    """A manager (every action, own unit) learns nothing from an id out of scope: the response is
    the one a random id gets, byte for byte apart from the id."""
    random_id = str(uuid.uuid4())
    status, reference = org.post("mgr", query, {"id": random_id})
    assert status == 200
    assert [e["extensions"]["code"] for e in reference["errors"]] == ["NOT_FOUND"]
    hidden = invisible(org, "mgr", "deal", action)
    assert len(hidden) > 20
    for rec in hidden:
        status, body = org.post("mgr", query, {"id": rec.id})
        assert status == 200
        assert blank(body, rec.id) == blank(reference, random_id), rec.name
    stored = {r["id"]: r for r in org.runtime.records.query(S, "deal", first=500, fields=["note"]).records}
    assert all(r.id in stored and stored[r.id]["note"] is None for r in hidden)


def test_invisible_records_in_the_recycle_bin_answer_like_random_ids(org):
    rec = next(r for r in invisible(org, "mgr", "deal") if r.unit.startswith("S2"))
    random_id = str(uuid.uuid4())
    org.runtime.records.delete(S, "deal", rec.id)
    try:
        for query in (GET_DEAL_IN_BIN, RESTORE_DEAL, GET_DEAL, DELETE_DEAL):
            _, reference = org.post("mgr", query, {"id": random_id})
            _, body = org.post("mgr", query, {"id": rec.id})
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            assert blank(body, rec.id) == blank(reference, random_id), query
        bin_ids = {n["id"] for n in org.data("mgr", "{ deals(inRecycleBin: true) { nodes { id } totalCount } }")["deals"]["nodes"]}
        assert rec.id not in bin_ids
    finally:
        org.runtime.records.restore(S, "deal", rec.id)


@pytest.mark.parametrize(("obj", "query"), [("deal_line", GET_LINE), ("account", GET_ACCOUNT)])
def test_invisible_children_and_accounts_answer_like_random_ids(org, obj, query):
    random_id = str(uuid.uuid4())
    _, reference = org.post("rep_a", query, {"id": random_id})
    assert reference["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for rec in invisible(org, "rep_a", obj):
        _, body = org.post("rep_a", query, {"id": rec.id})
        assert blank(body, rec.id) == blank(reference, random_id), rec.name


def test_readable_but_not_editable_records_refuse_writes_as_not_found(org):
    """rep_a reads D-S2R2D1-1 through a read share and D-S1R2D2-1 through a share with its region:
    reading is not editing, and the refusal is the same NOT_FOUND a random id gets."""
    random_id = str(uuid.uuid4())
    _, reference = org.post("rep_a", UPDATE_DEAL, {"id": random_id})
    for name in ("D-S2R2D1-1", "D-S1R2D2-1"):
        rec = org.by_name[name]
        assert org.data("rep_a", GET_DEAL, {"id": rec.id})["deal"]["name"] == name
        _, body = org.post("rep_a", UPDATE_DEAL, {"id": rec.id})
        assert blank(body, rec.id) == blank(reference, random_id)
        assert live_note(org, "deal", rec.id) is None


def test_expected_version_of_an_invisible_record_is_not_a_conflict(org):
    rec = invisible(org, "rep_a", "deal")[0]
    _, body = org.post("rep_a", UPDATE_DEAL_VERSION, {"id": rec.id})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    assert "current_version" not in json.dumps(body)


# -- nesting ----------------------------------------------------------------------------------------

def test_a_visible_deal_does_not_open_its_invisible_account(org):
    deal = next(d for d in org.model.visible("rep_a", "deal")
                if d.account and not org.model.can("rep_a", "read", org.by_name[d.account]))
    account = org.by_name[deal.account]
    data = org.data("rep_a", """query ($id: ID!) { deal(id: $id) { id accountId
      account { id name revenue deals { totalCount nodes { id } } } } }""", {"id": deal.id})
    assert data["deal"] == {"id": deal.id, "accountId": account.id, "account": None}
    listed = org.data("rep_a", "{ deals(first: 100) { nodes { id account { id } } } }")["deals"]["nodes"]
    assert {"id": deal.id, "account": None} in listed


def test_a_visible_line_does_not_open_its_invisible_deal(org):
    line = next(ln for ln in org.model.visible("rep_a", "deal_line") if not org.model.can("rep_a", "read", org.by_name[ln.deal]))
    deal = org.by_name[line.deal]
    data = org.data("rep_a", """query ($id: ID!) { dealLine(id: $id) { id dealId
      deal { id name dealLines { totalCount nodes { id } } account { id } } } }""", {"id": line.id})
    assert data["dealLine"] == {"id": line.id, "dealId": deal.id, "deal": None}


def test_children_connections_never_show_invisible_children(org):
    pairs = [(d, [ln for ln in org.records["deal_line"] if ln.deal == d.name]) for d in org.model.visible("rep_a", "deal")]
    deal, lines = next((d, ls) for d, ls in pairs if any(not org.model.can("rep_a", "read", ln) for ln in ls))
    visible = [ln.id for ln in lines if org.model.can("rep_a", "read", ln)]
    data = org.data("rep_a", """query ($id: ID!) { deal(id: $id) {
      dealLines(first: 10) { totalCount nodes { id } }
      filtered: dealLines(first: 10, filter: {name: {startsWith: "L-"}}) { totalCount nodes { id } } } }""", {"id": deal.id})
    for key in ("dealLines", "filtered"):
        assert data["deal"][key]["totalCount"] == len(visible) < len(lines)
        assert sorted(n["id"] for n in data["deal"][key]["nodes"]) == sorted(visible)


def test_filters_through_a_lookup_do_not_reach_invisible_records(org):
    model = org.model
    account = next(a for a in org.records["account"] if not model.can("rep_a", "read", a)
                   and any(d.account == a.name for d in model.visible("rep_a", "deal")))
    deals_of_account = [d.id for d in model.visible("rep_a", "deal") if d.account == account.name]
    data = org.data("rep_a", """query ($name: String!, $id: ID!) {
      byName: deals(filter: {account: {name: {eq: $name}}}) { totalCount }
      byRelatedId: deals(filter: {account: {id: {eq: $id}}}) { totalCount }
      notByName: deals(filter: {not: {account: {name: {eq: $name}}}}) { totalCount }
      byRawId: deals(filter: {accountId: {eq: $id}}) { nodes { id } totalCount }
      counted: dealAggregate(filter: {account: {name: {eq: $name}}}) { count }
    }""", {"name": account.name, "id": account.id})
    visible_total = len(model.visible("rep_a", "deal"))
    assert data["byName"]["totalCount"] == 0
    assert data["byRelatedId"]["totalCount"] == 0
    assert data["notByName"]["totalCount"] == visible_total
    assert data["counted"] == [{"count": 0}]
    assert sorted(n["id"] for n in data["byRawId"]["nodes"]) == sorted(deals_of_account)
    everything = org.data("system", 'query ($name: String!) { deals(filter: {account: {name: {eq: $name}}}) { totalCount } }',
                          {"name": account.name})
    assert everything["deals"]["totalCount"] > 0


def test_filters_through_master_detail_do_not_reach_invisible_deals(org):
    line = next(ln for ln in org.model.visible("rep_a", "deal_line") if not org.model.can("rep_a", "read", org.by_name[ln.deal]))
    deal = org.by_name[line.deal]
    data = org.data("rep_a", """query ($name: String!, $id: ID!) {
      byDeal: dealLines(filter: {deal: {name: {eq: $name}}}) { totalCount }
      byRawId: dealLines(filter: {dealId: {eq: $id}}) { nodes { id } }
    }""", {"name": deal.name, "id": deal.id})
    assert data["byDeal"]["totalCount"] == 0
    assert line.id in {n["id"] for n in data["byRawId"]["nodes"]}


# -- hidden fields ----------------------------------------------------------------------------------

HIDDEN_USES = {
    "filter": ("{ deals(filter: {margin: {gt: \"0\"}}) { totalCount } }", "filter.margin"),
    "filter-never-matching": ("{ deals(filter: {margin: {gt: \"1000000\"}}) { totalCount } }", "filter.margin"),
    "and": ("{ deals(filter: {and: [{name: {startsWith: \"D\"}}, {margin: {isNull: false}}]}) { totalCount } }", "filter.and.1.margin"),
    "or": ("{ deals(filter: {or: [{name: {eq: \"none\"}}, {margin: {lt: \"5\"}}]}) { totalCount } }", "filter.or.1.margin"),
    "not": ("{ deals(filter: {not: {margin: {isNull: true}}}) { totalCount } }", "filter.not.margin"),
    "related": ("{ deals(filter: {account: {revenue: {gt: \"0\"}}}) { totalCount } }", "filter.account.revenue"),
    "through-master": ("{ dealLines(filter: {deal: {margin: {gt: \"0\"}}}) { totalCount } }", "filter.deal.margin"),
    "aggregate-filter": ("{ dealAggregate(filter: {margin: {gt: \"0\"}}) { count } }", "filter.margin"),
    "aggregate-group": ("{ dealAggregate(groupBy: [MARGIN]) { key { margin } count } }", "groupBy.0"),
    "aggregate-measure": ("{ dealAggregate { count sum { margin } } }", "sum.margin"),
    "order": ("{ deals(orderBy: [MARGIN_DESC]) { nodes { id } } }", "orderBy.0"),
    "children-filter": ("{ accounts { nodes { deals(filter: {margin: {gt: \"0\"}}) { totalCount } } } }", "deals.filter.margin"),
    "children-order": ("{ accounts { nodes { deals(orderBy: [MARGIN_ASC]) { totalCount } } } }", "deals.orderBy.0"),
}


@pytest.mark.parametrize("use", list(HIDDEN_USES))
def test_hidden_fields_cannot_be_used_to_filter_sort_group_or_count(org, use):
    """rep_a may not read ``deal.margin`` nor ``account.revenue``: any use is FORBIDDEN, the
    response carries no data at all (no count to learn from), and a matching and a never matching
    condition are refused alike."""
    query, field = HIDDEN_USES[use]
    status, body = org.post("rep_a", query)
    assert status == 200, body
    assert body["data"] is None, body
    assert len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    problems = [(e["code"], e["field"]) for e in error["extensions"]["errors"]]
    assert len(problems) == 1 and problems[0][0] == "FORBIDDEN", body
    assert problems[0][1] == field or problems[0][1].endswith("." + field), body
    status, allowed = org.post("mgr", query)
    assert status == 200 and "errors" not in allowed, allowed


def test_counts_only_count_visible_records(org):
    model = org.model
    for user in ("rep_a", "mgr", "dir"):
        data = org.data(user, """{ deals { totalCount } accounts { totalCount } dealLines(first: 200) { totalCount }
          d: dealAggregate { count } a: accountAggregate { count } l: dealLineAggregate { count }
          byAccount: dealAggregate(groupBy: [ACCOUNT]) { count } }""")
        deals, accounts, lines = (len(model.visible(user, o)) for o in ("deal", "account", "deal_line"))
        assert (data["deals"]["totalCount"], data["accounts"]["totalCount"], data["dealLines"]["totalCount"]) == (deals, accounts, lines)
        assert (data["d"], data["a"], data["l"]) == ([{"count": deals}], [{"count": accounts}], [{"count": lines}])
        assert sum(g["count"] for g in data["byAccount"]) == deals
        assert deals < len(org.records["deal"])


# -- bulk writes ------------------------------------------------------------------------------------

UPDATE_DEALS = "mutation ($items: [DealUpdateItem!]!) { updateDeals(items: $items) { id note } }"


def test_bulk_update_mixing_visible_and_invisible_records_changes_nothing(org):
    own = [r for r in org.records["deal"] if org.model.can("rep_a", "update", r)]
    hidden = invisible(org, "rep_a", "deal")[0]
    read_only = org.by_name["D-S2R2D1-1"]
    random_id = str(uuid.uuid4())
    items = [{"id": own[0].id, "input": {"note": "bulk"}}, {"id": hidden.id, "input": {"note": "bulk"}},
             {"id": own[1].id, "input": {"note": "bulk"}}, {"id": read_only.id, "input": {"note": "bulk"}},
             {"id": random_id, "input": {"note": "bulk"}}]
    status, body = org.post("rep_a", UPDATE_DEALS, {"items": items})
    assert status == 200
    assert body["data"] is None
    (error,) = body["errors"]
    assert (error["path"], error["extensions"]["code"]) == (["updateDeals"], "VALIDATION_FAILED")
    problems = error["extensions"]["errors"]
    assert [(p["code"], p["field"]) for p in problems] == [("NOT_FOUND", "items.1"), ("NOT_FOUND", "items.3"), ("NOT_FOUND", "items.4")]
    assert problems[0]["message"].replace(hidden.id, "<id>") == problems[2]["message"].replace(random_id, "<id>")
    for rec in (own[0], own[1], hidden, read_only):
        assert live_note(org, "deal", rec.id) is None
    status, body = org.post("rep_a", UPDATE_DEALS, {"items": [items[0], items[2]]})
    assert status == 200 and "errors" not in body, body
    assert [d["note"] for d in body["data"]["updateDeals"]] == ["bulk", "bulk"]
    for rec in own[:2]:
        org.runtime.records.update(S, "deal", rec.id, {"note": None})


CREATE_DEALS = "mutation ($inputs: [DealCreateInput!]!) { createDeals(inputs: $inputs) { id } }"


def test_bulk_create_with_one_owner_outside_the_scope_writes_nothing(org):
    inputs = [{"name": "bulk-1"}, {"name": "bulk-2"}, {"name": "bulk-3", "ownerId": org.user_ids["staff"]}]
    status, body = org.post("rep_a", CREATE_DEALS, {"inputs": inputs})
    assert status == 200
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert [(p["code"], p["field"]) for p in error["extensions"]["errors"]] == [("FORBIDDEN", "inputs.2.ownerId")]
    assert org.runtime.records.query(S, "deal", filter={"name": {"starts_with": "bulk-"}}).records == []


def test_bulk_create_with_one_unit_outside_the_scope_writes_nothing(org):
    staff = org.user_ids["staff"]
    inputs = [{"name": "unit-1", "ownerId": staff}, {"name": "unit-2", "ownerId": staff, "orgUnitId": org.unit_ids["S1R1D1"]},
              {"name": "unit-3", "ownerId": staff, "orgUnitId": org.unit_ids["S2R2D2"]}]
    status, body = org.post("mgr", CREATE_DEALS, {"inputs": inputs})
    assert status == 200, body
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert [p["field"].split(".")[:2] for p in error["extensions"]["errors"]] == [["inputs", "2"]]
    assert org.runtime.records.query(S, "deal", filter={"name": {"starts_with": "unit-"}}).records == []


def test_references_to_invisible_records_look_like_references_to_missing_ones(org):
    own = next(r for r in org.records["deal"] if r.owner == "rep_a")
    account = next(a for a in org.records["account"] if not org.model.can("rep_a", "read", a))
    deal = invisible(org, "rep_a", "deal")[0]
    random_id = str(uuid.uuid4())
    cases = [
        ("mutation ($ref: ID!) { createDeal(input: {name: \"ref\", accountId: $ref}) { id } }", account.id),
        ("mutation ($ref: ID!) { updateDeal(id: \"%s\", input: {accountId: $ref}) { id } }" % own.id, account.id),
        ("mutation ($ref: ID!) { createDealLine(input: {name: \"ref\", dealId: $ref}) { id } }", deal.id),
    ]
    for query, ref in cases:
        _, reference = org.post("rep_a", query, {"ref": random_id})
        problems = reference["errors"][0]["extensions"]["errors"]
        assert [p["code"] for p in problems] == ["INVALID_REFERENCE"], reference
        _, body = org.post("rep_a", query, {"ref": ref})
        assert blank(body, ref) == blank(reference, random_id), query
    assert org.runtime.records.get(S, "deal", own.id)["account"] == org.ids_of(own.account)
    assert org.runtime.records.query(S, "deal", filter={"name": {"eq": "ref"}}).records == []


def refused_write(status: int, body: dict, argument: str, field: str) -> None:
    """A write of a field the caller may never write: either the input type does not offer it
    (400 BAD_QUERY naming the field) or the service refuses it (FORBIDDEN at ``argument.field``)."""
    if status == 400:
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_QUERY"], body
        assert field in body["errors"][0]["message"], body
        assert "data" not in body
        return
    assert status == 200, body
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    assert [(p["code"], p["field"]) for p in body["errors"][0]["extensions"]["errors"]] == [("FORBIDDEN", f"{argument}.{field}")]


def test_ownership_cannot_be_changed_by_an_update(org):
    own = next(r for r in org.records["deal"] if r.owner == "mgr")
    staff = org.user_ids["staff"]
    status, body = org.post("mgr", "mutation ($id: ID!, $input: DealUpdateInput!) { updateDeal(id: $id, input: $input) { id } }",
                            {"id": own.id, "input": {"ownerId": staff}})
    refused_write(status, body, "input", "ownerId")
    status, body = org.post("mgr", "mutation ($id: ID!, $input: DealUpdateInput!) { updateDeal(id: $id, input: $input) { id } }",
                            {"id": own.id, "input": {"orgUnitId": org.unit_ids["S1R1D2"]}})
    refused_write(status, body, "input", "orgUnitId")
    stored = org.runtime.records.get(S, "deal", own.id)
    assert (stored["owner_id"], stored["org_unit_id"]) == (org.user_ids["mgr"], org.unit_ids[own.unit])


# -- transfers --------------------------------------------------------------------------------------

def test_transfer_of_an_invisible_record_is_not_found(org):
    random_id = str(uuid.uuid4())
    staff = org.user_ids["staff"]
    _, reference = org.post("mgr", TRANSFER_DEAL, {"id": random_id, "owner": staff})
    assert [e["extensions"]["code"] for e in reference["errors"]] == ["NOT_FOUND"], reference
    outside = invisible(org, "mgr", "deal", "transfer")
    shared = org.by_name["D-S2R1D2-1"]  # shared with mgr for editing: a share never widens transfers
    assert shared in outside and org.model.can("mgr", "update", shared)
    for rec in outside:
        _, body = org.post("mgr", TRANSFER_DEAL, {"id": rec.id, "owner": staff})
        assert blank(body, rec.id) == blank(reference, random_id), rec.name
        assert org.runtime.records.get(S, "deal", rec.id)["owner_id"] == org.user_ids[rec.owner]


def test_transfer_needs_the_transfer_action(org):
    own = next(r for r in org.records["deal"] if r.owner == "rep_a")
    status, body = org.post("rep_a", TRANSFER_DEAL, {"id": own.id, "owner": org.user_ids["staff"]})
    assert status == 200
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    assert org.runtime.records.get(S, "deal", own.id)["owner_id"] == org.user_ids["rep_a"]


def test_transfer_within_scope_moves_the_record_out_of_sight(org):
    rec = org.by_name["D-S1R1D1-1"]
    status, body = org.post("mgr", TRANSFER_DEAL, {"id": rec.id, "owner": org.user_ids["rep_b"]})
    try:
        assert status == 200 and "errors" not in body, body
        assert body["data"]["transferDeal"] == {"id": rec.id, "ownerId": org.user_ids["rep_b"]}
        stored = org.runtime.records.get(S, "deal", rec.id)
        assert stored["org_unit_id"] == org.unit_ids["S1R1D2"]  # rep_b's first membership
        _, gone = org.post("mgr", GET_DEAL, {"id": rec.id})
        assert [e["extensions"]["code"] for e in gone["errors"]] == ["NOT_FOUND"]
        assert org.data("rep_b", GET_DEAL, {"id": rec.id})["deal"]["name"] == rec.name
    finally:
        org.runtime.records.transfer(S, "deal", rec.id, org.user_ids[rec.owner], org_unit_id=org.unit_ids[rec.unit])


# -- tokens -----------------------------------------------------------------------------------------

def assert_unauthenticated(org, token: str | None):
    status, body = org.client.post("{ deals { totalCount } }", token=token)
    assert status == 401, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    assert "data" not in body


def test_missing_or_unknown_tokens_are_refused(org):
    assert_unauthenticated(org, None)
    assert_unauthenticated(org, "lct_" + "x" * 40)
    assert_unauthenticated(org, SERVICE_TOKEN + "x")


def test_a_revoked_token_is_refused(org):
    user_id = org.user_ids["rep_a"]
    issued = org.sec.issue_token(S, "to revoke", user_id=user_id)
    kept = org.sec.issue_token(S, "to keep", user_id=user_id)
    assert org.client.data("{ deals { totalCount } }", token=issued["token"])["deals"]["totalCount"] > 0
    org.sec.revoke_token(S, issued["id"])
    assert_unauthenticated(org, issued["token"])
    assert org.client.data("{ deals { totalCount } }", token=kept["token"])["deals"]["totalCount"] > 0


def test_an_expired_token_is_refused(org):
    expires = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    issued = org.sec.issue_token(S, "short", expires_at=expires, user_id=org.user_ids["rep_a"])
    assert org.client.data("{ deals { totalCount } }", token=issued["token"])["deals"]["totalCount"] > 0
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.3)
    assert_unauthenticated(org, issued["token"])


def test_the_tokens_of_a_deleted_user_are_refused(org):
    user_id, token, _ = new_user(org, [("S1R1D1", "manager")], "leaver")
    second = org.sec.issue_token(S, "second", user_id=user_id)["token"]
    assert org.client.data("{ deals { totalCount } }", token=token)["deals"]["totalCount"] > 0
    org.sec.delete_user(S, user_id)
    assert_unauthenticated(org, token)
    assert_unauthenticated(org, second)


def test_a_removed_membership_loses_its_access_on_the_next_request(org):
    memberships = [("S1R1D1", "manager"), ("S2R2D2", "manager")]
    user_id, token, _ = new_user(org, memberships, "mover")
    query = "{ deals(first: 100) { nodes { id } } }"

    def expected(held):
        return {r.id for r in Model(org.records, {**USERS, "mover": held}).visible("mover", "deal")}

    before = expected(memberships)
    assert {n["id"] for n in org.client.data(query, token=token)["deals"]["nodes"]} == before
    org.sec.remove_membership(S, user_id, org.unit_ids["S2R2D2"], "manager")
    after = expected(memberships[:1])
    assert after < before
    assert {n["id"] for n in org.client.data(query, token=token)["deals"]["nodes"]} == after
    far = org.by_name["D-S2R2D2-1"]
    status, body = org.client.post(UPDATE_DEAL, {"id": far.id}, token=token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    org.sec.remove_membership(S, user_id, org.unit_ids["S1R1D1"], "manager")
    status, body = org.client.post(query, token=token)
    assert status == 200
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


def test_a_user_without_memberships_reads_only_the_directory(org):
    _, token, username = new_user(org, [], "nobody")
    for query in ("{ deals { totalCount } }", "{ dealAggregate { count } }",
                  'query { deal(id: "%s") { id } }' % org.records["deal"][0].id):
        status, body = org.client.post(query, token=token)
        assert status == 200
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], query
    data = org.client.data("{ orgUnits { totalCount } users(first: 100) { nodes { username } } }", token=token)
    assert data["orgUnits"]["totalCount"] == len(org.unit_ids)
    assert username in {n["username"] for n in data["users"]["nodes"]}


# -- the org tree and metadata --------------------------------------------------------------------

UPDATE_UNIT = "mutation ($id: ID!, $input: OrgUnitUpdateInput!) { updateOrgUnit(id: $id, input: $input) { id name path parentId } }"
UPDATE_UNITS = "mutation ($items: [OrgUnitUpdateItem!]!) { updateOrgUnits(items: $items) { id } }"


def test_the_path_and_parent_of_an_org_unit_cannot_be_written(org):
    editor = new_role(org, [("org_unit", ["read", "update"], "all", "all")], "unit_editor")
    _, token, _ = new_user(org, [("G", editor)], "tree")
    _, admin_token, _ = new_user(org, [("G", "administrator")], "admin")
    unit_id = org.unit_ids["S1R1D1"]
    before = org.runtime.records.get(S, "org_unit", unit_id)
    for who in (token, admin_token):
        for key, value in (("path", "/" + org.unit_ids["S2"] + "/"), ("parentId", org.unit_ids["S2R2"])):
            status, body = org.client.post(UPDATE_UNIT, {"id": unit_id, "input": {key: value}}, token=who)
            refused_write(status, body, "input", key)
            status, body = org.client.post(UPDATE_UNITS, {"items": [
                {"id": unit_id, "input": {"name": "renamed"}}, {"id": unit_id, "input": {key: value}}]}, token=who)
            assert body.get("data") is None, body
            assert {e["extensions"]["code"] for e in body["errors"]} <= {"BAD_QUERY", "FORBIDDEN", "VALIDATION_FAILED"}, body
    status, body = org.client.post("mutation ($id: ID!, $parent: ID) { moveOrgUnit(id: $id, parentId: $parent) { id } }",
                                   {"id": unit_id, "parent": org.unit_ids["S2R2"]}, token=token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    after = org.runtime.records.get(S, "org_unit", unit_id)
    assert (after["path"], after["parent"], after["name"]) == (before["path"], before["parent"], before["name"])
    renamed = org.client.data(UPDATE_UNIT, {"id": unit_id, "input": {"name": "S1R1D1 renamed"}}, token=token)["updateOrgUnit"]
    assert (renamed["name"], renamed["path"], renamed["parentId"]) == ("S1R1D1 renamed", before["path"], before["parent"])
    org.runtime.records.update(S, "org_unit", unit_id, {"name": before["name"]})
    _, rep_body = org.post("rep_a", UPDATE_UNIT, {"id": unit_id, "input": {"name": "by a rep"}})
    assert [e["extensions"]["code"] for e in rep_body["errors"]] == ["FORBIDDEN"]
    assert org.runtime.records.get(S, "org_unit", unit_id)["name"] == before["name"]
    assert {n["id"] for n in org.data("rep_a", "{ deals { nodes { id } } }")["deals"]["nodes"]} == \
        {r.id for r in org.model.visible("rep_a", "deal")}


def test_users_and_units_are_not_created_or_deleted_as_plain_records(org):
    """A role granting every action on every object (``*``) is still no administrator: users and
    org units are created, moved and deleted only through the admin API, which refuses it."""
    everything = new_role(org, [("*", ["read", "create", "update", "delete", "restore", "transfer"], "all", "all")], "almighty")
    _, token, _ = new_user(org, [("G", everything)], "almighty")
    data = org.client.data("{ __schema { mutationType { fields { name } } } }", token=token)
    names = {f["name"] for f in data["__schema"]["mutationType"]["fields"]}
    assert {"updateOrgUnit", "updateUser", "createDeal", "transferDeal"} <= names
    assert not {"createOrgUnits", "restoreOrgUnit", "transferOrgUnit", "createUsers", "restoreUser", "transferUser"} & names
    users_before = org.runtime.records.query(S, "user", first=500, total=True).total_count
    for mutation, variables in (
        ("mutation { createOrgUnit(input: {name: \"rogue\"}) { id } }", None),
        ("mutation ($id: ID!) { deleteOrgUnit(id: $id) }", {"id": org.unit_ids["S2R2D2"]}),
        ("mutation ($id: ID!) { moveOrgUnit(id: $id) { id } }", {"id": org.unit_ids["S2R2D2"]}),
        ("mutation { createUser(input: {username: \"rogue\"}) { id } }", None),
        ("mutation ($id: ID!) { deleteUser(id: $id) }", {"id": org.user_ids["staff"]}),
    ):
        status, body = org.client.post(mutation, variables, token=token)
        assert status == 200, body
        assert body["data"] is None, body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], (mutation, body)
    assert org.runtime.records.query(S, "user", first=500, total=True).total_count == users_before
    unit = org.runtime.records.get(S, "org_unit", org.unit_ids["S2R2D2"])
    assert (unit["deleted_at"], unit["parent"]) == (None, org.unit_ids["S2R2"])
    assert org.runtime.records.get(S, "user", org.user_ids["staff"])["deleted_at"] is None


ESCALATIONS = {
    "add-membership": "mutation ($me: ID!, $unit: ID!) { addMembership(userId: $me, unitId: $unit, role: \"administrator\") { role } }",
    "set-object-permission": "mutation { setObjectPermission(role: \"rep\", object: \"deal\", actions: [READ, UPDATE, DELETE], "
                              "readScope: ALL, writeScope: ALL) { name } }",
    "set-field-permission": "mutation { setFieldPermission(role: \"rep\", object: \"deal\", field: \"margin\", access: EDIT) { name } }",
    "create-role": "mutation { createRole(input: {name: \"rogue\", label: \"Rogue\", administrator: true}) { name } }",
    "update-role": "mutation { updateRole(name: \"rep\", input: {administrator: true}) { name } }",
    "delete-role": "mutation { deleteRole(name: \"auditor\") }",
    "remove-membership": "mutation ($mgr: ID!, $unit: ID!) { removeMembership(userId: $mgr, unitId: $unit, role: \"manager\") }",
    "token-for-another": "mutation ($mgr: ID!) { createApiToken(name: \"steal\", userId: $mgr) { token } }",
    "password-of-another": "mutation ($mgr: ID!) { setPassword(userId: $mgr, password: \"a long password 123\") }",
    "roles": "{ roles { name } }",
    "audit": "{ securityAudit { id } }",
    "tokens-of-another": "query ($mgr: ID!) { apiTokens(userId: $mgr) { id } }",
    "memberships-of-another": "query ($mgr: ID!) { memberships(userId: $mgr) { role } }",
}


@pytest.mark.parametrize("attempt", list(ESCALATIONS))
def test_a_user_cannot_raise_their_own_rights_through_the_admin_api(org, attempt):
    query = ESCALATIONS[attempt]
    known = {"me": org.user_ids["rep_a"], "mgr": org.user_ids["mgr"], "unit": org.unit_ids["S1R1D1"]}
    variables = {k: v for k, v in known.items() if f"${k}" in query}
    roles_before = org.sec.roles(S)
    memberships_before = org.sec.memberships(S)
    tokens_before = org.sec.tokens(S, org.user_ids["mgr"])
    status, body = org.post("rep_a", query, variables or None)
    assert status == 200, body
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    assert org.sec.roles(S) == roles_before
    assert org.sec.memberships(S) == memberships_before
    assert org.sec.tokens(S, org.user_ids["mgr"]) == tokens_before
    assert {n["id"] for n in org.data("rep_a", "{ deals { nodes { id } } }")["deals"]["nodes"]} == \
        {r.id for r in org.model.visible("rep_a", "deal")}


SHARE = """mutation ($id: ID!, $grantee: ID!) {
  shareRecord(object: "deal", recordId: $id, granteeId: $grantee, access: EDIT) { granteeId access } }"""
TEAM_ADD = """mutation ($id: ID!, $grantee: ID!) {
  addTeamMember(object: "deal", recordId: $id, userId: $grantee, access: EDIT) { userId } }"""
SHARING = "query ($id: ID!) { recordSharing(object: \"deal\", recordId: $id) { shares { granteeId } team { userId } } }"


@pytest.mark.parametrize("query", [SHARE, TEAM_ADD], ids=["share", "team"])
def test_records_out_of_the_edit_scope_cannot_be_shared(org, query):
    """Sharing takes the right to edit: records out of scope (and those only read through a share)
    answer NOT_FOUND like a random id, and nobody gains access."""
    random_id = str(uuid.uuid4())
    me = org.user_ids["rep_a"]
    _, reference = org.post("rep_a", query, {"id": random_id, "grantee": me})
    assert [e["extensions"]["code"] for e in reference["errors"]] == ["NOT_FOUND"], reference
    targets = [*invisible(org, "rep_a", "deal")[:5], org.by_name["D-S2R2D1-1"]]
    for rec in targets:
        _, body = org.post("rep_a", query, {"id": rec.id, "grantee": me})
        assert blank(body, rec.id) == blank(reference, random_id), rec.name
        _, seen = org.post("rep_a", SHARING, {"id": rec.id})
        assert [e["extensions"]["code"] for e in seen.get("errors", [])] == ([] if org.model.can("rep_a", "read", rec) else ["NOT_FOUND"])
    assert {n["id"] for n in org.data("rep_a", "{ deals { nodes { id } } }")["deals"]["nodes"]} == \
        {r.id for r in org.model.visible("rep_a", "deal")}


def test_sharing_an_editable_record_reaches_the_grantee(org):
    own = org.by_name["D-X-rep_a"]
    rep_b = org.user_ids["rep_b"]
    _, before = org.post("rep_b", GET_DEAL, {"id": own.id})
    assert [e["extensions"]["code"] for e in before["errors"]] == ["NOT_FOUND"]
    shared = org.data("rep_a", SHARE.replace("EDIT", "READ"), {"id": own.id, "grantee": rep_b})["shareRecord"]
    try:
        assert shared == {"granteeId": rep_b, "access": "READ"}
        assert org.data("rep_b", GET_DEAL, {"id": own.id})["deal"]["name"] == own.name
        _, write = org.post("rep_b", UPDATE_DEAL, {"id": own.id})
        assert [e["extensions"]["code"] for e in write["errors"]] == ["NOT_FOUND"]
        _, reshare = org.post("rep_b", SHARE, {"id": own.id, "grantee": org.user_ids["mgr"]})
        assert [e["extensions"]["code"] for e in reshare["errors"]] == ["NOT_FOUND"]
    finally:
        org.sec.unshare_record(S, "deal", own.id, rep_b)
    _, after = org.post("rep_b", GET_DEAL, {"id": own.id})
    assert [e["extensions"]["code"] for e in after["errors"]] == ["NOT_FOUND"]


METADATA_MUTATIONS = [
    ("mutation { createObject(input: {apiName: \"rogue\", label: \"Rogue\"}) { apiName } }", None),
    ("mutation { createField(object: \"deal\", input: {apiName: \"rogue\", label: \"Rogue\", type: TEXT}) { apiName } }", None),
    ("mutation { updateField(object: \"deal\", apiName: \"margin\", input: {label: \"Rogue\"}) { apiName } }", None),
    ("mutation { updateObject(apiName: \"deal\", input: {label: \"Rogue\"}) { apiName } }", None),
    ("mutation { deleteField(object: \"deal\", apiName: \"margin\") }", None),
    ("mutation { deleteObject(apiName: \"deal_line\") }", None),
]


@pytest.mark.parametrize("user", ["rep_a", "auditor", "head"])
def test_metadata_mutations_need_an_administrator(org, user):
    shape = "{ metadataVersion objects { apiName label fields { apiName label } } }"
    before = org.data("system", shape)
    for mutation, variables in METADATA_MUTATIONS:
        status, body = org.post(user, mutation, variables)
        assert status == 200, body
        assert body["data"] is None, body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], mutation
    assert org.data("system", shape) == before
    assert "rogue" not in {o.api_name for o in org.runtime.catalog().objects.values()}


def test_an_administrator_may_change_metadata(org):
    _, token, _ = new_user(org, [("G", "administrator")], "metadmin")
    created = org.client.data("mutation { createObject(input: {apiName: \"memo\", label: \"Memo\"}) { apiName } }", token=token)
    assert created == {"createObject": {"apiName": "memo"}}
    assert org.client.data("mutation { deleteObject(apiName: \"memo\") }", token=token) == {"deleteObject": "memo"}


# -- more ways around -------------------------------------------------------------------------------

def test_a_restore_reported_as_failed_leaves_the_record_in_the_recycle_bin(org):
    """A role may restore within its unit but read only its own records. Whatever the answer to
    restoring a unit record is, it must match what happened: a success restored it, an error left
    it in the recycle bin (never an error while the record is back)."""
    role = new_role(org, [("deal", ["read", "restore"], "own", "unit")], "restorer")
    _, token, _ = new_user(org, [("S1R1D1", role)], "restorer")
    rec = org.by_name["D-S1R1D1-3"]
    org.runtime.records.delete(S, "deal", rec.id)
    try:
        status, body = org.client.post(RESTORE_DEAL, {"id": rec.id}, token=token)
        assert status == 200
        restored = org.runtime.records.get(S, "deal", rec.id, deleted=False) if not body.get("errors") else None
        in_bin = org.runtime.records.query(S, "deal", filter={"id": {"eq": rec.id}}, deleted=True).records
        if body.get("errors"):
            assert in_bin != [], ("the restore was reported as failed but the record is back", body)
        else:
            assert restored["deleted_at"] is None and in_bin == []
    finally:
        if org.runtime.records.query(S, "deal", filter={"id": {"eq": rec.id}}, deleted=True).records:
            org.runtime.records.restore(S, "deal", rec.id)


def test_hidden_lookups_and_master_detail_links_open_nothing(org):
    """A role hiding ``deal.account`` and ``deal_line.deal``: the raw ids and relations read as null
    with FORBIDDEN errors, the related lists they link are FORBIDDEN, and filters, sorts and
    groupings through them are refused."""
    role = new_role(org, [(o, ["read"], "all", "all") for o in ("account", "deal", "deal_line")], "blind")
    org.sec.set_field_grant(S, role, "deal", "account", "hidden")
    org.sec.set_field_grant(S, role, "deal_line", "deal", "hidden")
    _, token, _ = new_user(org, [("G", role)], "blind")
    status, body = org.client.post("{ deals(first: 2) { nodes { id accountId account { id } dealLines { totalCount } } } }", token=token)
    assert status == 200
    assert [n.keys() - {"id"} for n in body["data"]["deals"]["nodes"]] == [{"accountId", "account", "dealLines"}] * 2
    assert all(n["accountId"] is None and n["account"] is None and n["dealLines"] is None for n in body["data"]["deals"]["nodes"])
    assert sorted((e["path"][2], e["path"][3], e["extensions"]["code"]) for e in body["errors"]) == sorted(
        (i, key, "FORBIDDEN") for i in (0, 1) for key in ("accountId", "account", "dealLines"))
    status, body = org.client.post("{ accounts(first: 2) { nodes { id deals { totalCount } } } }", token=token)
    assert [n["deals"] for n in body["data"]["accounts"]["nodes"]] == [None, None]
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN", "FORBIDDEN"]
    account = org.records["account"][0]
    for query in ('{ deals(filter: {accountId: {eq: "%s"}}) { totalCount } }' % account.id,
                  '{ deals(filter: {account: {name: {eq: "%s"}}}) { totalCount } }' % account.name,
                  "{ deals(orderBy: [ACCOUNT_ASC]) { totalCount } }", "{ dealAggregate(groupBy: [ACCOUNT]) { count } }",
                  '{ dealLines(filter: {deal: {name: {eq: "D-G-1"}}}) { totalCount } }',
                  "{ dealLines(filter: {dealId: {isNull: false}}) { totalCount } }",
                  "{ dealLineAggregate(groupBy: [DEAL]) { count } }"):
        status, body = org.client.post(query, token=token)
        assert status == 200
        assert body["data"] is None, (query, body)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], (query, body)


def test_hidden_fields_of_a_mutation_result_read_as_null_but_the_write_happens(org):
    own = org.by_name["D-X-rep_a"]
    status, body = org.post("rep_a", "mutation ($id: ID!) { updateDeal(id: $id, input: {note: \"seen\"}) { id note margin amount } }",
                            {"id": own.id})
    try:
        assert status == 200
        assert body["data"]["updateDeal"] == {"id": own.id, "note": "seen", "margin": None, "amount": str(own.amount)}
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["updateDeal", "margin"], "FORBIDDEN")]
        assert live_note(org, "deal", own.id) == "seen"
    finally:
        org.runtime.records.update(S, "deal", own.id, {"note": None})


def test_moving_a_unit_moves_the_visibility_of_its_records_on_the_next_request(org):
    moved = "S1R1D1"
    query = "{ deals(first: 100) { nodes { id } } }"

    def seen(user):
        return {n["id"] for n in org.data(user, query)["deals"]["nodes"]}

    director_before, head_before = seen("dir"), seen("head")
    assert director_before == {r.id for r in org.model.visible("dir", "deal")}
    in_unit = {r.id for r in org.records["deal"] if r.unit == moved}
    assert in_unit <= director_before and in_unit - head_before
    org.sec.move_unit(S, org.unit_ids[moved], org.unit_ids["S2R2"])
    try:
        assert seen("dir") == director_before - in_unit
        assert seen("head") == head_before | in_unit
        _, body = org.post("dir", UPDATE_DEAL, {"id": org.by_name["D-S1R1-1"].id})
        assert "errors" not in body, body
    finally:
        org.sec.move_unit(S, org.unit_ids[moved], org.unit_ids["S1R1"])
        org.runtime.records.update(S, "deal", org.by_name["D-S1R1-1"].id, {"note": None})
    assert seen("dir") == director_before and seen("head") == head_before


def test_policy_changes_reach_another_process_on_its_next_request(org):
    """A second server process on the same database (no Redis): memberships and field grants
    changed through the first apply to the second's very next request."""
    role = new_role(org, [("deal", ["read"], "unit", "unit")], "watcher")
    user_id, token, _ = new_user(org, [("S1R1D1", role)], "watcher")
    other = Client(org.client.url)
    try:
        query = 'query ($id: ID!) { deal(id: $id) { id margin } }'
        rec = org.by_name["D-S1R1D1-1"]
        found = other.data(query, {"id": rec.id}, token=token)["deal"]
        assert (found["id"], Decimal(found["margin"])) == (rec.id, rec.margin)
        org.sec.set_field_grant(S, role, "deal", "margin", "hidden")
        status, body = other.post(query, {"id": rec.id}, token=token)
        assert body["data"]["deal"] == {"id": rec.id, "margin": None}
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["deal", "margin"], "FORBIDDEN")]
        org.sec.remove_membership(S, user_id, org.unit_ids["S1R1D1"], role)
        status, body = other.post(query, {"id": rec.id}, token=token)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
        org.sec.delete_user(S, user_id)
        status, body = other.post(query, {"id": rec.id}, token=token)
        assert status == 401
    finally:
        other.close()


def test_users_without_a_grant_cannot_edit_the_directory(org):
    for mutation, variables in (
        ("mutation ($id: ID!) { updateUser(id: $id, input: {active: false}) { id } }", {"id": org.user_ids["mgr"]}),
        ("mutation ($id: ID!) { updateUser(id: $id, input: {fullName: \"x\"}) { id } }", {"id": org.user_ids["rep_a"]}),
    ):
        status, body = org.post("rep_a", mutation, variables)
        assert status == 200
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    assert org.runtime.records.get(S, "user", org.user_ids["mgr"])["active"] is True
    assert org.client.post("{ deals { totalCount } }", token=org.tokens["mgr"])[0] == 200
