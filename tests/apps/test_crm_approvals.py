"""The CRM's approvals (apps/crm 1.1.0), on SQLite and PostgreSQL: expense claims go to the sales
manager up the org tree and, above 5,000, to finance; discounts over 15 percent and orders
(contracts) over 100,000 go to the sales manager; the outcome sets the status; a 1.0.0 install
upgrades to the approvals."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import Forbidden
from lowcode.runtime import Runtime
from lowcode.runtime.approvals import NoApprover, NoProcess, RecordLocked

APPS = Path(__file__).resolve().parents[2] / "apps"
TODAY = datetime.now(timezone.utc).date()
LATER = (TODAY + timedelta(days=30)).isoformat()


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS).install()
    yield runtime
    runtime.close()


class Org:
    """Group > North region > Team A: ann sells in Team A, max manages it, rex directs the region,
    fay does finance for the group."""

    def __init__(self, rt):
        sec = rt.security
        self.group = sec.create_unit(S, "Group")["id"]
        self.north = sec.create_unit(S, "North", self.group)["id"]
        self.team = sec.create_unit(S, "Team A", self.north)["id"]
        self.ids = {}
        for name, unit, role in (("ann", self.team, "crm_sales_rep"), ("max", self.team, "crm_sales_manager"),
                                 ("rex", self.north, "crm_regional_director"), ("fay", self.group, "crm_finance")):
            user = sec.create_user(S, {"username": name})
            sec.add_membership(S, user["id"], unit, role)
            self.ids[name] = user["id"]
            setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))


@pytest.fixture
def crm(rt):
    rt.apps.install_app(S, "crm")
    return rt, Org(rt)


def expense(rt, actor, amount, **values):
    return rt.records.create(actor, "expense", {"title": "Customer visit", "amount": amount, "category": "travel",
                                                "incurred_on": TODAY.isoformat(), **values})


def status(rt, object_name, record):
    return rt.records.get(S, object_name, record["id"])["status"]


def test_the_crm_installs_its_three_approval_processes(crm):
    rt, _ = crm
    catalog = rt.catalog()
    found = {(name, a.api_name, a.kind) for name in ("expense", "opportunity", "contract")
             for a in catalog.object(name).automations_of("approval_process")}
    assert found == {("expense", "expense_approval", "approval_process"), ("opportunity", "discount_approval", "approval_process"),
                     ("contract", "order_approval", "approval_process")}
    expense_def = catalog.object("expense")
    assert [v["api_name"] for v in expense_def.field("category").options["values"]] == ["travel", "meals", "lodging", "other"]
    assert expense_def.field("status").default == "draft"
    assert {"read", "create", "update", "delete"} == set(next(
        g for g in rt.security.role(S, "crm_sales_rep")["objects"] if g["object"] == "expense")["actions"])


def test_a_small_claim_needs_the_manager_a_large_one_finance_too(crm):
    rt, org = crm
    small = expense(rt, org.ann, "300.00")
    assert small["status"] == "draft"
    request = rt.approvals.submit(org.ann, "expense", small["id"], "Taxi to the customer")
    assert (request.process, request.step_labels, request.approvers) == ("expense_approval", ("Manager",), (org.ids["max"],))
    assert status(rt, "expense", small) == "submitted"
    with pytest.raises(RecordLocked):
        rt.records.update(org.ann, "expense", small["id"], {"amount": "3000.00"})
    assert rt.approvals.approve(org.max, request.id, "OK").status == "approved"
    assert status(rt, "expense", small) == "approved"

    large = expense(rt, org.ann, "8000.00", category="lodging")
    request = rt.approvals.submit(org.ann, "expense", large["id"])
    assert request.step_labels == ("Manager", "Finance")
    with pytest.raises(Forbidden):
        rt.approvals.approve(org.fay, request.id)
    assert rt.approvals.approve(org.max, request.id).approvers == (org.ids["fay"],), "finance sits at the group, above the team"
    assert rt.approvals.reject(org.fay, request.id, "Hotel above the travel policy").status == "rejected"
    assert status(rt, "expense", large) == "rejected"
    assert rt.approvals.request(org.ann, request.id).actions[-1].comment == "Hotel above the travel policy"

    again = rt.approvals.submit(org.ann, "expense", large["id"])
    assert rt.approvals.recall(org.ann, again.id).status == "recalled"
    assert status(rt, "expense", large) == "draft"
    nothing = expense(rt, org.ann, "0.00")
    with pytest.raises(NoProcess):
        rt.approvals.submit(org.ann, "expense", nothing["id"])


def test_a_managers_own_claim_needs_a_manager_above(crm):
    rt, org = crm
    claim = expense(rt, org.max, "120.00")
    with pytest.raises(NoApprover):
        rt.approvals.submit(org.max, "expense", claim["id"])
    assert status(rt, "expense", claim) == "draft"


def test_large_discounts_and_orders_need_approval(crm):
    rt, org = crm
    customer = rt.records.create(org.ann, "account", {"name": "Shaanxi Blower Group"})
    deal = rt.records.create(org.ann, "opportunity", {"name": "Compressors", "account": customer["id"], "close_date": LATER,
                                                      "amount": "90000.00", "discount": "20"})
    request = rt.approvals.submit(org.ann, "opportunity", deal["id"], "Competitive bid")
    assert (request.process, request.approvers) == ("discount_approval", (org.ids["max"],))
    with pytest.raises(RecordLocked):
        rt.records.update(org.ann, "opportunity", deal["id"], {"discount": "30"})
    rt.approvals.approve(org.max, request.id)
    assert rt.records.get(S, "opportunity", deal["id"])["discount_approved"] is True
    modest = rt.records.create(org.ann, "opportunity", {"name": "Spare parts", "account": customer["id"], "close_date": LATER,
                                                        "discount": "10"})
    with pytest.raises(NoProcess):
        rt.approvals.submit(org.ann, "opportunity", modest["id"])

    order = rt.records.create(org.ann, "contract", {"account": customer["id"], "amount": "2500000.00"})
    request = rt.approvals.submit(org.ann, "contract", order["id"])
    assert (request.process, request.step_labels) == ("order_approval", ("Sales manager", "Finance"))
    assert status(rt, "contract", order) == "in_review"
    rt.approvals.approve(org.max, request.id)
    rt.approvals.approve(org.fay, request.id)
    assert status(rt, "contract", order) == "approved"
    small_order = rt.records.create(org.ann, "contract", {"account": customer["id"], "amount": "5000.00"})
    with pytest.raises(NoProcess):
        rt.approvals.submit(org.ann, "contract", small_order["id"])


def without_approvals(manifest: dict) -> dict:
    """The 1.0.0 manifest: 1.1.0 without the expense claims, the finance role and the approvals."""
    old = {**manifest, "version": "1.0.0"}
    old.pop("automations")
    old["objects"] = [o for o in manifest["objects"] if o["api_name"] != "expense"]
    for obj in old["objects"]:
        obj["fields"] = [f for f in obj["fields"] if f["api_name"] != "discount_approved"]
        for field in obj["fields"]:
            if obj["api_name"] == "contract" and field["api_name"] == "status":
                field["options"]["values"] = [v for v in field["options"]["values"] if v["api_name"] != "approved"]
    old["validation_rules"] = [r for r in manifest["validation_rules"] if r["object"] != "expense"]
    old["roles"] = [{**role, **({"objects": [g for g in role["objects"] if g["object"] != "expense"]} if "objects" in role else {}),
                     **({"fields": [g for g in role["fields"] if g["object"] not in ("expense",) and g["field"] != "discount_approved"]}
                        if "fields" in role else {})}
                    for role in manifest["roles"] if role["name"] != "crm_finance"]
    for role in old["roles"]:
        if role.get("fields") == []:
            role.pop("fields")
    return old


def test_an_installed_crm_upgrades_to_the_approvals(rt, tmp_path):
    current = yaml.safe_load((APPS / "crm" / "manifest.yaml").read_text())
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(yaml.safe_dump(without_approvals(current), sort_keys=False))
    rt.apps.install_app(S, str(folder))
    assert "expense" not in rt.catalog().objects
    assert rt.catalog().object("contract").automations == ()

    upgraded = rt.apps.upgrade_app(S, "crm")
    assert upgraded["installed_version"] == "1.1.0"
    catalog = rt.catalog()
    assert [a.api_name for a in catalog.object("expense").automations] == ["expense_approval"]
    assert [a.api_name for a in catalog.object("contract").automations] == ["order_approval"]
    assert rt.security.role(S, "crm_finance")["label"] == "Finance"
    org = Org(rt)
    claim = expense(rt, org.ann, "6000.00")
    assert rt.approvals.submit(org.ann, "expense", claim["id"]).step_labels == ("Manager", "Finance")
