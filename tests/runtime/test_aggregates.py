"""Grouped aggregates through the public RecordService: counts, exact sums and averages, extremes,
date periods (datetimes in UTC), null groups, filters, the recycle bin, errors, the group limit and
the one statement each aggregate costs. Every test runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.errors import ValidationFailed
from lowcode.runtime import OpenAccess, RecordService, aggregates
from sqlalchemy import event, true

SYS = SYSTEM_ACTOR
INT_MAX = 2**31 - 1


def PICK(*names):
    return {"values": [{"api_name": n, "label": n.title()} for n in names]}


ACCOUNT = {
    "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "industry", "label": "Industry", "type": "picklist", "options": PICK("energy", "retail")},
    ],
}
DEAL = {
    "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "phase", "label": "Stage", "type": "picklist", "options": PICK("lost", "prospect", "won")},
        {"api_name": "amount", "label": "Amount", "type": "currency"},
        {"api_name": "rate", "label": "Rate", "type": "percent"},
        {"api_name": "quantity", "label": "Quantity", "type": "integer"},
        {"api_name": "hot", "label": "Hot", "type": "boolean"},
        {"api_name": "close_date", "label": "Close date", "type": "date"},
        {"api_name": "closed_at", "label": "Closed at", "type": "datetime"},
        {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
        {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "D-{0000}"}},
        {"api_name": "notes", "label": "Notes", "type": "textarea"},
        {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "blue")},
        {"api_name": "location", "label": "Location", "type": "geolocation"},
        {"api_name": "extra", "label": "Extra", "type": "json"},
    ],
}


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_object(SYS, ACCOUNT)
    runtime.metadata.create_object(SYS, DEAL)
    return runtime


def deals(rt, *rows):
    return rt.records.bulk_create(SYS, "deal", list(rows))


def aggregate(rt, **kwargs):
    return rt.records.aggregate(SYS, "deal", **kwargs)


def keyed(groups, measure=None, field=None):
    """``{key tuple: count}``, or ``{key tuple: measure value}``, in result order."""
    return {tuple(g["key"].values()): (g["count"] if measure is None else g[measure][field]) for g in groups}


def errors_of(exc) -> set[tuple[str, str | None]]:
    return {(e.code, e.field) for e in exc.value.errors}


def group(key, count, **measures):
    found = {"key": key, "count": count, "sum": {}, "avg": {}, "min": {}, "max": {}}
    found.update(measures)
    return found


# -- measures ---------------------------------------------------------------------------------
def test_count_sum_avg_min_max_over_the_whole_set(rt):
    deals(
        rt,
        {"amount": "10.50", "quantity": 3, "rate": "12.50", "close_date": "2024-05-01", "closed_at": "2024-05-01T10:00:00Z"},
        {"amount": "20.25", "quantity": 4, "rate": "7.25", "close_date": "2023-01-15", "closed_at": "2024-05-01T12:00:00+08:00"},
        {"amount": "1", "quantity": None, "close_date": None},
    )
    measures = [(f, n) for f in ("sum", "avg", "min", "max") for n in ("amount", "quantity", "rate")]
    measures += [("min", "close_date"), ("max", "close_date"), ("min", "closed_at"), ("max", "closed_at")]
    [result] = aggregate(rt, measures=measures)
    assert result == group(
        {}, 3,
        sum={"amount": Decimal("31.75"), "quantity": 7, "rate": Decimal("19.75")},
        avg={"amount": Decimal("10.583333"), "quantity": Decimal("3.5000"), "rate": Decimal("9.875000")},
        min={"amount": Decimal("1.00"), "quantity": 3, "rate": Decimal("7.25"), "close_date": date(2023, 1, 15),
             "closed_at": datetime(2024, 5, 1, 4, tzinfo=timezone.utc)},
        max={"amount": Decimal("20.25"), "quantity": 4, "rate": Decimal("12.50"), "close_date": date(2024, 5, 1),
             "closed_at": datetime(2024, 5, 1, 10, tzinfo=timezone.utc)},
    )
    assert type(result["sum"]["quantity"]) is int and type(result["count"]) is int
    assert result["min"]["closed_at"].utcoffset().total_seconds() == 0


def test_the_same_measure_twice_is_returned_once(rt):
    deals(rt, {"quantity": 2}, {"quantity": 5})
    [result] = aggregate(rt, measures=[("sum", "quantity"), ["sum", "quantity"], ("max", "quantity")])
    assert result == group({}, 2, sum={"quantity": 7}, max={"quantity": 5})


def test_decimal_sums_are_exact(rt):
    deals(rt, *({"amount": "0.10", "rate": "0.01"} for _ in range(1000)))
    [result] = aggregate(rt, measures=[("sum", "amount"), ("avg", "amount"), ("sum", "rate")])
    assert result["sum"] == {"amount": Decimal("100.00"), "rate": Decimal("10.00")}
    assert result["avg"] == {"amount": Decimal("0.100000")}
    assert str(result["sum"]["amount"]) == "100.00"


def test_decimal_sums_near_the_precision_are_exact_beyond_64_bits(rt):
    """Twelve values of 16 digits before the point: 20 digits in all, past a 64-bit integer of units."""
    biggest = "9999999999999999.99"
    deals(rt, *({"amount": biggest, "phase": "won"} for _ in range(12)),
          {"amount": "-9999999999999999.99", "phase": "lost"}, {"amount": "-0.01", "phase": "lost"},
          {"amount": "1234567890.12", "phase": "lost"})
    groups = aggregate(rt, group_by=[{"field": "phase"}], measures=[("sum", "amount"), ("avg", "amount"), ("min", "amount"), ("max", "amount")])
    assert groups == [
        group({"phase": "lost"}, 3, sum={"amount": Decimal("-9999998765432109.88")}, avg={"amount": Decimal("-3333332921810703.293333")},
              min={"amount": Decimal("-9999999999999999.99")}, max={"amount": Decimal("1234567890.12")}),
        group({"phase": "won"}, 12, sum={"amount": Decimal("119999999999999999.88")}, avg={"amount": Decimal(biggest + "0000")},
              min={"amount": Decimal(biggest)}, max={"amount": Decimal(biggest)}),
    ]


def test_integer_sums_go_beyond_32_bits(rt):
    deals(rt, *({"quantity": INT_MAX} for _ in range(3)), {"quantity": -(2**31)})
    [result] = aggregate(rt, measures=[("sum", "quantity"), ("avg", "quantity"), ("min", "quantity"), ("max", "quantity")])
    assert result["sum"] == {"quantity": 3 * INT_MAX - 2**31}
    assert type(result["sum"]["quantity"]) is int
    assert result["avg"] == {"quantity": Decimal(3 * INT_MAX - 2**31) / 4}
    assert result["min"] == {"quantity": -(2**31)} and result["max"] == {"quantity": INT_MAX}


def test_averages_round_half_up_at_scale_plus_four(rt):
    deals(rt, {"quantity": 1}, {"quantity": 1}, {"quantity": 0}, {"quantity": None})
    [result] = aggregate(rt, measures=[("avg", "quantity")])
    assert result["avg"] == {"quantity": Decimal("0.6667")}
    deals(rt, {"amount": "0.01"}, {"amount": "0.00"}, *({"amount": "0.00"} for _ in range(14)))
    [result] = aggregate(rt, filter={"amount": {"is_null": False}}, measures=[("avg", "amount")])
    assert result["avg"] == {"amount": Decimal("0.000625")}


# -- groups -----------------------------------------------------------------------------------
def test_group_by_picklist_orders_keys_with_nulls_last(rt):
    deals(rt, {"phase": "won", "amount": 5}, {"phase": "lost", "amount": 1}, {"phase": None, "amount": 7},
          {"phase": "won", "amount": "2.50"}, {"phase": "prospect", "amount": None})
    groups = aggregate(rt, group_by=[{"field": "phase"}], measures=[("sum", "amount"), ("max", "amount")])
    assert groups == [
        group({"phase": "lost"}, 1, sum={"amount": Decimal("1.00")}, max={"amount": Decimal("1.00")}),
        group({"phase": "prospect"}, 1, sum={"amount": None}, max={"amount": None}),
        group({"phase": "won"}, 2, sum={"amount": Decimal("7.50")}, max={"amount": Decimal("5.00")}),
        group({"phase": None}, 1, sum={"amount": Decimal("7.00")}, max={"amount": Decimal("7.00")}),
    ]


def test_group_by_two_fields(rt):
    deals(rt, {"phase": "won", "hot": True, "quantity": 1}, {"phase": "won", "hot": False, "quantity": 2},
          {"phase": "won", "hot": True, "quantity": 4}, {"phase": "lost", "hot": None, "quantity": 8},
          {"phase": None, "hot": True, "quantity": 16}, {"phase": "lost", "hot": False, "quantity": 32})
    groups = aggregate(rt, group_by=[{"field": "phase"}, {"field": "hot", "granularity": None}], measures=[("sum", "quantity")])
    assert [(g["key"], g["count"], g["sum"]["quantity"]) for g in groups] == [
        ({"phase": "lost", "hot": False}, 1, 32),
        ({"phase": "lost", "hot": None}, 1, 8),
        ({"phase": "won", "hot": False}, 1, 2),
        ({"phase": "won", "hot": True}, 2, 5),
        ({"phase": None, "hot": True}, 1, 16),
    ]


CLOSE_DATES = ["2023-04-01", "2022-12-31", "2023-01-01", "2023-03-31", "2023-06-30", "2023-07-01", "2023-09-30",
               "2023-10-01", "2023-12-31", "2024-02-29", None]


@pytest.mark.parametrize("granularity, expected", [
    ("year", {date(2022, 1, 1): 1, date(2023, 1, 1): 8, date(2024, 1, 1): 1, None: 1}),
    ("quarter", {date(2022, 10, 1): 1, date(2023, 1, 1): 2, date(2023, 4, 1): 2, date(2023, 7, 1): 2, date(2023, 10, 1): 2,
                 date(2024, 1, 1): 1, None: 1}),
    ("month", {date(2022, 12, 1): 1, date(2023, 1, 1): 1, date(2023, 3, 1): 1, date(2023, 4, 1): 1, date(2023, 6, 1): 1,
               date(2023, 7, 1): 1, date(2023, 9, 1): 1, date(2023, 10, 1): 1, date(2023, 12, 1): 1, date(2024, 2, 1): 1, None: 1}),
    ("day", {**{date.fromisoformat(d): 1 for d in sorted(CLOSE_DATES[:-1])}, None: 1}),
    (None, {**{date.fromisoformat(d): 1 for d in sorted(CLOSE_DATES[:-1])}, None: 1}),
])
def test_group_by_date_periods(rt, granularity, expected):
    deals(rt, *({"close_date": d, "quantity": 1} for d in CLOSE_DATES))
    groups = aggregate(rt, group_by=[{"field": "close_date", "granularity": granularity}], measures=[("min", "close_date")])
    assert [(g["key"]["close_date"], g["count"]) for g in groups] == list(expected.items())
    for g in groups:
        assert g["key"]["close_date"] is None or type(g["key"]["close_date"]) is date
        assert g["key"]["close_date"] is None or g["key"]["close_date"] <= g["min"]["close_date"]


CLOSED_AT = ["2024-03-01T02:00:00+08:00", "2024-03-31T23:30:00-02:00", "2023-12-31T23:59:59.999999Z", "2024-01-01T00:00:00Z", None]


@pytest.mark.parametrize("granularity, expected", [
    ("day", {date(2023, 12, 31): 1, date(2024, 1, 1): 1, date(2024, 2, 29): 1, date(2024, 4, 1): 1, None: 1}),
    ("month", {date(2023, 12, 1): 1, date(2024, 1, 1): 1, date(2024, 2, 1): 1, date(2024, 4, 1): 1, None: 1}),
    ("quarter", {date(2023, 10, 1): 1, date(2024, 1, 1): 2, date(2024, 4, 1): 1, None: 1}),
    ("year", {date(2023, 1, 1): 1, date(2024, 1, 1): 3, None: 1}),
])
def test_group_by_datetime_periods_in_utc(rt, granularity, expected):
    """``+08:00`` early on March 1st is still February 29th in UTC, whatever the session's time zone."""
    if rt.engine.dialect.name == "postgresql":
        rt.engine.dispose()
        event.listen(rt.engine, "connect", _shanghai_session)
    deals(rt, *({"closed_at": at} for at in CLOSED_AT))
    groups = aggregate(rt, group_by=[{"field": "closed_at", "granularity": granularity}], measures=[("max", "closed_at")])
    assert [(g["key"]["closed_at"], g["count"]) for g in groups] == list(expected.items())
    assert groups[0]["max"]["closed_at"] == datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)


def _shanghai_session(dbapi_connection, _record):
    dbapi_connection.execute("SET TIME ZONE 'Asia/Shanghai'")
    dbapi_connection.commit()


def test_datetime_defaults_to_days(rt):
    deals(rt, {"closed_at": "2024-03-01T02:00:00+08:00"}, {"closed_at": "2024-02-29T20:00:00Z"})
    assert aggregate(rt, group_by=[{"field": "closed_at"}]) == [group({"closed_at": date(2024, 2, 29)}, 2)]


def test_group_by_lookup_and_system_fields(rt):
    acme = rt.records.create(SYS, "account", {"name": "Acme"})
    created = deals(rt, {"account": acme["id"]}, {"account": acme["id"]}, {"account": None})
    by_account = aggregate(rt, group_by=[{"field": "account"}])
    assert keyed(by_account) == {(acme["id"],): 2, (None,): 1}
    year = created[0]["created_at"].year
    by_system = aggregate(rt, group_by=[{"field": "owner_id"}, {"field": "created_at", "granularity": "year"},
                                        {"field": "business_type"}, {"field": "deleted_at"}])
    assert keyed(by_system) == {(SYS.id, date(year, 1, 1), None, None): 3}
    numbers = aggregate(rt, group_by=[{"field": "number"}, {"field": "id"}])
    assert [tuple(g["key"].values()) for g in numbers] == sorted((r["number"], r["id"]) for r in created)


# -- which records ----------------------------------------------------------------------------
def test_filters_apply_including_through_lookups(rt):
    energy = rt.records.create(SYS, "account", {"name": "E", "industry": "energy"})
    retail = rt.records.create(SYS, "account", {"name": "R", "industry": "retail"})
    deals(rt, {"account": energy["id"], "phase": "won", "amount": 10}, {"account": energy["id"], "phase": "lost", "amount": 20},
          {"account": retail["id"], "phase": "won", "amount": 40}, {"account": None, "phase": "won", "amount": 80})
    through_lookup = aggregate(rt, filter={"account": {"industry": {"eq": "energy"}}}, group_by=[{"field": "phase"}],
                               measures=[("sum", "amount")])
    assert keyed(through_lookup, "sum", "amount") == {("lost",): Decimal("20.00"), ("won",): Decimal("10.00")}
    [won] = aggregate(rt, filter={"phase": {"eq": "won"}, "amount": {"gt": 10}}, measures=[("sum", "amount")])
    assert (won["count"], won["sum"]["amount"]) == (2, Decimal("120.00"))


def test_soft_deleted_records_are_left_out(rt):
    _, gone = deals(rt, {"phase": "won", "quantity": 1}, {"phase": "won", "quantity": 2})
    rt.records.delete(SYS, "deal", gone["id"])
    assert aggregate(rt, group_by=[{"field": "phase"}], measures=[("sum", "quantity")]) == [
        group({"phase": "won"}, 1, sum={"quantity": 1})]
    rt.records.restore(SYS, "deal", gone["id"])
    assert aggregate(rt, measures=[("sum", "quantity")]) == [group({}, 2, sum={"quantity": 3})]


def test_the_permission_row_filter_applies(rt):
    class OnlyBigDeals(OpenAccess):
        def row_filter(self, actor, obj, table, action):
            return table.c.quantity >= 10 if obj.api_name == "deal" else true()

    deals(rt, {"quantity": 5}, {"quantity": 10}, {"quantity": 20})
    service = RecordService(rt.engine, rt.catalogs, OnlyBigDeals())
    assert service.aggregate(SYS, "deal", measures=[("sum", "quantity")]) == [group({}, 2, sum={"quantity": 30})]


def test_empty_results(rt):
    measures = [("sum", "amount"), ("avg", "quantity"), ("min", "close_date"), ("max", "closed_at")]
    assert aggregate(rt, measures=measures) == [group(
        {}, 0, sum={"amount": None}, avg={"quantity": None}, min={"close_date": None}, max={"closed_at": None})]
    assert aggregate(rt, group_by=[{"field": "phase"}], measures=measures) == []
    deals(rt, {"phase": "won"})
    assert aggregate(rt, filter={"phase": {"eq": "lost"}}, group_by=[{"field": "phase"}]) == []
    assert aggregate(rt, filter={"phase": {"eq": "lost"}}) == [group({}, 0)]


# -- errors -----------------------------------------------------------------------------------
def test_every_problem_is_reported_at_once(rt):
    with pytest.raises(ValidationFailed) as exc:
        aggregate(rt, group_by=[
            {"field": "nope"},
            {"field": "notes"},
            {"field": "tags"},
            {"field": "location"},
            {"field": "extra"},
            {"field": "phase", "granularity": "month"},
            {"field": "close_date", "granularity": "week"},
            {"field": "closed_at", "granularity": "hour"},
            {"field": "phase"},
            {"field": "quantity", "granularity": "day"},
            {"field": "close_date"},
            {"field": "close_date", "granularity": "year"},
        ], measures=[
            ("sum", "nope"), ("sum", "close_date"), ("avg", "name"), ("median", "amount"), ("count", "amount"),
            ("min", "phase"), ("max", "hot"), ("sum", "account"), ("sum", "amount"),
        ])
    assert errors_of(exc) == {
        ("UNKNOWN_FIELD", "group_by.0.field"),
        ("NOT_GROUPABLE", "group_by.1.field"),
        ("NOT_GROUPABLE", "group_by.2.field"),
        ("NOT_GROUPABLE", "group_by.3.field"),
        ("NOT_GROUPABLE", "group_by.4.field"),
        ("INVALID_VALUE", "group_by.5.granularity"),
        ("INVALID_VALUE", "group_by.6.granularity"),
        ("INVALID_VALUE", "group_by.7.granularity"),
        ("DUPLICATE", "group_by.8.field"),
        ("INVALID_VALUE", "group_by.9.granularity"),
        ("DUPLICATE", "group_by.10.field"),
        ("DUPLICATE", "group_by.11.field"),
        ("UNKNOWN_FIELD", "measures.0"),
        ("NOT_AGGREGATABLE", "measures.1"),
        ("NOT_AGGREGATABLE", "measures.2"),
        ("NOT_AGGREGATABLE", "measures.3"),
        ("NOT_AGGREGATABLE", "measures.4"),
        ("NOT_AGGREGATABLE", "measures.5"),
        ("NOT_AGGREGATABLE", "measures.6"),
        ("NOT_AGGREGATABLE", "measures.7"),
    }
    assert len(exc.value.errors) == 20


@pytest.mark.parametrize("group_by, measures, expected", [
    ("phase", None, {("INVALID_TYPE", "group_by")}),
    (["phase"], None, {("INVALID_TYPE", "group_by.0")}),
    ([{"field": "phase", "order": "desc"}], None, {("INVALID_TYPE", "group_by.0")}),
    (None, ("sum", "amount"), {("INVALID_TYPE", "measures")}),
    (None, [("sum",)], {("INVALID_TYPE", "measures.0")}),
    (None, [{"sum": "amount"}], {("INVALID_TYPE", "measures.0")}),
])
def test_malformed_requests_are_refused(rt, group_by, measures, expected):
    with pytest.raises(ValidationFailed) as exc:
        aggregate(rt, group_by=group_by, measures=measures)
    assert errors_of(exc) == expected


def test_filter_problems_come_from_the_filter_compiler(rt):
    with pytest.raises(ValidationFailed) as exc:
        aggregate(rt, filter={"nope": {"eq": 1}, "amount": {"contains": "1"}}, group_by=[{"field": "phase"}])
    assert errors_of(exc) == {("UNKNOWN_FIELD", "filter.nope"), ("UNSUPPORTED_OPERATOR", "filter.amount.contains")}


def test_more_than_max_groups_is_refused(rt):
    assert aggregates.MAX_GROUPS == 1000
    deals(rt, *({"quantity": i} for i in range(1001)))
    with pytest.raises(ValidationFailed) as exc:
        aggregate(rt, group_by=[{"field": "quantity"}])
    assert errors_of(exc) == {("TOO_MANY_GROUPS", "group_by")}
    groups = aggregate(rt, filter={"quantity": {"lt": 1000}}, group_by=[{"field": "quantity"}])
    assert [g["key"]["quantity"] for g in groups] == list(range(1000))
    [whole] = aggregate(rt, measures=[("sum", "quantity")])
    assert whole["sum"]["quantity"] == 1000 * 1001 // 2


# -- cost -------------------------------------------------------------------------------------
def test_an_aggregate_is_one_statement(rt):
    energy = rt.records.create(SYS, "account", {"name": "E", "industry": "energy"})
    deals(rt, *({"account": energy["id"], "phase": "won", "amount": i, "close_date": f"2024-0{i}-01"} for i in range(1, 10)))

    def run():
        return aggregate(rt, filter={"account": {"industry": {"eq": "energy"}}},
                         group_by=[{"field": "phase"}, {"field": "close_date", "granularity": "quarter"}],
                         measures=[("sum", "amount"), ("avg", "amount"), ("min", "close_date"), ("max", "amount")])

    run()
    seen: list[str] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if not statement.strip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    event.listen(rt.engine, "before_cursor_execute", on_execute)
    try:
        groups = run()
    finally:
        event.remove(rt.engine, "before_cursor_execute", on_execute)
    others = [s for s in seen if "lc_meta_version" not in s]
    assert len(seen) - len(others) == 1
    assert len(others) == 1 and others[0].lstrip().upper().startswith("SELECT") and "GROUP BY" in others[0].upper()
    assert [(g["key"]["close_date"], g["count"], g["sum"]["amount"]) for g in groups] == [
        (date(2024, 1, 1), 3, Decimal("6.00")), (date(2024, 4, 1), 3, Decimal("15.00")), (date(2024, 7, 1), 3, Decimal("24.00"))]
