"""The CRM app (apps/crm): installed through the app service on SQLite and PostgreSQL.

What it installs (objects, business types, stages and probabilities, roles) is checked exactly;
then the behaviour a CRM relies on: the stage process of each business type, the account tier
formula at its thresholds, payment roll-ups, the close-date rule, row scopes of reps and regional
directors, and an uninstall that leaves the database as it was.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Forbidden,
    NotFound,
    ValidationFailed,
)
from lowcode.runtime import Runtime

APPS = Path(__file__).resolve().parents[2] / "apps"

CRM_OBJECTS = {"lead", "account", "expense", "contact", "partner", "competitor", "opportunity", "opportunity_competitor",
               "contract", "payment_plan", "payment", "activity", "task"}
PRODUCT_SALE = [("first_contact", 10, "open"), ("needs_confirmed", 30, "open"), ("solution", 50, "open"),
                ("quote_negotiation", 70, "open"), ("won", 100, "won"), ("lost", 0, "lost")]
PROJECT_SALE = [("project_identified", 10, "open"), ("requirements_study", 25, "open"), ("proposal_bid", 50, "open"),
                ("contract_negotiation", 80, "open"), ("project_won", 100, "won"), ("project_lost", 0, "lost")]
ROLES = {"crm_sales_rep": (False, {"own"}), "crm_sales_manager": (False, {"unit"}),
         "crm_regional_director": (False, {"unit_and_below"}), "crm_subsidiary_head": (False, {"unit_and_below"}),
         "crm_group_executive": (False, {"all"}), "crm_administrator": (True, set())}
"""Each role: administrator, and the read scopes of its grants on the CRM's customer data."""
REFERENCE_DATA = {"partner", "competitor"}
"""Readable by every CRM role (scope all): they are not customer data."""

TODAY = datetime.now(timezone.utc).date()
"""The UTC day: the close-date rule compares dates (midnight UTC in CEL) with `now`."""
LATER = (TODAY + timedelta(days=30)).isoformat()


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS).install()
    yield runtime
    runtime.close()


@pytest.fixture
def crm(rt):
    rt.apps.install_app(S, "crm")
    return rt


def codes(caught) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in caught.value.errors]


def account(rt, actor=S, **values):
    return rt.records.create(actor, "account", {"name": "Shaanxi Blower Group", **values})


def opportunity(rt, account_id, actor=S, **values):
    return rt.records.create(actor, "opportunity", {"name": "Compressor line", "account": account_id, "close_date": LATER, **values})


# -- what the app installs --------------------------------------------------------------------------

def test_install_brings_the_objects_processes_and_roles_as_specified(crm):
    installed = {a["name"]: a["installed_version"] for a in crm.apps.list()}
    assert installed["crm"] == "1.1.0"
    catalog = crm.catalog()
    assert {o.api_name for o in catalog.objects.values() if not o.system} == CRM_OBJECTS

    opportunity = catalog.object("opportunity")
    kinds = {k.api_name: k for k in opportunity.business_types}
    assert list(kinds) == ["product_sale", "project_sale"]
    assert [(s.api_name, s.probability, s.category) for s in kinds["product_sale"].stages] == PRODUCT_SALE
    assert [(s.api_name, s.probability, s.category) for s in kinds["project_sale"].stages] == PROJECT_SALE
    assert opportunity.default_business_type.api_name == "product_sale"
    assert set(kinds["product_sale"].stage("quote_negotiation").required_fields) == {"amount", "close_date"}
    assert dict(kinds["project_sale"].picklists) == {"channel": ("direct", "agent")}
    assert [k.api_name for k in catalog.object("activity").business_types] == ["visit", "call", "note"]
    assert catalog.object("activity").field("check_in_location").type == "geolocation"

    account = catalog.object("account")
    assert account.field("parent").target == "account" and account.field("parent").options["relationship_name"] == "subsidiaries"
    assert account.field("tier").options["in_sql"] is True, "the tier can be filtered and grouped on"
    junction = catalog.object("opportunity_competitor")
    assert (junction.field("opportunity").type, junction.field("opportunity").target) == ("master_detail", "opportunity")
    assert (junction.field("competitor").type, junction.field("competitor").target) == ("lookup", "competitor")
    for obj, name in (("contract", "total_planned"), ("contract", "total_received"), ("payment_plan", "received")):
        field = catalog.object(obj).field(name)
        assert (field.type, field.options["result_type"], field.options["scale"]) == ("rollup", "currency", 2), name

    layouts = {(layout.business_type, layout.api_name) for name in ("opportunity", "activity") for layout in catalog.object(name).layouts}
    assert layouts == {("product_sale", "product_sale_form"), ("project_sale", "project_sale_form"),
                       ("visit", "visit_form"), ("call", "call_form"), ("note", "note_form")}
    assert [layout.api_name for layout in account.layouts] == ["account_form"]

    for name, (administrator, scopes) in ROLES.items():
        role = crm.security.role(S, name)
        assert role["administrator"] is administrator, name
        customer_data = [g for g in role["objects"] if g["object"] not in REFERENCE_DATA]
        assert {g["read_scope"] for g in customer_data} == scopes, name
        assert all(g["read_scope"] == "all" for g in role["objects"] if g["object"] in REFERENCE_DATA), name
        if not administrator:
            assert {g["object"] for g in role["objects"]} == CRM_OBJECTS, name
    grants = {name: {g["object"]: set(g["actions"]) for g in crm.security.role(S, name)["objects"]} for name in ROLES}
    assert "delete" not in grants["crm_sales_rep"]["account"]
    assert {"transfer", "reopen"} <= grants["crm_sales_manager"]["opportunity"]
    assert all(actions == {"read", "export"} for obj, actions in grants["crm_group_executive"].items() if obj not in ("activity", "task"))
    assert {"object": "account", "field": "grade", "access": "read"} in crm.security.role(S, "crm_sales_rep")["fields"]

    competitors = sorted(r["name"] for r in crm.records.query(S, "competitor").records)
    assert competitors == ["Contoso Solutions", "Fabrikam Software", "Northwind Systems"]
    assert [r["name"] for r in crm.records.query(S, "partner").records] == ["Example Channel Partner"]


# -- opportunities ------------------------------------------------------------------------------------

def test_a_product_sale_moves_through_its_stages_and_refuses_project_sale_stages(crm):
    customer = account(crm)
    deal = opportunity(crm, customer["id"])
    assert (deal["business_type"], deal["stage"]) == ("product_sale", "first_contact")
    for stage in ("needs_confirmed", "solution"):
        deal = crm.records.update(S, "opportunity", deal["id"], {"stage": stage})
        assert deal["stage"] == stage
    with pytest.raises(ValidationFailed) as caught:
        crm.records.update(S, "opportunity", deal["id"], {"stage": "quote_negotiation"})
    assert codes(caught) == [("REQUIRED_FOR_STAGE", "amount")], "a quote needs the amount"
    deal = crm.records.update(S, "opportunity", deal["id"], {"stage": "quote_negotiation", "amount": "120000"})
    with pytest.raises(ValidationFailed) as caught:
        crm.records.update(S, "opportunity", deal["id"], {"stage": "proposal_bid"})
    assert codes(caught) == [("INVALID_STAGE", "stage")]
    deal = crm.records.update(S, "opportunity", deal["id"], {"stage": "won"})
    history = [entry["stage"] for entry in crm.records.stage_history(S, "opportunity", deal["id"])]
    assert history == ["first_contact", "needs_confirmed", "solution", "quote_negotiation", "won"]

    project = opportunity(crm, customer["id"], name="Plant automation", business_type="project_sale", amount="2500000", channel="agent")
    assert project["stage"] == "project_identified"
    with pytest.raises(ValidationFailed) as caught:
        crm.records.update(S, "opportunity", project["id"], {"stage": "solution"})
    assert codes(caught) == [("INVALID_STAGE", "stage")]
    with pytest.raises(ValidationFailed) as caught:
        crm.records.update(S, "opportunity", project["id"], {"channel": "online"})
    assert codes(caught) == [("NOT_ALLOWED_FOR_TYPE", "channel")], "project sales are not sold online"


def test_opportunity_rules_close_date_amount_and_discount(crm):
    customer = account(crm)
    yesterday, today = (TODAY - timedelta(days=1)).isoformat(), TODAY.isoformat()
    with pytest.raises(ValidationFailed) as caught:
        opportunity(crm, customer["id"], close_date=yesterday)
    assert codes(caught) == [("RULE_FAILED", "close_date")]
    deal = opportunity(crm, customer["id"], close_date=today)
    assert crm.records.update(S, "opportunity", deal["id"], {"close_date": yesterday})["close_date"].isoformat() == yesterday, \
        "the rule is about new opportunities"
    won = opportunity(crm, customer["id"], name="Spare parts", close_date=yesterday, stage="won", amount="5000")
    assert won["stage"] == "won", "a deal already closed is recorded with its past close date"
    for values, field in (({"amount": "0"}, "amount"), ({"amount": "-10"}, "amount"), ({"discount": "100"}, "discount"),
                          ({"discount": "-1"}, "discount")):
        with pytest.raises(ValidationFailed) as caught:
            crm.records.update(S, "opportunity", deal["id"], values)
        assert codes(caught) == [("RULE_FAILED", field)], values
    assert crm.records.update(S, "opportunity", deal["id"], {"amount": "0.01", "discount": "99.99"})["amount"] == Decimal("0.01")
    with pytest.raises(ValidationFailed) as caught:
        crm.records.create(S, "contract", {"account": customer["id"], "amount": "0"})
    assert codes(caught) == [("RULE_FAILED", "amount")]


def test_a_similar_deal_of_the_same_account_or_a_second_account_of_one_name_asks_first(crm):
    customer = account(crm)
    opportunity(crm, customer["id"])
    with pytest.raises(ValidationFailed) as caught:
        opportunity(crm, customer["id"], name="Compressor  line.")
    assert codes(caught) == [("POSSIBLE_DUPLICATE", "account")]
    assert opportunity(crm, account(crm, name="Other customer")["id"])["name"] == "Compressor line", "another account's deal"
    again = crm.records.create(S, "opportunity", {"name": "Compressor line", "account": customer["id"], "close_date": LATER},
                               acknowledge=["POSSIBLE_DUPLICATE"])
    assert again["account"] == customer["id"]
    with pytest.raises(ValidationFailed) as caught:
        account(crm, name="ＳＨＡＡＮＸＩ blower group")
    assert codes(caught) == [("POSSIBLE_DUPLICATE", "name")]
    assert "is a colleague already following this customer?" in caught.value.errors[0].message
    assert len(crm.records.every(S, "account", fields=["id"])) == 2


def test_a_won_deal_is_announced_to_its_owners_unit(crm):
    sec = crm.security
    east = sec.create_unit(S, "East region")
    ann, bob = _user(crm, "ann", east["id"], "crm_sales_rep"), _user(crm, "bob", east["id"], "crm_sales_rep")
    carl = _user(crm, "carl", sec.create_unit(S, "West region")["id"], "crm_sales_rep")
    deal = opportunity(crm, account(crm, ann)["id"], ann, amount="8000")
    crm.records.update(ann, "opportunity", deal["id"], {"stage": "solution"})
    assert [crm.notifications.unread_count(u) for u in (ann, bob, carl)] == [0, 0, 0]
    crm.records.update(ann, "opportunity", deal["id"], {"stage": "won"})
    assert [[n.title for n in crm.notifications.inbox(u).notifications] for u in (ann, bob, carl)] == [
        ["Won: Compressor line"], ["Won: Compressor line"], []]


# -- accounts -----------------------------------------------------------------------------------------

TIERS = [(None, "standard"), ("0", "standard"), ("9999.99", "standard"), ("10000", "vip"), ("10000.01", "vip"),
         ("199999.99", "vip"), ("200000", "gold"), ("200000.01", "gold"), ("1999999.99", "gold"), ("2000000", "platinum"),
         ("2000000.01", "platinum"), ("4999999.99", "platinum"), ("5000000", "diamond"), ("5000000.01", "diamond"),
         ("80000000", "diamond")]


def test_the_tier_follows_the_documented_thresholds(crm):
    ids = {}
    for revenue, tier in TIERS:
        created = account(crm, name=f"Revenue {revenue}", yearly_revenue=revenue)
        assert created["tier"] == tier, revenue
        ids[revenue] = created["id"]
    read = {r["id"]: r["tier"] for r in crm.records.query(S, "account", first=100).records}
    assert [read[ids[revenue]] for revenue, _ in TIERS] == [tier for _, tier in TIERS]
    gold = crm.records.query(S, "account", filter={"tier": {"eq": "gold"}}).records
    assert sorted(r["name"] for r in gold) == ["Revenue 1999999.99", "Revenue 200000", "Revenue 200000.01"]
    grown = crm.records.update(S, "account", ids["9999.99"], {"yearly_revenue": "5000000"})
    assert grown["tier"] == "diamond"


def test_accounts_form_a_tree_of_any_depth(crm):
    group = account(crm, name="Group")
    subsidiary = account(crm, name="Subsidiary", parent=group["id"])
    region = account(crm, name="Region", parent=subsidiary["id"])
    branch = account(crm, name="Branch", parent=region["id"])
    deeper = account(crm, name="Office", parent=branch["id"])
    assert crm.records.get(S, "account", deeper["id"])["parent"] == branch["id"]
    children = crm.records.query(S, "account", filter={"parent": {"eq": group["id"]}}).records
    assert [r["name"] for r in children] == ["Subsidiary"]


# -- contracts and payments ---------------------------------------------------------------------------

def test_payment_roll_ups_follow_payments(crm):
    customer = account(crm)
    contract = crm.records.create(S, "contract", {"account": customer["id"], "amount": "1000", "name": "Supply 2025"})
    assert contract["contract_number"].startswith("CON-")
    first = crm.records.create(S, "payment_plan", {"contract": contract["id"], "due_date": LATER, "amount": "600"})
    second = crm.records.create(S, "payment_plan", {"contract": contract["id"], "due_date": LATER, "amount": "400"})

    def totals():
        c = crm.records.get(S, "contract", contract["id"])
        plans = [crm.records.get(S, "payment_plan", p["id"])["received"] for p in (first, second)]
        return c["total_planned"], c["total_received"], plans

    assert totals() == (Decimal("1000.00"), Decimal("0.00"), [Decimal("0.00"), Decimal("0.00")])
    paid = crm.records.create(S, "payment", {"payment_plan": first["id"], "amount": "250.50", "received_on": LATER})
    crm.records.create(S, "payment", {"payment_plan": first["id"], "amount": "100", "received_on": LATER})
    crm.records.create(S, "payment", {"payment_plan": second["id"], "amount": "400", "received_on": LATER})
    assert totals() == (Decimal("1000.00"), Decimal("750.50"), [Decimal("350.50"), Decimal("400.00")])
    crm.records.delete(S, "payment", paid["id"])
    assert totals() == (Decimal("1000.00"), Decimal("500.00"), [Decimal("100.00"), Decimal("400.00")])
    crm.records.update(S, "payment_plan", second["id"], {"amount": "500"})
    assert totals()[0] == Decimal("1100.00")
    with pytest.raises(ValidationFailed) as caught:
        crm.records.create(S, "payment", {"payment_plan": second["id"], "amount": "-1", "received_on": LATER})
    assert codes(caught) == [("RULE_FAILED", "amount")]


def test_overdue_payment_plans_are_those_due_before_today_with_an_amount_outstanding(crm):
    customer = account(crm)
    contract = crm.records.create(S, "contract", {"account": customer["id"], "amount": "3000", "name": "Blower retrofit"})
    earlier, yesterday = (TODAY - timedelta(days=40)).isoformat(), (TODAY - timedelta(days=1)).isoformat()
    plans = {name: crm.records.create(S, "payment_plan", {"contract": contract["id"], "name": name, "due_date": due, "amount": "1000"})
             for name, due in (("deposit", earlier), ("delivery", yesterday), ("acceptance", TODAY.isoformat()))}
    crm.records.create(S, "payment", {"payment_plan": plans["deposit"]["id"], "amount": "1000", "received_on": earlier})
    crm.records.create(S, "payment", {"payment_plan": plans["delivery"]["id"], "amount": "250.25", "received_on": yesterday})
    overdue = {"due_date": {"lt": TODAY.isoformat()}, "outstanding": {"gt": "0"}}
    found = crm.records.query(S, "payment_plan", filter=overdue, order_by=["due_date"]).records
    assert [(r["name"], r["outstanding"]) for r in found] == [("delivery", Decimal("749.75"))]
    assert crm.records.get(S, "payment_plan", plans["acceptance"]["id"])["outstanding"] == Decimal("1000.00")


def test_competitors_per_opportunity_and_visit_check_in(crm):
    customer = account(crm)
    deal = opportunity(crm, customer["id"])
    rivals = {r["name"]: r["id"] for r in crm.records.query(S, "competitor").records}
    crm.records.create(S, "opportunity_competitor", {"opportunity": deal["id"], "competitor": rivals["Contoso Solutions"],
                                                     "notes": "Offers a 20% lower price"})
    met = crm.records.query(S, "opportunity_competitor", filter={"opportunity": {"eq": deal["id"]}}).records
    assert [(r["competitor"], r["notes"]) for r in met] == [(rivals["Contoso Solutions"], "Offers a 20% lower price")]

    visit = {"subject": "Quarterly review", "account": customer["id"], "occurred_at": "2025-03-04T02:00:00Z",
             "checked_in_at": "2025-03-04T02:01:00Z"}
    with pytest.raises(ValidationFailed) as caught:
        crm.records.create(S, "activity", visit)
    assert codes(caught) == [("RULE_FAILED", "check_in_location")]
    made = crm.records.create(S, "activity", {**visit, "check_in_location": {"latitude": 34.26, "longitude": 108.94}})
    assert (made["business_type"], made["check_in_location"]) == ("visit", {"latitude": 34.26, "longitude": 108.94})
    with pytest.raises(ValidationFailed) as caught:
        crm.records.create(S, "activity", {"subject": "Visit without account", "occurred_at": "2025-03-04T02:00:00Z"})
    assert codes(caught) == [("REQUIRED_BY_LAYOUT", "account")]
    call = crm.records.create(S, "activity", {"business_type": "call", "subject": "Follow-up", "occurred_at": "2025-03-05T02:00:00Z"})
    assert call["business_type"] == "call"


# -- roles and scopes ---------------------------------------------------------------------------------

def _user(rt, name: str, unit_id: str, role: str):
    user = rt.security.create_user(S, {"username": name, "email": f"{name}@example.com"})
    rt.security.add_membership(S, user["id"], unit_id, role)
    return rt.security.authenticate(rt.security.issue_token(S, "test", user_id=user["id"])["token"])


def test_reps_see_their_own_records_and_directors_their_region(crm):
    sec = crm.security
    group = sec.create_unit(S, "Group")
    east = sec.create_unit(S, "East region", group["id"])
    shanghai = sec.create_unit(S, "Shanghai team", east["id"])
    west = sec.create_unit(S, "West region", group["id"])
    ann, bob = _user(crm, "ann", shanghai["id"], "crm_sales_rep"), _user(crm, "bob", shanghai["id"], "crm_sales_rep")
    carl = _user(crm, "carl", west["id"], "crm_sales_rep")
    dora = _user(crm, "dora", east["id"], "crm_regional_director")
    erin = _user(crm, "erin", group["id"], "crm_group_executive")

    deals = {}
    for rep in (ann, bob, carl):
        customer = account(crm, rep, name=f"Customer of {rep.name}")
        deals[rep.name] = opportunity(crm, customer["id"], rep, name=f"Deal of {rep.name}")
        assert (deals[rep.name]["owner_id"], deals[rep.name]["org_unit_id"]) == (rep.id, crm.security.memberships(S, user_id=rep.id)[0]["unit_id"])

    def seen(actor, obj="opportunity"):
        return sorted(r["name"] for r in crm.records.query(actor, obj).records)

    assert seen(ann) == ["Deal of ann"]
    assert seen(bob) == ["Deal of bob"]
    assert seen(dora) == ["Deal of ann", "Deal of bob"], "a regional director sees the region's subtree"
    assert seen(erin) == ["Deal of ann", "Deal of bob", "Deal of carl"]
    assert seen(ann, "account") == ["Customer of ann"]
    assert len(seen(ann, "competitor")) == 3, "reference data is readable by every rep"
    with pytest.raises(NotFound):
        crm.records.get(ann, "opportunity", deals["bob"]["id"])
    with pytest.raises(NotFound):
        crm.records.get(dora, "opportunity", deals["carl"]["id"])

    ann_account = deals["ann"]["account"]
    with pytest.raises(Forbidden):
        crm.records.delete(ann, "account", ann_account)
    with pytest.raises(Forbidden):
        crm.records.update(ann, "account", ann_account, {"grade": "a"})
    assert crm.records.update(dora, "account", ann_account, {"grade": "a"})["grade"] == "a"
    with pytest.raises(Forbidden):
        crm.records.update(erin, "opportunity", deals["carl"]["id"], {"next_step": "Call the CFO"})
    updated = crm.records.update(dora, "opportunity", deals["bob"]["id"], {"next_step": "Site visit"})
    assert updated["next_step"] == "Site visit"
    assert crm.records.update(ann, "account", ann_account, {"phone": "+86 29 8888 0000"})["phone"] == "+86 29 8888 0000"

    contract = crm.records.create(ann, "contract", {"account": ann_account, "opportunity": deals["ann"]["id"], "amount": "9000"})
    assert contract["status"] == "draft", "a rep drafts contracts; the status is set by management"
    with pytest.raises(Forbidden):
        crm.records.update(ann, "contract", contract["id"], {"status": "in_review"})

    frank = _user(crm, "frank", shanghai["id"], "crm_sales_manager")
    assert seen(frank) == ["Deal of ann", "Deal of bob"], "a manager sees the unit"
    moved = crm.records.transfer(frank, "opportunity", deals["bob"]["id"], ann.id)
    assert moved["owner_id"] == ann.id and seen(ann) == ["Deal of ann", "Deal of bob"]
    won = crm.records.update(ann, "opportunity", deals["ann"]["id"], {"stage": "won", "amount": "9000"})
    assert won["stage"] == "won"
    with pytest.raises(Forbidden):
        crm.records.update(ann, "opportunity", won["id"], {"stage": "solution"})
    assert crm.records.update(frank, "opportunity", won["id"], {"stage": "solution"})["stage"] == "solution", "managers reopen"


# -- uninstalling -------------------------------------------------------------------------------------

def _use_the_crm(rt, user_id: str, unit_id: str) -> None:
    """Records of most kinds (tracked fields, stage moves, numbers, roll-ups) and a membership."""
    rt.security.add_membership(S, user_id, unit_id, "crm_sales_manager")
    customer = account(rt, yearly_revenue="300000")
    deal = opportunity(rt, customer["id"], amount="5000")
    rt.records.update(S, "opportunity", deal["id"], {"stage": "needs_confirmed", "amount": "6000"})
    contract = rt.records.create(S, "contract", {"account": customer["id"], "opportunity": deal["id"], "amount": "6000"})
    plan = rt.records.create(S, "payment_plan", {"contract": contract["id"], "due_date": LATER, "amount": "6000"})
    rt.records.create(S, "payment", {"payment_plan": plan["id"], "amount": "1000", "received_on": LATER})
    rt.records.create(S, "task", {"subject": "Send the quote", "opportunity": deal["id"], "due_date": LATER})
    rt.records.create(S, "lead", {"name": "Li Wei", "company": "Xi'an Pumps", "source": "trade_fair"})


@pytest.fixture
def org(rt):
    """A unit and a user, made before the snapshot (the CRM does not own them)."""
    unit = rt.security.create_unit(S, "Sales")
    user = rt.security.create_user(S, {"username": "mia"})
    return user["id"], unit["id"]


def test_an_uninstall_round_trip_leaves_the_database_as_before(rt, org, database_snapshot):
    before = database_snapshot(rt)
    rt.apps.install_app(S, "crm")
    _use_the_crm(rt, *org)
    removed = rt.apps.uninstall_app(S, "crm", export=True)
    assert set(removed["exported"]["objects"]) == CRM_OBJECTS
    assert len(removed["exported"]["objects"]["competitor"]) == 3
    assert database_snapshot(rt) == before
    assert rt.security.memberships(S, user_id=org[0]) == []
    assert next(a for a in rt.apps.list() if a["name"] == "crm")["installed_version"] is None
