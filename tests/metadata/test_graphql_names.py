"""GraphQL name collisions: a metadata change whose generated names would clash is refused.

Every test runs on SQLite and PostgreSQL (``runtime`` fixture) through the public MetadataService;
a refused change leaves the catalog version and every object as they were.
"""
from __future__ import annotations

import pytest
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.definitions import ObjectDef
from lowcode.metadata.errors import InvalidDefinition
from lowcode.metadata.graphql_names import collisions


# -- helpers -----------------------------------------------------------------------------------
def snapshot(rt) -> tuple[int, dict]:
    catalog = rt.catalog()
    return catalog.version, {name: obj.as_dict() for name, obj in catalog.objects.items()}


def refused(rt, call, *args) -> dict[str | None, str]:
    """The NAME_COLLISION messages by path of a change that must be refused without changing anything."""
    before = snapshot(rt)
    with pytest.raises(InvalidDefinition) as caught:
        call(SYSTEM_ACTOR, *args)
    assert caught.value.code == "INVALID_DEFINITION"
    assert snapshot(rt) == before
    errors = caught.value.errors
    assert errors and {e.code for e in errors} == {"NAME_COLLISION"}, [e.as_dict() for e in errors]
    return {e.field: e.message for e in errors}


def obj(name, *fields, **extra):
    return {"api_name": name, "label": name.replace("_", " ").title(), "fields": list(fields), **extra}


def text(name):
    return {"api_name": name, "label": name.title(), "type": "text"}


def picklist(name, **options):
    return {"api_name": name, "label": name.title(), "type": "picklist",
            "options": {"values": [{"api_name": "open", "label": "Open"}], **options}}


def lookup(name, target, **options):
    return {"api_name": name, "label": name.title(), "type": "lookup", "options": {"target": target, **options}}


def master_detail(name, target, **options):
    return {"api_name": name, "label": name.title(), "type": "master_detail", "options": {"target": target, **options}}


# -- object names ------------------------------------------------------------------------------
def test_an_object_named_like_another_objects_generated_type_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("opportunity"))

    errors = refused(runtime, runtime.metadata.create_object, obj("opportunity_connection"))

    assert set(errors) == {"api_name"}
    assert "'OpportunityConnection'" in errors["api_name"] and "'opportunity'" in errors["api_name"]
    assert "opportunity_connection" not in runtime.catalog().objects


def test_an_object_named_like_a_picklist_enum_is_refused_either_way_round(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("opportunity", picklist("status")))
    errors = refused(runtime, runtime.metadata.create_object, obj("opportunity_status"))
    assert "picklist 'opportunity.status'" in errors["api_name"] and "'OpportunityStatus'" in errors["api_name"]

    runtime.metadata.create_object(SYSTEM_ACTOR, obj("lead_source"))
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("lead"))
    errors = refused(runtime, runtime.metadata.create_field, "lead", picklist("source"))
    assert set(errors) == {"api_name"} and "'LeadSource'" in errors["api_name"]
    assert runtime.catalog().object("lead").field("source") is None

    # An unrestricted picklist has no enum, but its filter input LeadSourceFilter is lead_source's filter too.
    errors = refused(runtime, runtime.metadata.create_field, "lead", picklist("source", restricted=False))
    assert "'LeadSourceFilter'" in errors["api_name"]


def test_an_object_named_like_a_picklist_filter_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("deal", picklist("phase"), picklist("kind", restricted=False)))

    for name, generated in (("deal_phase_filter", "DealPhaseFilter"), ("deal_kind", "DealKindFilter")):
        errors = refused(runtime, runtime.metadata.create_object, obj(name))
        assert "picklist 'deal." in errors["api_name"] and f"'{generated}'" in errors["api_name"]
    errors = refused(runtime, runtime.metadata.create_field, "deal", picklist("phase_filter"))
    assert "'DealPhaseFilter'" in errors["api_name"]


def test_an_object_whose_get_field_is_another_objects_aggregate_field_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("deal"))

    errors = refused(runtime, runtime.metadata.create_object, obj("deal_aggregate"))

    assert "'dealAggregate'" in errors["api_name"] and "'deal'" in errors["api_name"]


def test_an_objects_own_names_may_not_collide(runtime):
    errors = refused(runtime, runtime.metadata.create_object, obj("deal", plural_api_name="deal_aggregate"))
    assert "'dealAggregate' twice" in errors["plural_api_name"]


def test_colliding_objects_in_one_batch_are_both_named(runtime):
    errors = refused(runtime, runtime.metadata.create_objects, [obj("invoice"), obj("invoice_edge")])
    assert set(errors) == {"0.api_name", "1.api_name"}
    assert "invoice" not in runtime.catalog().objects


@pytest.mark.parametrize("name,generated", [
    ("page_info", "PageInfo"), ("date", "Date"), ("string", "String"), ("metadata_change", "MetadataChange"),
    ("field_type_info", "FieldTypeInfo"),
    ("object", "object"), ("field_type", "fieldTypes"), ("metadata_version", "metadataVersion"),
])
def test_an_object_generating_a_platform_name_is_refused(runtime, name, generated):
    errors = refused(runtime, runtime.metadata.create_object, obj(name))

    assert set(errors) == {"api_name"}
    assert generated in errors["api_name"] and "platform" in errors["api_name"]
    assert name not in runtime.catalog().objects


# -- record fields -----------------------------------------------------------------------------
def test_a_lookup_and_a_field_named_like_its_raw_id_are_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account"))

    errors = refused(runtime, runtime.metadata.create_object,
                     obj("contact", lookup("account", "account"), text("account_id")))
    assert set(errors) == {"fields.0.api_name", "fields.1.api_name"}
    assert "'Contact.accountId'" in errors["fields.1.api_name"]

    runtime.metadata.create_object(SYSTEM_ACTOR, obj("contact", lookup("account", "account")))
    errors = refused(runtime, runtime.metadata.create_field, "contact", text("account_id"))
    assert set(errors) == {"api_name"} and "field 'account'" in errors["api_name"]
    assert runtime.catalog().object("contact").field("account_id") is None


def test_a_field_named_like_a_system_relation_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account"))

    errors = refused(runtime, runtime.metadata.create_field, "account", text("owner"))

    assert "owner_id" in errors["api_name"] and "'Account.owner'" in errors["api_name"]


def test_a_relation_named_like_a_filter_operator_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account"))

    errors = refused(runtime, runtime.metadata.create_field, "account", lookup("not_id", "account"))

    assert "'AccountFilter.not'" in errors["api_name"] and "platform" in errors["api_name"]


def test_two_master_details_to_one_master_need_distinct_relationship_names(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account"))

    errors = refused(runtime, runtime.metadata.create_object,
                     obj("transfer", master_detail("payer", "account"), master_detail("payee", "account")))
    assert set(errors) == {"fields.0.options.relationship_name", "fields.1.options.relationship_name"}
    assert "'Account.transfers'" in errors["fields.0.options.relationship_name"]

    runtime.metadata.create_object(SYSTEM_ACTOR, obj(
        "transfer", master_detail("payer", "account", relationship_name="paid_transfers"),
        master_detail("payee", "account", relationship_name="received_transfers")))
    assert runtime.catalog().object("transfer").field("payee").target == "account"


def test_a_relationship_name_equal_to_a_field_of_the_target_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account", text("contacts")))

    errors = refused(runtime, runtime.metadata.create_object,
                     obj("contact", lookup("account", "account", relationship_name="contacts")))
    assert set(errors) == {"fields.0.options.relationship_name"}
    assert "field 'contacts'" in errors["fields.0.options.relationship_name"]
    assert "contact" not in runtime.catalog().objects

    runtime.metadata.create_object(SYSTEM_ACTOR, obj("contact"))
    errors = refused(runtime, runtime.metadata.create_field, "contact",
                     lookup("account", "account", relationship_name="contacts"))
    assert set(errors) == {"options.relationship_name"}
    assert runtime.catalog().object("contact").field("account") is None


def test_changing_a_relationship_name_into_a_collision_is_refused(runtime):
    runtime.metadata.create_object(SYSTEM_ACTOR, obj("account", text("name")))
    runtime.metadata.create_objects(SYSTEM_ACTOR, [
        obj("invoice", master_detail("account", "account")),
        obj("contact", lookup("account", "account", relationship_name="contacts")),
    ])
    update = runtime.metadata.update_field

    for clash, other in (("name", "field 'name'"), ("invoices", "the related list of 'invoice.account'")):
        errors = refused(runtime, update, "contact", "account",
                         {"options": {"target": "account", "relationship_name": clash}})
        assert set(errors) == {"options.relationship_name"} and other in errors["options.relationship_name"]
        assert runtime.catalog().object("contact").field("account").options["relationship_name"] == "contacts"

    update(SYSTEM_ACTOR, "contact", "account", {"options": {"target": "account", "relationship_name": "people"}})
    assert runtime.catalog().object("contact").field("account").options["relationship_name"] == "people"
    update(SYSTEM_ACTOR, "contact", "account", {"label": "Company"})


# -- legitimate definitions --------------------------------------------------------------------
def test_the_installed_catalog_has_no_collisions(runtime):
    assert collisions(runtime.catalog().objects) == []


def test_collisions_names_every_object_a_clash_breaks():
    objects = {name: ObjectDef(name, name, name + "s", name) for name in ("order_2", "order2", "page_info")}

    found = collisions(objects)

    assert ("order_2", "object 'order_2' and object 'order2' would generate the same GraphQL type 'Order2'") in found
    assert ("order2", "object 'order_2' and object 'order2' would generate the same GraphQL type 'Order2'") in found
    assert ("page_info", "object 'page_info' would generate the GraphQL type 'PageInfo', which the platform uses") in found


def test_legitimate_definitions_pass(runtime):
    runtime.metadata.create_objects(SYSTEM_ACTOR, [
        obj("account", text("name"), lookup("parent", "account", relationship_name="subsidiaries"),
            picklist("status")),
        obj("contact", text("email"), lookup("account", "account", relationship_name="contacts"),
            lookup("manager", "contact"), lookup("assistant", "user")),
        obj("invoice", text("number"), master_detail("account", "account"), lookup("contact", "contact")),
        obj("invoice_line", master_detail("invoice", "invoice"), picklist("status")),
    ])
    runtime.metadata.create_field(SYSTEM_ACTOR, "account", lookup("primary_contact", "contact"))
    runtime.metadata.create_field(SYSTEM_ACTOR, "user", lookup("home_account", "account", relationship_name="residents"))

    objects = runtime.catalog().objects
    assert {"account", "contact", "invoice", "invoice_line"} <= set(objects)
    assert collisions(objects) == []
