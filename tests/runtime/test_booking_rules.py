"""Booking rules through the metadata and record services, on SQLite and PostgreSQL: the rule's
checks, overlaps refused on every write path (and by the database itself, for writers that bypass
the service, and under concurrency on PostgreSQL), availability and occupancy against figures
computed independently in this module, and the caller's read scope on the resources.
"""
from __future__ import annotations

import random
import threading
import uuid
from calendar import monthrange
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Conflict,
    InUse,
    InvalidDefinition,
    NotFound,
    UnsafeChange,
    ValidationFailed,
)
from lowcode.runtime import Runtime
from lowcode.runtime.reading import Selection, Window
from sqlalchemy.exc import IntegrityError

PASSWORD = "a long password 1"
ROOM = {"api_name": "room", "label": "Room", "plural_api_name": "rooms", "fields": [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "city", "label": "City", "type": "text"}]}
RESERVATION = {"api_name": "reservation", "label": "Reservation", "fields": [
    {"api_name": "room", "label": "Room", "type": "lookup", "options": {"target": "room", "on_delete": "restrict"}},
    {"api_name": "starts", "label": "Starts", "type": "date"},
    {"api_name": "ends", "label": "Ends", "type": "date"},
    {"api_name": "note", "label": "Note", "type": "text"},
    {"api_name": "status", "label": "Status", "type": "picklist", "default": "hold", "options": {"values": [
        {"api_name": "hold", "label": "Hold"}, {"api_name": "confirmed", "label": "Confirmed"},
        {"api_name": "cancelled", "label": "Cancelled"}]}}]}
RULE = {"api_name": "room_booking", "label": "Room booking", "resource_field": "room", "start_field": "starts",
        "end_field": "ends", "status_field": "status", "active_values": ["hold", "confirmed"],
        "message": "The room is taken on some of these days."}
ACTIVE = {"hold", "confirmed"}


def day(n: int) -> date:
    return date(2027, 1, 1) + timedelta(days=n)


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url).install()
    runtime.metadata.create_objects(S, [ROOM, RESERVATION])
    yield runtime
    runtime.close()


@pytest.fixture
def booked(rt):
    rt.metadata.create_booking_rule(S, "reservation", RULE)
    return rt


def rooms(rt, *names, **values):
    return [rt.records.create(S, "room", {"name": name, **values})["id"] for name in names]


def reserve(rt, room, start, end, status="hold", actor=S):
    return rt.records.create(actor, "reservation", {"room": room, "starts": start.isoformat(), "ends": end.isoformat(),
                                                    "status": status})


def iso(room, start, end, status="hold"):
    return {"room": room, "starts": start.isoformat(), "ends": end.isoformat(), "status": status}


def problems(caught) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in caught.value.errors]


# -- the rule ---------------------------------------------------------------------------------------
def test_a_rule_naming_fields_of_the_wrong_kind_is_refused_with_every_problem(rt):
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_booking_rule(S, "reservation", {**RULE, "resource_field": "note", "start_field": "starts",
                                                           "end_field": "status", "status_field": "nope",
                                                           "active_values": ["hold"]})
    assert problems(caught) == [("INVALID_FIELD_TYPE", "resource_field"), ("INVALID_FIELD_TYPE", "end_field"),
                                ("UNKNOWN_FIELD", "status_field")]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_booking_rule(S, "reservation", {**RULE, "active_values": ["hold", "maybe"]})
    assert problems(caught) == [("UNKNOWN_VALUE", "active_values.1")]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_booking_rule(S, "reservation", {**RULE, "active_values": []})
    assert problems(caught) == [("REQUIRED", "active_values")]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_booking_rule(S, "reservation", {**RULE, "end_field": "starts", "status_field": None})
    assert problems(caught) == [("INVALID_VALUE", "end_field"), ("INVALID_VALUE", "active_values")]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_booking_rule(S, "reservation", {"api_name": "Bad Name"})
    assert {field for _, field in problems(caught)} >= {"api_name", "label", "resource_field", "start_field", "end_field"}
    assert rt.catalog().object("reservation").booking_rules == ()


def test_an_object_has_one_booking_rule_and_the_catalog_serves_it(booked):
    rule = booked.catalog().object("reservation").booking_rules[0]
    assert rule.as_dict() == {**RULE, "active_values": ["hold", "confirmed"]}
    with pytest.raises(InvalidDefinition) as caught:
        booked.metadata.create_booking_rule(S, "reservation", {**RULE, "api_name": "second"})
    assert problems(caught) == [("ONE_PER_OBJECT", "api_name")]
    with pytest.raises(InvalidDefinition) as caught:
        booked.metadata.create_booking_rule(S, "reservation", RULE)
    assert problems(caught) == [("DUPLICATE", "api_name")]
    assert booked.metadata.changes("reservation", limit=1)[0]["action"] == "create_booking_rule"


def test_a_rule_is_refused_while_records_already_overlap_and_nothing_changes(rt):
    (room,) = rooms(rt, "Jade hall")
    reserve(rt, room, day(0), day(5))
    second = reserve(rt, room, day(5), day(9))
    version = rt.catalog().version
    with pytest.raises(UnsafeChange) as caught:
        rt.metadata.create_booking_rule(S, "reservation", RULE)
    assert caught.value.ctx["overlapping_pairs"] == 1
    assert rt.catalog().version == version
    reserve(rt, room, day(1), day(2))
    rt.records.update(S, "reservation", second["id"], {"status": "cancelled"})
    with pytest.raises(UnsafeChange):
        rt.metadata.create_booking_rule(S, "reservation", RULE)
    rt.records.delete(S, "reservation", reserve(rt, room, day(20), day(19), status="cancelled")["id"])
    rt.records.update(S, "reservation", rt.records.query(S, "reservation", filter={"starts": {"eq": day(1).isoformat()}}).records[0]["id"],
                      {"status": "cancelled"})
    assert rt.metadata.create_booking_rule(S, "reservation", RULE).api_name == "room_booking"


def test_fields_a_rule_reads_cannot_be_deleted_or_change_type(booked):
    with pytest.raises(InUse) as caught:
        booked.metadata.delete_field(S, "reservation", "ends")
    assert caught.value.ctx["used_by"] == ["booking rule 'room_booking'"]
    with pytest.raises(InUse):
        booked.metadata.update_field(S, "reservation", "status", {"type": "text"})
    booked.metadata.delete_field(S, "reservation", "note")


# -- writes -----------------------------------------------------------------------------------------
def test_overlapping_active_bookings_of_one_resource_are_refused_on_every_write(booked):
    rt = booked
    jade, pearl = rooms(rt, "Jade hall", "Pearl hall")
    first = reserve(rt, jade, day(0), day(4), "confirmed")
    with pytest.raises(ValidationFailed) as caught:
        reserve(rt, jade, day(4), day(6))
    assert problems(caught) == [("OVERLAP", "starts")]
    assert caught.value.errors[0].message == "The room is taken on some of these days."
    adjacent = reserve(rt, jade, day(5), day(6))
    reserve(rt, pearl, day(0), day(4))
    reserve(rt, jade, day(2), day(3), "cancelled")
    with pytest.raises(ValidationFailed) as caught:
        rt.records.bulk_create(S, "reservation", [
            iso(pearl, day(10), day(12)), iso(pearl, day(12), day(14)), iso(jade, day(7), day(7)), iso(jade, day(6), day(8))])
    assert problems(caught) == [("OVERLAP", "1.starts"), ("OVERLAP", "3.starts")]
    with pytest.raises(ValidationFailed) as caught:
        rt.records.update(S, "reservation", adjacent["id"], {"starts": day(3).isoformat()})
    assert problems(caught) == [("OVERLAP", "starts")]
    cancelled = rt.records.query(S, "reservation", filter={"status": {"eq": "cancelled"}}).records[0]
    with pytest.raises(ValidationFailed) as caught:
        rt.records.update(S, "reservation", cancelled["id"], {"status": "hold"})
    assert problems(caught) == [("OVERLAP", "starts")]
    with pytest.raises(ValidationFailed) as caught:
        rt.records.bulk_update(S, "reservation", [{"id": adjacent["id"], "values": {"note": "fine"}},
                                                  {"id": cancelled["id"], "values": {"status": "confirmed"}}])
    assert problems(caught) == [("OVERLAP", "1.starts")]
    with pytest.raises(ValidationFailed) as caught:
        reserve(rt, pearl, day(30), day(29))
    assert problems(caught) == [("INVALID_RANGE", "ends")]
    assert rt.records.update(S, "reservation", first["id"], {"ends": day(3).isoformat(), "note": "shorter"})["ends"] == day(3)
    assert len(rt.records.query(S, "reservation", first=100).records) == 4


def test_deleted_bookings_free_their_days_and_cannot_come_back_into_taken_ones(booked):
    rt = booked
    (jade,) = rooms(rt, "Jade hall")
    first = reserve(rt, jade, day(0), day(4))
    rt.records.delete(S, "reservation", first["id"])
    taker = reserve(rt, jade, day(3), day(8))
    with pytest.raises(Conflict) as caught:
        rt.records.restore(S, "reservation", first["id"])
    assert caught.value.field == "starts"
    rt.records.update(S, "reservation", taker["id"], {"status": "cancelled"})
    assert rt.records.restore(S, "reservation", first["id"])["deleted_at"] is None


def raw_insert(rt, room, start, end, status="hold"):
    """A write around the record service (as a migration script or another program would make)."""
    table = rt.catalog().table("reservation")
    with rt.engine.begin() as conn:
        conn.execute(table.insert().values(id=str(uuid.uuid4()), version=1, created_at=datetime.now(timezone.utc),
                                           updated_at=datetime.now(timezone.utc), room=room, starts=start, ends=end, status=status))


def test_the_database_itself_refuses_an_overlap_written_around_the_service_even_after_the_table_changes(booked):
    rt = booked
    (jade,) = rooms(rt, "Jade hall")
    reserve(rt, jade, day(0), day(4))
    with pytest.raises(IntegrityError):
        raw_insert(rt, jade, day(4), day(5))
    raw_insert(rt, jade, day(4), day(5), "cancelled")
    rt.metadata.create_field(S, "reservation", {"api_name": "organizer", "label": "Organizer", "type": "lookup",
                                                "options": {"target": "user"}})
    rt.metadata.delete_field(S, "reservation", "note")
    with pytest.raises(IntegrityError):
        raw_insert(rt, jade, day(2), day(2), "confirmed")
    rt.metadata.delete_booking_rule(S, "reservation", "room_booking")
    raw_insert(rt, jade, day(2), day(2), "confirmed")
    assert reserve(rt, jade, day(1), day(1))["status"] == "hold"
    with pytest.raises(NotFound):
        rt.metadata.delete_booking_rule(S, "reservation", "room_booking")


def test_a_rule_can_change_and_its_guard_follows(booked):
    rt = booked
    (jade,) = rooms(rt, "Jade hall")
    reserve(rt, jade, day(0), day(4), "hold")
    rt.metadata.update_booking_rule(S, "reservation", "room_booking", {"active_values": ["confirmed"], "message": "Taken."})
    reserve(rt, jade, day(1), day(2), "confirmed")
    with pytest.raises(ValidationFailed) as caught:
        reserve(rt, jade, day(2), day(3), "confirmed")
    assert caught.value.errors[0].message == "Taken."
    with pytest.raises(UnsafeChange):
        rt.metadata.update_booking_rule(S, "reservation", "room_booking", {"active_values": ["hold", "confirmed"]})
    assert rt.catalog().object("reservation").booking_rules[0].active_values == ("confirmed",)


def test_concurrent_overlapping_bookings_exactly_one_succeeds_on_postgresql(postgres_url):
    """SQLite serializes writers; the race is PostgreSQL's."""
    rt = Runtime.connect(postgres_url).install()
    rt.metadata.create_objects(S, [ROOM, RESERVATION])
    rt.metadata.create_booking_rule(S, "reservation", RULE)
    (jade,) = rooms(rt, "Jade hall")
    for attempt in range(3):
        barrier, outcomes = threading.Barrier(8), []

        def book(n):
            barrier.wait()
            try:
                reserve(rt, jade, day(10 * attempt + n % 3), day(10 * attempt + 5), "confirmed")
                outcomes.append("booked")
            except ValidationFailed as failed:
                outcomes.append(failed.errors[0].code)

        threads = [threading.Thread(target=book, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["OVERLAP"] * 7 + ["booked"]
    assert rt.records.query(S, "reservation", total=True, first=0).total_count == 3
    rt.close()


# -- availability and occupancy --------------------------------------------------------------------
def random_bookings(rt, room_ids, seed=7):
    """Non-overlapping active bookings per room over Jan-Apr 2027, plus cancelled ones anywhere."""
    rng, made = random.Random(seed), []
    for room in room_ids:
        cursor = date(2026, 12, 20)
        while cursor < date(2027, 4, 20):
            start = cursor + timedelta(days=rng.randint(0, 9))
            end = start + timedelta(days=rng.randint(0, 20))
            status = rng.choice(["hold", "confirmed", "confirmed"])
            made.append({"room": room, "starts": start, "ends": end, "status": status})
            made.append({"room": room, "starts": start, "ends": end + timedelta(days=3), "status": "cancelled"})
            cursor = end + timedelta(days=1)
    rt.records.bulk_create(S, "reservation", [{**b, "starts": b["starts"].isoformat(), "ends": b["ends"].isoformat()} for b in made])
    return made


def expected_occupancy(made, room, start, end, statuses=ACTIVE):
    rows, first = [], start.replace(day=1)
    while first <= end:
        last = first.replace(day=monthrange(first.year, first.month)[1])
        lo, hi = max(first, start), min(last, end)
        taken = {b["starts"] + timedelta(days=k) for b in made if b["room"] == room and b["status"] in statuses
                 for k in range((b["ends"] - b["starts"]).days + 1)}
        booked = sum(1 for k in range((hi - lo).days + 1) if lo + timedelta(days=k) in taken)
        days = (hi - lo).days + 1
        rows.append((room, first, days, booked, (Decimal(booked) / Decimal(days)).quantize(Decimal("0.0001"))))
        first = last + timedelta(days=1)
    return rows


def test_occupancy_per_resource_and_month_matches_an_independent_count(booked):
    rt = booked
    ids = rooms(rt, "A", "B", "C", city="Shanghai") + rooms(rt, "D", city="Beijing")
    made = random_bookings(rt, ids)
    rows = rt.records.occupancy(S, "reservation", date(2027, 1, 10), date(2027, 4, 5))
    got = [(r["resource_id"], r["month"], r["days"], r["booked_days"], r["rate"]) for r in rows]
    expected = [row for room in sorted(ids) for row in expected_occupancy(made, room, date(2027, 1, 10), date(2027, 4, 5))]
    assert got == expected
    assert [r["days"] for r in rows[:4]] == [22, 28, 31, 5]
    confirmed = rt.records.occupancy(S, "reservation", date(2027, 2, 1), date(2027, 2, 28), statuses=["confirmed"],
                                     filter={"city": {"eq": "Beijing"}})
    assert [(r["resource_id"], r["booked_days"]) for r in confirmed] == [
        (room, booked) for room, _, _, booked, _ in expected_occupancy(made, ids[3], date(2027, 2, 1), date(2027, 2, 28), {"confirmed"})]


def test_occupancy_and_availability_refuse_bad_requests(booked):
    rt = booked
    window, selection = Window(first=10), Selection(fields=["id"])
    cases = [
        (lambda: rt.records.occupancy(S, "reservation", date(2027, 2, 1), date(2027, 1, 1)), [("INVALID_RANGE", "to")]),
        (lambda: rt.records.occupancy(S, "reservation", "2027-13-01", None), [("INVALID_TYPE", "from"), ("INVALID_TYPE", "to")]),
        (lambda: rt.records.occupancy(S, "reservation", date(2027, 1, 1), date(2030, 1, 31)), [("OUT_OF_RANGE", "to")]),
        (lambda: rt.records.occupancy(S, "reservation", date(2027, 1, 1), date(2027, 1, 2), statuses=["cancelled"]),
         [("UNKNOWN_VALUE", "statuses.0")]),
        (lambda: rt.records.available(S, "reservation", date(2027, 1, 2), date(2027, 1, 1), window, selection),
         [("INVALID_RANGE", "to")]),
    ]
    for call, expected in cases:
        with pytest.raises(ValidationFailed) as caught:
            call()
        assert problems(caught) == expected
    with pytest.raises(NotFound):
        rt.records.occupancy(S, "room", date(2027, 1, 1), date(2027, 1, 2))


def test_available_resources_are_those_no_active_booking_holds_within_the_callers_reach(booked):
    rt = booked
    ids = rooms(rt, "A", "B", "C", "D", "E", city="Shanghai")
    made = random_bookings(rt, ids, seed=11)
    rng = random.Random(3)
    for _ in range(12):
        start = date(2027, 1, 1) + timedelta(days=rng.randint(0, 100))
        end = start + timedelta(days=rng.randint(0, 15))
        branch = rt.records.available(S, "reservation", start, end, Window(first=10), Selection(fields=["id", "name"]))
        free = sorted(r["id"] for r in branch.records)
        expected = sorted(room for room in ids if not any(
            b["room"] == room and b["status"] in ACTIVE and b["starts"] <= end and b["ends"] >= start for b in made))
        assert free == expected

    unit = rt.security.create_unit(S, "Shanghai office")
    rt.security.create_role(S, "planner", "Planner")
    rt.security.set_object_grant(S, "planner", "room", ["read", "create"], "own", "own")
    planner = rt.security.create_user(S, {"username": "planner"}, PASSWORD)
    rt.security.add_membership(S, planner["id"], unit["id"], "planner")
    actor = rt.security.authenticate(rt.security.sign_in("planner", PASSWORD)["token"])
    mine = rt.records.create(actor, "room", {"name": "Planner's room"})["id"]
    reserve(rt, mine, day(0), day(2))
    branch = rt.records.available(actor, "reservation", day(3), day(4), Window(first=10), Selection(fields=["id"]))
    assert [r["id"] for r in branch.records] == [mine]
    branch = rt.records.available(actor, "reservation", day(1), day(4), Window(first=10), Selection(fields=["id"]))
    assert branch.records == []
    assert [r["booked_days"] for r in rt.records.occupancy(actor, "reservation", day(0), day(30))] == [3]
