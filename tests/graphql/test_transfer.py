"""Ownership in the generated GraphQL API, over HTTP with user tokens, on SQLite and PostgreSQL:
``transfer<Object>`` (and its refusals), the owner and org unit given on create and never on update,
and the system objects ``user`` and ``org_unit``, whose create, delete, restore and transfer belong
to the admin API.

The org: ``Group`` with units ``East`` and ``West`` below it. ``ann`` and ``bob`` are sellers (deals:
read, create, update, transfer; read everything, write in their unit) in East and West; ``carl``, a
clerk in East, may not transfer; ``dora``, an own-scope seller in East, sees only her own deals.
"""
from __future__ import annotations

import uuid

import pytest
from graphql import get_introspection_query
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata import graphql_names

PASSWORD = "a long password 1"
DEAL = {"apiName": "deal", "label": "Deal", "fields": [
    {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
    {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "options": {"precision": 12, "scale": 2}},
]}
TRANSFER = """mutation ($id: ID!, $owner: ID!, $unit: ID) {
  transferDeal(id: $id, ownerId: $owner, orgUnitId: $unit) { id name ownerId orgUnitId version owner { username } orgUnit { name } }
}"""


class Org:
    def __init__(self, api):
        self.api = api
        api.data("mutation ($input: ObjectInput!) { createObject(input: $input) { apiName } }", {"input": DEAL})
        sec = api.runtime.security
        group = sec.create_unit(S, "Group")
        self.units = {"group": group["id"]}
        for name in ("East", "West"):
            self.units[name.lower()] = sec.create_unit(S, name, group["id"])["id"]
        sec.create_role(S, "seller", "Seller")
        sec.set_object_grant(S, "seller", "deal", ["read", "create", "update", "transfer"], "all", "unit")
        sec.create_role(S, "clerk", "Clerk")
        sec.set_object_grant(S, "clerk", "deal", ["read", "create", "update"], "all", "unit")
        sec.create_role(S, "own_seller", "Own seller")
        sec.set_object_grant(S, "own_seller", "deal", ["read", "create", "update", "transfer"], "own", "own")
        sec.set_field_grant(S, "clerk", "deal", "amount", "hidden")
        self.users, self.tokens = {}, {}
        for username, unit, role in (("ann", "east", "seller"), ("bob", "west", "seller"), ("carl", "east", "clerk"),
                                     ("dora", "east", "own_seller")):
            user = sec.create_user(S, {"username": username}, PASSWORD)
            sec.add_membership(S, user["id"], self.units[unit], role)
            self.users[username] = user["id"]
            self.tokens[username] = sec.issue_token(S, "test", user_id=user["id"])["token"]
        self.deal = self.data("ann", 'mutation { createDeal(input: {name: "Alpha", amount: "10"}) { id } }')["createDeal"]["id"]

    def post(self, user: str, query: str, variables: dict | None = None):
        return self.api.post(query, variables, token=self.tokens[user])

    def data(self, user: str, query: str, variables: dict | None = None):
        status, body = self.post(user, query, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def stored(self, deal_id: str) -> dict:
        """The deal as the platform holds it (service token)."""
        query = "query ($id: ID!) { deal(id: $id) { name ownerId orgUnitId version } }"
        return self.api.data(query, {"id": deal_id})["deal"]

    def history(self, deal_id: str) -> list[tuple]:
        return [(h["field"], h["event"], h["old"], h["new"], h["actor_id"])
                for h in self.api.runtime.records.history(S, "deal", deal_id)]


@pytest.fixture
def org(api):
    return Org(api)


def only_error(body: dict) -> dict:
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["path"] == ["transferDeal"], error
    return error


# -- transfer ----------------------------------------------------------------------------------
def test_a_new_record_belongs_to_its_creator_and_their_unit(org):
    assert org.stored(org.deal) == {"name": "Alpha", "ownerId": org.users["ann"], "orgUnitId": org.units["east"], "version": 1}


def test_transfer_gives_the_record_to_the_new_owner_and_their_unit(org):
    moved = org.data("ann", TRANSFER, {"id": org.deal, "owner": org.users["bob"]})["transferDeal"]
    assert moved == {"id": org.deal, "name": "Alpha", "ownerId": org.users["bob"], "orgUnitId": org.units["west"], "version": 2,
                     "owner": {"username": "bob"}, "orgUnit": {"name": "West"}}
    assert org.stored(org.deal) == {"name": "Alpha", "ownerId": org.users["bob"], "orgUnitId": org.units["west"], "version": 2}
    ann = org.users["ann"]
    assert org.history(org.deal) == [  # a transfer is kept even when no field of the object is tracked
        ("owner_id", "transferred", ann, org.users["bob"], ann),
        ("org_unit_id", "transferred", org.units["east"], org.units["west"], ann),
    ]
    # bob, now the owner, may give it back into a unit he names
    back = org.data("bob", TRANSFER, {"id": org.deal, "owner": ann, "unit": org.units["west"]})["transferDeal"]
    assert (back["ownerId"], back["orgUnitId"], back["version"]) == (ann, org.units["west"], 3)
    assert org.history(org.deal)[2:] == [("owner_id", "transferred", org.users["bob"], ann, org.users["bob"])]


def test_transfer_with_the_service_token(org):
    moved = org.api.data(TRANSFER, {"id": org.deal, "owner": org.users["carl"], "unit": org.units["group"]})["transferDeal"]
    assert (moved["ownerId"], moved["orgUnitId"], moved["orgUnit"]) == (org.users["carl"], org.units["group"], {"name": "Group"})


def test_transfer_without_the_transfer_action_is_forbidden(org):
    status, body = org.post("carl", TRANSFER, {"id": org.deal, "owner": org.users["carl"]})
    error = only_error(body)
    assert status == 200 and error["extensions"]["code"] == "FORBIDDEN"
    assert error["message"] == "None of your roles allows you to transfer Deal records."
    assert org.stored(org.deal) == {"name": "Alpha", "ownerId": org.users["ann"], "orgUnitId": org.units["east"], "version": 1}
    assert org.history(org.deal) == []


def test_transfer_of_a_record_out_of_sight_is_not_found(org):
    status, body = org.post("dora", TRANSFER, {"id": org.deal, "owner": org.users["dora"]})
    error = only_error(body)
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert error["message"] == f"There is no Deal record with id {org.deal!r}."
    assert org.stored(org.deal)["version"] == 1 and org.stored(org.deal)["ownerId"] == org.users["ann"]
    # out of the write scope also counts: bob reads every deal but writes only in West
    status, body = org.post("bob", TRANSFER, {"id": org.deal, "owner": org.users["bob"]})
    assert only_error(body)["extensions"]["code"] == "NOT_FOUND"
    assert org.stored(org.deal)["version"] == 1


@pytest.mark.parametrize("argument", ["owner", "unit"])
def test_transfer_to_someone_or_somewhere_that_does_not_exist_changes_nothing(org, argument):
    nobody = str(uuid.uuid4())
    variables = {"id": org.deal, "owner": org.users["bob"], argument: nobody}
    status, body = org.post("ann", TRANSFER, variables)
    error = only_error(body)
    field, label = ("ownerId", "User") if argument == "owner" else ("orgUnitId", "Org unit")
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"], e["message"]) for e in error["extensions"]["errors"]] == [
        ("INVALID_REFERENCE", field, f"no {label} record with id {nobody} exists")]
    assert org.stored(org.deal) == {"name": "Alpha", "ownerId": org.users["ann"], "orgUnitId": org.units["east"], "version": 1}
    assert org.history(org.deal) == []


def test_a_transferred_record_shows_only_readable_fields(org):
    org.api.runtime.security.set_object_grant(S, "clerk", "deal", ["read", "transfer"], "all", "unit")
    query = "mutation ($id: ID!, $owner: ID!) { transferDeal(id: $id, ownerId: $owner) { ownerId amount } }"
    status, body = org.post("carl", query, {"id": org.deal, "owner": org.users["carl"]})
    assert body["data"] == {"transferDeal": {"ownerId": org.users["carl"], "amount": None}}
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["transferDeal", "amount"], "FORBIDDEN")]


# -- the owner and unit on create, never on update ---------------------------------------------
def test_create_takes_an_owner_and_org_unit_within_the_callers_scope(org):
    query = "mutation ($input: DealCreateInput!) { createDeal(input: $input) { name ownerId orgUnitId } }"
    created = org.data("ann", query, {"input": {"name": "Bob's", "ownerId": org.users["bob"], "orgUnitId": org.units["east"]}})
    assert created == {"createDeal": {"name": "Bob's", "ownerId": org.users["bob"], "orgUnitId": org.units["east"]}}
    count = org.api.data("{ deals { totalCount } }")["deals"]["totalCount"]
    status, body = org.post("ann", query, {"input": {"name": "Outside", "ownerId": org.users["bob"], "orgUnitId": org.units["west"]}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN" and body["data"] is None
    assert [(e["code"], e["field"]) for e in error["extensions"]["errors"]] == [("FORBIDDEN", "input.ownerId")]
    status, body = org.post("ann", "mutation ($inputs: [DealCreateInput!]!) { createDeals(inputs: $inputs) { id } }", {"inputs": [
        {"name": "In", "orgUnitId": org.units["east"]}, {"name": "Out", "ownerId": org.users["bob"], "orgUnitId": org.units["west"]}]})
    assert [(e["code"], e["field"]) for e in body["errors"][0]["extensions"]["errors"]] == [("FORBIDDEN", "inputs.1.ownerId")]
    assert org.api.data("{ deals { totalCount } }")["deals"]["totalCount"] == count


def test_update_inputs_have_no_owner_or_unit(org):
    status, body = org.post("ann", 'mutation ($id: ID!, $u: ID!) { updateDeal(id: $id, input: {ownerId: $u}) { id } }',
                            {"id": org.deal, "u": org.users["bob"]})
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_QUERY"
    assert body["errors"][0]["message"] == "Field 'ownerId' is not defined by type 'DealUpdateInput'."
    inputs = org.api.data("""{ create: __type(name: "DealCreateInput") { inputFields { name } }
                               update: __type(name: "DealUpdateInput") { inputFields { name } } }""")
    assert [f["name"] for f in inputs["create"]["inputFields"]] == ["ownerId", "orgUnitId", "name", "amount"]
    assert [f["name"] for f in inputs["update"]["inputFields"]] == ["name", "amount"]
    assert org.stored(org.deal)["ownerId"] == org.users["ann"]


# -- system objects ----------------------------------------------------------------------------
def test_system_objects_have_only_their_update_mutations(org):
    catalog = org.api.runtime.catalog()
    assert graphql_names.mutation_fields(catalog.object("user")) == {"update": "updateUser", "update_many": "updateUsers"}
    assert graphql_names.mutation_fields(catalog.object("org_unit")) == {"update": "updateOrgUnit", "update_many": "updateOrgUnits"}
    assert graphql_names.mutation_fields(catalog.object("deal")) == {
        "create": "createDeal", "create_many": "createDeals", "update": "updateDeal", "update_many": "updateDeals",
        "delete": "deleteDeal", "restore": "restoreDeal", "transfer": "transferDeal"}
    schema = org.api.data(get_introspection_query())["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    mutations = {f["name"]: f for f in types[schema["mutationType"]["name"]]["fields"]}
    for generated in ("createUsers", "restoreUser", "transferUser", "createOrgUnits", "restoreOrgUnit", "transferOrgUnit"):
        assert generated not in mutations
    assert {"updateUser", "updateUsers", "updateOrgUnit", "updateOrgUnits", "createDeal", "createDeals", "updateDeal",
            "updateDeals", "deleteDeal", "restoreDeal", "transferDeal"} <= set(mutations)
    assert "UserCreateInput" not in types and "OrgUnitCreateInput" not in types
    # the org tree's shape is the admin API's to change: not in the unit's update input
    assert [f["name"] for f in types["OrgUnitUpdateInput"]["inputFields"]] == ["name"]
    transfer = mutations["transferDeal"]
    assert [(a["name"], a["type"]["kind"]) for a in transfer["args"]] == [("id", "NON_NULL"), ("ownerId", "NON_NULL"), ("orgUnitId", "SCALAR")]
    assert transfer["type"] == {"kind": "NON_NULL", "name": None, "ofType": {"kind": "OBJECT", "name": "Deal", "ofType": None}}


def test_updating_a_user_record_through_the_record_api(org):
    query = 'mutation ($id: ID!) { updateUser(id: $id, input: {fullName: "Ann Lee"}) { username fullName } }'
    assert org.api.data(query, {"id": org.users["ann"]}) == {"updateUser": {"username": "ann", "fullName": "Ann Lee"}}
