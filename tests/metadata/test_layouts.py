"""Layouts per object, business type and role through the public MetadataService, and the fields
they require when records are written through the RecordService.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture). A refused layout change leaves
the Catalog version, the change log and the stored layouts as they were; an accepted one is one
change (version +1, one change-log entry). A write missing a field its layout requires fails with
REQUIRED_BY_LAYOUT and writes nothing. A layout names a role that exists, and a role a layout names
cannot be deleted, also when both changes run at once. Between equally specific layouts of several
roles, the role of the user's oldest membership wins.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from lowcode.metadata import SYSTEM_ACTOR, store
from lowcode.metadata import layouts as layout_rules
from lowcode.metadata.database import WRITE
from lowcode.metadata.errors import (
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from lowcode.server.app import Settings, create_app
from sqlalchemy import delete, func, select

S = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

SCHEMA = [
    {"api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
     "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                {"api_name": "industry", "label": "Industry", "type": "picklist", "options": PICK("energy", "retail")}]},
    {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
     "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                {"api_name": "amount", "label": "Amount", "type": "currency"},
                {"api_name": "close_date", "label": "Close date", "type": "date"},
                {"api_name": "contract", "label": "Contract", "type": "text"},
                {"api_name": "region", "label": "Region", "type": "text"},
                {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green")},
                {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}}]},
    {"api_name": "contact", "label": "Contact", "plural_api_name": "contacts", "plural_label": "Contacts",
     "fields": [{"api_name": "title", "label": "Title", "type": "text"},
                {"api_name": "phone", "label": "Phone", "type": "text"},
                {"api_name": "deal", "label": "Deal", "type": "lookup", "options": {"target": "deal"}},
                {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}}]},
]


ROLES = ("manager", "analyst", "clerk", "other")
"""Roles with every right on deals (a layout may only name a role that exists)."""


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(S, SCHEMA)
    for name in ("product", "project", "internal"):
        runtime.metadata.create_business_type(S, "deal", {"api_name": name, "label": name.title()})
    for role in ROLES:
        runtime.security.create_role(S, role, role.title())
        runtime.security.set_object_grant(S, role, "deal", ["read", "create", "update"], "all", "all")
    return runtime


# -- helpers ------------------------------------------------------------------------------------
def item(field: str, required: bool = False, read_only: bool = False) -> dict[str, Any]:
    return {"field": field, "required": required, "read_only": read_only}


def layout(api_name: str, label: str, *fields: dict[str, Any], business_type: str | None = None, role: str | None = None,
           **more: Any) -> dict[str, Any]:
    return {"api_name": api_name, "label": label, "business_type": business_type, "role": role,
            "sections": [{"label": "Main", "fields": list(fields)}], **more}


def stored(rt) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(store.layouts).order_by(
            store.layouts.c.object_api_name, store.layouts.c.api_name)).mappings()]
        version = conn.execute(select(store.meta_version.c.version)).scalar_one()
        changes = conn.execute(select(func.count()).select_from(store.meta_changes)).scalar_one()
    return {"version": version, "changes": changes, "layouts": rows}


def refused(rt, call, exc_type=InvalidDefinition) -> list[tuple[str, str | None, str]]:
    """A layout change that must fail and change nothing; its (code, field, message) list."""
    before = stored(rt)
    catalog_version = rt.catalog().version
    with pytest.raises(exc_type) as caught:
        call()
    assert stored(rt) == before
    assert rt.catalog().version == catalog_version
    return [(e.code, e.field, e.message) for e in caught.value.errors]


def accepted(rt, action: str, call):
    version = rt.catalog().version
    count = len(rt.metadata.changes(limit=1000))
    result = call()
    assert rt.catalog().version == version + 1
    changes = rt.metadata.changes(limit=1000)
    assert len(changes) == count + 1
    entry = changes[0]
    assert (entry["action"], entry["object_api_name"], entry["field_api_name"], entry["version"]) == (action, "deal", None, version + 1)
    return result, entry


def deal_rows(rt) -> list[dict[str, Any]]:
    table = rt.catalog().table("deal")
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def failed(rt, call) -> list[tuple[str, str | None, str]]:
    """A write that must fail and write nothing; its (code, field, message) list."""
    before = deal_rows(rt)
    with pytest.raises(ValidationFailed) as caught:
        call()
    assert deal_rows(rt) == before
    return [(e.code, e.field, e.message) for e in caught.value.errors]


def needs(label: str, *fields: str, prefix: str = "") -> list[tuple[str, str, str]]:
    return [("REQUIRED_BY_LAYOUT", f"{prefix}{name}", f"is required by the layout '{label}'") for name in fields]


class Org:
    """Users holding some of the fixture's roles in one unit, memberships added in the order given."""

    def __init__(self, rt):
        self.rt = rt
        self.root = rt.security.create_unit(S, "Company")
        self.tokens: dict[str, str] = {}

    def user(self, username: str, *roles: str):
        sec = self.rt.security
        user = sec.create_user(S, {"username": username})
        for role in roles:
            sec.add_membership(S, user["id"], self.root["id"], role)
        token = self.tokens[username] = sec.issue_token(S, "tests", user_id=user["id"])["token"]
        return sec.authenticate(token)


# -- creating, updating, deleting ---------------------------------------------------------------
def test_create_update_delete_are_one_change_each(rt):
    definition = {
        "api_name": "standard", "label": "Standard",
        "sections": [{"label": "Deal", "columns": 1, "fields": [{"field": "name", "required": True}, {"field": "amount"}]},
                     {"label": "System", "fields": [{"field": "owner_id", "read_only": True}, {"field": "business_type"}]}],
        "related_lists": [{"object": "contact", "field": "deal", "label": "Contacts", "columns": ["title", "phone"]}],
    }
    created, entry = accepted(rt, "create_layout", lambda: rt.metadata.create_layout(S, "deal", definition))
    assert created.as_dict() == {
        "api_name": "standard", "label": "Standard", "business_type": None, "role": None,
        "sections": [{"label": "Deal", "columns": 1, "fields": [item("name", True), item("amount")]},
                     {"label": "System", "columns": 2, "fields": [item("owner_id", read_only=True), item("business_type")]}],
        "related_lists": [{"object": "contact", "field": "deal", "label": "Contacts", "columns": ["title", "phone"]}],
    }
    assert (entry["before"], entry["after"]) == (None, created.as_dict())
    assert created.required_fields == ("name",)
    assert rt.catalog().object("deal").layouts == (created,)

    changed, entry = accepted(rt, "update_layout", lambda: rt.metadata.update_layout(
        S, "deal", "standard", {"label": "Standard deal", "business_type": "product", "role": "manager",
                                "sections": [{"label": "Only", "fields": [{"field": "amount", "required": True}]}]}))
    assert (changed.label, changed.business_type, changed.role, changed.required_fields) == (
        "Standard deal", "product", "manager", ("amount",))
    assert changed.as_dict()["related_lists"] == definition["related_lists"]  # untouched parts stay
    assert (entry["before"], entry["after"]) == (created.as_dict(), changed.as_dict())
    assert [(r["api_name"], r["label"], r["business_type"], r["role"]) for r in stored(rt)["layouts"]] == [
        ("standard", "Standard deal", "product", "manager")]

    _, entry = accepted(rt, "delete_layout", lambda: rt.metadata.delete_layout(S, "deal", "standard"))
    assert (entry["before"], entry["after"]) == (changed.as_dict(), None)
    assert rt.catalog().object("deal").layouts == ()
    assert stored(rt)["layouts"] == []


def test_fields_must_be_the_objects_placed_once_and_not_both_required_and_read_only(rt):
    definition = {"api_name": "bad", "label": "Bad", "sections": [
        {"label": "One", "fields": [item("title"), item("nowhere"), item("name", True, True), item("amount")]},
        {"label": "Two", "fields": [item("amount"), item("industry", True)]}]}
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", definition)) == [
        ("UNKNOWN_FIELD", "sections.0.fields.0.field", "'deal' has no field named 'title' (it is a field of 'contact')"),
        ("UNKNOWN_FIELD", "sections.0.fields.1.field", "'deal' has no field named 'nowhere'"),
        ("INVALID_VALUE", "sections.0.fields.2", "a field cannot be both required and read-only"),
        ("DUPLICATE", "sections.1.fields.0.field", "'amount' is already placed at sections.0.fields.3.field"),
        ("UNKNOWN_FIELD", "sections.1.fields.1.field", "'deal' has no field named 'industry' (it is a field of 'account')"),
    ]


def test_business_type_must_be_the_objects(rt):
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", layout("x", "X", item("name"), business_type="rental"))) == [
        ("UNKNOWN_BUSINESS_TYPE", "business_type", "'deal' has no business type 'rental'")]
    assert refused(rt, lambda: rt.metadata.create_layout(S, "account", layout("x", "X", item("name"), business_type="product"))) == [
        ("UNKNOWN_BUSINESS_TYPE", "business_type", "'account' has no business type 'product'")]


def test_related_lists_must_be_objects_pointing_here_with_their_own_columns(rt):
    definition = layout("x", "X", item("name"), related_lists=[
        {"object": "ghost", "field": "deal"},
        {"object": "contact", "field": "account"},
        {"object": "contact", "field": "title"},
        {"object": "contact", "field": "nothing"},
        {"object": "contact", "field": "deal", "columns": ["title", "amount", "phone", "zz"]},
    ])
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", definition)) == [
        ("UNKNOWN_OBJECT", "related_lists.0.object", "there is no object named 'ghost'"),
        ("NOT_A_RELATION", "related_lists.1.field", "'contact.account' does not point at 'deal'"),
        ("NOT_A_RELATION", "related_lists.2.field", "'contact.title' does not point at 'deal'"),
        ("NOT_A_RELATION", "related_lists.3.field", "'contact.nothing' does not point at 'deal'"),
        ("UNKNOWN_FIELD", "related_lists.4.columns.1", "'contact' has no field named 'amount'"),
        ("UNKNOWN_FIELD", "related_lists.4.columns.3", "'contact' has no field named 'zz'"),
    ]
    # the account layout may list the contacts and deals pointing at it
    created = rt.metadata.create_layout(S, "account", layout("acc", "Account", item("name"), related_lists=[
        {"object": "contact", "field": "account", "columns": ["title"]}, {"object": "deal", "field": "account"}]))
    assert [r["object"] for r in created.related_lists] == ["contact", "deal"]


def test_one_layout_per_business_type_and_role(rt):
    rt.metadata.create_layout(S, "deal", layout("default", "Default", item("name")))
    rt.metadata.create_layout(S, "deal", layout("product", "Product", item("name"), business_type="product"))
    rt.metadata.create_layout(S, "deal", layout("manager", "Manager", item("name"), role="manager"))
    rt.metadata.create_layout(S, "deal", layout("product_manager", "PM", item("name"), business_type="product", role="manager"))
    for api_name, kind, role, clash in [("again", None, None, "default"), ("again", "product", None, "product"),
                                        ("again", None, "manager", "manager"), ("again", "product", "manager", "product_manager")]:
        assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", layout(api_name, "Again", item("name"), business_type=kind,
                                                                                role=role))) == [
            ("DUPLICATE", "business_type", f"layout '{clash}' already serves this business type and role")]
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", layout("default", "Same name", item("name"), role="other"))) == [
        ("DUPLICATE", "api_name", "'deal' already has a layout 'default'")]
    assert refused(rt, lambda: rt.metadata.update_layout(S, "deal", "manager", {"business_type": "product"})) == [
        ("DUPLICATE", "business_type", "layout 'product_manager' already serves this business type and role")]
    # the same role on another object, or another role, is fine; an update keeping its own slot too
    rt.metadata.create_layout(S, "account", layout("default", "Default", item("name")))
    rt.metadata.create_layout(S, "deal", layout("project_manager", "PjM", item("name"), business_type="project", role="manager"))
    rt.metadata.update_layout(S, "deal", "product_manager", {"label": "Product manager"})
    assert len(rt.catalog().object("deal").layouts) == 5


def test_malformed_layouts_and_missing_ones(rt):
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", {"api_name": "x", "label": "X", "sections": []})) == [
        ("INVALID", "sections", "Length must be between 1 and 50.")]
    errors = refused(rt, lambda: rt.metadata.create_layout(S, "deal", {"api_name": "x", "label": "X", "sections": [
        {"label": "A", "columns": 5, "fields": [{"required": True}]}]}))
    assert [(code, field) for code, field, _ in errors] == [("INVALID", "sections.0.columns"), ("REQUIRED", "sections.0.fields.0.field")]
    assert refused(rt, lambda: rt.metadata.update_layout(S, "deal", "nope", {"label": "Y"}), NotFound) == []
    assert refused(rt, lambda: rt.metadata.delete_layout(S, "deal", "nope"), NotFound) == []
    assert refused(rt, lambda: rt.metadata.create_layout(S, "nothing", layout("x", "X", item("name"))), NotFound) == []
    rt.metadata.create_layout(S, "deal", layout("x", "X", item("name")))
    assert refused(rt, lambda: rt.metadata.update_layout(S, "deal", "x", {"sections": [
        {"label": "A", "fields": [item("name", True, True), item("contract"), item("contract")]}]})) == [
        ("INVALID_VALUE", "sections.0.fields.0", "a field cannot be both required and read-only"),
        ("DUPLICATE", "sections.0.fields.2.field", "'contract' is already placed at sections.0.fields.1.field")]


def test_only_administrators_change_layouts(rt):
    clerk = Org(rt).user("carl", "clerk")
    assert refused(rt, lambda: rt.metadata.create_layout(clerk, "deal", layout("x", "X", item("name"))), Forbidden) == []
    rt.metadata.create_layout(S, "deal", layout("x", "X", item("name")))
    refused(rt, lambda: rt.metadata.update_layout(clerk, "deal", "x", {"label": "Y"}), Forbidden)
    refused(rt, lambda: rt.metadata.delete_layout(clerk, "deal", "x"), Forbidden)


def test_a_field_a_layout_places_cannot_be_deleted(rt):
    rt.metadata.create_layout(S, "deal", layout("x", "X", item("name"), item("contract")))
    before = stored(rt)
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_field(S, "deal", "contract")
    assert caught.value.ctx["used_by"] == ["layout 'x'"]
    assert stored(rt) == before
    rt.metadata.delete_field(S, "deal", "region")
    assert rt.catalog().object("deal").field("region") is None


def test_a_business_type_a_layout_names_is_not_left_dangling(rt):
    rt.metadata.create_layout(S, "deal", layout("internal", "Internal", item("name"), business_type="internal"))
    try:
        rt.metadata.delete_business_type(S, "deal", "internal")
    except InUse:
        assert rt.catalog().object("deal").business_type("internal") is not None
    else:
        assert [lay.business_type for lay in rt.catalog().object("deal").layouts] in ([], [None])


# -- the role a layout names --------------------------------------------------------------------
def test_a_layout_names_a_role_that_exists(rt):
    unknown = ("UNKNOWN_ROLE", "role", "there is no role named 'ghost'")
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", layout("x", "X", item("name"), role="ghost"))) == [unknown]
    # with the layout's other problems, all at once
    assert refused(rt, lambda: rt.metadata.create_layout(S, "deal", layout("x", "X", item("nowhere"), business_type="rental",
                                                                            role="ghost"))) == [
        ("UNKNOWN_BUSINESS_TYPE", "business_type", "'deal' has no business type 'rental'"),
        ("UNKNOWN_FIELD", "sections.0.fields.0.field", "'deal' has no field named 'nowhere'"), unknown]
    rt.metadata.create_layout(S, "deal", layout("x", "X", item("name"), role="manager"))
    assert refused(rt, lambda: rt.metadata.update_layout(S, "deal", "x", {"role": "ghost"})) == [unknown]
    assert refused(rt, lambda: rt.metadata.update_layout(S, "deal", "x", {"role": "Manager"})) == [
        ("INVALID", "role", "must start with a lowercase letter and hold only lowercase letters, digits and underscores (at most 63)")]
    # the built-in administrator role, a role created since, or none
    rt.security.create_role(S, "auditor", "Auditor")
    for role in ("administrator", "auditor", None):
        assert rt.metadata.update_layout(S, "deal", "x", {"role": role}).role == role


def test_a_role_a_layout_names_cannot_be_deleted(rt):
    rt.metadata.create_layout(S, "deal", layout("manager_form", "M", item("name"), role="manager"))
    rt.metadata.create_layout(S, "deal", layout("product_manager", "PM", item("name"), business_type="product", role="manager"))
    rt.metadata.create_layout(S, "account", layout("manager_accounts", "MA", item("name"), role="manager"))
    before, role, audit = stored(rt), rt.security.role(S, "manager"), rt.security.audit(S)
    with pytest.raises(InUse) as caught:
        rt.security.delete_role(S, "manager")
    assert caught.value.as_dict() == {
        "code": "IN_USE", "field": "name", "ctx": {"layouts": ["account.manager_accounts", "deal.manager_form", "deal.product_manager"]},
        "message": "The layout(s) account.manager_accounts, deal.manager_form, deal.product_manager name the role 'manager'; "
                   "change or delete them first."}
    assert (stored(rt), rt.security.role(S, "manager"), rt.security.audit(S)) == (before, role, audit)
    rt.metadata.delete_layout(S, "account", "manager_accounts")
    rt.metadata.update_layout(S, "deal", "manager_form", {"role": None})
    with pytest.raises(InUse) as caught:
        rt.security.delete_role(S, "manager")
    assert caught.value.ctx == {"layouts": ["deal.product_manager"]}
    rt.metadata.update_layout(S, "deal", "product_manager", {"role": "analyst"})
    rt.security.delete_role(S, "manager")
    with pytest.raises(NotFound):
        rt.security.role(S, "manager")
    assert [(lay.api_name, lay.role) for lay in rt.catalog().object("deal").layouts] == [
        ("manager_form", None), ("product_manager", "analyst")]


def test_a_role_deleted_while_a_layout_naming_it_is_saved_waits_and_is_refused(rt, monkeypatch):
    """The layout's change has checked the role but not committed: deleting the role waits for it,
    then sees the layout."""
    checked = threading.Event()
    check = layout_rules.role_problems

    def slow_check(conn, definition):
        problems = check(conn, definition)
        checked.set()
        time.sleep(0.5)
        return problems

    monkeypatch.setattr(layout_rules, "role_problems", slow_check)
    saving = threading.Thread(target=rt.metadata.create_layout, args=(S, "deal", layout("other_form", "O", item("name"), role="other")))
    saving.start()
    try:
        assert checked.wait(10)
        with pytest.raises(InUse) as caught:
            rt.security.delete_role(S, "other")
    finally:
        saving.join(10)
    assert caught.value.ctx == {"layouts": ["deal.other_form"]}
    assert rt.security.role(S, "other")["name"] == "other"
    assert [lay.role for lay in rt.catalog().object("deal").layouts] == ["other"]


def test_a_layout_naming_a_role_being_deleted_waits_and_is_refused(rt, monkeypatch):
    """The role's deletion has not committed when the layout's change checks it: the check waits,
    then finds no role."""
    entered = threading.Event()
    check = layout_rules.role_problems

    def signalled_check(conn, definition):
        entered.set()
        return check(conn, definition)

    monkeypatch.setattr(layout_rules, "role_problems", signalled_check)
    outcome: list[Any] = []

    def save():
        try:
            outcome.append(rt.metadata.create_layout(S, "deal", layout("other_form", "O", item("name"), role="other")))
        except InvalidDefinition as error:
            outcome.append([(e.code, e.field) for e in error.errors])

    with rt.engine.connect().execution_options(**WRITE) as conn:
        with conn.begin():
            conn.execute(delete(layout_rules.ROLES).where(layout_rules.ROLES.c.name == "other"))
            saving = threading.Thread(target=save)
            saving.start()
            if rt.engine.dialect.name == "postgresql":  # SQLite: the change waits for the write lock before it checks
                assert entered.wait(10)
            time.sleep(0.3)
    saving.join(10)
    assert outcome == [[("UNKNOWN_ROLE", "role")]]
    assert rt.catalog().object("deal").layouts == ()


# -- which layout applies -----------------------------------------------------------------------
@pytest.fixture
def layouts(rt):
    for definition in (
        layout("standard", "Standard", item("name", True), item("amount")),
        layout("product", "Product", item("name", True), item("amount", True), business_type="product"),
        layout("manager", "Manager", item("name", True), item("region", True), role="manager"),
        layout("product_manager", "Product manager", item("amount", True), item("region", True), item("close_date", True),
               item("name", read_only=True), business_type="product", role="manager"),
        layout("project_analyst", "Project analyst", item("contract", True), business_type="project", role="analyst"),
    ):
        rt.metadata.create_layout(S, "deal", definition)
    return rt


def test_the_most_specific_layout_applies(layouts):
    deal = layouts.catalog().object("deal")

    def chosen(kind, *roles):
        found = deal.layout_for(kind, roles)
        return found.api_name if found else None

    assert chosen("product", "manager") == "product_manager"
    assert chosen("product", "analyst", "manager") == "product_manager"  # type and role beat type alone
    assert chosen("product", "manager", "analyst") == "product_manager"
    assert chosen("product") == "product"
    assert chosen("product", "analyst", "clerk") == "product"  # the type beats the roles' own layouts
    assert chosen("project", "analyst", "manager") == "project_analyst"
    assert chosen("project", "manager", "analyst") == "project_analyst"
    assert chosen("project", "manager") == "manager"  # no project layout: the role's
    assert chosen("project", "clerk", "manager") == "manager"
    assert chosen("project") == "standard"
    assert chosen(None, "manager") == "manager"
    assert chosen("internal", "clerk") == "standard"
    layouts.metadata.delete_layout(S, "deal", "standard")
    deal = layouts.catalog().object("deal")
    assert chosen("internal", "clerk") is None
    assert chosen("internal", "manager") == "manager"


def test_equally_specific_layouts_of_several_roles_the_first_role_given_wins(layouts):
    layouts.metadata.create_layout(S, "deal", layout("product_analyst", "Product analyst", item("contract", True),
                                                     business_type="product", role="analyst"))
    layouts.metadata.create_layout(S, "deal", layout("analyst", "Analyst", item("contract", True), role="analyst"))
    deal = layouts.catalog().object("deal")
    assert [lay.api_name for lay in deal.layouts] == [  # listed by api name
        "analyst", "manager", "product", "product_analyst", "product_manager", "project_analyst", "standard"]

    def chosen(kind, *roles):
        return deal.layout_for(kind, roles).api_name

    assert chosen("product", "analyst", "manager") == "product_analyst"
    assert chosen("product", "manager", "analyst") == "product_manager"
    assert chosen("internal", "analyst", "manager") == "analyst"
    assert chosen("internal", "manager", "analyst") == "manager"
    assert chosen("internal", "clerk", "manager", "analyst") == "manager"  # roles without layouts are passed over
    # a layout for the type and any role beats the first role's own layout
    assert chosen("project", "manager", "analyst") == "project_analyst"


def test_a_user_with_several_roles_gets_the_layout_of_their_earliest_membership(layouts):
    """The roles reach layout_for in the order of the user's memberships (oldest first), for writes
    and for the GraphQL layout query alike."""
    layouts.metadata.create_layout(S, "deal", layout("product_analyst", "Product analyst", item("contract", True),
                                                     business_type="product", role="analyst"))
    org = Org(layouts)
    ada, mia = org.user("ada", "analyst", "manager"), org.user("mia", "manager", "analyst")
    app = create_app(Settings(), runtime=layouts).test_client()

    def form(username, business_type):
        response = app.post("/graphql", headers={"Authorization": f"Bearer {org.tokens[username]}"}, json={
            "query": "query($t: String) { layout(object: \"deal\", businessType: $t) { apiName } }", "variables": {"t": business_type}})
        assert response.status_code == 200 and "errors" not in response.get_json(), response.get_json()
        return response.get_json()["data"]["layout"]["apiName"]

    assert (form("ada", "product"), form("mia", "product")) == ("product_analyst", "product_manager")
    assert (form("ada", "internal"), form("mia", "internal")) == ("manager", "manager")
    assert failed(layouts, lambda: layouts.records.create(ada, "deal", {"name": "n"})) == needs("Product analyst", "contract")
    assert failed(layouts, lambda: layouts.records.create(mia, "deal", {"contract": "C"})) == needs(
        "Product manager", "amount", "region", "close_date")
    # given the analyst role again, it is ada's latest membership: the manager's layout now applies
    unit = org.root["id"]
    layouts.security.remove_membership(S, ada.id, unit, "analyst")
    layouts.security.add_membership(S, ada.id, unit, "analyst")
    ada = layouts.security.authenticate(org.tokens["ada"])
    assert form("ada", "product") == "product_manager"
    assert failed(layouts, lambda: layouts.records.create(ada, "deal", {"contract": "C"})) == needs(
        "Product manager", "amount", "region", "close_date")


def test_creating_needs_every_required_field_of_the_applicable_layout(layouts):
    org = Org(layouts)
    mia, ada, carl = org.user("mia", "manager"), org.user("ada", "analyst", "manager"), org.user("carl", "clerk")
    create = lambda actor, values: (lambda: layouts.records.create(actor, "deal", values))  # noqa: E731
    assert failed(layouts, create(S, {})) == needs("Product", "name", "amount")  # product is the default type
    assert failed(layouts, create(S, {"business_type": "project"})) == needs("Standard", "name")
    assert failed(layouts, create(S, {"business_type": "internal", "amount": 5})) == needs("Standard", "name")
    assert failed(layouts, create(carl, {"name": "", "amount": 1})) == needs("Product", "name")
    assert failed(layouts, create(mia, {"name": "n"})) == needs("Product manager", "amount", "region", "close_date")
    assert failed(layouts, create(mia, {"business_type": "project"})) == needs("Manager", "name", "region")
    assert failed(layouts, create(ada, {"business_type": "project", "name": "n", "region": "r"})) == needs("Project analyst", "contract")
    assert failed(layouts, create(ada, {"amount": 1})) == needs("Product manager", "region", "close_date")
    assert failed(layouts, create(ada, {"business_type": "internal"})) == needs("Manager", "name", "region")
    # a multi-picklist left empty is empty too
    layouts.metadata.update_layout(S, "deal", "standard", {"sections": [{"label": "A", "fields": [item("name", True), item("tags", True)]}]})
    assert failed(layouts, create(S, {"business_type": "project", "name": "n", "tags": []})) == needs("Standard", "tags")
    made = [
        layouts.records.create(S, "deal", {"name": "n", "amount": 1}),
        layouts.records.create(S, "deal", {"business_type": "project", "name": "n", "tags": ["red"]}),
        layouts.records.create(mia, "deal", {"amount": 1, "region": "north", "close_date": "2024-05-01"}),
        layouts.records.create(ada, "deal", {"business_type": "project", "contract": "C-1"}),
        layouts.records.create(carl, "deal", {"name": "n", "amount": "0.00"}),
    ]
    assert len(deal_rows(layouts)) == len(made) == 5


def test_updating_checks_only_emptied_fields_unless_the_type_changes(layouts):
    ada = Org(layouts).user("ada", "analyst", "manager")
    old = layouts.records.create(S, "deal", {"name": "before any layout", "business_type": "internal"})
    layouts.metadata.update_layout(S, "deal", "standard", {"sections": [{"label": "A", "fields": [
        item("name", True), item("contract", True), item("region", True)]}]})
    # already empty, not touched or set empty again: fine
    assert layouts.records.update(S, "deal", old["id"], {"amount": 3})["version"] == 2
    assert layouts.records.update(S, "deal", old["id"], {"contract": None})["version"] == 2  # nothing changed
    assert layouts.records.update(S, "deal", old["id"], {"region": ""})["version"] == 3  # empty before, empty after
    assert failed(layouts, lambda: layouts.records.update(S, "deal", old["id"], {"name": None})) == needs("Standard", "name")
    assert failed(layouts, lambda: layouts.records.update(S, "deal", old["id"], {"name": "", "amount": None})) == needs("Standard", "name")
    product = layouts.records.create(S, "deal", {"name": "p", "amount": 10})
    assert failed(layouts, lambda: layouts.records.update(S, "deal", product["id"], {"amount": None, "name": None})) == needs(
        "Product", "name", "amount")
    # the same record seen by a manager: the product manager layout (name is not required there)
    assert failed(layouts, lambda: layouts.records.update(ada, "deal", product["id"], {"amount": None, "name": None})) == needs(
        "Product manager", "amount")
    assert layouts.records.update(ada, "deal", product["id"], {"name": None})["name"] is None
    # a new business type: every required field of the new type's layout
    assert failed(layouts, lambda: layouts.records.update(S, "deal", product["id"], {"business_type": "project"})) == needs(
        "Standard", "name", "contract", "region")
    assert failed(layouts, lambda: layouts.records.update(ada, "deal", product["id"], {"business_type": "project"})) == needs(
        "Project analyst", "contract")
    moved = layouts.records.update(ada, "deal", product["id"], {"business_type": "project", "contract": "C"})
    assert (moved["business_type"], moved["version"]) == ("project", 3)
    assert failed(layouts, lambda: layouts.records.update(S, "deal", product["id"], {"business_type": "product"})) == needs(
        "Product", "name")
    assert failed(layouts, lambda: layouts.records.update(ada, "deal", product["id"], {"business_type": "product"})) == needs(
        "Product manager", "region", "close_date")


def test_bulk_writes_report_each_rows_path(layouts):
    assert failed(layouts, lambda: layouts.records.bulk_create(S, "deal", [
        {"name": "ok", "amount": 1}, {"name": "no amount"}, {"business_type": "project"}, {}])) == [
        *needs("Product", "amount", prefix="1."), *needs("Standard", "name", prefix="2."),
        *needs("Product", "name", "amount", prefix="3.")]
    first, second = layouts.records.bulk_create(S, "deal", [{"name": "a", "amount": 1}, {"name": "b", "business_type": "project"}])
    assert failed(layouts, lambda: layouts.records.bulk_update(S, "deal", [
        {"id": first["id"], "values": {"amount": None}},
        {"id": second["id"], "values": {"name": "b2"}},
        {"id": second["id"], "values": {"business_type": "product"}}])) == [
        *needs("Product", "amount", prefix="0."), *needs("Product", "amount", prefix="2.")]
    assert deal_rows(layouts)[0]["amount"] is not None


def test_layout_fields_are_checked_after_before_save_hooks_and_before_rules(layouts):
    def fill(ctx):
        if ctx.record.get("business_type") == "product" and ctx.record.get("amount") is None:
            ctx.record["amount"] = 99

    layouts.records.hooks.before_save("deal", fill)
    record = layouts.records.create(S, "deal", {"name": "hooked"})
    assert layouts.records.get(S, "deal", record["id"])["amount"] == Decimal("99.00")
    layouts.metadata.create_validation_rule(S, "deal", {"api_name": "named_x", "expression": 'record.name == "x"',
                                                        "message": "x only", "field": "name"})
    assert failed(layouts, lambda: layouts.records.create(S, "deal", {"business_type": "project"})) == [
        *needs("Standard", "name"), ("RULE_FAILED", "name", "x only")]


def test_layout_changes_apply_to_the_next_write(layouts):
    layouts.metadata.delete_layout(S, "deal", "product")
    assert failed(layouts, lambda: layouts.records.create(S, "deal", {"amount": 1})) == needs("Standard", "name")
    layouts.metadata.update_layout(S, "deal", "standard", {"sections": [{"label": "A", "fields": [item("name")]}]})
    assert layouts.records.create(S, "deal", {})["business_type"] == "product"
