"""The media app (apps/media) on top of the CRM, on SQLite and PostgreSQL: what it installs, how
bookings are priced and refused, sellers racing for the same days (exactly one wins on
PostgreSQL), availability and occupancy through GraphQL for a seller who cannot read the other
sellers' bookings, and an uninstall that leaves the database as it was.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest
from lowcode.graphql.limits import Limits
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import InUse, InvalidDefinition, ValidationFailed
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app

APPS = Path(__file__).resolve().parents[2] / "apps"
PASSWORD = "a long password 1"
AVAILABLE = """query($from: Date!, $to: Date!, $filter: MediaResourceFilter) {
    mediaBookingsAvailability(from: $from, to: $to, filter: $filter, orderBy: [CODE_ASC]) { totalCount nodes { code } } }"""
OCCUPANCY = """query($from: Date!, $to: Date!) {
    mediaBookingsOccupancy(from: $from, to: $to) { resource { code } month days bookedDays rate } }"""


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, apps_root=APPS).install()
    runtime.apps.install_app(S, "crm")
    yield runtime
    runtime.close()


@pytest.fixture
def media(rt):
    rt.apps.install_app(S, "media")
    rt.customer = rt.records.create(S, "account", {"name": "Oriental Pearl Beverages"})["id"]
    rt.screens = {r["code"]: r["id"] for r in rt.records.bulk_create(S, "media_resource", [
        {"name": "Bund LED wall", "code": "SH-LED-01", "resource_type": "led_screen", "city": "Shanghai", "daily_price": "8800.00",
         "screen_count": 1, "location": {"latitude": 31.2397, "longitude": 121.4998}},
        {"name": "Jing'an elevator network", "code": "SH-ELV-07", "resource_type": "elevator_screen", "city": "Shanghai",
         "daily_price": "2600.00", "screen_count": 240},
        {"name": "Guomao billboard", "code": "BJ-BB-02", "resource_type": "billboard", "city": "Beijing", "daily_price": "5200.00"}])}
    return rt


def booking(rt, code, start, end, status="confirmed", actor=S, **values):
    extra = {"hold_until": start} if status == "hold" else {}
    return rt.records.create(actor, "media_booking", {"resource": rt.screens[code], "account": rt.customer, "start_date": start,
                                                      "end_date": end, "status": status, **extra, **values})


def codes(caught):
    return [(e.code, e.field) for e in caught.value.errors]


def seller(rt, name, unit):
    user = rt.security.create_user(S, {"username": name}, PASSWORD)
    rt.security.add_membership(S, user["id"], unit, "media_seller")
    rt.security.add_membership(S, user["id"], unit, "crm_sales_rep")
    return rt.security.authenticate(rt.security.sign_in(name, PASSWORD)["token"])


def test_install_brings_resources_bookings_their_rule_and_roles(media):
    catalog = media.catalog()
    rule = catalog.object("media_booking").booking_rules[0]
    assert (rule.resource_field, rule.start_field, rule.end_field, rule.status_field, rule.active_values) == (
        "resource", "start_date", "end_date", "status", ("hold", "confirmed"))
    assert catalog.object("media_booking").field("account").target == "account"
    assert [v["api_name"] for v in catalog.object("media_resource").field("resource_type").options["values"]] == [
        "billboard", "led_screen", "elevator_screen", "bus_shelter", "metro_light_box"]
    assert {g["object"]: g["read_scope"] for g in media.security.role(S, "media_seller")["objects"]} == {
        "media_resource": "all", "media_booking": "own"}
    with pytest.raises(InUse):
        media.apps.uninstall_app(S, "crm")



def test_the_media_app_needs_the_crm_first_and_leaves_nothing_when_refused(database_url):
    bare = Runtime.connect(database_url, apps_root=APPS).install()
    with pytest.raises(InvalidDefinition) as caught:
        bare.apps.install_app(S, "media")
    assert codes(caught) == [("MISSING_DEPENDENCY", "depends.0")]
    assert "media_booking" not in bare.catalog().objects
    assert {a["name"]: a["installed_version"] for a in bare.apps.list()}["media"] is None
    bare.close()


def test_bookings_are_priced_from_their_resource_and_refused_with_the_reason(media):
    rt = media
    made = booking(rt, "SH-LED-01", "2027-05-01", "2027-05-10")
    assert made["amount"] == Decimal("88000.00") and made["number"].startswith("BK-")
    assert booking(rt, "SH-ELV-07", "2027-05-01", "2027-05-01", amount="1000.00")["amount"] == Decimal("1000.00")
    refusals = [
        (dict(code="SH-LED-01", start="2027-05-10", end="2027-05-12"), [("OVERLAP", "start_date")]),
        (dict(code="SH-LED-01", start="2027-05-12", end="2027-05-11"), [("INVALID_RANGE", "end_date")]),
        (dict(code="SH-LED-01", start="2027-06-01", end="2027-06-02", status="hold", hold_until=None), [("RULE_FAILED", "hold_until")]),
        (dict(code="SH-LED-01", start="2027-06-01", end="2027-06-02", status="hold", hold_until="2027-06-02"),
         [("RULE_FAILED", "hold_until")]),
    ]
    for case, expected in refusals:
        extra = {k: v for k, v in case.items() if k == "hold_until"}
        with pytest.raises(ValidationFailed) as caught:
            rt.records.create(S, "media_booking", {"resource": rt.screens[case["code"]], "account": rt.customer,
                                                    "start_date": case["start"], "end_date": case["end"],
                                                    "status": case.get("status", "confirmed"), **extra})
        assert codes(caught) == expected, case
    rt.records.update(S, "media_resource", rt.screens["BJ-BB-02"], {"status": "maintenance"})
    with pytest.raises(ValidationFailed) as caught:
        booking(rt, "BJ-BB-02", "2027-05-01", "2027-05-02")
    assert codes(caught) == [("RESOURCE_UNAVAILABLE", "resource")]
    booking(rt, "BJ-BB-02", "2027-05-01", "2027-05-02", status="cancelled")
    cancelled = rt.records.update(S, "media_booking", made["id"], {"status": "cancelled"})
    assert cancelled["status"] == "cancelled"
    assert booking(rt, "SH-LED-01", "2027-05-10", "2027-05-12", status="hold")["status"] == "hold"


def test_sellers_racing_for_the_same_days_exactly_one_wins_on_postgresql(postgres_url):
    rt = Runtime.connect(postgres_url, apps_root=APPS).install()
    rt.apps.install_app(S, "crm")
    rt.apps.install_app(S, "media")
    unit = rt.security.create_unit(S, "Shanghai media sales")["id"]
    sellers = [seller(rt, f"seller{n}", unit) for n in range(6)]
    customers = [rt.records.create(actor, "account", {"name": f"Customer {n}"})["id"] for n, actor in enumerate(sellers)]
    screen = rt.records.create(S, "media_resource", {"name": "Bund LED wall", "code": "SH-LED-01", "resource_type": "led_screen",
                                                      "daily_price": "8800.00"})["id"]
    for week in range(3):
        barrier, outcomes = threading.Barrier(len(sellers)), []

        def book(n):
            barrier.wait()
            try:
                rt.records.create(sellers[n], "media_booking", {
                    "resource": screen, "account": customers[n], "start_date": f"2027-07-{10 * week + 1 + n % 2:02d}",
                    "end_date": f"2027-07-{10 * week + 7:02d}", "status": "confirmed"})
                outcomes.append("booked")
            except ValidationFailed as failed:
                outcomes.append(failed.errors[0].code)

        threads = [threading.Thread(target=book, args=(n,)) for n in range(len(sellers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["OVERLAP"] * (len(sellers) - 1) + ["booked"]
    rows = rt.records.occupancy(S, "media_booking", "2027-07-01", "2027-07-31")
    assert len(rt.records.query(S, "media_booking", first=10).records) == 3 and rows[0]["booked_days"] >= 18
    rt.close()


def test_a_seller_sees_availability_and_occupancy_made_of_bookings_they_cannot_read(media):
    rt = media
    unit = rt.security.create_unit(S, "Beijing media sales")["id"]
    mine, theirs = seller(rt, "li.na", unit), seller(rt, "wang.fang", unit)
    customer = rt.records.create(theirs, "account", {"name": "Great Wall Dairy"})["id"]
    rt.records.create(theirs, "media_booking", {"resource": rt.screens["SH-LED-01"], "account": customer,
                                                "start_date": "2027-08-01", "end_date": "2027-08-15", "status": "confirmed"})
    booking(rt, "BJ-BB-02", "2027-08-10", "2027-08-12", status="hold")
    app = create_app(Settings(database_url=str(rt.engine.url), limits=Limits()), runtime=rt)
    token = rt.security.issue_token(S, "test", user_id=mine.id)["token"]
    client = app.test_client()

    def ask(query, variables):
        response = client.post("/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
        body = response.get_json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]

    assert ask("{ mediaBookings { totalCount } }", {})["mediaBookings"]["totalCount"] == 0
    free = ask(AVAILABLE, {"from": "2027-08-12", "to": "2027-08-20"})["mediaBookingsAvailability"]
    assert [n["code"] for n in free["nodes"]] == ["SH-ELV-07"]
    free = ask(AVAILABLE, {"from": "2027-08-16", "to": "2027-08-20", "filter": {"city": {"eq": "Shanghai"}}})
    assert [n["code"] for n in free["mediaBookingsAvailability"]["nodes"]] == ["SH-ELV-07", "SH-LED-01"]
    rows = ask(OCCUPANCY, {"from": "2027-08-01", "to": "2027-08-31"})["mediaBookingsOccupancy"]
    assert {r["resource"]["code"]: (r["days"], r["bookedDays"], r["rate"]) for r in rows} == {
        "SH-LED-01": (31, 15, "0.4839"), "SH-ELV-07": (31, 0, "0.0000"), "BJ-BB-02": (31, 3, "0.0968")}


def test_an_uninstall_round_trip_leaves_the_database_as_before(rt, database_snapshot):
    customer = rt.records.create(S, "account", {"name": "Round trip"})["id"]
    before = database_snapshot(rt)
    rt.apps.install_app(S, "media")
    screen = rt.records.create(S, "media_resource", {"name": "S", "code": "X-1", "resource_type": "billboard", "daily_price": "1"})["id"]
    rt.records.create(S, "media_booking", {"resource": screen, "account": customer, "start_date": "2027-01-01",
                                           "end_date": "2027-01-02", "status": "confirmed"})
    done = rt.apps.uninstall_app(S, "media", export=True)
    assert len(done["exported"]["objects"]["media_booking"]) == 1
    assert database_snapshot(rt) == before
    rt.apps.install_app(S, "media")
    assert rt.catalog().object("media_booking").booking_rules[0].api_name == "media_resource_booking"
