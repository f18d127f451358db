"""Booking rules over GraphQL (SQLite and PostgreSQL): the metadata API that makes and changes them,
the record mutations they refuse, ``<plural>Availability`` and ``<plural>Occupancy`` against
figures computed in this module, their errors, and a user's reach over the resources.
"""
from __future__ import annotations

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S

SCREEN = {"apiName": "screen", "label": "Screen", "fields": [
    {"apiName": "code", "label": "Code", "type": "TEXT", "required": True, "unique": True},
    {"apiName": "city", "label": "City", "type": "TEXT"}]}
SLOT = {"apiName": "slot", "label": "Slot", "fields": [
    {"apiName": "screen", "label": "Screen", "type": "LOOKUP", "options": {"target": "screen", "onDelete": "RESTRICT"}},
    {"apiName": "first_day", "label": "First day", "type": "DATE", "required": True},
    {"apiName": "last_day", "label": "Last day", "type": "DATE", "required": True},
    {"apiName": "state", "label": "State", "type": "PICKLIST", "options": {"values": [
        {"apiName": "hold", "label": "Hold"}, {"apiName": "confirmed", "label": "Confirmed"},
        {"apiName": "cancelled", "label": "Cancelled"}]}}]}
RULE = {"apiName": "screen_slots", "label": "Screen slots", "resourceField": "screen", "startField": "first_day",
        "endField": "last_day", "statusField": "state", "activeValues": ["hold", "confirmed"]}
CREATE_OBJECT = "mutation($input: ObjectInput!) { createObject(input: $input) { apiName } }"
CREATE_RULE = """mutation($input: BookingRuleInput!) { createBookingRule(object: "slot", input: $input) {
    apiName label resourceField startField endField statusField activeValues message } }"""
CREATE_SLOT = "mutation($input: SlotCreateInput!) { createSlot(input: $input) { id firstDay lastDay state } }"
AVAILABLE = """query($from: Date!, $to: Date!, $filter: ScreenFilter, $first: Int, $after: String) {
    slotsAvailability(from: $from, to: $to, filter: $filter, first: $first, after: $after, orderBy: [CODE_ASC]) {
      totalCount nodes { code city } pageInfo { hasNextPage endCursor } } }"""
OCCUPANCY = """query($from: Date!, $to: Date!, $filter: ScreenFilter, $statuses: [SlotState!]) {
    slotsOccupancy(from: $from, to: $to, filter: $filter, statuses: $statuses) {
      resourceId resource { code } month from to days bookedDays rate } }"""


def failure(api, query, variables, token=None):
    kwargs = {"token": token} if token else {}
    status, errors = api.errors(query, variables, **kwargs)
    assert status == 200 and len(errors) == 1, errors
    extensions = errors[0]["extensions"]
    return extensions["code"], [(e["code"], e["field"]) for e in extensions.get("errors", [])]


@pytest.fixture
def slots(api):
    api.data(CREATE_OBJECT, {"input": SCREEN})
    api.data(CREATE_OBJECT, {"input": SLOT})
    api.data(CREATE_RULE, {"input": RULE})
    screens = api.runtime.records.bulk_create(S, "screen", [
        {"code": "SH-01", "city": "Shanghai"}, {"code": "SH-02", "city": "Shanghai"},
        {"code": "SH-03", "city": "Shanghai"}, {"code": "BJ-01", "city": "Beijing"}])
    api.screens = {s["code"]: s["id"] for s in screens}
    book = [("SH-01", "2027-03-01", "2027-03-10", "CONFIRMED"), ("SH-01", "2027-03-25", "2027-04-05", "HOLD"),
            ("SH-02", "2027-03-08", "2027-03-08", "HOLD"), ("SH-02", "2027-03-01", "2027-03-31", "CANCELLED"),
            ("BJ-01", "2027-02-20", "2027-03-02", "CONFIRMED")]
    for code, first, last, state in book:
        api.data(CREATE_SLOT, {"input": {"screenId": api.screens[code], "firstDay": first, "lastDay": last, "state": state}})
    return api


def test_the_metadata_api_makes_lists_and_refuses_booking_rules(slots):
    api = slots
    rules = api.data('{ object(apiName: "slot") { bookingRules { apiName activeValues message } } }')["object"]["bookingRules"]
    assert rules == [{"apiName": "screen_slots", "activeValues": ["hold", "confirmed"],
                      "message": "The resource is already booked for part of this period."}]
    assert failure(api, CREATE_RULE, {"input": {**RULE, "apiName": "other", "startField": "state"}}) == (
        "INVALID_DEFINITION", [("ONE_PER_OBJECT", "input.apiName"), ("INVALID_FIELD_TYPE", "input.startField")])
    changed = api.data('mutation { updateBookingRule(object: "slot", apiName: "screen_slots", input: {message: "Taken."}) '
                       '{ message activeValues } }')["updateBookingRule"]
    assert changed == {"message": "Taken.", "activeValues": ["hold", "confirmed"]}
    code, problems = failure(api, 'mutation { deleteField(object: "slot", apiName: "last_day") }', None)
    assert code == "IN_USE"
    assert api.data('mutation { deleteBookingRule(object: "slot", apiName: "screen_slots") }') == {"deleteBookingRule": "screen_slots"}
    status, errors = api.errors("{ slotsAvailability(from: \"2027-03-01\", to: \"2027-03-02\") { totalCount } }")
    assert status == 400 and "slotsAvailability" in errors[0]["message"]


def test_overlapping_slots_are_refused_at_the_start_field_in_graphql_names(slots):
    api = slots
    code, problems = failure(api, CREATE_SLOT, {"input": {"screenId": api.screens["SH-01"], "firstDay": "2027-03-10",
                                                          "lastDay": "2027-03-12", "state": "HOLD"}})
    assert (code, problems) == ("VALIDATION_FAILED", [("OVERLAP", "input.firstDay")])
    code, problems = failure(api, CREATE_SLOT, {"input": {"screenId": api.screens["SH-03"], "firstDay": "2027-03-10",
                                                          "lastDay": "2027-03-09", "state": "HOLD"}})
    assert (code, problems) == ("VALIDATION_FAILED", [("INVALID_RANGE", "input.lastDay")])
    made = api.data(CREATE_SLOT, {"input": {"screenId": api.screens["SH-01"], "firstDay": "2027-03-11",
                                            "lastDay": "2027-03-24", "state": "HOLD"}})["createSlot"]
    assert made["firstDay"] == "2027-03-11"


@pytest.mark.parametrize("start, end, free", [
    ("2027-03-01", "2027-03-01", ["SH-02", "SH-03"]),
    ("2027-03-03", "2027-03-07", ["BJ-01", "SH-02", "SH-03"]),
    ("2027-03-08", "2027-03-08", ["BJ-01", "SH-03"]),
    ("2027-03-11", "2027-03-24", ["BJ-01", "SH-01", "SH-02", "SH-03"]),
    ("2027-02-01", "2027-04-30", ["SH-03"]),
])
def test_availability_lists_the_screens_no_active_slot_holds(slots, start, end, free):
    page = slots.data(AVAILABLE, {"from": start, "to": end})["slotsAvailability"]
    assert [n["code"] for n in page["nodes"]] == free
    assert page["totalCount"] == len(free)


def test_availability_pages_and_filters_like_the_list_query(slots):
    api = slots
    first = api.data(AVAILABLE, {"from": "2027-03-11", "to": "2027-03-24", "first": 2})["slotsAvailability"]
    assert [n["code"] for n in first["nodes"]] == ["BJ-01", "SH-01"] and first["pageInfo"]["hasNextPage"]
    rest = api.data(AVAILABLE, {"from": "2027-03-11", "to": "2027-03-24", "first": 2,
                                "after": first["pageInfo"]["endCursor"]})["slotsAvailability"]
    assert [n["code"] for n in rest["nodes"]] == ["SH-02", "SH-03"] and not rest["pageInfo"]["hasNextPage"]
    shanghai = api.data(AVAILABLE, {"from": "2027-03-03", "to": "2027-03-03", "filter": {"city": {"eq": "Shanghai"}}})
    assert [n["code"] for n in shanghai["slotsAvailability"]["nodes"]] == ["SH-02", "SH-03"]
    assert failure(api, AVAILABLE, {"from": "2027-03-03", "to": "2027-03-01"}) == ("VALIDATION_FAILED", [("INVALID_RANGE", "to")])


def test_occupancy_counts_the_booked_days_per_screen_and_month(slots):
    api = slots
    rows = api.data(OCCUPANCY, {"from": "2027-02-15", "to": "2027-04-10"})["slotsOccupancy"]
    expected = {
        "BJ-01": [9, 2, 0], "SH-01": [0, 17, 5], "SH-02": [0, 1, 0], "SH-03": [0, 0, 0]}
    by_code = {}
    for row in rows:
        by_code.setdefault(row["resource"]["code"], []).append(row)
    assert {code: [r["bookedDays"] for r in found] for code, found in by_code.items()} == expected
    feb, mar, apr = by_code["SH-01"]
    assert (feb["month"], feb["from"], feb["to"], feb["days"]) == ("2027-02-01", "2027-02-15", "2027-02-28", 14)
    assert (mar["days"], mar["rate"], apr["days"], apr["rate"]) == (31, "0.5484", 10, "0.5000")
    assert by_code["BJ-01"][0]["rate"] == "0.6429"
    assert [r["resourceId"] for r in rows] == sorted(r["resourceId"] for r in rows)
    confirmed = api.data(OCCUPANCY, {"from": "2027-03-01", "to": "2027-03-31", "statuses": ["CONFIRMED"],
                                     "filter": {"city": {"eq": "Shanghai"}}})["slotsOccupancy"]
    assert {r["resource"]["code"]: r["bookedDays"] for r in confirmed} == {"SH-01": 10, "SH-02": 0, "SH-03": 0}
    assert failure(api, OCCUPANCY, {"from": "2027-03-01", "to": "2027-03-31", "statuses": ["CANCELLED"]}) == (
        "VALIDATION_FAILED", [("UNKNOWN_VALUE", "statuses.0")])
    assert failure(api, OCCUPANCY, {"from": "2027-01-01", "to": "2030-01-01"}) == ("VALIDATION_FAILED", [("OUT_OF_RANGE", "to")])


def test_a_user_sees_availability_and_occupancy_of_the_screens_they_may_read(slots):
    api = slots
    sec = api.runtime.security
    unit = sec.create_unit(S, "Shanghai sales")
    sec.create_role(S, "seller", "Seller")
    sec.set_object_grant(S, "seller", "screen", ["read"], "own", "own")
    seller = sec.create_user(S, {"username": "seller"})
    sec.add_membership(S, seller["id"], unit["id"], "seller")
    api.runtime.records.transfer(S, "screen", api.screens["SH-01"], seller["id"])
    api.runtime.records.transfer(S, "screen", api.screens["SH-03"], seller["id"])
    token = sec.issue_token(S, "test", user_id=seller["id"])["token"]
    page = api.data(AVAILABLE, {"from": "2027-03-03", "to": "2027-03-03"}, token=token)["slotsAvailability"]
    assert [n["code"] for n in page["nodes"]] == ["SH-03"]
    rows = api.data(OCCUPANCY, {"from": "2027-03-01", "to": "2027-03-31"}, token=token)["slotsOccupancy"]
    assert {r["resource"]["code"]: r["bookedDays"] for r in rows} == {"SH-01": 17, "SH-03": 0}
    sec.set_object_grant(S, "seller", "screen", [], "own", "own")
    assert failure(api, AVAILABLE, {"from": "2027-03-03", "to": "2027-03-03"}, token)[0] == "FORBIDDEN"

