"""Reminders (automations of kind ``reminder``) on the CRM app, on SQLite and PostgreSQL, with a
manual clock: visit cycles per account grade, stage overdue alerts, overdue payment plans and task
due reminders, each delivered to the owner's inbox once per occasion, also after a restart; the
hourly job; settings refused at their paths; a scan's statement count independent of the data."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.definitions import thaw
from lowcode.metadata.errors import InUse, InvalidDefinition, NotFound
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.reading import Selection, Window
from sqlalchemy import event

APPS = Path(__file__).resolve().parents[2] / "apps"
START = datetime(2030, 1, 10, 9, 0, tzinfo=timezone.utc)
"""Thursday 10 January 2030, 09:00 UTC: where each test's clock starts."""

VISIT_CYCLE = {"api_name": "visit_cycle", "kind": "reminder", "label": "Visit due", "settings": {
    "type": "visit_cycle", "grade_field": "grade", "cycle_days": {"a": 7, "b": 14, "c": 30, "d": 60},
    "activity_object": "activity", "activity_field": "account", "activity_date_field": "occurred_at",
    "activity_filter": {"business_type": {"eq": "visit"}}}}
STAGE_OVERDUE = {"api_name": "stage_overdue", "kind": "reminder", "label": "Overdue in its stage",
                 "settings": {"type": "stage_overdue"}}
PAYMENT_OVERDUE = {"api_name": "payment_overdue", "kind": "reminder", "label": "Payment overdue", "settings": {
    "type": "date_due", "date_field": "due_date", "days_before": -1, "filter": {"outstanding": {"gt": 0}}}}
TASK_DUE = {"api_name": "task_due", "kind": "reminder", "label": "Task due tomorrow", "settings": {
    "type": "date_due", "date_field": "due_date", "days_before": 1, "filter": {"status": {"ne": "completed"}}}}
CRM_REMINDERS = {"account": VISIT_CYCLE, "opportunity": STAGE_OVERDUE, "payment_plan": PAYMENT_OVERDUE, "task": TASK_DUE}


@pytest.fixture
def crm(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS, clock=ManualClock(START)).install()
    runtime.apps.install_app(S, "crm")
    yield runtime
    runtime.close()


@pytest.fixture
def rt(crm):
    """The CRM without its reminders, which each test puts back as it needs them."""
    for name, reminder in CRM_REMINDERS.items():
        crm.metadata.delete_automation(S, name, reminder["api_name"])
    return crm


def test_the_crm_ships_these_reminders_scanned_hourly_until_the_last_one_goes(crm):
    shipped = {name: crm.catalog().object(name).automations_of("reminder") for name in CRM_REMINDERS}
    assert {name: [(a.api_name, a.label, dict(thaw(a.settings))) for a in found] for name, found in shipped.items()} == {
        name: [(r["api_name"], r["label"], r["settings"])] for name, r in CRM_REMINDERS.items()}
    assert crm.jobs.schedules.get("reminders.scan")["interval_seconds"] == 3600
    for name, reminder in list(CRM_REMINDERS.items())[:-1]:
        crm.metadata.delete_automation(S, name, reminder["api_name"])
        assert crm.jobs.schedules.get("reminders.scan")["active"]
    crm.metadata.delete_automation(S, "task", TASK_DUE["api_name"])
    with pytest.raises(NotFound):
        crm.jobs.schedules.get("reminders.scan")


def user(rt, name):
    made = rt.security.create_user(S, {"username": name})
    return rt.security.authenticate(rt.security.issue_token(S, "tests", user_id=made["id"])["token"])


@pytest.fixture
def ann(rt):
    return user(rt, "ann")


def remind(rt, *objects):
    for name in objects:
        rt.metadata.create_automation(S, name, CRM_REMINDERS[name])


def at(rt, instant, write):
    """Do ``write`` with the clock standing at ``instant``, then put the clock back."""
    now = rt.clock.now()
    rt.clock.set(instant)
    try:
        return write()
    finally:
        rt.clock.set(now)


def account(rt, owner, grade="a", name="Shaanxi Blower"):
    return rt.records.create(S, "account", {"name": name, "grade": grade, "owner_id": owner.id})


def activity(rt, account_record, instant, kind="visit"):
    return rt.records.create(S, "activity", {"subject": "Review", "account": account_record["id"], "business_type": kind,
                                             "occurred_at": instant.isoformat()})


def inbox(rt, actor):
    return [(n.kind, n.record_id, n.title) for n in rt.notifications.inbox(actor).notifications]


def days(n, seconds=0):
    return START + timedelta(days=n, seconds=seconds)


def midnight(n):
    """The start of the UTC day ``n`` days after START's day."""
    return days(n).replace(hour=0)


def problems(caught):
    return {(e.code, e.field) for e in caught.value.errors}


# -- visit cycles -------------------------------------------------------------------------------------

def test_a_grade_a_account_is_due_seven_days_after_its_last_visit_once_even_after_a_restart(rt, ann, database_url):
    remind(rt, "account")
    customer = account(rt, ann)
    activity(rt, customer, START)
    at(rt, days(5), lambda: activity(rt, customer, days(5), kind="call"))

    rt.clock.set(days(6))
    assert rt.reminders.scan() == 0
    rt.clock.set(midnight(7) - timedelta(seconds=1))
    assert rt.reminders.scan() == 0, "a call is no visit, and the visit is due only on the 7th day"
    rt.clock.set(midnight(7))
    assert rt.reminders.scan() == 1
    assert rt.reminders.scan() == 0
    rt.clock.set(days(8))
    assert rt.reminders.scan() == 0

    restarted = Runtime.connect(database_url, apps_root=APPS, clock=ManualClock(days(9))).install()
    try:
        assert restarted.reminders.scan() == 0
    finally:
        restarted.close()
    [notification] = rt.notifications.inbox(ann).notifications
    assert (notification.kind, notification.object_api_name, notification.record_id, notification.title) == (
        "reminder.visit_cycle", "account", customer["id"], "Visit due")
    assert "visited every 7 days" in notification.body and "due since 2030-01-17" in notification.body

    at(rt, days(9), lambda: activity(rt, customer, days(9)))
    rt.clock.set(days(16) - timedelta(hours=10))
    assert rt.reminders.scan() == 0, "the new visit moved the due date to the 16th day"
    rt.clock.set(days(16))
    assert rt.reminders.scan() == 1
    assert rt.notifications.unread_count(ann) == 2


def test_the_grade_decides_the_cycle_and_a_grade_change_moves_the_due_date(rt, ann):
    remind(rt, "account")
    graded_b = account(rt, ann, grade="b", name="Graded B")
    ungraded = rt.records.create(S, "account", {"name": "No grade", "owner_id": ann.id})
    for record in (graded_b, ungraded):
        activity(rt, record, START)

    rt.clock.set(days(8))
    assert rt.reminders.scan() == 0, "a grade B account is visited every 14 days"
    rt.records.update(S, "account", graded_b["id"], {"grade": "a"})
    assert rt.reminders.scan() == 1, "as a grade A account it has been due since the 7th day"
    rt.records.update(S, "account", graded_b["id"], {"grade": "d"})
    rt.clock.set(days(59))
    assert rt.reminders.scan() == 0
    rt.clock.set(days(60))
    assert rt.reminders.scan() == 1
    assert inbox(rt, ann) == [("reminder.visit_cycle", graded_b["id"], "Visit due")] * 2, "an account without a grade has no cycle"


def test_never_visited_accounts_count_from_their_creation_and_only_past_live_visits_count(rt, ann):
    remind(rt, "account")
    never = account(rt, ann, grade="c", name="Never visited")
    planned = account(rt, ann, grade="c", name="Visit planned")
    activity(rt, planned, days(45))
    forgotten = account(rt, ann, grade="c", name="Visit deleted")
    at(rt, days(20), lambda: rt.records.delete(S, "activity", activity(rt, forgotten, days(20))["id"]))
    rt.records.create(S, "account", {"name": "Nobody's", "grade": "c"})
    left = user(rt, "left")
    gone = account(rt, left, grade="c", name="Owner deactivated")
    rt.records.update(S, "user", left.id, {"active": False})

    rt.clock.set(days(29))
    assert rt.reminders.scan() == 0
    rt.clock.set(midnight(30))
    assert rt.reminders.scan() == 3
    assert {n[1] for n in inbox(rt, ann)} == {never["id"], planned["id"], forgotten["id"]}
    assert rt.notifications.unread_count(left) == 0 and gone["owner_id"] == left.id


# -- stage overdue --------------------------------------------------------------------------------------

def test_an_opportunity_overstaying_its_stage_alerts_once_per_stage_entry(rt, ann):
    remind(rt, "opportunity")
    customer = account(rt, ann)
    deal = rt.records.create(S, "opportunity", {"name": "Compressor line", "account": customer["id"], "owner_id": ann.id,
                                                "amount": "100000", "close_date": days(120).date().isoformat()})
    assert deal["stage"] == "first_contact"

    rt.clock.set(days(14, seconds=-1))
    assert rt.reminders.scan() == 0
    rt.clock.set(days(14))
    assert rt.reminders.scan() == 1, "first contact is expected to take 14 days"
    assert rt.reminders.scan() == 0
    due_in_stage = rt.records.read_page(S, "opportunity", Window(), Selection(fields=["id"]), stage_due_within=0, now=rt.clock.now())
    assert [r["id"] for r in due_in_stage.records] == [deal["id"]], "the alert agrees with the due-in-stage query"

    at(rt, days(15), lambda: rt.records.update(S, "opportunity", deal["id"], {"stage": "needs_confirmed"}))
    rt.clock.set(days(15 + 21, seconds=-1))
    assert rt.reminders.scan() == 0
    rt.clock.set(days(15 + 21))
    assert rt.reminders.scan() == 1, "needs confirmed is expected to take 21 days"

    at(rt, days(40), lambda: rt.records.update(S, "opportunity", deal["id"], {"stage": "first_contact"}))
    rt.clock.set(days(54))
    assert rt.reminders.scan() == 1, "entering first contact again is a new entry"
    at(rt, days(55), lambda: rt.records.update(S, "opportunity", deal["id"], {"stage": "won"}))
    rt.clock.set(days(400))
    assert rt.reminders.scan() == 0, "a closed stage is never overdue"
    bodies = [n.body for n in rt.notifications.inbox(ann).notifications]
    assert len(bodies) == 3
    assert bodies[1] == "In the stage 'Needs confirmed' since 2030-01-25; it is expected to take 21 days, until 2030-02-15."


# -- dates coming due ------------------------------------------------------------------------------------

def plan(rt, owner, due, amount="100", paid=None):
    customer = account(rt, owner, name=f"Customer {due}-{amount}-{paid}")
    contract = rt.records.create(S, "contract", {"name": "Supply", "account": customer["id"], "amount": "1000", "owner_id": owner.id})
    made = rt.records.create(S, "payment_plan", {"contract": contract["id"], "due_date": due, "amount": amount, "owner_id": owner.id})
    if paid is not None:
        rt.records.create(S, "payment", {"payment_plan": made["id"], "amount": paid, "received_on": "2030-01-12"})
    return made


def test_an_overdue_payment_plan_with_an_outstanding_amount_alerts_once_per_due_date(rt, ann):
    remind(rt, "payment_plan")
    unpaid = plan(rt, ann, "2030-01-15")
    partly = plan(rt, ann, "2030-01-15", paid="40")
    settled = plan(rt, ann, "2030-01-15", paid="100")
    assert rt.records.get(S, "payment_plan", settled["id"])["outstanding"] == 0

    rt.clock.set(midnight(6) - timedelta(seconds=1))
    assert rt.reminders.scan() == 0, "due on the 15th: not overdue before the 16th"
    rt.clock.set(midnight(6))
    assert rt.reminders.scan() == 2
    assert rt.reminders.scan() == 0
    assert sorted(n[1] for n in inbox(rt, ann)) == sorted([unpaid["id"], partly["id"]])

    rt.records.update(S, "payment_plan", unpaid["id"], {"due_date": "2030-01-20"})
    rt.clock.set(midnight(11))
    assert rt.reminders.scan() == 1, "a new due date is a new occasion"
    rt.records.create(S, "payment", {"payment_plan": partly["id"], "amount": "60", "received_on": "2030-01-21"})
    rt.clock.set(days(100))
    assert rt.reminders.scan() == 0
    [latest, *_] = rt.notifications.inbox(ann).notifications
    assert (latest.kind, latest.title, latest.body) == ("reminder.date_due", "Payment overdue", "Due date: 2030-01-20.")


def test_a_task_is_reminded_the_day_before_it_is_due_unless_completed(rt, ann):
    remind(rt, "task")
    open_task = rt.records.create(S, "task", {"subject": "Send quote", "due_date": "2030-01-20", "owner_id": ann.id})
    rt.records.create(S, "task", {"subject": "Done", "due_date": "2030-01-20", "status": "completed", "owner_id": ann.id})
    rt.records.create(S, "task", {"subject": "Someday", "owner_id": ann.id})

    rt.clock.set(midnight(9) - timedelta(seconds=1))
    assert rt.reminders.scan() == 0
    rt.clock.set(midnight(9))
    assert rt.reminders.scan() == 1
    rt.clock.set(days(30))
    assert rt.reminders.scan() == 0
    assert inbox(rt, ann) == [("reminder.date_due", open_task["id"], "Task due tomorrow")]


def test_a_reminder_may_notify_the_user_a_lookup_field_names_instead_of_the_owner(rt, ann):
    bob = user(rt, "bob")
    rt.metadata.create_field(S, "task", {"api_name": "assignee", "label": "Assignee", "type": "lookup", "options": {"target": "user"}})
    rt.metadata.create_automation(S, "task", {**TASK_DUE, "settings": {**TASK_DUE["settings"], "notify": "assignee"}})
    assigned = rt.records.create(S, "task", {"subject": "Call back", "due_date": "2030-01-11", "owner_id": ann.id, "assignee": bob.id})
    rt.records.create(S, "task", {"subject": "Unassigned", "due_date": "2030-01-11", "owner_id": ann.id})

    assert rt.reminders.scan() == 1
    assert (inbox(rt, bob), inbox(rt, ann)) == ([("reminder.date_due", assigned["id"], "Task due tomorrow")], [])
    with pytest.raises(InUse):
        rt.metadata.delete_field(S, "task", "assignee")


# -- the hourly job --------------------------------------------------------------------------------------

def test_the_hourly_job_scans_and_a_second_run_delivers_nothing_new(rt, ann):
    with pytest.raises(NotFound):
        rt.jobs.schedules.get("reminders.scan")
    remind(rt, "task")
    assert rt.jobs.schedules.get("reminders.scan")["interval_seconds"] == 3600
    rt.records.create(S, "task", {"subject": "Send quote", "due_date": "2030-01-11", "owner_id": ann.id})

    assert len(rt.jobs.tick()) == 1
    assert rt.jobs.run_due() == 1
    rt.clock.advance(hours=1)
    assert len(rt.jobs.tick()) == 1
    assert rt.jobs.run_due() == 1
    assert [(j.kind, j.status) for j in rt.jobs.list(S)] == [("reminders.scan", "succeeded")] * 2
    assert rt.notifications.unread_count(ann) == 1
    assert rt.jobs.tick() == []


# -- settings ----------------------------------------------------------------------------------------------

def test_bad_settings_are_refused_with_each_problem_at_its_path_and_nothing_is_saved(rt):
    cases = [
        ("account", {"type": "visit_cycle", "grade_field": "grade", "cycle_days": {"a": 0, "z": 5, "b": True},
                     "activity_object": "activity", "activity_field": "opportunity", "activity_date_field": "subject",
                     "activity_filter": {"colour": {"eq": 1}}, "notify": "nobody", "cycle": 7, "title": ""},
         {("OUT_OF_RANGE", "settings.cycle_days.a"), ("UNKNOWN_VALUE", "settings.cycle_days.z"), ("OUT_OF_RANGE", "settings.cycle_days.b"),
          ("WRONG_TARGET", "settings.activity_field"), ("WRONG_FIELD_TYPE", "settings.activity_date_field"),
          ("UNKNOWN_FIELD", "settings.activity_filter.colour"), ("INVALID_VALUE", "settings.notify"),
          ("UNKNOWN_SETTING", "settings.cycle"), ("INVALID_VALUE", "settings.title")}),
        ("account", {"type": "visit_cycle", "grade_field": "name", "activity_object": "visit_log"},
         {("WRONG_FIELD_TYPE", "settings.grade_field"), ("REQUIRED", "settings.cycle_days"), ("UNKNOWN_OBJECT", "settings.activity_object")}),
        ("account", {"type": "stage_overdue", "days_before": -1},
         {("NO_TIMED_STAGES", "settings.type"), ("OUT_OF_RANGE", "settings.days_before")}),
        ("task", {"type": "date_due", "date_field": "subject", "days_before": "1", "filter": {"status": {"between": 1}}},
         {("WRONG_FIELD_TYPE", "settings.date_field"), ("OUT_OF_RANGE", "settings.days_before"),
          ("UNSUPPORTED_OPERATOR", "settings.filter.status.between")}),
        ("task", {"type": "date_due"}, {("REQUIRED", "settings.date_field")}),
        ("task", {}, {("REQUIRED", "settings.type")}),
        ("task", {"type": "weekly"}, {("INVALID_VALUE", "settings.type")}),
    ]
    for object_name, settings, expected in cases:
        with pytest.raises(InvalidDefinition) as caught:
            rt.metadata.create_automation(S, object_name, {"api_name": "bad", "kind": "reminder", "label": "Bad", "settings": settings})
        assert problems(caught) == expected, settings
    assert [o.api_name for o in rt.catalog().objects.values() if any(a.kind == "reminder" for a in o.automations)] == []
    with pytest.raises(NotFound):
        rt.jobs.schedules.get("reminders.scan")


def test_the_fields_a_reminder_reads_cannot_be_deleted_under_it(rt):
    remind(rt, "task", "account")
    for object_name, field in (("task", "due_date"), ("task", "status"), ("account", "grade")):
        with pytest.raises(InUse):
            rt.metadata.delete_field(S, object_name, field)
    for object_name, field in (("activity", "account"), ("activity", "occurred_at")):
        with pytest.raises(InUse) as caught:
            rt.metadata.delete_field(S, object_name, field)
        assert "automation 'account.visit_cycle'" in caught.value.message, "the visit cycle of accounts reads it"
    rt.metadata.delete_field(S, "task", "priority")
    assert rt.catalog().object("task").field("priority") is None


# -- cost ---------------------------------------------------------------------------------------------------

def test_a_scan_runs_as_many_statements_for_200_due_accounts_as_for_10(rt, ann):
    remind(rt, *CRM_REMINDERS)
    statements = []
    event.listen(rt.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def scan_counting() -> tuple[int, int]:
        statements.clear()
        delivered = rt.reminders.scan()
        return delivered, len(statements)

    rt.records.bulk_create(S, "account", [{"name": f"Small {i}", "grade": "a", "owner_id": ann.id} for i in range(10)])
    rt.clock.set(days(7))
    small = scan_counting()
    at(rt, days(7), lambda: rt.records.bulk_create(
        S, "account", [{"name": f"Large {i}", "grade": "a", "owner_id": ann.id} for i in range(200)]))
    rt.clock.set(days(14))
    large = scan_counting()
    assert (small[0], large[0]) == (10, 200)
    assert small[1] == large[1] <= 12
    assert rt.notifications.unread_count(ann) == 210
