"""Approval processes through their service, on SQLite and PostgreSQL: settings checked at their
paths when saved, requests submitted under the process whose entry criteria hold, decided step by
step by the approvers the org tree gives, outcomes written, the record locked while pending, and
approvers racing on one step with exactly one winner."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
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
from lowcode.runtime.approvals import AlreadyPending, NoApprover, NoProcess, RecordLocked
from lowcode.runtime.approvals.store import actions, approvers, requests
from sqlalchemy import func, select

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"
CLAIM = {"api_name": "claim", "label": "Claim", "plural_api_name": "claims", "plural_label": "Claims", "fields": [
    {"api_name": "title", "label": "Title", "type": "text"},
    {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 12, "scale": 2}},
    {"api_name": "status", "label": "Status", "type": "picklist", "default": "draft", "options": {"restricted": True, "values": [
        {"api_name": name, "label": name.title()} for name in ("draft", "submitted", "approved", "rejected")]}},
    {"api_name": "approved_by_finance", "label": "Approved by finance", "type": "boolean"},
]}
EXPENSES = {"entry": "record.amount > 0.0",
            "steps": [{"label": "Manager", "approver": "manager", "role": "manager"},
                      {"label": "Finance", "approver": "role", "role": "finance", "when": "record.amount > 5000.0"}],
            "on_submit": {"status": "submitted"}, "on_approve": {"status": "approved"},
            "on_reject": {"status": "rejected"}, "on_recall": {"status": "draft"}}


class Org:
    """Company > East > Shanghai, and West. ann and bob sell in Shanghai (no manager there), cat
    manages East, fin does finance at the Company, dan sells in West, gus manages West, boss is an
    administrator."""

    def __init__(self, rt):
        sec = rt.security
        self.company = sec.create_unit(S, "Company")["id"]
        self.east = sec.create_unit(S, "East", self.company)["id"]
        self.shanghai = sec.create_unit(S, "Shanghai", self.east)["id"]
        self.west = sec.create_unit(S, "West", self.company)["id"]
        for role in ("sales", "manager", "finance"):
            sec.create_role(S, role, role.title())
            sec.set_object_grant(S, role, "claim", ["read", "create", "update", "delete", "transfer"], "unit_and_below", "unit_and_below")
        sec.create_role(S, "boss", "Boss", administrator=True)
        self.ids = {}
        for name, unit, role in (("ann", self.shanghai, "sales"), ("bob", self.shanghai, "sales"), ("cat", self.east, "manager"),
                                 ("fin", self.company, "finance"), ("dan", self.west, "sales"), ("gus", self.west, "manager"),
                                 ("boss", self.company, "boss")):
            self.add(rt, name, unit, role)

    def add(self, rt, name, unit, role):
        sec = rt.security
        user = sec.create_user(S, {"username": name})
        sec.add_membership(S, user["id"], unit, role)
        self.ids[name] = user["id"]
        setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))
        return getattr(self, name)


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url).install()
    runtime.metadata.create_objects(S, [CLAIM])
    yield runtime
    runtime.close()


@pytest.fixture
def org(rt):
    return Org(rt)


def process(rt, api_name="expenses", settings=None, **extra):
    return rt.metadata.create_automation(S, "claim", {"api_name": api_name, "kind": "approval_process", "label": api_name.title(),
                                                      "settings": EXPENSES if settings is None else settings, **extra})


def claim(rt, actor, amount="120.00", title="Taxi"):
    return rt.records.create(actor, "claim", {"title": title, "amount": amount})


def problems(caught):
    return [(e.code, e.field) for e in caught.value.errors]


def count(rt, table, *where):
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def inbox(rt, actor):
    return [(n.kind, n.record_id) for n in rt.notifications.inbox(actor).notifications]


# -- settings ------------------------------------------------------------------------------------
def test_bad_settings_are_refused_each_at_its_path_and_nothing_is_saved(rt, org):
    bad = {"entry": "record.amount >", "colour": "red",
           "steps": [{"label": "Manager", "approver": "manager", "role": "manager"},
                     {"label": "Finance", "approver": "role", "role": "treasury"},
                     {"approver": "user", "user": UNKNOWN},
                     {"approver": "boss"},
                     {"approver": "user", "user": org.ids["ann"], "role": "sales", "when": "record.nothing > 1"}],
           "on_approve": {"colour": "green", "status": "paid", "owner_id": org.ids["cat"]},
           "on_reject": "rejected", "allow_recall": "yes"}
    with pytest.raises(InvalidDefinition) as caught:
        process(rt, settings=bad)
    assert problems(caught) == [
        ("UNKNOWN_SETTING", "settings.colour"), ("SYNTAX_ERROR", "settings.entry"),
        ("NO_SUCH_ROLE", "settings.steps.1.role"), ("NO_SUCH_USER", "settings.steps.2.user"),
        ("INVALID_VALUE", "settings.steps.3.approver"),
        ("INVALID_VALUE", "settings.steps.4.role"), ("UNKNOWN_FIELD", "settings.steps.4.when"),
        ("FORBIDDEN", "settings.on_approve.owner_id"), ("INVALID_CHOICE", "settings.on_approve.status"),
        ("UNKNOWN_FIELD", "settings.on_approve.colour"),
        ("INVALID_TYPE", "settings.on_reject"), ("INVALID_TYPE", "settings.allow_recall")]
    assert caught.value.errors[2].ctx == {"role": "treasury"}

    with pytest.raises(InvalidDefinition) as caught:
        process(rt, settings={"steps": []})
    assert problems(caught) == [("REQUIRED", "settings.steps")]
    with pytest.raises(InvalidDefinition) as caught:
        process(rt, settings={"steps": [{"label": "", "approver": "manager"}]})
    assert problems(caught) == [("INVALID_VALUE", "settings.steps.0.label"), ("REQUIRED", "settings.steps.0.role")]
    assert rt.catalog().object("claim").automations == ()

    made = process(rt)
    assert (made.kind, made.active, made.position) == ("approval_process", True, 0)
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.update_automation(S, "claim", "expenses", {"settings": {**EXPENSES, "entry": "record.amount > > 1"}})
    assert problems(caught) == [("SYNTAX_ERROR", "settings.entry")]
    assert rt.catalog().object("claim").automations[0].settings["entry"] == "record.amount > 0.0"


def test_fields_an_approval_uses_cannot_be_deleted_under_it(rt, org):
    process(rt)
    for used in ("status", "amount"):
        with pytest.raises(InUse) as caught:
            rt.metadata.delete_field(S, "claim", used)
        assert caught.value.ctx["used_by"] == ["automation 'expenses'"]
    rt.metadata.delete_field(S, "claim", "approved_by_finance")


# -- the flow ----------------------------------------------------------------------------------
def test_a_claim_goes_through_both_steps_and_is_approved_with_its_history(rt, org):
    process(rt)
    record = claim(rt, org.ann, "8000.00")
    submitted = rt.approvals.submit(org.ann, "claim", record["id"], "Trip to the Xi'an fair")
    assert (submitted.status, submitted.step, submitted.step_label, submitted.step_labels) == ("pending", 1, "Manager", ("Manager", "Finance"))
    assert (submitted.process, submitted.process_label, submitted.submitted_by) == ("expenses", "Expenses", org.ids["ann"])
    assert submitted.approvers == (org.ids["cat"],)
    assert rt.records.get(S, "claim", record["id"])["status"] == "submitted"
    assert inbox(rt, org.cat) == [("approval.requested", record["id"])]

    at_two = rt.approvals.approve(org.cat, submitted.id, "Fine by me")
    assert (at_two.status, at_two.step, at_two.approvers, at_two.version) == ("pending", 2, (org.ids["fin"],), 2)
    assert rt.records.get(S, "claim", record["id"])["status"] == "submitted"
    assert inbox(rt, org.fin) == [("approval.requested", record["id"])]

    done = rt.approvals.approve(org.fin, submitted.id)
    assert (done.status, done.step, done.approvers, done.decided_at is not None) == ("approved", 2, (), True)
    assert rt.records.get(S, "claim", record["id"])["status"] == "approved"
    history = rt.approvals.request(org.ann, submitted.id).actions
    assert [(a.step, a.actor_id, a.action, a.comment) for a in history] == [
        (0, org.ids["ann"], "submit", "Trip to the Xi'an fair"), (1, org.ids["cat"], "approve", "Fine by me"),
        (2, org.ids["fin"], "approve", None)]
    assert inbox(rt, org.ann) == [("approval.approved", record["id"])]
    assert inbox(rt, org.cat) == [("approval.requested", record["id"])], "each is notified once"

    with pytest.raises(Conflict) as caught:
        rt.approvals.approve(org.fin, submitted.id)
    assert caught.value.ctx["status"] == "approved"


def test_a_rejection_writes_its_values_and_the_record_can_be_submitted_again(rt, org):
    process(rt)
    record = claim(rt, org.ann, "8000.00")
    first = rt.approvals.submit(org.ann, "claim", record["id"])
    with pytest.raises(AlreadyPending) as caught:
        rt.approvals.submit(org.ann, "claim", record["id"])
    assert caught.value.ctx == {"request_id": first.id}
    assert count(rt, requests) == 1

    rejected = rt.approvals.reject(org.cat, first.id, "No receipt attached")
    assert (rejected.status, rejected.step) == ("rejected", 1)
    assert rt.records.get(S, "claim", record["id"])["status"] == "rejected"
    assert [(a.action, a.comment) for a in rt.approvals.request(org.cat, first.id).actions] == [
        ("submit", None), ("reject", "No receipt attached")]
    assert inbox(rt, org.ann) == [("approval.rejected", record["id"])]
    assert inbox(rt, org.fin) == [], "a rejected request never reaches the next step"

    again = rt.approvals.submit(org.ann, "claim", record["id"], "Receipt attached")
    assert (again.status, again.step) == ("pending", 1) and again.id != first.id
    assert [r.id for r in rt.approvals.requests(org.ann, mine=True)] == [again.id, first.id]


def test_entry_criteria_and_step_conditions_decide_the_plan(rt, org):
    process(rt, "large", {**EXPENSES, "entry": "record.amount > 10000.0", "steps": [{"label": "CFO", "approver": "user",
                                                                                    "user": org.ids["fin"]}]}, position=0)
    process(rt, "expenses", position=1)
    small = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann, "300.00")["id"])
    assert (small.process, small.step_labels) == ("expenses", ("Manager",)), "the finance step applies above 5000 only"
    large = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann, "20000.00")["id"])
    assert (large.process, large.step_labels, large.approvers) == ("large", ("CFO",), (org.ids["fin"],))
    named = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann, "20000.00")["id"], process="expenses")
    assert (named.process, named.step_labels) == ("expenses", ("Manager", "Finance"))

    nothing = claim(rt, org.ann, "0.00")
    with pytest.raises(NoProcess) as caught:
        rt.approvals.submit(org.ann, "claim", nothing["id"])
    assert caught.value.code == "NO_PROCESS"
    with pytest.raises(NoProcess) as caught:
        rt.approvals.submit(org.ann, "claim", claim(rt, org.ann, "300.00")["id"], process="large")
    assert caught.value.field == "process"
    with pytest.raises(NoProcess):
        rt.approvals.submit(org.ann, "claim", nothing["id"], process="nothing")
    rt.metadata.update_automation(S, "claim", "expenses", {"active": False})
    with pytest.raises(NoProcess):
        rt.approvals.submit(org.ann, "claim", claim(rt, org.ann, "300.00")["id"])
    assert count(rt, requests) == 3


def test_only_the_submitter_recalls_and_only_while_pending(rt, org):
    process(rt)
    record = claim(rt, org.ann)
    request = rt.approvals.submit(org.ann, "claim", record["id"])
    for someone in (org.cat, org.bob, org.boss):
        with pytest.raises(Forbidden):
            rt.approvals.recall(someone, request.id)
    recalled = rt.approvals.recall(org.ann, request.id, "Wrong amount")
    assert (recalled.status, recalled.approvers) == ("recalled", ())
    assert rt.records.get(S, "claim", record["id"])["status"] == "draft"
    assert [(a.step, a.action, a.comment) for a in recalled.actions] == [(0, "submit", None), (1, "recall", "Wrong amount")]
    assert ("approval.recalled", record["id"]) in inbox(rt, org.cat)
    with pytest.raises(Conflict):
        rt.approvals.recall(org.ann, request.id)
    with pytest.raises(Conflict):
        rt.approvals.approve(org.cat, request.id)
    rt.records.update(org.ann, "claim", record["id"], {"amount": "130.00"})

    rt.metadata.update_automation(S, "claim", "expenses", {"settings": {**EXPENSES, "allow_recall": False}})
    fixed = rt.approvals.submit(org.ann, "claim", record["id"])
    with pytest.raises(Forbidden):
        rt.approvals.recall(org.ann, fixed.id)
    assert rt.approvals.request(org.ann, fixed.id).status == "pending"


# -- the lock ------------------------------------------------------------------------------------
def test_a_pending_record_is_locked_for_everyone_but_the_platform(rt, org):
    process(rt)
    record = claim(rt, org.ann)
    request = rt.approvals.submit(org.ann, "claim", record["id"])
    for actor in (org.ann, org.boss):
        with pytest.raises(RecordLocked) as caught:
            rt.records.update(actor, "claim", record["id"], {"amount": "1.00"})
        assert (caught.value.code, caught.value.ctx["request_id"], caught.value.ctx["action"]) == ("LOCKED", request.id, "update")
        with pytest.raises(RecordLocked):
            rt.records.transfer(actor, "claim", record["id"], org.ids["bob"])
        with pytest.raises(RecordLocked):
            rt.records.delete(actor, "claim", record["id"])
    with pytest.raises(ValidationFailed) as caught:
        rt.records.bulk_update(org.ann, "claim", [{"id": record["id"], "values": {"title": "Bus"}}])
    assert problems(caught) == [("LOCKED", "0")]
    assert rt.records.get(S, "claim", record["id"])["amount"] == Decimal("120.00")
    rt.records.update(S, "claim", record["id"], {"title": "Taxi to the airport"})

    rt.approvals.approve(org.cat, request.id)
    assert rt.records.update(org.ann, "claim", record["id"], {"title": "Taxi"})["title"] == "Taxi"
    rt.records.transfer(org.boss, "claim", record["id"], org.ids["bob"])
    rt.records.delete(org.bob, "claim", record["id"])


def test_submitting_takes_the_right_to_edit_the_record(rt, org):
    process(rt)
    record = claim(rt, org.ann)
    for outsider in (org.dan, org.gus):
        with pytest.raises(NotFound):
            rt.approvals.submit(outsider, "claim", record["id"])
    with pytest.raises(NotFound):
        rt.approvals.submit(org.ann, "claim", UNKNOWN)
    with pytest.raises(NotFound):
        rt.approvals.submit(org.ann, "nothing", record["id"])
    with pytest.raises(Forbidden):
        rt.approvals.submit(S, "claim", record["id"])
    with pytest.raises(ValidationFailed) as caught:
        rt.approvals.submit(org.ann, "claim", record["id"], "x" * 2001)
    assert problems(caught) == [("TOO_LONG", "comment")]
    assert count(rt, requests) == 0


# -- approvers -------------------------------------------------------------------------------------
def test_the_manager_is_found_up_the_tree_and_the_nearest_one_wins(rt, org):
    process(rt, settings={"steps": [{"label": "Manager", "approver": "manager", "role": "manager"}]})
    first = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann)["id"])
    assert first.approvers == (org.ids["cat"],), "Shanghai has no manager: East's manages it"
    org.add(rt, "mia", org.shanghai, "manager")
    second = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann)["id"])
    assert second.approvers == (org.ids["mia"],)
    own = rt.approvals.submit(org.mia, "claim", claim(rt, org.mia)["id"])
    assert own.approvers == (org.ids["cat"],), "a manager's own request goes to the manager above"
    west = rt.approvals.submit(org.dan, "claim", claim(rt, org.dan)["id"])
    assert west.approvers == (org.ids["gus"],)
    assert first.approvers == rt.approvals.request(org.cat, first.id).approvers, "resolved when submitted, kept"
    assert [r.id for r in rt.approvals.requests(org.cat, awaiting_me=True)] == [own.id, first.id]


def test_role_and_user_steps_and_who_may_decide(rt, org):
    process(rt, settings={"steps": [{"label": "Peer", "approver": "role", "role": "sales"},
                                    {"label": "Finance", "approver": "role", "role": "finance"},
                                    {"label": "Gus", "approver": "user", "user": org.ids["gus"]}]})
    request = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann)["id"])
    assert request.approvers == (org.ids["bob"],), "sales in ann's unit, not ann herself, not dan in West"
    for outsider in (org.dan, org.cat, org.fin):
        with pytest.raises(Forbidden):
            rt.approvals.approve(outsider, request.id)
    with pytest.raises(Forbidden):
        rt.approvals.reject(org.ann, request.id)
    assert rt.approvals.approve(org.bob, request.id).approvers == (org.ids["fin"],), "finance sits above, at the Company"
    with pytest.raises(Conflict):
        rt.approvals.approve(org.bob, request.id)
    assert rt.approvals.approve(org.boss, request.id, "Override").approvers == (org.ids["gus"],)
    assert rt.approvals.approve(org.gus, request.id).status == "approved"
    assert [(a.actor_id, a.action) for a in rt.approvals.request(org.ann, request.id).actions][1:] == [
        (org.ids["bob"], "approve"), (org.ids["boss"], "approve"), (org.ids["gus"], "approve")]

    with pytest.raises(NotFound):
        rt.approvals.request(org.dan, request.id)
    with pytest.raises(NotFound):
        rt.approvals.approve(org.bob, UNKNOWN)
    assert rt.approvals.requests(org.dan) == []
    assert [r.id for r in rt.approvals.requests(org.boss, status="approved")] == [request.id]
    with pytest.raises(ValidationFailed) as caught:
        rt.approvals.requests(org.ann, status="done", first=0)
    assert problems(caught) == [("INVALID_VALUE", "status"), ("OUT_OF_RANGE", "first")]


def test_a_step_without_approvers_refuses_the_submission(rt, org):
    process(rt, settings={"steps": [{"label": "Manager", "approver": "manager", "role": "manager"},
                                    {"label": "Peer", "approver": "role", "role": "sales"}]})
    record = claim(rt, org.dan)
    with pytest.raises(NoApprover) as caught:
        rt.approvals.submit(org.dan, "claim", record["id"])
    assert caught.value.ctx == {"step": 2, "step_label": "Peer"}
    assert count(rt, requests) == 0 and rt.records.get(S, "claim", record["id"])["status"] == "draft"
    rt.records.update(org.dan, "claim", record["id"], {"title": "still editable"})


def test_deleting_the_object_forgets_its_requests(rt, org):
    process(rt)
    rt.approvals.submit(org.ann, "claim", claim(rt, org.ann)["id"])
    rt.metadata.delete_objects(S, ["claim"])
    assert (count(rt, requests), count(rt, approvers), count(rt, actions)) == (0, 0, 0)


# -- concurrency (PostgreSQL) ------------------------------------------------------------------------
@pytest.mark.parametrize("decision", ["approve", "mixed"])
def test_approvers_racing_on_one_step_have_exactly_one_winner(postgres_url, decision):
    rt = Runtime.connect(postgres_url).install()
    try:
        rt.metadata.create_objects(S, [CLAIM])
        org = Org(rt)
        racers = [org.add(rt, f"peer{i}", org.shanghai, "sales") for i in range(6)]
        process(rt, settings={"steps": [{"label": "Peer", "approver": "role", "role": "sales"},
                                        {"label": "Manager", "approver": "manager", "role": "manager"}],
                              "on_reject": {"status": "rejected"}})
        request = rt.approvals.submit(org.ann, "claim", claim(rt, org.ann)["id"])
        barrier = threading.Barrier(len(racers))
        outcomes: list[str] = []

        def race(i, actor):
            act = rt.approvals.reject if decision == "mixed" and i % 2 else rt.approvals.approve
            barrier.wait()
            try:
                act(actor, request.id, f"by {i}")
                outcomes.append("won")
            except Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=race, args=(i, actor)) for i, actor in enumerate(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
        final = rt.approvals.request(org.boss, request.id)
        decisions = [a for a in final.actions if a.step == 1 and a.action in ("approve", "reject")]
        assert len(decisions) == 1 and final.version == 2
        if decisions[0].action == "approve":
            assert (final.status, final.step, final.approvers) == ("pending", 2, (org.ids["cat"],))
            assert count(rt, approvers, approvers.c.step == 2) == 1
        else:
            assert (final.status, final.step) == ("rejected", 1)
            assert rt.records.get(S, "claim", final.record_id)["status"] == "rejected"
    finally:
        rt.close()
