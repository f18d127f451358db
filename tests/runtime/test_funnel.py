"""The sales funnel, weighted forecast and stage conversions, through the public RecordService.

One generated data set per database (``module_database_url``: SQLite, then PostgreSQL), only read
by the tests: an opportunity object with two business types (product sale and project sale, six
stages each, one won and one lost), a few hundred records over eight quarters owned by sales reps
of an org tree, moved along their stages (skipping some, losing and reopening others), a few in the
recycle bin. Every expectation is computed here from the generated data and the moves made, never
from the platform's answers.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import pytest
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.metadata.errors import Forbidden, NotFound, ValidationFailed
from lowcode.runtime import Runtime

S = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

OPPORTUNITY = {
    "api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities", "plural_label": "Opportunities",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 14, "scale": 2}},
        {"api_name": "cost", "label": "Cost", "type": "decimal", "options": {"precision": 12, "scale": 3}},
        {"api_name": "seats", "label": "Seats", "type": "integer"},
        {"api_name": "close_date", "label": "Close date", "type": "date"},
        {"api_name": "signed_at", "label": "Signed at", "type": "datetime"},
        {"api_name": "segment", "label": "Segment", "type": "picklist", "options": PICK("smb", "enterprise")},
    ],
}
MEMO = {"api_name": "memo", "label": "Memo", "plural_api_name": "memos", "plural_label": "Memos",
        "fields": [{"api_name": "title", "label": "Title", "type": "text"},
                   {"api_name": "value", "label": "Value", "type": "decimal"}]}


def stage(api_name: str, probability: int, category: str = "open") -> dict[str, Any]:
    return {"api_name": api_name, "label": api_name.replace("_", " ").title(), "probability": probability, "category": category}


TYPES = [
    {"api_name": "product", "label": "Product sale", "stages": [
        stage("p_prospect", 10), stage("p_qualify", 30), stage("p_propose", 50), stage("p_negotiate", 70),
        stage("p_won", 100, "won"), stage("p_lost", 0, "lost")]},
    {"api_name": "project", "label": "Project sale", "stages": [
        stage("j_scope", 5), stage("j_design", 20), stage("j_offer", 45), stage("j_commit", 80),
        stage("j_won", 100, "won"), stage("j_lost", 0, "lost")]},
]
PROBABILITY = {s["api_name"]: s["probability"] for kind in TYPES for s in kind["stages"]}
ORDER = {s["api_name"]: (k, i) for k, kind in enumerate(TYPES) for i, s in enumerate(kind["stages"])}
TYPE_OF = {s["api_name"]: kind["api_name"] for kind in TYPES for s in kind["stages"]}
OPEN = {kind["api_name"]: [s["api_name"] for s in kind["stages"] if s["category"] == "open"] for kind in TYPES}
WON = {kind["api_name"]: next(s["api_name"] for s in kind["stages"] if s["category"] == "won") for kind in TYPES}
LOST = {kind["api_name"]: next(s["api_name"] for s in kind["stages"] if s["category"] == "lost") for kind in TYPES}
PATH = {name: [*OPEN[name], WON[name]] for name in OPEN}
"""Each type's path to won (lost stages are not on it)."""

RECORDS = 300
FIRST_DAY = date(2023, 1, 1)
DAYS = 730  # eight quarters: 2023 and 2024
REPS = {"ann": "n1", "ben": "n1", "cat": "n2", "dan": "s1", "eve": "s1", "hal": "root"}


@dataclass
class Opportunity:
    name: str
    business_type: str
    owner: str
    unit: str
    amount: Decimal | None
    cost: Decimal | None
    close_date: date | None
    signed_at: datetime | None
    """Around midnight (UTC) of the close date, ±3 hours: some fall into the period before."""
    segment: str
    journey: list[str]
    """Every stage the record entered, in order (the first on create)."""
    id: str = ""
    deleted: bool = False

    @property
    def stage(self) -> str:
        return self.journey[-1]


@dataclass
class World:
    rt: Runtime
    units: dict[str, str]
    """unit key -> id"""
    parent: dict[str, str | None]
    users: dict[str, Any] = field(default_factory=dict)
    """username -> authenticated Actor"""
    user_ids: dict[str, str] = field(default_factory=dict)
    opportunities: list[Opportunity] = field(default_factory=list)

    def subtree(self, key: str) -> set[str]:
        found = {key}
        changed = True
        while changed:
            changed = False
            for child, parent in self.parent.items():
                if parent in found and child not in found:
                    found.add(child)
                    changed = True
        return found

    def live(self, keep: Callable[[Opportunity], bool] = lambda o: True) -> list[Opportunity]:
        return [o for o in self.opportunities if not o.deleted and keep(o)]


def journey_of(rng: random.Random, kind: str) -> list[str]:
    """A record's way through its stages: a start (sometimes past the first stage), steps of one or
    two stages forward, sometimes lost (and now and then reopened), sometimes won."""
    path = OPEN[kind]
    position = rng.choice([0, 0, 0, 0, 1, 2])
    journey = [path[position]]
    reopened = False
    while True:
        roll = rng.random()
        if roll < 0.3:
            return journey
        if roll < 0.45:
            journey.append(LOST[kind])
            if reopened or rng.random() < 0.75:
                return journey
            reopened = True
            position = rng.randrange(position + 1)
            journey.append(path[position])
            continue
        position += 2 if rng.random() < 0.25 else 1
        if position >= len(path):
            journey.append(WON[kind])
            return journey
        journey.append(path[position])


@pytest.fixture(scope="module")
def world(module_database_url) -> World:
    rt = Runtime.connect(module_database_url).install()
    rt.metadata.create_objects(S, [OPPORTUNITY, MEMO])
    for kind in TYPES:
        rt.metadata.create_business_type(S, "opportunity", kind)
    sec = rt.security
    root = sec.create_unit(S, "Group")
    north = sec.create_unit(S, "North", root["id"])
    south = sec.create_unit(S, "South", root["id"])
    units = {"root": root["id"], "north": north["id"], "south": south["id"],
             "n1": sec.create_unit(S, "North one", north["id"])["id"], "n2": sec.create_unit(S, "North two", north["id"])["id"],
             "s1": sec.create_unit(S, "South one", south["id"])["id"]}
    world = World(rt, units, {"root": None, "north": "root", "south": "root", "n1": "north", "n2": "north", "s1": "south"})
    sec.create_role(S, "rep", "Sales rep")
    sec.set_object_grant(S, "rep", "opportunity", ["read", "create", "update"], "own", "own")
    sec.create_role(S, "director", "Regional director")
    sec.set_object_grant(S, "director", "opportunity", ["read"], "unit_and_below", "own")
    sec.create_role(S, "analyst", "Analyst")
    sec.set_object_grant(S, "analyst", "opportunity", ["read"], "all", "own")
    sec.set_field_grant(S, "analyst", "opportunity", "amount", "hidden")
    sec.create_role(S, "writer", "Writer")
    sec.set_object_grant(S, "writer", "opportunity", ["create"], "own", "own")
    for username, unit, role in [*((name, unit, "rep") for name, unit in REPS.items()),
                                 ("dora", "north", "director"), ("ian", "root", "analyst"), ("wes", "root", "writer")]:
        user = sec.create_user(S, {"username": username})
        sec.add_membership(S, user["id"], units[unit], role)
        world.user_ids[username] = user["id"]
    for username, user_id in world.user_ids.items():
        world.users[username] = sec.authenticate(sec.issue_token(S, "tests", user_id=user_id)["token"])

    rng = random.Random(20240605)
    zones = [timezone(timedelta(hours=h)) for h in (-8, -2, 0, 2, 5.5, 9)]
    for i in range(RECORDS):
        kind = "product" if rng.random() < 0.62 else "project"
        owner = rng.choice(sorted(REPS))
        close = None if rng.random() < 0.05 else FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        world.opportunities.append(Opportunity(
            name=f"opp {i:03d}", business_type=kind, owner=owner, unit=REPS[owner],
            amount=None if rng.random() < 0.05 else Decimal(rng.randrange(10_000, 10_000_000)) / 100,
            cost=None if rng.random() < 0.1 else Decimal(rng.randrange(1, 5_000_000)) / 1000, close_date=close,
            signed_at=None if close is None else datetime.combine(close, time(), timezone.utc) + timedelta(minutes=rng.randrange(-180, 180)),
            segment=rng.choice(["smb", "smb", "enterprise"]), journey=journey_of(rng, kind)))
    created = rt.records.bulk_create(S, "opportunity", [{
        "name": o.name, "business_type": o.business_type, "stage": o.journey[0], "amount": o.amount, "cost": o.cost,
        "close_date": o.close_date.isoformat() if o.close_date else None, "segment": o.segment,
        "signed_at": o.signed_at.astimezone(rng.choice(zones)).isoformat() if o.signed_at else None,
        "owner_id": world.user_ids[o.owner], "org_unit_id": units[o.unit]} for o in world.opportunities])
    for opportunity, record in zip(world.opportunities, created):
        assert (record["name"], record["stage"]) == (opportunity.name, opportunity.journey[0])
        opportunity.id = record["id"]
    for step in range(1, max(len(o.journey) for o in world.opportunities)):
        moves = [{"id": o.id, "values": {"stage": o.journey[step]}} for o in world.opportunities if len(o.journey) > step]
        rt.records.bulk_update(S, "opportunity", moves)
    for opportunity in rng.sample(world.opportunities, 12):
        rt.records.delete(S, "opportunity", opportunity.id)
        opportunity.deleted = True
    yield world
    rt.close()


# -- expectations, computed from the generated data -----------------------------------------------
def first_day(day: date | None, period: str | None) -> date | None:
    if day is None or period is None:
        return None
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return date(day.year, 1, 1)


def expected_funnel(world: World, records: list[Opportunity], amount_field: str = "amount", period: str | None = None,
                    by_owner: bool = False, date_field: str = "close_date") -> list[dict[str, Any]]:
    groups: dict[tuple, list[Opportunity]] = defaultdict(list)
    for o in records:
        owner = world.user_ids[o.owner] if by_owner else None
        day = o.close_date if date_field == "close_date" else o.signed_at.date() if o.signed_at else None
        groups[(first_day(day, period), o.stage, owner)].append(o)
    rows = []
    for (period_start, stage_name, owner), members in groups.items():
        amounts = [getattr(o, amount_field) for o in members if getattr(o, amount_field) is not None]
        amount = sum(amounts, Decimal(0)) if amounts else None
        probability = PROBABILITY[stage_name]
        rows.append({
            "period": period_start, "business_type": TYPE_OF[stage_name], "stage": stage_name,
            "category": "won" if stage_name in WON.values() else "lost" if stage_name in LOST.values() else "open",
            "probability": probability, "owner_id": owner, "count": len(members), "amount": amount,
            "weighted_amount": None if amount is None else amount * probability / Decimal(100),
        })
    rows.sort(key=lambda r: (r["period"] is None, r["period"] or date.min, ORDER[r["stage"]], r["owner_id"] or ""))
    return rows


def expected_conversions(records: list[Opportunity]) -> list[dict[str, Any]]:
    steps = []
    for kind, path in PATH.items():
        furthest = [max(path.index(s) for s in o.journey if s in path) for o in records if o.business_type == kind]
        reached = [sum(1 for f in furthest if f >= i) for i in range(len(path))]
        for i in range(len(path) - 1):
            steps.append({"business_type": kind, "from_stage": path[i], "to_stage": path[i + 1], "reached": reached[i],
                          "converted": reached[i + 1],
                          "rate": None if not reached[i] else (Decimal(reached[i + 1]) / Decimal(reached[i])).quantize(Decimal("0.0001"))})
    return steps


def exact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with Decimal values paired with their types (Decimal("1.50") == 1.5 would hide a float)."""
    return [{k: (type(v).__name__, v) for k, v in row.items()} for row in rows]


def in_units(world: World, *keys: str) -> Callable[[Opportunity], bool]:
    wanted = set().union(*(world.subtree(k) for k in keys))
    return lambda o: o.unit in wanted


# -- the data set itself ----------------------------------------------------------------------------
def test_the_data_set_covers_what_the_funnel_must_handle(world):
    live = world.live()
    assert len(live) == RECORDS - 12
    assert {o.stage for o in live} == set(PROBABILITY)  # every stage of both types holds records
    assert {first_day(o.close_date, "quarter") for o in live} == {date(y, m, 1) for y in (2023, 2024) for m in (1, 4, 7, 10)} | {None}
    assert any(o.amount is None for o in live) and any(o.cost is None for o in live)
    assert any(o.journey[0] != OPEN[o.business_type][0] for o in live)  # created past the first stage
    assert any(any(PATH[o.business_type].index(b) - PATH[o.business_type].index(a) > 1
                   for a, b in zip(o.journey, o.journey[1:]) if a in PATH[o.business_type] and b in PATH[o.business_type])
               for o in live)  # a skipped stage
    assert any(LOST[o.business_type] in o.journey[:-1] for o in live)  # lost, then reopened
    stored = {r["id"]: r for r in world.rt.records.query(S, "opportunity", first=1000, fields=["stage", "amount"]).records}
    assert {o.id: (o.stage, o.amount) for o in live} == {i: (r["stage"], r["amount"]) for i, r in stored.items()}


# -- the funnel -----------------------------------------------------------------------------------
@pytest.mark.parametrize("period", [None, "month", "quarter", "year"])
def test_funnel_per_stage_and_period(world, period):
    rows = world.rt.records.funnel(S, "opportunity", amount_field="amount", date_field="close_date" if period else None,
                                   period=period)
    assert exact(rows) == exact(expected_funnel(world, world.live(), period=period))


@pytest.mark.parametrize("period", ["month", "quarter", "year"])
def test_funnel_per_period_of_a_datetime_in_utc(world, period):
    live = world.live()
    assert any(o.signed_at.date() != o.close_date for o in live if o.signed_at and o.signed_at.day == 31)  # across periods
    rows = world.rt.records.funnel(S, "opportunity", amount_field="amount", date_field="signed_at", period=period)
    assert exact(rows) == exact(expected_funnel(world, live, period=period, date_field="signed_at"))


def test_funnel_per_owner_and_over_another_measure(world):
    rows = world.rt.records.funnel(S, "opportunity", amount_field="amount", by_owner=True)
    assert exact(rows) == exact(expected_funnel(world, world.live(), by_owner=True))
    rows = world.rt.records.funnel(S, "opportunity", amount_field="cost", date_field="close_date", period="year", by_owner=True)
    assert exact(rows) == exact(expected_funnel(world, world.live(), "cost", "year", True))
    rows = world.rt.records.funnel(S, "opportunity", amount_field="seats")
    assert [(r["stage"], r["count"], r["amount"], r["weighted_amount"]) for r in rows] == [
        (r["stage"], r["count"], None, None) for r in expected_funnel(world, world.live())]


def test_the_totals_add_up(world):
    rows = world.rt.records.funnel(S, "opportunity", amount_field="amount", date_field="close_date", period="month", by_owner=True)
    live = world.live()
    assert sum(r["count"] for r in rows) == len(live)
    assert sum(r["amount"] or 0 for r in rows) == sum(o.amount for o in live if o.amount is not None)
    weighted = sum(o.amount * PROBABILITY[o.stage] / Decimal(100) for o in live if o.amount is not None)
    assert sum(r["weighted_amount"] or 0 for r in rows) == weighted


def test_a_regional_director_sees_only_their_subtree(world):
    dora = world.users["dora"]
    north = world.live(in_units(world, "north"))
    assert 0 < len(north) < len(world.live())
    for period in (None, "quarter"):
        rows = world.rt.records.funnel(dora, "opportunity", amount_field="amount", date_field="close_date", period=period)
        assert exact(rows) == exact(expected_funnel(world, north, period=period))
    rows = world.rt.records.funnel(dora, "opportunity", amount_field="amount", by_owner=True)
    assert exact(rows) == exact(expected_funnel(world, north, by_owner=True))
    assert {r["owner_id"] for r in rows} == {world.user_ids[name] for name in ("ann", "ben", "cat")}


def test_a_rep_sees_only_their_own_records(world):
    rows = world.rt.records.funnel(world.users["cat"], "opportunity", amount_field="amount", date_field="close_date", period="year")
    assert exact(rows) == exact(expected_funnel(world, world.live(lambda o: o.owner == "cat"), period="year"))


def test_unit_limits_to_a_subtree(world):
    records = world.rt.records
    for key in ("north", "n1", "south", "s1", "root"):
        rows = records.funnel(S, "opportunity", amount_field="amount", date_field="close_date", period="quarter", unit=world.units[key])
        assert exact(rows) == exact(expected_funnel(world, world.live(in_units(world, key)), period="quarter")), key
    dora = world.users["dora"]
    assert records.funnel(dora, "opportunity", amount_field="amount", unit=world.units["n2"]) == expected_funnel(
        world, world.live(in_units(world, "n2")))
    assert records.funnel(dora, "opportunity", amount_field="amount", unit=world.units["south"]) == []
    assert records.funnel(dora, "opportunity", amount_field="amount", unit=world.units["root"]) == expected_funnel(
        world, world.live(in_units(world, "north")))
    assert records.funnel(S, "opportunity", amount_field="amount", unit="01900000-0000-7000-8000-000000000000") == []


def test_a_filter_combines_with_the_unit_and_the_scope(world):
    records = world.rt.records
    enterprise = {"segment": {"eq": "enterprise"}}
    big = {"and": [enterprise, {"amount": {"gte": "25000"}}]}
    assert exact(records.funnel(S, "opportunity", amount_field="amount", filter=enterprise)) == exact(
        expected_funnel(world, world.live(lambda o: o.segment == "enterprise")))
    assert exact(records.funnel(S, "opportunity", amount_field="amount", period="month", date_field="close_date", filter=big,
                                unit=world.units["south"])) == exact(expected_funnel(world, world.live(
        lambda o: o.segment == "enterprise" and o.amount is not None and o.amount >= 25000 and o.unit in world.subtree("south")),
        period="month"))
    assert exact(records.funnel(world.users["dora"], "opportunity", amount_field="amount", filter=big, by_owner=True)) == exact(
        expected_funnel(world, world.live(lambda o: o.segment == "enterprise" and o.amount is not None and o.amount >= 25000
                                          and o.unit in world.subtree("north")), by_owner=True))


def test_a_hidden_amount_is_forbidden(world):
    ian = world.users["ian"]
    with pytest.raises(Forbidden) as caught:
        world.rt.records.funnel(ian, "opportunity", amount_field="amount")
    assert [(e.code, e.field) for e in caught.value.errors] == [("FORBIDDEN", "amount_field")]
    with pytest.raises(Forbidden):
        world.rt.records.funnel(ian, "opportunity", amount_field="cost", filter={"amount": {"gt": 1}})
    # the analyst reads everything else
    assert exact(world.rt.records.funnel(ian, "opportunity", amount_field="cost")) == exact(expected_funnel(world, world.live(), "cost"))
    with pytest.raises(Forbidden):
        world.rt.records.funnel(world.users["wes"], "opportunity", amount_field="amount")
    with pytest.raises(Forbidden):
        world.rt.records.stage_conversions(world.users["wes"], "opportunity")


@pytest.mark.parametrize("arguments, errors", [
    ({"amount_field": "name"}, [("INVALID_VALUE", "amount_field")]),
    ({"amount_field": "nope"}, [("INVALID_VALUE", "amount_field")]),
    ({"amount_field": "close_date"}, [("INVALID_VALUE", "amount_field")]),
    ({"amount_field": None}, [("INVALID_VALUE", "amount_field")]),
    ({"amount_field": "amount", "period": "month"}, [("INVALID_VALUE", "date_field")]),
    ({"amount_field": "amount", "period": "month", "date_field": "segment"}, [("INVALID_VALUE", "date_field")]),
    ({"amount_field": "amount", "period": "quarter", "date_field": "nope"}, [("INVALID_VALUE", "date_field")]),
    ({"amount_field": "amount", "period": "day", "date_field": "close_date"}, [("INVALID_VALUE", "period")]),
    ({"amount_field": "amount", "period": "week", "date_field": "close_date"}, [("INVALID_VALUE", "period")]),
    ({"amount_field": "segment", "period": "week", "date_field": "close_date"}, [("INVALID_VALUE", "amount_field"), ("INVALID_VALUE", "period")]),
    ({"amount_field": "amount", "unit": "north"}, [("INVALID_VALUE", "unit")]),
    ({"amount_field": "amount", "filter": {"nope": {"eq": 1}}}, [("UNKNOWN_FIELD", "filter.nope")]),
])
def test_bad_arguments_are_exact_errors(world, arguments, errors):
    with pytest.raises(ValidationFailed) as caught:
        world.rt.records.funnel(S, "opportunity", **arguments)
    assert [(e.code, e.field) for e in caught.value.errors] == errors


def test_bad_argument_messages_and_objects_without_stages(world):
    records = world.rt.records
    with pytest.raises(ValidationFailed) as caught:
        records.funnel(S, "opportunity", amount_field="name", period="week", date_field="segment")
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "INVALID_VALUE", "field": "amount_field", "message": "name a number, decimal or currency field of the object"},
        {"code": "INVALID_VALUE", "field": "date_field", "message": "name a date or datetime field of the object"}]
    with pytest.raises(ValidationFailed) as caught:
        records.funnel(S, "opportunity", amount_field="amount", period="day", date_field="close_date")
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "INVALID_VALUE", "field": "period", "message": "must be month, quarter or year"}]
    with pytest.raises(ValidationFailed) as caught:
        records.funnel(S, "opportunity", amount_field="amount", unit="somewhere")
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "INVALID_VALUE", "field": "unit", "message": "must be the id of an org unit"}]
    with pytest.raises(ValidationFailed) as caught:
        records.funnel(S, "memo", amount_field="value")
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "NO_STAGES", "field": None, "message": "'memo' has no stages: define business types with stages first"}]
    with pytest.raises(ValidationFailed) as caught:
        records.funnel(S, "memo", amount_field="title")
    assert [(e.code, e.field) for e in caught.value.errors] == [("NO_STAGES", None), ("INVALID_VALUE", "amount_field")]
    with pytest.raises(NotFound):
        records.funnel(S, "nothing", amount_field="amount")
    assert records.stage_conversions(S, "memo") == []
    with pytest.raises(NotFound):
        records.stage_conversions(S, "nothing")
    with pytest.raises(ValidationFailed) as caught:
        records.stage_conversions(S, "opportunity", unit="somewhere")
    assert [(e.code, e.field) for e in caught.value.errors] == [("INVALID_VALUE", "unit")]


# -- stage conversions ------------------------------------------------------------------------------
def test_stage_conversions_follow_the_moves_made(world):
    rows = world.rt.records.stage_conversions(S, "opportunity")
    assert exact(rows) == exact(expected_conversions(world.live()))
    assert [(r["business_type"], r["from_stage"], r["to_stage"]) for r in rows] == [
        ("product", "p_prospect", "p_qualify"), ("product", "p_qualify", "p_propose"), ("product", "p_propose", "p_negotiate"),
        ("product", "p_negotiate", "p_won"), ("project", "j_scope", "j_design"), ("project", "j_design", "j_offer"),
        ("project", "j_offer", "j_commit"), ("project", "j_commit", "j_won")]
    product = [o for o in world.live() if o.business_type == "product"]
    assert rows[0]["reached"] == len(product)  # every record reached its first stage, even when created past it


def test_stage_conversions_within_scope_unit_and_filter(world):
    records = world.rt.records
    dora = world.users["dora"]
    north = world.live(in_units(world, "north"))
    assert exact(records.stage_conversions(dora, "opportunity")) == exact(expected_conversions(north))
    assert exact(records.stage_conversions(dora, "opportunity", unit=world.units["n1"])) == exact(
        expected_conversions(world.live(in_units(world, "n1"))))
    assert exact(records.stage_conversions(S, "opportunity", unit=world.units["south"], filter={"segment": {"eq": "smb"}})) == exact(
        expected_conversions(world.live(lambda o: o.segment == "smb" and o.unit in world.subtree("south"))))
    assert exact(records.stage_conversions(world.users["eve"], "opportunity")) == exact(
        expected_conversions(world.live(lambda o: o.owner == "eve")))
    empty = records.stage_conversions(dora, "opportunity", unit=world.units["south"])
    assert [(r["reached"], r["converted"], r["rate"]) for r in empty] == [(0, 0, None)] * 8


def test_a_record_that_changed_business_type_counts_on_the_paths_it_went_along(runtime):
    """The conversion counts follow each record's stage history per business type: a record that
    reached a stage of one type and then moved to another type reached that stage."""
    rt = runtime
    rt.metadata.create_objects(S, [OPPORTUNITY])
    for kind in TYPES:
        rt.metadata.create_business_type(S, "opportunity", kind)
    a = rt.records.create(S, "opportunity", {"business_type": "project", "name": "project, then product"})
    rt.records.update(S, "opportunity", a["id"], {"business_type": "product", "stage": "p_prospect"})
    rt.records.update(S, "opportunity", a["id"], {"stage": "p_qualify"})
    b = rt.records.create(S, "opportunity", {"name": "product, then project"})
    rt.records.update(S, "opportunity", b["id"], {"stage": "p_negotiate"})
    rt.records.update(S, "opportunity", b["id"], {"business_type": "project", "stage": "j_scope"})
    assert [(h["business_type"], h["stage"]) for h in rt.records.stage_history(S, "opportunity", a["id"])] == [
        ("project", "j_scope"), ("product", "p_prospect"), ("product", "p_qualify")]
    rows = rt.records.stage_conversions(S, "opportunity")
    assert [(r["from_stage"], r["reached"], r["converted"]) for r in rows] == [
        ("p_prospect", 2, 2), ("p_qualify", 2, 1), ("p_propose", 1, 1), ("p_negotiate", 1, 0),
        ("j_scope", 2, 0), ("j_design", 0, 0), ("j_offer", 0, 0), ("j_commit", 0, 0)]
