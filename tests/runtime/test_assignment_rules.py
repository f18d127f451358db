"""Assignment rules through the record service and the assignment service, on SQLite and PostgreSQL:
each method gives new records their owner (the first matching entry decides, none leaves the record
with its creator), the transfer shows in the history and the new owner hears of it once, round
robins take fair turns that survive a restart and skip deactivated people, bad settings are refused
at their paths, rules run on demand for those who may transfer the records, and concurrent creates
on PostgreSQL share the turns exactly."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from lowcode.runtime import Runtime

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"
OBJECTS = [
    {"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
     "fields": [{"api_name": "name", "label": "Name", "type": "text", "tracked": True},
                {"api_name": "budget", "label": "Budget", "type": "integer"},
                {"api_name": "region", "label": "Region", "type": "picklist", "options": {"values": [
                    {"api_name": "north", "label": "North"}, {"api_name": "south", "label": "South"},
                    {"api_name": "east", "label": "East"}]}}]},
    {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
     "fields": [{"api_name": "name", "label": "Name", "type": "text"}]},
    {"api_name": "visit", "label": "Visit", "plural_api_name": "visits", "plural_label": "Visits",
     "fields": [{"api_name": "lead", "label": "Lead", "type": "lookup", "options": {"target": "lead"}},
                {"api_name": "deal", "label": "Deal", "type": "lookup", "options": {"target": "deal"}}]},
]


def start(url: str) -> Runtime:
    return Runtime.connect(url).install()


@pytest.fixture
def rt(database_url):
    runtime = start(database_url)
    runtime.metadata.create_objects(S, OBJECTS)
    yield runtime
    runtime.close()


class Org:
    """Sales with North (ann, bob, cal, dee), South (eve) and East (ivy, deactivated) below it, all
    reps; kim is a clerk of Sales who creates leads; boss is an administrator. Reps read their unit's
    leads and transfer their own; clerks create and read their own."""

    def __init__(self, rt):
        sec = rt.security
        self.sales = sec.create_unit(S, "Sales")["id"]
        self.north = sec.create_unit(S, "North", self.sales)["id"]
        self.south = sec.create_unit(S, "South", self.sales)["id"]
        self.east = sec.create_unit(S, "East", self.sales)["id"]
        sec.create_role(S, "rep", "Rep")
        sec.create_role(S, "clerk", "Clerk")
        sec.create_role(S, "boss", "Boss", administrator=True)
        sec.set_object_grant(S, "rep", "lead", ["read", "create", "update", "transfer"], "unit", "own")
        sec.set_object_grant(S, "clerk", "lead", ["read", "create"], "own", "own")
        self.ids = {}
        for name, unit, role in (("ann", self.north, "rep"), ("bob", self.north, "rep"), ("cal", self.north, "rep"),
                                 ("dee", self.north, "rep"), ("eve", self.south, "rep"), ("ivy", self.east, "rep"),
                                 ("kim", self.sales, "clerk"), ("boss", self.sales, "boss")):
            user = sec.create_user(S, {"username": name})
            sec.add_membership(S, user["id"], unit, role)
            self.ids[name] = user["id"]
            setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))
        rt.records.update(S, "user", self.ids["ivy"], {"active": False})

    def name_of(self, user_id):
        return next((name for name, i in self.ids.items() if i == user_id), user_id)


@pytest.fixture
def org(rt):
    return Org(rt)


def rule(rt, entries, api_name="routing", **settings):
    return rt.metadata.create_automation(S, "lead", {"api_name": api_name, "kind": "assignment_rule", "label": "Routing",
                                                     "settings": {"entries": entries, **settings}})


def create(rt, org, **values):
    return rt.records.create(org.kim, "lead", {"name": "Acme", **values})


def owners(rt, org, count, **values):
    return [org.name_of(create(rt, org, **values)["owner_id"]) for _ in range(count)]


def inbox(rt, actor):
    return [(n.kind, n.object_api_name, n.record_id) for n in rt.notifications.inbox(actor).notifications]


def problems(error):
    return [(e.code, e.field) for e in error.value.errors]


# -- methods on create ------------------------------------------------------------------------------
def test_a_designated_user_receives_new_records_with_the_transfer_in_history_and_one_notification(rt, org):
    rule(rt, [{"condition": "record.budget > 1000", "method": "user", "user": org.ids["ann"]}])

    big = create(rt, org, budget=5000)
    assert (big["owner_id"], big["org_unit_id"], big["version"]) == (org.ids["ann"], org.north, 2)
    assert rt.records.get(S, "lead", big["id"])["owner_id"] == org.ids["ann"]
    with pytest.raises(NotFound):
        rt.records.get(org.kim, "lead", big["id"])
    moves = [(h["field"], h["event"], h["old"], h["new"], h["actor_id"]) for h in rt.records.history(org.boss, "lead", big["id"])
             if h["event"] == "transferred"]
    assert moves == [("owner_id", "transferred", org.ids["kim"], org.ids["ann"], None),
                     ("org_unit_id", "transferred", org.sales, org.north, None)]
    assert inbox(rt, org.ann) == [("assignment.assigned", "lead", big["id"])]

    small = create(rt, org, budget=10)
    assert (small["owner_id"], small["version"]) == (org.ids["kim"], 1)
    assert [(h["event"], h["actor_id"]) for h in rt.records.history(org.boss, "lead", small["id"])] == [("created", org.ids["kim"])]
    assert inbox(rt, org.ann) == [("assignment.assigned", "lead", big["id"])]
    assert inbox(rt, org.kim) == []


def test_the_first_matching_entry_decides_and_without_one_the_creator_keeps_the_record(rt, org):
    rule(rt, [{"condition": "record.budget > 1000", "method": "user", "user": org.ids["bob"]},
              {"condition": "record.budget > 100", "method": "user", "user": org.ids["cal"]},
              {"condition": "record.name == 'VIP'", "method": "user", "user": org.ids["dee"]}])

    assert owners(rt, org, 1, budget=5000) == ["bob"]
    assert owners(rt, org, 1, budget=500) == ["cal"]
    assert owners(rt, org, 1, budget=500, name="VIP") == ["cal"]
    assert owners(rt, org, 1, budget=5, name="VIP") == ["dee"]
    assert owners(rt, org, 1, budget=5) == ["kim"]
    assert owners(rt, org, 1) == ["kim"]
    assert [len(inbox(rt, who)) for who in (org.bob, org.cal, org.dee)] == [1, 2, 1]


def test_round_robin_over_a_list_takes_fair_turns_and_skips_deactivated_users(rt, org):
    rule(rt, [{"method": "round_robin", "users": [org.ids["cal"], org.ids["ann"], org.ids["bob"]]}])
    assert owners(rt, org, 6) == ["cal", "ann", "bob", "cal", "ann", "bob"]

    rt.records.update(S, "user", org.ids["ann"], {"active": False})
    assert owners(rt, org, 3) == ["cal", "bob", "cal"]
    rt.records.update(S, "user", org.ids["ann"], {"active": True})
    assert owners(rt, org, 2) == ["ann", "bob"]


def test_round_robin_over_a_group_continues_where_it_stood_after_a_restart(rt, org, database_url):
    rule(rt, [{"method": "round_robin", "group": {"unit": org.sales, "include_below": True, "role": "rep"}}])
    assert owners(rt, org, 3) == ["ann", "bob", "cal"]
    rt.close()

    again = start(database_url)
    try:
        kim = again.security.authenticate(again.security.issue_token(S, "again", user_id=org.ids["kim"])["token"])
        made = [org.name_of(again.records.create(kim, "lead", {"name": "Acme"})["owner_id"]) for _ in range(4)]
        assert made == ["dee", "eve", "ann", "bob"]
    finally:
        again.close()


def test_region_sends_records_to_the_members_of_their_regions_unit_and_into_that_unit(rt, org):
    rule(rt, [{"method": "region", "field": "region", "regions": {"north": org.north, "south": org.south}},
              {"method": "user", "user": org.ids["boss"]}])

    south = create(rt, org, region="south")
    assert (org.name_of(south["owner_id"]), south["org_unit_id"]) == ("eve", org.south)
    north = [create(rt, org, region="north") for _ in range(5)]
    assert [org.name_of(r["owner_id"]) for r in north] == ["ann", "bob", "cal", "dee", "ann"]
    assert {r["org_unit_id"] for r in north} == {org.north}
    assert owners(rt, org, 1, region="east") == ["boss"]
    assert owners(rt, org, 1) == ["boss"]


def test_region_with_a_fallback_unit_and_a_role(rt, org):
    rule(rt, [{"method": "region", "field": "region", "regions": {"south": org.south}, "fallback_unit": org.sales,
               "include_below": True, "role": "rep"}])
    assert owners(rt, org, 3, region="east") == ["ann", "bob", "cal"]
    assert owners(rt, org, 2, region="south") == ["eve", "eve"]


def test_the_pool_method_puts_new_records_into_the_pool_ownerless(rt, org):
    rt.pools.create_pool(S, {"api_name": "leads", "label": "Lead pool", "object_api_name": "lead", "protection": "activity",
                             "activity_object": "visit", "activity_field": "lead", "protection_days": 30,
                             "daily_claim_limit": 5, "max_held": 10,
                             "members": [{"unit_id": org.sales, "include_below": True, "role": "rep"}]})
    rule(rt, [{"condition": "record.budget < 100", "method": "pool", "pool": "leads"}])

    made = create(rt, org, budget=5)
    assert (made["owner_id"], made["version"]) == (None, 2)
    assert [r.id for r in rt.pools.pool_records(org.ann, "leads").records] == [made["id"]]
    assert [(m.action, m.actor_id, m.from_owner_id, m.to_owner_id) for m in rt.pools.moves(org.boss, "leads")] == [
        ("return", None, org.ids["kim"], None)]
    assert owners(rt, org, 1, budget=500) == ["kim"]
    assert rt.pools.claim(org.ann, "leads", made["id"]).to_owner_id == org.ids["ann"]


def test_an_entry_that_finds_nobody_now_is_passed_over(rt, org):
    rule(rt, [{"method": "user", "user": org.ids["eve"]}, {"method": "round_robin", "users": [org.ids["ann"]]}])
    assert owners(rt, org, 1) == ["eve"]
    rt.records.update(S, "user", org.ids["eve"], {"active": False})
    assert owners(rt, org, 1) == ["ann"]
    rt.records.update(S, "user", org.ids["ann"], {"active": False})
    assert owners(rt, org, 1) == ["kim"]


def test_only_the_first_active_rule_applying_on_create_assigns(rt, org):
    rule(rt, [{"method": "user", "user": org.ids["ann"]}], api_name="manual", on_create=False)
    rule(rt, [{"method": "user", "user": org.ids["bob"]}], api_name="first")
    rule(rt, [{"method": "user", "user": org.ids["cal"]}], api_name="second")
    assert owners(rt, org, 1) == ["bob"]
    rt.metadata.update_automation(S, "lead", "first", {"active": False})
    assert owners(rt, org, 1) == ["cal"]
    assert inbox(rt, org.ann) == []


def test_owners_are_not_told_when_the_rule_says_so_nor_when_they_create_their_own(rt, org):
    rule(rt, [{"method": "user", "user": org.ids["ann"]}], notify_owner=False)
    assert owners(rt, org, 1) == ["ann"]
    rt.metadata.update_automation(S, "lead", "routing", {"settings": {"entries": [{"method": "user", "user": org.ids["ann"]}]}})
    made = rt.records.create(org.ann, "lead", {"name": "Own"})
    assert (made["owner_id"], made["version"]) == (org.ids["ann"], 1)
    assert inbox(rt, org.ann) == []
    assert owners(rt, org, 1) == ["ann"]
    assert len(inbox(rt, org.ann)) == 1


def test_bulk_creates_take_one_turn_per_record(rt, org):
    rule(rt, [{"method": "round_robin", "users": [org.ids["ann"], org.ids["bob"]]}])
    made = rt.records.bulk_create(org.kim, "lead", [{"name": f"L{i}"} for i in range(4)])
    assert [org.name_of(r["owner_id"]) for r in made] == ["ann", "bob", "ann", "bob"]


# -- settings -----------------------------------------------------------------------------------------
def test_bad_settings_are_refused_each_at_its_path_and_nothing_is_saved(rt, org):
    rt.pools.create_pool(S, {"api_name": "deals", "label": "Deal pool", "object_api_name": "deal", "protection": "activity",
                             "activity_object": "visit", "activity_field": "deal", "protection_days": 30,
                             "daily_claim_limit": 5, "max_held": 10, "members": [{"unit_id": org.sales}]})
    with pytest.raises(InvalidDefinition) as error:
        rule(rt, [
            {"condition": "record.budget >", "method": "user", "user": UNKNOWN},
            {"method": "round_robin", "group": {"unit": org.east}},
            {"method": "region", "field": "nothing", "regions": {"north": UNKNOWN}},
            {"method": "pool", "pool": "nope"},
            {"method": "pool", "pool": "deals"},
            {"method": "magic"},
            {"method": "round_robin", "users": [org.ids["ivy"], UNKNOWN]},
            {"method": "user", "user": org.ids["ivy"], "colour": "red"},
            {"method": "region", "field": "region", "regions": {"mars": org.north, "east": org.east}, "role": "nobody"},
            {"method": "region", "field": "budget", "regions": {"1": org.north}},
            {"condition": "record.nothing == 1", "method": "round_robin"},
            {"method": "round_robin", "group": {"unit": org.north, "role": "clerk"}},
        ], sometimes=True)
    assert error.value.code == "INVALID_DEFINITION"
    assert problems(error) == [
        ("UNKNOWN_FIELD", "settings.sometimes"),
        ("SYNTAX_ERROR", "settings.entries.0.condition"),
        ("NOT_FOUND", "settings.entries.0.user"),
        ("NO_ACTIVE_USERS", "settings.entries.1.group"),
        ("NOT_FOUND", "settings.entries.2.field"),
        ("NOT_FOUND", "settings.entries.2.regions.north"),
        ("NOT_FOUND", "settings.entries.3.pool"),
        ("INVALID_VALUE", "settings.entries.4.pool"),
        ("INVALID_VALUE", "settings.entries.5.method"),
        ("NOT_FOUND", "settings.entries.6.users.1"),
        ("NO_ACTIVE_USERS", "settings.entries.6.users"),
        ("UNKNOWN_FIELD", "settings.entries.7.colour"),
        ("INACTIVE_USER", "settings.entries.7.user"),
        ("NOT_FOUND", "settings.entries.8.role"),
        ("UNKNOWN_VALUE", "settings.entries.8.regions.mars"),
        ("INVALID_VALUE", "settings.entries.9.field"),
        ("UNKNOWN_FIELD", "settings.entries.10.condition"),
        ("REQUIRED", "settings.entries.10"),
        ("NO_ACTIVE_USERS", "settings.entries.11.group"),
    ]
    assert rt.catalog().object("lead").automations == ()

    with pytest.raises(InvalidDefinition) as error:
        rule(rt, [{"method": "region", "field": "region", "regions": {"east": org.east}}], on_create="yes")
    assert problems(error) == [("INVALID_VALUE", "settings.on_create"), ("NO_ACTIVE_USERS", "settings.entries.0.regions.east")]
    with pytest.raises(InvalidDefinition) as error:
        rule(rt, [])
    assert problems(error) == [("REQUIRED", "settings.entries")]
    assert rt.catalog().object("lead").automations == ()
    assert owners(rt, org, 1) == ["kim"]


def test_an_update_of_the_settings_is_checked_too_and_the_old_rule_keeps_working(rt, org):
    rule(rt, [{"method": "user", "user": org.ids["ann"]}])
    with pytest.raises(InvalidDefinition) as error:
        rt.metadata.update_automation(S, "lead", "routing", {"settings": {"entries": [{"method": "user", "user": org.ids["ivy"]}]}})
    assert problems(error) == [("INACTIVE_USER", "settings.entries.0.user")]
    assert owners(rt, org, 1) == ["ann"]


def test_a_field_a_rule_reads_cannot_be_deleted(rt, org):
    rule(rt, [{"condition": "record.budget > 5", "method": "region", "field": "region", "regions": {"north": org.north}}])
    for name in ("budget", "region"):
        with pytest.raises(InUse) as error:
            rt.metadata.delete_field(S, "lead", name)
        assert "automation 'routing'" in error.value.message


# -- on demand ----------------------------------------------------------------------------------------
def test_administrators_assign_existing_records_on_demand(rt, org):
    first, second = create(rt, org)["id"], create(rt, org)["id"]
    rule(rt, [{"condition": "record.budget > 1000", "method": "user", "user": org.ids["eve"]},
              {"method": "round_robin", "users": [org.ids["ann"], org.ids["bob"]]}], on_create=False)
    assert owners(rt, org, 1) == ["kim"]

    outcomes = rt.assignment.assign(org.boss, "lead", [first, second, first])
    assert [(o.id, org.name_of(o.owner_id), o.org_unit_id, o.entry, o.method) for o in outcomes] == [
        (first, "ann", org.north, 1, "round_robin"), (second, "bob", org.north, 1, "round_robin")]
    history = rt.records.history(org.boss, "lead", first)
    assert [(h["event"], h["new"], h["actor_id"]) for h in history if h["field"] == "owner_id"] == [
        ("transferred", org.ids["ann"], org.ids["boss"])]
    assert inbox(rt, org.ann) == [("assignment.assigned", "lead", first)]

    rt.records.update(S, "lead", first, {"budget": 5000})
    [outcome] = rt.assignment.assign(org.boss, "lead", [first], rule="routing")
    assert (org.name_of(outcome.owner_id), outcome.entry, outcome.method) == ("eve", 0, "user")


def test_on_demand_a_rule_that_decides_nothing_leaves_the_record_alone(rt, org):
    made = create(rt, org)
    rule(rt, [{"condition": "record.budget > 1000", "method": "user", "user": org.ids["eve"]}])
    [outcome] = rt.assignment.assign(S, "lead", [made["id"]])
    assert (outcome.owner_id, outcome.entry, outcome.method) == (org.ids["kim"], None, None)
    assert rt.records.get(S, "lead", made["id"])["version"] == 1


def test_users_assign_on_demand_only_the_records_they_may_transfer(rt, org):
    rule(rt, [{"method": "user", "user": org.ids["dee"]}], on_create=False)
    own = rt.records.create(org.ann, "lead", {"name": "Mine"})["id"]
    bobs = rt.records.create(org.bob, "lead", {"name": "Bob's"})["id"]
    souths = rt.records.create(org.eve, "lead", {"name": "South"})["id"]
    kims = create(rt, org)["id"]

    with pytest.raises(Forbidden):
        rt.assignment.assign(org.kim, "lead", [kims])
    with pytest.raises(Forbidden) as error:
        rt.assignment.assign(org.ann, "lead", [own, bobs])
    assert problems(error) == [("FORBIDDEN", "ids.1")]
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.ann, "lead", [own, souths, UNKNOWN])
    assert problems(error) == [("NOT_FOUND", "ids.1"), ("NOT_FOUND", "ids.2")]
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.ann, "lead", [own, "not-an-id"])
    assert problems(error) == [("NOT_FOUND", "ids.1")]
    assert {rt.records.get(S, "lead", i)["owner_id"] for i in (own, bobs, souths)} == {org.ids["ann"], org.ids["bob"], org.ids["eve"]}

    [outcome] = rt.assignment.assign(org.ann, "lead", [own])
    assert outcome.owner_id == org.ids["dee"]
    assert inbox(rt, org.dee) == [("assignment.assigned", "lead", own)]


def test_on_demand_refuses_unknown_rules_objects_and_empty_lists(rt, org):
    made = create(rt, org)["id"]
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.boss, "lead", [made])
    assert error.value.field == "rule"
    rule(rt, [{"method": "user", "user": org.ids["ann"]}])
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.boss, "lead", [made], rule="nothing")
    assert error.value.field == "rule"
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.boss, "nothing", [made])
    assert error.value.field == "object"
    with pytest.raises(ValidationFailed) as error:
        rt.assignment.assign(org.boss, "lead", [])
    assert problems(error) == [("REQUIRED", "ids")]
    rt.records.delete(S, "lead", made)
    with pytest.raises(NotFound) as error:
        rt.assignment.assign(org.boss, "lead", [made])
    assert problems(error) == [("NOT_FOUND", "ids.0")]


# -- concurrency (PostgreSQL) -------------------------------------------------------------------------
def test_concurrent_creates_share_round_robin_turns_exactly(postgres_url):
    runtime = start(postgres_url)
    try:
        runtime.metadata.create_objects(S, OBJECTS[:1])
        org = Org(runtime)
        rule(runtime, [{"method": "round_robin", "group": {"unit": org.north, "role": "rep"}}])
        threads, per_thread = 8, 5
        barrier = threading.Barrier(threads)
        made: list[str] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def work():
            try:
                barrier.wait()
                for i in range(per_thread):
                    record = runtime.records.create(org.kim, "lead", {"name": f"L{i}"})
                    with lock:
                        made.append(record["owner_id"])
            except BaseException as error:  # reported below with the test's outcome
                failures.append(error)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert failures == []
        assert Counter(org.name_of(i) for i in made) == {"ann": 10, "bob": 10, "cal": 10, "dee": 10}
        stored = runtime.records.every(S, "lead", fields=["owner_id"])
        assert Counter(org.name_of(r["owner_id"]) for r in stored) == {"ann": 10, "bob": 10, "cal": 10, "dee": 10}
        assert sum(len(inbox(runtime, getattr(org, name))) for name in ("ann", "bob", "cal", "dee")) == 40
    finally:
        runtime.close()
