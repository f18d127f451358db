"""Public pools through their service, on SQLite and PostgreSQL: settings checked at their fields,
claims and releases with their limits, every move recorded, records recycled exactly when their
protection runs out, reminders delivered once, and racing claims with exactly one winner."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Conflict,
    Forbidden,
    LowcodeError,
    NotFound,
    ValidationFailed,
)
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.pools import ClaimLimitReached, CoolingDown, HoldingCapReached
from lowcode.runtime.pools.store import entries, members, moves, pools
from sqlalchemy import func, select

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"
OBJECTS = [
    {"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads",
     "fields": [{"api_name": "name", "label": "Name", "type": "text"}, {"api_name": "budget", "label": "Budget", "type": "integer"}]},
    {"api_name": "visit", "label": "Visit", "plural_api_name": "visits", "plural_label": "Visits",
     "fields": [{"api_name": "lead", "label": "Lead", "type": "lookup", "options": {"target": "lead"}},
                {"api_name": "deal", "label": "Deal", "type": "lookup", "options": {"target": "deal"}},
                {"api_name": "note", "label": "Note", "type": "text"}]},
    {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
     "fields": [{"api_name": "name", "label": "Name", "type": "text"}]},
]
DEAL_TYPE = {"api_name": "standard", "label": "Standard", "stages": [
    {"api_name": "new", "label": "New", "probability": 10}, {"api_name": "quoted", "label": "Quoted", "probability": 50},
    {"api_name": "won", "label": "Won", "probability": 100, "category": "won"}]}


def start_of_second() -> datetime:
    """Now, to the second: where the runtime's manual clock starts."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock(start_of_second())).install()
    runtime.metadata.create_objects(S, OBJECTS)
    runtime.metadata.create_business_type(S, "deal", DEAL_TYPE)
    yield runtime
    runtime.close()


class Org:
    """East (with Shanghai below it) and West; ann and bob sell in Shanghai, cat manages East,
    dan sells in West, boss is an administrator."""

    def __init__(self, rt):
        sec = rt.security
        self.east = sec.create_unit(S, "East")["id"]
        self.shanghai = sec.create_unit(S, "Shanghai", self.east)["id"]
        self.west = sec.create_unit(S, "West")["id"]
        sec.create_role(S, "sales", "Sales")
        sec.create_role(S, "manager", "Manager")
        sec.create_role(S, "boss", "Boss", administrator=True)
        for name, unit, role in (("ann", self.shanghai, "sales"), ("bob", self.shanghai, "sales"), ("cat", self.east, "manager"),
                                 ("dan", self.west, "sales"), ("boss", self.east, "boss")):
            user = sec.create_user(S, {"username": name})
            sec.add_membership(S, user["id"], unit, role)
            setattr(self, name, sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))


@pytest.fixture
def org(rt):
    return Org(rt)


def definition(org, **changes):
    """The leads pool: East and below, salespeople only, 30 days of protection by visits."""
    return {"api_name": "leads", "label": "Lead pool", "object_api_name": "lead", "protection": "activity",
            "activity_object": "visit", "activity_field": "lead", "protection_days": 30, "reminder_days": 3,
            "daily_claim_limit": 2, "max_held": 3, "cooldown_days": 7,
            "members": [{"unit_id": org.east, "include_below": True, "role": "sales"}], **changes}


@pytest.fixture
def pool(rt, org):
    return rt.pools.create_pool(org.boss, definition(org))


def problems(error):
    return [(e.code, e.field) for e in error.value.errors]


def count(rt, table):
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def owner(rt, record):
    return rt.records.get(S, "lead", record["id"])["owner_id"]


def pooled(rt, actor, name="leads"):
    return [r.id for r in rt.pools.pool_records(actor, name).records]


def visit_at(rt, record, instant):
    """A visit to ``record`` made at ``instant``: the runtime's clock stands there for the write."""
    now = rt.clock.now()
    rt.clock.set(instant)
    made = rt.records.create(S, "visit", {"lead": record["id"], "note": "called"})
    rt.clock.set(now)
    return made


def lead(rt, owner_actor, name="Acme"):
    return rt.records.create(S, "lead", {"name": name, "owner_id": owner_actor.id})


def in_pool(rt, org, name="Acme"):
    """A lead of ann's, released to the pool."""
    record = lead(rt, org.ann, name)
    rt.pools.release(org.ann, "leads", record["id"], "not reachable")
    return record


# -- settings -------------------------------------------------------------------------------------
def test_every_bad_setting_is_reported_at_its_field_and_nothing_is_saved(rt, org):
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, {"api_name": "Leads!", "label": "", "object_api_name": "nothing", "protection": "mood",
                                        "protection_days": 0, "reminder_days": -1, "daily_claim_limit": "5", "max_held": None,
                                        "cooldown_days": 4000, "colour": "red"})
    assert problems(error) == [
        ("UNKNOWN_FIELD", "colour"), ("INVALID_VALUE", "api_name"), ("INVALID_VALUE", "label"),
        ("OUT_OF_RANGE", "protection_days"), ("OUT_OF_RANGE", "reminder_days"), ("OUT_OF_RANGE", "daily_claim_limit"),
        ("REQUIRED", "max_held"), ("OUT_OF_RANGE", "cooldown_days"), ("NOT_FOUND", "object_api_name"),
        ("INVALID_VALUE", "protection"), ("REQUIRED", "members")]

    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, activity_field="deal", reminder_days=30, members=[
            {"unit_id": UNKNOWN}, {"unit_id": org.west, "role": "pilot"}, {"unit_id": "west"}, "east"]))
    assert problems(error) == [("OUT_OF_RANGE", "reminder_days"), ("INVALID_VALUE", "activity_field"),
                               ("INVALID_VALUE", "members.2.unit_id"), ("INVALID_VALUE", "members.3"),
                               ("NOT_FOUND", "members.0.unit_id"), ("NOT_FOUND", "members.1.role")]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, activity_object="memo", activity_field="lead", stage="won"))
    assert problems(error) == [("NOT_FOUND", "activity_object"), ("INVALID_VALUE", "stage")]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, activity_field="note"))
    assert problems(error) == [("INVALID_VALUE", "activity_field")]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, protection="stage", activity_object=None, activity_field=None, stage="won"))
    assert problems(error) == [("INVALID_VALUE", "stage")]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, object_api_name="deal", protection="stage", activity_field=None, stage="lost"))
    assert problems(error) == [("INVALID_VALUE", "activity_object"), ("NOT_FOUND", "stage")]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org, object_api_name="user", members=[]))
    assert problems(error) == [("INVALID_VALUE", "object_api_name"), ("REQUIRED", "members")]
    with pytest.raises(Forbidden):
        rt.pools.create_pool(org.ann, definition(org))
    assert [count(rt, t) for t in (pools, members, entries, moves)] == [0, 0, 0, 0]
    assert rt.jobs.schedules.list() == []

    made = rt.pools.create_pool(org.boss, definition(org))
    assert made.settings() == {**definition(org), "active": True, "stage": None}
    assert [(s["name"], s["kind"], s["interval_seconds"]) for s in rt.jobs.schedules.list()] == [
        ("pools.recycle", "pools.recycle", 3600), ("pools.remind", "pools.remind", 3600)]
    with pytest.raises(ValidationFailed) as error:
        rt.pools.create_pool(org.boss, definition(org))
    assert problems(error) == [("ALREADY_EXISTS", "api_name")]
    staged = rt.pools.create_pool(S, definition(org, api_name="deals", object_api_name="deal", protection="stage",
                                                activity_object=None, activity_field=None, stage="quoted"))
    assert (staged.protection, staged.stage) == ("stage", "quoted")


def test_administrators_change_and_delete_pools_with_the_same_checks(rt, org, pool):
    with pytest.raises(ValidationFailed) as error:
        rt.pools.update_pool(org.boss, "leads", {"object_api_name": "deal", "reminder_days": 40, "members": []})
    assert problems(error) == [("IMMUTABLE", "object_api_name"), ("OUT_OF_RANGE", "reminder_days"), ("REQUIRED", "members")]
    with pytest.raises(Forbidden):
        rt.pools.update_pool(org.ann, "leads", {"label": "Mine"})
    with pytest.raises(NotFound):
        rt.pools.update_pool(org.boss, "nope", {"label": "Mine"})
    assert rt.pools.pool(org.boss, "leads") == pool

    changed = rt.pools.update_pool(org.boss, "leads", {"label": "West leads", "daily_claim_limit": 9,
                                                       "members": [{"unit_id": org.west}]})
    assert (changed.label, changed.daily_claim_limit, [m.unit_id for m in changed.members]) == ("West leads", 9, [org.west])
    assert [p.api_name for p in rt.pools.pools(org.dan)] == ["leads"]
    assert rt.pools.pools(org.ann) == []
    with pytest.raises(Forbidden):
        rt.pools.pool(org.ann, "leads")

    with pytest.raises(Forbidden):
        rt.pools.delete_pool(org.dan, "leads")
    rt.pools.delete_pool(org.boss, "leads")
    assert [count(rt, t) for t in (pools, members)] == [0, 0]
    with pytest.raises(NotFound):
        rt.pools.pool(org.boss, "leads")


# -- claiming and releasing -----------------------------------------------------------------------
def test_members_claim_and_owners_release_and_every_move_is_recorded_in_order(rt, org, pool):
    record = lead(rt, org.ann)
    with pytest.raises(NotFound):
        rt.pools.claim(org.bob, "leads", record["id"])
    released = rt.pools.release(org.ann, "leads", record["id"], "  wrong number  ")
    assert owner(rt, record) is None
    assert pooled(rt, org.bob) == [record["id"]]
    page = rt.pools.pool_records(org.bob, "leads", fields=["name"])
    assert [(r.values, r.previous_owner_id, r.entered_at) for r in page.records] == [
        ({"id": record["id"], "name": "Acme"}, org.ann.id, rt.clock.now())]

    rt.clock.advance(60)
    claimed = rt.pools.claim(org.bob, "leads", record["id"])
    assert owner(rt, record) == org.bob.id
    assert rt.records.get(S, "lead", record["id"])["org_unit_id"] == org.shanghai
    assert pooled(rt, org.bob) == []
    assert [(h["field"], h["event"], h["old"], h["new"]) for h in rt.records.history(S, "lead", record["id"])] == [
        ("owner_id", "transferred", None, org.bob.id)]
    with pytest.raises(Conflict) as error:
        rt.pools.claim(org.ann, "leads", record["id"])
    assert error.value.code == "CONFLICT"

    rt.clock.advance(60)
    rt.pools.return_to_pool(org.boss, "leads", record["id"], "reassigning")
    assert owner(rt, record) is None
    expected = [("release", org.ann.id, org.ann.id, None, "wrong number"), ("claim", org.bob.id, None, org.bob.id, None),
                ("return", org.boss.id, org.bob.id, None, "reassigning")]
    got = rt.pools.moves(org.ann, "leads", record["id"])
    assert [(m.action, m.actor_id, m.from_owner_id, m.to_owner_id, m.reason) for m in got] == expected
    start = released.at
    assert [m.at for m in got] == [start, start + timedelta(seconds=60), start + timedelta(seconds=120)]
    assert claimed == got[1]
    assert rt.pools.moves(org.boss, "leads") == got


def test_release_needs_a_reason_and_the_owner(rt, org, pool):
    record = lead(rt, org.ann)
    for reason in (None, "", "   ", "x" * 501, 7):
        with pytest.raises(ValidationFailed) as error:
            rt.pools.release(org.ann, "leads", record["id"], reason)
        assert problems(error) == [("REQUIRED" if not reason else "INVALID_VALUE", "reason")]
    with pytest.raises(Forbidden):
        rt.pools.release(org.bob, "leads", record["id"], "not mine but still")
    with pytest.raises(NotFound):
        rt.pools.release(org.ann, "leads", UNKNOWN, "gone")
    with pytest.raises(NotFound):
        rt.pools.release(org.ann, "nope", record["id"], "gone")
    with pytest.raises(Forbidden):
        rt.pools.return_to_pool(org.ann, "leads", record["id"])
    assert owner(rt, record) == org.ann.id
    assert count(rt, moves) == 0
    assert rt.pools.release(org.ann, "leads", record["id"], "x" * 500).reason == "x" * 500


def test_non_members_are_forbidden(rt, org, pool):
    record = in_pool(rt, org)
    for outsider in (org.dan, org.cat):
        with pytest.raises(Forbidden):
            rt.pools.claim(outsider, "leads", record["id"])
        with pytest.raises(Forbidden):
            rt.pools.pool_records(outsider, "leads")
        with pytest.raises(Forbidden):
            rt.pools.moves(outsider, "leads")
    with pytest.raises(Forbidden):
        rt.pools.claim(org.boss, "leads", record["id"])
    assert pooled(rt, org.boss) == [record["id"]]
    assert owner(rt, record) is None
    assert count(rt, moves) == 1
    with pytest.raises(ValidationFailed) as error:
        rt.pools.pool_records(org.bob, "leads", fields=["name", "budget", "owner_id"])
    assert problems(error) == [("FORBIDDEN", "fields.1"), ("FORBIDDEN", "fields.2")]


def test_the_daily_claim_limit_resets_the_next_utc_day(rt, org, pool):
    rt.clock.set(datetime(2031, 3, 4, 23, 0, tzinfo=timezone.utc))
    first, second, third = (in_pool(rt, org, name) for name in ("A", "B", "C"))
    rt.pools.claim(org.bob, "leads", first["id"])
    rt.pools.claim(org.bob, "leads", second["id"])
    rt.clock.set(datetime(2031, 3, 4, 23, 59, 59, tzinfo=timezone.utc))
    with pytest.raises(ClaimLimitReached) as error:
        rt.pools.claim(org.bob, "leads", third["id"])
    assert (error.value.code, error.value.ctx) == ("CLAIM_LIMIT", {"limit": 2})
    assert owner(rt, third) is None
    rt.clock.advance(1)
    assert rt.pools.claim(org.bob, "leads", third["id"]).to_owner_id == org.bob.id
    assert [m.action for m in rt.pools.moves(org.bob, "leads")].count("claim") == 3


def test_the_holding_cap_counts_live_records_owned(rt, org, pool):
    rt.pools.update_pool(org.boss, "leads", {"daily_claim_limit": 10})
    held = [lead(rt, org.bob, f"Held {i}") for i in range(3)]
    record = in_pool(rt, org)
    with pytest.raises(HoldingCapReached) as error:
        rt.pools.claim(org.bob, "leads", record["id"])
    assert (error.value.code, error.value.ctx) == ("HOLDING_CAP", {"limit": 3})
    rt.records.delete(S, "lead", held[0]["id"])
    assert rt.pools.claim(org.bob, "leads", record["id"]).action == "claim"


def test_the_previous_owner_waits_the_cooldown_but_others_do_not(rt, org, pool):
    record = in_pool(rt, org)
    released_at = rt.clock.now()
    rt.clock.advance(days=7, seconds=-1)
    with pytest.raises(CoolingDown) as error:
        rt.pools.claim(org.ann, "leads", record["id"])
    assert (error.value.code, error.value.ctx) == ("COOLDOWN", {"until": (released_at + timedelta(days=7)).isoformat()})
    rt.clock.advance(1)
    assert rt.pools.claim(org.ann, "leads", record["id"]).to_owner_id == org.ann.id

    other = in_pool(rt, org, "Other")
    assert rt.pools.claim(org.bob, "leads", other["id"]).to_owner_id == org.bob.id


def test_claims_on_an_inactive_pool_are_refused(rt, org, pool):
    record = in_pool(rt, org)
    rt.pools.update_pool(org.boss, "leads", {"active": False})
    with pytest.raises(Conflict):
        rt.pools.claim(org.bob, "leads", record["id"])
    assert owner(rt, record) is None


# -- recycling and reminding ----------------------------------------------------------------------
def test_a_record_returns_exactly_when_its_protection_runs_out(rt, org, pool):
    record = lead(rt, org.ann)
    created = rt.records.get(S, "lead", record["id"])["created_at"]
    rt.clock.set(created + timedelta(days=30, seconds=-1))
    assert rt.pools.recycle_due() == 0
    assert owner(rt, record) == org.ann.id

    visited = created + timedelta(days=20, microseconds=1)
    visit_at(rt, record, visited)
    rt.clock.set(created + timedelta(days=30, seconds=1))
    assert rt.pools.recycle_due() == 0
    rt.clock.set(visited + timedelta(days=30, seconds=-1))
    assert rt.pools.recycle_due() == 0
    rt.clock.set(visited + timedelta(days=30))
    assert rt.pools.recycle_due() == 1
    assert owner(rt, record) is None
    assert rt.pools.recycle_due() == 0
    [move] = rt.pools.moves(S, "leads")
    assert (move.action, move.actor_id, move.from_owner_id, move.to_owner_id, move.at) == ("recycle", None, org.ann.id, None, rt.clock.now())
    [told] = rt.notifications.inbox(org.ann).notifications
    assert (told.kind, told.object_api_name, told.record_id) == ("pool.recycled", "lead", record["id"])

    rt.pools.claim(org.bob, "leads", record["id"])
    claimed_at = rt.clock.now()
    rt.clock.set(claimed_at + timedelta(days=30, seconds=-1))
    assert rt.pools.recycle_due() == 0
    rt.clock.set(claimed_at + timedelta(days=30))
    assert rt.pools.recycle_due() == 1
    assert [m.action for m in rt.pools.moves(S, "leads", record["id"])] == ["recycle", "claim", "recycle"]
    assert [n.kind for n in rt.notifications.inbox(org.bob).notifications] == ["pool.recycled"]


def test_stage_protection_keeps_records_that_reached_the_stage(rt, org):
    rt.pools.create_pool(S, definition(org, api_name="deals", object_api_name="deal", protection="stage",
                                       activity_object=None, activity_field=None, stage="quoted", reminder_days=0))
    stuck = rt.records.create(S, "deal", {"name": "Stuck", "owner_id": org.ann.id, "business_type": "standard", "stage": "new"})
    moving = rt.records.create(S, "deal", {"name": "Moving", "owner_id": org.ann.id, "business_type": "standard", "stage": "new"})
    rt.records.update(S, "deal", moving["id"], {"stage": "quoted"})
    rt.records.update(S, "deal", moving["id"], {"stage": "won"})
    created = rt.records.get(S, "deal", stuck["id"])["created_at"]
    rt.clock.set(created + timedelta(days=30, seconds=-1))
    assert rt.pools.recycle_due() == 0
    rt.clock.set(created + timedelta(days=31))
    assert rt.pools.recycle_due() == 1
    assert [(m.record_id, m.action) for m in rt.pools.moves(S, "deals")] == [(stuck["id"], "recycle")]
    assert rt.records.get(S, "deal", moving["id"])["owner_id"] == org.ann.id


def test_the_reminder_fires_once_per_protection_period_even_after_a_restart(rt, org, pool, database_url):
    record = lead(rt, org.ann)
    created = rt.records.get(S, "lead", record["id"])["created_at"]
    rt.clock.set(created + timedelta(days=27, seconds=-1))
    assert rt.pools.remind_due() == 0
    rt.clock.set(created + timedelta(days=27))
    assert rt.pools.remind_due() == 1
    assert rt.pools.remind_due() == 0
    restarted = Runtime.connect(database_url, clock=ManualClock(created + timedelta(days=28))).install()
    try:
        assert restarted.pools.remind_due() == 0
    finally:
        restarted.close()
    [reminder] = rt.notifications.inbox(org.ann).notifications
    assert (reminder.kind, reminder.record_id, reminder.title) == (
        "pool.reminder", record["id"], f"Follow up before {(created + timedelta(days=30)).isoformat()}")

    visit_at(rt, record, created + timedelta(days=29))
    rt.clock.set(created + timedelta(days=29 + 27, seconds=1))
    assert rt.pools.remind_due() == 1
    assert rt.notifications.unread_count(org.ann) == 2
    rt.clock.set(created + timedelta(days=29 + 31))
    assert rt.pools.remind_due() == 0
    assert rt.pools.recycle_due() == 1


def test_the_hourly_jobs_recycle_and_remind(rt, org, pool):
    record = lead(rt, org.ann)
    created = rt.records.get(S, "lead", record["id"])["created_at"]
    rt.clock.set(created + timedelta(days=31))
    made = rt.jobs.tick()
    assert len(made) == 2
    assert rt.jobs.run_due() == 2
    assert sorted((j.kind, j.status) for j in rt.jobs.list(S)) == [("pools.recycle", "succeeded"), ("pools.remind", "succeeded")]
    assert owner(rt, record) is None
    assert rt.jobs.tick() == []


# -- racing claims --------------------------------------------------------------------------------
def test_racing_claims_have_exactly_one_winner(postgres_url):
    rt = Runtime.connect(postgres_url, clock=ManualClock(start_of_second())).install()
    try:
        rt.metadata.create_objects(S, OBJECTS)
        org = Org(rt)
        sec = rt.security
        racers = []
        for i in range(8):
            user = sec.create_user(S, {"username": f"racer{i}"})
            sec.add_membership(S, user["id"], org.shanghai, "sales")
            racers.append(sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"]))
        rt.pools.create_pool(S, definition(org))
        record = in_pool(rt, org)
        barrier = threading.Barrier(len(racers))
        outcomes: list = [None] * len(racers)

        def race(index):
            barrier.wait()
            try:
                outcomes[index] = rt.pools.claim(racers[index], "leads", record["id"]).to_owner_id
            except LowcodeError as error:
                outcomes[index] = error.code

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        winners = [o for o in outcomes if o not in ("CONFLICT",)]
        assert len(winners) == 1 and outcomes.count("CONFLICT") == 7, outcomes
        assert owner(rt, record) == winners[0]
        assert [(m.action, m.to_owner_id) for m in rt.pools.moves(S, "leads", record["id"])] == [
            ("release", None), ("claim", winners[0])]
    finally:
        rt.close()


def test_one_user_claiming_several_records_at_once_stays_within_the_daily_limit(postgres_url):
    rt = Runtime.connect(postgres_url, clock=ManualClock(start_of_second())).install()
    try:
        rt.metadata.create_objects(S, OBJECTS)
        org = Org(rt)
        sec = rt.security
        user = sec.create_user(S, {"username": "eager"})
        sec.add_membership(S, user["id"], org.shanghai, "sales")
        eager = sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"])
        rt.pools.create_pool(S, definition(org))
        records = [in_pool(rt, org, name=f"Lead {i}") for i in range(6)]
        barrier = threading.Barrier(len(records))
        outcomes: list = [None] * len(records)

        def claim(index):
            barrier.wait()
            try:
                outcomes[index] = rt.pools.claim(eager, "leads", records[index]["id"]).action
            except LowcodeError as error:
                outcomes[index] = error.code

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(records))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["CLAIM_LIMIT"] * 4 + ["claim"] * 2, outcomes
    finally:
        rt.close()
