"""Grants limited to business types: three product lines kept apart, on SQLite and PostgreSQL.

One org per module and database: ``Group`` -> ``East``, ``West``; an ``opportunity`` object with
three business types (printers, scanners, copiers; two stages each) and a lookup to ``account``;
six records ``line <type> <unit>`` owned by ``staff``. Roles ``printer_sales``, ``scanner_sales``,
``copier_sales`` may read, create, update, delete, transfer and restore opportunities of their one
type within ``unit_and_below`` (and read every account). ``pia``, ``sam`` and ``cole`` hold one of
them at Group; ``duo`` holds printer_sales at East and scanner_sales at West, so duo's rows are
printers of East plus scanners of West (each membership with its own types), not every
combination. Requests go through the record service and through HTTP GraphQL with user tokens.

Records written by the tests are named ``t ...``; the lists checked filter on ``line ...``.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import Forbidden, NotFound, ValidationFailed
from lowcode.metadata.sqltypes import JsonValue
from lowcode.runtime import Runtime
from lowcode.runtime.security.adapter import policy_lines
from lowcode.server.app import Settings, create_app
from sqlalchemy import (
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    inspect,
    select,
    text,
)

SERVICE_TOKEN = "svc"
TYPES = ("printers", "scanners", "copiers")
ROLE_OF = {"printers": "printer_sales", "scanners": "scanner_sales", "copiers": "copier_sales"}
LINE_ACTIONS = ["read", "create", "update", "delete", "transfer", "restore"]
UNITS = {"Group": None, "East": "Group", "West": "Group"}
USERS = {
    "pia": [("Group", "printer_sales")],
    "sam": [("Group", "scanner_sales")],
    "cole": [("Group", "copier_sales")],
    "duo": [("East", "printer_sales"), ("West", "scanner_sales")],
    "both": [("Group", "printer_sales"), ("Group", "scanner_sales")],
    "staff": [],
}
AMOUNTS = {("printers", "East"): "100.00", ("printers", "West"): "200.00", ("scanners", "East"): "1000.00",
           ("scanners", "West"): "2000.00", ("copiers", "East"): "10000.00", ("copiers", "West"): "20000.00"}
STAGE_OF_UNIT = {"East": "lead", "West": "won"}
"""East records sit in their type's open stage (probability 25), West records in its won stage."""
VISIBLE = {
    "pia": {("printers", "East"), ("printers", "West")},
    "sam": {("scanners", "East"), ("scanners", "West")},
    "cole": {("copiers", "East"), ("copiers", "West")},
    "duo": {("printers", "East"), ("scanners", "West")},
    "both": {("printers", "East"), ("printers", "West"), ("scanners", "East"), ("scanners", "West")},
}
LINES = "{name: {startsWith: \"line \"}}"


def line(kind: str, unit: str) -> str:
    return f"line {kind} {unit}"


def names_of(pairs) -> list[str]:
    return sorted(line(kind, unit) for kind, unit in pairs)


class World:
    def __init__(self, url: str):
        self.runtime = Runtime.connect(url).install()
        self.app = create_app(Settings(database_url=url, api_token=SERVICE_TOKEN), runtime=self.runtime)
        self.http = self.app.test_client()
        self.sec = self.runtime.security
        self.records = self.runtime.records
        self.units: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.lines: dict[tuple[str, str], str] = {}

    def build(self) -> "World":
        md, sec = self.runtime.metadata, self.sec
        md.create_object(S, {"api_name": "account", "label": "Account", "fields": [
            {"api_name": "name", "label": "Name", "type": "text", "required": True}]})
        md.create_object(S, {"api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities",
                             "plural_label": "Opportunities", "fields": [
                                 {"api_name": "name", "label": "Name", "type": "text", "required": True},
                                 {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 14, "scale": 2}},
                                 {"api_name": "account", "label": "Account", "type": "lookup",
                                  "options": {"target": "account", "relationship_name": "opportunities"}}]})
        for kind in TYPES:
            md.create_business_type(S, "opportunity", {"api_name": kind, "label": kind.title(), "stages": [
                {"api_name": f"{kind}_lead", "label": "Lead", "probability": 25},
                {"api_name": f"{kind}_won", "label": "Won", "probability": 100, "category": "won"}]})
        for unit, parent in UNITS.items():
            self.units[unit] = sec.create_unit(S, unit, self.units[parent] if parent else None)["id"]
        for kind, role in ROLE_OF.items():
            sec.create_role(S, role, f"{kind.title()} sales")
            sec.set_object_grant(S, role, "opportunity", LINE_ACTIONS, "unit_and_below", "unit_and_below", [kind])
            sec.set_object_grant(S, role, "account", ["read"], "all", "own")
        for user, memberships in USERS.items():
            self.users[user] = sec.create_user(S, {"username": user})["id"]
            for unit, role in memberships:
                sec.add_membership(S, self.users[user], self.units[unit], role)
            self.tokens[user] = sec.issue_token(S, "lines", user_id=self.users[user])["token"]
        self.account = self.records.create(S, "account", {"name": "Acme"})["id"]
        for (kind, unit), amount in AMOUNTS.items():
            self.lines[(kind, unit)] = self.records.create(S, "opportunity", {
                "name": line(kind, unit), "business_type": kind, "stage": f"{kind}_{STAGE_OF_UNIT[unit]}", "amount": amount,
                "account": self.account, "owner_id": self.users["staff"], "org_unit_id": self.units[unit]})["id"]
        return self

    def actor(self, user: str):
        """The user as a request sees them (their access at the current policy version)."""
        return self.sec.authenticate(self.tokens[user])

    def post(self, query: str, variables: dict | None = None, user: str | None = None) -> tuple[int, dict]:
        token = self.tokens[user] if user else SERVICE_TOKEN
        response = self.http.post("/graphql", json={"query": query, "variables": variables or {}},
                                  headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, user: str | None = None) -> dict:
        status, body = self.post(query, variables, user)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def error(self, query: str, variables: dict | None = None, user: str | None = None) -> dict:
        """The single error of a request that must fail, without locations and path."""
        status, body = self.post(query, variables, user)
        assert status == 200 and len(body.get("errors", [])) == 1, body
        return body["errors"][0]["extensions"]

    def scratch(self, name: str, kind: str, unit: str, owner: str = "staff", amount: str = "1.00") -> str:
        return self.records.create(S, "opportunity", {
            "name": name, "business_type": kind, "amount": amount, "owner_id": self.users[owner],
            "org_unit_id": self.units[unit]})["id"]

    def stored(self, record_id: str) -> dict:
        return self.records.get(S, "opportunity", record_id, deleted=False)

    def count_named(self, prefix: str) -> int:
        page = self.records.query(S, "opportunity", filter={"name": {"starts_with": prefix}}, total=True, first=0)
        return page.total_count

    def policy_version(self) -> int:
        with self.runtime.engine.connect() as conn:
            return conn.execute(text("SELECT version FROM lc_policy_version")).scalar_one()


@pytest.fixture(scope="module")
def world(module_database_url):
    built = World(module_database_url)
    try:
        yield built.build()
    finally:
        built.runtime.close()


# -- the policy ------------------------------------------------------------------------------------

def test_roles_list_their_business_types_and_casbin_sees_one_line_per_type(world):
    role = world.sec.role(S, "printer_sales")
    assert role["objects"] == [
        {"object": "account", "actions": ["read"], "read_scope": "all", "write_scope": "own", "business_types": []},
        {"object": "opportunity", "actions": LINE_ACTIONS, "read_scope": "unit_and_below", "write_scope": "unit_and_below",
         "business_types": ["printers"]},
    ]
    with world.runtime.engine.connect() as conn:
        lines = [line for line in policy_lines(conn) if line[0] == "p" and line[1] == "printer_sales"]
    assert lines == [("p", "printer_sales", "account", "read", "all")] + [
        ("p", "printer_sales", "opportunity/printers", action, "unit_and_below") for action in LINE_ACTIONS]
    policies = world.runtime.policies
    policies.reload_if_stale()
    answers = {(user, unit, obj): policies.enforce(world.users[user], world.units[unit], obj, "read")
               for user in ("pia", "duo") for unit in ("Group", "East", "West")
               for obj in ("opportunity", "opportunity/printers", "opportunity/scanners", "account")}
    assert {k for k, allowed in answers.items() if allowed} == {
        ("pia", "Group", "opportunity/printers"), ("pia", "Group", "account"),
        ("duo", "East", "opportunity/printers"), ("duo", "East", "account"),
        ("duo", "West", "opportunity/scanners"), ("duo", "West", "account"),
    }


def test_a_user_access_keeps_each_membership_types_with_its_units(world):
    access = world.actor("duo").access.on("opportunity")
    assert access.allows("read") and access.allows("update") and not access.allows("export")
    assert dict(access.scopes) == {}
    parts = access.typed_scopes["read"]
    assert [(sorted(p.business_types), p.everything, sorted(p.units), len(p.subtrees)) for p in parts] == [
        (["printers"], False, [], 1), (["scanners"], False, [], 1)]
    assert parts[0].subtrees[0].endswith(f"/{world.units['East']}/") and parts[1].subtrees[0].endswith(f"/{world.units['West']}/")
    merged = world.actor("both").access.on("opportunity").typed_scopes["read"]
    assert [(sorted(p.business_types), len(p.subtrees)) for p in merged] == [(["printers", "scanners"], 1)]


# -- reading ---------------------------------------------------------------------------------------

LIST = "query ($after: String) { opportunities(filter: " + LINES + ", orderBy: [NAME_ASC], first: 2, after: $after) { totalCount nodes { name businessType } pageInfo { hasNextPage endCursor } } }"


@pytest.mark.parametrize("user", ["pia", "sam", "cole", "duo", "both"])
def test_three_product_lines_kept_apart_in_lists_and_counts(world, user):
    seen, after = [], None
    while True:
        page = world.data(LIST, {"after": after}, user)["opportunities"]
        assert page["totalCount"] == len(VISIBLE[user])
        seen += [(n["name"], n["businessType"]) for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [(name, name.split()[1].upper()) for name in names_of(VISIBLE[user])]
    service = world.records.query(world.actor(user), "opportunity", filter={"name": {"starts_with": "line "}}, order_by=["name"],
                                  total=True)
    assert [r["name"] for r in service.records] == names_of(VISIBLE[user]) and service.total_count == len(VISIBLE[user])


@pytest.mark.parametrize("user", ["pia", "duo"])
def test_get_answers_not_found_outside_the_types(world, user):
    query = "query ($id: ID!) { opportunity(id: $id) { name businessType } }"
    for key, record_id in world.lines.items():
        if key in VISIBLE[user]:
            assert world.data(query, {"id": record_id}, user)["opportunity"] == {"name": line(*key), "businessType": key[0].upper()}
            assert world.records.get(world.actor(user), "opportunity", record_id)["name"] == line(*key)
        else:
            assert world.error(query, {"id": record_id}, user)["code"] == "NOT_FOUND"
            with pytest.raises(NotFound):
                world.records.get(world.actor(user), "opportunity", record_id)


def test_aggregates_sum_only_the_granted_types(world):
    query = "{ opportunityAggregate(filter: " + LINES + ", groupBy: [BUSINESS_TYPE]) { key { businessType } count sum { amount } } }"
    assert world.data(query, user="duo")["opportunityAggregate"] == [
        {"key": {"businessType": "PRINTERS"}, "count": 1, "sum": {"amount": "100.00"}},
        {"key": {"businessType": "SCANNERS"}, "count": 1, "sum": {"amount": "2000.00"}},
    ]
    assert world.data(query, user="cole")["opportunityAggregate"] == [
        {"key": {"businessType": "COPIERS"}, "count": 2, "sum": {"amount": "30000.00"}}]
    groups = world.records.aggregate(world.actor("sam"), "opportunity", filter={"name": {"starts_with": "line "}},
                                     measures=[("sum", "amount")])
    assert [(g["count"], g["sum"]["amount"]) for g in groups] == [(2, Decimal("3000.00"))]


def test_the_funnel_counts_only_the_granted_types(world):
    query = "{ opportunityFunnel(amountField: AMOUNT, filter: " + LINES + ") { businessType stage count amount weightedAmount } }"
    assert world.data(query, user="duo")["opportunityFunnel"] == [
        {"businessType": "PRINTERS", "stage": "PRINTERS_LEAD", "count": 1, "amount": "100.00", "weightedAmount": "25.00"},
        {"businessType": "SCANNERS", "stage": "SCANNERS_WON", "count": 1, "amount": "2000.00", "weightedAmount": "2000.00"},
    ]
    rows = world.records.funnel(world.actor("pia"), "opportunity", amount_field="amount", filter={"name": {"starts_with": "line "}})
    assert [(r["business_type"], r["stage"], r["count"], r["amount"]) for r in rows] == [
        ("printers", "printers_lead", 1, Decimal("100.00")), ("printers", "printers_won", 1, Decimal("200.00"))]


def test_related_lists_and_lookup_filters_show_only_the_granted_types(world):
    query = "{ accounts { nodes { name opportunities(filter: " + LINES + ", orderBy: [NAME_ASC]) { totalCount nodes { name } } } } }"
    for user in ("pia", "duo", "cole"):
        account = world.data(query, user=user)["accounts"]["nodes"]
        assert account == [{"name": "Acme", "opportunities": {"totalCount": len(VISIBLE[user]),
                                                               "nodes": [{"name": n} for n in names_of(VISIBLE[user])]}}]
    through = world.data("{ opportunities(filter: {account: {name: {eq: \"Acme\"}}, name: {startsWith: \"line \"}}) { totalCount } }", user="sam")
    assert through["opportunities"]["totalCount"] == 2


def test_history_and_stage_history_only_within_the_types(world):
    printers_east, scanners_east = world.lines[("printers", "East")], world.lines[("scanners", "East")]
    pia = world.actor("pia")
    assert [e["event"] for e in world.records.history(pia, "opportunity", printers_east)] == []
    assert [h["stage"] for h in world.records.stage_history(pia, "opportunity", printers_east)] == ["printers_lead"]
    for read in (world.records.history, world.records.stage_history):
        with pytest.raises(NotFound):
            read(pia, "opportunity", scanners_east)
    query = "query ($id: ID!) { opportunity(id: $id) { stageHistory { stage } } }"
    assert world.data(query, {"id": printers_east}, "pia")["opportunity"] == {"stageHistory": [{"stage": "PRINTERS_LEAD"}]}
    assert world.error(query, {"id": scanners_east}, "pia")["code"] == "NOT_FOUND"


def test_shares_and_teams_widen_past_the_type_limit(world):
    scanners_east, copiers_west = world.lines[("scanners", "East")], world.lines[("copiers", "West")]
    world.sec.share_record(S, "opportunity", scanners_east, world.users["pia"], "read")
    world.sec.add_team_member(S, "opportunity", copiers_west, world.users["pia"], "edit")
    try:
        names = world.data(LIST.replace("first: 2", "first: 10"), {"after": None}, "pia")["opportunities"]["nodes"]
        assert [n["name"] for n in names] == sorted([*names_of(VISIBLE["pia"]), line("scanners", "East"), line("copiers", "West")])
        pia = world.actor("pia")
        with pytest.raises(NotFound):
            world.records.update(pia, "opportunity", scanners_east, {"amount": "1.00"})
        assert world.records.update(pia, "opportunity", copiers_west, {"amount": "20001.00"})["amount"] == Decimal("20001.00")
        world.records.update(S, "opportunity", copiers_west, {"amount": "20000.00"})
    finally:
        world.sec.unshare_record(S, "opportunity", scanners_east, world.users["pia"])
        world.sec.remove_team_member(S, "opportunity", copiers_west, world.users["pia"])
    assert world.data(LIST, {"after": None}, "pia")["opportunities"]["totalCount"] == 2


# -- writing ---------------------------------------------------------------------------------------

CREATE = "mutation ($input: OpportunityCreateInput!) { createOpportunity(input: $input) { name businessType ownerId orgUnitId } }"
OUTSIDE_CREATE = {"code": "FORBIDDEN", "field": "input.ownerId",
                  "message": "this owner, org unit and business type are outside the scope in which you may create records"}


def test_a_limited_role_creates_only_records_of_its_types(world):
    made = world.data(CREATE, {"input": {"name": "t create printers", "businessType": "PRINTERS"}}, "pia")["createOpportunity"]
    assert made == {"name": "t create printers", "businessType": "PRINTERS", "ownerId": world.users["pia"], "orgUnitId": world.units["Group"]}
    refused = world.error(CREATE, {"input": {"name": "t create scanners", "businessType": "SCANNERS"}}, "pia")
    assert refused == {"code": "FORBIDDEN", "errors": [OUTSIDE_CREATE]}
    assert world.count_named("t create scanners") == 0
    with pytest.raises(Forbidden) as caught:
        world.records.create(world.actor("pia"), "opportunity", {"name": "t create copiers", "business_type": "copiers"})
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "FORBIDDEN", "field": "owner_id", "message": OUTSIDE_CREATE["message"]}]
    assert world.count_named("t create copiers") == 0


def test_a_user_with_two_memberships_creates_each_type_within_its_own_units(world):
    staff, east, west = world.users["staff"], world.units["East"], world.units["West"]
    as_staff = {"name": "t duo scanners", "businessType": "SCANNERS", "ownerId": staff}
    assert world.error(CREATE, {"input": {**as_staff, "orgUnitId": east}}, "duo") == {"code": "FORBIDDEN", "errors": [OUTSIDE_CREATE]}
    made = world.data(CREATE, {"input": {**as_staff, "orgUnitId": west}}, "duo")["createOpportunity"]
    assert made == {"name": "t duo scanners", "businessType": "SCANNERS", "ownerId": staff, "orgUnitId": west}
    assert world.error(CREATE, {"input": {**as_staff, "businessType": "COPIERS", "orgUnitId": west}}, "duo") == {
        "code": "FORBIDDEN", "errors": [OUTSIDE_CREATE]}
    assert world.count_named("t duo scanners") == 1
    own = world.data("""mutation ($inputs: [OpportunityCreateInput!]!) { createOpportunities(inputs: $inputs) {
        businessType orgUnitId } }""", {"inputs": [{"name": "t duo own 0", "businessType": "SCANNERS"},
                                                   {"name": "t duo own 1", "businessType": "PRINTERS"}]}, "duo")
    assert own["createOpportunities"] == [{"businessType": "SCANNERS", "orgUnitId": west}, {"businessType": "PRINTERS", "orgUnitId": east}]


def test_bulk_create_is_all_or_nothing_per_type(world):
    query = "mutation ($inputs: [OpportunityCreateInput!]!) { createOpportunities(inputs: $inputs) { name businessType } }"
    inputs = [{"name": "t bulk 0", "businessType": "PRINTERS"}, {"name": "t bulk 1", "businessType": "COPIERS"},
              {"name": "t bulk 2", "businessType": "PRINTERS"}, {"name": "t bulk 3", "businessType": "SCANNERS"}]
    refused = world.error(query, {"inputs": inputs}, "pia")
    assert refused == {"code": "FORBIDDEN", "errors": [{**OUTSIDE_CREATE, "field": "inputs.1.ownerId"},
                                                       {**OUTSIDE_CREATE, "field": "inputs.3.ownerId"}]}
    assert world.count_named("t bulk") == 0
    assert world.error(query, {"inputs": inputs}, "both") == {"code": "FORBIDDEN", "errors": [
        {**OUTSIDE_CREATE, "field": "inputs.1.ownerId"}]}
    assert world.count_named("t bulk") == 0
    made = world.data(query, {"inputs": [inputs[0], inputs[3]]}, "both")["createOpportunities"]
    assert made == [{"name": "t bulk 0", "businessType": "PRINTERS"}, {"name": "t bulk 3", "businessType": "SCANNERS"}]
    assert world.count_named("t bulk") == 2


UPDATE = "mutation ($id: ID!, $input: OpportunityUpdateInput!) { updateOpportunity(id: $id, input: $input) { businessType stage version } }"
TO_SCANNERS = {"businessType": "SCANNERS", "stage": "SCANNERS_LEAD"}
TO_COPIERS = {"businessType": "COPIERS", "stage": "COPIERS_LEAD"}


def moved_out(kind: str) -> dict:
    return {"code": "FORBIDDEN", "errors": [{
        "code": "FORBIDDEN", "field": "input.businessType",
        "message": f"none of your roles lets you edit Opportunity records of business type '{kind}' here"}]}


def test_changing_the_type_to_one_outside_the_grant_is_forbidden(world):
    record = world.scratch("t move", "printers", "East")
    assert world.error(UPDATE, {"id": record, "input": TO_SCANNERS}, "pia") == moved_out("scanners")
    assert world.error(UPDATE, {"id": record, "input": TO_SCANNERS}, "duo") == moved_out("scanners")
    with pytest.raises(Forbidden) as caught:
        world.records.update(world.actor("pia"), "opportunity", record, {"business_type": "copiers", "stage": "copiers_lead"})
    assert [e.as_dict() for e in caught.value.errors] == [{
        "code": "FORBIDDEN", "field": "business_type",
        "message": "none of your roles lets you edit Opportunity records of business type 'copiers' here"}]
    stored = world.stored(record)
    assert (stored["business_type"], stored["stage"], stored["version"]) == ("printers", "printers_lead", 1)
    assert world.error(UPDATE, {"id": record, "input": TO_SCANNERS}, "sam")["code"] == "NOT_FOUND"
    moved = world.data(UPDATE, {"id": record, "input": TO_SCANNERS}, "both")["updateOpportunity"]
    assert moved == {"businessType": "SCANNERS", "stage": "SCANNERS_LEAD", "version": 2}
    assert world.error(UPDATE, {"id": record, "input": TO_COPIERS}, "both") == moved_out("copiers")
    assert world.error(UPDATE, {"id": record, "input": {"amount": "5.00"}}, "pia")["code"] == "NOT_FOUND"
    assert world.data(UPDATE, {"id": record, "input": {"amount": "5.00"}}, "sam")["updateOpportunity"]["version"] == 3
    stored = world.stored(record)
    assert (stored["business_type"], stored["amount"], stored["version"]) == ("scanners", Decimal("5.00"), 3)


def test_bulk_updates_refuse_a_type_change_out_of_the_grant_and_write_nothing(world):
    first, second = world.scratch("t bulk move 0", "printers", "East"), world.scratch("t bulk move 1", "printers", "West")
    query = "mutation ($items: [OpportunityUpdateItem!]!) { updateOpportunities(items: $items) { name businessType version } }"
    items = [{"id": first, "input": {"amount": "7.00"}}, {"id": second, "input": TO_SCANNERS}]
    refused = world.error(query, {"items": items}, "pia")
    assert refused == {"code": "FORBIDDEN", "errors": [{
        "code": "FORBIDDEN", "field": "items.1.input.businessType",
        "message": "none of your roles lets you edit Opportunity records of business type 'scanners' here"}]}
    assert [(world.stored(i)["amount"], world.stored(i)["version"]) for i in (first, second)] == [(Decimal("1.00"), 1)] * 2
    hidden = world.error(query, {"items": [{"id": first, "input": {"amount": "7.00"}},
                                           {"id": world.lines[("scanners", "East")], "input": {"amount": "7.00"}}]}, "pia")
    assert hidden["code"] == "VALIDATION_FAILED" and [(e["code"], e["field"]) for e in hidden["errors"]] == [("NOT_FOUND", "items.1")]
    assert world.stored(first)["version"] == 1
    done = world.data(query, {"items": [{"id": first, "input": {"amount": "7.00"}}, {"id": second, "input": TO_SCANNERS}]}, "both")
    assert done["updateOpportunities"] == [{"name": "t bulk move 0", "businessType": "PRINTERS", "version": 2},
                                           {"name": "t bulk move 1", "businessType": "SCANNERS", "version": 2}]


def test_delete_restore_and_transfer_stay_within_the_types(world):
    mine = world.scratch("t life", "printers", "West")
    scanners = world.scratch("t life scanners", "scanners", "West")
    delete = "mutation ($id: ID!) { deleteOpportunity(id: $id) }"
    restore = "mutation ($id: ID!) { restoreOpportunity(id: $id) { name } }"
    transfer = "mutation ($id: ID!, $owner: ID!) { transferOpportunity(id: $id, ownerId: $owner) { ownerId orgUnitId } }"
    assert world.error(delete, {"id": scanners}, "pia")["code"] == "NOT_FOUND"
    assert world.error(transfer, {"id": scanners, "owner": world.users["pia"]}, "pia")["code"] == "NOT_FOUND"
    assert world.data(delete, {"id": mine}, "pia")["deleteOpportunity"] == mine
    assert world.data(restore, {"id": mine}, "pia")["restoreOpportunity"] == {"name": "t life"}
    world.records.delete(world.actor("sam"), "opportunity", scanners)
    with pytest.raises(NotFound):
        world.records.restore(world.actor("pia"), "opportunity", scanners)
    moved = world.data(transfer, {"id": mine, "owner": world.users["sam"]}, "pia")["transferOpportunity"]
    assert moved == {"ownerId": world.users["sam"], "orgUnitId": world.units["Group"]}
    # sam owns it now, but owning is within sam's scope only for scanners: a printers record stays out of reach
    assert world.error("query ($id: ID!) { opportunity(id: $id) { name } }", {"id": mine}, "sam")["code"] == "NOT_FOUND"
    assert world.records.get(world.actor("pia"), "opportunity", mine)["owner_id"] == world.users["sam"]


def test_a_changed_grant_applies_from_the_next_request(world):
    sec = world.sec
    sec.create_role(S, "t_flip", "Flip")
    sec.set_object_grant(S, "t_flip", "opportunity", ["read"], "all", "own", ["printers"])
    flip = sec.create_user(S, {"username": "flip"})["id"]
    sec.add_membership(S, flip, world.units["East"], "t_flip")
    world.tokens["flip"] = sec.issue_token(S, "flip", user_id=flip)["token"]
    listed = "{ opportunities(filter: " + LINES + ", orderBy: [NAME_ASC]) { nodes { name } } }"

    def names() -> list[str]:
        return [n["name"] for n in world.data(listed, user="flip")["opportunities"]["nodes"]]

    assert names() == names_of({("printers", "East"), ("printers", "West")})
    sec.set_object_grant(S, "t_flip", "opportunity", ["read"], "all", "own", ["copiers", "scanners"])
    assert names() == names_of({(k, u) for k in ("copiers", "scanners") for u in ("East", "West")})
    sec.set_object_grant(S, "t_flip", "opportunity", ["read"], "unit", "own", ["copiers"])
    assert names() == [line("copiers", "East")]
    sec.set_object_grant(S, "t_flip", "opportunity", ["read"], "all", "own")
    assert names() == names_of(AMOUNTS)


# -- administration --------------------------------------------------------------------------------

SET = """mutation ($role: String!, $object: String!, $types: [String!]) {
  setObjectPermission(role: $role, object: $object, actions: [READ, UPDATE], readScope: UNIT, writeScope: OWN, businessTypes: $types) {
    objectPermissions { object actions readScope writeScope businessTypes } } }"""


def test_the_admin_api_round_trip(world):
    world.sec.create_role(S, "t_admin", "Admin API")
    granted = world.data(SET, {"role": "t_admin", "object": "opportunity", "types": ["scanners", "copiers", "scanners"]})
    expected = {"object": "opportunity", "actions": ["READ", "UPDATE"], "readScope": "UNIT", "writeScope": "OWN",
                "businessTypes": ["copiers", "scanners"]}
    assert granted["setObjectPermission"]["objectPermissions"] == [expected]
    read = world.data("{ role(name: \"t_admin\") { objectPermissions { object businessTypes } } }")
    assert read["role"]["objectPermissions"] == [{"object": "opportunity", "businessTypes": ["copiers", "scanners"]}]
    audit = world.sec.audit(S, limit=1, target="role:t_admin")[0]
    assert (audit["action"], audit["details"]) == ("grant.object", {
        "object": "opportunity", "actions": ["read", "update"], "read_scope": "unit", "write_scope": "own",
        "business_types": ["copiers", "scanners"]})
    for types in ([], None):
        cleared = world.data(SET, {"role": "t_admin", "object": "opportunity", "types": types})
        assert cleared["setObjectPermission"]["objectPermissions"] == [{**expected, "businessTypes": []}]
    star = world.data(SET, {"role": "t_admin", "object": "*", "types": []})["setObjectPermission"]["objectPermissions"]
    assert [(p["object"], p["businessTypes"]) for p in star] == [("*", []), ("opportunity", [])]


def test_limits_naming_unknown_types_or_star_are_refused_and_change_nothing(world):
    sec = world.sec
    sec.create_role(S, "t_refused", "Refused")
    sec.set_object_grant(S, "t_refused", "opportunity", ["read"], "all", "own", ["printers"])
    before, version = sec.role(S, "t_refused"), world.policy_version()
    unknown = world.error(SET, {"role": "t_refused", "object": "opportunity", "types": ["printers", "faxes", "Scanners"]})
    assert unknown == {"code": "VALIDATION_FAILED", "errors": [
        {"code": "UNKNOWN_BUSINESS_TYPE", "field": "businessTypes.1",
         "message": "'opportunity' has no business type named 'faxes' (its business types are printers, scanners, copiers)"},
        {"code": "UNKNOWN_BUSINESS_TYPE", "field": "businessTypes.2",
         "message": "'opportunity' has no business type named 'Scanners' (its business types are printers, scanners, copiers)"}]}
    star = world.error(SET, {"role": "t_refused", "object": "*", "types": ["printers"]})
    assert star == {"code": "VALIDATION_FAILED", "errors": [{
        "code": "INVALID_VALUE", "field": "businessTypes",
        "message": "a grant on * covers every object and cannot be limited to business types; limit the grants of single objects instead"}]}
    untyped = world.error(SET, {"role": "t_refused", "object": "account", "types": ["printers"]})
    assert untyped["errors"] == [{"code": "UNKNOWN_BUSINESS_TYPE", "field": "businessTypes.0",
                                  "message": "'account' has no business type named 'printers' (it has no business types)"}]
    with pytest.raises(ValidationFailed) as caught:
        sec.set_object_grant(S, "t_refused", "opportunity", ["read"], "all", "own", "printers")
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "INVALID_TYPE", "field": "business_types", "message": "must be a list of business type api names"}]
    with pytest.raises(ValidationFailed) as caught:
        sec.set_object_grant(S, "t_refused", "opportunity", ["read"], "all", "own", ["printers", 3])
    assert [(e.code, e.field) for e in caught.value.errors] == [("INVALID_TYPE", "business_types")]
    with pytest.raises(ValidationFailed) as caught:
        sec.set_object_grant(S, "t_refused", "opportunity", ["read"], "all", "own", ["copiers", "faxes"])
    assert [(e.code, e.field) for e in caught.value.errors] == [("UNKNOWN_BUSINESS_TYPE", "business_types.1")]
    assert sec.role(S, "t_refused") == before and world.policy_version() == version


# -- upgrading a database from before type-limited grants ------------------------------------------

def test_install_adds_the_column_to_a_grant_table_from_before(database_url):
    runtime = Runtime.connect(database_url).install()
    runtime.metadata.create_object(S, {"api_name": "opportunity", "label": "Opportunity", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True}]})
    for kind in TYPES:
        runtime.metadata.create_business_type(S, "opportunity", {"api_name": kind, "label": kind.title()})
    sec = runtime.security
    unit = sec.create_unit(S, "Group")["id"]
    sec.create_role(S, "rep", "Rep")
    user = sec.create_user(S, {"username": "old"})["id"]
    sec.add_membership(S, user, unit, "rep")
    token = sec.issue_token(S, "old", user_id=user)["token"]
    for kind in TYPES:
        runtime.records.create(S, "opportunity", {"name": kind, "business_type": kind, "org_unit_id": unit})
    old_layout = MetaData()
    Table("lc_role", old_layout, Column("name", String(63), primary_key=True))
    old_grants = Table("lc_object_grant", old_layout,
                       Column("role_name", String(63), ForeignKey("lc_role.name", ondelete="CASCADE"), primary_key=True),
                       Column("object_api_name", String(63), primary_key=True), Column("actions", JsonValue, nullable=False),
                       Column("read_scope", String(31), nullable=False), Column("write_scope", String(31), nullable=False))
    with runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE lc_object_grant"))
        conn.execute(text("DROP TABLE lc_security_revision"))
        old_grants.create(conn)
        conn.execute(old_grants.insert().values(role_name="rep", object_api_name="opportunity", actions=["read"],
                                                read_scope="all", write_scope="own"))
    with runtime.engine.connect() as conn:
        assert "business_types" not in {c["name"] for c in inspect(conn).get_columns("lc_object_grant")}
    runtime.close()

    upgraded = Runtime.connect(database_url).install()
    try:
        with upgraded.engine.connect() as conn:
            assert "business_types" in {c["name"] for c in inspect(conn).get_columns("lc_object_grant")}
            assert conn.execute(text("SELECT revision FROM lc_security_revision")).scalar_one() == 1
        sec = upgraded.security
        assert sec.role(S, "rep")["objects"] == [
            {"object": "opportunity", "actions": ["read"], "read_scope": "all", "write_scope": "own", "business_types": []}]

        def visible() -> list[str]:
            page = upgraded.records.query(sec.authenticate(token), "opportunity", order_by=["name"])
            return [r["name"] for r in page.records]

        assert visible() == ["copiers", "printers", "scanners"]
        sec.set_object_grant(S, "rep", "opportunity", ["read"], "all", "own", ["scanners"])
        assert visible() == ["scanners"]
        with upgraded.engine.connect() as conn:
            stored = conn.execute(select(text("business_types")).select_from(text("lc_object_grant"))).scalar_one()
        assert stored == "scanners"
        sec.set_object_grant(S, "rep", "opportunity", ["read"], "all", "own", ["scanners", "copiers"])
        with upgraded.engine.connect() as conn:
            stored = conn.execute(select(text("business_types")).select_from(text("lc_object_grant"))).scalar_one()
        assert stored == "copiers,scanners"
        assert visible() == ["copiers", "scanners"]
    finally:
        upgraded.close()
    again = Runtime.connect(database_url).install()
    try:
        assert again.security.role(S, "rep")["objects"][0]["business_types"] == ["copiers", "scanners"]
        with again.engine.connect() as conn:
            assert conn.execute(text("SELECT revision FROM lc_security_revision")).scalar_one() == 1
    finally:
        again.close()


def test_a_new_database_starts_at_the_latest_security_revision(database_url):
    runtime = Runtime.connect(database_url).install()
    try:
        with runtime.engine.connect() as conn:
            assert conn.execute(text("SELECT id, revision FROM lc_security_revision")).all() == [(1, 1)]
            assert "business_types" in {c["name"] for c in inspect(conn).get_columns("lc_object_grant")}
    finally:
        runtime.close()
