"""Assignment rules over HTTP GraphQL, on SQLite and PostgreSQL: an administrator saves a rule
(bad settings refused at their input paths), records created through the API go to the rule's
owners, and ``assignRecords`` runs a rule on demand for those who may transfer the records, with
FORBIDDEN and NOT_FOUND for the others."""
from __future__ import annotations

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"
CREATE_RULE = """mutation($input: AutomationInput!) { createAutomation(object: "lead", input: $input) { apiName kind settings } }"""
ASSIGN = """mutation($ids: [ID!]!, $rule: String) { assignRecords(object: "lead", ids: $ids, rule: $rule) {
  id ownerId orgUnitId entry method pool } }"""
CREATE_LEAD = "mutation($input: LeadCreateInput!) { createLead(input: $input) { id ownerId version } }"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


@pytest.fixture
def people(api):
    """North with ann and bob (reps: read their unit's leads, transfer their own), East with ivy
    (deactivated); kim, a clerk, creates leads. ``{name: (user id, token)}``, and the units."""
    rt = api.runtime
    rt.metadata.create_objects(S, [{"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
                                    "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                                               {"api_name": "budget", "label": "Budget", "type": "integer"}]}])
    sec = rt.security
    sec.create_role(S, "rep", "Rep")
    sec.create_role(S, "clerk", "Clerk")
    sec.set_object_grant(S, "rep", "lead", ["read", "create", "transfer"], "unit", "own")
    sec.set_object_grant(S, "clerk", "lead", ["read", "create"], "own", "own")
    north, east = sec.create_unit(S, "North")["id"], sec.create_unit(S, "East")["id"]
    found = {"north": north, "east": east}
    for name, unit, role in (("ann", north, "rep"), ("bob", north, "rep"), ("ivy", east, "rep"), ("kim", north, "clerk")):
        user = sec.create_user(S, {"username": name})
        sec.add_membership(S, user["id"], unit, role)
        found[name] = (user["id"], sec.issue_token(S, "tests", user_id=user["id"])["token"])
    rt.records.update(S, "user", found["ivy"][0], {"active": False})
    return found


def codes(errors):
    return [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]]


def test_bad_settings_are_refused_at_their_input_paths(api, people):
    _, errors = api.errors(CREATE_RULE, {"input": {"apiName": "routing", "kind": "assignment_rule", "label": "Routing",
                                                        "settings": {"entries": [
                                                            {"condition": "record.budget >", "method": "user", "user": UNKNOWN},
                                                            {"method": "round_robin", "group": {"unit": people["east"]}},
                                                            {"method": "pool", "pool": "nope"}]}}})
    assert errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    assert codes(errors) == [("SYNTAX_ERROR", "input.settings.entries.0.condition"), ("NOT_FOUND", "input.settings.entries.0.user"),
                             ("NO_ACTIVE_USERS", "input.settings.entries.1.group"), ("NOT_FOUND", "input.settings.entries.2.pool")]
    assert api.runtime.catalog().object("lead").automations == ()
    _, errors = api.errors(CREATE_RULE, {"input": {"apiName": "routing", "kind": "assignment_rule", "label": "Routing",
                                                   "settings": {"entries": [{"method": "user", "user": people["ann"][0]}]}}},
                           token=people["ann"][1])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


def test_records_created_through_the_api_go_round_robin(api, people):
    (ann, _), (bob, _), (_, kim_token) = people["ann"], people["bob"], people["kim"]
    settings = {"entries": [{"method": "round_robin", "users": [ann, bob]}]}
    made = api.data(CREATE_RULE, {"input": {"apiName": "routing", "kind": "assignment_rule", "label": "Routing", "settings": settings}})
    assert made["createAutomation"]["settings"] == settings

    created = [api.data(CREATE_LEAD, {"input": {"name": f"L{i}"}}, token=kim_token)["createLead"] for i in range(3)]
    assert [(c["ownerId"], c["version"]) for c in created] == [(ann, 2), (bob, 2), (ann, 2)]
    assert api.runtime.records.get(S, "lead", created[1]["id"])["owner_id"] == bob


def test_assign_records_on_demand_with_forbidden_and_not_found(api, people):
    (ann, ann_token), (bob, bob_token), (kim, kim_token) = people["ann"], people["bob"], people["kim"]
    records = api.runtime.records
    anns = records.create(S, "lead", {"name": "Ann's", "budget": 5000, "owner_id": ann})["id"]
    bobs = records.create(S, "lead", {"name": "Bob's", "owner_id": bob})["id"]
    kims = records.create(S, "lead", {"name": "Kim's", "owner_id": kim})["id"]
    api.runtime.metadata.create_automation(S, "lead", {
        "api_name": "routing", "kind": "assignment_rule", "label": "Routing", "settings": {"on_create": False, "entries": [
            {"condition": "record.budget > 1000", "method": "user", "user": bob},
            {"method": "round_robin", "group": {"unit": people["north"], "role": "rep"}}]}})

    assert api.data(ASSIGN, {"ids": [kims, anns]}) == {"assignRecords": [
        {"id": kims, "ownerId": ann, "orgUnitId": people["north"], "entry": 1, "method": "round_robin", "pool": None},
        {"id": anns, "ownerId": bob, "orgUnitId": people["north"], "entry": 0, "method": "user", "pool": None}]}

    _, errors = api.errors(ASSIGN, {"ids": [bobs]}, token=kim_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    _, errors = api.errors(ASSIGN, {"ids": [kims, bobs]}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert codes(errors) == [("FORBIDDEN", "ids.0")]
    _, errors = api.errors(ASSIGN, {"ids": [bobs, UNKNOWN, "nope"]}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert codes(errors) == [("NOT_FOUND", "ids.2")]
    _, errors = api.errors(ASSIGN, {"ids": [bobs, UNKNOWN]}, token=bob_token)
    assert codes(errors) == [("NOT_FOUND", "ids.1")]
    _, errors = api.errors(ASSIGN, {"ids": [bobs], "rule": "nothing"})
    assert (errors[0]["extensions"]["code"], errors[0]["extensions"].get("field")) == ("NOT_FOUND", "rule")
    assert records.get(S, "lead", bobs)["owner_id"] == bob

    assert api.data(ASSIGN, {"ids": [bobs]}, token=bob_token)["assignRecords"][0]["ownerId"] == bob
    assert api.data(ASSIGN, {"ids": [bobs], "rule": "routing"}, token=bob_token)["assignRecords"] == [
        {"id": bobs, "ownerId": ann, "orgUnitId": people["north"], "entry": 1, "method": "round_robin", "pool": None}]
    assert [n.record_id for n in api.runtime.notifications.inbox(api.runtime.security.authenticate(ann_token)).notifications] == [
        bobs, kims]
