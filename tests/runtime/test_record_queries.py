"""Queries through the public RecordService: filters, lookups, ordering, keyset paging, fields, totals,
and the number of SQL statements each costs. Every test runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

import base64
import functools
import json
from decimal import Decimal

import pytest
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.errors import ValidationFailed
from lowcode.runtime import Runtime
from sqlalchemy import event, inspect

SYS = SYSTEM_ACTOR


def PICK(*names):
    return {"values": [{"api_name": n, "label": n.title()} for n in names]}


SCHEMA = [
    {
        "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text", "required": True, "options": {"max_length": 80}},
            {"api_name": "industry", "label": "Industry", "type": "picklist", "options": PICK("energy", "retail", "tech")},
            {"api_name": "revenue", "label": "Revenue", "type": "decimal", "options": {"precision": 12, "scale": 2}},
            {"api_name": "employees", "label": "Employees", "type": "integer"},
            {"api_name": "parent", "label": "Parent", "type": "lookup", "options": {"target": "account"}},
            {"api_name": "active", "label": "Active", "type": "boolean"},
            {"api_name": "notes", "label": "Notes", "type": "textarea"},
            {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green", "blue")},
            {"api_name": "location", "label": "Location", "type": "geolocation"},
            {"api_name": "founded", "label": "Founded", "type": "date"},
        ],
    },
    {
        "api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities", "plural_label": "Opportunities",
        "fields": [
            {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "OPP-{0000}"}},
            {"api_name": "name", "label": "Name", "type": "text", "required": True},
            {"api_name": "amount", "label": "Amount", "type": "currency"},
            {"api_name": "phase", "label": "Phase", "type": "picklist", "options": PICK("lost", "prospect", "won")},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
            {"api_name": "close_date", "label": "Close date", "type": "date"},
            {"api_name": "probability", "label": "Probability", "type": "integer"},
        ],
    },
]

ACCOUNTS = [
    # name, industry, revenue, employees, parent, active, tags, notes
    ("Global Holdings", "tech", "1000", 500, None, True, None, None),
    ("Old Group", "energy", "10", 5, None, False, None, None),
    ("Acme", "energy", "100", 10, "Global Holdings", True, ["red", "blue"], None),
    ("Bolt", "retail", None, 20, "Global Holdings", False, ["red"], None),
    ("Core", "tech", "300", None, "Old Group", None, None, None),
    ("Dyna", None, "100", 10, None, True, None, "50% off, 100_percent"),
    ("echo 50_off", "energy", "50", 30, "Acme", True, ["green"], None),
]

OPPORTUNITIES = [
    # name, amount, phase, account
    ("Acme deal 1", "100", "prospect", "Acme"),
    ("Acme deal 2", "250", "won", "Acme"),
    ("Bolt deal", None, "lost", "Bolt"),
    ("Core deal", "300", "won", "Core"),
    ("Dyna deal", "50", None, "Dyna"),
    ("Orphan", "75", "prospect", None),
    ("Echo deal", "100", "won", "echo 50_off"),
]


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(SYS, SCHEMA)
    return runtime


@pytest.fixture
def data(rt):
    """Accounts and opportunities by name."""
    accounts = {}
    for name, industry, revenue, employees, parent, active, tags, notes in ACCOUNTS:
        accounts[name] = rt.records.create(SYS, "account", {
            "name": name, "industry": industry, "revenue": revenue, "employees": employees,
            "parent": accounts[parent]["id"] if parent else None, "active": active, "tags": tags, "notes": notes,
        })
    opportunities = {}
    for name, amount, phase, account in OPPORTUNITIES:
        opportunities[name] = rt.records.create(SYS, "opportunity", {
            "name": name, "amount": amount, "phase": phase, "account": accounts[account]["id"] if account else None,
        })
    return accounts, opportunities


def names(rt, obj, filter=None, **kwargs) -> set[str]:
    page = rt.records.query(SYS, obj, filter=filter, first=1000, **kwargs)
    assert not page.has_next_page
    found = [r["name"] for r in page.records]
    assert len(found) == len(set(found))
    return set(found)


def error_set(exc) -> set[tuple[str, str | None]]:
    return {(e.code, e.field) for e in exc.value.errors}


ALL_ACCOUNTS = {a[0] for a in ACCOUNTS}

ACCOUNT_FILTERS = [
    ({"industry": {"eq": "energy"}}, {"Old Group", "Acme", "echo 50_off"}),
    ({"industry": {"ne": "energy"}}, {"Global Holdings", "Bolt", "Core", "Dyna"}),
    ({"industry": {"in": ["tech", "retail"]}}, {"Global Holdings", "Bolt", "Core"}),
    ({"industry": {"not_in": ["tech", "retail"]}}, {"Old Group", "Acme", "Dyna", "echo 50_off"}),
    ({"industry": {"is_null": True}}, {"Dyna"}),
    ({"industry": {"is_null": False}}, ALL_ACCOUNTS - {"Dyna"}),
    ({"industry": {"eq": None}}, {"Dyna"}),
    ({"revenue": {"gt": "100"}}, {"Global Holdings", "Core"}),
    ({"revenue": {"gte": 100}}, {"Global Holdings", "Acme", "Core", "Dyna"}),
    ({"revenue": {"lt": "100"}}, {"Old Group", "echo 50_off"}),
    ({"revenue": {"lte": "100.00"}}, {"Old Group", "Acme", "Dyna", "echo 50_off"}),
    ({"revenue": {"eq": None}}, {"Bolt"}),
    ({"revenue": {"ne": None}}, ALL_ACCOUNTS - {"Bolt"}),
    ({"revenue": {"gt": 10, "lt": 300}}, {"Acme", "Dyna", "echo 50_off"}),
    ({"employees": {"eq": 10}}, {"Acme", "Dyna"}),
    ({"employees": {"ne": 10}}, {"Global Holdings", "Old Group", "Bolt", "Core", "echo 50_off"}),
    ({"employees": {"in": []}}, set()),
    ({"employees": {"not_in": []}}, ALL_ACCOUNTS),
    ({"employees": {"not_in": [10, 20]}}, {"Global Holdings", "Old Group", "Core", "echo 50_off"}),
    ({"name": {"contains": "CM"}}, {"Acme"}),
    ({"name": {"starts_with": "ECHO"}}, {"echo 50_off"}),
    ({"name": {"starts_with": "o"}}, {"Old Group"}),
    ({"name": {"contains": "_"}}, {"echo 50_off"}),
    ({"name": {"contains": "%"}}, set()),
    ({"name": {"eq": "acme"}}, set()),
    ({"name": {"in": ["Acme", "Bolt", "nobody"]}}, {"Acme", "Bolt"}),
    ({"notes": {"contains": "0% OFF"}}, {"Dyna"}),
    ({"notes": {"contains": "0_p"}}, {"Dyna"}),
    ({"notes": {"contains": "0%p"}}, set()),
    ({"active": {"eq": True}}, {"Global Holdings", "Acme", "Dyna", "echo 50_off"}),
    ({"active": {"ne": True}}, {"Old Group", "Bolt", "Core"}),
    ({"active": {"eq": False}}, {"Old Group", "Bolt"}),
    ({"active": {"is_null": True}}, {"Core"}),
    ({"tags": {"contains": "red"}}, {"Acme", "Bolt"}),
    ({"tags": {"eq": ["blue", "red"]}}, {"Acme"}),
    ({"tags": {"eq": ["red"]}}, {"Bolt"}),
    ({"tags": {"is_null": True}}, {"Global Holdings", "Old Group", "Core", "Dyna"}),
    ({"location": {"is_null": True}}, ALL_ACCOUNTS),
    ({"location": {"is_null": False}}, set()),
    ({"and": [{"industry": {"eq": "energy"}}, {"revenue": {"gte": 50}}]}, {"Acme", "echo 50_off"}),
    ({"industry": {"eq": "energy"}, "active": {"eq": True}}, {"Acme", "echo 50_off"}),
    ({"or": [{"industry": {"eq": "retail"}}, {"revenue": {"gt": 500}}]}, {"Bolt", "Global Holdings"}),
    ({"not": {"name": {"starts_with": "e"}}}, ALL_ACCOUNTS - {"echo 50_off"}),
    ({"not": {"not": {"name": {"starts_with": "e"}}}}, {"echo 50_off"}),
    ({"or": [
        {"and": [{"industry": {"eq": "energy"}}, {"not": {"name": {"eq": "Acme"}}}]},
        {"and": [{"tags": {"contains": "red"}}, {"active": {"eq": False}}]},
    ]}, {"Old Group", "echo 50_off", "Bolt"}),
    ({"and": [{"or": [{"name": {"eq": "Acme"}}, {"name": {"eq": "Bolt"}}]}, {"not": {"or": [{"name": {"eq": "Bolt"}}, {"name": {"eq": "Core"}}]}}]}, {"Acme"}),
    ({"parent": {"name": {"eq": "Global Holdings"}}}, {"Acme", "Bolt"}),
    ({"parent": {"is_null": False, "industry": {"eq": "tech"}}}, {"Acme", "Bolt"}),
    ({"parent": {"is_null": True}}, {"Global Holdings", "Old Group", "Dyna"}),
    ({"parent": {"parent": {"name": {"eq": "Global Holdings"}}}}, {"echo 50_off"}),
    ({"parent": {"or": [{"name": {"eq": "Acme"}}, {"industry": {"eq": "energy"}}]}}, {"echo 50_off", "Core"}),
]


@pytest.mark.parametrize("filter, expected", ACCOUNT_FILTERS, ids=[json.dumps(f)[:60] for f, _ in ACCOUNT_FILTERS])
def test_account_filters(rt, data, filter, expected):
    assert names(rt, "account", filter) == expected
    page = rt.records.query(SYS, "account", filter=filter, first=0, total=True)
    assert page.total_count == len(expected)


OPPORTUNITY_FILTERS = [
    ({"account": {"name": {"eq": "Acme"}}}, {"Acme deal 1", "Acme deal 2"}),
    ({"account": {"parent": {"name": {"eq": "Global Holdings"}}}}, {"Acme deal 1", "Acme deal 2", "Bolt deal"}),
    ({"account": {"parent": {"industry": {"eq": "energy"}}}}, {"Core deal", "Echo deal"}),
    ({"account": {"parent": {"parent": {"name": {"starts_with": "global"}}}}}, {"Echo deal"}),
    ({"or": [{"account": {"industry": {"eq": "tech"}}}, {"account": {"is_null": True}}]}, {"Core deal", "Orphan"}),
    ({"and": [{"phase": {"eq": "won"}}, {"account": {"revenue": {"gte": 100}}}]}, {"Acme deal 2", "Core deal"}),
    ({"account": {"tags": {"contains": "red"}}}, {"Acme deal 1", "Acme deal 2", "Bolt deal"}),
    ({"account": {"name": {"contains": "deal"}}}, set()),
    ({"amount": {"gte": 100}, "account": {"active": {"eq": True}}}, {"Acme deal 1", "Acme deal 2", "Echo deal"}),
    ({"number": {"in": ["OPP-0001", "OPP-0007"]}}, {"Acme deal 1", "Echo deal"}),
    ({"number": {"gt": "OPP-0005"}}, {"Orphan", "Echo deal"}),
]


@pytest.mark.parametrize("filter, expected", OPPORTUNITY_FILTERS, ids=[json.dumps(f)[:60] for f, _ in OPPORTUNITY_FILTERS])
def test_opportunity_filters_through_lookups(rt, data, filter, expected):
    assert names(rt, "opportunity", filter) == expected


def test_lookup_filter_by_id_and_in(rt, data):
    accounts, _ = data
    acme, bolt = accounts["Acme"]["id"], accounts["Bolt"]["id"]
    assert names(rt, "opportunity", {"account": {"eq": acme}}) == {"Acme deal 1", "Acme deal 2"}
    assert names(rt, "opportunity", {"account": {"in": [acme, bolt]}}) == {"Acme deal 1", "Acme deal 2", "Bolt deal"}
    assert names(rt, "opportunity", {"account": {"ne": acme}}) == {o[0] for o in OPPORTUNITIES} - {"Acme deal 1", "Acme deal 2"}
    assert names(rt, "account", {"id": {"eq": acme}}) == {"Acme"}
    # an id in another spelling (no dashes, upper case) is the same id
    assert names(rt, "account", {"id": {"eq": acme.replace("-", "").upper()}}) == {"Acme"}


def test_lookup_filters_skip_records_in_the_recycle_bin(rt, data):
    accounts, _ = data
    rt.records.delete(SYS, "account", accounts["Old Group"]["id"])
    assert names(rt, "opportunity", {"account": {"parent": {"industry": {"eq": "energy"}}}}) == {"Echo deal"}
    assert names(rt, "opportunity", {"account": {"parent": {"name": {"eq": "Old Group"}}}}) == set()
    assert names(rt, "account", {"parent": {"name": {"eq": "Old Group"}}}) == set()

    rt.records.delete(SYS, "account", accounts["Acme"]["id"])
    assert names(rt, "opportunity", {"account": {"name": {"eq": "Acme"}}}) == set()
    assert names(rt, "opportunity", {"account": {"parent": {"name": {"eq": "Acme"}}}}) == set()
    assert names(rt, "opportunity", {"account": {"industry": {"eq": "energy"}}}) == {"Echo deal"}
    # the recycle bin itself can be filtered like the live records
    assert names(rt, "account", {"industry": {"eq": "energy"}}, deleted=True) == {"Old Group", "Acme"}

    rt.records.restore(SYS, "account", accounts["Acme"]["id"])
    assert names(rt, "opportunity", {"account": {"name": {"eq": "Acme"}}}) == {"Acme deal 1", "Acme deal 2"}


NEGATIONS = [
    {"employees": {"gte": 20}},
    {"industry": {"eq": "energy"}},
    {"revenue": {"lt": 100}},
    {"active": {"eq": True}},
    {"parent": {"name": {"eq": "Global Holdings"}}},
    {"or": [{"employees": {"eq": 10}}, {"industry": {"eq": "tech"}}]},
]


@pytest.mark.parametrize("filter", NEGATIONS, ids=[json.dumps(f)[:60] for f in NEGATIONS])
def test_not_is_the_complement_of_its_filter(rt, data, filter):
    """Every live record matches exactly one of ``X`` and ``{"not": X}``, null values included
    (``ne`` and ``not_in`` keep nulls; ``not`` must agree with them)."""
    matched = names(rt, "account", filter)
    assert names(rt, "account", {"not": filter}) == ALL_ACCOUNTS - matched


def test_sql_looking_filter_values_are_just_values(rt, data):
    payload = "x'); DROP TABLE obj_account; --"
    assert names(rt, "account", {"name": {"eq": payload}}) == set()
    assert names(rt, "account", {"name": {"contains": "' OR '1'='1"}}) == set()
    assert names(rt, "account", {"name": {"in": [payload, "Acme"]}}) == {"Acme"}
    created = rt.records.create(SYS, "account", {"name": payload})
    assert names(rt, "account", {"name": {"eq": payload}}) == {payload}
    assert names(rt, "account", {"name": {"starts_with": "x')"}}) == {payload}
    assert "obj_account" in inspect(rt.engine).get_table_names()
    assert rt.records.get(SYS, "account", created["id"])["name"] == payload


FILTER_ERRORS = [
    ({"name; drop table x": {"eq": 1}}, "UNKNOWN_FIELD", "filter.name; drop table x"),
    ({"nope": {"eq": 1}}, "UNKNOWN_FIELD", "filter.nope"),
    ({"and": [{"bogus": {"eq": 1}}]}, "UNKNOWN_FIELD", "filter.and.0.bogus"),
    ({"parent": {"bogus": {"eq": 1}}}, "UNKNOWN_FIELD", "filter.parent.bogus"),
    ({"parent": {"parent": {"x; --": {"eq": 1}}}}, "UNKNOWN_FIELD", "filter.parent.parent.x; --"),
    ({"employees": {"contains": "1"}}, "UNSUPPORTED_OPERATOR", "filter.employees.contains"),
    ({"employees": {"like": "1"}}, "UNSUPPORTED_OPERATOR", "filter.employees.like"),
    ({"parent": {"gt": "x"}}, "UNSUPPORTED_OPERATOR", "filter.parent.gt"),
    ({"revenue": {"gt": "abc"}}, "INVALID_VALUE", "filter.revenue.gt"),
    ({"employees": {"eq": "ten"}}, "INVALID_VALUE", "filter.employees.eq"),
    ({"employees": {"in": 10}}, "INVALID_VALUE", "filter.employees.in"),
    ({"industry": {"eq": "banking"}}, "INVALID_VALUE", "filter.industry.eq"),
    ({"active": {"is_null": "yes"}}, "INVALID_VALUE", "filter.active.is_null"),
    ({"founded": {"gt": "2020-02-30"}}, "INVALID_FORMAT", "filter.founded.gt"),
    ({"parent": {"eq": "not-an-id"}}, "INVALID_VALUE", "filter.parent.eq"),
    ({"name": "Acme"}, "INVALID_TYPE", "filter.name"),
    ({"name": {}}, "INVALID_TYPE", "filter.name"),
    ({"and": {"name": {"eq": "x"}}}, "INVALID_TYPE", "filter.and"),
    ({"or": ["x"]}, "INVALID_TYPE", "filter.or.0"),
    ({"not": [1]}, "INVALID_TYPE", "filter.not"),
    ({"employees": {"in": list(range(1001))}}, "TOO_MANY", "filter.employees.in"),
]


@pytest.mark.parametrize("filter, code, path", FILTER_ERRORS, ids=[f"{c}-{p}" for _, c, p in FILTER_ERRORS])
def test_bad_filters_are_refused_with_their_path(rt, data, filter, code, path):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", filter=filter)
    assert (code, path) in error_set(exc), exc.value.as_dict()
    for error in exc.value.as_dict()["errors"]:
        assert error["message"]


def test_filter_that_is_not_an_object_is_refused(rt, data):
    for bad in ([{"name": {"eq": "x"}}], "name = 'x'", 5):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.query(SYS, "account", filter=bad)
        assert ("INVALID_TYPE", "filter") in error_set(exc)


def test_too_deep_filters_are_refused(rt, data):
    deep = {"name": {"eq": "Acme"}}
    for _ in range(12):
        deep = {"not": {"not": deep}}
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", filter=deep)
    assert any(code == "TOO_DEEP" for code, _ in error_set(exc))
    nested = {"parent": {"name": {"eq": "Acme"}}}
    for _ in range(10):
        nested = {"parent": nested}
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", filter=nested)
    assert any(code == "TOO_DEEP" for code, _ in error_set(exc))


def test_every_filter_problem_is_reported_at_once(rt, data):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", filter={"bogus": {"eq": 1}, "employees": {"eq": "x"}, "or": [{"name": {"like": "x"}}]})
    assert {f for _, f in error_set(exc)} >= {"filter.bogus", "filter.employees.eq", "filter.or.0.name.like"}


# -- ordering -----------------------------------------------------------------------------------

def test_sort_on_several_fields_puts_nulls_last_ascending_and_first_descending(rt, data):
    page = rt.records.query(SYS, "account", order_by=["industry", "-revenue"])
    assert [r["name"] for r in page.records] == ["Acme", "echo 50_off", "Old Group", "Bolt", "Global Holdings", "Core", "Dyna"]
    page = rt.records.query(SYS, "account", order_by=["-industry", "revenue"])
    assert [r["name"] for r in page.records] == ["Dyna", "Core", "Global Holdings", "Bolt", "Old Group", "echo 50_off", "Acme"]
    page = rt.records.query(SYS, "opportunity", order_by=["-amount", "name"])
    assert [r["name"] for r in page.records] == ["Bolt deal", "Core deal", "Acme deal 2", "Acme deal 1", "Echo deal", "Orphan", "Dyna deal"]
    page = rt.records.query(SYS, "opportunity", order_by=["phase", "-name"])
    assert [r["name"] for r in page.records] == ["Bolt deal", "Orphan", "Acme deal 1", "Echo deal", "Core deal", "Acme deal 2", "Dyna deal"]


def test_ties_are_broken_by_id(rt, data):
    accounts, _ = data
    page = rt.records.query(SYS, "account", order_by=["employees"])
    got = [r["name"] for r in page.records]
    tie = sorted(["Acme", "Dyna"], key=lambda n: accounts[n]["id"])
    assert got == ["Old Group", *tie, "Bolt", "echo 50_off", "Global Holdings", "Core"]
    default = rt.records.query(SYS, "account")
    assert [r["id"] for r in default.records] == sorted(a["id"] for a in accounts.values())


ORDER_ERRORS = [
    (["name; drop table x"], "UNKNOWN_FIELD", "order_by.0"),
    (["name", "-nope"], "UNKNOWN_FIELD", "order_by.1"),
    (["notes"], "NOT_SORTABLE", "order_by.0"),
    (["tags"], "NOT_SORTABLE", "order_by.0"),
    (["-location"], "NOT_SORTABLE", "order_by.0"),
    ([""], "INVALID_TYPE", "order_by.0"),
    (["-"], "INVALID_TYPE", "order_by.0"),
    ([5], "INVALID_TYPE", "order_by.0"),
]


@pytest.mark.parametrize("order_by, code, path", ORDER_ERRORS, ids=[f"{c}-{p}-{i}" for i, (_, c, p) in enumerate(ORDER_ERRORS)])
def test_bad_order_is_refused(rt, data, order_by, code, path):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", order_by=order_by)
    assert (code, path) in error_set(exc)
    assert "obj_account" in inspect(rt.engine).get_table_names()


# -- keyset paging ------------------------------------------------------------------------------

def _expected_order(records, order_by):
    """Python's view of the platform's order: asc nulls last, desc nulls first, then id."""
    keys = [(o.lstrip("-"), o.startswith("-")) for o in order_by] + [("id", False)]

    def compare(a, b):
        for name, descending in keys:
            x, y = a[name], b[name]
            if x == y:
                continue
            if x is None:
                return -1 if descending else 1
            if y is None:
                return 1 if descending else -1
            result = -1 if x < y else 1
            return -result if descending else result
        return 0

    return [r["id"] for r in sorted(records, key=functools.cmp_to_key(compare))]


def _walk(rt, obj, order_by, size, **kwargs):
    seen, after, pages = [], None, 0
    while True:
        page = rt.records.query(SYS, obj, order_by=order_by, first=size, after=after, **kwargs)
        pages += 1
        assert len(page.records) <= size
        assert len(page.cursors) == len(page.records)
        seen.extend(r["id"] for r in page.records)
        if not page.has_next_page:
            return seen, pages
        assert len(page.records) == size
        after = page.end_cursor
        assert pages < 100


@pytest.fixture
def many(rt):
    phases = ["won", None, "lost", "prospect"]
    amounts = [None, "10", "10", "25.50", "1000", "10", None, "7"]
    dates = ["2026-01-01", None, "2025-12-31", "2026-01-01", None]
    rows = [
        {"name": f"n{i % 9:02d}", "phase": phases[i % 4], "amount": amounts[i % 8], "close_date": dates[i % 5], "probability": (i * 7) % 4 or None}
        for i in range(47)
    ]
    created = []
    for start in range(0, len(rows), 10):  # several batches: ids and timestamps differ between them
        created.extend(rt.records.bulk_create(SYS, "opportunity", rows[start:start + 10]))
    return created


ORDERS = [
    [],
    ["phase", "-amount", "name"],
    ["-close_date", "probability"],
    ["-amount", "-close_date", "-name"],
    ["name", "phase", "close_date", "-probability", "amount"],
    ["-created_at", "number"],
    ["-number"],
]


@pytest.mark.parametrize("order_by", ORDERS, ids=[",".join(o) or "default" for o in ORDERS])
@pytest.mark.parametrize("size", [1, 6, 47, 50])
def test_keyset_paging_walks_every_record_once_in_order(rt, many, order_by, size):
    expected = _expected_order(many, order_by)
    full = rt.records.query(SYS, "opportunity", order_by=order_by, first=1000)
    assert [r["id"] for r in full.records] == expected
    seen, pages = _walk(rt, "opportunity", order_by, size)
    assert seen == expected
    assert pages == -(-len(many) // size)


def test_paging_with_a_filter_and_a_total(rt, many):
    filter = {"or": [{"phase": {"ne": "lost"}}, {"amount": {"is_null": True}}]}
    expected_ids = {r["id"] for r in many if r["phase"] != "lost" or r["amount"] is None}
    seen, _ = _walk(rt, "opportunity", ["phase", "-amount"], 5, filter=filter)
    assert len(seen) == len(set(seen)) and set(seen) == expected_ids
    first = rt.records.query(SYS, "opportunity", filter=filter, order_by=["phase", "-amount"], first=5, total=True)
    assert first.total_count == len(expected_ids)
    second = rt.records.query(SYS, "opportunity", filter=filter, order_by=["phase", "-amount"], first=5, after=first.end_cursor, total=True)
    assert second.total_count == len(expected_ids)
    assert rt.records.query(SYS, "opportunity", first=0, total=True).total_count == 47
    assert rt.records.query(SYS, "opportunity", total=False).total_count is None


def test_paging_continues_after_the_cursor_record_is_deleted(rt, many):
    order = ["-amount", "name"]
    expected = _expected_order(many, order)
    page = rt.records.query(SYS, "opportunity", order_by=order, first=10)
    rt.records.delete(SYS, "opportunity", page.records[-1]["id"])
    rest = rt.records.query(SYS, "opportunity", order_by=order, first=1000, after=page.end_cursor)
    assert [r["id"] for r in rest.records] == expected[10:]


def test_every_cursor_of_a_page_resumes_right_after_its_record(rt, many):
    order = ["phase", "-close_date"]
    expected = _expected_order(many, order)
    page = rt.records.query(SYS, "opportunity", order_by=order, first=12)
    for i, cursor in enumerate(page.cursors):
        nxt = rt.records.query(SYS, "opportunity", order_by=order, first=3, after=cursor)
        assert [r["id"] for r in nxt.records] == expected[i + 1:i + 4]


def _forge(cursor: str, change) -> str:
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw = change(raw)
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_invalid_and_forged_cursors_are_refused(rt, many):
    order = ["-amount", "name"]
    page = rt.records.query(SYS, "opportunity", order_by=order, first=5)
    good = page.end_cursor
    forged = [
        "garbage!!",
        "",
        "=",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"[]").decode(),
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b"null").decode(),
        _forge(good, lambda raw: raw[:-1] + [raw[-1][:-1]]),  # a value missing
        _forge(good, lambda raw: raw[:-1] + [raw[-1] + [1]]),  # a value too many
        _forge(good, lambda raw: raw[:-1] + [[raw[-1][0], raw[-1][1], "x'); DROP TABLE obj_opportunity; --"]]),  # bad id
        _forge(good, lambda raw: [["amount", "a"], *raw[1:]]),  # direction changed
        _forge(good, lambda raw: [["deleted_at", "d"], *raw[1:]]),  # another column
        _forge(good, lambda raw: raw[-1]),  # values only
        _forge(good, lambda raw: "text"),
    ]
    for cursor in forged:
        with pytest.raises(ValidationFailed) as exc:
            rt.records.query(SYS, "opportunity", order_by=order, first=5, after=cursor)
        assert error_set(exc) == {("INVALID_CURSOR", "after")}, cursor
    assert "obj_opportunity" in inspect(rt.engine).get_table_names()


FORGED_VALUES = [
    ("amount", "lots"),
    ("amount", [1]),
    ("name", {"a": 1}),
    ("name", [1, 2]),
    ("probability", "abc"),
    ("probability", {"a": 1}),
    ("close_date", "2020-02-30"),
    ("close_date", 20200101),
    ("created_at", "yesterday"),
    ("phase", ["won"]),
]


@pytest.mark.parametrize("field, value", FORGED_VALUES, ids=[f"{f}-{json.dumps(v)}" for f, v in FORGED_VALUES])
def test_a_cursor_with_a_forged_value_of_the_wrong_type_is_refused(rt, many, field, value):
    order = [field]
    cursor = rt.records.query(SYS, "opportunity", order_by=order, first=3).end_cursor
    forged = _forge(cursor, lambda raw: raw[:-1] + [[value, raw[-1][1]]])
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "opportunity", order_by=order, first=3, after=forged)
    assert error_set(exc) == {("INVALID_CURSOR", "after")}


def test_a_cursor_is_refused_under_another_order(rt, many):
    cursor = rt.records.query(SYS, "opportunity", order_by=["name"], first=5).end_cursor
    for other in (["-name"], ["name", "amount"], ["amount"], [], ["phase"]):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.query(SYS, "opportunity", order_by=other, first=5, after=cursor)
        assert error_set(exc) == {("INVALID_CURSOR", "after")}
    assert len(rt.records.query(SYS, "opportunity", order_by=["name"], first=5, after=cursor).records) == 5


def test_a_cursor_with_a_text_value_that_looks_like_sql_is_a_value(rt, many):
    order = ["name"]
    cursor = rt.records.query(SYS, "opportunity", order_by=order, first=1).end_cursor
    sneaky = _forge(cursor, lambda raw: raw[:-1] + [["n04' OR '1'='1", raw[-1][1]]])
    page = rt.records.query(SYS, "opportunity", order_by=order, first=1000, after=sneaky)
    assert {r["name"] for r in page.records} == {f"n{i:02d}" for i in range(5, 9)}
    assert "obj_opportunity" in inspect(rt.engine).get_table_names()


@pytest.mark.parametrize("first", [-1, 1001, 10**9, "10", True, 2.5])
def test_first_out_of_bounds_is_refused(rt, data, first):
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", first=first)
    assert error_set(exc) == {("OUT_OF_RANGE", "first")}


def test_first_bounds_are_inclusive(rt, data):
    empty = rt.records.query(SYS, "account", first=0)
    assert empty.records == [] and empty.has_next_page is True and empty.end_cursor is None
    assert len(rt.records.query(SYS, "account", first=1000).records) == len(ACCOUNTS)
    one = rt.records.query(SYS, "account", first=1)
    assert len(one.records) == 1 and one.has_next_page


# -- selected fields ----------------------------------------------------------------------------

def test_fields_returns_only_those_plus_id_and_version(rt, data):
    accounts, _ = data
    page = rt.records.query(SYS, "account", fields=["name", "location", "tags"], order_by=["-revenue"], first=3)
    for record in page.records:
        assert set(record) == {"id", "version", "name", "location", "tags"}
    assert [r["name"] for r in page.records] == ["Bolt", "Global Holdings", "Core"]
    # the cursor still carries the sort values, though revenue was not selected
    rest = rt.records.query(SYS, "account", fields=["name"], order_by=["-revenue"], after=page.end_cursor)
    tie = sorted(["Acme", "Dyna"], key=lambda n: accounts[n]["id"])
    assert [r["name"] for r in rest.records] == [*tie, "echo 50_off", "Old Group"]
    assert all(set(r) == {"id", "version", "name"} for r in rest.records)

    got = rt.records.get(SYS, "account", accounts["Acme"]["id"], fields=["revenue"])
    assert got == {"id": accounts["Acme"]["id"], "version": 1, "revenue": Decimal("100.00")}
    assert set(rt.records.query(SYS, "account", fields=[]).records[0]) == {"id", "version"}


@pytest.mark.parametrize("fields", [["nope"], ["name", "name; drop table x"], ["location__lat"], [None], "name"])
def test_unknown_fields_are_refused(rt, data, fields):
    accounts, _ = data
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(SYS, "account", fields=fields)
    assert {f for _, f in error_set(exc)} == {"fields"}
    assert {c for c, _ in error_set(exc)} <= {"UNKNOWN_FIELD", "INVALID_TYPE"}
    with pytest.raises(ValidationFailed):
        rt.records.get(SYS, "account", accounts["Acme"]["id"], fields=fields)


# -- statement counts ---------------------------------------------------------------------------

class Statements:
    """Every SQL statement the engine sends, transaction control left out."""

    def __init__(self, engine):
        self.engine = engine
        self.seen: list[str] = []

    def _on(self, conn, cursor, statement, parameters, context, executemany):
        if not statement.strip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            self.seen.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)

    def count(self, call) -> int:
        self.seen.clear()
        call()
        return len(self.seen)


def _add_accounts(rt, n, start=0):
    parent = rt.records.create(SYS, "account", {"name": f"parent {start}"})
    rt.records.bulk_create(SYS, "account", [{"name": f"a{start + i}", "parent": parent["id"], "industry": "tech"} for i in range(n - 1)])


def test_a_query_page_costs_the_same_statements_for_5_or_50_records(rt):
    query = lambda: rt.records.query(  # noqa: E731
        SYS, "account", filter={"parent": {"name": {"starts_with": "parent"}}}, order_by=["-name"], first=100, total=True)
    _add_accounts(rt, 5)
    query()  # warm: the catalog is loaded once
    with Statements(rt.engine) as statements:
        small = statements.count(query)
        assert len(rt.records.query(SYS, "account", first=100).records) == 5
        _add_accounts(rt, 45, start=100)
        assert len(rt.records.query(SYS, "account", first=100).records) == 50
        large = statements.count(query)
        some_id = rt.records.query(SYS, "account", first=1).records[0]["id"]
        got = statements.count(lambda: rt.records.get(SYS, "account", some_id))
    assert small == large == 3  # version read, page, count
    assert got == 2  # version read, record


def test_paging_deep_costs_the_same_as_the_first_page(rt):
    _add_accounts(rt, 60)
    first = rt.records.query(SYS, "account", order_by=["name"], first=10)
    with Statements(rt.engine) as statements:
        n_first = statements.count(lambda: rt.records.query(SYS, "account", order_by=["name"], first=10))
        after = first.end_cursor
        counts = []
        for _ in range(4):
            page = None

            def step():
                nonlocal page
                page = rt.records.query(SYS, "account", order_by=["name"], first=10, after=after)

            counts.append(statements.count(step))
            after = page.end_cursor
    assert counts == [n_first] * 4


def _bulk(rt, n, tag):
    parent = rt.records.create(SYS, "account", {"name": f"p{tag}"})
    return lambda: rt.records.bulk_create(SYS, "opportunity", [
        {"name": f"{tag}{i}", "amount": i, "phase": "won", "account": parent["id"]} for i in range(n)])


def test_bulk_create_costs_the_same_statements_for_20_or_200_rows(rt):
    _bulk(rt, 3, "warm")()
    small, large = _bulk(rt, 20, "s"), _bulk(rt, 200, "l")
    with Statements(rt.engine) as statements:
        n_small = statements.count(small)
        n_large = statements.count(large)
    assert n_small == n_large
    assert n_small <= 6  # version read, lookup check, unique check of the auto number, counter, insert (+ history)
    assert rt.records.query(SYS, "opportunity", first=0, total=True).total_count == 223


def test_bulk_create_with_unique_and_tracked_fields_costs_constant_statements(rt):
    rt.metadata.create_object(SYS, {"api_name": "item", "label": "Item", "fields": [
        {"api_name": "code", "label": "Code", "type": "text", "unique": True, "tracked": True},
        {"api_name": "owner_account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
    ]})
    acct = rt.records.create(SYS, "account", {"name": "A"})
    rows = lambda n, tag: [{"code": f"{tag}-{i}", "owner_account": acct["id"]} for i in range(n)]  # noqa: E731
    rt.records.bulk_create(SYS, "item", rows(2, "warm"))
    with Statements(rt.engine) as statements:
        n_small = statements.count(lambda: rt.records.bulk_create(SYS, "item", rows(20, "s")))
        n_large = statements.count(lambda: rt.records.bulk_create(SYS, "item", rows(200, "l")))
    assert n_small == n_large
    assert rt.records.query(SYS, "item", first=0, total=True).total_count == 222


def test_bulk_update_statements_do_not_depend_on_unrelated_records(rt):
    _add_accounts(rt, 5)
    ids = [r["id"] for r in rt.records.query(SYS, "account", first=3).records]
    change = lambda tag: rt.records.bulk_update(SYS, "account", [{"id": i, "values": {"name": f"{tag}{n}"}} for n, i in enumerate(ids)])  # noqa: E731
    change("warm")
    with Statements(rt.engine) as statements:
        before = statements.count(lambda: change("x"))
        _add_accounts(rt, 50, start=100)
        after = statements.count(lambda: change("y"))
    assert before == after


def test_a_lookup_filter_query_is_one_select(rt, data):
    query = lambda: rt.records.query(  # noqa: E731
        SYS, "opportunity", filter={"account": {"parent": {"name": {"eq": "Global Holdings"}}, "industry": {"ne": "tech"}}},
        order_by=["-amount"])
    query()
    with Statements(rt.engine) as statements:
        statements.count(query)
        seen = list(statements.seen)
    version_reads = [s for s in seen if "lc_meta_version" in s]
    others = [s for s in seen if "lc_meta_version" not in s]
    assert len(version_reads) == 1
    assert len(others) == 1 and others[0].lstrip().upper().startswith("SELECT")
    assert {r["name"] for r in query().records} == {"Acme deal 1", "Acme deal 2", "Bolt deal"}


def test_queries_do_not_reload_the_catalog(rt, data):
    rt.records.query(SYS, "account")
    loads = rt.catalogs.loads
    for _ in range(5):
        rt.records.query(SYS, "opportunity", filter={"account": {"name": {"eq": "Acme"}}})
        rt.records.get(SYS, "account", data[0]["Acme"]["id"])
    assert rt.catalogs.loads == loads


def test_a_page_in_an_indexed_order_reads_the_index_not_every_row(tmp_path):
    """Live records all share deleted_at's null: only recycled rows are indexed on it, so a
    planner without statistics (SQLite's) walks the amount index for the top of the order
    instead of sorting every live row."""
    runtime = Runtime.connect(f"sqlite:///{tmp_path}/plan.db").install()
    runtime.metadata.create_object(SYSTEM_ACTOR, {"api_name": "ranked", "label": "Ranked", "fields": [
        {"api_name": "amount", "label": "Amount", "type": "decimal", "indexed": True}]})
    runtime.records.bulk_create(SYSTEM_ACTOR, "ranked", [{"amount": i} for i in range(200)])
    statements = []

    def remember(conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT") and "obj_ranked" in statement:
            statements.append((conn, statement, parameters))

    event.listen(runtime.engine, "before_cursor_execute", remember)
    try:
        page = runtime.records.query(SYSTEM_ACTOR, "ranked", order_by=["-amount"], first=5)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", remember)
    assert [r["amount"] for r in page.records] == [Decimal(199 - i) for i in range(5)]
    _conn, statement, parameters = statements[-1]
    with runtime.engine.connect() as explaining:
        plans = [row[-1] for row in explaining.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    runtime.close()
    assert any("ix_obj_ranked_amount" in step for step in plans), plans
    assert not any("deleted_at" in step for step in plans), plans


def test_a_request_overtaken_by_a_metadata_change_is_a_conflict_not_a_crash(runtime):
    """A request reads under the Catalog it started with; when a metadata change removed what it
    reads or writes meanwhile, the database refuses the statement and the caller gets CONFLICT."""
    from lowcode.metadata.errors import Conflict
    from lowcode.runtime.reading import Selection, Window

    runtime.metadata.create_object(SYSTEM_ACTOR, {"api_name": "memo", "label": "Memo", "fields": [
        {"api_name": "title", "label": "Title", "type": "text"}, {"api_name": "body", "label": "Body", "type": "text"}]})
    runtime.records.create(SYSTEM_ACTOR, "memo", {"title": "kept", "body": "dropped"})
    started_with = runtime.catalog()
    runtime.metadata.delete_field(SYSTEM_ACTOR, "memo", "body")
    overtaken = runtime.records.at(started_with)
    with pytest.raises(Conflict) as caught:
        overtaken.read_page(SYSTEM_ACTOR, "memo", Window(), Selection(["title", "body"]))
    assert caught.value.ctx["metadata_version"] == runtime.catalog().version
    with pytest.raises(Conflict):
        overtaken.create(SYSTEM_ACTOR, "memo", {"title": "new", "body": "gone"})
    assert [r["title"] for r in runtime.records.query(SYSTEM_ACTOR, "memo").records] == ["kept"]


def test_picklists_sort_in_the_order_their_values_are_defined(runtime):
    """Stages read prospecting -> quote -> closed, not alphabetically; pages walk that order too."""
    stages = ["prospecting", "qualification", "quote", "negotiation", "closed_won", "closed_lost"]
    runtime.metadata.create_object(SYSTEM_ACTOR, {"api_name": "pursuit", "label": "Pursuit", "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "phase", "label": "Phase", "type": "picklist", "options": {"values": PICK(*stages)["values"]}}]})
    rows = [{"name": f"{stage}-{i}", "phase": stage} for i in range(2) for stage in reversed(stages)] + [{"name": "none"}]
    runtime.records.bulk_create(SYSTEM_ACTOR, "pursuit", rows)

    def phases(order, size):
        seen, after = [], None
        while True:
            page = runtime.records.query(SYSTEM_ACTOR, "pursuit", order_by=[order], first=size, after=after, fields=["phase"])
            seen.extend(r["phase"] for r in page.records)
            if not page.has_next_page:
                return seen
            after = page.end_cursor

    ascending = [s for s in stages for _ in range(2)] + [None]
    for size in (1, 4, 50):
        assert phases("phase", size) == ascending
        assert phases("-phase", size) == [None] + [s for s in reversed(stages) for _ in range(2)]
