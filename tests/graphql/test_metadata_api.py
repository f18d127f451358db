"""The metadata API (objects, fields, types, versions and the change log) through the GraphQL endpoint.

Every change is served from the very next request; every refused change leaves the metadata, the
version and the database tables exactly as they were, and says why with ``extensions.code``.
"""
from __future__ import annotations

import pytest
from lowcode.metadata.names import table_name
from sqlalchemy import inspect

ALL_FIELD_TYPES = [
    "TEXT", "TEXTAREA", "INTEGER", "DECIMAL", "CURRENCY", "PERCENT", "BOOLEAN", "DATE", "DATETIME", "EMAIL", "PHONE",
    "URL", "PICKLIST", "MULTI_PICKLIST", "LOOKUP", "MASTER_DETAIL", "AUTO_NUMBER", "GEOLOCATION", "JSON", "FORMULA", "ROLLUP",
]
COMPUTED = ("AUTO_NUMBER", "FORMULA", "ROLLUP")

OPTIONS = ("options { maxLength pattern precision scale min max values { apiName label order active graphqlName } "
           "restricted target onDelete relationshipName format start }")
FIELD = f"apiName label type required unique indexed tracked helpText description defaultValue system graphqlName relationName {OPTIONS}"
OBJECT = f"apiName label pluralApiName pluralLabel description system graphqlType fields {{ {FIELD} }}"

SNAPSHOT = f"{{ metadataVersion objects {{ {OBJECT} allFields: fields(includeSystem: true) {{ apiName type }} }} }}"

CREATE_OBJECT = f"mutation($i: ObjectInput!) {{ createObject(input: $i) {{ {OBJECT} }} }}"
UPDATE_OBJECT = "mutation($a: String!, $i: ObjectUpdateInput!) { updateObject(apiName: $a, input: $i) { apiName label pluralApiName pluralLabel description } }"
DELETE_OBJECT = "mutation($a: String!) { deleteObject(apiName: $a) }"
CREATE_FIELD = f"mutation($o: String!, $i: FieldInput!) {{ createField(object: $o, input: $i) {{ {FIELD} }} }}"
UPDATE_FIELD = f"mutation($o: String!, $a: String!, $i: FieldUpdateInput!) {{ updateField(object: $o, apiName: $a, input: $i) {{ {FIELD} }} }}"
DELETE_FIELD = "mutation($o: String!, $a: String!) { deleteField(object: $o, apiName: $a) }"

NO_OPTIONS = {"maxLength": None, "pattern": None, "precision": None, "scale": None, "min": None, "max": None, "values": None,
              "restricted": None, "target": None, "onDelete": None, "relationshipName": None, "format": None, "start": None}


# -- helpers ------------------------------------------------------------------------------------
def version(api) -> int:
    return api.data("{ metadataVersion }")["metadataVersion"]


def snapshot(api) -> dict:
    """Every object and field definition with the version: equal before and after a refused change."""
    return api.data(SNAPSHOT)


def has_table(api, object_api_name: str) -> bool:
    return inspect(api.runtime.engine).has_table(table_name(object_api_name))


def error_of(api, query: str, variables: dict | None = None, *, status: int = 200) -> dict:
    """The one error of a request expected to fail; every error carries extensions.code."""
    got_status, errors = api.errors(query, variables)
    assert got_status == status, errors
    for error in errors:
        assert error.get("extensions", {}).get("code"), error
    assert len(errors) == 1, errors
    return errors[0]


def mutation_error(api, query: str, variables: dict | None = None, *, code: str) -> dict:
    """A refused metadata mutation: status 200, data null, one error of ``code``."""
    status, body = api.post(query, variables)
    assert status == 200, body
    assert body.get("data") is None, body
    errors = body["errors"]
    assert len(errors) == 1 and errors[0]["extensions"]["code"] == code, errors
    return errors[0]


def problems(error: dict) -> set[tuple[str, str | None]]:
    """(code, field) of every problem of an INVALID_DEFINITION error."""
    assert error["extensions"]["code"] == "INVALID_DEFINITION", error
    listed = error["extensions"]["errors"]
    for problem in listed:
        assert problem["code"] and problem["message"], problem
    return {(p["code"], p["field"]) for p in listed}


def assert_bad_query(api, query: str, name: str, variables: dict | None = None) -> None:
    """A query naming something the schema no longer has: a validation error naming it, never a 500."""
    status, body = api.post(query, variables)
    assert status == 400, body
    assert "data" not in body, body
    assert all(e["extensions"]["code"] == "BAD_QUERY" for e in body["errors"]), body
    assert any(f"'{name}'" in e["message"] for e in body["errors"]), body


def create_object(api, definition: dict) -> dict:
    return api.data(CREATE_OBJECT, {"i": definition})["createObject"]


def create_field(api, object_api_name: str, definition: dict) -> dict:
    return api.data(CREATE_FIELD, {"o": object_api_name, "i": definition})["createField"]


def update_field(api, object_api_name: str, field: str, changes: dict) -> dict:
    return api.data(UPDATE_FIELD, {"o": object_api_name, "a": field, "i": changes})["updateField"]


def options(**given) -> dict:
    return {**NO_OPTIONS, **given}


def make_account(api) -> None:
    create_object(api, {"apiName": "account", "label": "Account", "fields": [
        {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
    ]})


PHASE_VALUES = [
    {"apiName": "open", "label": "Open", "order": 1},
    {"apiName": "closed_won", "label": "Closed won", "order": 2},
    {"apiName": "closed_lost", "label": "Closed lost", "order": 3},
]


def make_deal(api) -> dict:
    """deal: text, decimal, picklist, lookup to account, auto number (account must exist)."""
    return create_object(api, {
        "apiName": "deal", "label": "Deal", "description": "A sales opportunity", "fields": [
            {"apiName": "title", "label": "Title", "type": "TEXT", "required": True, "helpText": "What is sold",
             "options": {"maxLength": 80, "pattern": "^[A-Za-z0-9 ]+$"}},
            {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "indexed": True,
             "options": {"precision": 12, "scale": 2, "min": "0", "max": "1000000"}},
            {"apiName": "phase", "label": "Phase", "type": "PICKLIST", "tracked": True, "defaultValue": "open",
             "options": {"values": PHASE_VALUES}},
            {"apiName": "account", "label": "Account", "type": "LOOKUP",
             "options": {"target": "account", "onDelete": "RESTRICT", "relationshipName": "deals"}},
            {"apiName": "number", "label": "Number", "type": "AUTO_NUMBER", "options": {"format": "D-{0000}", "start": 7}},
        ],
    })


# -- reading objects ----------------------------------------------------------------------------
def test_objects_lists_the_system_objects_and_include_system_false_hides_them(api):
    objects = api.data("{ objects { apiName label system graphqlType } }")["objects"]
    by_name = {o["apiName"]: o for o in objects}
    assert {"user", "org_unit"} <= set(by_name)
    assert by_name["user"]["system"] is True and by_name["user"]["graphqlType"] == "User"
    assert by_name["org_unit"]["system"] is True and by_name["org_unit"]["graphqlType"] == "OrgUnit"
    assert all(o["system"] for o in objects)
    assert api.data("{ objects(includeSystem: false) { apiName } }")["objects"] == []

    make_account(api)
    assert api.data("{ objects(includeSystem: false) { apiName system } }")["objects"] == [{"apiName": "account", "system": False}]
    assert [o["apiName"] for o in api.data("{ objects { apiName } }")["objects"]] == sorted(list(by_name) + ["account"])


def test_object_fields_hide_system_fields_unless_asked(api):
    make_account(api)
    query = '{ object(apiName: "account") { apiName pluralApiName graphqlType fields { apiName system } all: fields(includeSystem: true) { apiName system type graphqlName relationName } } }'
    account = api.data(query)["object"]
    assert account["apiName"] == "account" and account["pluralApiName"] == "accounts" and account["graphqlType"] == "Account"
    assert account["fields"] == [{"apiName": "name", "system": False}]
    every = {f["apiName"]: f for f in account["all"]}
    for system_field in ("id", "owner_id", "org_unit_id", "created_at", "created_by", "updated_at", "updated_by", "version", "deleted_at"):
        assert every[system_field]["system"] is True, system_field
    assert every["owner_id"]["type"] == "LOOKUP"
    assert (every["owner_id"]["graphqlName"], every["owner_id"]["relationName"]) == ("ownerId", "owner")
    assert every["name"]["system"] is False

    user = api.data('{ object(apiName: "user") { system fields { apiName } } }')["object"]
    assert user["system"] is True and "username" in [f["apiName"] for f in user["fields"]]
    assert "id" not in [f["apiName"] for f in user["fields"]]

    error = error_of(api, '{ object(apiName: "nothing") { apiName } }')
    assert error["extensions"]["code"] == "NOT_FOUND" and error["path"] == ["object"]


# -- creating objects ---------------------------------------------------------------------------
def test_create_object_with_typed_fields_and_use_it_on_the_next_request(api):
    make_account(api)
    start = version(api)
    deal = make_deal(api)
    assert version(api) == start + 1
    assert {k: deal[k] for k in ("apiName", "label", "pluralApiName", "pluralLabel", "description", "system", "graphqlType")} == {
        "apiName": "deal", "label": "Deal", "pluralApiName": "deals", "pluralLabel": "Deal",
        "description": "A sales opportunity", "system": False, "graphqlType": "Deal",
    }
    fields = {f["apiName"]: f for f in deal["fields"]}
    assert [f["apiName"] for f in deal["fields"]] == ["title", "amount", "phase", "account", "number"]

    title = fields["title"]
    assert (title["type"], title["required"], title["helpText"], title["graphqlName"], title["relationName"]) == (
        "TEXT", True, "What is sold", "title", None)
    assert title["options"] == options(maxLength=80, pattern="^[A-Za-z0-9 ]+$")

    amount = fields["amount"]
    assert amount["type"] == "DECIMAL" and amount["indexed"] is True
    assert amount["options"] == options(precision=12, scale=2, min="0", max="1000000")

    phase = fields["phase"]
    assert phase["type"] == "PICKLIST" and phase["tracked"] is True and phase["defaultValue"] == "open"
    assert phase["options"] == options(restricted=True, values=[
        {"apiName": "open", "label": "Open", "order": 1, "active": True, "graphqlName": "OPEN"},
        {"apiName": "closed_won", "label": "Closed won", "order": 2, "active": True, "graphqlName": "CLOSED_WON"},
        {"apiName": "closed_lost", "label": "Closed lost", "order": 3, "active": True, "graphqlName": "CLOSED_LOST"},
    ])

    account = fields["account"]
    assert (account["type"], account["graphqlName"], account["relationName"]) == ("LOOKUP", "accountId", "account")
    assert account["options"] == options(target="account", onDelete="RESTRICT", relationshipName="deals")

    number = fields["number"]
    assert number["type"] == "AUTO_NUMBER" and number["options"] == options(format="D-{0000}", start=7)

    # Read back as stored.
    assert api.data(f'{{ object(apiName: "deal") {{ {OBJECT} }} }}')["object"] == deal

    # The next request already has every generated type and root field.
    account_id = api.data('mutation { createAccount(input: {name: "Acme"}) { id } }')["createAccount"]["id"]
    created = api.data(
        "mutation($a: ID) { createDeal(input: {title: \"Big sale\", amount: \"12.5\", accountId: $a}) "
        "{ id title amount phase number accountId account { name } } }", {"a": account_id},
    )["createDeal"]
    assert {k: v for k, v in created.items() if k != "id"} == {
        "title": "Big sale", "amount": "12.50", "phase": "OPEN", "number": "D-0007", "accountId": account_id,
        "account": {"name": "Acme"},
    }
    second = api.data('mutation { createDeal(input: {title: "Small sale", phase: CLOSED_WON}) { number phase } }')["createDeal"]
    assert second == {"number": "D-0008", "phase": "CLOSED_WON"}
    listed = api.data("{ deals(orderBy: [NUMBER_ASC], filter: {phase: {in: [OPEN, CLOSED_WON]}}) { totalCount nodes { number } } }")
    assert listed["deals"] == {"totalCount": 2, "nodes": [{"number": "D-0007"}, {"number": "D-0008"}]}
    related = api.data("query($id: ID!) { account(id: $id) { deals { nodes { title } } } }", {"id": account_id})
    assert related["account"]["deals"]["nodes"] == [{"title": "Big sale"}]
    assert api.data('{ dealAggregate { count sum { amount } } }')["dealAggregate"] == [{"count": 2, "sum": {"amount": "12.50"}}]

    # The field options hold on writes.
    error = mutation_error(api, 'mutation { createDeal(input: {title: "bad!", amount: "-1"}) { id } }', code="VALIDATION_FAILED")
    assert {e["field"] for e in error["extensions"]["errors"]} == {"input.title", "input.amount"}


def test_create_object_with_explicit_plural_and_more_field_types(api):
    created = create_object(api, {
        "apiName": "person", "label": "Person", "pluralApiName": "people", "pluralLabel": "People", "fields": [
            {"apiName": "tags", "label": "Tags", "type": "MULTI_PICKLIST",
             "options": {"values": [{"apiName": "vip", "label": "VIP"}, {"apiName": "new_customer", "label": "New"}]}},
            {"apiName": "kind", "label": "Kind", "type": "PICKLIST",
             "options": {"restricted": False, "values": [{"apiName": "a", "label": "A"}]}},
            {"apiName": "age", "label": "Age", "type": "INTEGER", "options": {"min": "0", "max": "150"}},
            {"apiName": "active", "label": "Active", "type": "BOOLEAN", "defaultValue": True},
            {"apiName": "born", "label": "Born", "type": "DATE"},
            {"apiName": "salary", "label": "Salary", "type": "CURRENCY"},
            {"apiName": "email", "label": "Email", "type": "EMAIL", "unique": True},
        ],
    })
    assert (created["pluralApiName"], created["pluralLabel"], created["graphqlType"]) == ("people", "People", "Person")
    fields = {f["apiName"]: f for f in created["fields"]}
    assert fields["tags"]["options"]["values"][1]["graphqlName"] == "NEW_CUSTOMER"
    assert fields["kind"]["options"]["restricted"] is False
    assert (fields["age"]["options"]["min"], fields["age"]["options"]["max"]) == ("0", "150")
    assert fields["active"]["defaultValue"] is True
    assert (fields["salary"]["options"]["precision"], fields["salary"]["options"]["scale"]) == (18, 2)
    assert fields["email"]["unique"] is True

    person = api.data('mutation { createPerson(input: {tags: [VIP, NEW_CUSTOMER], kind: "anything", age: 40, '
                      'born: "1986-02-03", salary: "1000", email: "a@example.com"}) '
                      '{ tags kind age active born salary email } }')["createPerson"]
    assert person == {"tags": ["VIP", "NEW_CUSTOMER"], "kind": "anything", "age": 40, "active": True,
                      "born": "1986-02-03", "salary": "1000.00", "email": "a@example.com"}
    assert api.data("{ people(filter: {tags: {contains: VIP}}) { totalCount } }")["people"]["totalCount"] == 1
    error = mutation_error(api, 'mutation { createPerson(input: {email: "a@example.com", age: 151}) { id } }',
                           code="VALIDATION_FAILED")
    assert {e["field"] for e in error["extensions"]["errors"]} == {"input.email", "input.age"}


def test_invalid_definition_lists_every_problem_with_dotted_paths_and_changes_nothing(api):
    before = snapshot(api)
    error = mutation_error(api, CREATE_OBJECT, {"i": {"apiName": "Bad Name", "label": "", "fields": [
        {"apiName": "ok", "label": "Ok", "type": "TEXT"},
        {"apiName": "price", "label": "Price", "type": "DECIMAL", "options": {"precision": 40, "scale": 2}},
        {"apiName": "status", "label": "", "type": "PICKLIST"},
        {"apiName": "owner_id", "label": "Owner", "type": "TEXT"},
    ]}}, code="INVALID_DEFINITION")
    assert error["path"] == ["createObject"]
    assert problems(error) == {
        ("INVALID", "input.apiName"),
        ("INVALID", "input.label"),
        ("INVALID", "input.fields.1.options.precision"),
        ("INVALID", "input.fields.2.label"),
        ("REQUIRED", "input.fields.2.options.values"),
        ("RESERVED_NAME", "input.fields.3.apiName"),
    }
    assert snapshot(api) == before

    make_account(api)
    before = snapshot(api)
    error = mutation_error(api, CREATE_FIELD, {"o": "account", "i": {
        "apiName": "Rating", "label": "", "type": "INTEGER", "options": {"min": "10", "max": "1"},
    }}, code="INVALID_DEFINITION")
    assert error["path"] == ["createField"]
    assert problems(error) == {("INVALID", "input.apiName"), ("INVALID", "input.label"), ("INVALID", "input.options.min")}

    error = mutation_error(api, CREATE_FIELD, {"o": "account", "i": {
        "apiName": "rating", "label": "Rating", "type": "INTEGER", "defaultValue": 9, "options": {"min": "1", "max": "5"},
    }}, code="INVALID_DEFINITION")
    assert problems(error) == {("INVALID", "input.defaultValue")}

    error = mutation_error(api, CREATE_FIELD, {"o": "account", "i": {
        "apiName": "parent", "label": "Parent", "type": "LOOKUP", "options": {"target": "nothing"},
    }}, code="INVALID_DEFINITION")
    assert problems(error) == {("UNKNOWN_TARGET", "input.options.target")}

    error = mutation_error(api, CREATE_FIELD, {"o": "account", "i": {"apiName": "name", "label": "Name", "type": "TEXT"}},
                           code="INVALID_DEFINITION")
    assert problems(error) == {("DUPLICATE", "input.apiName")}

    error = mutation_error(api, CREATE_OBJECT, {"i": {"apiName": "account", "label": "Again"}}, code="INVALID_DEFINITION")
    assert ("DUPLICATE", "input.apiName") in problems(error)

    error = mutation_error(api, CREATE_FIELD, {"o": "nothing", "i": {"apiName": "x", "label": "X", "type": "TEXT"}},
                           code="NOT_FOUND")
    assert error["extensions"]["field"] == "object"
    assert snapshot(api) == before


def test_a_bad_api_name_next_to_a_default_value_is_reported_not_a_crash(api):
    make_account(api)
    before = snapshot(api)
    error = mutation_error(api, CREATE_FIELD, {"o": "account", "i": {
        "apiName": "Rating", "label": "", "type": "INTEGER", "defaultValue": "high", "options": {"min": "1", "max": "5"},
    }}, code="INVALID_DEFINITION")
    assert problems(error) == {("INVALID", "input.apiName"), ("INVALID", "input.label"), ("INVALID", "input.defaultValue")}
    error = mutation_error(api, CREATE_OBJECT, {"i": {"apiName": "ticket", "label": "Ticket", "fields": [
        {"apiName": "Priority", "label": "Priority", "type": "TEXT", "defaultValue": "low"},
    ]}}, code="INVALID_DEFINITION")
    assert problems(error) == {("INVALID", "input.fields.0.apiName")}
    assert snapshot(api) == before


def test_an_unknown_field_type_or_option_is_a_bad_query(api):
    make_account(api)
    before = snapshot(api)
    error = error_of(api, 'mutation { createField(object: "account", input: {apiName: "x", label: "X", type: STRING}) { apiName } }',
                     status=400)
    assert error["extensions"]["code"] == "BAD_QUERY" and "STRING" in error["message"]
    error = error_of(api, 'mutation { createField(object: "account", input: {apiName: "x", label: "X", type: TEXT, options: {size: 3}}) { apiName } }',
                     status=400)
    assert error["extensions"]["code"] == "BAD_QUERY" and "size" in error["message"]
    assert snapshot(api) == before


# -- changing and deleting objects --------------------------------------------------------------
def test_update_object_changes_label_plural_label_and_description(api):
    make_account(api)
    start = version(api)
    updated = api.data(UPDATE_OBJECT, {"a": "account", "i": {"label": "Customer", "pluralLabel": "Customers",
                                                            "description": "Who pays"}})["updateObject"]
    assert updated == {"apiName": "account", "label": "Customer", "pluralApiName": "accounts", "pluralLabel": "Customers",
                       "description": "Who pays"}
    assert version(api) == start + 1
    stored = api.data('{ object(apiName: "account") { label pluralLabel description graphqlType } }')["object"]
    assert stored == {"label": "Customer", "pluralLabel": "Customers", "description": "Who pays", "graphqlType": "Account"}
    # The API names are unchanged; the description reaches the generated type.
    assert api.data('{ __type(name: "Account") { description } }')["__type"]["description"] == "Who pays"
    assert api.data("{ accounts { totalCount } }")["accounts"]["totalCount"] == 0

    # Only the description this time: the label stays.
    api.data(UPDATE_OBJECT, {"a": "account", "i": {"description": ""}})
    assert api.data('{ object(apiName: "account") { label description } }')["object"] == {"label": "Customer", "description": ""}

    before = snapshot(api)
    error = mutation_error(api, UPDATE_OBJECT, {"a": "account", "i": {"label": ""}}, code="INVALID_DEFINITION")
    assert problems(error) == {("INVALID", "input.label")}
    error = mutation_error(api, UPDATE_OBJECT, {"a": "nothing", "i": {"label": "X"}}, code="NOT_FOUND")
    assert error["path"] == ["updateObject"]
    assert snapshot(api) == before


def test_delete_object_removes_its_types_and_refuses_referenced_objects(api):
    make_account(api)
    make_deal(api)
    api.data('mutation { createDeal(input: {title: "Gone soon"}) { id } }')
    assert has_table(api, "deal") and has_table(api, "account")

    before = snapshot(api)
    error = mutation_error(api, DELETE_OBJECT, {"a": "account"}, code="IN_USE")
    assert error["path"] == ["deleteObject"]
    assert "deal.account" in error["message"]
    assert error["extensions"]["ctx"]["referrers"] == ["deal.account"]
    assert snapshot(api) == before and has_table(api, "account")
    assert api.data("{ accounts { totalCount } }")["accounts"]["totalCount"] == 0

    start = version(api)
    assert api.data(DELETE_OBJECT, {"a": "deal"}) == {"deleteObject": "deal"}
    assert version(api) == start + 1
    assert not has_table(api, "deal")
    assert "deal" not in [o["apiName"] for o in api.data("{ objects { apiName } }")["objects"]]
    assert api.data('{ __type(name: "Deal") { name } }') == {"__type": None}
    assert api.data('{ __type(name: "DealPhase") { name } }') == {"__type": None}
    assert_bad_query(api, "{ deals { totalCount } }", "deals")
    assert_bad_query(api, 'mutation { createDeal(input: {title: "x"}) { id } }', "createDeal")
    # The related list it gave the account went with it.
    assert_bad_query(api, '{ accounts { nodes { deals { totalCount } } } }', "deals")
    error = mutation_error(api, '{ object(apiName: "deal") { apiName } }', code="NOT_FOUND")
    assert error["path"] == ["object"]

    # Nothing references the account any more.
    assert api.data(DELETE_OBJECT, {"a": "account"}) == {"deleteObject": "account"}
    error = mutation_error(api, DELETE_OBJECT, {"a": "account"}, code="NOT_FOUND")
    assert error["path"] == ["deleteObject"]

    # A recreated object starts empty, with its new shape.
    create_object(api, {"apiName": "deal", "label": "Deal", "fields": [{"apiName": "code", "label": "Code", "type": "TEXT"}]})
    assert api.data("{ deals { totalCount } }")["deals"]["totalCount"] == 0
    assert_bad_query(api, "{ deals { nodes { title } } }", "title")


def test_system_objects_and_fields_cannot_be_deleted_or_changed(api):
    make_account(api)
    before = snapshot(api)
    error = mutation_error(api, DELETE_OBJECT, {"a": "user"}, code="IN_USE")
    assert "system" in error["message"]
    error = mutation_error(api, DELETE_FIELD, {"o": "user", "a": "username"}, code="IN_USE")
    assert "system" in error["message"]
    mutation_error(api, DELETE_FIELD, {"o": "account", "a": "created_at"}, code="IN_USE")
    mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "id", "i": {"label": "Key"}}, code="IN_USE")
    assert snapshot(api) == before


def test_an_object_referencing_itself_can_be_deleted(api):
    create_object(api, {"apiName": "task", "label": "Task", "fields": [
        {"apiName": "parent", "label": "Parent", "type": "LOOKUP", "options": {"target": "task"}},
    ]})
    parent = api.data("mutation { createTask(input: {}) { id } }")["createTask"]["id"]
    child = api.data("mutation($p: ID) { createTask(input: {parentId: $p}) { parent { id } } }", {"p": parent})["createTask"]
    assert child == {"parent": {"id": parent}}
    assert api.data(DELETE_OBJECT, {"a": "task"}) == {"deleteObject": "task"}
    assert not has_table(api, "task")


# -- fields -------------------------------------------------------------------------------------
def test_create_field_is_writable_and_readable_on_the_next_request(api):
    make_account(api)
    api.data('mutation { createAccount(input: {name: "Old"}) { id } }')
    start = version(api)
    field = create_field(api, "account", {"apiName": "rating", "label": "Rating", "type": "INTEGER", "defaultValue": 3,
                                          "description": "1 to 5", "options": {"min": 1, "max": 5}})
    assert (field["apiName"], field["type"], field["defaultValue"], field["description"], field["graphqlName"]) == (
        "rating", "INTEGER", 3, "1 to 5", "rating")
    assert (field["options"]["min"], field["options"]["max"]) == ("1", "5")
    assert version(api) == start + 1

    created = api.data('mutation { createAccount(input: {name: "New"}) { rating } }')["createAccount"]
    assert created == {"rating": 3}
    listed = api.data("{ accounts(orderBy: [NAME_ASC]) { nodes { name rating } } }")["accounts"]["nodes"]
    assert listed == [{"name": "New", "rating": 3}, {"name": "Old", "rating": None}]
    error = mutation_error(api, 'mutation { createAccount(input: {name: "Bad", rating: 9}) { id } }', code="VALIDATION_FAILED")
    assert [e["field"] for e in error["extensions"]["errors"]] == ["input.rating"]


def test_update_field_safe_changes_apply_to_the_data(api):
    make_account(api)
    create_field(api, "account", {"apiName": "code", "label": "Code", "type": "TEXT", "options": {"maxLength": 5}})
    create_field(api, "account", {"apiName": "seats", "label": "Seats", "type": "INTEGER"})
    api.data('mutation { createAccount(input: {name: "A", code: "abc", seats: 3}) { id } }')
    error = mutation_error(api, 'mutation { createAccount(input: {name: "B", code: "abcdefgh"}) { id } }', code="VALIDATION_FAILED")
    assert [(e["code"], e["field"]) for e in error["extensions"]["errors"]] == [("TOO_LONG", "input.code")]

    start = version(api)
    changed = update_field(api, "account", "code", {"label": "Account code", "options": {"maxLength": 10}, "unique": True})
    assert (changed["label"], changed["options"]["maxLength"], changed["unique"]) == ("Account code", 10, True)
    assert version(api) == start + 1
    # The column grew too: a value longer than the old length is stored (on PostgreSQL, varchar(5) would refuse it).
    assert api.data('mutation { createAccount(input: {name: "B", code: "abcdefgh"}) { code } }') == {"createAccount": {"code": "abcdefgh"}}
    error = mutation_error(api, 'mutation { createAccount(input: {name: "C", code: "abc"}) { id } }', code="VALIDATION_FAILED")
    assert [e["field"] for e in error["extensions"]["errors"]] == ["input.code"]

    # integer -> decimal keeps every value.
    changed = update_field(api, "account", "seats", {"type": "DECIMAL", "options": {"precision": 14, "scale": 2}})
    assert changed["type"] == "DECIMAL" and (changed["options"]["precision"], changed["options"]["scale"]) == (14, 2)
    assert version(api) == start + 2
    assert api.data('{ accounts(filter: {name: {eq: "A"}}) { nodes { seats } } }')["accounts"]["nodes"] == [{"seats": "3.00"}]
    assert api.data('mutation { createAccount(input: {name: "D", seats: "2.25"}) { seats } }') == {"createAccount": {"seats": "2.25"}}

    stored = api.data('{ object(apiName: "account") { fields { apiName label type unique options { maxLength precision scale } } } }')
    by_name = {f["apiName"]: f for f in stored["object"]["fields"]}
    assert by_name["code"] == {"apiName": "code", "label": "Account code", "type": "TEXT", "unique": True,
                               "options": {"maxLength": 10, "precision": None, "scale": None}}
    assert by_name["seats"]["type"] == "DECIMAL"


def test_update_field_unsafe_changes_are_refused_and_change_nothing(api):
    make_account(api)
    create_field(api, "account", {"apiName": "code", "label": "Code", "type": "TEXT", "options": {"maxLength": 20}})
    create_field(api, "account", {"apiName": "ratio", "label": "Ratio", "type": "DECIMAL", "options": {"precision": 10, "scale": 4}})
    api.data('mutation { createAccount(input: {name: "A", code: "not a number", ratio: "1.2345"}) { id } }')
    before = snapshot(api)

    error = mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "code", "i": {"type": "INTEGER"}}, code="UNSAFE_CHANGE")
    assert error["path"] == ["updateField"] and error["extensions"]["field"] == "input.type"
    assert "text" in error["message"] and "integer" in error["message"]

    error = mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "code", "i": {"options": {"maxLength": 5}}}, code="UNSAFE_CHANGE")
    assert error["extensions"]["field"] == "input.options" and "max_length" in error["message"]

    error = mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "ratio", "i": {"options": {"precision": 10, "scale": 2}}},
                           code="UNSAFE_CHANGE")
    assert error["extensions"]["field"] == "input.options" and "scale" in error["message"]

    assert snapshot(api) == before
    assert api.data("{ accounts { nodes { code ratio } } }")["accounts"]["nodes"] == [{"code": "not a number", "ratio": "1.2345"}]
    assert api.data('mutation { createAccount(input: {name: "B", code: "still text"}) { code } }') == {"createAccount": {"code": "still text"}}

    error = mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "nothing", "i": {"label": "X"}}, code="NOT_FOUND")
    assert error["path"] == ["updateField"]


def test_making_a_field_unique_over_duplicates_is_refused(api):
    make_account(api)
    api.data('mutation { createAccounts(inputs: [{name: "Same"}, {name: "Same"}, {name: "Other"}]) { id } }')
    before = snapshot(api)
    error = mutation_error(api, UPDATE_FIELD, {"o": "account", "a": "name", "i": {"unique": True}}, code="UNSAFE_CHANGE")
    assert error["extensions"]["field"] == "input.unique"
    assert error["extensions"]["ctx"]["duplicated_values"] == 1
    assert snapshot(api) == before
    # Still not unique: another duplicate is accepted.
    api.data('mutation { createAccount(input: {name: "Other"}) { id } }')

    # Once the values are distinct, the change goes through and holds.
    for node, name in zip(api.data('{ accounts(orderBy: [CREATED_AT_ASC]) { nodes { id } } }')["accounts"]["nodes"], "abcd"):
        api.data("mutation($id: ID!, $n: String) { updateAccount(id: $id, input: {name: $n}) { id } }", {"id": node["id"], "n": name})
    assert update_field(api, "account", "name", {"unique": True})["unique"] is True
    error = mutation_error(api, 'mutation { createAccount(input: {name: "a"}) { id } }', code="VALIDATION_FAILED")
    assert [(e["code"], e["field"]) for e in error["extensions"]["errors"]] == [("DUPLICATE_VALUE", "input.name")]


def test_delete_field_drops_it_from_the_schema_and_keeps_the_rest(api):
    make_account(api)
    create_field(api, "account", {"apiName": "region", "label": "Region", "type": "TEXT"})
    created = api.data('mutation { createAccount(input: {name: "Acme", region: "EU"}) { id version } }')["createAccount"]
    assert api.data("{ accounts { nodes { region } } }")["accounts"]["nodes"] == [{"region": "EU"}]

    start = version(api)
    assert api.data(DELETE_FIELD, {"o": "account", "a": "region"}) == {"deleteField": "region"}
    assert version(api) == start + 1
    assert [f["apiName"] for f in api.data('{ object(apiName: "account") { fields { apiName } } }')["object"]["fields"]] == ["name"]
    assert_bad_query(api, "{ accounts { nodes { region } } }", "region")
    assert_bad_query(api, '{ accounts(filter: {region: {eq: "EU"}}) { totalCount } }', "region")
    assert_bad_query(api, 'mutation { createAccount(input: {name: "X", region: "US"}) { id } }', "region")
    assert_bad_query(api, "mutation($i: AccountCreateInput!) { createAccount(input: $i) { id } }", "region",
                     {"i": {"name": "X", "region": "US"}})
    assert api.data("query($id: ID!) { account(id: $id) { name version } }", {"id": created["id"]})["account"] == {
        "name": "Acme", "version": created["version"]}

    error = mutation_error(api, DELETE_FIELD, {"o": "account", "a": "region"}, code="NOT_FOUND")
    assert error["path"] == ["deleteField"]
    # The name is free again, with another type.
    create_field(api, "account", {"apiName": "region", "label": "Region", "type": "INTEGER"})
    assert api.data("{ accounts { nodes { region } } }")["accounts"]["nodes"] == [{"region": None}]


# -- GraphQL name collisions --------------------------------------------------------------------
def input_path(definition_path: str) -> str:
    """``fields.0.options.relationship_name`` as the input's path: ``input.fields.0.options.relationshipName``."""
    def camel(segment: str) -> str:
        head, *rest = segment.split("_")
        return head + "".join(part.title() for part in rest)
    return ".".join(["input", *(s if s.isdigit() else camel(s) for s in definition_path.split("."))])


def assert_collision_refused(api, query: str, variables: dict, fields: set[str], graphql_name: str | None = None) -> dict:
    """The change is refused with NAME_COLLISION at the given definition paths (reported under the
    ``input`` argument, in GraphQL names), and nothing changed."""
    fields = {input_path(f) for f in fields}
    before = snapshot(api)
    tables = set(inspect(api.runtime.engine).get_table_names())
    error = mutation_error(api, query, variables, code="INVALID_DEFINITION")
    collisions = [p for p in error["extensions"]["errors"] if p["code"] == "NAME_COLLISION"]
    assert collisions, error
    assert {p["field"] for p in collisions} <= fields and {p["field"] for p in collisions}, error
    if graphql_name:
        assert any(graphql_name in p["message"] for p in collisions), error
    assert snapshot(api) == before
    assert set(inspect(api.runtime.engine).get_table_names()) == tables
    return error


def test_object_names_generating_an_existing_graphql_type_are_refused(api):
    create_object(api, {"apiName": "deal", "label": "Deal"})
    error = assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "deal_connection", "label": "X"}}, {"api_name"},
                                     "DealConnection")
    assert "deal" in error["extensions"]["errors"][0]["message"]
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "deal_filter", "label": "X"}}, {"api_name"}, "DealFilter")
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "deal_aggregate", "label": "X"}}, {"api_name"}, "dealAggregate")
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "page_info", "label": "X"}}, {"api_name"}, "PageInfo")
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "metadata_change", "label": "X"}}, {"api_name"}, "MetadataChange")
    assert not has_table(api, "deal_connection") and not has_table(api, "page_info")
    # The schema still serves both the old object and the metadata API.
    assert api.data("{ deals { totalCount } metadataVersion }")["deals"]["totalCount"] == 0


def test_the_other_order_is_refused_too(api):
    create_object(api, {"apiName": "deal_connection", "label": "X"})
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "deal", "label": "Deal"}}, {"api_name"}, "DealConnection")
    assert not has_table(api, "deal")


def test_object_named_after_the_field_type_info_type_is_refused(api):
    # FieldTypeInfo is the type of `fieldTypes`; an object generating it would break every request.
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "field_type_info", "label": "X"}}, {"api_name"}, "FieldTypeInfo")
    assert api.data("{ metadataVersion fieldTypes { name } }")["fieldTypes"]


def test_field_names_sharing_a_graphql_field_are_refused(api):
    make_account(api)
    create_object(api, {"apiName": "deal", "label": "Deal", "fields": [
        {"apiName": "account", "label": "Account", "type": "LOOKUP", "options": {"target": "account"}},
    ]})
    # `account` exposes accountId (raw id) and account (relation): an `account_id` field would take one of them.
    assert_collision_refused(api, CREATE_FIELD, {"o": "deal", "i": {"apiName": "account_id", "label": "X", "type": "TEXT"}},
                             {"api_name"}, "accountId")
    assert_collision_refused(api, CREATE_FIELD, {"o": "deal", "i": {
        "apiName": "account_id", "label": "X", "type": "LOOKUP", "options": {"target": "account"}}}, {"api_name"})
    # The system lookup owner_id exposes `owner`.
    assert_collision_refused(api, CREATE_FIELD, {"o": "deal", "i": {"apiName": "owner", "label": "X", "type": "TEXT"}},
                             {"api_name"}, "owner")
    # A related list named like an existing field of the target.
    assert_collision_refused(api, CREATE_FIELD, {"o": "deal", "i": {
        "apiName": "second_account", "label": "X", "type": "LOOKUP", "options": {"target": "account", "relationshipName": "name"}}},
        {"options.relationship_name"}, "Account.name")
    # Within one new object: every field involved is named.
    assert_collision_refused(api, CREATE_OBJECT, {"i": {"apiName": "quote", "label": "Quote", "fields": [
        {"apiName": "account", "label": "A", "type": "LOOKUP", "options": {"target": "account"}},
        {"apiName": "account_id", "label": "B", "type": "TEXT"},
    ]}}, {"fields.0.api_name", "fields.1.api_name"}, "accountId")
    assert api.data("{ deals { nodes { accountId account { name } } } }") == {"deals": {"nodes": []}}


PICKLIST_FILTER_CASES = {
    # The object deal_phase_filter would generate a second DealPhaseFilter type.
    "object_named_like_a_picklist_filter": (CREATE_OBJECT, {"i": {"apiName": "deal_phase_filter", "label": "X"}}, {"api_name"}),
    # The unrestricted picklist `kind` has the input DealKindFilter, which the object deal_kind would generate too.
    "object_named_like_an_unrestricted_picklist_filter": (CREATE_OBJECT, {"i": {"apiName": "deal_kind", "label": "X"}}, {"api_name"}),
    # A picklist `phase_filter` would generate the enum DealPhaseFilter.
    "picklist_enum_named_like_another_picklist_filter": (CREATE_FIELD, {"o": "deal", "i": {
        "apiName": "phase_filter", "label": "X", "type": "PICKLIST", "options": {"values": [{"apiName": "a", "label": "A"}]}}},
        {"api_name"}),
}


@pytest.mark.parametrize("case", list(PICKLIST_FILTER_CASES))
def test_picklist_filter_types_are_part_of_the_collision_check(api, case):
    # Restricted picklist `phase` of `deal`: enum DealPhase and input DealPhaseFilter; unrestricted `kind`: input DealKindFilter.
    create_object(api, {"apiName": "deal", "label": "Deal", "fields": [
        {"apiName": "phase", "label": "Phase", "type": "PICKLIST", "options": {"values": [{"apiName": "open", "label": "Open"}]}},
        {"apiName": "kind", "label": "Kind", "type": "PICKLIST",
         "options": {"restricted": False, "values": [{"apiName": "a", "label": "A"}]}},
    ]})
    query, variables, paths = PICKLIST_FILTER_CASES[case]
    assert_collision_refused(api, query, variables, paths)
    assert api.data('{ deals(filter: {phase: {eq: OPEN}, kind: {eq: "a"}}) { totalCount } }') == {"deals": {"totalCount": 0}}


# -- the change log and the version -------------------------------------------------------------
def test_metadata_version_increments_by_one_per_change_and_changes_are_listed(api):
    start = version(api)
    steps = [
        (CREATE_OBJECT, {"i": {"apiName": "account", "label": "Account"}}),
        (CREATE_FIELD, {"o": "account", "i": {"apiName": "code", "label": "Code", "type": "TEXT", "options": {"maxLength": 10}}}),
        (UPDATE_FIELD, {"o": "account", "a": "code", "i": {"options": {"maxLength": 20}}}),
        (UPDATE_OBJECT, {"a": "account", "i": {"label": "Customer"}}),
        (CREATE_OBJECT, {"i": {"apiName": "scratch", "label": "Scratch"}}),
        (DELETE_FIELD, {"o": "account", "a": "code"}),
        (DELETE_OBJECT, {"a": "scratch"}),
    ]
    for number, (query, variables) in enumerate(steps, start=1):
        api.data(query, variables)
        assert version(api) == start + number
        # A refused change moves nothing.
        mutation_error(api, UPDATE_OBJECT, {"a": "account", "i": {"label": ""}}, code="INVALID_DEFINITION")
        assert version(api) == start + number

    changes = api.data("{ metadataChanges(limit: 7) { version actorId at action objectApiName fieldApiName before after } }")["metadataChanges"]
    assert [(c["version"], c["action"], c["objectApiName"], c["fieldApiName"]) for c in changes] == [
        (start + 7, "delete_object", "scratch", None),
        (start + 6, "delete_field", "account", "code"),
        (start + 5, "create_object", "scratch", None),
        (start + 4, "update_object", "account", None),
        (start + 3, "update_field", "account", "code"),
        (start + 2, "create_field", "account", "code"),
        (start + 1, "create_object", "account", None),
    ]
    by_action = {c["action"] + (c["objectApiName"] or ""): c for c in changes}
    update = by_action["update_fieldaccount"]
    assert update["before"]["options"]["max_length"] == 10 and update["after"]["options"]["max_length"] == 20
    renamed = by_action["update_objectaccount"]
    assert (renamed["before"]["label"], renamed["after"]["label"]) == ("Account", "Customer")
    assert by_action["create_objectaccount"]["before"] is None and by_action["create_objectaccount"]["after"]["api_name"] == "account"
    assert by_action["delete_objectscratch"]["after"] is None and by_action["delete_objectscratch"]["before"]["api_name"] == "scratch"
    assert all(c["at"] for c in changes)

    only_account = api.data('{ metadataChanges(object: "account") { objectApiName version } }')["metadataChanges"]
    assert [c["version"] for c in only_account] == [start + 6, start + 4, start + 3, start + 2, start + 1]
    assert len(api.data("{ metadataChanges(limit: 2) { version } }")["metadataChanges"]) == 2
    # The install created the system objects in the first change.
    oldest = api.data("{ metadataChanges(limit: 500) { version action objectApiName } }")["metadataChanges"][-2:]
    assert {(c["version"], c["action"], c["objectApiName"]) for c in oldest} == {
        (1, "create_object", "user"), (1, "create_object", "org_unit")}


def test_field_types_lists_every_type_and_each_can_be_created(api):
    types = api.data("{ fieldTypes { name operators sortable writable } }")["fieldTypes"]
    assert [t["name"] for t in types] == ALL_FIELD_TYPES
    enum = api.data('{ __type(name: "FieldTypeName") { enumValues { name } } }')["__type"]["enumValues"]
    assert sorted(v["name"] for v in enum) == sorted(ALL_FIELD_TYPES)
    by_name = {t["name"]: t for t in types}
    assert all(by_name[n]["writable"] is (n not in COMPUTED) for n in ALL_FIELD_TYPES)
    assert {"eq", "gte", "in", "is_null"} <= set(by_name["DECIMAL"]["operators"]) and by_name["DECIMAL"]["sortable"] is True
    assert "contains" in by_name["TEXT"]["operators"]
    assert "is_null" in by_name["JSON"]["operators"]

    make_account(api)
    needed = {
        "PICKLIST": {"values": [{"apiName": "a", "label": "A"}]}, "MULTI_PICKLIST": {"values": [{"apiName": "a", "label": "A"}]},
        "LOOKUP": {"target": "account"}, "MASTER_DETAIL": {"target": "sample"},
        "FORMULA": {"expression": "record.f_integer * 2", "resultType": "integer"}, "ROLLUP": {"childObject": "sample", "function": "count"},
    }
    fields = [{"apiName": f"f_{n.lower()}", "label": n, "type": n, **({"options": needed[n]} if n in needed else {})}
              for n in ALL_FIELD_TYPES]
    created = create_object(api, {"apiName": "sample", "label": "Sample", "fields": fields})
    assert [f["type"] for f in created["fields"]] == ALL_FIELD_TYPES
    assert api.data("{ samples { totalCount } }")["samples"]["totalCount"] == 0


# -- inactive picklist values -------------------------------------------------------------------
def test_an_inactive_picklist_value_stays_readable_but_cannot_be_written(api):
    make_account(api)
    make_deal(api)
    old = api.data('mutation { createDeal(input: {title: "Old", phase: CLOSED_LOST}) { id phase } }')["createDeal"]
    assert old["phase"] == "CLOSED_LOST"

    start = version(api)
    values = [dict(v, active=(v["apiName"] != "closed_lost")) for v in PHASE_VALUES]
    changed = update_field(api, "deal", "phase", {"options": {"values": values}})
    assert [(v["apiName"], v["active"]) for v in changed["options"]["values"]] == [
        ("open", True), ("closed_won", True), ("closed_lost", False)]
    assert version(api) == start + 1

    enum = api.data('{ __type(name: "DealPhase") { enumValues(includeDeprecated: true) { name isDeprecated } } }')
    assert enum["__type"]["enumValues"] == [
        {"name": "OPEN", "isDeprecated": False}, {"name": "CLOSED_WON", "isDeprecated": False},
        {"name": "CLOSED_LOST", "isDeprecated": True},
    ]
    active_only = api.data('{ __type(name: "DealPhase") { enumValues { name } } }')["__type"]["enumValues"]
    assert [v["name"] for v in active_only] == ["OPEN", "CLOSED_WON"]

    # Old records still read (and filter by) the value.
    assert api.data("query($id: ID!) { deal(id: $id) { phase } }", {"id": old["id"]})["deal"] == {"phase": "CLOSED_LOST"}
    assert api.data("{ deals(filter: {phase: {eq: CLOSED_LOST}}) { totalCount } }")["deals"]["totalCount"] == 1
    # Changing something else keeps it.
    assert api.data('mutation($id: ID!) { updateDeal(id: $id, input: {title: "Old too"}) { phase } }',
                    {"id": old["id"]})["updateDeal"] == {"phase": "CLOSED_LOST"}

    # Writing it is refused, as a literal or a variable, on create and on update.
    for query, variables in [
        ('mutation { createDeal(input: {title: "New", phase: CLOSED_LOST}) { id } }', None),
        ("mutation($i: DealCreateInput!) { createDeal(input: $i) { id } }", {"i": {"title": "New", "phase": "CLOSED_LOST"}}),
    ]:
        error = mutation_error(api, query, variables, code="VALIDATION_FAILED")
        assert [e["field"] for e in error["extensions"]["errors"]] == ["input.phase"], error
    won = api.data('mutation { createDeal(input: {title: "Won"}) { id phase } }')["createDeal"]
    assert won["phase"] == "OPEN"
    error = mutation_error(api, 'mutation($id: ID!) { updateDeal(id: $id, input: {phase: CLOSED_LOST}) { id } }',
                           {"id": won["id"]}, code="VALIDATION_FAILED")
    assert [e["field"] for e in error["extensions"]["errors"]] == ["input.phase"]
    assert api.data("{ deals { totalCount } }")["deals"]["totalCount"] == 2

    # Removing the value instead of deactivating it is refused.
    before = snapshot(api)
    error = mutation_error(api, UPDATE_FIELD, {"o": "deal", "a": "phase", "i": {"options": {"values": PHASE_VALUES[:2]}}},
                           code="UNSAFE_CHANGE")
    assert "closed_lost" in error["message"]
    assert snapshot(api) == before

    # Reactivated, it is writable again.
    update_field(api, "deal", "phase", {"options": {"values": PHASE_VALUES}})
    assert api.data('mutation { createDeal(input: {title: "Lost", phase: CLOSED_LOST}) { phase } }') == {"createDeal": {"phase": "CLOSED_LOST"}}
