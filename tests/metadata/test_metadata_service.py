"""The metadata service: objects, fields, names, type changes, DDL atomicity and the change log.

Every test runs on SQLite and PostgreSQL (``runtime`` fixture) and checks outcomes through the
public API plus the database's own view of the schema (SQLAlchemy's inspector).
"""
from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy
from lowcode.metadata.actors import SYSTEM_ACTOR, Actor
from lowcode.metadata.errors import (
    InUse,
    InvalidDefinition,
    LowcodeError,
    NotFound,
    SchemaChangeFailed,
    UnsafeChange,
    ValidationFailed,
)
from lowcode.runtime import Runtime

ALICE = Actor("0b6c1b2e-8d0e-4a8e-9a57-3f0f3c2a1d10", "alice", is_system=True)
"""Acts on metadata and records (record tables store actor ids as UUIDs)."""

SYSTEM_COLUMNS = {
    "id", "owner_id", "org_unit_id", "business_type", "created_at", "created_by",
    "updated_at", "updated_by", "version", "deleted_at", "stage", "stage_entered_at",
}


# -- helpers -----------------------------------------------------------------------------------
def tables(rt) -> set[str]:
    return set(sqlalchemy.inspect(rt.engine).get_table_names())


def columns(rt, table: str) -> dict[str, str]:
    return {c["name"]: str(c["type"]) for c in sqlalchemy.inspect(rt.engine).get_columns(table)}


def indexes(rt, table: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    return {
        i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
        for i in sqlalchemy.inspect(rt.engine).get_indexes(table)
    }


def foreign_keys(rt, table: str) -> dict[tuple[str, ...], tuple[str, str | None]]:
    return {
        tuple(fk["constrained_columns"]): (fk["referred_table"], (fk.get("options") or {}).get("ondelete"))
        for fk in sqlalchemy.inspect(rt.engine).get_foreign_keys(table)
    }


def all_records(rt, obj: str) -> dict[str, dict]:
    page = rt.records.query(ALICE, obj, first=1000)
    assert not page.has_next_page
    return {r["id"]: r for r in page.records}


def without(records: dict[str, dict], *names: str) -> dict[str, dict]:
    return {i: {k: v for k, v in r.items() if k not in names} for i, r in records.items()}


def state(rt) -> dict:
    """Everything a refused change must leave as it was: metadata, version, log and tables."""
    catalog = rt.catalog()
    return {
        "version": catalog.version,
        "objects": {name: obj.as_dict() for name, obj in catalog.objects.items()},
        "log": len(rt.metadata.changes(limit=100_000)),
        "tables": tables(rt),
    }


def fresh_catalog(rt):
    """The Catalog as another process would load it from the database right now."""
    other = Runtime.connect(rt.engine.url.render_as_string(hide_password=False))
    try:
        return other.catalog()
    finally:
        other.close()


def error_fields(exc: LowcodeError) -> dict[str, str]:
    return {e.field: e.code for e in exc.errors}


def text(name, **extra):
    return {"api_name": name, "label": name.title() or "Text", "type": "text", **extra}


ACCOUNT = {
    "api_name": "account", "label": "Account", "description": "Companies we sell to.",
    "fields": [
        text("name", required=True, unique=True),
        {"api_name": "revenue", "label": "Revenue", "type": "decimal"},
        {"api_name": "employees", "label": "Employees", "type": "integer"},
    ],
}


def lookup(name, target, **options):
    return {"api_name": name, "label": name.title(), "type": "lookup", "options": {"target": target, **options}}


# -- objects -----------------------------------------------------------------------------------
def test_create_object_with_fields_defaults_plural_and_creates_table(runtime):
    before = runtime.catalog().version
    created = runtime.metadata.create_object(ALICE, ACCOUNT)

    assert created.api_name == "account"
    assert created.plural_api_name == "accounts"
    assert created.plural_label == "Account"
    assert created.description == "Companies we sell to."
    assert [f.api_name for f in created.fields] == ["name", "revenue", "employees"]

    catalog = runtime.catalog()
    assert catalog.version == before + 1
    obj = catalog.object("account")
    assert obj.as_dict() == created.as_dict()
    assert obj.field("name").unique and obj.field("name").required
    assert obj.field("revenue").options["precision"] == 18 and obj.field("revenue").options["scale"] == 2

    assert "obj_account" in tables(runtime)
    assert set(columns(runtime, "obj_account")) == SYSTEM_COLUMNS | {"name", "revenue", "employees"}
    assert indexes(runtime, "obj_account")["uq_obj_account_name"] == (("name",), True)

    record = runtime.records.create(ALICE, "account", {"name": "Acme", "revenue": "12.50", "employees": 7})
    assert runtime.records.get(ALICE, "account", record["id"])["revenue"] == Decimal("12.50")


def test_create_object_keeps_explicit_plural_names(runtime):
    obj = runtime.metadata.create_object(ALICE, {
        "api_name": "person", "label": "Person", "plural_api_name": "people", "plural_label": "People",
    })
    assert (obj.plural_api_name, obj.plural_label) == ("people", "People")
    assert runtime.catalog().by_plural("people").api_name == "person"
    assert "obj_person" in tables(runtime)


def test_update_object_changes_labels_and_description(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    version = runtime.catalog().version

    updated = runtime.metadata.update_object(ALICE, "account", {
        "label": "Customer", "plural_label": "Customers", "description": "Who pays us.",
    })

    assert (updated.label, updated.plural_label, updated.description) == ("Customer", "Customers", "Who pays us.")
    obj = runtime.catalog().object("account")
    assert (obj.api_name, obj.plural_api_name) == ("account", "accounts")
    assert (obj.label, obj.plural_label, obj.description) == ("Customer", "Customers", "Who pays us.")
    assert [f.api_name for f in obj.fields] == ["name", "revenue", "employees"]
    assert runtime.catalog().version == version + 1
    assert fresh_catalog(runtime).object("account").label == "Customer"


@pytest.mark.parametrize("changes", [
    {"api_name": "customer"},
    {"plural_api_name": "customers"},
    {"label": "Customer", "api_name": "customer"},
])
def test_update_object_cannot_change_api_names(runtime, changes):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.update_object(ALICE, "account", changes)

    bad = [k for k in changes if k.endswith("api_name")]
    assert set(error_fields(caught.value)) == set(bad)
    assert state(runtime) == before


def test_update_object_rejects_bad_labels_and_missing_objects(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.update_object(ALICE, "account", {"label": "", "plural_label": "x" * 256})
    assert set(error_fields(caught.value)) == {"label", "plural_label"}

    with pytest.raises(NotFound):
        runtime.metadata.update_object(ALICE, "nothing_here", {"label": "X"})
    assert state(runtime) == before


def test_delete_object_drops_its_table_and_records(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    record = runtime.records.create(ALICE, "account", {"name": "Acme"})
    version = runtime.catalog().version

    runtime.metadata.delete_object(ALICE, "account")

    assert "obj_account" not in tables(runtime)
    assert "account" not in runtime.catalog().objects
    assert "account" not in fresh_catalog(runtime).objects
    assert runtime.catalog().version == version + 1
    with pytest.raises(NotFound):
        runtime.records.get(ALICE, "account", record["id"])
    with pytest.raises(NotFound):
        runtime.metadata.delete_object(ALICE, "account")

    # The name is free again, and the new table starts empty.
    runtime.metadata.create_object(ALICE, ACCOUNT)
    assert all_records(runtime, "account") == {}
    runtime.records.create(ALICE, "account", {"name": "Acme"})


def test_deleting_a_referenced_object_is_refused_naming_the_referrers(runtime):
    runtime.metadata.create_object(ALICE, {**ACCOUNT, "fields": [*ACCOUNT["fields"], lookup("parent", "account")]})
    runtime.metadata.create_object(ALICE, {"api_name": "opportunity", "label": "Opportunity", "fields": [
        text("title"), lookup("account", "account")]})
    runtime.metadata.create_object(ALICE, {"api_name": "invoice", "label": "Invoice", "fields": [
        {"api_name": "customer", "label": "Customer", "type": "master_detail", "options": {"target": "account"}}]})
    acme = runtime.records.create(ALICE, "account", {"name": "Acme"})
    before = state(runtime)

    with pytest.raises(InUse) as caught:
        runtime.metadata.delete_object(ALICE, "account")

    assert "opportunity.account" in caught.value.message
    assert "invoice.customer" in caught.value.message
    assert "account.parent" not in caught.value.message  # a self reference does not block
    assert sorted(caught.value.ctx["referrers"]) == ["invoice.customer", "opportunity.account"]
    assert caught.value.as_dict()["code"] == "IN_USE"
    assert state(runtime) == before
    assert runtime.records.get(ALICE, "account", acme["id"])["name"] == "Acme"

    runtime.metadata.delete_field(ALICE, "opportunity", "account")
    with pytest.raises(InUse) as caught:
        runtime.metadata.delete_object(ALICE, "account")
    assert caught.value.ctx["referrers"] == ["invoice.customer"]

    runtime.metadata.delete_object(ALICE, "invoice")
    runtime.metadata.delete_object(ALICE, "account")  # only its own self reference is left
    assert {"obj_account", "obj_invoice"}.isdisjoint(tables(runtime))
    assert "obj_opportunity" in tables(runtime)


@pytest.mark.parametrize("name", ["user", "org_unit"])
def test_system_objects_cannot_be_deleted(runtime, name):
    before = state(runtime)

    with pytest.raises(InUse) as caught:
        runtime.metadata.delete_object(ALICE, name)

    assert "system object" in caught.value.message
    assert state(runtime) == before
    assert f"obj_{name}" in tables(runtime)


def test_system_fields_of_system_objects_cannot_be_deleted_but_added_fields_can(runtime):
    before = state(runtime)
    with pytest.raises(InUse):
        runtime.metadata.delete_field(ALICE, "user", "username")
    assert state(runtime) == before

    runtime.metadata.create_field(ALICE, "user", text("nickname"))
    runtime.metadata.delete_field(ALICE, "user", "nickname")
    assert "nickname" not in columns(runtime, "obj_user")


def test_duplicate_object_names_are_refused(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "account", "label": "Again"})
    assert error_fields(caught.value)["api_name"] == "DUPLICATE"
    assert set(error_fields(caught.value)) <= {"api_name", "plural_api_name"}  # its default plural is taken too

    # A name another object uses as its plural is taken too, and a plural equal to an api name.
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "accounts", "label": "Accounts"})
    assert error_fields(caught.value) == {"api_name": "DUPLICATE"}
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "client", "label": "Client", "plural_api_name": "account"})
    assert error_fields(caught.value) == {"plural_api_name": "DUPLICATE"}
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "users", "label": "Users"})
    assert error_fields(caught.value) == {"api_name": "DUPLICATE"}

    # Twice in one batch.
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_objects(ALICE, [{"api_name": "lead", "label": "Lead"}, {"api_name": "lead", "label": "Lead"}])
    errors = error_fields(caught.value)
    assert {"0.api_name", "1.api_name"} & set(errors) and set(errors.values()) == {"DUPLICATE"}
    assert state(runtime) == before


def test_objects_whose_graphql_names_collide_are_refused(runtime):
    runtime.metadata.create_object(ALICE, {"api_name": "a_1", "label": "A one"})
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "a1", "label": "A1"})
    assert error_fields(caught.value) == {"api_name": "NAME_COLLISION"}
    assert "a_1" in caught.value.errors[0].message

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_objects(ALICE, [
            {"api_name": "order_2", "label": "Order 2"}, {"api_name": "order2", "label": "Order2"}])
    assert error_fields(caught.value) == {"0.api_name": "NAME_COLLISION", "1.api_name": "NAME_COLLISION"}
    # Names that merely lose an underscore before a letter keep distinct GraphQL names (SalesOrder, Salesorder).
    assert state(runtime) == before
    assert {"obj_a1", "obj_order_2", "obj_order2"}.isdisjoint(tables(runtime))
    runtime.metadata.create_objects(ALICE, [
        {"api_name": "sales_order", "label": "Sales order"}, {"api_name": "salesorder", "label": "Sales order"}])


def test_create_objects_lists_referrer_before_its_target(runtime):
    created = runtime.metadata.create_objects(ALICE, [
        {"api_name": "contact", "label": "Contact", "fields": [text("email"), lookup("account", "account")]},
        {"api_name": "account", "label": "Account", "fields": [text("name")]},
    ])
    assert [o.api_name for o in created] == ["contact", "account"]
    assert foreign_keys(runtime, "obj_contact")[("account",)][0] == "obj_account"
    acme = runtime.records.create(ALICE, "account", {"name": "Acme"})
    ann = runtime.records.create(ALICE, "contact", {"email": "ann@acme.test", "account": acme["id"]})
    assert ann["account"] == acme["id"]


def test_create_objects_with_mutual_references(runtime):
    version = runtime.catalog().version
    runtime.metadata.create_objects(ALICE, [
        {"api_name": "account", "label": "Account", "fields": [text("name"), lookup("primary_contact", "contact")]},
        {"api_name": "contact", "label": "Contact", "fields": [text("email"), lookup("account", "account")]},
    ])

    catalog = runtime.catalog()
    assert catalog.version == version + 1
    assert catalog.object("account").field("primary_contact").target == "contact"
    assert catalog.object("contact").field("account").target == "account"
    assert foreign_keys(runtime, "obj_account")[("primary_contact",)][0] == "obj_contact"
    assert foreign_keys(runtime, "obj_contact")[("account",)][0] == "obj_account"

    acme = runtime.records.create(ALICE, "account", {"name": "Acme"})
    ann = runtime.records.create(ALICE, "contact", {"email": "ann@acme.test", "account": acme["id"]})
    acme = runtime.records.update(ALICE, "account", acme["id"], {"primary_contact": ann["id"]})
    assert acme["primary_contact"] == ann["id"]
    assert len(runtime.metadata.changes(limit=10)) >= 2
    assert {c["object_api_name"] for c in runtime.metadata.changes(limit=2)} == {"account", "contact"}


def test_object_names_may_be_sql_words_but_not_graphql_words(runtime):
    runtime.metadata.create_object(ALICE, {"api_name": "order", "label": "Order"})
    assert "obj_order" in tables(runtime)
    record = runtime.records.create(ALICE, "order", {})
    assert runtime.records.get(ALICE, "order", record["id"])["id"] == record["id"]

    before = state(runtime)
    for name in ("query", "mutation", "edges"):
        with pytest.raises(InvalidDefinition) as caught:
            runtime.metadata.create_object(ALICE, {"api_name": name, "label": name})
        assert error_fields(caught.value) == {"api_name": "RESERVED_NAME"}
    assert state(runtime) == before


@pytest.mark.parametrize("name", [
    "Account", "1account", "account__x", "account_", "sales order", "name; drop table x", "a'--",
    'x"; DROP TABLE lc_object; --', "", "a" * 64,
])
def test_bad_object_names_are_refused(runtime, name):
    before = state(runtime)
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": name, "label": "X"})
    assert set(error_fields(caught.value)) == {"api_name"}
    assert state(runtime) == before


def test_object_definition_that_is_not_a_mapping_is_refused(runtime):
    before = state(runtime)
    with pytest.raises(InvalidDefinition):
        runtime.metadata.create_object(ALICE, ["account"])
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"label": "No name"})
    assert error_fields(caught.value) == {"api_name": "REQUIRED"}
    assert state(runtime) == before


def test_longest_allowed_object_name_works(runtime):
    """Object names may have 59 characters, so obj_ + name fits PostgreSQL's 63; indexes must still work."""
    name = "o" + "x" * 57 + "a"
    assert len(name) == 59
    with pytest.raises(InvalidDefinition) as refused:
        runtime.metadata.create_object(ALICE, {"api_name": name + "b", "label": "Too long", "plural_api_name": "toolongs"})
    assert refused.value.errors[0].field == "api_name" and "59" in refused.value.errors[0].message
    runtime.metadata.create_object(ALICE, {"api_name": name, "label": "Long", "plural_api_name": "longs",
                                           "fields": [text("title", indexed=True)]})
    record = runtime.records.create(ALICE, name, {"title": "hello"})
    assert runtime.records.get(ALICE, name, record["id"])["title"] == "hello"


def test_longest_allowed_field_names_work(runtime):
    """Indexes are named uq_/ix_obj_<object>_<field> (shortened with a hash when too long); a
    58-character field name, the longest allowed, must still work."""
    runtime.metadata.create_object(ALICE, {"api_name": "thing", "label": "Thing"})
    unique_name = "u" + "x" * 56 + "a"
    indexed_name = "i" + "x" * 56 + "a"
    with pytest.raises(InvalidDefinition):
        runtime.metadata.create_field(ALICE, "thing", text(unique_name + "b"))
    runtime.metadata.create_field(ALICE, "thing", text(unique_name, unique=True))
    runtime.metadata.create_field(ALICE, "thing", {"api_name": indexed_name, "label": "I", "type": "integer", "indexed": True})
    record = runtime.records.create(ALICE, "thing", {unique_name: "one", indexed_name: 1})
    assert runtime.records.get(ALICE, "thing", record["id"])[unique_name] == "one"
    with pytest.raises(ValidationFailed):
        runtime.records.create(ALICE, "thing", {unique_name: "one"})


def test_geolocation_field_with_a_long_name_works(runtime):
    """A geolocation field stores <name>__lat and <name>__lng; both columns must stay distinct."""
    runtime.metadata.create_object(ALICE, {"api_name": "site", "label": "Site"})
    name = "g" * 58
    runtime.metadata.create_field(ALICE, "site", {"api_name": name, "label": "Where", "type": "geolocation"})
    record = runtime.records.create(ALICE, "site", {name: {"latitude": 48.85, "longitude": 2.35}})
    assert runtime.records.get(ALICE, "site", record["id"])[name] == {"latitude": 48.85, "longitude": 2.35}


# -- fields ------------------------------------------------------------------------------------
def test_add_update_and_delete_a_field(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    version = runtime.catalog().version

    field = runtime.metadata.create_field(ALICE, "account", {
        "api_name": "website", "label": "Website", "type": "url", "help_text": "Home page", "indexed": True})
    assert field.api_name == "website" and field.position == 3
    assert runtime.catalog().object("account").field("website").help_text == "Home page"
    assert "website" in columns(runtime, "obj_account")
    assert indexes(runtime, "obj_account")["ix_obj_account_website"] == (("website",), False)
    assert runtime.catalog().version == version + 1

    updated = runtime.metadata.update_field(ALICE, "account", "website", {"label": "Web site", "description": "Main URL"})
    assert (updated.label, updated.description, updated.type) == ("Web site", "Main URL", "url")
    stored = fresh_catalog(runtime).object("account").field("website")
    assert (stored.label, stored.description, stored.help_text, stored.indexed) == ("Web site", "Main URL", "Home page", True)
    assert runtime.catalog().version == version + 2

    runtime.metadata.update_field(ALICE, "account", "website", {"indexed": False})
    assert "ix_obj_account_website" not in indexes(runtime, "obj_account")

    runtime.metadata.delete_field(ALICE, "account", "website")
    assert runtime.catalog().object("account").field("website") is None
    assert "website" not in columns(runtime, "obj_account")
    assert runtime.catalog().version == version + 4

    with pytest.raises(NotFound):
        runtime.metadata.delete_field(ALICE, "account", "website")
    with pytest.raises(NotFound):
        runtime.metadata.update_field(ALICE, "account", "website", {"label": "X"})
    with pytest.raises(NotFound):
        runtime.metadata.create_field(ALICE, "no_such_object", text("x"))


def test_field_api_name_and_system_fields_are_immutable(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.update_field(ALICE, "account", "name", {"api_name": "title"})
    assert error_fields(caught.value) == {"api_name": "IMMUTABLE"}
    for system in ("id", "created_at", "version"):
        with pytest.raises(InUse):
            runtime.metadata.update_field(ALICE, "account", system, {"label": "X"})
        with pytest.raises(InUse):
            runtime.metadata.delete_field(ALICE, "account", system)
    assert state(runtime) == before


def test_adding_fields_to_an_object_with_rows_keeps_every_row_and_value(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    runtime.metadata.create_object(ALICE, {"api_name": "region", "label": "Region", "fields": [text("name")]})
    emea = runtime.records.create(ALICE, "region", {"name": "EMEA"})
    rows = runtime.records.bulk_create(ALICE, "account", [
        {"name": f"Company {i}", "revenue": f"{i}.25", "employees": i * 10} for i in range(30)
    ] + [{"name": "Empty"}])
    runtime.records.update(ALICE, "account", rows[0]["id"], {"employees": 999})
    before = all_records(runtime, "account")
    assert len(before) == 31

    new_fields = [
        text("city"),
        lookup("region", "region"),  # SQLite rebuilds the table to add a foreign key
        text("code", unique=True),
        {"api_name": "score", "label": "Score", "type": "integer", "indexed": True},
        {"api_name": "tags", "label": "Tags", "type": "multi_picklist",
         "options": {"values": [{"api_name": "vip", "label": "VIP"}]}},
        {"api_name": "hq", "label": "HQ", "type": "geolocation"},
    ]
    for field in new_fields:
        runtime.metadata.create_field(ALICE, "account", field)
        after = all_records(runtime, "account")
        assert without(after, field["api_name"]) == before, field["api_name"]
        assert all(r[field["api_name"]] is None for r in after.values())
        before = after

    assert all_records(runtime, "account")[rows[0]["id"]]["employees"] == 999
    assert all_records(runtime, "account")[rows[3]["id"]]["revenue"] == Decimal("3.25")
    assert indexes(runtime, "obj_account")["uq_obj_account_name"] == (("name",), True)
    # The new columns work.
    updated = runtime.records.update(ALICE, "account", rows[1]["id"], {
        "city": "Paris", "region": emea["id"], "code": "C1", "score": 5, "tags": ["vip"],
        "hq": {"latitude": 1.5, "longitude": 2.5}})
    assert (updated["region"], updated["tags"], updated["name"]) == (emea["id"], ["vip"], "Company 1")


def test_deleting_a_field_drops_only_its_data(runtime):
    runtime.metadata.create_object(ALICE, {"api_name": "region", "label": "Region", "fields": [text("name")]})
    runtime.metadata.create_object(ALICE, {**ACCOUNT, "fields": [
        *ACCOUNT["fields"], text("notes"), lookup("region", "region"), lookup("backup_region", "region"),
        {"api_name": "hq", "label": "HQ", "type": "geolocation"}]})
    emea = runtime.records.create(ALICE, "region", {"name": "EMEA"})
    apac = runtime.records.create(ALICE, "region", {"name": "APAC"})
    runtime.records.bulk_create(ALICE, "account", [
        {"name": f"Company {i}", "revenue": f"{i}.5", "employees": i, "notes": f"note {i}",
         "region": emea["id"], "backup_region": apac["id"], "hq": {"latitude": i, "longitude": -i}}
        for i in range(20)
    ])
    before = all_records(runtime, "account")

    runtime.metadata.delete_field(ALICE, "account", "notes")
    assert "notes" not in columns(runtime, "obj_account")
    assert without(all_records(runtime, "account"), "notes") == without(before, "notes")

    runtime.metadata.delete_field(ALICE, "account", "backup_region")  # a lookup: its foreign key goes too
    assert "backup_region" not in columns(runtime, "obj_account")
    assert ("backup_region",) not in foreign_keys(runtime, "obj_account")
    assert "ix_obj_account_backup_region" not in indexes(runtime, "obj_account")

    runtime.metadata.delete_field(ALICE, "account", "hq")  # two columns
    assert {"hq__lat", "hq__lng"}.isdisjoint(columns(runtime, "obj_account"))

    after = all_records(runtime, "account")
    assert after == without(before, "notes", "backup_region", "hq")
    assert set(columns(runtime, "obj_account")) == SYSTEM_COLUMNS | {"name", "revenue", "employees", "region"}
    # What the other fields had in the schema survived the rebuild: unique index, foreign key, index.
    assert indexes(runtime, "obj_account")["uq_obj_account_name"] == (("name",), True)
    assert foreign_keys(runtime, "obj_account")[("region",)] == ("obj_region", "SET NULL")
    # ... and the foreign key is still enforced: purging the region clears the references.
    runtime.records.hard_delete(ALICE, "region", emea["id"])
    assert {r["region"] for r in all_records(runtime, "account").values()} == {None}


BAD_FIELD_NAMES = [
    ("Name", "INVALID"), ("1name", "INVALID"), ("n" * 64, "INVALID"), ("first__name", "INVALID"),
    ("name_", "INVALID"), ("first name", "INVALID"), ("", "INVALID"), ("naïve", "INVALID"),
    ("name; drop table x", "INVALID"), ("a'--", "INVALID"), ('x" text); drop table lc_field; --', "INVALID"),
    ("select", "RESERVED_NAME"), ("order", "RESERVED_NAME"), ("user", "RESERVED_NAME"), ("table", "RESERVED_NAME"),
    ("rowid", "RESERVED_NAME"), ("oid", "RESERVED_NAME"),
    ("query", "RESERVED_NAME"), ("mutation", "RESERVED_NAME"), ("edges", "RESERVED_NAME"), ("totalcount", "RESERVED_NAME"),
    ("id", "RESERVED_NAME"), ("version", "RESERVED_NAME"), ("stage", "RESERVED_NAME"), ("owner_id", "RESERVED_NAME"),
    ("created_at", "RESERVED_NAME"), ("deleted_at", "RESERVED_NAME"), ("stage_entered_at", "RESERVED_NAME"),
]


@pytest.mark.parametrize("name,code", BAD_FIELD_NAMES)
def test_bad_field_names_are_refused_and_nothing_is_created(runtime, name, code):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)
    before_columns = columns(runtime, "obj_account")

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_field(ALICE, "account", text(name))
    assert error_fields(caught.value) == {"api_name": code}
    body = caught.value.as_dict()
    assert body["code"] == "INVALID_DEFINITION" and body["errors"][0]["field"] == "api_name"

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "lead", "label": "Lead", "fields": [text("ok"), text(name)]})
    assert error_fields(caught.value) == {"fields.1.api_name": code}

    assert state(runtime) == before
    assert columns(runtime, "obj_account") == before_columns
    assert "obj_lead" not in tables(runtime)


def test_fields_whose_graphql_names_collide_are_refused(runtime):
    runtime.metadata.create_object(ALICE, {"api_name": "thing", "label": "Thing", "fields": [text("a_1")]})
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_field(ALICE, "thing", text("a1"))
    assert error_fields(caught.value) == {"api_name": "NAME_COLLISION"}

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_field(ALICE, "thing", text("a_1"))
    assert error_fields(caught.value) == {"api_name": "DUPLICATE"}

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "other", "label": "Other", "fields": [
            text("close_date"), text("closedate"), text("close_date_1"), text("close_date1")]})
    # Both fields of the definition are named, as both objects of a batch are.
    assert error_fields(caught.value) == {"fields.2.api_name": "NAME_COLLISION", "fields.3.api_name": "NAME_COLLISION"}
    assert state(runtime) == before


def test_invalid_options_are_refused(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)
    cases = [
        (text("code", options={"pattern": "(unclosed"}), {"options.pattern"}),
        (text("code", options={"max_length": 0}), {"options.max_length"}),
        (text("code", options={"colour": "red"}), {"options.colour"}),
        ({"api_name": "stage_x", "label": "S", "type": "picklist", "options": {"values": []}}, {"options.values"}),
        ({"api_name": "stage_x", "label": "S", "type": "picklist"}, {"options.values"}),
        ({"api_name": "amount", "label": "A", "type": "decimal", "options": {"precision": 4, "scale": 6}}, {"options.scale"}),
        ({"api_name": "count", "label": "C", "type": "integer", "options": {"min": 5, "max": 1}}, {"options.min"}),
        (lookup("owner_account", "nowhere"), {"options.target"}),
        ({"api_name": "x", "label": "X", "type": "no_such_type"}, {"type"}),
        ({"api_name": "x", "label": "X"}, {"type"}),
        ({"api_name": "x", "label": "X", "type": "integer", "default": "ten"}, {"default"}),
        ({"api_name": "x", "label": "X", "type": "text", "colour": "red"}, {"colour"}),
    ]
    for definition, paths in cases:
        with pytest.raises(InvalidDefinition) as caught:
            runtime.metadata.create_field(ALICE, "account", definition)
        assert set(error_fields(caught.value)) == paths, definition
    assert state(runtime) == before


def test_a_bad_definition_reports_every_problem_at_once_and_changes_nothing(runtime):
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {
            "api_name": "deal", "label": "Deal", "colour": "blue",
            "fields": [
                text("Bad Name"),
                text("fine"),
                {"api_name": "stage_name", "label": "Stage", "type": "picklist",
                 "options": {"values": [{"api_name": "Open", "label": "Open"}], "sorted": True}},
                {"api_name": "amount", "label": "Amount", "type": "decimal", "options": {"scale": 40, "currency": "EUR"}},
                {"api_name": "select", "label": "", "type": "integer"},
                {"api_name": "kind", "label": "Kind", "type": "nonsense"},
            ],
        })

    errors = error_fields(caught.value)
    assert errors == {
        "colour": "UNKNOWN_FIELD",
        "fields.0.api_name": "INVALID",
        "fields.2.options.values.0.api_name": "INVALID",
        "fields.2.options.sorted": "UNKNOWN_FIELD",
        "fields.3.options.scale": "INVALID",
        "fields.3.options.currency": "UNKNOWN_FIELD",
        "fields.4.api_name": "RESERVED_NAME",
        "fields.4.label": "INVALID",
        "fields.5.type": "INVALID",
    }
    assert all(e.message for e in caught.value.errors)
    body = caught.value.as_dict()
    assert body["code"] == "INVALID_DEFINITION" and len(body["errors"]) == len(errors)
    assert state(runtime) == before
    assert "obj_deal" not in tables(runtime)


def test_a_bad_definition_reports_catalog_problems_together_with_format_problems(runtime):
    """Problems found against the Catalog (system names, duplicates, unknown targets) are reported
    in the same answer as format problems, not one round trip later."""
    before = state(runtime)

    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_object(ALICE, {"api_name": "deal", "label": "Deal", "fields": [
            text("id"),
            text("dup"),
            text("dup"),
            lookup("account", "nowhere"),
            text("short", options={"max_length": 0}),
        ]})

    assert error_fields(caught.value) == {
        "fields.0.api_name": "RESERVED_NAME",
        "fields.2.api_name": "DUPLICATE",
        "fields.3.options.target": "UNKNOWN_TARGET",
        "fields.4.options.max_length": "INVALID",
    }
    assert state(runtime) == before


def test_create_objects_prefixes_errors_with_the_item_index(runtime):
    before = state(runtime)
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_objects(ALICE, [
            {"api_name": "good", "label": "Good", "fields": [text("name")]},
            {"api_name": "bad", "label": "Bad", "fields": [text("fine"), text("Not Fine")]},
        ])
    assert error_fields(caught.value) == {"1.fields.1.api_name": "INVALID"}
    assert state(runtime) == before
    assert {"obj_good", "obj_bad"}.isdisjoint(tables(runtime))


# -- type and option changes -------------------------------------------------------------------
PICKLIST = {"api_name": "status", "label": "Status", "type": "picklist", "options": {"values": [
    {"api_name": "open", "label": "Open"}, {"api_name": "won", "label": "Won"}, {"api_name": "lost", "label": "Lost"}]}}

UNSAFE_CHANGES = {
    "text shrinks": (text("name", options={"max_length": 100}), {"options": {"max_length": 50}}, "Acme"),
    "textarea shrinks": ({"api_name": "name", "label": "N", "type": "textarea", "options": {"max_length": 500}},
                         {"options": {"max_length": 100}}, "Acme"),
    "picklist value removed": (PICKLIST, {"options": {"values": [
        {"api_name": "open", "label": "Open"}, {"api_name": "won", "label": "Won"}]}}, "lost"),
    "integer to text": ({"api_name": "count", "label": "C", "type": "integer"}, {"type": "text"}, 42),
    "text to integer": (text("name"), {"type": "integer"}, "Acme"),
    "integer to narrow decimal": ({"api_name": "count", "label": "C", "type": "integer"},
                                  {"type": "decimal", "options": {"precision": 10, "scale": 2}}, 42),
    "decimal scale down": ({"api_name": "amount", "label": "A", "type": "decimal", "options": {"precision": 12, "scale": 4}},
                           {"options": {"precision": 12, "scale": 2}}, "1.2345"),
    "decimal whole digits down": ({"api_name": "amount", "label": "A", "type": "decimal", "options": {"precision": 12, "scale": 2}},
                                  {"options": {"precision": 8, "scale": 2}}, "1234567890.12"),
    "decimal to integer": ({"api_name": "amount", "label": "A", "type": "decimal"}, {"type": "integer"}, "1.5"),
    "lookup target change": (lookup("link", "region"), {"options": {"target": "account"}}, "region"),
    "lookup to master_detail": (lookup("link", "region"), {"type": "master_detail", "options": {"target": "region"}}, "region"),
    "text to picklist": (text("name"), PICKLIST | {"api_name": "name"}, "open"),
    "date to datetime": ({"api_name": "day", "label": "D", "type": "date"}, {"type": "datetime"}, "2024-02-29"),
}


@pytest.mark.parametrize("initial,changes,value", UNSAFE_CHANGES.values(), ids=UNSAFE_CHANGES.keys())
def test_unsafe_field_changes_are_refused(runtime, initial, changes, value):
    runtime.metadata.create_object(ALICE, {"api_name": "region", "label": "Region", "fields": [text("name")]})
    runtime.metadata.create_object(ALICE, {"api_name": "account", "label": "Account"})
    runtime.metadata.create_object(ALICE, {"api_name": "thing", "label": "Thing", "fields": [initial]})
    field = initial["api_name"]
    if value == "region":
        value = runtime.records.create(ALICE, "region", {"name": "EMEA"})["id"]
    record = runtime.records.create(ALICE, "thing", {field: value})
    before = state(runtime)
    before_columns = columns(runtime, "obj_thing")

    with pytest.raises(UnsafeChange) as caught:
        runtime.metadata.update_field(ALICE, "thing", field, changes)

    assert caught.value.as_dict()["code"] == "UNSAFE_CHANGE"
    assert caught.value.message
    assert state(runtime) == before
    assert columns(runtime, "obj_thing") == before_columns
    assert runtime.records.get(ALICE, "thing", record["id"])[field] == record[field]


SAFE_CHANGES = {
    "text grows": (text("name", options={"max_length": 10}), {"options": {"max_length": 400}}, "Acme", "Acme"),
    "text to textarea": (text("name"), {"type": "textarea"}, "Acme", "Acme"),
    "email to text": ({"api_name": "mail", "label": "M", "type": "email"}, {"type": "text"}, "a@b.test", "a@b.test"),
    "picklist to text": (PICKLIST, {"type": "text"}, "won", "won"),
    "integer to decimal": ({"api_name": "count", "label": "C", "type": "integer"}, {"type": "decimal"}, 123456, Decimal("123456.00")),
    "integer to currency": ({"api_name": "count", "label": "C", "type": "integer"}, {"type": "currency"}, -7, Decimal("-7.00")),
    "decimal scale up": ({"api_name": "amount", "label": "A", "type": "decimal", "options": {"precision": 10, "scale": 2}},
                         {"options": {"precision": 14, "scale": 4}}, "12345678.91", Decimal("12345678.9100")),
    "picklist value added": (PICKLIST, {"options": {"values": [*PICKLIST["options"]["values"], {"api_name": "hold", "label": "On hold"}]}},
                             "lost", "lost"),
    "picklist value deactivated": (PICKLIST, {"options": {"values": [
        {"api_name": "open", "label": "Open"}, {"api_name": "won", "label": "Won"},
        {"api_name": "lost", "label": "Lost", "active": False}]}}, "lost", "lost"),
    "label and flags": (text("name"), {"label": "Full name", "required": True, "tracked": True, "indexed": True}, "Acme", "Acme"),
}


@pytest.mark.parametrize("initial,changes,value,expected", SAFE_CHANGES.values(), ids=SAFE_CHANGES.keys())
def test_safe_field_changes_keep_the_data(runtime, initial, changes, value, expected):
    runtime.metadata.create_object(ALICE, {"api_name": "thing", "label": "Thing", "fields": [initial, text("other")]})
    field = initial["api_name"]
    records = [runtime.records.create(ALICE, "thing", {field: value, "other": f"r{i}"}) for i in range(3)]
    empty = runtime.records.create(ALICE, "thing", {"other": "empty"})
    version = runtime.catalog().version

    new = runtime.metadata.update_field(ALICE, "thing", field, changes)

    assert runtime.catalog().version == version + 1
    stored = runtime.catalog().object("thing").field(field)
    assert stored == new
    for key, wanted in changes.items():
        if key != "options":
            assert getattr(stored, key) == wanted
    for key, wanted in changes.get("options", {}).items():
        if key == "values":
            assert [(v["api_name"], v["active"]) for v in stored.options["values"]] == [
                (v["api_name"], v.get("active", True)) for v in wanted]
        else:
            assert stored.options[key] == wanted
    for i, record in enumerate(records):
        got = runtime.records.get(ALICE, "thing", record["id"])
        assert got[field] == expected and type(got[field]) is type(expected)
        assert got["other"] == f"r{i}"
    assert runtime.records.get(ALICE, "thing", empty["id"])[field] is None


# -- DDL failures and atomicity ----------------------------------------------------------------
def test_making_a_field_unique_over_duplicates_is_refused_and_changes_nothing(runtime):
    runtime.metadata.create_object(ALICE, {"api_name": "contact", "label": "Contact", "fields": [
        {"api_name": "email", "label": "Email", "type": "email"}, text("name")]})
    runtime.records.bulk_create(ALICE, "contact", [
        {"email": "ann@x.test", "name": "Ann"}, {"email": "ann@x.test", "name": "Ann again"},
        {"email": "bob@x.test", "name": "Bob"}, {"name": "No mail"}, {"name": "No mail either"},
    ])
    before = state(runtime)
    before_records = all_records(runtime, "contact")
    before_indexes = indexes(runtime, "obj_contact")

    with pytest.raises(UnsafeChange) as caught:
        runtime.metadata.update_field(ALICE, "contact", "email", {"unique": True})

    assert caught.value.field == "unique"
    assert "unique" in caught.value.message and "more than one record" in caught.value.message
    assert caught.value.ctx.get("duplicated_values") == 1  # nulls are not duplicates
    assert runtime.catalog().object("contact").field("email").unique is False
    assert fresh_catalog(runtime).object("contact").field("email").unique is False
    assert indexes(runtime, "obj_contact") == before_indexes
    assert "uq_obj_contact_email" not in indexes(runtime, "obj_contact")
    assert all_records(runtime, "contact") == before_records
    assert state(runtime) == before

    # Once the values are distinct the change goes through and the database enforces it.
    duplicate = next(r for r in before_records.values() if r["name"] == "Ann again")
    runtime.records.update(ALICE, "contact", duplicate["id"], {"email": "ann2@x.test"})
    runtime.metadata.update_field(ALICE, "contact", "email", {"unique": True})
    assert indexes(runtime, "obj_contact")["uq_obj_contact_email"] == (("email",), True)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        with runtime.engine.begin() as conn:
            conn.execute(sqlalchemy.text("UPDATE obj_contact SET email = 'bob@x.test' WHERE email = 'ann@x.test'"))

    runtime.metadata.update_field(ALICE, "contact", "email", {"unique": False})
    assert "uq_obj_contact_email" not in indexes(runtime, "obj_contact")


def test_failure_during_ddl_after_meta_rows_were_written_rolls_everything_back(runtime):
    """The second table's CREATE fails (a stray table has its name) after the first table was
    created and both objects' meta rows written: nothing of the change may remain."""
    with runtime.engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE obj_zeta (id INTEGER PRIMARY KEY, stray VARCHAR(10))"))
        conn.execute(sqlalchemy.text("INSERT INTO obj_zeta (id, stray) VALUES (1, 'keep me')"))
    before = state(runtime)
    assert "obj_zeta" in before["tables"]

    with pytest.raises(SchemaChangeFailed) as caught:
        runtime.metadata.create_objects(ALICE, [
            {"api_name": "alpha", "label": "Alpha", "fields": [text("name", unique=True)]},
            {"api_name": "zeta", "label": "Zeta", "fields": [text("name"), lookup("alpha", "alpha")]},
        ])

    assert caught.value.as_dict()["code"] == "SCHEMA_CHANGE_FAILED"
    assert "obj_zeta" in caught.value.message
    assert state(runtime) == before
    assert "obj_alpha" not in tables(runtime)
    assert {"alpha", "zeta"}.isdisjoint(fresh_catalog(runtime).objects)
    with runtime.engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT stray FROM obj_zeta")).scalar_one() == "keep me"
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM lc_object WHERE api_name IN ('alpha', 'zeta')")).scalar_one() == 0
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM lc_field WHERE object_api_name IN ('alpha', 'zeta')")).scalar_one() == 0

    # With the stray table gone the same change succeeds in full.
    with runtime.engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE obj_zeta"))
    runtime.metadata.create_objects(ALICE, [
        {"api_name": "alpha", "label": "Alpha", "fields": [text("name", unique=True)]},
        {"api_name": "zeta", "label": "Zeta", "fields": [text("name"), lookup("alpha", "alpha")]},
    ])
    assert runtime.catalog().version == before["version"] + 1
    assert {"obj_alpha", "obj_zeta"} <= tables(runtime)


def test_failure_during_add_column_rolls_back_the_field(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    runtime.records.create(ALICE, "account", {"name": "Acme"})
    with runtime.engine.begin() as conn:
        conn.execute(sqlalchemy.text("ALTER TABLE obj_account ADD COLUMN legacy INTEGER"))
    before = state(runtime)

    with pytest.raises(SchemaChangeFailed):
        runtime.metadata.create_field(ALICE, "account", text("legacy"))

    assert state(runtime) == before
    assert runtime.catalog().object("account").field("legacy") is None
    assert columns(runtime, "obj_account")["legacy"] == "INTEGER"


def test_failure_during_index_creation_rolls_back_the_type_change(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    runtime.records.create(ALICE, "account", {"name": "Acme", "employees": 3})
    with runtime.engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE INDEX ix_obj_account_employees ON obj_account (name)"))
    before = state(runtime)

    with pytest.raises(SchemaChangeFailed):
        runtime.metadata.update_field(ALICE, "account", "employees", {"type": "decimal", "indexed": True})

    assert state(runtime) == before
    assert runtime.catalog().object("account").field("employees").type == "integer"
    assert columns(runtime, "obj_account")["employees"] == "INTEGER"
    assert runtime.records.query(ALICE, "account").records[0]["employees"] == 3


# -- change log --------------------------------------------------------------------------------
def test_every_change_writes_one_log_entry_and_bumps_the_version_by_one(runtime):
    admin = Actor("0b1c2d3e-0000-4000-8000-000000000007", "alice", is_system=True)
    log_size = len(runtime.metadata.changes(limit=100_000))
    version = runtime.catalog().version

    steps = [
        ("create_object", "deal", None, lambda: runtime.metadata.create_object(admin, {"api_name": "deal", "label": "Deal"})),
        ("update_object", "deal", None, lambda: runtime.metadata.update_object(admin, "deal", {"label": "Big deal"})),
        ("create_field", "deal", "title", lambda: runtime.metadata.create_field(admin, "deal", text("title"))),
        ("update_field", "deal", "title", lambda: runtime.metadata.update_field(admin, "deal", "title", {"label": "Headline"})),
        ("delete_field", "deal", "title", lambda: runtime.metadata.delete_field(admin, "deal", "title")),
        ("delete_object", "deal", None, lambda: runtime.metadata.delete_object(admin, "deal")),
    ]
    for i, (action, obj, field, step) in enumerate(steps, start=1):
        step()
        assert runtime.catalog().version == version + i
        changes = runtime.metadata.changes(limit=100_000)
        assert len(changes) == log_size + i
        entry = changes[0]
        assert entry["version"] == version + i
        assert (entry["action"], entry["object_api_name"], entry["field_api_name"]) == (action, obj, field)
        assert entry["actor_id"] == "0b1c2d3e-0000-4000-8000-000000000007"
        assert entry["at"] is not None

    by_action = {c["action"]: c for c in runtime.metadata.changes("deal")}
    assert len(runtime.metadata.changes("deal")) == 6
    assert by_action["create_object"]["before"] is None
    assert by_action["create_object"]["after"]["api_name"] == "deal"
    assert by_action["update_object"]["before"]["label"] == "Deal"
    assert by_action["update_object"]["after"]["label"] == "Big deal"
    assert by_action["create_field"]["before"] is None and by_action["create_field"]["after"]["label"] == "Title"
    assert by_action["update_field"]["before"]["label"] == "Title"
    assert by_action["update_field"]["after"]["label"] == "Headline"
    assert by_action["delete_field"]["before"]["label"] == "Headline" and by_action["delete_field"]["after"] is None
    assert by_action["delete_object"]["before"]["label"] == "Big deal" and by_action["delete_object"]["after"] is None

    # Newest first, filtered by object, limited.
    versions = [c["version"] for c in runtime.metadata.changes()]
    assert versions == sorted(versions, reverse=True)
    assert [c["action"] for c in runtime.metadata.changes("deal", limit=2)] == ["delete_object", "delete_field"]
    assert runtime.metadata.changes("nothing") == []


def test_refused_changes_write_no_log_entry(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)
    refused = [
        lambda: runtime.metadata.create_object(ALICE, ACCOUNT),
        lambda: runtime.metadata.create_field(ALICE, "account", text("select")),
        lambda: runtime.metadata.update_field(ALICE, "account", "name", {"options": {"max_length": 5}}),
        lambda: runtime.metadata.delete_object(ALICE, "user"),
        lambda: runtime.metadata.delete_field(ALICE, "account", "nope"),
        lambda: runtime.metadata.update_object(ALICE, "nope", {"label": "X"}),
    ]
    for attempt in refused:
        with pytest.raises(LowcodeError):
            attempt()
        assert state(runtime) == before

    runtime.metadata.create_field(ALICE, "account", text("city"))
    assert runtime.catalog().version == before["version"] + 1
    assert runtime.metadata.changes(limit=1)[0]["version"] == before["version"] + 1


def test_system_objects_are_created_by_the_system_actor(runtime):
    installed = {c["object_api_name"]: c for c in runtime.metadata.changes() if c["action"] == "create_object"}
    assert {"user", "org_unit"} <= set(installed)
    assert installed["user"]["actor_id"] is None
    # Installing again changes nothing.
    version = runtime.catalog().version
    runtime.install()
    assert runtime.catalog().version == version
    runtime.metadata.create_object(SYSTEM_ACTOR, {"api_name": "deal", "label": "Deal"})
    assert runtime.metadata.changes(limit=1)[0]["actor_id"] is None


# -- master-detail -----------------------------------------------------------------------------
def test_master_detail_cannot_be_added_to_an_object_with_records(runtime):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    runtime.metadata.create_object(ALICE, {"api_name": "note", "label": "Note", "fields": [text("body")]})
    note = runtime.records.create(ALICE, "note", {"body": "hello"})
    before = state(runtime)

    master_detail = {"api_name": "account", "label": "Account", "type": "master_detail", "options": {"target": "account"}}
    with pytest.raises(UnsafeChange) as caught:
        runtime.metadata.create_field(ALICE, "note", master_detail)
    assert "records" in caught.value.message
    assert state(runtime) == before
    assert "account" not in columns(runtime, "obj_note")

    # A lookup is fine; a master-detail on an empty object too.
    runtime.metadata.create_field(ALICE, "note", lookup("about", "account"))
    runtime.records.hard_delete(ALICE, "note", note["id"])
    runtime.metadata.create_field(ALICE, "note", master_detail)
    field = runtime.catalog().object("note").field("account")
    assert field.type == "master_detail" and field.required
    assert foreign_keys(runtime, "obj_note")[("account",)] == ("obj_account", "CASCADE")


# -- references by name and concurrency --------------------------------------------------------
@pytest.mark.parametrize("name", ["account; drop table lc_object", "a'--", "x' OR '1'='1", "lc_object", "obj_user"])
def test_names_that_look_like_sql_are_only_ever_looked_up(runtime, name):
    runtime.metadata.create_object(ALICE, ACCOUNT)
    before = state(runtime)
    for attempt in (
        lambda: runtime.metadata.create_field(ALICE, name, text("city")),
        lambda: runtime.metadata.update_field(ALICE, "account", name, {"label": "X"}),
        lambda: runtime.metadata.delete_field(ALICE, "account", name),
        lambda: runtime.metadata.delete_object(ALICE, name),
        lambda: runtime.metadata.update_object(ALICE, name, {"label": "X"}),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert runtime.metadata.changes(name) == []
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_field(ALICE, "account", lookup("link", name))
    assert set(error_fields(caught.value)) == {"options.target"}
    assert state(runtime) == before


def test_concurrent_changes_each_get_their_own_version(database_url):
    """Changes serialise on the version row: N concurrent changes move the version by exactly N."""
    from concurrent.futures import ThreadPoolExecutor

    runtimes = [Runtime.connect(database_url) for _ in range(4)]
    try:
        runtimes[0].install()
        start = runtimes[0].catalog().version

        def create(i):
            rt = runtimes[i % len(runtimes)]
            rt.metadata.create_object(ALICE, {"api_name": f"obj{i}", "label": f"Object {i}", "fields": [text("name")]})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(12)))

        for rt in runtimes:
            assert rt.catalog().version == start + 12
            assert {f"obj{i}" for i in range(12)} <= set(rt.catalog().objects)
        logged = [c["version"] for c in runtimes[0].metadata.changes(limit=12)]
        assert sorted(logged) == list(range(start + 1, start + 13))
        assert {f"obj_obj{i}" for i in range(12)} <= tables(runtimes[0])
    finally:
        for rt in runtimes:
            rt.close()


def test_concurrent_colliding_objects_only_one_wins(database_url):
    """Name checks run under the metadata lock, so two racing objects whose GraphQL names collide
    cannot both be created."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = Runtime.connect(database_url), Runtime.connect(database_url)
    try:
        first.install()
        second.catalog()
        for round_ in range(5):
            names = [f"race_{round_}", f"race{round_}"]
            with ThreadPoolExecutor(max_workers=2) as pool:
                outcomes = list(pool.map(
                    lambda args: _attempt(args[0], args[1]), [(first, names[0]), (second, names[1])]))
            assert sorted(outcomes, key=str) == sorted(["created", "NAME_COLLISION"], key=str), outcomes
            objects = first.catalog().objects
            assert sum(n in objects for n in names) == 1
            assert sum(f"obj_{n}" in tables(first) for n in names) == 1
    finally:
        first.close()
        second.close()


def _attempt(rt, name):
    try:
        rt.metadata.create_object(ALICE, {"api_name": name, "label": name})
        return "created"
    except InvalidDefinition as exc:
        return exc.errors[0].code


def test_rebuilding_a_referenced_table_keeps_records_that_point_at_it(runtime):
    """Adding a lookup or dropping a column rebuilds the table on SQLite; records of other objects
    pointing at it (a cascading master-detail, a set-null lookup) must neither vanish nor be cleared."""
    runtime.metadata.create_object(ALICE, ACCOUNT)
    runtime.metadata.create_objects(ALICE, [
        {"api_name": "invoice", "label": "Invoice", "fields": [
            text("number"), {"api_name": "account", "label": "Account", "type": "master_detail", "options": {"target": "account"}}]},
        {"api_name": "contact", "label": "Contact", "fields": [text("email"), lookup("account", "account")]},
    ])
    acme = runtime.records.create(ALICE, "account", {"name": "Acme", "employees": 5})
    invoices = runtime.records.bulk_create(ALICE, "invoice", [{"number": f"INV-{i}", "account": acme["id"]} for i in range(5)])
    contact = runtime.records.create(ALICE, "contact", {"email": "ann@acme.test", "account": acme["id"]})

    runtime.metadata.create_field(ALICE, "account", lookup("parent", "account"))
    runtime.metadata.delete_field(ALICE, "account", "employees")
    runtime.metadata.update_field(ALICE, "account", "name", {"options": {"max_length": 500}})

    assert {r["id"] for r in all_records(runtime, "invoice").values() if r["account"] == acme["id"]} == {i["id"] for i in invoices}
    assert runtime.records.get(ALICE, "contact", contact["id"])["account"] == acme["id"]
    assert foreign_keys(runtime, "obj_invoice")[("account",)] == ("obj_account", "CASCADE")
    assert foreign_keys(runtime, "obj_contact")[("account",)] == ("obj_account", "SET NULL")
    # The references still work after the rebuild.
    runtime.records.hard_delete(ALICE, "account", acme["id"])
    assert all_records(runtime, "invoice") == {}
    assert runtime.records.get(ALICE, "contact", contact["id"])["account"] is None


@pytest.mark.parametrize("api_name, plural", [
    ("opportunity", "opportunities"), ("day", "days"), ("address", "addresses"), ("box", "boxes"),
    ("branch", "branches"), ("deal", "deals"),
])
def test_default_plurals_follow_english_rules(runtime, api_name, plural):
    created = runtime.metadata.create_object(ALICE, {"api_name": api_name, "label": api_name.title()})
    assert created.plural_api_name == plural
    assert runtime.catalog().object(api_name).plural_api_name == plural
    assert runtime.catalog().by_plural(plural).api_name == api_name


def test_decimal_bounds_may_be_written_as_numbers_or_text(runtime):
    obj = runtime.metadata.create_object(SYSTEM_ACTOR, {"api_name": "meter", "label": "Meter", "fields": [
        {"api_name": "reading", "label": "Reading", "type": "decimal", "options": {"scale": 2, "min": 0, "max": "12.5"}}]})
    assert (obj.field("reading").options["min"], obj.field("reading").options["max"]) == ("0", "12.5")
    with pytest.raises(InvalidDefinition) as caught:
        runtime.metadata.create_field(SYSTEM_ACTOR, "meter", {"api_name": "other", "label": "Other", "type": "decimal",
                                                              "options": {"min": True}})
    assert [(e.field, e.message) for e in caught.value.errors] == [("options.min", "Not a valid string.")]
