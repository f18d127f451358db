"""Roll-up fields through the metadata and record services, on SQLite and PostgreSQL.

A sales order (master) summarizes its lines (details): how many, the sum, least and greatest price,
the quantity, and how many lines are shipped. Every expectation is recomputed in Python from the
lines the test knows to be live, after every kind of write; concurrent inserts on PostgreSQL must
leave the summary exact. Roll-ups are the ``DERIVED`` half of the field type contract: values, every
operator of their result type, order and paging, columns and type changes are checked here.
"""
from __future__ import annotations

import random
import threading
from decimal import Decimal as D

import pytest
import sqlalchemy as sa
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    InUse,
    InvalidDefinition,
    UnsafeChange,
    ValidationFailed,
)
from lowcode.runtime import Runtime

PICK = {"values": [{"api_name": "open", "label": "Open"}, {"api_name": "shipped", "label": "Shipped"}]}
OBJECTS = [
    {"api_name": "region", "label": "Region", "fields": [{"api_name": "name", "label": "Name", "type": "text"}]},
    {"api_name": "sales_order", "label": "Order", "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "region", "label": "Region", "type": "master_detail", "options": {"target": "region"}}]},
    {"api_name": "order_line", "label": "Line", "fields": [
        {"api_name": "sales_order", "label": "Order", "type": "master_detail", "options": {"target": "sales_order"}},
        {"api_name": "qty", "label": "Quantity", "type": "integer"},
        {"api_name": "price", "label": "Price", "type": "currency"},
        {"api_name": "status", "label": "Status", "type": "picklist", "options": PICK},
        {"api_name": "shipped_on", "label": "Shipped on", "type": "date"}]},
]
ROLLUPS = {
    "line_count": {"function": "count"},
    "total": {"function": "sum", "aggregate_field": "price"},
    "cheapest": {"function": "min", "aggregate_field": "price"},
    "dearest": {"function": "max", "aggregate_field": "price"},
    "units": {"function": "sum", "aggregate_field": "qty"},
    "shipped_lines": {"function": "count", "filter": "record.status == 'shipped'"},
    "last_shipped": {"function": "max", "aggregate_field": "shipped_on"},
}


def rollup(name: str, child: str = "order_line", **options) -> dict:
    return {"api_name": name, "label": name.replace("_", " ").title(), "type": "rollup", "options": {"child_object": child, **options}}


def build(rt: Runtime, rollups: dict = ROLLUPS) -> None:
    rt.metadata.create_objects(S, OBJECTS)
    for name, options in rollups.items():
        rt.metadata.create_field(S, "sales_order", rollup(name, **options))


def expected(lines: list[dict]) -> dict:
    prices = [D(line["price"]) for line in lines if line.get("price") is not None]
    shipped = [line["shipped_on"] for line in lines if line.get("shipped_on")]
    return {"line_count": len(lines), "total": sum(prices, D("0.00")).quantize(D("0.01")),
            "cheapest": min(prices) if prices else None, "dearest": max(prices) if prices else None,
            "units": D(sum(line.get("qty") or 0 for line in lines)), "shipped_lines": sum(line.get("status") == "shipped" for line in lines),
            "last_shipped": max(shipped) if shipped else None}


def summary(rt: Runtime, order_id: str) -> dict:
    record = rt.records.get(S, "sales_order", order_id)
    return {name: record[name] for name in ROLLUPS}


def comparable(values: dict) -> dict:
    return {k: (str(v) if v is not None and not isinstance(v, int) else v) for k, v in values.items()}


@pytest.fixture
def rt(runtime):
    build(runtime)
    runtime.region = runtime.records.create(S, "region", {"name": "North"})["id"]
    return runtime


def new_order(rt, name: str = "O") -> str:
    return rt.records.create(S, "sales_order", {"name": name, "region": rt.region})["id"]


def line(order_id: str, qty: int, price: str | None, status: str = "open", shipped_on: str | None = None) -> dict:
    return {"sales_order": order_id, "qty": qty, "price": price, "status": status, "shipped_on": shipped_on}


# -- definitions --------------------------------------------------------------------------------
def test_result_types_are_derived_from_the_function_and_field(rt):
    fields = rt.catalog().object("sales_order").fields_by_name
    derived = {name: (fields[name].options["result_type"], fields[name].options["scale"], fields[name].options["relationship_field"])
               for name in ROLLUPS}
    assert derived == {"line_count": ("integer", None, "sales_order"), "total": ("currency", 2, "sales_order"),
                       "cheapest": ("currency", 2, "sales_order"), "dearest": ("currency", 2, "sales_order"),
                       "units": ("decimal", 0, "sales_order"), "shipped_lines": ("integer", None, "sales_order"),
                       "last_shipped": ("date", None, "sales_order")}
    pg = rt.engine.dialect.name == "postgresql"
    columns = {c["name"]: c["type"].compile(dialect=rt.engine.dialect) for c in sa.inspect(rt.engine).get_columns("obj_sales_order")}
    assert {name: columns[name] for name in ROLLUPS} == {
        "line_count": "INTEGER", "total": "NUMERIC(18, 2)" if pg else "BIGINT", "cheapest": "NUMERIC(18, 2)" if pg else "BIGINT",
        "dearest": "NUMERIC(18, 2)" if pg else "BIGINT", "units": "NUMERIC(18, 0)" if pg else "BIGINT", "shipped_lines": "INTEGER",
        "last_shipped": "DATE"}


@pytest.mark.parametrize(("definition", "problem"), [
    (rollup("r", child="nothing", function="count"), ("UNKNOWN_OBJECT", "options.child_object", "there is no object named 'nothing'")),
    (rollup("r", child="region", function="count"), ("INVALID_VALUE", "options.child_object", "'region' has no master-detail field pointing to 'sales_order'")),
    (rollup("r", function="count", relationship_field="qty"),
     ("INVALID_VALUE", "options.relationship_field", "'order_line.qty' is not a master-detail field pointing to 'sales_order'")),
    (rollup("r", function="sum", aggregate_field="nope"), ("UNKNOWN_FIELD", "options.aggregate_field", "'order_line' has no field named 'nope'")),
    (rollup("r", function="sum", aggregate_field="status"),
     ("INVALID_VALUE", "options.aggregate_field", "sum does not apply to a picklist field; use one of integer, decimal, currency, percent")),
    (rollup("r", function="sum", aggregate_field="shipped_on"),
     ("INVALID_VALUE", "options.aggregate_field", "sum does not apply to a date field; use one of integer, decimal, currency, percent")),
    (rollup("r", function="count", filter="record.status == "), None),
    (rollup("r", function="count", filter="record.sku == 'x'"), ("UNKNOWN_FIELD", "options.filter", "'order_line' has no field 'sku' (record.sku)")),
    (rollup("r", function="count", filter="record.qty + 1"), ("INVALID_VALUE", "options.filter", "must be a condition (true or false), not an int value")),
    (rollup("r", function="count", filter="record.status.matches('^s')"),
     ("NOT_TRANSLATABLE", "options.filter", "must translate into SQL: 'matches()' is not part of the translatable subset")),
    ({**rollup("r", function="count"), "required": True}, ("NOT_ALLOWED", "required", "a rollup field is computed, so it cannot be required")),
    ({**rollup("r", function="count"), "tracked": True}, ("NOT_ALLOWED", "tracked", "a rollup field is computed, so it cannot be tracked")),
])
def test_invalid_roll_ups_are_refused_and_change_nothing(rt, definition, problem):
    before = rt.catalog().version
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_field(S, "sales_order", definition)
    found = [(e.code, e.field, e.message) for e in caught.value.errors]
    if problem is None:
        assert [(c, f) for c, f, _ in found] == [("SYNTAX_ERROR", "options.filter")]
    else:
        assert found == [problem]
    assert rt.catalog().version == before and rt.catalog().object("sales_order").field("r") is None


def test_function_and_field_must_agree(rt):
    for options, message in (({"function": "count", "aggregate_field": "qty"}, "count counts children; leave aggregate_field out"),
                             ({"function": "max"}, "max needs the child field to aggregate"),
                             ({"function": "median", "aggregate_field": "qty"}, "must be one of: count, sum, min, max")):
        with pytest.raises(InvalidDefinition) as caught:
            rt.metadata.create_field(S, "sales_order", rollup("r", **options))
        assert [e.message for e in caught.value.errors] == [message]


def test_a_roll_up_added_later_summarizes_the_children_already_there(rt):
    order = new_order(rt)
    lines = [line(order, 2, "3.10"), line(order, 5, "1.05", "shipped")]
    rt.records.bulk_create(S, "order_line", lines)
    rt.metadata.create_field(S, "sales_order", rollup("later_total", function="sum", aggregate_field="price",
                                                       filter="record.qty >= 5"))
    assert rt.records.get(S, "sales_order", order)["later_total"] == D("1.05")


# -- kept exact on every write ---------------------------------------------------------------------
def test_every_child_write_keeps_the_summaries_exact(rt):
    first, second = new_order(rt, "first"), new_order(rt, "second")
    assert comparable(summary(rt, first)) == comparable(expected([]))
    live: dict[str, dict] = {}

    def check() -> None:
        for order in (first, second):
            mine = [v for v in live.values() if v["sales_order"] == order]
            assert comparable(summary(rt, order)) == comparable(expected(mine)), order

    one = rt.records.create(S, "order_line", line(first, 3, "19.99", "shipped", "2026-03-01"))
    live[one["id"]] = line(first, 3, "19.99", "shipped", "2026-03-01")
    check()
    batch = [line(first, 1, "0.01"), line(first, 7, None), line(second, 2, "5.50", "shipped", "2026-05-02")]
    for created, values in zip(rt.records.bulk_create(S, "order_line", batch), batch):
        live[created["id"]] = values
    check()
    rt.records.update(S, "order_line", one["id"], {"price": "25.00", "status": "open"})
    live[one["id"]].update(price="25.00", status="open")
    check()
    rt.records.update(S, "order_line", one["id"], {"sales_order": second})
    live[one["id"]]["sales_order"] = second
    check()
    some = [i for i, v in live.items() if v["sales_order"] == first]
    rt.records.bulk_update(S, "order_line", [{"id": i, "values": {"qty": 4}} for i in some])
    for i in some:
        live[i]["qty"] = 4
    check()
    rt.records.delete(S, "order_line", one["id"])
    deleted = live.pop(one["id"])
    check()
    rt.records.restore(S, "order_line", one["id"])
    live[one["id"]] = deleted
    check()
    rt.records.hard_delete(S, "order_line", one["id"])
    del live[one["id"]]
    check()


def test_deleting_and_restoring_a_master_with_its_details(rt):
    order = new_order(rt)
    rt.records.bulk_create(S, "order_line", [line(order, 1, "2.00"), line(order, 2, "3.00", "shipped")])
    rt.metadata.create_field(S, "region", rollup("order_lines", child="sales_order", function="sum", aggregate_field="line_count"))
    assert rt.records.get(S, "region", rt.region)["order_lines"] == D(2)
    rt.records.delete(S, "sales_order", order)
    assert rt.records.get(S, "sales_order", order, deleted=True)["line_count"] == 0
    assert rt.records.get(S, "region", rt.region)["order_lines"] == D(0)
    rt.records.restore(S, "sales_order", order)
    assert summary(rt, order)["line_count"] == 2 and summary(rt, order)["total"] == D("5.00")
    assert rt.records.get(S, "region", rt.region)["order_lines"] == D(2)


def test_a_summary_of_a_summary_follows_the_grandchildren(rt):
    rt.metadata.create_field(S, "region", rollup("revenue", child="sales_order", function="sum", aggregate_field="total"))
    a, b = new_order(rt, "a"), new_order(rt, "b")
    rt.records.bulk_create(S, "order_line", [line(a, 1, "10.00"), line(b, 1, "2.50"), line(b, 1, "0.25")])
    assert rt.records.get(S, "region", rt.region)["revenue"] == D("12.75")
    doomed = rt.records.query(S, "order_line", filter={"price": {"eq": "10.00"}}).records[0]["id"]
    rt.records.hard_delete(S, "order_line", doomed)
    assert rt.records.get(S, "region", rt.region)["revenue"] == D("2.75")


def test_summaries_are_read_only_and_do_not_move_the_masters_version(rt):
    order = new_order(rt)
    with pytest.raises(ValidationFailed) as caught:
        rt.records.update(S, "sales_order", order, {"total": "5"})
    assert [(e.code, e.field) for e in caught.value.errors] == [("READ_ONLY", "total")]
    rt.records.create(S, "order_line", line(order, 1, "1.00"))
    assert rt.records.get(S, "sales_order", order)["version"] == 1


# -- the contract's value checks, for roll-ups --------------------------------------------------------
def test_roll_ups_filter_with_every_operator_of_their_result_type_sort_and_page(rt):
    orders = [new_order(rt, f"o{i}") for i in range(4)]
    for order, count in zip(orders, (2, 0, 5, 1)):
        if count:
            rt.records.bulk_create(S, "order_line", [line(order, 1, f"{i + 1}.00") for i in range(count)])
    totals = {order: D(sum(range(1, c + 1))).quantize(D("0.01")) for order, c in zip(orders, (2, 0, 5, 1))}

    def found(flt):
        return {r["id"] for r in rt.records.query(S, "sales_order", filter=flt).records}

    pivot = D("3.00")
    assert found({"total": {"eq": "3.00"}}) == {orders[0]}
    assert found({"total": {"ne": "3.00"}}) == set(orders) - {orders[0]}
    assert found({"total": {"in": ["3", "1"]}}) == {orders[0], orders[3]}
    assert found({"total": {"not_in": ["3"]}}) == set(orders) - {orders[0]}
    assert found({"total": {"lt": "3"}}) == {o for o, t in totals.items() if t < pivot}
    assert found({"total": {"lte": "3"}}) == {o for o, t in totals.items() if t <= pivot}
    assert found({"total": {"gt": "3"}}) == {o for o, t in totals.items() if t > pivot}
    assert found({"total": {"gte": "3"}}) == {o for o, t in totals.items() if t >= pivot}
    assert found({"total": {"is_null": True}}) == set()
    assert found({"line_count": {"gte": 2}, "cheapest": {"eq": "1.00"}}) == {orders[0], orders[2]}
    assert found({"cheapest": {"is_null": True}}) == {orders[1]}
    with pytest.raises(ValidationFailed) as caught:
        rt.records.query(S, "sales_order", filter={"total": {"contains": "1"}})
    assert [(e.code, e.field) for e in caught.value.errors] == [("UNSUPPORTED_OPERATOR", "filter.total.contains")]
    by_total = sorted(orders, key=lambda o: (totals[o], o))
    assert [r["id"] for r in rt.records.query(S, "sales_order", order_by=["total"]).records] == by_total
    walked, after = [], None
    while True:
        page = rt.records.query(S, "sales_order", order_by=["-total"], first=1, after=after)
        walked += [r["id"] for r in page.records]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert walked == sorted(orders, key=lambda o: (-totals[o], o))
    groups = rt.records.aggregate(S, "sales_order", group_by=[{"field": "line_count"}], measures=[["sum", "total"]])
    assert [(g["key"]["line_count"], g["count"], g["sum"]["total"]) for g in groups] == [
        (0, 1, D("0.00")), (1, 1, D("1.00")), (2, 1, D("3.00")), (5, 1, D("15.00"))]


def test_changes_to_a_roll_up(rt):
    order = new_order(rt)
    rt.records.bulk_create(S, "order_line", [line(order, 1, "2.00", "shipped"), line(order, 4, "3.00")])
    before = rt.records.get(S, "sales_order", order)
    rt.metadata.update_field(S, "sales_order", "shipped_lines", {"label": "Lines not shipped",
                                                                  "options": {"child_object": "order_line", "function": "count",
                                                                              "filter": "record.status != 'shipped'"}})
    after = rt.records.get(S, "sales_order", order)
    assert (after["shipped_lines"], after["line_count"], after["version"]) == (1, 2, before["version"])
    rt.metadata.update_field(S, "sales_order", "dearest", {"options": {"child_object": "order_line", "function": "min", "aggregate_field": "price"}})
    assert rt.records.get(S, "sales_order", order)["dearest"] == D("2.00")
    version = rt.catalog().version
    for changes in ({"options": {"child_object": "order_line", "function": "sum", "aggregate_field": "qty"}},
                    {"type": "integer"}):
        with pytest.raises(UnsafeChange):
            rt.metadata.update_field(S, "sales_order", "total", changes)
    with pytest.raises(UnsafeChange):
        rt.metadata.update_field(S, "sales_order", "name", {"type": "rollup", "options": {"child_object": "order_line", "function": "count"}})
    assert rt.catalog().version == version and rt.records.get(S, "sales_order", order)["total"] == D("5.00")


def test_what_a_roll_up_reads_cannot_go_away(rt):
    version = rt.catalog().version
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_field(S, "order_line", "price")
    assert caught.value.ctx["used_by"] == ["roll-up 'sales_order.total'", "roll-up 'sales_order.cheapest'", "roll-up 'sales_order.dearest'"]
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_field(S, "order_line", "status")
    assert caught.value.ctx["used_by"] == ["roll-up 'sales_order.shipped_lines'"]
    with pytest.raises(InUse):
        rt.metadata.update_field(S, "order_line", "qty", {"type": "decimal", "options": {"scale": 2}})
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_object(S, "order_line")
    assert "sales_order.line_count" in caught.value.message
    assert rt.catalog().version == version
    rt.metadata.delete_field(S, "sales_order", "last_shipped")
    rt.metadata.delete_field(S, "order_line", "shipped_on")
    assert rt.catalog().object("order_line").field("shipped_on") is None


# -- concurrency ---------------------------------------------------------------------------------
def run_together(n: int, work) -> list:
    barrier, failures = threading.Barrier(n), [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            work(i)
        except BaseException as exc:  # reported below
            failures[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return failures


def test_concurrent_child_inserts_keep_the_summary_exact_on_postgresql(postgres_url):
    rt = Runtime.connect(postgres_url).install()
    try:
        build(rt)
        region = rt.records.create(S, "region", {"name": "R"})["id"]
        orders = [rt.records.create(S, "sales_order", {"name": f"o{i}", "region": region})["id"] for i in range(2)]
        rt.metadata.create_field(S, "region", rollup("revenue", child="sales_order", function="sum", aggregate_field="total"))
        rng = random.Random(5)
        plans = [[(orders[rng.randrange(2)], rng.randrange(1, 9), f"{rng.randrange(1, 10_000) / 100:.2f}") for _ in range(12)]
                 for _ in range(8)]

        def work(i: int) -> None:
            for k, (order, qty, price) in enumerate(plans[i]):
                if (i + k) % 2:
                    rt.records.create(S, "order_line", line(order, qty, price))
                else:
                    rt.records.bulk_create(S, "order_line", [line(order, qty, price)])

        assert run_together(8, work) == [None] * 8
        for order in orders:
            mine = [line(order, q, p) for plan in plans for o, q, p in plan if o == order]
            assert comparable(summary(rt, order)) == comparable(expected(mine))
        everything = [line(o, q, p) for plan in plans for o, q, p in plan]
        assert rt.records.get(S, "region", region)["revenue"] == expected(everything)["total"]

        ids = [r["id"] for r in rt.records.query(S, "order_line", first=500).records]
        assert len(ids) == 96
        doomed, kept = ids[:40], ids[40:]

        def churn(i: int) -> None:
            for record_id in doomed[i::8]:
                rt.records.delete(S, "order_line", record_id)
            rt.records.create(S, "order_line", line(orders[i % 2], 1, "1.00"))

        assert run_together(8, churn) == [None] * 8
        live = rt.records.query(S, "order_line", first=500).records
        assert len(live) == len(kept) + 8
        for order in orders:
            mine = [r for r in live if r["sales_order"] == order]
            assert comparable(summary(rt, order)) == comparable(expected(mine))
    finally:
        rt.close()


def test_roll_ups_of_roll_ups_made_in_one_change_and_objects_deleted_together(runtime):
    runtime.metadata.create_objects(S, [
        {"api_name": "invoice", "label": "Invoice", "fields": [
            rollup("total", child="instalment", function="sum", aggregate_field="paid")]},
        {"api_name": "instalment", "label": "Instalment", "fields": [
            {"api_name": "invoice", "label": "Invoice", "type": "master_detail", "options": {"target": "invoice"}},
            rollup("paid", child="remittance", function="sum", aggregate_field="amount")]},
        {"api_name": "remittance", "label": "Remittance", "fields": [
            {"api_name": "instalment", "label": "Instalment", "type": "master_detail", "options": {"target": "instalment"}},
            {"api_name": "amount", "label": "Amount", "type": "currency"}]}])
    options = runtime.catalog().object("invoice").field("total").options
    assert (options["result_type"], options["scale"]) == ("currency", 2)
    invoice = runtime.records.create(S, "invoice", {})
    instalment = runtime.records.create(S, "instalment", {"invoice": invoice["id"]})
    runtime.records.create(S, "remittance", {"instalment": instalment["id"], "amount": "2.50"})
    assert runtime.records.get(S, "invoice", invoice["id"])["total"] == D("2.50")
    with pytest.raises(InUse) as caught:
        runtime.metadata.delete_objects(S, ["instalment", "remittance"])
    assert caught.value.ctx["referrers"] == ["invoice.total"]
    runtime.metadata.delete_objects(S, ["remittance", "invoice", "instalment"])
    assert {"invoice", "instalment", "remittance"}.isdisjoint(runtime.catalog().objects)
