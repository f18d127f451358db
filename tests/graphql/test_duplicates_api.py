"""The duplicates API over HTTP GraphQL, on SQLite and PostgreSQL: duplicate rules configured with
createAutomation (bad settings named at the input's paths), a warning refusing createLead until it
is acknowledged (structured error, nothing written), and the duplicates query ranking matches and
hiding the records the caller may not read."""
from __future__ import annotations

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app

CREATE_RULE = """mutation($input: AutomationInput!) { createAutomation(object: "lead", input: $input) { apiName kind settings } }"""
CREATE_LEAD = """mutation($input: LeadCreateInput!, $ack: [String!]) { createLead(input: $input, acknowledge: $ack) { id name } }"""
UPDATE_LEAD = """mutation($id: ID!, $input: LeadUpdateInput!, $ack: [String!]) {
  updateLead(id: $id, input: $input, acknowledge: $ack) { id name } }"""
DUPLICATES = """query($id: ID, $values: JSON, $first: Int) { duplicates(object: "lead", id: $id, values: $values, first: $first) {
  recordId visible ownerId ownerName rule score fields record } }"""
LEADS = "{ leads { nodes { name } } }"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


@pytest.fixture
def people(api):
    """ann and bob sell in East (each reads their own leads); cat manages (reads all): ``{name: (id, token)}``."""
    rt = api.runtime
    rt.metadata.create_objects(S, [{"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
                                    "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                                               {"api_name": "phone", "label": "Phone", "type": "phone"},
                                               {"api_name": "budget", "label": "Budget", "type": "decimal",
                                                "options": {"precision": 12, "scale": 2}}]}])
    sec = rt.security
    east = sec.create_unit(S, "East")["id"]
    sec.create_role(S, "sales", "Sales")
    sec.create_role(S, "manager", "Manager")
    sec.set_object_grant(S, "sales", "lead", ["read", "create", "update"], "own", "own")
    sec.set_object_grant(S, "manager", "lead", ["read", "create", "update"], "all", "all")
    found = {}
    for name, role in (("ann", "sales"), ("bob", "sales"), ("cat", "manager")):
        user = sec.create_user(S, {"username": name})
        sec.add_membership(S, user["id"], east, role)
        found[name] = (user["id"], sec.issue_token(S, "tests", user_id=user["id"])["token"])
    return found


def rule(api_name="names", fields=None, action="warn", **settings):
    return {"apiName": api_name, "kind": "duplicate_rule", "label": api_name,
            "settings": {"fields": fields or [{"field": "name", "method": "normalized"}], "action": action, **settings}}


def names(api):
    return sorted(n["name"] for n in api.data(LEADS)["leads"]["nodes"])


def test_bad_settings_are_named_at_the_input_paths_and_nothing_is_saved(api, people):
    _, errors = api.errors(CREATE_RULE, {"input": rule(fields=[{"field": "nothing", "method": "exact"},
                                                               {"field": "budget", "method": "fuzzy", "threshold": 1.2}],
                                                       action="shout", condition="record.name ==")})
    assert errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [
        ("UNKNOWN_FIELD", "input.settings.fields.0.field"), ("INVALID_FIELD_TYPE", "input.settings.fields.1.field"),
        ("OUT_OF_RANGE", "input.settings.fields.1.threshold"), ("INVALID_VALUE", "input.settings.action"),
        ("SYNTAX_ERROR", "input.settings.condition")]
    _, errors = api.errors(CREATE_RULE, {"input": rule()}, token=people["ann"][1])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert api.runtime.catalog().object("lead").automations == ()

    made = api.data(CREATE_RULE, {"input": rule()})["createAutomation"]
    assert made == {"apiName": "names", "kind": "duplicate_rule",
                    "settings": {"fields": [{"field": "name", "method": "normalized"}], "action": "warn"}}


def test_a_warning_refuses_create_lead_until_acknowledged(api, people):
    (_, ann_token), (_, bob_token) = people["ann"], people["bob"]
    api.data(CREATE_RULE, {"input": rule()})
    anns = api.data(CREATE_LEAD, {"input": {"name": "Acme Trading", "phone": "13800138000"}}, token=ann_token)["createLead"]

    status, errors = api.errors(CREATE_LEAD, {"input": {"name": "ACME  trading."}}, token=bob_token)
    assert status == 200 and errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    problem = errors[0]["extensions"]["errors"][0]
    assert (problem["code"], problem["field"]) == ("POSSIBLE_DUPLICATE", "input.name")
    assert problem["ctx"] == {"rule": "names", "action": "warn", "fields": ["name"],
                              "matches": [{"id": None, "owner": "ann", "visible": False, "score": 1.0}]}
    assert "owned by ann" in problem["message"] and anns["id"] not in str(errors)
    _, errors = api.errors(CREATE_LEAD, {"input": {"name": "ACME  trading."}, "ack": ["SOMETHING_ELSE"]}, token=bob_token)
    assert errors[0]["extensions"]["errors"][0]["code"] == "POSSIBLE_DUPLICATE"
    assert names(api) == ["Acme Trading"]

    bobs = api.data(CREATE_LEAD, {"input": {"name": "ACME  trading."}, "ack": ["POSSIBLE_DUPLICATE"]}, token=bob_token)["createLead"]
    assert names(api) == ["ACME  trading.", "Acme Trading"]
    other = api.data(CREATE_LEAD, {"input": {"name": "Zenith"}}, token=bob_token)["createLead"]
    _, errors = api.errors(UPDATE_LEAD, {"id": other["id"], "input": {"name": "acme trading"}}, token=bob_token)
    assert [m["id"] for m in errors[0]["extensions"]["errors"][0]["ctx"]["matches"]] in ([bobs["id"], None], [None, bobs["id"]])
    assert api.data(UPDATE_LEAD, {"id": other["id"], "input": {"name": "acme trading"}, "ack": ["POSSIBLE_DUPLICATE"]},
                    token=bob_token)["updateLead"]["name"] == "acme trading"


def test_a_block_refuses_even_when_acknowledged(api, people):
    api.data(CREATE_RULE, {"input": rule("phones", [{"field": "phone", "method": "phone"}], action="block")})
    api.data(CREATE_LEAD, {"input": {"name": "Acme", "phone": "+86 138-0013-8000"}})
    _, errors = api.errors(CREATE_LEAD, {"input": {"name": "Other", "phone": "13800138000"}, "ack": ["POSSIBLE_DUPLICATE", "DUPLICATE"]})
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("DUPLICATE", "input.phone")]
    assert names(api) == ["Acme"]


def test_the_duplicates_query_ranks_matches_and_hides_what_the_caller_cannot_read(api, people):
    (ann, ann_token), (_, bob_token), (cat, cat_token) = people["ann"], people["bob"], people["cat"]
    api.data(CREATE_RULE, {"input": rule("fuzzy", [{"field": "name", "method": "fuzzy", "threshold": 0.5}])})
    api.data(CREATE_RULE, {"input": rule("phones", [{"field": "phone", "method": "phone"}])})
    ack = ["POSSIBLE_DUPLICATE"]
    subject = api.data(CREATE_LEAD, {"input": {"name": "Acme Trading", "phone": "13800138000", "budget": "10.50"}},
                       token=ann_token)["createLead"]
    close = api.data(CREATE_LEAD, {"input": {"name": "Acme Tradin", "budget": "7"}, "ack": ack}, token=ann_token)["createLead"]
    api.data(CREATE_LEAD, {"input": {"name": "Zenith", "phone": "+86 13800138000"}, "ack": ack}, token=cat_token)

    found = api.data(DUPLICATES, {"id": subject["id"]}, token=ann_token)["duplicates"]
    assert found == [
        {"recordId": None, "visible": False, "ownerId": cat, "ownerName": "cat", "rule": "phones", "score": 1.0, "fields": ["phone"],
         "record": None},
        {"recordId": close["id"], "visible": True, "ownerId": ann, "ownerName": "ann", "rule": "fuzzy", "score": found[1]["score"],
         "fields": ["name"], "record": found[1]["record"]}]
    assert 0.5 < found[1]["score"] < 1
    assert (found[1]["record"]["name"], found[1]["record"]["budget"]) == ("Acme Tradin", "7.00")
    assert isinstance(found[1]["record"]["created_at"], str)

    proposed = api.data(DUPLICATES, {"values": {"name": "acme trading"}, "first": 1}, token=cat_token)["duplicates"]
    assert [(m["recordId"], m["score"]) for m in proposed] == [(subject["id"], 1.0)]

    _, errors = api.errors(DUPLICATES, {"id": subject["id"]}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    _, errors = api.errors(DUPLICATES, {"values": {"nme": "x"}, "first": 500}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("OUT_OF_RANGE", "first"),
                                                                                      ("UNKNOWN_FIELD", "values.nme")]
