"""The manufacturing app (apps/manufacturing) installed on top of the CRM, on SQLite and PostgreSQL.

What it installs is checked exactly (objects, the fields it adds to the CRM's opportunity, the service
sale process, roles, and the grants the CRM's roles get); then what a machine maker relies on: unique
serial numbers, the warranty and service-date rules, the service opportunity opened once from an
engineer's recommendation, the service roll-ups, the scopes of engineers and managers, the equipment
map through GraphQL against an independent computation and within each caller's permissions, and
uninstalls that refuse to break the CRM's data and otherwise leave the database as it was.
"""
from __future__ import annotations

import math
import re
import shutil
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from lowcode.graphql.limits import Limits
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Conflict,
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from sqlalchemy import inspect

APPS = Path(__file__).resolve().parents[2] / "apps"
TOKEN = "manufacturing-test-token"

CRM_OBJECTS = {"lead", "account", "expense", "contact", "partner", "competitor", "opportunity", "opportunity_competitor",
               "contract", "payment_plan", "payment", "activity", "task"}
EQUIPMENT_FIELDS = [("serial_number", "text"), ("name", "text"), ("model", "text"), ("product_line", "picklist"),
                    ("install_date", "date"), ("warranty_end", "date"), ("location", "geolocation"), ("site_address", "text"),
                    ("account", "lookup"), ("status", "picklist"), ("service_count", "rollup"), ("last_service_date", "rollup")]
SERVICE_RECORD_FIELDS = [("number", "auto_number"), ("equipment", "master_detail"), ("service_date", "date"), ("kind", "picklist"),
                         ("engineer", "lookup"), ("findings", "textarea"), ("labor_hours", "decimal"), ("parts_cost", "currency"),
                         ("recommendation", "picklist"), ("estimated_value", "currency")]
SERVICE_SALE = [("service_lead", 20, "open"), ("service_quoted", 60, "open"), ("service_won", 100, "won"), ("service_lost", 0, "lost")]

EVERYTHING_BUT_REOPEN = ("read", "create", "update", "delete", "export", "transfer", "restore")
MFG_ROLES = {
    "mfg_service_engineer": {
        "equipment": (("read", "update"), "unit_and_below", "unit_and_below", ()),
        "service_record": (("read", "create", "update"), "own", "own", ()),
        "account": (("read",), "unit_and_below", "own", ()),
        "opportunity": (("read",), "own", "own", ("service_sale",)),
    },
    "mfg_service_manager": {
        "equipment": (EVERYTHING_BUT_REOPEN, "unit_and_below", "unit_and_below", ()),
        "service_record": (EVERYTHING_BUT_REOPEN, "unit_and_below", "unit_and_below", ()),
        "account": (("read",), "unit_and_below", "own", ()),
        "opportunity": (("read", "create", "update", "export", "transfer", "reopen"), "unit_and_below", "unit_and_below",
                        ("service_sale",)),
    },
}
"""Per role and object: actions, read scope, write scope, business types."""
ENGINEER_READS_ONLY = ["serial_number", "name", "model", "product_line", "account", "install_date", "warranty_end"]
"""Engineers update an equipment's status, location and site address, nothing else."""
CRM_ROLE_GRANTS = {
    "crm_sales_rep": {"equipment": (("read", "create", "update"), "own", "own", ()),
                      "service_record": (("read",), "own", "own", ())},
    "crm_sales_manager": {"equipment": (("read", "create", "update", "export", "transfer"), "unit", "unit", ()),
                          "service_record": (("read", "export"), "unit", "unit", ())},
    "crm_regional_director": {"equipment": (EVERYTHING_BUT_REOPEN, "unit_and_below", "unit_and_below", ()),
                              "service_record": (("read", "export"), "unit_and_below", "unit_and_below", ())},
    "crm_subsidiary_head": {"equipment": (EVERYTHING_BUT_REOPEN, "unit_and_below", "unit_and_below", ()),
                            "service_record": (("read", "export"), "unit_and_below", "unit_and_below", ())},
    "crm_group_executive": {"equipment": (("read", "export"), "all", "own", ()),
                            "service_record": (("read", "export"), "all", "own", ())},
}
"""What the app grants the CRM's roles on its objects when it is installed."""

TODAY = datetime.now(timezone.utc).date()
"""The UTC day: the service-date rule compares dates (midnight UTC in CEL) with `now`."""
TOMORROW = TODAY + timedelta(days=1)


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS).install()
    yield runtime
    runtime.close()


@pytest.fixture
def mfg(rt):
    rt.apps.install_app(S, "crm")
    rt.apps.install_app(S, "manufacturing")
    return rt


def codes(caught) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in caught.value.errors]


def installed(rt) -> dict[str, str | None]:
    """The installed versions of the CRM and this app (other apps may lie in the apps folder)."""
    return {a["name"]: a["installed_version"] for a in rt.apps.list() if a["name"] in ("crm", "manufacturing")}


def grants(rt, role: str) -> dict[str, tuple]:
    return {g["object"]: (tuple(g["actions"]), g["read_scope"], g["write_scope"], tuple(g["business_types"]))
            for g in rt.security.role(S, role)["objects"]}


def account(rt, actor=S, **values):
    return rt.records.create(actor, "account", {"name": "Shaanxi Steel Works", **values})


def equipment(rt, account_id, actor=S, **values):
    return rt.records.create(actor, "equipment", {"serial_number": "SG-AV56-0001", "name": "Blast furnace blower",
                                                  "model": "AV56-14", "account": account_id, **values})


def service(rt, equipment_id, actor=S, **values):
    return rt.records.create(actor, "service_record", {"equipment": equipment_id, "service_date": TODAY.isoformat(), **values})


def service_sales(rt, actor=S) -> list[dict]:
    return rt.records.query(actor, "opportunity", filter={"business_type": {"eq": "service_sale"}}).records


def person(rt, name: str, unit_id: str, role: str):
    user = rt.security.create_user(S, {"username": name, "email": f"{name}@example.com"})
    rt.security.add_membership(S, user["id"], unit_id, role)
    return rt.security.authenticate(rt.security.issue_token(S, "test", user_id=user["id"])["token"])


# -- what the app installs --------------------------------------------------------------------------

def test_install_brings_exactly_the_objects_fields_process_and_roles(rt):
    rt.apps.install_app(S, "crm")
    crm_fields = {f.api_name for f in rt.catalog().object("opportunity").fields}
    summary = rt.apps.install_app(S, "manufacturing")
    assert (summary["installed_version"], summary["depends"]) == ("1.0.0", ["crm"])
    catalog = rt.catalog()
    assert {o.api_name for o in catalog.objects.values() if not o.system} == CRM_OBJECTS | {"equipment", "service_record"}

    machine = catalog.object("equipment")
    assert (machine.label, machine.plural_api_name, machine.plural_label) == ("Equipment", "equipment_units", "Equipment")
    assert [(f.api_name, f.type) for f in machine.fields if not f.system] == EQUIPMENT_FIELDS
    serial = machine.field("serial_number")
    assert (serial.required, serial.unique, serial.options["max_length"]) == (True, True, 64)
    assert machine.field("model").indexed and machine.field("model").required
    assert (machine.field("account").target, machine.field("account").options["on_delete"], machine.field("account").required) == (
        "account", "restrict", True)
    assert machine.field("status").default == "running"
    assert [v["api_name"] for v in machine.field("product_line").options["values"]] == [
        "compressor", "blower", "turbine", "pump", "control_system"]
    assert [v["api_name"] for v in machine.field("status").options["values"]] == ["running", "standby", "under_repair", "decommissioned"]
    rollups = {name: (machine.field(name).options["function"], machine.field(name).options["result_type"])
               for name in ("service_count", "last_service_date")}
    assert rollups == {"service_count": ("count", "integer"), "last_service_date": ("max", "date")}
    assert machine.field("under_warranty") is None, "a date compared with now does not translate into SQL"

    record = catalog.object("service_record")
    assert record.plural_api_name == "service_records"
    assert [(f.api_name, f.type) for f in record.fields if not f.system] == SERVICE_RECORD_FIELDS
    assert record.field("number").options["format"] == "SR-{YYYY}-{00000}"
    assert (record.field("equipment").target, record.field("engineer").target) == ("equipment", "user")
    assert (record.field("labor_hours").options["precision"], record.field("labor_hours").options["scale"]) == (8, 2)
    assert record.field("recommendation").default == "none"
    assert [v["api_name"] for v in record.field("recommendation").options["values"]] == [
        "none", "spare_parts", "upgrade", "replacement", "service_contract"]

    opportunity = catalog.object("opportunity")
    added = {f.api_name: (f.type, f.target, f.options["on_delete"]) for f in opportunity.fields if f.api_name not in crm_fields}
    assert added == {"equipment": ("lookup", "equipment", "set_null"), "service_record": ("lookup", "service_record", "set_null")}
    kinds = {k.api_name: k for k in opportunity.business_types}
    assert list(kinds) == ["product_sale", "project_sale", "service_sale"]
    assert [(s.api_name, s.probability, s.category) for s in kinds["service_sale"].stages] == SERVICE_SALE
    assert opportunity.default_business_type.api_name == "product_sale", "the CRM's default process stays"
    assert set(kinds["service_sale"].stage("service_quoted").required_fields) == {"amount"}
    assert set(kinds["service_sale"].stage("service_won").required_fields) == {"amount", "close_date"}

    assert {(r.api_name, r.field) for r in machine.validation_rules} == {("warranty_after_install", "warranty_end")}
    assert {(r.api_name, r.field) for r in record.validation_rules} == {
        ("service_date_not_in_future", "service_date"), ("estimated_value_positive", "estimated_value")}
    assert [layout.api_name for layout in machine.layouts] == ["equipment_form"]
    assert [layout.api_name for layout in record.layouts] == ["service_record_form"]
    assert opportunity.layout_for("service_sale").api_name == "service_sale_form"
    assert opportunity.layout_for("product_sale").api_name == "product_sale_form"
    assert opportunity.layout_for("project_sale").api_name == "project_sale_form"

    for role, expected in MFG_ROLES.items():
        assert rt.security.role(S, role)["administrator"] is False
        assert grants(rt, role) == expected, role
    field_grants = rt.security.role(S, "mfg_service_engineer")["fields"]
    assert sorted((g["object"], g["field"], g["access"]) for g in field_grants) == sorted(
        ("equipment", name, "read") for name in ENGINEER_READS_ONLY)
    assert rt.security.role(S, "mfg_service_manager")["fields"] == []
    for role, expected in CRM_ROLE_GRANTS.items():
        found = grants(rt, role)
        assert {obj: found[obj] for obj in ("equipment", "service_record")} == expected, role
        assert set(found) == CRM_OBJECTS | {"equipment", "service_record"}, role
    assert grants(rt, "crm_administrator") == {}
    assert rt.records.query(S, "equipment", total=True).total_count == 0, "no seed records"


def test_manufacturing_needs_the_crm_in_a_1_x_version(rt, tmp_path, database_snapshot):
    before = database_snapshot(rt)
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, "manufacturing")
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [
        ("MISSING_DEPENDENCY", "depends.0", "needs the app 'crm'; install it first")]
    assert database_snapshot(rt) == before
    assert installed(rt) == {"crm": None, "manufacturing": None}

    newer_crm = tmp_path / "crm"
    shutil.copytree(APPS / "crm", newer_crm)
    manifest = newer_crm / "manifest.yaml"
    text, replaced = re.subn(r"^version: 1\.1\.0$", "version: 2.0.0", manifest.read_text(), flags=re.M)
    assert replaced == 1
    manifest.write_text(text)
    rt.apps.install_app(S, str(newer_crm))
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, "manufacturing")
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [
        ("MISSING_DEPENDENCY", "depends.0.version", "needs 'crm' >=1.0.0,<2, but 2.0.0 is installed")]
    assert installed(rt) == {"crm": "2.0.0", "manufacturing": None}


def test_the_crm_cannot_be_uninstalled_under_manufacturing(mfg):
    with pytest.raises(InUse) as caught:
        mfg.apps.uninstall_app(S, "crm")
    assert (caught.value.field, caught.value.message) == ("app", "'crm' is needed by manufacturing; uninstall those first.")
    assert caught.value.ctx == {"dependents": ["manufacturing"]}
    assert installed(mfg) == {"crm": "1.1.0", "manufacturing": "1.0.0"}
    assert mfg.catalog().object("opportunity").field("equipment") is not None
    with pytest.raises(Conflict) as caught:
        mfg.apps.install_app(S, "manufacturing")
    assert caught.value.field == "app"


# -- equipment ---------------------------------------------------------------------------------------

def test_serial_numbers_are_unique_required_and_at_most_64_characters(mfg):
    customer = account(mfg)
    first = equipment(mfg, customer["id"], serial_number="SG-AV56-0001")
    assert (first["status"], first["service_count"], first["last_service_date"]) == ("running", 0, None)
    with pytest.raises(ValidationFailed) as caught:
        equipment(mfg, customer["id"], serial_number="SG-AV56-0001", name="Another blower")
    assert codes(caught) == [("DUPLICATE_VALUE", "serial_number")]
    second = equipment(mfg, customer["id"], serial_number="SG-AV56-0002")
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.update(S, "equipment", second["id"], {"serial_number": "SG-AV56-0001"})
    assert codes(caught) == [("DUPLICATE_VALUE", "serial_number")]
    rows = [{"serial_number": "SG-PPOR-77", "name": "Axial compressor", "model": "AV71", "account": customer["id"]}] * 2
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.bulk_create(S, "equipment", rows)
    assert codes(caught) == [("DUPLICATE_VALUE", "1.serial_number")]

    mfg.records.delete(S, "equipment", second["id"])
    with pytest.raises(ValidationFailed) as caught:
        equipment(mfg, customer["id"], serial_number="SG-AV56-0002")
    assert codes(caught) == [("DUPLICATE_VALUE", "serial_number")], "a unit in the recycle bin keeps its serial number"

    with pytest.raises(ValidationFailed) as caught:
        equipment(mfg, customer["id"], serial_number="S" * 65)
    assert codes(caught) == [("TOO_LONG", "serial_number")]
    assert equipment(mfg, customer["id"], serial_number="S" * 64)["serial_number"] == "S" * 64
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.create(S, "equipment", {"name": "Unnamed", "model": "AV56", "account": customer["id"]})
    assert codes(caught) == [("REQUIRED", "serial_number")]
    serials = sorted(r["serial_number"] for r in mfg.records.query(S, "equipment").records)
    assert serials == ["SG-AV56-0001", "S" * 64]


def test_equipment_keeps_its_account(mfg):
    customer = account(mfg)
    machine = equipment(mfg, customer["id"])
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.update(S, "equipment", machine["id"], {"account": None})
    assert codes(caught) == [("REQUIRED", "account")]
    with pytest.raises(InUse):
        mfg.records.delete(S, "account", customer["id"])
    assert mfg.records.get(S, "account", customer["id"])["deleted_at"] is None


def test_the_warranty_cannot_end_before_the_installation(mfg):
    customer = account(mfg)
    with pytest.raises(ValidationFailed) as caught:
        equipment(mfg, customer["id"], install_date="2024-05-01", warranty_end="2024-04-30")
    assert codes(caught) == [("RULE_FAILED", "warranty_end")]
    same_day = equipment(mfg, customer["id"], serial_number="SG-1", install_date="2024-05-01", warranty_end="2024-05-01")
    assert same_day["warranty_end"].isoformat() == "2024-05-01"
    assert equipment(mfg, customer["id"], serial_number="SG-2", warranty_end="2020-01-01")["install_date"] is None
    assert equipment(mfg, customer["id"], serial_number="SG-3", install_date="2030-01-01")["warranty_end"] is None
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.update(S, "equipment", same_day["id"], {"install_date": "2024-05-02"})
    assert codes(caught) == [("RULE_FAILED", "warranty_end")]
    extended = mfg.records.update(S, "equipment", same_day["id"], {"install_date": "2024-05-02", "warranty_end": "2026-05-01"})
    assert (extended["install_date"].isoformat(), extended["warranty_end"].isoformat()) == ("2024-05-02", "2026-05-01")


def test_a_service_is_recorded_once_it_took_place_with_sensible_values(mfg):
    machine = equipment(mfg, account(mfg)["id"])
    with pytest.raises(ValidationFailed) as caught:
        service(mfg, machine["id"], service_date=TOMORROW.isoformat())
    assert codes(caught) == [("RULE_FAILED", "service_date")]
    today = service(mfg, machine["id"])
    assert (today["service_date"], today["kind"], today["recommendation"]) == (TODAY, "maintenance", "none")
    assert re.fullmatch(rf"SR-{TODAY.year}-\d{{5}}", today["number"]), today["number"]
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.update(S, "service_record", today["id"], {"service_date": TOMORROW.isoformat()})
    assert codes(caught) == [("RULE_FAILED", "service_date")]
    for value in ("0", "-5"):
        with pytest.raises(ValidationFailed) as caught:
            service(mfg, machine["id"], estimated_value=value)
        assert codes(caught) == [("RULE_FAILED", "estimated_value")], value
    for name in ("labor_hours", "parts_cost"):
        with pytest.raises(ValidationFailed) as caught:
            service(mfg, machine["id"], **{name: "-1"})
        assert codes(caught) == [("OUT_OF_RANGE", name)], name
    with pytest.raises(ValidationFailed) as caught:
        service(mfg, machine["id"], recommendation="overhaul")
    assert codes(caught) == [("INVALID_CHOICE", "recommendation")]
    assert mfg.records.get(S, "equipment", machine["id"])["service_count"] == 1, "refused services are not counted"


# -- service opportunities ---------------------------------------------------------------------------

def test_a_recommendation_opens_one_service_sale_for_the_equipments_account(mfg):
    customer = account(mfg, name="Baotou Steel")
    other_customer = account(mfg, name="Not this one")
    machine = equipment(mfg, customer["id"], serial_number="SG-TRT-0042")
    equipment(mfg, other_customer["id"], serial_number="SG-TRT-0043")
    serviced = TODAY - timedelta(days=10)

    record = service(mfg, machine["id"], service_date=serviced.isoformat(), kind="inspection", recommendation="spare_parts",
                     estimated_value="18500.50", findings="Worn seals on the high-pressure stage")
    [sale] = service_sales(mfg)
    assert {k: sale[k] for k in ("name", "account", "equipment", "service_record", "amount", "business_type", "stage",
                                 "close_date", "owner_id")} == {
        "name": "Spare parts for SG-TRT-0042", "account": customer["id"], "equipment": machine["id"], "service_record": record["id"],
        "amount": Decimal("18500.50"), "business_type": "service_sale", "stage": "service_lead",
        "close_date": serviced + timedelta(days=60), "owner_id": record["owner_id"]}
    assert [m["stage"] for m in mfg.records.stage_history(S, "opportunity", sale["id"])] == ["service_lead"]

    mfg.records.update(S, "service_record", record["id"], {"findings": "Seals replaced on site", "labor_hours": "6.5"})
    mfg.records.update(S, "service_record", record["id"], {"recommendation": "upgrade", "estimated_value": "90000"})
    assert [s["id"] for s in service_sales(mfg)] == [sale["id"]], "one opportunity per service record"
    assert mfg.records.get(S, "opportunity", sale["id"])["name"] == "Spare parts for SG-TRT-0042", "the sales team owns it now"

    mfg.records.delete(S, "opportunity", sale["id"])
    mfg.records.update(S, "service_record", record["id"], {"findings": "Customer asked again"})
    assert service_sales(mfg) == [], "a deleted service sale is not opened again"
    assert [r["id"] for r in mfg.records.query(S, "opportunity", deleted=True).records] == [sale["id"]]


def test_no_recommendation_opens_nothing_until_one_is_made(mfg):
    machine = equipment(mfg, account(mfg)["id"], serial_number="SG-BL-7")
    quiet = service(mfg, machine["id"], findings="All within tolerance")
    explicit = service(mfg, machine["id"], recommendation="none", estimated_value="100")
    mfg.records.update(S, "service_record", quiet["id"], {"findings": "Checked again"})
    assert service_sales(mfg) == []

    mfg.records.update(S, "service_record", explicit["id"], {"recommendation": "service_contract"})
    [sale] = service_sales(mfg)
    assert (sale["name"], sale["service_record"], sale["amount"]) == ("Service contract for SG-BL-7", explicit["id"], Decimal("100.00"))
    mfg.records.update(S, "service_record", explicit["id"], {"recommendation": "none"})
    mfg.records.update(S, "service_record", explicit["id"], {"recommendation": "replacement"})
    assert [s["id"] for s in service_sales(mfg)] == [sale["id"]]


def test_service_sales_of_old_or_bulk_records(mfg):
    machine = equipment(mfg, account(mfg)["id"], serial_number="SG-OLD-1")
    old = service(mfg, machine["id"], service_date=(TODAY - timedelta(days=400)).isoformat(), recommendation="replacement")
    [sale] = service_sales(mfg)
    assert (sale["close_date"], sale["amount"]) == (TODAY, None), "a late record's sale closes today at the earliest, not in the past"
    assert sale["service_record"] == old["id"]

    created = mfg.records.bulk_create(S, "service_record", [
        {"equipment": machine["id"], "service_date": TODAY.isoformat(), "recommendation": "upgrade", "estimated_value": "1200"},
        {"equipment": machine["id"], "service_date": TODAY.isoformat()},
        {"equipment": machine["id"], "service_date": TODAY.isoformat(), "recommendation": "spare_parts", "estimated_value": "300"}])
    by_record = {s["service_record"]: (s["name"], s["amount"]) for s in service_sales(mfg)}
    assert by_record == {old["id"]: ("Replacement for SG-OLD-1", None),
                         created[0]["id"]: ("Upgrade for SG-OLD-1", Decimal("1200.00")),
                         created[2]["id"]: ("Spare parts for SG-OLD-1", Decimal("300.00"))}


def test_a_refused_service_record_opens_no_opportunity(mfg):
    machine = equipment(mfg, account(mfg)["id"])
    with pytest.raises(ValidationFailed):
        mfg.records.bulk_create(S, "service_record", [
            {"equipment": machine["id"], "service_date": TODAY.isoformat(), "recommendation": "upgrade"},
            {"equipment": machine["id"], "service_date": TOMORROW.isoformat(), "recommendation": "upgrade"}])
    assert service_sales(mfg) == []
    assert mfg.records.query(S, "service_record").records == []


# -- roll-ups ----------------------------------------------------------------------------------------

def test_service_count_and_last_service_date_follow_the_records(mfg):
    customer = account(mfg)
    machine, idle = equipment(mfg, customer["id"]), equipment(mfg, customer["id"], serial_number="SG-IDLE")

    def summary(which=machine):
        found = mfg.records.get(S, "equipment", which["id"])
        return found["service_count"], found["last_service_date"]

    days = [TODAY - timedelta(days=n) for n in (300, 30, 90)]
    records = [service(mfg, machine["id"], service_date=day.isoformat()) for day in days]
    assert summary() == (3, TODAY - timedelta(days=30))
    mfg.records.delete(S, "service_record", records[1]["id"])
    assert summary() == (2, TODAY - timedelta(days=90))
    mfg.records.update(S, "service_record", records[0]["id"], {"service_date": TODAY.isoformat()})
    assert summary() == (2, TODAY)
    mfg.records.restore(S, "service_record", records[1]["id"])
    assert summary() == (3, TODAY)
    mfg.records.hard_delete(S, "service_record", records[0]["id"])
    assert summary() == (2, TODAY - timedelta(days=30))
    assert summary(idle) == (0, None)
    recent = mfg.records.query(S, "equipment", filter={"last_service_date": {"gte": (TODAY - timedelta(days=60)).isoformat()}}).records
    assert [r["serial_number"] for r in recent] == ["SG-AV56-0001"]


# -- who sees what -----------------------------------------------------------------------------------

def test_engineers_record_their_own_services_and_managers_run_the_unit(mfg):
    sec = mfg.security
    group = sec.create_unit(S, "Group")
    northwest = sec.create_unit(S, "Northwest region", group["id"])
    xian_sales = sec.create_unit(S, "Xi'an sales", northwest["id"])
    east = sec.create_unit(S, "East region", group["id"])
    ann, carl = person(mfg, "ann", xian_sales["id"], "crm_sales_rep"), person(mfg, "carl", east["id"], "crm_sales_rep")
    eric = person(mfg, "eric", northwest["id"], "mfg_service_engineer")
    fay = person(mfg, "fay", northwest["id"], "mfg_service_engineer")
    mona = person(mfg, "mona", northwest["id"], "mfg_service_manager")

    ann_machine = equipment(mfg, account(mfg, ann, name="Xi'an customer")["id"], ann, serial_number="SG-NW-1")
    carl_machine = equipment(mfg, account(mfg, carl, name="Ningbo customer")["id"], carl, serial_number="SG-E-1")
    ann_deal = mfg.records.create(ann, "opportunity", {"name": "New compressor", "account": ann_machine["account"],
                                                       "close_date": (TODAY + timedelta(days=30)).isoformat()})
    assert (ann_machine["owner_id"], ann_machine["org_unit_id"]) == (ann.id, xian_sales["id"])

    def seen(actor, obj):
        return sorted(r["id"] for r in mfg.records.query(actor, obj).records)

    assert seen(eric, "equipment") == [ann_machine["id"]], "engineers read the equipment of their unit and below"
    with pytest.raises(NotFound):
        mfg.records.get(eric, "equipment", carl_machine["id"])
    with pytest.raises(Forbidden):
        equipment(mfg, ann_machine["account"], eric, serial_number="SG-NW-2")
    for name in ENGINEER_READS_ONLY:
        with pytest.raises(Forbidden):
            mfg.records.update(eric, "equipment", ann_machine["id"], {name: None})
    repaired = mfg.records.update(eric, "equipment", ann_machine["id"], {"status": "under_repair", "site_address": "Blast furnace 3",
                                                                       "location": {"latitude": 34.27, "longitude": 108.95}})
    assert (repaired["status"], repaired["serial_number"]) == ("under_repair", "SG-NW-1")
    with pytest.raises(NotFound):
        mfg.records.update(eric, "equipment", carl_machine["id"], {"status": "standby"})
    with pytest.raises(ValidationFailed) as caught:
        service(mfg, carl_machine["id"], eric)
    assert codes(caught) == [("INVALID_REFERENCE", "equipment")], "no services on equipment out of reach"

    erics = service(mfg, ann_machine["id"], eric, engineer=eric.id, recommendation="upgrade", estimated_value="250000")
    fays = service(mfg, ann_machine["id"], fay, engineer=fay.id)
    assert (erics["owner_id"], erics["org_unit_id"]) == (eric.id, northwest["id"])
    assert seen(eric, "service_record") == [erics["id"]] and seen(fay, "service_record") == [fays["id"]]
    assert seen(mona, "service_record") == sorted([erics["id"], fays["id"]])
    assert seen(ann, "service_record") == [], "a rep reads their own service records only"
    assert mfg.records.get(ann, "equipment", ann_machine["id"])["service_count"] == 2
    with pytest.raises(NotFound):
        mfg.records.update(fay, "service_record", erics["id"], {"findings": "Not mine"})
    with pytest.raises(Forbidden):
        mfg.records.delete(eric, "service_record", erics["id"])

    [sale] = service_sales(mfg)
    assert (sale["owner_id"], sale["org_unit_id"], sale["account"]) == (eric.id, northwest["id"], ann_machine["account"])
    assert seen(eric, "opportunity") == [sale["id"]], "engineers follow the sales opened from their records"
    assert seen(mona, "opportunity") == [sale["id"]], "a service manager sees service sales, not the other processes"
    assert seen(ann, "opportunity") == [ann_deal["id"]]
    with pytest.raises(Forbidden):
        mfg.records.update(eric, "opportunity", sale["id"], {"stage": "service_quoted"})
    quoted = mfg.records.update(mona, "opportunity", sale["id"], {"stage": "service_quoted"})
    assert (quoted["stage"], quoted["amount"]) == ("service_quoted", Decimal("250000.00"))
    with pytest.raises(ValidationFailed) as caught:
        mfg.records.update(mona, "opportunity", sale["id"], {"stage": "won"})
    assert codes(caught) == [("INVALID_STAGE", "stage")]
    with pytest.raises(Forbidden):
        mfg.records.create(mona, "opportunity", {"name": "Product deal", "account": ann_machine["account"],
                                                 "close_date": (TODAY + timedelta(days=30)).isoformat()})
    assert mfg.records.update(mona, "equipment", ann_machine["id"], {"status": "running", "model": "AV56-16"})["model"] == "AV56-16"


# -- the equipment map through GraphQL -----------------------------------------------------------------

EARTH_RADIUS = 6_371_008.8
XIAN = (34.3416, 108.9398)
SITES = {
    "SG-XA-001": (34.3416, 108.9398, "compressor"), "SG-WN-002": (34.4996, 109.5102, "blower"),
    "SG-BJ-003": (34.3619, 107.2376, "turbine"), "SG-HC-004": (35.4760, 110.4424, "blower"),
    "SG-YL-005": (38.2853, 109.7348, "compressor"), "SG-BT-006": (40.6574, 109.8403, "turbine"),
    "SG-TS-007": (39.6309, 118.1802, "compressor"), "SG-SH-008": (31.2304, 121.4737, "pump"),
    "SG-NB-009": (29.8683, 121.5440, "compressor"), "SG-CQ-010": (29.5630, 106.5516, "blower"),
    "SG-UQ-011": (43.8256, 87.6168, "turbine"), "SG-PZ-012": (26.5823, 101.7186, "control_system"),
    "SG-JK-013": (-6.2088, 106.8456, "compressor"),
}
"""Serial: latitude, longitude, product line (industrial sites in China and abroad)."""
RING_METERS = 100_000

LIST = """query ($filter: EquipmentFilter) {
  equipmentUnits(filter: $filter, first: 500) { totalCount nodes { serialNumber } } }"""
GRID = """query ($cell: Float!, $box: GeoBoxInput, $filter: EquipmentFilter) {
  equipmentUnitsMapGrid(field: LOCATION, cellDegrees: $cell, box: $box, filter: $filter) {
    south west north east count latitude longitude } }"""


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lng1), (lat2, lng2) = (map(math.radians, a)), (map(math.radians, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(math.sqrt(h))


def moved(start: tuple[float, float], bearing_degrees: float, meters: float) -> tuple[float, float]:
    """The point ``meters`` away from ``start`` along the great circle leaving at ``bearing_degrees``."""
    lat, lng, bearing, angle = math.radians(start[0]), math.radians(start[1]), math.radians(bearing_degrees), meters / EARTH_RADIUS
    end_lat = math.asin(math.sin(lat) * math.cos(angle) + math.cos(lat) * math.sin(angle) * math.cos(bearing))
    end_lng = lng + math.atan2(math.sin(bearing) * math.sin(angle) * math.cos(lat), math.cos(angle) - math.sin(lat) * math.sin(end_lat))
    return math.degrees(end_lat), math.degrees(end_lng)


def ring_sites() -> dict[str, tuple[float, float, str]]:
    """Sites just inside and just outside 100 km of Xi'an, 30 m from the edge."""
    sites = {}
    for bearing in (0, 75, 160, 250):
        for side, meters in (("IN", RING_METERS - 30), ("OUT", RING_METERS + 30)):
            sites[f"SG-RING-{side}-{bearing:03d}"] = (*moved(XIAN, bearing, meters), "blower")
    return sites


def in_box(point, south, west, north, east) -> bool:
    return south <= point[0] <= north and west <= point[1] <= east


def cells_of(points, cell: float) -> dict[tuple[float, float], tuple[int, float, float]]:
    """Per cell (south, west edges): how many points, and their mean latitude and longitude."""
    grouped = defaultdict(list)
    for lat, lng, *_ in points:
        grouped[(math.floor(lat / cell), math.floor(lng / cell))].append((lat, lng))
    return {(round(row * cell, 9), round(col * cell, 9)): (len(inside), sum(p[0] for p in inside) / len(inside),
                                                           sum(p[1] for p in inside) / len(inside))
            for (row, col), inside in grouped.items()}


class GraphQL:
    def __init__(self, runtime, client):
        self.runtime, self.client = runtime, client

    def post(self, query: str, variables: dict | None = None, token: str = TOKEN):
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                    headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, token: str = TOKEN):
        status, body = self.post(query, variables, token)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def failure(self, query: str, variables: dict | None = None, token: str = TOKEN):
        status, body = self.post(query, variables, token)
        assert status == 200 and len(body["errors"]) == 1, body
        extensions = body["errors"][0]["extensions"]
        return extensions["code"], [(e["code"], e["field"]) for e in extensions.get("errors", [])]

    def serials(self, filter: dict, token: str = TOKEN) -> set[str]:
        page = self.data(LIST, {"filter": filter}, token)["equipmentUnits"]
        assert page["totalCount"] == len(page["nodes"])
        return {n["serialNumber"] for n in page["nodes"]}

    def grid(self, cell: float, token: str = TOKEN, **arguments) -> dict[tuple[float, float], tuple[int, float, float]]:
        found = self.data(GRID, {"cell": cell, **arguments}, token)["equipmentUnitsMapGrid"]
        edges = [(c["south"], c["west"]) for c in found]
        assert edges == sorted(edges), "south to north, then west to east"
        for c in found:
            assert (c["north"], c["east"]) == (round(c["south"] + cell, 9), round(c["west"] + cell, 9))
        return {(c["south"], c["west"]): (c["count"], c["latitude"], c["longitude"]) for c in found}


def assert_same_cells(found: dict, expected: dict) -> None:
    assert {edge: count for edge, (count, _, _) in found.items()} == {edge: count for edge, (count, _, _) in expected.items()}
    for edge, (_, latitude, longitude) in expected.items():
        assert found[edge][1:] == pytest.approx((latitude, longitude), rel=1e-9), edge


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS).install()
    runtime.apps.install_app(S, "crm")
    runtime.apps.install_app(S, "manufacturing")
    app = create_app(Settings(database_url=database_url, api_token=TOKEN, limits=Limits()), runtime=runtime)
    yield GraphQL(runtime, app.test_client())
    runtime.close()


@pytest.fixture
def fleet(api):
    """Every site's equipment: the first of each three owned by ann, the second by bob (reps of one team),
    the third by the platform. Answers each owner's sites and their tokens."""
    rt, sec = api.runtime, api.runtime.security
    region = sec.create_unit(S, "Northwest region")
    team = sec.create_unit(S, "Xi'an sales", region["id"])
    people = {"ann": person(rt, "ann", team["id"], "crm_sales_rep"), "bob": person(rt, "bob", team["id"], "crm_sales_rep"),
              "dora": person(rt, "dora", region["id"], "crm_regional_director"),
              "eric": person(rt, "eric", region["id"], "mfg_service_engineer")}
    tokens = {name: sec.issue_token(S, "map", user_id=actor.id)["token"] for name, actor in people.items()}
    owners = {"ann": people["ann"], "bob": people["bob"], "platform": S}
    sites = {**SITES, **ring_sites()}
    owned = {name: {} for name in owners}
    for position, (serial, site) in enumerate(sites.items()):
        owned[list(owners)[position % 3]][serial] = site
    for name, actor in owners.items():
        customer = account(rt, actor, name=f"Customer of {name}")
        rt.records.bulk_create(actor, "equipment", [
            {"serial_number": serial, "name": f"Unit {serial}", "model": "AV56", "account": customer["id"], "product_line": line,
             "location": {"latitude": lat, "longitude": lng}} for serial, (lat, lng, line) in owned[name].items()])
    equipment(rt, account(rt)["id"], serial_number="SG-NOWHERE")
    return owned, tokens


def test_the_equipment_map_lists_the_units_in_a_box_and_within_a_radius(api, fleet):
    owned, _ = fleet
    sites = {serial: site for mine in owned.values() for serial, site in mine.items()}
    shaanxi = {"south": 31.7, "west": 105.5, "north": 39.6, "east": 111.3}

    in_shaanxi = {s for s, site in sites.items() if in_box(site, *shaanxi.values())}
    assert {"SG-XA-001", "SG-YL-005", "SG-RING-OUT-000"} <= in_shaanxi and "SG-BT-006" not in in_shaanxi
    assert api.serials({"location": {"withinBox": shaanxi}}) == in_shaanxi
    compressors = {s for s in in_shaanxi if sites[s][2] == "compressor"}
    assert compressors == {"SG-XA-001", "SG-YL-005"}
    assert api.serials({"location": {"withinBox": shaanxi}, "productLine": {"eq": "COMPRESSOR"}}) == compressors

    near_xian = {s for s, site in sites.items() if haversine(XIAN, site[:2]) <= RING_METERS}
    assert {s for s in near_xian if s.startswith("SG-RING")} == {s for s in sites if s.startswith("SG-RING-IN")}
    assert "SG-WN-002" in near_xian and "SG-BJ-003" not in near_xian
    radius = {"latitude": XIAN[0], "longitude": XIAN[1], "meters": RING_METERS}
    assert api.serials({"location": {"withinRadius": radius}}) == near_xian
    assert api.serials({"not": {"location": {"withinRadius": radius}}}) == set(sites) - near_xian | {"SG-NOWHERE"}
    assert api.serials({"location": {"isNull": True}}) == {"SG-NOWHERE"}


def test_the_map_grid_counts_units_per_cell(api, fleet):
    owned, _ = fleet
    points = [site for mine in owned.values() for site in mine.values()]
    for cell in (10, 2, 0.5):
        assert_same_cells(api.grid(cell), cells_of(points, cell))
    china = {"south": 18, "west": 73, "north": 54, "east": 135}
    inside = [p for p in points if in_box(p, *china.values())]
    assert len(inside) == len(points) - 1, "all but Jakarta"
    assert_same_cells(api.grid(5, box=china), cells_of(inside, 5))
    turbines = [p for p in inside if p[2] == "turbine"]
    assert_same_cells(api.grid(5, box=china, filter={"productLine": {"eq": "TURBINE"}}), cells_of(turbines, 5))
    assert sum(count for count, _, _ in api.grid(90).values()) == len(points), "units without a location are not mapped"


def test_each_caller_maps_only_the_equipment_they_may_read(api, fleet):
    owned, tokens = fleet
    radius = {"latitude": XIAN[0], "longitude": XIAN[1], "meters": RING_METERS}
    team = {**owned["ann"], **owned["bob"]}
    for name, mine in (("ann", owned["ann"]), ("bob", owned["bob"]), ("dora", team), ("eric", team)):
        token = tokens[name]
        assert_same_cells(api.grid(2, token), cells_of(mine.values(), 2))
        assert api.serials({"location": {"withinRadius": radius}}, token) == {
            s for s, site in mine.items() if haversine(XIAN, site[:2]) <= RING_METERS}, name
    assert set(owned["ann"]).isdisjoint(owned["bob"]) and owned["ann"] and owned["bob"]

    stranger = api.runtime.security.create_user(S, {"username": "stranger"})
    token = api.runtime.security.issue_token(S, "map", user_id=stranger["id"])["token"]
    assert api.failure(GRID, {"cell": 2}, token)[0] == "FORBIDDEN"


def test_map_arguments_are_checked(api, fleet):
    assert api.failure(LIST, {"filter": {"location": {"withinBox": {"south": 40, "west": 100, "north": 30, "east": 110}}}}) == (
        "VALIDATION_FAILED", [("OUT_OF_RANGE", "filter.location.withinBox.north")])
    assert api.failure(GRID, {"cell": 0.0001}) == ("VALIDATION_FAILED", [("OUT_OF_RANGE", "cellDegrees")])
    status, body = api.post("{ equipmentUnitsMapGrid(field: MODEL, cellDegrees: 1) { count } }")
    assert status == 400 and [e["extensions"]["code"] for e in body["errors"]] == ["BAD_QUERY"]


def test_service_records_and_their_sales_through_graphql(api):
    rt = api.runtime
    machine = equipment(rt, account(rt, name="Hancheng Power")["id"], serial_number="SG-HC-900")
    created = api.data("""mutation ($input: ServiceRecordCreateInput!) { createServiceRecord(input: $input) { number kind } }""",
                       {"input": {"equipmentId": machine["id"], "serviceDate": TODAY.isoformat(), "kind": "REPAIR",
                                  "recommendation": "UPGRADE", "estimatedValue": "75000"}})["createServiceRecord"]
    assert created["kind"] == "REPAIR"
    found = api.data("""query ($serial: String!) { equipmentUnits(filter: {serialNumber: {eq: $serial}}, first: 1) { nodes {
        serviceCount lastServiceDate account { name }
        serviceRecords(first: 10) { nodes { number recommendation } }
        opportunities(first: 10) { nodes { name stage amount businessType account { name } serviceRecord { number } } } } } }""",
                     {"serial": "SG-HC-900"})["equipmentUnits"]["nodes"]
    assert found == [{"serviceCount": 1, "lastServiceDate": TODAY.isoformat(), "account": {"name": "Hancheng Power"},
                      "serviceRecords": {"nodes": [{"number": created["number"], "recommendation": "UPGRADE"}]},
                      "opportunities": {"nodes": [{"name": "Upgrade for SG-HC-900", "stage": "SERVICE_LEAD", "amount": "75000.00",
                                                   "businessType": "SERVICE_SALE", "account": {"name": "Hancheng Power"},
                                                   "serviceRecord": {"number": created["number"]}}]}}]


# -- uninstalling ------------------------------------------------------------------------------------

def test_uninstall_is_refused_while_service_sales_exist(mfg):
    machine = equipment(mfg, account(mfg)["id"])
    service(mfg, machine["id"], recommendation="upgrade", estimated_value="5000")
    [sale] = service_sales(mfg)
    mfg.records.delete(S, "opportunity", sale["id"])
    with pytest.raises(InvalidDefinition) as caught:
        mfg.apps.uninstall_app(S, "manufacturing")
    assert codes(caught) == [("CANNOT_REMOVE", "business_types.0")]
    assert "1 record(s) are of this business type" in caught.value.errors[0].message, "the recycle bin counts"
    assert installed(mfg) == {"crm": "1.1.0", "manufacturing": "1.0.0"}
    assert mfg.records.get(S, "opportunity", sale["id"], deleted=True)["equipment"] == machine["id"]
    assert mfg.records.get(S, "equipment", machine["id"])["service_count"] == 1

    mfg.records.hard_delete(S, "opportunity", sale["id"])
    removed = mfg.apps.uninstall_app(S, "manufacturing")
    assert (removed["name"], removed["version"]) == ("manufacturing", "1.0.0")
    assert installed(mfg) == {"crm": "1.1.0", "manufacturing": None}


def _use_the_crm(rt, user_id: str, unit_id: str) -> str:
    """CRM records made before the manufacturing app arrives; answers an opportunity's id."""
    rt.security.add_membership(S, user_id, unit_id, "crm_sales_manager")
    customer = account(rt, yearly_revenue="3000000")
    deal = rt.records.create(S, "opportunity", {"name": "Compressor station", "account": customer["id"], "amount": "800000",
                                                "close_date": (TODAY + timedelta(days=90)).isoformat()})
    rt.records.update(S, "opportunity", deal["id"], {"stage": "needs_confirmed"})
    return deal["id"]


def _use_manufacturing(rt, user_id: str, unit_id: str, deal_id: str) -> str:
    """Equipment (tracked changes, roll-ups, numbers), service records without recommendations, an
    engineer's membership, and a CRM opportunity linked to the equipment; answers the equipment's id."""
    rt.security.add_membership(S, user_id, unit_id, "mfg_service_engineer")
    deal = rt.records.get(S, "opportunity", deal_id)
    machine = equipment(rt, deal["account"], install_date="2019-06-01", warranty_end="2024-06-01",
                        location={"latitude": 34.34, "longitude": 108.94})
    rt.records.update(S, "equipment", machine["id"], {"status": "standby", "warranty_end": "2026-06-01"})
    for days in (40, 10):
        service(rt, machine["id"], service_date=(TODAY - timedelta(days=days)).isoformat(), labor_hours="4.5", parts_cost="1200")
    rt.records.update(S, "opportunity", deal_id, {"equipment": machine["id"]})
    return machine["id"]


@pytest.fixture
def org(rt):
    """A unit and a user, made before the snapshots (no app owns them)."""
    unit = rt.security.create_unit(S, "Service and sales")
    user = rt.security.create_user(S, {"username": "li"})
    return user["id"], unit["id"]


def test_an_uninstall_round_trip_leaves_the_database_as_before_and_the_crm_working(rt, org, database_snapshot):
    rt.apps.install_app(S, "crm")
    deal_id = _use_the_crm(rt, *org)
    crm_grants = {role: grants(rt, role) for role in CRM_ROLE_GRANTS}
    before = database_snapshot(rt)

    rt.apps.install_app(S, "manufacturing")
    machine_id = _use_manufacturing(rt, *org, deal_id)
    removed = rt.apps.uninstall_app(S, "manufacturing", export=True)

    assert {name: len(rows) for name, rows in removed["exported"]["objects"].items()} == {"equipment": 1, "service_record": 2}
    assert removed["exported"]["fields"] == {"opportunity": {"equipment": {deal_id: machine_id}, "service_record": {deal_id: None}}}
    assert database_snapshot(rt) == before
    assert installed(rt) == {"crm": "1.1.0", "manufacturing": None}
    opportunity = rt.catalog().object("opportunity")
    assert (opportunity.field("equipment"), opportunity.field("service_record")) == (None, None)
    assert [k.api_name for k in opportunity.business_types] == ["product_sale", "project_sale"]
    with rt.engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(rt.catalog().table("opportunity").name)}
    assert not {name for name in columns if name.startswith(("equipment", "service_record"))}
    assert {role: grants(rt, role) for role in CRM_ROLE_GRANTS} == crm_grants
    assert [m["role"] for m in rt.security.memberships(S, user_id=org[0])] == ["crm_sales_manager"]

    deal = rt.records.get(S, "opportunity", deal_id)
    assert (deal["stage"], "equipment" in deal) == ("needs_confirmed", False)
    assert rt.records.update(S, "opportunity", deal_id, {"stage": "solution"})["stage"] == "solution"
    with pytest.raises(ValidationFailed) as caught:
        rt.records.update(S, "opportunity", deal_id, {"equipment": machine_id})
    assert codes(caught) == [("UNKNOWN_FIELD", "equipment")]

    rt.apps.install_app(S, "manufacturing")
    assert rt.records.query(S, "equipment").records == [], "a reinstall starts empty"
    assert grants(rt, "crm_sales_rep")["equipment"] == CRM_ROLE_GRANTS["crm_sales_rep"]["equipment"]
