"""Formula fields through the metadata and record services, on SQLite and PostgreSQL.

Formulas within the part of CEL that translates into SQL are computed by the database: every value
is checked against what the test computes in Python, and they filter with every operator of their
result type, sort, page and group. Others are computed after reading and refuse filters, sorts and
groupings with a clear error. Formulas are the ``DERIVED`` half of the field type contract.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP
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
from lowcode.runtime.reading import Selection, Window

PICK = {"values": [{"api_name": v, "label": v.title()} for v in ("web", "phone", "fair")]}
TAGS = {"values": [{"api_name": v, "label": v.title()} for v in ("red", "green")]}
DEAL = {"api_name": "deal", "label": "Deal", "fields": [
    {"api_name": "name", "label": "Name", "type": "text"},
    {"api_name": "qty", "label": "Quantity", "type": "integer"},
    {"api_name": "price", "label": "Price", "type": "currency"},
    {"api_name": "rate", "label": "Rate", "type": "decimal", "options": {"precision": 12, "scale": 4}},
    {"api_name": "source", "label": "Source", "type": "picklist", "options": PICK},
    {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": TAGS},
    {"api_name": "urgent", "label": "Urgent", "type": "boolean"},
    {"api_name": "close_date", "label": "Close date", "type": "date"},
]}
FORMULAS = {
    "amount": ("record.price * double(record.qty)", "currency", None),
    "weighted": ("record.price * record.rate", "decimal", 3),
    "half": ("record.qty / 2", "integer", None),
    "rest": ("record.qty % 3", "integer", None),
    "label": ("record.name + ' (' + record.source + ')'", "text", None),
    "big": ("record.qty >= 10 && !record.urgent", "boolean", None),
    "band": ("record.qty > 5 ? 'large' : 'small'", "text", None),
    "per_unit": ("record.price / double(record.qty)", "currency", None),
    "closes": ("record.close_date", "date", None),
    "made": ("record.created_at", "datetime", None),
    "initials": ("record.name.startsWith('A') || record.name.contains('z') || record.name.endsWith('!')", "boolean", None),
    "name_size": ("size(record.name)", "integer", None),
    "tagged_red": ("record.tags.exists(t, t == 'red')", "boolean", None),
    "shouting": ("record.name.matches('^[A-Z]+$')", "text", None),
}
ROWS = [
    {"name": "Acme", "qty": 7, "price": "10.25", "rate": "0.3333", "source": "web", "tags": ["red"], "urgent": False, "close_date": "2026-03-31"},
    {"name": "bolt!", "qty": -7, "price": "3.00", "rate": "1.5000", "source": "phone", "tags": [], "urgent": True, "close_date": "2026-01-02"},
    {"name": "zeta", "qty": 0, "price": "99.99", "rate": "0.0005", "source": "fair", "tags": ["green", "red"], "urgent": False, "close_date": None},
    {"name": "QUIET", "qty": 12, "price": None, "rate": None, "source": "web", "tags": None, "urgent": None, "close_date": "2027-12-31"},
]


def formula(name: str, expression: str, result_type: str, scale: int | None = None, **more) -> dict:
    options = {"expression": expression, "result_type": result_type, **({"scale": scale} if scale is not None else {})}
    return {"api_name": name, "label": name.replace("_", " ").title(), "type": "formula", "options": options, **more}


def trunc_div(a: int, b: int) -> int:
    return abs(a) // abs(b) * (1 if (a >= 0) == (b > 0) else -1)


def cents(value: D, places: int = 2) -> D:
    return value.quantize(D(1).scaleb(-places), rounding=ROUND_HALF_UP)


def expected(row: dict, created_at: datetime) -> dict:
    """What each formula gives for ``row``, computed here (null where CEL fails: nulls, division by zero)."""
    qty, price, rate, name = row["qty"], row["price"] and D(row["price"]), row["rate"] and D(row["rate"]), row["name"]
    return {
        "amount": None if price is None else cents(price * qty),
        "weighted": None if price is None or rate is None else cents(price * rate, 3),
        "half": trunc_div(qty, 2), "rest": (abs(qty) % 3) * (1 if qty >= 0 else -1),
        "label": f"{name} ({row['source']})", "big": None if row["urgent"] is None else (qty >= 10 and not row["urgent"]),
        "band": "large" if qty > 5 else "small", "per_unit": None if price is None or qty == 0 else cents(price / qty),
        "closes": row["close_date"] and date.fromisoformat(row["close_date"]), "made": created_at,
        "initials": name.startswith("A") or "z" in name or name.endswith("!"), "name_size": len(name),
        "tagged_red": None if not row["tags"] else "red" in row["tags"], "shouting": None,
    }


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_object(S, DEAL)
    for name, (expression, result_type, scale) in FORMULAS.items():
        runtime.metadata.create_field(S, "deal", formula(name, expression, result_type, scale))
    return runtime


def seed(rt) -> list[dict]:
    return rt.records.bulk_create(S, "deal", ROWS)


def test_formulas_know_whether_they_run_in_sql(rt):
    fields = rt.catalog().object("deal").fields_by_name
    in_sql = {name: fields[name].options["in_sql"] for name in FORMULAS}
    assert [n for n, ok in in_sql.items() if not ok] == ["tagged_red", "shouting"]
    assert fields["tagged_red"].options["not_in_sql_because"] == "the macro exists() is not part of the translatable subset at offset 12"
    assert fields["shouting"].options["not_in_sql_because"] == "'matches()' is not part of the translatable subset at offset 12"
    columns = {c["name"] for c in sa.inspect(rt.engine).get_columns("obj_deal")}
    assert columns.isdisjoint(FORMULAS), "formulas are computed on read, never stored"


def test_values_equal_an_independent_computation(rt):
    created = seed(rt)
    wanted = {r["id"]: expected(row, r["created_at"]) for r, row in zip(created, ROWS)}
    from_writes = {r["id"]: {n: r[n] for n in FORMULAS} for r in created}
    from_get = {r["id"]: {n: rt.records.get(S, "deal", r["id"])[n] for n in FORMULAS} for r in created}
    from_query = {r["id"]: {n: r[n] for n in FORMULAS} for r in rt.records.query(S, "deal", first=10).records}
    page = rt.records.read_page(S, "deal", Window(first=10), Selection(list(FORMULAS)))
    from_tree = {r["id"]: {n: r[n] for n in FORMULAS} for r in page.records}
    for seen in (from_writes, from_get, from_query, from_tree):
        assert seen == wanted
    shouting = rt.records.query(S, "deal", fields=["shouting"]).records
    assert {r["shouting"] for r in shouting} == {None}, "a boolean into a text result is no value"
    assert set(rt.records.read_page(S, "deal", Window(), Selection(["tagged_red"])).records[0]) == {"id", "tagged_red"}


def test_updates_return_and_store_fresh_values(rt):
    record = seed(rt)[0]
    updated = rt.records.update(S, "deal", record["id"], {"qty": 3, "price": "2.50"})
    assert (updated["amount"], updated["half"], updated["band"]) == (D("7.50"), 1, "small")
    assert rt.records.get(S, "deal", record["id"])["amount"] == D("7.50")
    with pytest.raises(ValidationFailed) as caught:
        rt.records.update(S, "deal", record["id"], {"amount": "1.00"})
    assert [(e.code, e.field) for e in caught.value.errors] == [("READ_ONLY", "amount")]


def test_translated_formulas_filter_with_every_operator_sort_page_and_group(rt):
    ids = [r["id"] for r in seed(rt)]

    def found(flt):
        return {ids.index(r["id"]) for r in rt.records.query(S, "deal", filter=flt).records}

    assert found({"amount": {"eq": "71.75"}}) == {0}
    assert found({"amount": {"ne": "71.75"}}) == {1, 2, 3}
    assert found({"amount": {"in": ["-21", "0"]}}) == {1, 2}
    assert found({"amount": {"not_in": ["0"]}}) == {0, 1, 3}
    assert found({"amount": {"lt": "0"}}) == {1}
    assert found({"amount": {"lte": "0"}}) == {1, 2}
    assert found({"amount": {"gt": "0"}}) == {0}
    assert found({"amount": {"gte": "-21.00"}}) == {0, 1, 2}
    assert found({"amount": {"is_null": True}}) == {3}
    assert found({"amount": {"is_null": False}}) == {0, 1, 2}
    assert found({"label": {"contains": "(WEB"}}) == {0, 3}
    assert found({"label": {"starts_with": "bolt"}}) == {1}
    assert found({"big": {"eq": True}}) == set() and found({"big": {"eq": False}}) == {0, 1, 2}
    assert found({"closes": {"gte": "2026-03-31"}}) == {0, 3}
    assert found({"half": {"lt": 0}, "name_size": {"eq": 5}}) == {1}
    assert found({"not": {"per_unit": {"gt": "1"}}}) == {1, 2, 3}
    by_amount = [ids.index(r["id"]) for r in rt.records.query(S, "deal", order_by=["amount"]).records]
    assert by_amount == [1, 2, 0, 3]
    walked, after = [], None
    while True:
        page = rt.records.query(S, "deal", order_by=["-label"], first=1, after=after)
        walked += [ids.index(r["id"]) for r in page.records]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert walked == [2, 1, 3, 0]
    groups = rt.records.aggregate(S, "deal", group_by=[{"field": "band"}], measures=[["sum", "amount"], ["max", "half"]])
    assert [(g["key"]["band"], g["count"], g["sum"]["amount"], g["max"]["half"]) for g in groups] == [
        ("large", 2, D("71.75"), 6), ("small", 2, D("-21.00"), 0)]


def test_formulas_computed_after_reading_refuse_filters_sorts_and_groupings(rt):
    seed(rt)
    because = ("the formula is computed after reading ('matches()' is not part of the translatable subset at offset 12), "
               "so it cannot be filtered, sorted, grouped or measured")
    with pytest.raises(ValidationFailed) as caught:
        rt.records.query(S, "deal", filter={"or": [{"name": {"eq": "x"}}, {"shouting": {"eq": "x"}}]})
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [("NOT_FILTERABLE", "filter.or.1.shouting", because)]
    with pytest.raises(ValidationFailed) as caught:
        rt.records.query(S, "deal", order_by=["tagged_red"])
    assert [(e.code, e.field) for e in caught.value.errors] == [("NOT_SORTABLE", "order_by.0")]
    with pytest.raises(ValidationFailed) as caught:
        rt.records.aggregate(S, "deal", group_by=[{"field": "shouting"}])
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [("NOT_GROUPABLE", "group_by.0.field", because)]


def test_validation_rules_see_formula_values(rt):
    rt.metadata.create_validation_rule(S, "deal", {"api_name": "small_orders", "expression": "record.amount == null || record.amount < 100.0",
                                                   "message": "Orders of 100 or more need a quote", "field": "qty"})
    rt.records.create(S, "deal", {"name": "ok", "qty": 9, "price": "11.00"})
    with pytest.raises(ValidationFailed) as caught:
        rt.records.create(S, "deal", {"name": "big", "qty": 10, "price": "11.00"})
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [("RULE_FAILED", "qty", "Orders of 100 or more need a quote")]


@pytest.mark.parametrize(("definition", "problem"), [
    (formula("f", "record.qty +", "integer"), ("SYNTAX_ERROR", "options.expression")),
    (formula("f", "record.nope * 2", "integer"), ("UNKNOWN_FIELD", "options.expression")),
    (formula("f", "old.qty", "integer"), ("UNKNOWN_VARIABLE", "options.expression")),
    (formula("f", "user.id", "text"), ("UNKNOWN_VARIABLE", "options.expression")),
    (formula("f", "record.amount * 2.0", "currency"), ("FORMULA_REFERENCE", "options.expression")),
    (formula("f", "record.f + 1", "integer"), ("FORMULA_REFERENCE", "options.expression")),
    (formula("f", "record.name", "integer"), ("RESULT_TYPE_MISMATCH", "options.expression")),
    (formula("f", "record.price * 2.0", "integer"), ("RESULT_TYPE_MISMATCH", "options.expression")),
    (formula("f", "record.price * 2", "decimal"), ("TYPE_MISMATCH", "options.expression")),
    (formula("f", "record.qty", "text"), ("RESULT_TYPE_MISMATCH", "options.expression")),
    (formula("f", "record.qty", "money"), ("INVALID", "options.result_type")),
    (formula("f", "record.qty", "text", 2), ("INVALID", "options.scale")),
    (formula("f", "record.qty", "integer", required=True), ("NOT_ALLOWED", "required")),
    (formula("f", "record.qty", "integer", unique=True), ("NOT_ALLOWED", "unique")),
    (formula("f", "record.qty", "integer", indexed=True), ("NOT_ALLOWED", "indexed")),
])
def test_invalid_formulas_are_refused_and_change_nothing(rt, definition, problem):
    before = rt.catalog().version
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_field(S, "deal", definition)
    found = [(e.code, e.field) for e in caught.value.errors]
    assert problem in found and {f for _, f in found} == {problem[1]}
    assert rt.catalog().version == before and rt.catalog().object("deal").field("f") is None


def test_errors_name_the_place_and_the_reason(rt):
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_field(S, "deal", formula("f", "record.qty +\n  record.nope", "integer"))
    assert [e.as_dict() for e in caught.value.errors] == [{"code": "UNKNOWN_FIELD", "field": "options.expression",
                                                           "message": "'deal' has no field 'nope' (record.nope)",
                                                           "ctx": {"line": 2, "column": 10, "offset": 22}}]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_field(S, "deal", formula("f", "record.name * 2", "integer"))
    assert [e.as_dict() for e in caught.value.errors] == [{
        "code": "TYPE_MISMATCH", "field": "options.expression", "message": "'*' does not combine a string and an int value",
        "ctx": {"line": 1, "column": 13, "offset": 12}}]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_field(S, "deal", formula("f", "record.qty > 2", "integer"))
    assert [e.message for e in caught.value.errors] == ["gives a bool value, which a integer result cannot hold"]


def test_a_layout_cannot_require_a_formula(rt):
    layout = {"api_name": "form", "label": "Form", "sections": [{"label": "Main", "fields": [
        {"field": "name", "required": True}, {"field": "amount", "required": True}, {"field": "band"}]}]}
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_layout(S, "deal", layout)
    assert [e.as_dict() for e in caught.value.errors] == [{"code": "INVALID_VALUE", "field": "sections.0.fields.1.required",
                                                           "message": "the platform computes or assigns a formula field, so a layout cannot require it"}]
    layout["sections"][0]["fields"][1]["required"] = False
    assert rt.metadata.create_layout(S, "deal", layout).api_name == "form"


def test_changing_formulas_and_what_they_read(rt):
    record = seed(rt)[0]
    rt.metadata.update_field(S, "deal", "band", {"label": "Size", "options": {"expression": "record.qty > 6 ? 'L' : 'S'", "result_type": "text"}})
    assert rt.records.get(S, "deal", record["id"])["band"] == "L"
    version = rt.catalog().version
    with pytest.raises(UnsafeChange):
        rt.metadata.update_field(S, "deal", "band", {"type": "text"})
    with pytest.raises(UnsafeChange):
        rt.metadata.update_field(S, "deal", "name", {"type": "formula", "options": {"expression": "'x'", "result_type": "text"}})
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_field(S, "deal", "qty")
    assert caught.value.ctx["used_by"] == ["formula 'amount'", "formula 'half'", "formula 'rest'", "formula 'big'", "formula 'band'",
                                           "formula 'per_unit'"]
    with pytest.raises(InUse):
        rt.metadata.update_field(S, "deal", "qty", {"type": "decimal", "options": {"precision": 18, "scale": 0}})
    assert rt.catalog().version == version
    rt.metadata.delete_field(S, "deal", "tagged_red")
    rt.metadata.delete_field(S, "deal", "tags")
    assert rt.catalog().object("deal").field("tags") is None


def test_now_is_the_time_of_reading(rt):
    rt.metadata.create_field(S, "deal", formula("made_before_now", "record.created_at < now", "boolean"))
    rt.metadata.create_field(S, "deal", formula("open_now", "record.close_date == null || record.close_date > now", "boolean"))
    assert rt.catalog().object("deal").field("open_now").options["in_sql"] is False
    ids = [r["id"] for r in seed(rt)]
    records = {r["id"]: r for r in rt.records.query(S, "deal", fields=["made_before_now", "open_now"]).records}
    today = datetime.now(timezone.utc).date()
    assert [records[i]["made_before_now"] for i in ids] == [True] * 4
    assert [records[i]["open_now"] for i in ids] == [row["close_date"] is None or date.fromisoformat(row["close_date"]) > today for row in ROWS]
    assert {ids.index(r["id"]) for r in rt.records.query(S, "deal", filter={"made_before_now": {"eq": True}}).records} == {0, 1, 2, 3}
