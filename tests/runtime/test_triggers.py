"""Record triggers through the metadata and record services, on SQLite and PostgreSQL: each event
fires only for itself, conditions and stage filters gate, notifications reach users, roles, the
owner and the owner's unit once per write (and no one when the write is refused or rolled back),
set_fields changes the record before it is validated, create_task links one task, loops end, bad
settings are refused at their paths, and a won deal is announced to its owner's unit."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.database import WRITE
from lowcode.metadata.errors import InUse, InvalidDefinition, ValidationFailed
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.triggers import MAX_DEPTH

START = datetime(2030, 3, 4, 9, 0, tzinfo=timezone.utc)
UNKNOWN = "00000000-0000-4000-8000-00000000abcd"
PICK = {"values": [{"api_name": "low", "label": "Low"}, {"api_name": "high", "label": "High"}]}
OBJECTS = [
    {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True},
        {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 12, "scale": 2}},
        {"api_name": "discount", "label": "Discount", "type": "integer"},
        {"api_name": "priority", "label": "Priority", "type": "picklist", "options": PICK},
        {"api_name": "note", "label": "Note", "type": "text"}]},
    {"api_name": "task", "label": "Task", "plural_api_name": "tasks", "plural_label": "Tasks", "fields": [
        {"api_name": "subject", "label": "Subject", "type": "text", "required": True},
        {"api_name": "deal", "label": "Deal", "type": "lookup", "options": {"target": "deal"}},
        {"api_name": "parent", "label": "Parent", "type": "lookup", "options": {"target": "task"}},
        {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 12, "scale": 2}},
        {"api_name": "priority", "label": "Priority", "type": "picklist", "options": PICK}]},
]
DEAL_TYPE = {"api_name": "standard", "label": "Standard", "default": True, "stages": [
    {"api_name": "new", "label": "New", "probability": 10}, {"api_name": "quoted", "label": "Quoted", "probability": 50},
    {"api_name": "won", "label": "Won", "probability": 100, "category": "won"},
    {"api_name": "lost", "label": "Lost", "probability": 0, "category": "lost"}]}
WIN_ANNOUNCEMENT = {"events": ["stage_change"], "stage_category": "won", "actions": [
    {"type": "notify", "owner_unit": True, "title": "Won: {record.name}",
     "body": "{user.username} won {record.name} ({record.amount})."}]}


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock(START)).install()
    runtime.metadata.create_objects(S, OBJECTS)
    runtime.metadata.create_business_type(S, "deal", DEAL_TYPE)
    yield runtime
    runtime.close()


class Org:
    """East (with Shanghai below it) and West; ann and bob sell in Shanghai, cat manages East,
    dan sells in West, boss is an administrator in East."""

    def __init__(self, rt):
        sec = rt.security
        self.east = sec.create_unit(S, "East")["id"]
        self.shanghai = sec.create_unit(S, "Shanghai", self.east)["id"]
        self.west = sec.create_unit(S, "West")["id"]
        sec.create_role(S, "sales", "Sales")
        sec.create_role(S, "manager", "Manager")
        sec.create_role(S, "boss", "Boss", administrator=True)
        for role in ("sales", "manager"):
            sec.set_object_grant(S, role, "deal", ["read", "create", "update"], "all", "all")
        for name, unit, role in (("ann", self.shanghai, "sales"), ("bob", self.shanghai, "sales"), ("cat", self.east, "manager"),
                                 ("dan", self.west, "sales"), ("boss", self.east, "boss")):
            user = sec.create_user(S, {"username": name})
            sec.add_membership(S, user["id"], unit, role)
            setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))
        self.everyone = (self.ann, self.bob, self.cat, self.dan, self.boss)


@pytest.fixture
def org(rt):
    return Org(rt)


def trigger(rt, api_name, settings, obj="deal"):
    return rt.metadata.create_automation(S, obj, {"api_name": api_name, "kind": "trigger", "label": api_name.replace("_", " "),
                                                  "settings": settings})


def notify(*users, **options):
    return {"type": "notify", "users": [u.id for u in users], "title": "{record.name}", **options}


def inbox(rt, actor):
    """The titles of the actor's notifications, sorted (those of one instant have no order)."""
    return sorted(n.title for n in rt.notifications.inbox(actor).notifications)


def inboxes(rt, org):
    return {user.name: inbox(rt, user) for user in org.everyone if inbox(rt, user)}


def deal(rt, actor, name="Acme", **values):
    return rt.records.create(actor, "deal", {"name": name, **values})


def problems(error):
    return [(e.code, e.field) for e in error.value.errors]


def tasks(rt):
    return sorted((t["subject"], t["deal"]) for t in rt.records.every(S, "task"))


# -- events, conditions, stages -------------------------------------------------------------------
def test_each_event_fires_only_for_its_own_writes(rt, org):
    trigger(rt, "on_create", {"events": ["create"], "actions": [notify(org.ann, title="created {record.name} by {user.username}")]})
    trigger(rt, "on_update", {"events": ["update"], "actions": [notify(org.ann, title="updated {record.name} ({object.label})")]})
    trigger(rt, "on_stage", {"events": ["stage_change"], "actions": [notify(org.ann, title="moved {record.name} to {record.stage}")]})

    made = deal(rt, org.boss, "Acme")
    assert inbox(rt, org.ann) == ["created Acme by boss"]
    rt.records.update(org.boss, "deal", made["id"], {"note": "called"})
    assert inbox(rt, org.ann) == ["created Acme by boss", "updated Acme (Deal)"]
    rt.records.update(org.boss, "deal", made["id"], {"note": "called"})
    assert len(inbox(rt, org.ann)) == 2, "a write that changes nothing fires nothing"
    rt.records.update(org.boss, "deal", made["id"], {"stage": "quoted"})
    assert inbox(rt, org.ann) == ["created Acme by boss", "moved Acme to quoted", "updated Acme (Deal)", "updated Acme (Deal)"]
    rt.records.create(org.boss, "deal", {"name": "Direct", "stage": "quoted"})
    assert inbox(rt, org.ann) == ["created Acme by boss", "created Direct by boss", "moved Acme to quoted", "updated Acme (Deal)",
                                  "updated Acme (Deal)"], "a record created in a stage is a create, not a move"
    assert inboxes(rt, org).keys() == {"ann"}


def test_conditions_and_stage_filters_gate_the_trigger(rt, org):
    trigger(rt, "big_quotes", {"events": ["create", "update"], "condition": "record.amount > 1000.0 && old == null",
                               "actions": [notify(org.ann, title="big {record.name}")]})
    trigger(rt, "quoted", {"events": ["stage_change"], "stage": "quoted", "actions": [notify(org.bob, title="quoted {record.name}")]})
    trigger(rt, "lost", {"events": ["stage_change"], "stage_category": "lost", "actions": [notify(org.cat, title="lost {record.name}")]})
    trigger(rt, "broken", {"events": ["create"], "condition": "record.note.startsWith('x')", "actions": [notify(org.dan)]})

    small = deal(rt, org.boss, "Small", amount="10")
    big = deal(rt, org.boss, "Big", amount="5000")
    rt.records.update(org.boss, "deal", small["id"], {"amount": "9000"})
    assert inboxes(rt, org) == {"ann": ["big Big"]}, "the condition holds for the big deal's create only; a failing one never fires"

    rt.records.update(org.boss, "deal", big["id"], {"stage": "quoted"})
    rt.records.update(org.boss, "deal", small["id"], {"stage": "won"})
    rt.records.update(org.boss, "deal", big["id"], {"stage": "lost"})
    assert inboxes(rt, org) == {"ann": ["big Big"], "bob": ["quoted Big"], "cat": ["lost Big"]}


# -- notify ---------------------------------------------------------------------------------------
def test_notify_reaches_users_roles_the_owner_and_the_owners_unit_once_per_write(rt, org):
    trigger(rt, "everyone", {"events": ["create", "update"], "actions": [
        {"type": "notify", "users": [org.dan.id, org.ann.id], "roles": ["manager"], "owner": True, "owner_unit": True,
         "title": "{record.name} for {user.username}", "body": "amount {record.amount}, note {{{record.note}}}"}]})

    made = deal(rt, org.boss, "Acme", amount="12.5", owner_id=org.ann.id)
    assert inboxes(rt, org) == {name: ["Acme for boss"] for name in ("ann", "bob", "cat", "dan")}
    note = rt.notifications.inbox(org.bob).notifications[0]
    assert (note.kind, note.body, note.object_api_name, note.record_id) == ("trigger", "amount 12.50, note {}", "deal", made["id"])

    rt.records.update(org.ann, "deal", made["id"], {"note": "x"})
    assert inboxes(rt, org) == {name: ["Acme for ann", "Acme for boss"] for name in ("ann", "bob", "cat", "dan")}

    rt.security.delete_user(S, org.dan.id)
    rt.records.update(org.ann, "deal", made["id"], {"note": "y"})
    assert [len(inbox(rt, u)) for u in (org.ann, org.bob, org.cat)] == [3, 3, 3], "a deleted recipient is left out, not an error"


def test_a_refused_or_rolled_back_write_notifies_no_one(rt, org):
    trigger(rt, "tell_ann", {"events": ["create", "update"], "actions": [notify(org.ann)]})
    rt.metadata.create_validation_rule(S, "deal", {"api_name": "small_discount", "expression": "record.discount == null || record.discount <= 50",
                                                   "message": "The discount may be at most 50.", "field": "discount"})
    with pytest.raises(ValidationFailed) as error:
        deal(rt, org.boss, "Refused", discount=80)
    assert problems(error) == [("RULE_FAILED", "discount")]

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        with rt.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            rt.records.joined(conn).create(org.boss, "deal", {"name": "Rolled back"})
            raise Undone
    assert inboxes(rt, org) == {}
    assert rt.records.every(S, "deal") == []
    deal(rt, org.boss, "Kept")
    assert inboxes(rt, org) == {"ann": ["Kept"]}


# -- set_fields -----------------------------------------------------------------------------------
def test_set_fields_changes_the_record_before_it_is_validated_and_written(rt, org):
    rt.metadata.create_validation_rule(S, "deal", {"api_name": "small_discount", "expression": "record.discount == null || record.discount <= 50",
                                                   "message": "The discount may be at most 50.", "field": "discount"})
    trigger(rt, "prioritise", {"events": ["create", "update"], "condition": "record.amount >= 1000.0",
                               "actions": [{"type": "set_fields", "values": {"priority": "high", "note": "big one"}}]})
    trigger(rt, "won_discount", {"events": ["stage_change"], "stage": "won", "actions": [{"type": "set_fields", "values": {"discount": 90}}]})

    small = deal(rt, org.boss, "Small", amount="10")
    big = deal(rt, org.boss, "Big", amount="1000")
    assert [(r["priority"], r["note"]) for r in (small, big)] == [(None, None), ("high", "big one")]
    assert rt.records.get(S, "deal", big["id"])["priority"] == "high"
    raised = rt.records.update(org.boss, "deal", small["id"], {"amount": "2000", "priority": "low"})
    assert (raised["priority"], raised["note"], raised["version"]) == ("high", "big one", 2)

    with pytest.raises(ValidationFailed) as error:
        rt.records.update(org.boss, "deal", big["id"], {"stage": "won"})
    assert problems(error) == [("RULE_FAILED", "discount")]
    assert error.value.errors[0].message == "The discount may be at most 50."
    kept = rt.records.get(S, "deal", big["id"])
    assert (kept["stage"], kept["discount"], kept["version"]) == ("new", None, 1)
    rt.records.update(org.boss, "deal", big["id"], {"stage": "quoted"})
    assert rt.records.get(S, "deal", big["id"])["discount"] is None, "set_fields runs only for its trigger's event"


def test_set_fields_a_value_its_field_no_longer_takes_refuses_the_write(rt, org):
    trigger(rt, "flag", {"events": ["create"], "actions": [{"type": "set_fields", "values": {"priority": "high"}}]})
    rt.metadata.update_field(S, "deal", "priority", {"options": {"restricted": True, "values": [
        {"api_name": "low", "label": "Low"}, {"api_name": "high", "label": "High", "active": False}]}})
    with pytest.raises(ValidationFailed) as error:
        deal(rt, org.boss)
    assert problems(error) == [("INVALID_CHOICE", "priority")]
    assert "(set by the trigger 'flag')" in error.value.errors[0].message
    assert rt.records.every(S, "deal") == []


# -- create_task and loops ------------------------------------------------------------------------
def test_create_task_creates_one_linked_task_in_the_write(rt, org):
    trigger(rt, "follow_up", {"events": ["stage_change"], "stage": "quoted", "actions": [
        {"type": "create_task", "object": "task", "link_field": "deal",
         "values": {"subject": "Follow up {record.name} for {user.username}", "amount": "{record.amount}", "priority": "high"}}]})
    made = deal(rt, org.boss, "Acme", amount="300", owner_id=org.ann.id)
    assert tasks(rt) == []
    rt.records.update(org.bob, "deal", made["id"], {"stage": "quoted"})
    [task] = rt.records.every(S, "task")
    assert (task["subject"], task["deal"], task["amount"], task["priority"], task["owner_id"]) == (
        "Follow up Acme for bob", made["id"], made["amount"], "high", org.ann.id)
    rt.records.update(org.bob, "deal", made["id"], {"note": "no new task"})
    assert len(tasks(rt)) == 1

    rt.metadata.create_validation_rule(S, "task", {"api_name": "short", "expression": "size(record.subject) < 20",
                                                   "message": "Keep subjects short.", "field": "subject"})
    long = deal(rt, org.boss, "A very long deal name", owner_id=org.ann.id)
    with pytest.raises(ValidationFailed) as error:
        rt.records.update(org.bob, "deal", long["id"], {"stage": "quoted"})
    assert problems(error) == [("TRIGGER_FAILED", None)]
    assert "follow up" in error.value.errors[0].message and "Keep subjects short." in error.value.errors[0].message
    assert rt.records.get(S, "deal", long["id"])["stage"] == "new"
    assert len(tasks(rt)) == 1


def test_a_trigger_that_triggers_itself_stops_at_the_depth_limit(rt, org):
    trigger(rt, "echo", {"events": ["create"], "actions": [
        {"type": "create_task", "object": "task", "link_field": "parent", "values": {"subject": "echo of {record.subject}"}}]}, obj="task")
    first = rt.records.create(org.boss, "task", {"subject": "start"})
    chain = {t["id"]: t for t in rt.records.every(S, "task")}
    assert len(chain) == 1 + MAX_DEPTH
    subjects, current = [], first
    while current is not None:
        subjects.append(current["subject"])
        current = next((t for t in chain.values() if t["parent"] == current["id"]), None)
    assert subjects == ["start"] + ["echo of " * n + "start" for n in range(1, MAX_DEPTH + 1)]


# -- settings -------------------------------------------------------------------------------------
def test_bad_settings_are_refused_at_their_paths_and_nothing_is_saved(rt, org):
    settings = {
        "events": ["create", "explode", "create"], "condition": "record.amount >", "stage": "nope", "colour": "red",
        "actions": [
            {"type": "notify", "users": [UNKNOWN, "ann"], "roles": ["pilot"], "title": "{record.nope} {", "body": "{user.password}"},
            {"type": "set_fields", "values": {"nope": 1, "created_at": "2030-01-01", "discount": "many", "name": None}},
            {"type": "create_task", "object": "task", "link_field": "parent", "values": {"subject": "{record.missing}", "weight": 3,
                                                                                         "priority": "urgent"}},
            {"type": "webhook", "url": "ftp://example.com/hook", "secret": ""},
            {"type": "webhook", "url": "file:///etc/passwd", "secret": "s", "timeout_seconds": 100},
            {"type": "webhook", "url": "https://", "secret": "s", "retries": 3},
            {"type": "call"},
            "notify",
        ]}
    with pytest.raises(InvalidDefinition) as error:
        trigger(rt, "bad", settings)
    assert problems(error) == [(code, f"settings.{path}") for code, path in [
        ("UNKNOWN_FIELD", "colour"), ("INVALID_VALUE", "events.1"), ("DUPLICATE", "events.2"), ("INVALID_VALUE", "stage"),
        ("NOT_FOUND", "stage"), ("SYNTAX_ERROR", "condition"),
        ("INVALID_VALUE", "actions.0.users.1"), ("NOT_FOUND", "actions.0.users.0"), ("NOT_FOUND", "actions.0.roles.0"),
        ("INVALID_TEMPLATE", "actions.0.title"), ("UNKNOWN_FIELD", "actions.0.title"), ("UNKNOWN_FIELD", "actions.0.body"),
        ("UNKNOWN_FIELD", "actions.1.values.nope"), ("READ_ONLY", "actions.1.values.created_at"),
        ("REQUIRED", "actions.1.values.name"), ("INVALID_TYPE", "actions.1.values.discount"),
        ("INVALID_VALUE", "actions.2.link_field"), ("UNKNOWN_FIELD", "actions.2.values.subject"),
        ("INVALID_CHOICE", "actions.2.values.priority"), ("UNKNOWN_FIELD", "actions.2.values.weight"),
        ("INVALID_URL", "actions.3.url"), ("REQUIRED", "actions.3.secret"),
        ("INVALID_URL", "actions.4.url"), ("OUT_OF_RANGE", "actions.4.timeout_seconds"),
        ("UNKNOWN_FIELD", "actions.5.retries"), ("INVALID_URL", "actions.5.url"),
        ("INVALID_VALUE", "actions.6.type"), ("INVALID_VALUE", "actions.7"),
    ]]
    messages = {e.field: e.message for e in error.value.errors}
    assert "http:// or https://" in messages["settings.actions.3.url"] and "not ftp:" in messages["settings.actions.3.url"]
    assert "not file:" in messages["settings.actions.4.url"]
    assert "must name a host" in messages["settings.actions.5.url"]
    assert "'deal' has no field 'nope'" in messages["settings.actions.0.title"]

    for broken, expected in (
            ({"events": [], "actions": []}, [("REQUIRED", "settings.events"), ("REQUIRED", "settings.actions")]),
            ({"events": ["update"], "stage_category": "won", "actions": [{"type": "notify", "title": ""}]},
             [("INVALID_VALUE", "settings.stage_category"), ("REQUIRED", "settings.actions.0.users"),
              ("INVALID_VALUE", "settings.actions.0.title")]),
            ({"events": ["create"], "condition": "record.nothing > 1 && boom", "actions": [notify(org.ann)]},
             [("UNKNOWN_VARIABLE", "settings.condition"), ("UNKNOWN_FIELD", "settings.condition")]),
            ({"events": ["stage_change"], "actions": [notify(org.ann, title="{record.subject} moved")]},
             [("INVALID_VALUE", "settings.events.0")]),
            ({"events": ["create"], "actions": [{"type": "create_task", "object": "nothing", "values": {}}]},
             [("NOT_FOUND", "settings.actions.0.object")]),
            ({"events": ["create"], "actions": [{"type": "create_task", "object": "deal", "link_field": "deal", "values": {}}]},
             [("INVALID_VALUE", "settings.actions.0.link_field"), ("REQUIRED", "settings.actions.0.values.name")]),
    ):
        with pytest.raises(InvalidDefinition) as error:
            trigger(rt, "bad", broken, obj="task" if broken["events"] == ["stage_change"] else "deal")
        assert problems(error) == expected
    assert rt.catalog().object("deal").automations == () and rt.catalog().object("task").automations == ()

    good = trigger(rt, "good", {"events": ["create"], "actions": [notify(org.ann)]})
    with pytest.raises(InvalidDefinition) as error:
        rt.metadata.update_automation(S, "deal", "good", {"settings": {"events": ["create"], "actions": [
            {"type": "webhook", "url": "javascript:alert(1)", "secret": "s"}]}})
    assert problems(error) == [("INVALID_URL", "settings.actions.0.url")]
    assert rt.catalog().object("deal").automations == (good,)


def test_fields_a_trigger_uses_cannot_be_deleted_under_it(rt, org):
    trigger(rt, "uses", {"events": ["update"], "condition": "record.discount > 5", "actions": [
        {"type": "set_fields", "values": {"priority": "high"}}, notify(org.ann, title="{record.note}")]})
    for name in ("discount", "priority", "note"):
        with pytest.raises(InUse):
            rt.metadata.delete_field(S, "deal", name)
    rt.metadata.delete_field(S, "deal", "amount")
    assert rt.catalog().object("deal").field("amount") is None


# -- the win announcement -------------------------------------------------------------------------
def test_a_won_deal_is_announced_once_to_its_owners_unit(rt, org):
    trigger(rt, "win_announcement", WIN_ANNOUNCEMENT)
    shanghai_deal = deal(rt, org.boss, "Acme", amount="5000", owner_id=org.ann.id)
    west_deal = deal(rt, org.boss, "Globex", owner_id=org.dan.id)
    rt.records.update(org.ann, "deal", shanghai_deal["id"], {"stage": "quoted"})
    rt.records.update(org.dan, "deal", west_deal["id"], {"stage": "lost"})
    assert inboxes(rt, org) == {}

    rt.records.update(org.ann, "deal", shanghai_deal["id"], {"stage": "won"})
    assert inboxes(rt, org) == {"ann": ["Won: Acme"], "bob": ["Won: Acme"]}
    assert rt.notifications.inbox(org.bob).notifications[0].body == "ann won Acme (5000.00)."
    rt.records.update(org.ann, "deal", shanghai_deal["id"], {"note": "signed"})
    assert inboxes(rt, org) == {"ann": ["Won: Acme"], "bob": ["Won: Acme"]}

    direct = rt.records.create(org.boss, "deal", {"name": "Initech", "owner_id": org.dan.id})
    rt.records.update(org.boss, "deal", direct["id"], {"stage": "won"})
    assert inboxes(rt, org) == {"ann": ["Won: Acme"], "bob": ["Won: Acme"], "dan": ["Won: Initech"]}
