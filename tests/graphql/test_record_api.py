"""The generated record API, end to end over HTTP, on SQLite and PostgreSQL.

Every test defines its objects through the metadata API (``createObject``, then ``createField``),
exactly as a client would, and then works only through the generated GraphQL API: records of every
field type written and read back, filters, orders, keyset pages, aggregates, optimistic locking,
all-or-nothing bulk writes, the recycle bin, master-detail children and the GraphiQL endpoints.
"""
from __future__ import annotations

import base64
import json
import uuid

import pytest
from graphql import get_introspection_query

# -- the objects, defined through the metadata API ---------------------------------------------------


def choices(*names, inactive=()):
    return {"values": [{"apiName": n, "label": n.replace("_", " ").title(), "active": n not in inactive} for n in names]}


ACCOUNT = {
    "apiName": "account", "label": "Account", "pluralLabel": "Accounts",
    "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
        {"apiName": "revenue", "label": "Revenue", "type": "DECIMAL", "options": {"precision": 14, "scale": 2}},
    ],
}

DEAL = {
    "apiName": "deal", "label": "Deal", "pluralLabel": "Deals",
    "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True, "options": {"maxLength": 40}},
        {"apiName": "notes", "label": "Notes", "type": "TEXTAREA"},
        {"apiName": "quantity", "label": "Quantity", "type": "INTEGER", "options": {"min": "0", "max": "1000"}},
        {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "options": {"precision": 12, "scale": 2}},
        {"apiName": "price", "label": "Price", "type": "CURRENCY"},
        {"apiName": "discount", "label": "Discount", "type": "PERCENT"},
        {"apiName": "closed", "label": "Closed", "type": "BOOLEAN"},
        {"apiName": "close_date", "label": "Close date", "type": "DATE"},
        {"apiName": "signed_at", "label": "Signed at", "type": "DATETIME"},
        {"apiName": "phase", "label": "Phase", "type": "PICKLIST",
         "options": choices("closed_lost", "closed_won", "legacy", "prospect", "quote", inactive=("legacy",))},
    ],
}

DEAL_FIELDS_ADDED_LATER = [
    {"apiName": "email", "label": "Email", "type": "EMAIL"},
    {"apiName": "phone", "label": "Phone", "type": "PHONE"},
    {"apiName": "website", "label": "Website", "type": "URL"},
    {"apiName": "tags", "label": "Tags", "type": "MULTI_PICKLIST", "options": choices("hot", "cold", "vip")},
    {"apiName": "account", "label": "Account", "type": "LOOKUP", "options": {"target": "account"}},
    {"apiName": "number", "label": "Number", "type": "AUTO_NUMBER", "options": {"format": "D-{0000}"}},
    {"apiName": "location", "label": "Location", "type": "GEOLOCATION"},
    {"apiName": "extra", "label": "Extra", "type": "JSON"},
]

LINE_ITEM = {
    "apiName": "line_item", "label": "Line item", "pluralLabel": "Line items",
    "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
        {"apiName": "quantity", "label": "Quantity", "type": "INTEGER"},
        {"apiName": "deal", "label": "Deal", "type": "MASTER_DETAIL", "required": True, "options": {"target": "deal"}},
    ],
}

FIELD_TYPES = {
    "TEXT", "TEXTAREA", "INTEGER", "DECIMAL", "CURRENCY", "PERCENT", "BOOLEAN", "DATE", "DATETIME", "EMAIL", "PHONE",
    "URL", "PICKLIST", "MULTI_PICKLIST", "LOOKUP", "MASTER_DETAIL", "AUTO_NUMBER", "GEOLOCATION", "JSON",
}

CREATE_OBJECT = """mutation ($input: ObjectInput!) {
  createObject(input: $input) { apiName graphqlType fields { apiName type graphqlName relationName } }
}"""
CREATE_FIELD = """mutation ($object: String!, $input: FieldInput!) {
  createField(object: $object, input: $input) { apiName type graphqlName relationName }
}"""


def define_object(api, definition):
    return api.data(CREATE_OBJECT, {"input": definition})["createObject"]


def add_field(api, object_name, field):
    return api.data(CREATE_FIELD, {"object": object_name, "input": field})["createField"]


@pytest.fixture
def crm(api):
    """``account``, ``deal`` (a field of every type but master-detail) and ``line_item`` (detail of deal)."""
    define_object(api, ACCOUNT)
    define_object(api, DEAL)
    for field in DEAL_FIELDS_ADDED_LATER:
        add_field(api, "deal", field)
    define_object(api, LINE_ITEM)
    return api


# -- record helpers -----------------------------------------------------------------------------------

DEAL_SELECTION = """id version name notes quantity amount price discount closed closeDate signedAt email phone website
  phase tags accountId number location { latitude longitude } extra"""

CREATE_DEAL = "mutation ($input: DealCreateInput!) { createDeal(input: $input) { %s } }" % DEAL_SELECTION
CREATE_DEALS = "mutation ($inputs: [DealCreateInput!]!) { createDeals(inputs: $inputs) { %s } }" % DEAL_SELECTION
GET_DEAL = "query ($id: ID!, $bin: Boolean) { deal(id: $id, inRecycleBin: $bin) { %s } }" % DEAL_SELECTION
UPDATE_DEAL = """mutation ($id: ID!, $input: DealUpdateInput!, $expected: Int) {
  updateDeal(id: $id, input: $input, expectedVersion: $expected) { %s }
}""" % DEAL_SELECTION
UPDATE_DEALS = "mutation ($items: [DealUpdateItem!]!) { updateDeals(items: $items) { %s } }" % DEAL_SELECTION
DELETE_DEAL = "mutation ($id: ID!) { deleteDeal(id: $id) }"
RESTORE_DEAL = "mutation ($id: ID!) { restoreDeal(id: $id) { id version name } }"
LIST_DEALS = """query ($filter: DealFilter, $orderBy: [DealOrderBy!], $first: Int, $after: String, $bin: Boolean) {
  deals(filter: $filter, orderBy: $orderBy, first: $first, after: $after, inRecycleBin: $bin) {
    nodes { id name } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def create_account(api, name, revenue=None):
    query = "mutation ($input: AccountCreateInput!) { createAccount(input: $input) { id } }"
    return api.data(query, {"input": {"name": name, "revenue": revenue}})["createAccount"]["id"]


def create_deal(api, **values):
    return api.data(CREATE_DEAL, {"input": {"name": "Deal", **values}})["createDeal"]


def create_deals(api, inputs):
    return api.data(CREATE_DEALS, {"inputs": inputs})["createDeals"]


def get_deal(api, record_id, *, recycle_bin=False):
    return api.data(GET_DEAL, {"id": record_id, "bin": recycle_bin})["deal"]


def list_deals(api, filter=None, order_by=None, *, first=100, recycle_bin=False):
    variables = {"filter": filter, "orderBy": order_by, "first": first, "bin": recycle_bin}
    return api.data(LIST_DEALS, variables)["deals"]["nodes"]


def deal_names(api, filter=None, order_by=None):
    return [node["name"] for node in list_deals(api, filter, order_by)]


def deal_count(api, filter=None):
    return api.data("query ($f: DealFilter) { deals(filter: $f) { totalCount } }", {"f": filter})["deals"]["totalCount"]


def only_error(status, errors, code, http_status=200):
    """The single error of a response, checked for its code; never an internal error or a 500."""
    assert status == http_status, errors
    assert len(errors) == 1, errors
    assert errors[0]["extensions"]["code"] == code, errors
    return errors[0]


def field_problems(error):
    """``{graphql path: code}`` of a VALIDATION_FAILED error."""
    assert error["extensions"]["code"] == "VALIDATION_FAILED", error
    return {problem["field"]: problem["code"] for problem in error["extensions"]["errors"]}


def validation_problems(api, query, variables):
    return field_problems(only_error(*api.errors(query, variables), "VALIDATION_FAILED"))


# == 1. every field type: define, create, read, update, delete, restore ==============================


def test_metadata_api_defines_an_object_with_every_field_type(crm):
    query = """{ deal: object(apiName: "deal") { graphqlType fields { apiName type graphqlName relationName
                   options { maxLength min max precision scale format target values { apiName active graphqlName } } } }
                 item: object(apiName: "line_item") { graphqlType fields { apiName type graphqlName relationName options { target } } } }"""
    data = crm.data(query)
    deal = {f["apiName"]: f for f in data["deal"]["fields"]}
    item = {f["apiName"]: f for f in data["item"]["fields"]}
    assert data["deal"]["graphqlType"] == "Deal" and data["item"]["graphqlType"] == "LineItem"
    assert list(deal) == [f["apiName"] for f in DEAL["fields"] + DEAL_FIELDS_ADDED_LATER]
    assert {f["type"] for f in [*deal.values(), *item.values()]} == FIELD_TYPES
    assert deal["name"]["options"]["maxLength"] == 40
    assert (deal["quantity"]["options"]["min"], deal["quantity"]["options"]["max"]) == ("0", "1000")
    assert (deal["amount"]["options"]["precision"], deal["amount"]["options"]["scale"]) == (12, 2)
    assert deal["number"]["options"]["format"] == "D-{0000}"
    assert {v["graphqlName"]: v["active"] for v in deal["phase"]["options"]["values"]} == {
        "CLOSED_LOST": True, "CLOSED_WON": True, "LEGACY": False, "PROSPECT": True, "QUOTE": True}
    assert (deal["account"]["graphqlName"], deal["account"]["relationName"]) == ("accountId", "account")
    assert (deal["close_date"]["graphqlName"], deal["close_date"]["relationName"]) == ("closeDate", None)
    assert item["deal"]["options"]["target"] == "deal"
    assert (item["deal"]["graphqlName"], item["deal"]["relationName"]) == ("dealId", "deal")


def test_create_round_trips_a_value_of_every_type(crm):
    acme = create_account(crm, "Acme")
    document = {"source": "web", "scores": [1, 2.5, None], "nested": {"ok": True, "text": "ü"}}
    deal = create_deal(
        crm, name="Big deal", notes="Line one\nLine two", quantity=1000, amount="1234.5", price=99, discount=12.5,
        closed=False, closeDate="2026-03-31", signedAt="2026-03-01T09:30:00.123456+08:00", email="Bob@Example.COM",
        phone="+1 (555) 010-9999", website="https://example.com/deals?id=1", phase="CLOSED_WON", tags=["VIP", "HOT"],
        accountId=acme, location={"latitude": 52.52, "longitude": -13.405}, extra=document,
    )
    expected = {
        "version": 1, "name": "Big deal", "notes": "Line one\nLine two", "quantity": 1000, "amount": "1234.50",
        "price": "99.00", "discount": "12.50", "closed": False, "closeDate": "2026-03-31",
        "signedAt": "2026-03-01T01:30:00.123456+00:00", "email": "Bob@example.com", "phone": "+1 (555) 010-9999",
        "website": "https://example.com/deals?id=1", "phase": "CLOSED_WON", "accountId": acme, "number": "D-0001",
        "location": {"latitude": 52.52, "longitude": -13.405}, "extra": document,
    }
    assert sorted(deal.pop("tags")) == ["HOT", "VIP"]
    assert {k: v for k, v in deal.items() if k != "id"} == expected
    read = get_deal(crm, deal["id"])
    assert sorted(read.pop("tags")) == ["HOT", "VIP"]
    assert read == {"id": deal["id"], **expected}


def test_a_record_created_empty_reads_back_nulls(crm):
    deal = create_deal(crm, name="Bare")
    assert deal["number"] == "D-0001" and deal["version"] == 1
    assert {k for k, v in deal.items() if v is not None} == {"id", "version", "name", "number"}
    assert get_deal(crm, deal["id"]) == deal


def test_read_by_id_gives_the_lookup_relation_raw_id_and_system_fields(crm):
    acme = create_account(crm, "Acme", "5000")
    ann = crm.data('mutation { createUser(input: {username: "ann"}) { id } }')["createUser"]["id"]
    created = create_deal(crm, name="Alpha", accountId=acme, ownerId=ann)
    query = """query ($id: ID!) { deal(id: $id) { id name version createdAt updatedAt deletedAt ownerId createdById
                 owner { id username } accountId account { id name revenue } } }"""
    deal = crm.data(query, {"id": created["id"]})["deal"]
    assert deal["id"] == created["id"] and deal["name"] == "Alpha" and deal["version"] == 1
    assert deal["accountId"] == acme
    assert deal["account"] == {"id": acme, "name": "Acme", "revenue": "5000.00"}
    assert deal["createdAt"].endswith("+00:00") and deal["updatedAt"].endswith("+00:00")
    assert deal["deletedAt"] is None
    assert deal["ownerId"] == ann and deal["owner"] == {"id": ann, "username": "ann"}
    assert deal["createdById"] is None  # written by the API token's system actor, which is no user
    # the relation is also given by the mutation itself (aliases included)
    written = crm.data("""mutation ($a: ID) { createDeal(input: {name: "Beta", accountId: $a}) {
                            accountId company: account { name } } }""", {"a": acme})["createDeal"]
    assert written == {"accountId": acme, "company": {"name": "Acme"}}


def test_fields_added_to_an_object_with_records_are_served_at_once(crm):
    define_object(crm, {"apiName": "ticket", "label": "Ticket", "fields": [{"apiName": "title", "label": "Title", "type": "TEXT"}]})
    for title in ("T0", "T1", "T2"):
        crm.data("mutation ($t: String) { createTicket(input: {title: $t}) { id } }", {"t": title})
    add_field(crm, "ticket", {"apiName": "ref", "label": "Ref", "type": "AUTO_NUMBER", "options": {"format": "T-{000}", "start": 10}})
    add_field(crm, "ticket", {"apiName": "score", "label": "Score", "type": "DECIMAL", "options": {"precision": 6, "scale": 3}})
    created = crm.data('mutation { createTicket(input: {title: "T3", score: 1.5}) { ref score } }')["createTicket"]
    assert created == {"ref": "T-013", "score": "1.500"}
    tickets = crm.data("{ tickets(orderBy: [REF_DESC]) { nodes { title ref score } } }")["tickets"]["nodes"]
    assert tickets == [{"title": "T3", "ref": "T-013", "score": "1.500"}, {"title": "T2", "ref": "T-012", "score": None},
                       {"title": "T1", "ref": "T-011", "score": None}, {"title": "T0", "ref": "T-010", "score": None}]


def test_auto_numbers_are_assigned_in_creation_order(crm):
    first = create_deal(crm, name="First")
    batch = create_deals(crm, [{"name": f"Batch {i}"} for i in range(3)])
    last = create_deal(crm, name="Last")
    assert [first["number"], *(d["number"] for d in batch), last["number"]] == [
        "D-0001", "D-0002", "D-0003", "D-0004", "D-0005"]
    assert crm.data('{ deals(filter: {number: {eq: "D-0003"}}) { nodes { name } } }')["deals"]["nodes"] == [{"name": "Batch 1"}]


def test_inactive_picklist_value_is_deprecated_in_the_enum_and_refused_on_write(crm):
    query = '{ __type(name: "DealPhase") { enumValues(includeDeprecated: true) { name isDeprecated } } }'
    values = crm.data(query)["__type"]["enumValues"]
    assert {v["name"]: v["isDeprecated"] for v in values} == {
        "CLOSED_LOST": False, "CLOSED_WON": False, "LEGACY": True, "PROSPECT": False, "QUOTE": False}
    assert validation_problems(crm, CREATE_DEAL, {"input": {"name": "Old", "phase": "LEGACY"}}) == {"input.phase": "INVALID_CHOICE"}
    assert deal_count(crm) == 0


A_MISSING_ID = str(uuid.uuid4())

BAD_VALUES = [
    ("name", "x" * 41, "input.name", "TOO_LONG"),
    ("name", "", "input.name", "REQUIRED"),
    ("name", None, "input.name", "REQUIRED"),
    ("quantity", 1001, "input.quantity", "OUT_OF_RANGE"),
    ("quantity", -1, "input.quantity", "OUT_OF_RANGE"),
    ("amount", "12.345", "input.amount", "TOO_PRECISE"),
    ("amount", "12345678901", "input.amount", "OUT_OF_RANGE"),
    ("amount", "twelve", "input.amount", "INVALID_FORMAT"),
    ("discount", 1.005, "input.discount", "TOO_PRECISE"),
    ("closeDate", "2026-02-30", "input.closeDate", "INVALID_FORMAT"),
    ("closeDate", "30/01/2026", "input.closeDate", "INVALID_FORMAT"),
    ("signedAt", "2026-03-01T09:30:00", "input.signedAt", "INVALID_FORMAT"),
    ("email", "not-an-email", "input.email", "INVALID_FORMAT"),
    ("phone", "call me", "input.phone", "INVALID_FORMAT"),
    ("website", "ftp://example.com", "input.website", "INVALID_FORMAT"),
    ("tags", ["HOT", "HOT"], "input.tags", "DUPLICATE_VALUES"),
    ("accountId", A_MISSING_ID, "input.accountId", "INVALID_REFERENCE"),
    ("accountId", "acme", "input.accountId", "INVALID_FORMAT"),
    ("location", {"latitude": 91, "longitude": 0}, "input.location.latitude", "OUT_OF_RANGE"),
]


def test_create_refuses_each_bad_value_naming_its_graphql_path(crm):
    wrong = []
    for key, value, path, code in BAD_VALUES:
        problems = validation_problems(crm, CREATE_DEAL, {"input": {"name": "Deal", key: value}})
        if problems != {path: code}:
            wrong.append((key, value, {path: code}, problems))
    assert not wrong, "key, value, expected, found:\n" + "\n".join(map(repr, wrong))
    assert deal_count(crm) == 0


def test_create_reports_every_problem_at_once_and_a_missing_required_value(crm):
    problems = validation_problems(crm, CREATE_DEAL, {"input": {"quantity": 5000, "closeDate": "2026-13-01", "amount": "1.001"}})
    assert problems == {"input.name": "REQUIRED", "input.quantity": "OUT_OF_RANGE", "input.closeDate": "INVALID_FORMAT",
                        "input.amount": "TOO_PRECISE"}
    assert deal_count(crm) == 0


@pytest.mark.parametrize("input_text", ['{name: "X", number: "D-9999"}', '{name: "X", quantity: "five"}', '{name: "X", phase: WON}'])
def test_inputs_outside_the_input_type_are_bad_queries(crm, input_text):
    status, errors = crm.errors("mutation { createDeal(input: %s) { id } }" % input_text)
    assert status == 400 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}
    assert deal_count(crm) == 0


def test_a_variable_of_the_wrong_graphql_type_is_a_bad_query(crm):
    status, errors = crm.errors(CREATE_DEAL, {"input": {"name": "X", "quantity": "five"}})
    assert status == 400 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}


@pytest.mark.parametrize("record_id", [A_MISSING_ID, "not-an-id"])
def test_reading_a_missing_record_is_not_found(crm, record_id):
    error = only_error(*crm.errors(GET_DEAL, {"id": record_id}), "NOT_FOUND")
    assert error["path"] == ["deal"]


def test_update_clears_explicit_nulls_keeps_omitted_fields_and_bumps_the_version(crm):
    acme = create_account(crm, "Acme")
    deal = create_deal(crm, name="Alpha", amount="10", quantity=3, closeDate="2026-01-01", tags=["HOT"], accountId=acme,
                       location={"latitude": 1.5, "longitude": 2.5}, extra={"a": 1}, phase="QUOTE")
    variables = {"id": deal["id"], "input": {"amount": "20.5", "closeDate": None, "tags": None, "accountId": None,
                                             "location": None, "extra": None, "phase": "CLOSED_WON"}}
    updated = crm.data(UPDATE_DEAL, variables)["updateDeal"]
    expected = {**deal, "version": 2, "amount": "20.50", "closeDate": None, "tags": None, "accountId": None,
                "location": None, "extra": None, "phase": "CLOSED_WON"}
    assert updated == expected
    assert get_deal(crm, deal["id"]) == expected
    again = crm.data(UPDATE_DEAL, {"id": deal["id"], "input": {"quantity": 4}})["updateDeal"]
    assert again == {**expected, "version": 3, "quantity": 4}
    relation = crm.data("query ($id: ID!) { deal(id: $id) { account { id } createdAt updatedAt } }", {"id": deal["id"]})["deal"]
    assert relation["account"] is None and relation["updatedAt"].endswith("+00:00")


def test_update_refuses_bad_values_with_paths_and_changes_nothing(crm):
    deal = create_deal(crm, name="Alpha", quantity=3)
    variables = {"id": deal["id"], "input": {"name": None, "quantity": 5000, "closeDate": "2026-02-30", "amount": "1"}}
    assert validation_problems(crm, UPDATE_DEAL, variables) == {
        "input.name": "REQUIRED", "input.quantity": "OUT_OF_RANGE", "input.closeDate": "INVALID_FORMAT"}
    gone = create_account(crm, "Gone")
    crm.data("mutation ($id: ID!) { deleteAccount(id: $id) }", {"id": gone})
    for target in (gone, deal["id"]):  # an account in the recycle bin; a record of another object
        problems = validation_problems(crm, UPDATE_DEAL, {"id": deal["id"], "input": {"accountId": target}})
        assert problems == {"input.accountId": "INVALID_REFERENCE"}
    assert get_deal(crm, deal["id"]) == deal


@pytest.mark.parametrize("record_id", [A_MISSING_ID, "not-an-id"])
def test_updating_or_deleting_a_missing_record_is_not_found(crm, record_id):
    only_error(*crm.errors(UPDATE_DEAL, {"id": record_id, "input": {"name": "X"}}), "NOT_FOUND")
    only_error(*crm.errors(DELETE_DEAL, {"id": record_id}), "NOT_FOUND")


def test_delete_moves_the_record_to_the_recycle_bin(crm):
    keep = create_deal(crm, name="Keep")
    gone = create_deal(crm, name="Gone")
    assert crm.data(DELETE_DEAL, {"id": gone["id"]}) == {"deleteDeal": gone["id"]}

    error = only_error(*crm.errors(GET_DEAL, {"id": gone["id"]}), "NOT_FOUND")
    assert error["path"] == ["deal"]
    binned = crm.data("query ($id: ID!) { deal(id: $id, inRecycleBin: true) { id name deletedAt version } }", {"id": gone["id"]})["deal"]
    assert binned["id"] == gone["id"] and binned["name"] == "Gone" and binned["deletedAt"].endswith("+00:00")
    assert [d["id"] for d in list_deals(crm)] == [keep["id"]]
    assert [d["id"] for d in list_deals(crm, recycle_bin=True)] == [gone["id"]]
    assert deal_count(crm) == 1
    only_error(*crm.errors(GET_DEAL, {"id": keep["id"], "bin": True}), "NOT_FOUND")
    # a deleted record can be neither deleted again nor updated
    only_error(*crm.errors(DELETE_DEAL, {"id": gone["id"]}), "NOT_FOUND")
    only_error(*crm.errors(UPDATE_DEAL, {"id": gone["id"], "input": {"name": "Back"}}), "NOT_FOUND")
    assert get_deal(crm, gone["id"], recycle_bin=True)["name"] == "Gone"


def create_line_items(api, deal_id, *items):
    query = "mutation ($inputs: [LineItemCreateInput!]!) { createLineItems(inputs: $inputs) { id name } }"
    inputs = [{"name": name, "quantity": quantity, "dealId": deal_id} for name, quantity in items]
    return [item["id"] for item in api.data(query, {"inputs": inputs})["createLineItems"]]


def line_item_names(api, *, recycle_bin=False):
    query = "query ($bin: Boolean) { lineItems(inRecycleBin: $bin, orderBy: [NAME_ASC]) { nodes { name } } }"
    return [n["name"] for n in api.data(query, {"bin": recycle_bin})["lineItems"]["nodes"]]


def test_restoring_a_master_brings_back_the_details_deleted_with_it(crm):
    deal = create_deal(crm, name="Master")
    other = create_deal(crm, name="Other")
    first, second, separately = create_line_items(crm, deal["id"], ("L1", 1), ("L2", 2), ("L3", 3))
    create_line_items(crm, other["id"], ("O1", 1))
    crm.data("mutation ($id: ID!) { deleteLineItem(id: $id) }", {"id": separately})

    crm.data(DELETE_DEAL, {"id": deal["id"]})
    assert line_item_names(crm) == ["O1"]
    assert line_item_names(crm, recycle_bin=True) == ["L1", "L2", "L3"]
    only_error(*crm.errors("query ($id: ID!) { lineItem(id: $id) { id } }", {"id": first}), "NOT_FOUND")
    # a detail cannot come back without its master
    error = only_error(*crm.errors("mutation ($id: ID!) { restoreLineItem(id: $id) { id } }", {"id": first}), "CONFLICT")
    assert error["extensions"]["field"] == "dealId"
    assert line_item_names(crm) == ["O1"]

    restored = crm.data(RESTORE_DEAL, {"id": deal["id"]})["restoreDeal"]
    assert restored["id"] == deal["id"] and restored["name"] == "Master" and restored["version"] > deal["version"]
    assert get_deal(crm, deal["id"])["name"] == "Master"
    assert line_item_names(crm) == ["L1", "L2", "O1"]
    assert line_item_names(crm, recycle_bin=True) == ["L3"]
    children = crm.data("query ($id: ID!) { deal(id: $id) { lineItems(orderBy: [NAME_ASC]) { totalCount nodes { id } } } }",
                        {"id": deal["id"]})["deal"]["lineItems"]
    assert children == {"totalCount": 2, "nodes": [{"id": first}, {"id": second}]}
    only_error(*crm.errors(RESTORE_DEAL, {"id": deal["id"]}), "NOT_FOUND")
    # the detail deleted on its own comes back on its own
    crm.data("mutation ($id: ID!) { restoreLineItem(id: $id) { id } }", {"id": separately})
    assert line_item_names(crm) == ["L1", "L2", "L3", "O1"] and line_item_names(crm, recycle_bin=True) == []


# == 2. filters ========================================================================================

# name, amount, quantity, closeDate, signedAt, phase, tags, account, closed, notes
DEALS = [
    ("Alpha", "100.00", 5, "2026-01-15", "2026-01-15T10:00:00Z", "PROSPECT", ["HOT"], "Acme", False, "First call went well"),
    ("Bravo", "250.50", 10, "2026-02-20", "2026-01-31T23:30:00-05:00", "QUOTE", ["HOT", "VIP"], "Acme", True, None),
    ("Charlie", None, 0, "2026-04-01", None, "CLOSED_WON", None, "Globex", True, "Renewal 100% confirmed"),
    ("Delta 50% off", "75.25", None, None, "2026-03-10T08:00:00+01:00", "CLOSED_LOST", ["COLD"], None, False, None),
    ("Echo_1", "1000.00", 20, "2026-07-04", "2026-07-04T12:00:00Z", None, ["VIP"], "Globex", None, None),
    ("Echoes", "250.50", 3, "2025-12-31", None, "PROSPECT", ["COLD", "HOT"], "Initech", False, None),
    ("Foxtrot", "0", 1, "2026-05-05", None, "QUOTE", None, "Initech", None, None),
]
NAMES = [d[0] for d in DEALS]


def everyone_but(*names):
    return [n for n in NAMES if n not in names]


@pytest.fixture
def seeded(crm):
    """The accounts and the deals above (created in that order); ``crm.ids`` maps names to ids."""
    ids = {
        "Acme": create_account(crm, "Acme", "5000"),
        "Globex": create_account(crm, "Globex", "120"),
        "Initech": create_account(crm, "Initech"),
    }
    inputs = [
        {"name": name, "amount": amount, "quantity": quantity, "closeDate": close, "signedAt": signed, "phase": phase,
         "tags": tags, "accountId": ids.get(account), "closed": closed, "notes": notes}
        for name, amount, quantity, close, signed, phase, tags, account, closed, notes in DEALS
    ]
    inputs[0].update(location={"latitude": 10.0, "longitude": 20.0}, extra={"k": [1]}, email="alpha@acme.example")
    for deal in create_deals(crm, inputs):
        ids[deal["name"]] = deal["id"]
    crm.ids = ids
    return crm


FILTERS = {
    "decimal": [
        ({"amount": {"eq": "250.5"}}, ["Bravo", "Echoes"]),
        ({"amount": {"eq": 100}}, ["Alpha"]),
        ({"amount": {"ne": "250.50"}}, ["Alpha", "Charlie", "Delta 50% off", "Echo_1", "Foxtrot"]),
        ({"amount": {"in": ["100", "0.00"]}}, ["Alpha", "Foxtrot"]),
        ({"amount": {"notIn": ["100", "250.50"]}}, ["Charlie", "Delta 50% off", "Echo_1", "Foxtrot"]),
        ({"amount": {"lt": "100"}}, ["Delta 50% off", "Foxtrot"]),
        ({"amount": {"lte": "100"}}, ["Alpha", "Delta 50% off", "Foxtrot"]),
        ({"amount": {"gt": "250.5"}}, ["Echo_1"]),
        ({"amount": {"gte": "250.50"}}, ["Bravo", "Echo_1", "Echoes"]),
        ({"amount": {"isNull": True}}, ["Charlie"]),
        ({"amount": {"isNull": False}}, everyone_but("Charlie")),
        ({"amount": {"gt": "50", "lt": "251"}}, ["Alpha", "Bravo", "Delta 50% off", "Echoes"]),
    ],
    "integer": [
        ({"quantity": {"eq": 0}}, ["Charlie"]),
        ({"quantity": {"ne": 5}}, everyone_but("Alpha")),
        ({"quantity": {"in": [1, 20]}}, ["Echo_1", "Foxtrot"]),
        ({"quantity": {"notIn": [0, 1, 3, 5]}}, ["Bravo", "Delta 50% off", "Echo_1"]),
        ({"quantity": {"lt": 1}}, ["Charlie"]),
        ({"quantity": {"lte": 3}}, ["Charlie", "Echoes", "Foxtrot"]),
        ({"quantity": {"gt": 5}}, ["Bravo", "Echo_1"]),
        ({"quantity": {"gte": 10}}, ["Bravo", "Echo_1"]),
        ({"quantity": {"isNull": True}}, ["Delta 50% off"]),
    ],
    "date": [
        ({"closeDate": {"eq": "2026-04-01"}}, ["Charlie"]),
        ({"closeDate": {"ne": "2026-04-01"}}, everyone_but("Charlie")),
        ({"closeDate": {"in": ["2026-01-15", "2026-07-04"]}}, ["Alpha", "Echo_1"]),
        ({"closeDate": {"notIn": ["2026-01-15", "2026-07-04"]}}, ["Bravo", "Charlie", "Delta 50% off", "Echoes", "Foxtrot"]),
        ({"closeDate": {"lt": "2026-01-01"}}, ["Echoes"]),
        ({"closeDate": {"lte": "2026-01-15"}}, ["Alpha", "Echoes"]),
        ({"closeDate": {"gt": "2026-02-20"}}, ["Charlie", "Echo_1", "Foxtrot"]),
        ({"closeDate": {"gte": "2026-05-05"}}, ["Echo_1", "Foxtrot"]),
        ({"closeDate": {"isNull": True}}, ["Delta 50% off"]),
    ],
    "datetime": [
        ({"signedAt": {"eq": "2026-01-15T11:00:00+01:00"}}, ["Alpha"]),
        ({"signedAt": {"lt": "2026-01-15T12:00:00+02:00"}}, []),
        ({"signedAt": {"lte": "2026-01-15T12:00:00+02:00"}}, ["Alpha"]),
        ({"signedAt": {"gte": "2026-02-01T05:30:00+01:00"}}, ["Bravo", "Delta 50% off", "Echo_1"]),
        ({"signedAt": {"gt": "2026-02-01T04:30:00Z"}}, ["Delta 50% off", "Echo_1"]),
        ({"signedAt": {"isNull": True}}, ["Charlie", "Echoes", "Foxtrot"]),
    ],
    "text": [
        ({"name": {"eq": "Alpha"}}, ["Alpha"]),
        ({"name": {"ne": "Alpha"}}, everyone_but("Alpha")),
        ({"name": {"in": ["Alpha", "Bravo", "Nobody"]}}, ["Alpha", "Bravo"]),
        ({"name": {"notIn": ["Alpha", "Bravo"]}}, everyone_but("Alpha", "Bravo")),
        ({"name": {"lt": "Bravo"}}, ["Alpha"]),
        ({"name": {"lte": "Bravo"}}, ["Alpha", "Bravo"]),
        ({"name": {"gt": "Echo"}}, ["Echo_1", "Echoes", "Foxtrot"]),
        ({"name": {"gte": "Foxtrot"}}, ["Foxtrot"]),
        ({"name": {"contains": "ALPHA"}}, ["Alpha"]),
        ({"name": {"contains": "ho"}}, ["Echo_1", "Echoes"]),
        ({"name": {"contains": "%"}}, ["Delta 50% off"]),
        ({"name": {"contains": "50%"}}, ["Delta 50% off"]),
        ({"name": {"contains": "0%"}}, ["Delta 50% off"]),
        ({"name": {"contains": "_"}}, ["Echo_1"]),
        ({"name": {"contains": "o_1"}}, ["Echo_1"]),
        ({"name": {"startsWith": "echo"}}, ["Echo_1", "Echoes"]),
        ({"name": {"startsWith": "E_"}}, []),
        ({"name": {"startsWith": "%"}}, []),
        ({"name": {"isNull": False}}, NAMES),
        ({"notes": {"contains": "100%"}}, ["Charlie"]),
        ({"notes": {"contains": "CALL"}}, ["Alpha"]),
        ({"notes": {"isNull": True}}, everyone_but("Alpha", "Charlie")),
        ({"email": {"startsWith": "ALPHA@"}}, ["Alpha"]),
        ({"number": {"eq": "D-0003"}}, ["Charlie"]),
        ({"number": {"gte": "D-0006"}}, ["Echoes", "Foxtrot"]),
    ],
    "boolean": [
        ({"closed": {"eq": True}}, ["Bravo", "Charlie"]),
        ({"closed": {"eq": False}}, ["Alpha", "Delta 50% off", "Echoes"]),
        ({"closed": {"ne": True}}, ["Alpha", "Delta 50% off", "Echo_1", "Echoes", "Foxtrot"]),
        ({"closed": {"isNull": True}}, ["Echo_1", "Foxtrot"]),
    ],
    "picklist": [
        ({"phase": {"eq": "PROSPECT"}}, ["Alpha", "Echoes"]),
        ({"phase": {"ne": "PROSPECT"}}, everyone_but("Alpha", "Echoes")),
        ({"phase": {"in": ["QUOTE", "CLOSED_WON"]}}, ["Bravo", "Charlie", "Foxtrot"]),
        ({"phase": {"notIn": ["PROSPECT", "QUOTE"]}}, ["Charlie", "Delta 50% off", "Echo_1"]),
        ({"phase": {"isNull": True}}, ["Echo_1"]),
        ({"phase": {"eq": "LEGACY"}}, []),
    ],
    "multi_picklist": [
        ({"tags": {"contains": "HOT"}}, ["Alpha", "Bravo", "Echoes"]),
        ({"tags": {"contains": "VIP"}}, ["Bravo", "Echo_1"]),
        ({"tags": {"eq": ["VIP", "HOT"]}}, ["Bravo"]),
        ({"tags": {"eq": ["HOT"]}}, ["Alpha"]),
        ({"tags": {"eq": ["HOT", "COLD"]}}, ["Echoes"]),
        ({"tags": {"isNull": True}}, ["Charlie", "Foxtrot"]),
        ({"tags": {"contains": "COLD", "isNull": False}}, ["Delta 50% off", "Echoes"]),
    ],
    "lookup": [
        ({"account": {"name": {"eq": "Acme"}}}, ["Alpha", "Bravo"]),
        ({"account": {"name": {"startsWith": "glo"}}}, ["Charlie", "Echo_1"]),
        ({"account": {"revenue": {"gte": "1000"}}}, ["Alpha", "Bravo"]),
        ({"account": {"revenue": {"isNull": True}}}, ["Echoes", "Foxtrot"]),
        ({"not": {"account": {"name": {"eq": "Acme"}}}}, everyone_but("Alpha", "Bravo")),
        ({"accountId": {"isNull": True}}, ["Delta 50% off"]),
        ({"location": {"isNull": False}}, ["Alpha"]),
        ({"extra": {"isNull": True}}, everyone_but("Alpha")),
    ],
    "boolean_logic": [
        ({"or": [{"phase": {"eq": "QUOTE"}}, {"amount": {"gte": "1000"}}]}, ["Bravo", "Echo_1", "Foxtrot"]),
        ({"and": [{"amount": {"gte": "100"}}, {"closed": {"eq": True}}]}, ["Bravo"]),
        ({"phase": {"in": ["PROSPECT", "QUOTE"]}, "amount": {"gt": "50"}}, ["Alpha", "Bravo", "Echoes"]),
        ({"not": {"amount": {"gt": "100"}}}, ["Alpha", "Charlie", "Delta 50% off", "Foxtrot"]),
        ({"not": {"phase": {"eq": "PROSPECT"}}}, everyone_but("Alpha", "Echoes")),
        ({"not": {"closed": {"eq": True}}}, everyone_but("Bravo", "Charlie")),
        ({"not": {"not": {"closed": {"eq": True}}}}, ["Bravo", "Charlie"]),
        ({"not": {"or": [{"quantity": {"gt": 3}}, {"closeDate": {"lt": "2026-03-01"}}]}}, ["Charlie", "Delta 50% off", "Foxtrot"]),
        ({"or": [{"and": [{"tags": {"contains": "HOT"}}, {"quantity": {"gte": 5}}]}, {"not": {"closeDate": {"isNull": False}}}]},
         ["Alpha", "Bravo", "Delta 50% off"]),
        ({"and": []}, NAMES),
        ({}, NAMES),
    ],
}


@pytest.mark.parametrize("group", list(FILTERS))
def test_filters(seeded, group):
    wrong = []
    for filter, expected in FILTERS[group]:
        found = sorted(deal_names(seeded, filter))
        if found != sorted(expected):
            wrong.append((filter, sorted(expected), found))
    assert not wrong, "filter, expected, found:\n" + "\n".join(map(repr, wrong))


def test_lookup_filters_by_raw_id(seeded):
    ids = seeded.ids
    assert sorted(deal_names(seeded, {"accountId": {"eq": ids["Acme"]}})) == ["Alpha", "Bravo"]
    assert sorted(deal_names(seeded, {"accountId": {"in": [ids["Globex"], ids["Initech"]]}})) == ["Charlie", "Echo_1", "Echoes", "Foxtrot"]
    assert sorted(deal_names(seeded, {"accountId": {"ne": ids["Acme"]}})) == everyone_but("Alpha", "Bravo")
    assert sorted(deal_names(seeded, {"accountId": {"notIn": [ids["Acme"], ids["Globex"]]}})) == ["Delta 50% off", "Echoes", "Foxtrot"]
    assert sorted(deal_names(seeded, {"account": {"id": {"eq": ids["Globex"]}}})) == ["Charlie", "Echo_1"]
    assert deal_names(seeded, {"id": {"eq": ids["Bravo"]}}) == ["Bravo"]


def test_text_filters_ignore_case_beyond_ascii(crm):
    create_deals(crm, [{"name": "Müller Straße"}, {"name": "École Été"}, {"name": "Mueller"}])
    assert deal_names(crm, {"name": {"contains": "MÜLLER"}}) == ["Müller Straße"]
    assert deal_names(crm, {"name": {"contains": "müller"}}) == ["Müller Straße"]
    assert deal_names(crm, {"name": {"startsWith": "école"}}) == ["École Été"]
    assert deal_names(crm, {"name": {"contains": "ÉTÉ"}}) == ["École Été"]


def test_text_filters_take_backslashes_and_slashes_literally(crm):
    create_deals(crm, [{"name": "a/b"}, {"name": "a\\b"}, {"name": "ab"}, {"name": "a_b"}])
    assert deal_names(crm, {"name": {"contains": "/"}}) == ["a/b"]
    assert deal_names(crm, {"name": {"contains": "\\"}}) == ["a\\b"]
    assert deal_names(crm, {"name": {"startsWith": "a_"}}) == ["a_b"]


def test_a_lookup_filter_does_not_reach_deleted_targets(seeded):
    seeded.data("mutation ($id: ID!) { deleteAccount(id: $id) }", {"id": seeded.ids["Acme"]})
    assert deal_names(seeded, {"account": {"name": {"eq": "Acme"}}}) == []


BAD_FILTERS = [
    ({"amount": {"gte": "lots"}}, "filter.amount.gte"),
    ({"closeDate": {"eq": "2026-13-01"}}, "filter.closeDate.eq"),
    ({"signedAt": {"gt": "yesterday"}}, "filter.signedAt.gt"),
    ({"accountId": {"eq": "acme"}}, "filter.accountId.eq"),
    ({"account": {"revenue": {"lt": "much"}}}, "filter.account.revenue.lt"),
    ({"or": [{"name": {"eq": "x"}}, {"amount": {"in": ["1", "one"]}}]}, "filter.or.1.amount.in"),
    ({"not": {"closeDate": {"lte": "soon"}}}, "filter.not.closeDate.lte"),
]


@pytest.mark.parametrize("filter, path", BAD_FILTERS, ids=[p for _, p in BAD_FILTERS])
def test_a_bad_filter_value_names_its_graphql_path(seeded, filter, path):
    problems = validation_problems(seeded, LIST_DEALS, {"filter": filter})
    assert list(problems) == [path]


def test_an_unknown_filter_field_or_operator_is_a_bad_query(seeded):
    for filter in ({"nope": {"eq": 1}}, {"tags": {"in": ["HOT"]}}, {"closed": {"gt": True}}, {"phase": {"eq": "WON"}}):
        status, errors = seeded.errors(LIST_DEALS, {"filter": filter})
        assert status == 400 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}, filter


# == 3. sorting ========================================================================================

ORDERS = [
    (["AMOUNT_ASC"], ["Foxtrot", "Delta 50% off", "Alpha", "Bravo", "Echoes", "Echo_1", "Charlie"]),
    (["AMOUNT_DESC"], ["Charlie", "Echo_1", "Bravo", "Echoes", "Alpha", "Delta 50% off", "Foxtrot"]),
    (["AMOUNT_DESC", "NAME_DESC"], ["Charlie", "Echo_1", "Echoes", "Bravo", "Alpha", "Delta 50% off", "Foxtrot"]),
    (["CLOSE_DATE_ASC"], ["Echoes", "Alpha", "Bravo", "Charlie", "Foxtrot", "Echo_1", "Delta 50% off"]),
    (["CLOSE_DATE_DESC"], ["Delta 50% off", "Echo_1", "Foxtrot", "Charlie", "Bravo", "Alpha", "Echoes"]),
    (["SIGNED_AT_DESC"], ["Charlie", "Echoes", "Foxtrot", "Echo_1", "Delta 50% off", "Bravo", "Alpha"]),
    (["PHASE_ASC", "AMOUNT_DESC"], ["Delta 50% off", "Charlie", "Echoes", "Alpha", "Bravo", "Foxtrot", "Echo_1"]),
    (["PHASE_DESC", "NAME_ASC"], ["Echo_1", "Bravo", "Foxtrot", "Alpha", "Echoes", "Charlie", "Delta 50% off"]),
    (["CLOSED_ASC", "QUANTITY_DESC"], ["Delta 50% off", "Alpha", "Echoes", "Bravo", "Charlie", "Echo_1", "Foxtrot"]),
    (["NAME_ASC"], ["Alpha", "Bravo", "Charlie", "Delta 50% off", "Echo_1", "Echoes", "Foxtrot"]),
    (["NAME_DESC"], ["Foxtrot", "Echoes", "Echo_1", "Delta 50% off", "Charlie", "Bravo", "Alpha"]),
    (["NUMBER_DESC"], list(reversed(NAMES))),
    ([], NAMES),
]


def test_order_by_several_keys_nulls_last_ascending_first_descending(seeded):
    wrong = []
    for order_by, expected in ORDERS:
        found = deal_names(seeded, order_by=order_by)
        # walking the same order two records at a time gives the same sequence
        walked = [n["name"] for page in walk(seeded, order_by=order_by, first=2) for n in page["nodes"]]
        if found != expected or walked != expected:
            wrong.append((order_by, expected, found, walked))
    assert not wrong, "order, expected, found, found page by page:\n" + "\n".join(map(repr, wrong))


@pytest.mark.parametrize("order_by, expected", [(["ID_ASC"], NAMES), (["ID_DESC"], list(reversed(NAMES))),
                                                (["CREATED_AT_DESC"], list(reversed(NAMES)))],
                         ids=["ID_ASC", "ID_DESC", "CREATED_AT_DESC"])
def test_order_by_id_and_creation_time(crm, order_by, expected):
    for name in NAMES:  # one at a time, so that creation times differ
        create_deal(crm, name=name)
    assert deal_names(crm, order_by=order_by) == expected
    walked = [n["name"] for page in walk(crm, order_by=order_by, first=3) for n in page["nodes"]]
    assert walked == expected


def test_order_on_an_unsortable_field_is_a_bad_query(seeded):
    for order in ("TAGS_ASC", "NOTES_ASC", "LOCATION_DESC", "EXTRA_ASC"):
        status, errors = seeded.errors(LIST_DEALS, {"orderBy": [order]})
        assert status == 400 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}, order


# == 4. paging =========================================================================================

PAGE = """query ($first: Int, $after: String, $orderBy: [DealOrderBy!]) {
  deals(first: $first, after: $after, orderBy: $orderBy) {
    edges { cursor node { id name amount } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
PAGE_WITH_TOTAL = PAGE.replace("pageInfo {", "totalCount pageInfo {")


def walk(api, *, first, order_by=None, query=PAGE, between_pages=None):
    """Every page from the first to the last; ``between_pages(number)`` runs after each page but the last."""
    pages, after = [], None
    while True:
        page = api.data(query, {"first": first, "after": after, "orderBy": order_by})["deals"]
        page["nodes"] = [edge["node"] for edge in page["edges"]]
        pages.append(page)
        assert len(pages) < 100, "paging does not end"
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]
        if between_pages is not None:
            between_pages(len(pages))


def has_count(statements):
    return any("count(" in s.lower() for s in statements)


def test_paging_forward_sees_every_record_once(crm):
    created = [d["id"] for d in create_deals(crm, [{"name": f"Deal {i:02d}", "amount": i} for i in range(23)])]
    pages = walk(crm, first=5)
    assert [len(p["nodes"]) for p in pages] == [5, 5, 5, 5, 3]
    seen = [n["id"] for p in pages for n in p["nodes"]]
    assert seen == created  # ids are time-ordered: the default order is the creation order
    for number, page in enumerate(pages):
        info = page["pageInfo"]
        assert info["hasNextPage"] is (number < 4)
        assert info["hasPreviousPage"] is (number > 0)
        assert info["startCursor"] == page["edges"][0]["cursor"]
        assert info["endCursor"] == page["edges"][-1]["cursor"]
    assert len({e["cursor"] for p in pages for e in p["edges"]}) == 23


def test_an_exactly_full_last_page_and_an_empty_list(crm):
    create_deals(crm, [{"name": f"Deal {i}"} for i in range(10)])
    pages = walk(crm, first=5)
    assert [(len(p["nodes"]), p["pageInfo"]["hasNextPage"]) for p in pages] == [(5, True), (5, False)]
    empty = crm.data(PAGE, {"first": 5, "after": pages[-1]["pageInfo"]["endCursor"]})["deals"]
    assert empty["edges"] == [] and empty["pageInfo"] == {
        "hasNextPage": False, "hasPreviousPage": True, "startCursor": None, "endCursor": None}
    none_asked = crm.data(PAGE, {"first": 0})["deals"]
    assert none_asked["edges"] == [] and none_asked["pageInfo"]["hasNextPage"] is True


def test_total_count_is_computed_only_when_asked(crm):
    create_deals(crm, [{"name": f"Deal {i}", "amount": i} for i in range(12)])
    crm.data(PAGE, {"first": 5})
    assert not has_count(crm.statements), crm.statements
    page = crm.data(PAGE_WITH_TOTAL, {"first": 5})["deals"]
    assert page["totalCount"] == 12
    assert sum("count(" in s.lower() for s in crm.statements) == 1, crm.statements
    later = crm.data(PAGE_WITH_TOTAL, {"first": 5, "after": page["pageInfo"]["endCursor"]})["deals"]
    assert later["totalCount"] == 12 and len(later["edges"]) == 5
    filtered = crm.data("{ deals(first: 2, filter: {amount: {gte: 10}}) { totalCount nodes { id } } }")["deals"]
    assert filtered["totalCount"] == 2 and len(filtered["nodes"]) == 2
    # directives decide as the executor does
    conditional = "query ($with: Boolean!) { deals(first: 1) { totalCount @include(if: $with) nodes { id } } }"
    assert "totalCount" not in crm.data(conditional, {"with": False})["deals"] and not has_count(crm.statements)
    assert crm.data(conditional, {"with": True})["deals"]["totalCount"] == 12 and has_count(crm.statements)


@pytest.mark.parametrize("order_by", [None, ["AMOUNT_ASC"], ["AMOUNT_DESC", "NAME_ASC"]])
def test_paging_while_records_are_inserted_sees_every_original_record_once(crm, order_by):
    originals = {d["id"] for d in create_deals(crm, [{"name": f"Deal {i:02d}", "amount": i * 10} for i in range(23)])}
    inserted = []

    def insert(page_number):
        if page_number > 3:
            return  # in the default (creation) order new records come last: stop adding so the walk ends
        # before, among and after the records already seen, with amounts equal to existing ones too
        batch = create_deals(crm, [{"name": f"New {page_number}.{k}", "amount": amount}
                                   for k, amount in enumerate([-5, page_number * 50, page_number * 50 + 5, 1000, None])])
        inserted.extend(d["id"] for d in batch)

    pages = walk(crm, first=5, order_by=order_by, between_pages=insert)
    seen = [n["id"] for p in pages for n in p["nodes"]]
    assert len(seen) == len(set(seen)), "a record was returned twice"
    assert originals <= set(seen), "a record existing from the start was skipped"
    assert set(seen) <= originals | set(inserted)
    assert inserted  # records were really inserted between pages


def test_a_malformed_cursor_is_refused_clearly(crm):
    create_deals(crm, [{"name": f"Deal {i}"} for i in range(3)])
    forged = base64.urlsafe_b64encode(json.dumps([["id", "a"], ["not-a-uuid"]]).encode()).decode()
    for cursor in ("garbage", "!!!", forged, base64.urlsafe_b64encode(b"[1, 2]").decode()):
        status, errors = crm.errors(PAGE, {"first": 2, "after": cursor})
        error = only_error(status, errors, "VALIDATION_FAILED")
        assert field_problems(error) == {"after": "INVALID_CURSOR"}, cursor


def test_a_cursor_from_another_order_is_refused(crm):
    create_deals(crm, [{"name": f"Deal {i}", "amount": i} for i in range(5)])
    by_amount = crm.data(PAGE, {"first": 2, "orderBy": ["AMOUNT_ASC"]})["deals"]["pageInfo"]["endCursor"]
    default = crm.data(PAGE, {"first": 2})["deals"]["pageInfo"]["endCursor"]
    for cursor, order in ((by_amount, None), (by_amount, ["AMOUNT_DESC"]), (by_amount, ["NAME_ASC"]), (default, ["AMOUNT_ASC"])):
        error = only_error(*crm.errors(PAGE, {"first": 2, "after": cursor, "orderBy": order}), "VALIDATION_FAILED")
        assert field_problems(error) == {"after": "INVALID_CURSOR"}
    # each cursor still works with its own order
    assert len(crm.data(PAGE, {"first": 2, "after": by_amount, "orderBy": ["AMOUNT_ASC"]})["deals"]["edges"]) == 2


@pytest.mark.parametrize("first", [-1, 501])
def test_a_page_size_out_of_bounds_is_a_bad_query(crm, first):
    status, errors = crm.errors(PAGE, {"first": first})
    assert status != 500 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}


# == 5. aggregates =====================================================================================

AGGREGATE = """query ($filter: DealFilter, $groupBy: [DealGroupField!]) {
  dealAggregate(filter: $filter, groupBy: $groupBy) {
    key { phase closeDate signedAt accountId }
    count
    sum { amount quantity }
    avg { amount quantity }
    min { amount closeDate signedAt }
    max { amount closeDate signedAt }
  }
}"""


def aggregate(api, filter=None, group_by=None):
    return api.data(AGGREGATE, {"filter": filter, "groupBy": group_by})["dealAggregate"]


def group(count, *, key=None, sum_amount=None, avg_amount=None, sum_quantity=None, avg_quantity=None, amount=(None, None),
          close_date=(None, None), signed_at=(None, None)):
    return {
        "key": {"phase": None, "closeDate": None, "signedAt": None, "accountId": None, **(key or {})}, "count": count,
        "sum": {"amount": sum_amount, "quantity": sum_quantity}, "avg": {"amount": avg_amount, "quantity": avg_quantity},
        "min": {"amount": amount[0], "closeDate": close_date[0], "signedAt": signed_at[0]},
        "max": {"amount": amount[1], "closeDate": close_date[1], "signedAt": signed_at[1]},
    }


def test_aggregate_without_groups(seeded):
    assert aggregate(seeded) == [group(
        7, sum_amount="1676.25", avg_amount=279.375, sum_quantity="39", avg_quantity=6.5, amount=("0.00", "1000.00"),
        close_date=("2025-12-31", "2026-07-04"), signed_at=("2026-01-15T10:00:00+00:00", "2026-07-04T12:00:00+00:00"),
    )]


def test_aggregate_with_a_filter(seeded):
    assert aggregate(seeded, {"closed": {"eq": True}}) == [group(
        2, sum_amount="250.50", avg_amount=250.5, sum_quantity="10", avg_quantity=5.0, amount=("250.50", "250.50"),
        close_date=("2026-02-20", "2026-04-01"), signed_at=("2026-02-01T04:30:00+00:00",) * 2,
    )]
    assert aggregate(seeded, {"account": {"name": {"eq": "Acme"}}}) == [group(
        2, sum_amount="350.50", avg_amount=175.25, sum_quantity="15", avg_quantity=7.5, amount=("100.00", "250.50"),
        close_date=("2026-01-15", "2026-02-20"), signed_at=("2026-01-15T10:00:00+00:00", "2026-02-01T04:30:00+00:00"),
    )]
    assert aggregate(seeded, {"name": {"eq": "Nobody"}}) == [group(0)]


def test_aggregate_leaves_out_deleted_records(seeded):
    seeded.data(DELETE_DEAL, {"id": seeded.ids["Echo_1"]})
    found = aggregate(seeded)[0]
    assert (found["count"], found["sum"]["amount"], found["max"]["amount"]) == (6, "676.25", "250.50")


def test_aggregate_grouped_by_picklist(seeded):
    assert aggregate(seeded, group_by=["PHASE"]) == [
        group(1, key={"phase": "CLOSED_LOST"}, sum_amount="75.25", avg_amount=75.25, amount=("75.25", "75.25"),
              signed_at=("2026-03-10T07:00:00+00:00",) * 2),
        group(1, key={"phase": "CLOSED_WON"}, sum_quantity="0", avg_quantity=0.0, close_date=("2026-04-01",) * 2),
        group(2, key={"phase": "PROSPECT"}, sum_amount="350.50", avg_amount=175.25, sum_quantity="8", avg_quantity=4.0,
              amount=("100.00", "250.50"), close_date=("2025-12-31", "2026-01-15"), signed_at=("2026-01-15T10:00:00+00:00",) * 2),
        group(2, key={"phase": "QUOTE"}, sum_amount="250.50", avg_amount=125.25, sum_quantity="11", avg_quantity=5.5,
              amount=("0.00", "250.50"), close_date=("2026-02-20", "2026-05-05"), signed_at=("2026-02-01T04:30:00+00:00",) * 2),
        group(1, sum_amount="1000.00", avg_amount=1000.0, sum_quantity="20", avg_quantity=20.0, amount=("1000.00",) * 2,
              close_date=("2026-07-04",) * 2, signed_at=("2026-07-04T12:00:00+00:00",) * 2),
    ]


COUNT_ONLY = """query ($filter: DealFilter, $groupBy: [DealGroupField!]) {
  dealAggregate(filter: $filter, groupBy: $groupBy) { key { phase closeDate signedAt accountId } count sum { amount } }
}"""

PERIOD_GROUPS = [
    (["CLOSE_DATE__MONTH"], "closeDate", [("2025-12-01", 1, "250.50"), ("2026-01-01", 1, "100.00"), ("2026-02-01", 1, "250.50"),
                                          ("2026-04-01", 1, None), ("2026-05-01", 1, "0.00"), ("2026-07-01", 1, "1000.00"),
                                          (None, 1, "75.25")]),
    (["CLOSE_DATE__QUARTER"], "closeDate", [("2025-10-01", 1, "250.50"), ("2026-01-01", 2, "350.50"), ("2026-04-01", 2, "0.00"),
                                            ("2026-07-01", 1, "1000.00"), (None, 1, "75.25")]),
    (["CLOSE_DATE__YEAR"], "closeDate", [("2025-01-01", 1, "250.50"), ("2026-01-01", 5, "1350.50"), (None, 1, "75.25")]),
    (["CLOSE_DATE"], "closeDate", [("2025-12-31", 1, "250.50"), ("2026-01-15", 1, "100.00"), ("2026-02-20", 1, "250.50"),
                                   ("2026-04-01", 1, None), ("2026-05-05", 1, "0.00"), ("2026-07-04", 1, "1000.00"),
                                   (None, 1, "75.25")]),
    # instants are grouped in UTC: Bravo, signed 2026-01-31 23:30 at -05:00, is a February deal
    (["SIGNED_AT__MONTH"], "signedAt", [("2026-01-01", 1, "100.00"), ("2026-02-01", 1, "250.50"), ("2026-03-01", 1, "75.25"),
                                        ("2026-07-01", 1, "1000.00"), (None, 3, "250.50")]),
    (["SIGNED_AT__YEAR"], "signedAt", [("2026-01-01", 4, "1425.75"), (None, 3, "250.50")]),
]


@pytest.mark.parametrize("group_by, key, expected", PERIOD_GROUPS, ids=[g[0][0] for g in PERIOD_GROUPS])
def test_aggregate_grouped_by_date_period(seeded, group_by, key, expected):
    found = seeded.data(COUNT_ONLY, {"groupBy": group_by})["dealAggregate"]
    assert [(g["key"][key], g["count"], g["sum"]["amount"]) for g in found] == expected
    assert all(v is None for g in found for k, v in g["key"].items() if k != key)


def test_aggregate_grouped_by_lookup_and_picklist_with_a_filter(seeded):
    ids = seeded.ids
    found = seeded.data(COUNT_ONLY, {"groupBy": ["ACCOUNT", "PHASE"], "filter": {"amount": {"gte": "100"}}})["dealAggregate"]
    by_key = {(g["key"]["accountId"], g["key"]["phase"]): (g["count"], g["sum"]["amount"]) for g in found}
    assert by_key == {
        (ids["Acme"], "PROSPECT"): (1, "100.00"), (ids["Acme"], "QUOTE"): (1, "250.50"),
        (ids["Globex"], None): (1, "1000.00"), (ids["Initech"], "PROSPECT"): (1, "250.50"),
    }
    assert len(found) == 4


def test_aggregate_refuses_a_bad_filter_with_its_path(seeded):
    problems = validation_problems(seeded, AGGREGATE, {"filter": {"amount": {"gte": "lots"}}, "groupBy": ["PHASE"]})
    assert problems == {"filter.amount.gte": "INVALID_VALUE"}


# == 6. optimistic locking =============================================================================


def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(crm):
    deal = create_deal(crm, name="Alpha", amount="10")
    moved = crm.data(UPDATE_DEAL, {"id": deal["id"], "input": {"amount": "20"}, "expected": 1})["updateDeal"]
    assert moved["version"] == 2 and moved["amount"] == "20.00"

    error = only_error(*crm.errors(UPDATE_DEAL, {"id": deal["id"], "input": {"amount": "30"}, "expected": 1}), "CONFLICT")
    assert error["path"] == ["updateDeal"]
    assert error["extensions"]["ctx"]["current_version"] == 2
    assert get_deal(crm, deal["id"]) == moved

    done = crm.data(UPDATE_DEAL, {"id": deal["id"], "input": {"amount": "30"}, "expected": 2})["updateDeal"]
    assert done["version"] == 3 and done["amount"] == "30.00"
    only_error(*crm.errors(UPDATE_DEAL, {"id": deal["id"], "input": {"amount": "40"}, "expected": 4}), "CONFLICT")
    assert get_deal(crm, deal["id"]) == done


def test_a_stale_version_in_a_bulk_update_refuses_the_whole_batch(crm):
    one, two = create_deals(crm, [{"name": "One"}, {"name": "Two"}])
    crm.data(UPDATE_DEAL, {"id": two["id"], "input": {"quantity": 1}})
    items = [{"id": one["id"], "input": {"quantity": 5}, "expectedVersion": 1},
             {"id": two["id"], "input": {"quantity": 5}, "expectedVersion": 1}]
    assert validation_problems(crm, UPDATE_DEALS, {"items": items}) == {"items.1": "CONFLICT"}
    assert get_deal(crm, one["id"]) == one


# == 7. bulk writes ====================================================================================


def test_create_many_is_all_or_nothing_with_row_paths(crm):
    create_deal(crm, name="Existing")
    inputs = [{"name": "Good"}, {"name": "Bad amount", "amount": "1.234"}, {"name": "Good too"},
              {"name": "Bad date", "closeDate": "2026-02-30", "quantity": -3}, {"amount": "5"}]
    assert validation_problems(crm, CREATE_DEALS, {"inputs": inputs}) == {
        "inputs.1.amount": "TOO_PRECISE", "inputs.3.closeDate": "INVALID_FORMAT", "inputs.3.quantity": "OUT_OF_RANGE",
        "inputs.4.name": "REQUIRED"}
    assert deal_names(crm) == ["Existing"]
    # the refused batch used no auto numbers
    assert [d["number"] for d in create_deals(crm, [{"name": "Next"}, {"name": "After"}])] == ["D-0002", "D-0003"]


def test_bulk_writes_of_no_records_write_nothing(crm):
    assert crm.data("mutation { createDeals(inputs: []) { id } }") == {"createDeals": []}
    assert crm.data("mutation { updateDeals(items: []) { id } }") == {"updateDeals": []}
    assert deal_count(crm) == 0
    assert create_deal(crm, name="First")["number"] == "D-0001"


def test_create_many_refuses_a_bad_reference_in_one_row(crm):
    acme = create_account(crm, "Acme")
    inputs = [{"name": "A", "accountId": acme}, {"name": "B", "accountId": A_MISSING_ID}]
    assert validation_problems(crm, CREATE_DEALS, {"inputs": inputs}) == {"inputs.1.accountId": "INVALID_REFERENCE"}
    assert deal_count(crm) == 0


def test_update_many_is_all_or_nothing_with_item_paths(crm):
    deals = create_deals(crm, [{"name": f"Deal {i}", "quantity": i} for i in range(3)])
    items = [{"id": deals[0]["id"], "input": {"quantity": 10}},
             {"id": deals[1]["id"], "input": {"quantity": 10, "closeDate": "someday"}},
             {"id": deals[2]["id"], "input": {"amount": "0.001", "name": None}}]
    assert validation_problems(crm, UPDATE_DEALS, {"items": items}) == {
        "items.1.input.closeDate": "INVALID_FORMAT", "items.2.input.amount": "TOO_PRECISE", "items.2.input.name": "REQUIRED"}
    assert [get_deal(crm, d["id"]) for d in deals] == deals

    missing = [{"id": deals[0]["id"], "input": {"quantity": 10}}, {"id": A_MISSING_ID, "input": {"quantity": 10}}]
    assert validation_problems(crm, UPDATE_DEALS, {"items": missing}) == {"items.1": "NOT_FOUND"}
    assert get_deal(crm, deals[0]["id"]) == deals[0]

    items[1]["input"]["closeDate"] = "2026-06-30"
    items[2]["input"] = {"amount": "0.01"}
    updated = crm.data(UPDATE_DEALS, {"items": items})["updateDeals"]
    assert [(d["quantity"], d["closeDate"], d["amount"], d["version"]) for d in updated] == [
        (10, None, None, 2), (10, "2026-06-30", None, 2), (2, None, "0.01", 2)]
    assert [get_deal(crm, d["id"]) for d in deals] == updated


# == 8. master-detail children as a connection ==========================================================

CHILDREN = """query ($first: Int, $after: String, $filter: LineItemFilter, $orderBy: [LineItemOrderBy!]) {
  deals(orderBy: [NAME_ASC]) { nodes { name
    lineItems(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
      totalCount nodes { name quantity dealId } pageInfo { hasNextPage hasPreviousPage endCursor } } } }
}"""


@pytest.fixture
def with_items(crm):
    big, small, empty = (create_deal(crm, name=name)["id"] for name in ("Big", "Small", "Empty"))
    create_line_items(crm, big, ("B1", 5), ("B2", 1), ("B3", 4), ("B4", 2), ("B5", 3))
    create_line_items(crm, small, ("S1", 7), ("S2", 8))
    crm.ids = {"Big": big, "Small": small, "Empty": empty}
    return crm


def children_by_deal(api, **variables):
    nodes = api.data(CHILDREN, variables)["deals"]["nodes"]
    return {n["name"]: n["lineItems"] for n in nodes}


def summary(connection):
    return ([n["name"] for n in connection["nodes"]], connection["pageInfo"]["hasNextPage"], connection["totalCount"])


def test_children_pages_are_per_parent_with_truthful_has_next_page_and_total(with_items):
    found = children_by_deal(with_items, first=2, orderBy=["QUANTITY_DESC"])
    assert {name: summary(c) for name, c in found.items()} == {
        "Big": (["B1", "B3"], True, 5), "Small": (["S2", "S1"], False, 2), "Empty": ([], False, 0)}
    assert all(n["dealId"] == with_items.ids["Big"] for n in found["Big"]["nodes"])

    filtered = children_by_deal(with_items, first=2, filter={"quantity": {"lte": 7}}, orderBy=["QUANTITY_ASC"])
    assert {name: summary(c) for name, c in filtered.items()} == {
        "Big": (["B2", "B4"], True, 5), "Small": (["S1"], False, 1), "Empty": ([], False, 0)}
    exact = children_by_deal(with_items, first=2, filter={"quantity": {"gte": 4}}, orderBy=["NAME_DESC"])
    assert {name: summary(c) for name, c in exact.items()} == {
        "Big": (["B3", "B1"], False, 2), "Small": (["S2", "S1"], False, 2), "Empty": ([], False, 0)}


def test_children_of_one_parent_page_on_with_the_end_cursor(with_items):
    query = """query ($id: ID!, $after: String) { deal(id: $id) {
                 lineItems(first: 2, after: $after, orderBy: [QUANTITY_ASC]) {
                   nodes { name } pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
    seen, after, pages = [], None, 0
    while True:
        connection = with_items.data(query, {"id": with_items.ids["Big"], "after": after})["deal"]["lineItems"]
        pages += 1
        seen += [n["name"] for n in connection["nodes"]]
        assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == ["B2", "B4", "B5", "B3", "B1"] and pages == 3


def test_children_leave_out_deleted_details(with_items):
    big_items = with_items.data("query ($id: ID!) { deal(id: $id) { lineItems(orderBy: [NAME_ASC]) { nodes { id } } } }",
                                {"id": with_items.ids["Big"]})["deal"]["lineItems"]["nodes"]
    with_items.data("mutation ($id: ID!) { deleteLineItem(id: $id) }", {"id": big_items[0]["id"]})
    found = children_by_deal(with_items, first=10, orderBy=["NAME_ASC"])
    assert summary(found["Big"]) == (["B2", "B3", "B4", "B5"], False, 4)


def test_children_are_read_in_a_fixed_number_of_statements(with_items):
    with_items.data(CHILDREN, {"first": 2})
    few = len(with_items.statements)
    for i in range(5):
        deal = create_deal(with_items, name=f"More {i}")["id"]
        create_line_items(with_items, deal, ("M1", 1), ("M2", 2), ("M3", 3))
    found = with_items.data(CHILDREN, {"first": 2})["deals"]["nodes"]
    assert len(found) == 8 and all(len(n["lineItems"]["nodes"]) <= 2 for n in found)
    assert len(with_items.statements) == few


# == 9. GraphiQL, introspection, health ================================================================


def test_the_standard_introspection_query_describes_the_generated_types(crm):
    data = crm.data(get_introspection_query(descriptions=True))
    types = {t["name"]: t for t in data["__schema"]["types"]}
    for name in ("Deal", "DealConnection", "DealEdge", "DealFilter", "DealOrderBy", "DealCreateInput", "DealUpdateInput",
                 "DealUpdateItem", "DealGroup", "DealGroupField", "DealPhase", "Account", "LineItem", "LineItemConnection",
                 "PageInfo", "Decimal", "Date", "DateTime", "JSON", "Geolocation"):
        assert name in types, name
    deal_fields = {f["name"] for f in types["Deal"]["fields"]}
    assert {"id", "version", "createdAt", "amount", "closeDate", "signedAt", "phase", "tags", "accountId", "account",
            "number", "location", "extra", "lineItems"} <= deal_fields
    assert {"AMOUNT_ASC", "AMOUNT_DESC", "CLOSE_DATE_ASC"} <= {v["name"] for v in types["DealOrderBy"]["enumValues"]}
    assert {"PHASE", "CLOSE_DATE__MONTH", "CLOSE_DATE__QUARTER", "CLOSE_DATE__YEAR"} <= {
        v["name"] for v in types["DealGroupField"]["enumValues"]}
    assert "number" not in {f["name"] for f in types["DealCreateInput"]["inputFields"]}
    query_fields = {f["name"] for f in types[data["__schema"]["queryType"]["name"]]["fields"]}
    assert {"deal", "deals", "dealAggregate", "lineItem", "lineItems"} <= query_fields
    mutation_fields = {f["name"] for f in types[data["__schema"]["mutationType"]["name"]]["fields"]}
    assert {"createDeal", "createDeals", "updateDeal", "updateDeals", "deleteDeal", "restoreDeal", "createObject"} <= mutation_fields


def test_graphiql_page_and_health_check(crm):
    page = crm.client.get("/graphql")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "graphiql" in page.get_data(as_text=True).lower()
    health = crm.client.get("/healthz")
    assert health.status_code == 200
    body = health.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["metadataVersion"] == crm.data("{ metadataVersion }")["metadataVersion"]


def test_the_api_needs_the_token(crm):
    status, body = crm.post("{ deals { totalCount } }", token=None)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    status, body = crm.post("{ deals { totalCount } }", token="wrong")
    assert status == 401
