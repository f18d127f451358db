"""The permission matrix, end to end over HTTP with each user's token, on SQLite and PostgreSQL.

A four-level org (group, subsidiaries, regions, departments), six roles (sales rep, sales manager,
regional director, subsidiary head, group executive, read-only auditor through an object ``*``
grant), users holding several memberships, records spread over every unit with various owners,
record shares (user, unit subtree, read and edit) and team members; see ``security_org``. For each
user the expected rows and fields come from :class:`security_org.Model`, the cheat sheet's rules in
plain Python, and every GraphQL way of reaching records is checked against it: get by id, paged
lists with totals, aggregates, filters through lookups, to-one relations, children connections,
updates, deletes, restores, transfers, creates, and hidden or read-only fields.
"""
from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from security_org import (
    MATRIX_USERS,
    SYSTEM_ACTOR,
    Model,
    plan_records,
    without_id,
)

GET = {"account": "account", "deal": "deal", "deal_line": "dealLine"}
LIST = {"account": "accounts", "deal": "deals", "deal_line": "dealLines"}
TYPE = {"account": "Account", "deal": "Deal", "deal_line": "DealLine"}
GRAPHQL_FIELD = {"amount": "amount", "margin": "margin", "cost_center": "costCenter", "revenue": "revenue"}

users = pytest.mark.parametrize("user", MATRIX_USERS)


def ids(records) -> set[str]:
    return {r.id for r in records}


def single_outcome(status: int, body: dict, root: str) -> str:
    """``ok`` or the code of the one error a single-mutation request met at its root field."""
    assert status == 200, body
    errors = body.get("errors") or []
    if not errors:
        assert body["data"][root] is not None, body
        return "ok"
    assert len(errors) == 1 and errors[0]["path"] == [root], body
    return errors[0]["extensions"]["code"]


# -- reading --------------------------------------------------------------------------------------

@users
@pytest.mark.parametrize("obj", ["account", "deal", "deal_line"])
def test_get_by_id_returns_visible_records_and_not_found_for_the_rest(org, user, obj):
    records = org.records[obj]
    visible = [r for r in records if org.model.can(user, "read", r)]
    hidden = [r for r in records if not org.model.can(user, "read", r)]
    assert visible
    data = org.data(user, "{ %s }" % "\n".join(f'r{i}: {GET[obj]}(id: "{r.id}") {{ id name }}' for i, r in enumerate(visible)))
    assert [data[f"r{i}"] for i in range(len(visible))] == [{"id": r.id, "name": r.name} for r in visible]

    missing = str(uuid.uuid4())
    parts = [f'r{i}: {GET[obj]}(id: "{r.id}") {{ id name }}' for i, r in enumerate(hidden)]
    parts.append(f'missing: {GET[obj]}(id: "{missing}") {{ id name }}')
    status, body = org.post(user, "{ %s }" % "\n".join(parts))
    assert status == 200, body
    assert set(body["data"].values()) == {None}
    errors = {e["path"][0]: e for e in body["errors"]}
    assert set(errors) == {"missing", *(f"r{i}" for i in range(len(hidden)))}
    reference = without_id(errors["missing"], missing)
    assert reference["extensions"]["code"] == "NOT_FOUND"
    for i, rec in enumerate(hidden):
        assert without_id(errors[f"r{i}"], rec.id) == reference, rec.name


@users
@pytest.mark.parametrize("obj", ["account", "deal", "deal_line"])
def test_list_pages_through_exactly_the_visible_records(org, user, obj):
    expected = ids(org.model.visible(user, obj))
    query = """query ($after: String) { %s(first: 4, after: $after) {
      nodes { id } totalCount pageInfo { hasNextPage endCursor } } }""" % LIST[obj]
    seen, after, pages = [], None, 0
    while True:
        page = org.data(user, query, {"after": after})[LIST[obj]]
        pages += 1
        assert page["totalCount"] == len(expected)
        assert len(page["nodes"]) <= 4
        seen.extend(n["id"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert pages < 50
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    assert pages == max(1, -(-len(expected) // 4))


@users
def test_list_order_and_pages_follow_only_visible_deals(org, user):
    expected = [r.id for r in sorted(org.model.visible(user, "deal"), key=lambda r: r.amount, reverse=True)]
    query = """query ($after: String) { deals(first: 3, after: $after, orderBy: [AMOUNT_DESC]) {
      nodes { id amount } pageInfo { hasNextPage endCursor } } }"""
    seen, after = [], None
    while True:
        page = org.data(user, query, {"after": after})["deals"]
        seen.extend(n["id"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected


@users
def test_aggregates_count_and_sum_only_visible_deals(org, user):
    visible = org.model.visible(user, "deal")
    unit_names = {v: k for k, v in org.unit_ids.items()}
    user_names = {v: k for k, v in org.user_ids.items()}
    data = org.data(user, """{
      total: dealAggregate { count sum { amount } }
      byUnit: dealAggregate(groupBy: [ORG_UNIT_ID]) { key { orgUnitId } count sum { amount } }
      byOwner: dealAggregate(groupBy: [OWNER_ID]) { key { ownerId } count sum { amount } }
      accounts: accountAggregate { count }
      lines: dealLineAggregate(groupBy: [DEAL]) { key { dealId } count }
    }""")
    assert [(g["count"], Decimal(g["sum"]["amount"])) for g in data["total"]] == [(len(visible), sum(r.amount for r in visible))]
    for key, attribute, names in (("byUnit", "orgUnitId", unit_names), ("byOwner", "ownerId", user_names)):
        expected: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
        for rec in visible:
            group = expected[rec.unit if key == "byUnit" else rec.owner]
            group[0] += 1
            group[1] += rec.amount
        got = {names[g["key"][attribute]]: [g["count"], Decimal(g["sum"]["amount"])] for g in data[key]}
        assert got == dict(expected), key
    assert data["accounts"] == [{"count": len(org.model.visible(user, "account"))}]
    lines = Counter(r.deal for r in org.model.visible(user, "deal_line"))
    assert {org.record(g["key"]["dealId"]).name: g["count"] for g in data["lines"]} == dict(lines)


@users
def test_filters_through_lookups_match_only_visible_deals_of_visible_accounts(org, user):
    accounts = org.records["account"]
    parts = [f'a{i}: deals(first: 100, filter: {{account: {{name: {{eq: "{a.name}"}}}}}}) {{ nodes {{ id }} totalCount }}'
             for i, a in enumerate(accounts)]
    parts += [f'n{i}: deals(first: 100, filter: {{not: {{account: {{name: {{eq: "{a.name}"}}}}}}}}) {{ totalCount }}'
              for i, a in enumerate(accounts)]
    parts += [f'c{i}: dealAggregate(filter: {{account: {{name: {{eq: "{a.name}"}}}}}}) {{ count }}'
              for i, a in enumerate(accounts)]
    data = org.data(user, "{ %s }" % "\n".join(parts))
    visible = org.model.visible(user, "deal")
    for i, account in enumerate(accounts):
        account_visible = org.model.can(user, "read", account)
        expected = {d.id for d in visible if d.account == account.name and account_visible}
        assert {n["id"] for n in data[f"a{i}"]["nodes"]} == expected, account.name
        assert data[f"a{i}"]["totalCount"] == len(expected)
        assert data[f"n{i}"]["totalCount"] == len(visible) - len(expected)
        assert data[f"c{i}"] == [{"count": len(expected)}]


@users
def test_filters_through_master_detail_match_only_visible_lines_of_visible_deals(org, user):
    deals = org.records["deal"]
    parts = [f'd{i}: dealLines(first: 100, filter: {{deal: {{name: {{eq: "{d.name}"}}}}}}) {{ nodes {{ id }} totalCount }}'
             for i, d in enumerate(deals)]
    data = org.data(user, "{ %s }" % "\n".join(parts))
    lines = org.model.visible(user, "deal_line")
    for i, deal in enumerate(deals):
        expected = {line.id for line in lines if line.deal == deal.name} if org.model.can(user, "read", deal) else set()
        assert {n["id"] for n in data[f"d{i}"]["nodes"]} == expected, deal.name
        assert data[f"d{i}"]["totalCount"] == len(expected)


@users
def test_to_one_relations_are_null_when_the_target_is_invisible(org, user):
    data = org.data(user, """{
      deals(first: 100) { nodes { id accountId account { id name } } }
      dealLines(first: 200) { nodes { id dealId deal { id name account { id } } } }
    }""")
    for node in data["deals"]["nodes"]:
        deal = org.record(node["id"])
        account = org.by_name.get(deal.account)
        assert node["accountId"] == (account.id if account else None)
        if account is not None and org.model.can(user, "read", account):
            assert node["account"] == {"id": account.id, "name": account.name}
        else:
            assert node["account"] is None, deal.name
    assert {n["id"] for n in data["dealLines"]["nodes"]} == ids(org.model.visible(user, "deal_line"))
    for node in data["dealLines"]["nodes"]:
        deal = org.by_name[org.record(node["id"]).deal]
        assert node["dealId"] == deal.id
        if org.model.can(user, "read", deal):
            account = org.by_name.get(deal.account)
            account_visible = account is not None and org.model.can(user, "read", account)
            assert node["deal"] == {"id": deal.id, "name": deal.name, "account": {"id": account.id} if account_visible else None}
        else:
            assert node["deal"] is None, deal.name


@users
def test_children_connections_hold_only_visible_children(org, user):
    data = org.data(user, """{
      deals(first: 100) { nodes { id dealLines(first: 1) { nodes { id } totalCount pageInfo { hasNextPage } } } }
      accounts(first: 50) { nodes { id deals(first: 100) { nodes { id } totalCount } } }
    }""")
    lines = org.model.visible(user, "deal_line")
    for node in data["deals"]["nodes"]:
        deal = org.record(node["id"])
        expected = {line.id for line in lines if line.deal == deal.name}
        children = node["dealLines"]
        assert children["totalCount"] == len(expected), deal.name
        assert {n["id"] for n in children["nodes"]} <= expected
        assert len(children["nodes"]) == min(1, len(expected))
        assert children["pageInfo"]["hasNextPage"] == (len(expected) > 1)
    deals = org.model.visible(user, "deal")
    assert {n["id"] for n in data["accounts"]["nodes"]} == ids(org.model.visible(user, "account"))
    for node in data["accounts"]["nodes"]:
        account = org.record(node["id"])
        expected = {d.id for d in deals if d.account == account.name}
        assert {n["id"] for n in node["deals"]["nodes"]} == expected, account.name
        assert node["deals"]["totalCount"] == len(expected)


@users
def test_nested_children_of_a_record_read_by_id(org, user):
    deal = next(d for d in org.model.visible(user, "deal") if d.account)
    data = org.data(user, """query ($id: ID!) { deal(id: $id) { id
      dealLines { nodes { id deal { id } } totalCount }
      account { id deals { nodes { id dealLines { totalCount } } totalCount } } } }""", {"id": deal.id})["deal"]
    lines = org.model.visible(user, "deal_line")
    own_lines = {line.id for line in lines if line.deal == deal.name}
    assert {n["id"] for n in data["dealLines"]["nodes"]} == own_lines
    assert all(n["deal"] == {"id": deal.id} for n in data["dealLines"]["nodes"])
    account = org.by_name[deal.account]
    if not org.model.can(user, "read", account):
        assert data["account"] is None
        return
    siblings = [d for d in org.model.visible(user, "deal") if d.account == account.name]
    assert data["account"]["deals"]["totalCount"] == len(siblings)
    counts = {n["id"]: n["dealLines"]["totalCount"] for n in data["account"]["deals"]["nodes"]}
    assert counts == {d.id: sum(1 for line in lines if line.deal == d.name) for d in siblings}


# -- writing --------------------------------------------------------------------------------------

@users
@pytest.mark.parametrize("obj", ["account", "deal"])
def test_updates_succeed_exactly_within_the_write_scope(org, user, obj):
    mutation = "mutation ($id: ID!, $note: String) { update%s(id: $id, input: {note: $note}) { id note } }" % TYPE[obj]
    root = f"update{TYPE[obj]}"
    note = f"by {user}"
    records = org.model.sample(user, obj)
    outcomes = {}
    for rec in records:
        status, body = org.post(user, mutation, {"id": rec.id, "note": note})
        outcomes[rec.name] = single_outcome(status, body, root)
        if outcomes[rec.name] == "ok":
            assert body["data"][root] == {"id": rec.id, "note": note}
    expected = {rec.name: org.model.outcome(user, "update", rec) for rec in records}
    assert outcomes == expected
    stored = {r["name"]: r["note"] for r in org.runtime.records.query(SYSTEM_ACTOR, obj, first=500, fields=["name", "note"]).records}
    assert {name for name, value in stored.items() if value == note} == {name for name, o in expected.items() if o == "ok"}
    for rec in records:
        if expected[rec.name] == "ok":
            org.runtime.records.update(SYSTEM_ACTOR, obj, rec.id, {"note": None})


@users
@pytest.mark.parametrize("obj", ["deal", "deal_line"])
def test_deletes_follow_the_granted_action_and_the_write_scope(org, user, obj):
    mutation = "mutation ($id: ID!) { delete%s(id: $id) }" % TYPE[obj]
    root = f"delete{TYPE[obj]}"
    records = org.model.sample(user, obj)
    outcomes, expected = {}, {}
    for rec in records:
        status, body = org.post(user, mutation, {"id": rec.id})
        outcomes[rec.name] = single_outcome(status, body, root)
        expected[rec.name] = org.model.outcome(user, "delete", rec)
        if outcomes[rec.name] == "ok":
            assert body["data"][root] == rec.id
            alive = org.runtime.records.query(SYSTEM_ACTOR, obj, filter={"id": {"eq": rec.id}}, total=True).total_count
            assert alive == 0
            org.runtime.records.restore(SYSTEM_ACTOR, obj, rec.id)
    assert outcomes == expected


@users
def test_restores_follow_the_granted_action_and_the_write_scope(org, user):
    mutation = "mutation ($id: ID!) { restoreDeal(id: $id) { id name } }"
    deals = org.model.sample(user, "deal")
    for rec in deals:
        org.runtime.records.delete(SYSTEM_ACTOR, "deal", rec.id)
    try:
        outcomes = {}
        for rec in deals:
            status, body = org.post(user, mutation, {"id": rec.id})
            outcomes[rec.name] = single_outcome(status, body, "restoreDeal")
            if outcomes[rec.name] == "ok":
                assert body["data"]["restoreDeal"] == {"id": rec.id, "name": rec.name}
        assert outcomes == {rec.name: org.model.outcome(user, "restore", rec) for rec in deals}
    finally:
        for found in org.runtime.records.query(SYSTEM_ACTOR, "deal", first=500, fields=["name"], deleted=True).records:
            org.runtime.records.restore(SYSTEM_ACTOR, "deal", found["id"])
    for obj in ("deal", "deal_line"):
        live = org.runtime.records.query(SYSTEM_ACTOR, obj, first=500, total=True).total_count
        assert live == len(org.records[obj])


@users
def test_transfers_follow_the_granted_action_and_the_write_scope(org, user):
    mutation = """mutation ($id: ID!, $owner: ID!, $unit: ID) {
      transferDeal(id: $id, ownerId: $owner, orgUnitId: $unit) { id ownerId orgUnitId } }"""
    staff = org.user_ids["staff"]
    outcomes, expected = {}, {}
    for rec in org.model.sample(user, "deal"):
        status, body = org.post(user, mutation, {"id": rec.id, "owner": staff, "unit": org.unit_ids[rec.unit]})
        outcomes[rec.name] = single_outcome(status, body, "transferDeal")
        expected[rec.name] = org.model.outcome(user, "transfer", rec)
        if outcomes[rec.name] == "ok":
            assert body["data"]["transferDeal"] == {"id": rec.id, "ownerId": staff, "orgUnitId": org.unit_ids[rec.unit]}
            org.runtime.records.transfer(SYSTEM_ACTOR, "deal", rec.id, org.user_ids[rec.owner], org_unit_id=org.unit_ids[rec.unit])
    assert outcomes == expected


CREATE_DEAL = "mutation ($input: DealCreateInput!) { createDeal(input: $input) { id ownerId orgUnitId } }"


def check_creates(org, user, cases):
    """Each case ``(owner, unit)`` (``None``: not given) is created or refused as the model says;
    refused ones leave nothing behind, created ones are purged again."""
    model = org.model
    for owner, unit in cases:
        name = f"new-{user}-{owner}-{unit}"
        values = {"name": name}
        if owner:
            values["ownerId"] = org.user_ids[owner]
        if unit:
            values["orgUnitId"] = org.unit_ids[unit]
        status, body = org.post(user, CREATE_DEAL, {"input": values})
        outcome = single_outcome(status, body, "createDeal")
        final_owner, final_unit = owner or user, unit or model.create_unit(user, "deal")
        if not model.granted(user, "deal", "create"):
            assert outcome == "FORBIDDEN", (owner, unit)
        else:
            allowed = model.in_scope(user, "deal", "create", final_owner, final_unit)
            assert outcome == ("ok" if allowed else "FORBIDDEN"), (owner, unit, body)
        stored = org.runtime.records.query(SYSTEM_ACTOR, "deal", filter={"name": {"eq": name}}).records
        if outcome == "ok":
            assert body["data"]["createDeal"]["ownerId"] == org.user_ids[final_owner]
            assert body["data"]["createDeal"]["orgUnitId"] == org.unit_ids[final_unit]
            assert [r["id"] for r in stored] == [body["data"]["createDeal"]["id"]]
            org.runtime.records.hard_delete(SYSTEM_ACTOR, "deal", stored[0]["id"])
        else:
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            assert stored == []


@users
def test_creates_with_an_owner_inside_or_outside_the_create_scope(org, user):
    check_creates(org, user, [(None, None), (user, None), ("staff", None), ("rep_a", None), ("head", None)])


@users
def test_creates_with_an_org_unit_inside_or_outside_the_create_scope(org, user):
    units = ["S1R1D1", "S1R1D2", "S1R1", "S1", "S2R1D1", "S2R2", "S2", "G"]
    check_creates(org, user, [(None, "S1R1D2"), (None, "G"), *(("staff", unit) for unit in units)])


# -- fields -----------------------------------------------------------------------------------------

@users
def test_hidden_fields_read_as_null_with_forbidden_errors_at_their_paths(org, user):
    hidden = org.model.hidden(user, "deal")
    status, body = org.post(user, "{ deals(first: 100) { nodes { id amount margin costCenter } } }")
    assert status == 200, body
    nodes = body["data"]["deals"]["nodes"]
    assert {n["id"] for n in nodes} == ids(org.model.visible(user, "deal"))
    expected_paths = set()
    for i, node in enumerate(nodes):
        rec = org.record(node["id"])
        for field in ("amount", "margin", "cost_center"):
            value = node[GRAPHQL_FIELD[field]]
            if field in hidden:
                assert value is None
                expected_paths.add(("deals", "nodes", i, GRAPHQL_FIELD[field]))
            elif field == "cost_center":
                assert value == rec.cost_center
            else:
                assert Decimal(value) == getattr(rec, field)
    errors = body.get("errors", [])
    assert {tuple(e["path"]) for e in errors} == expected_paths
    assert all(e["extensions"]["code"] == "FORBIDDEN" for e in errors)
    assert len(errors) == len(expected_paths)

    account_hidden = org.model.hidden(user, "account")
    account = org.model.visible(user, "account")[0]
    status, body = org.post(user, 'query ($id: ID!) { account(id: $id) { id name revenue } }', {"id": account.id})
    assert status == 200, body
    if "revenue" in account_hidden:
        assert body["data"]["account"] == {"id": account.id, "name": account.name, "revenue": None}
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["account", "revenue"], "FORBIDDEN")]
    else:
        assert "errors" not in body, body
        assert Decimal(body["data"]["account"]["revenue"]) == account.revenue


@users
@pytest.mark.parametrize("field", ["amount", "margin", "cost_center"])
def test_hidden_fields_cannot_be_filtered_sorted_grouped_or_measured(org, user, field):
    name = GRAPHQL_FIELD[field]
    hidden = field in org.model.hidden(user, "deal")
    visible = org.model.visible(user, "deal")
    value = '"CC1"' if field == "cost_center" else '"500"'
    operator = "eq" if field == "cost_center" else "gte"
    queries = {
        "filter": "{ deals(filter: {%s: {%s: %s}}) { totalCount } }" % (name, operator, value),
        "nested filter": "{ deals(filter: {or: [{name: {eq: \"x\"}}, {not: {%s: {isNull: true}}}]}) { totalCount } }" % name,
        "aggregate filter": "{ dealAggregate(filter: {%s: {%s: %s}}) { count } }" % (name, operator, value),
        "order": "{ deals(first: 100, orderBy: [%s_ASC]) { nodes { id } } }" % field.upper(),
        "group": "{ dealAggregate(groupBy: [%s]) { count } }" % field.upper(),
        "children filter": "{ accounts(first: 50) { nodes { deals(filter: {%s: {isNull: false}}) { totalCount } } } }" % name,
        "related filter": "{ dealLines(filter: {deal: {%s: {isNull: false}}}) { totalCount } }" % name,
    }
    if field != "cost_center":
        queries["measure"] = "{ dealAggregate { count max { %s } } }" % name
    for label, query in queries.items():
        status, body = org.post(user, query)
        assert status == 200, (label, body)
        if hidden:
            assert body["data"] is None, (label, body)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], (label, body)
        else:
            assert "errors" not in body, (label, body)
    if hidden:
        return
    data = org.data(user, queries["filter"])
    threshold = Decimal(500)
    matches = [r for r in visible if (r.cost_center == "CC1" if field == "cost_center" else getattr(r, field) >= threshold)]
    assert data["deals"]["totalCount"] == len(matches)
    if field != "cost_center":
        order = [n["id"] for n in org.data(user, queries["order"])["deals"]["nodes"]]
        assert order == [r.id for r in sorted(visible, key=lambda r: getattr(r, field))]


@users
def test_read_only_and_hidden_fields_cannot_be_written(org, user):
    read_only = org.model.read_only(user, "deal")
    mine = next(r for r in org.records["deal"] if r.owner == user or org.model.can(user, "update", r))
    granted = org.model.granted(user, "deal", "update")
    for field, value in (("amount", "1.00"), ("margin", "2.00"), ("cost_center", "CCX")):
        name = GRAPHQL_FIELD[field]
        status, body = org.post(user, "mutation ($id: ID!, $input: DealUpdateInput!) { updateDeal(id: $id, input: $input) { id } }",
                                {"id": mine.id, "input": {name: value}})
        outcome = single_outcome(status, body, "updateDeal")
        if not granted:
            assert outcome == "FORBIDDEN"
            continue
        if field in read_only:
            assert outcome == "FORBIDDEN", field
            problems = body["errors"][0]["extensions"]["errors"]
            assert [(p["code"], p["field"]) for p in problems] == [("FORBIDDEN", f"input.{name}")]
        else:
            assert outcome == "ok", (field, body)
            org.runtime.records.update(SYSTEM_ACTOR, "deal", mine.id, {field: getattr(mine, field)})
    stored = org.runtime.records.get(SYSTEM_ACTOR, "deal", mine.id)
    assert (stored["amount"], stored["margin"], stored["cost_center"]) == (mine.amount, mine.margin, mine.cost_center)
    if granted and org.model.granted(user, "deal", "create"):
        status, body = org.post(user, CREATE_DEAL, {"input": {"name": f"ro-{user}", "amount": "5", "margin": "1"}})
        outcome = single_outcome(status, body, "createDeal")
        expected_fields = sorted(f"input.{GRAPHQL_FIELD[f]}" for f in ("amount", "margin") if f in read_only)
        if expected_fields:
            assert outcome == "FORBIDDEN"
            assert sorted(p["field"] for p in body["errors"][0]["extensions"]["errors"]) == expected_fields
            assert org.runtime.records.query(SYSTEM_ACTOR, "deal", filter={"name": {"eq": f"ro-{user}"}}).records == []
        else:
            assert outcome == "ok"
            org.runtime.records.hard_delete(SYSTEM_ACTOR, "deal", body["data"]["createDeal"]["id"])


def test_the_org_exercises_every_kind_of_reach():
    """The planned org covers what the matrix is for: users see different slices, shares and teams
    add records, visible deals point at invisible accounts, and roles combine field access."""
    model = Model(plan_records())
    slices = {user: frozenset(r.name for r in model.visible(user, "deal")) for user in MATRIX_USERS}
    assert len(set(slices.values())) == len(MATRIX_USERS) - 2  # the auditor, the executive and rep_aud read all
    assert {"D-S2R2D1-1", "D-S1R2D2-1", "D-S2R2D1-2"} <= slices["rep_a"]  # user share, unit share, team
    assert "D-S1R2D1-3" in slices["rep_b"]  # shared with S2, reaching rep_b's second department
    assert any(d.account and not model.can("rep_a", "read", model.by_name[d.account]) for d in model.visible("rep_a", "deal"))
    assert model.hidden("rep_aud", "deal") == {"margin"}
    assert model.hidden("auditor", "deal") == {"margin", "cost_center"}
    assert model.read_only("rep_aud", "deal") == {"margin", "amount"}
    assert model.outcome("mgr", "update", model.by_name["D-S2R1D2-1"]) == "ok"  # edit share
    assert model.outcome("mgr", "delete", model.by_name["D-S2R1D2-1"]) == "NOT_FOUND"  # shares never widen deletes
    assert model.outcome("dir", "update", model.by_name["D-S1R1D1-1"]) == "NOT_FOUND"  # reads below, writes its unit
    assert model.outcome("dir", "update", model.by_name["D-S1R1-1"]) == "ok"
    assert model.outcome("auditor", "update", model.by_name["D-S2R2D2-3"]) == "FORBIDDEN"  # edit share, no update
