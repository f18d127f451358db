"""Validation rules (CEL) through the public MetadataService and RecordService.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture). Saving a rule: a refused change
leaves the Catalog version, the change log and the stored rules exactly as they were; an accepted
one bumps the version by one and logs one entry. Writing records: a rule that does not hold (or
cannot be evaluated) refuses the write with RULE_FAILED and nothing is written. The save order is
system validation → before-save hooks → layout and rules → write → history → after-save hooks, in
one transaction.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import cel
import pytest
from lowcode.metadata import SYSTEM_ACTOR, store
from lowcode.metadata.errors import (
    FieldError,
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from lowcode.metadata.expressions import (
    CANDIDATES,
    expression_problems,
    referenced_fields,
    supported_calls,
)
from sqlalchemy import func, select

S = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

DEAL = {
    "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "tracked": True},
        {"api_name": "amount", "label": "Amount", "type": "currency"},
        {"api_name": "discount", "label": "Discount", "type": "decimal", "options": {"precision": 8, "scale": 3}},
        {"api_name": "qty", "label": "Quantity", "type": "integer"},
        {"api_name": "close_date", "label": "Close date", "type": "date"},
        {"api_name": "due_at", "label": "Due at", "type": "datetime"},
        {"api_name": "source", "label": "Source", "type": "picklist", "options": PICK("web", "phone", "fair")},
        {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green", "blue")},
        {"api_name": "approved", "label": "Approved", "type": "boolean", "default": False},
        {"api_name": "note", "label": "Note", "type": "text"},
    ],
}
MEMO = {"api_name": "memo", "label": "Memo", "plural_api_name": "memos", "plural_label": "Memos",
        "fields": [{"api_name": "title", "label": "Title", "type": "text"}]}


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(S, [DEAL, MEMO])
    runtime.metadata.create_business_type(S, "deal", {"api_name": "product", "label": "Product sale"})
    runtime.metadata.create_business_type(S, "deal", {"api_name": "service", "label": "Service sale"})
    return runtime


# -- helpers ------------------------------------------------------------------------------------
def rule(api_name: str, expression: str, message: str = "broken", **more: Any) -> dict[str, Any]:
    return {"api_name": api_name, "expression": expression, "message": message, **more}


def stored(rt) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(store.validation_rules).order_by(
            store.validation_rules.c.object_api_name, store.validation_rules.c.position)).mappings()]
        version = conn.execute(select(store.meta_version.c.version)).scalar_one()
        changes = conn.execute(select(func.count()).select_from(store.meta_changes)).scalar_one()
    return {"version": version, "changes": changes, "rules": rows}


def refused(rt, call, exc_type=InvalidDefinition) -> list[tuple]:
    """A metadata change that must fail and change nothing; its (code, field, ctx) list."""
    before = stored(rt)
    catalog_version = rt.catalog().version
    with pytest.raises(exc_type) as caught:
        call()
    assert stored(rt) == before
    assert rt.catalog().version == catalog_version
    return [(e.code, e.field, e.ctx) for e in caught.value.errors]


def accepted(rt, action: str, field: str | None, call):
    """A metadata change that must be one change: version +1 and one change-log entry."""
    version = rt.catalog().version
    count = len(rt.metadata.changes(limit=1000))
    result = call()
    assert rt.catalog().version == version + 1
    changes = rt.metadata.changes(limit=1000)
    assert len(changes) == count + 1
    entry = changes[0]
    assert (entry["action"], entry["object_api_name"], entry["field_api_name"], entry["version"]) == (
        action, "deal", field, version + 1)
    return result, entry


def add(rt, *rules: dict[str, Any]) -> None:
    for definition in rules:
        rt.metadata.create_validation_rule(S, "deal", definition)


def deal_rows(rt) -> list[dict[str, Any]]:
    table = rt.catalog().table("deal")
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def history_count(rt) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.field_history)).scalar_one()


def failed(rt, call) -> list[tuple]:
    """A write that must fail validation and write nothing; its (code, field, message, ctx) list."""
    before = (deal_rows(rt), history_count(rt))
    with pytest.raises(ValidationFailed) as caught:
        call()
    assert (deal_rows(rt), history_count(rt)) == before
    return [(e.code, e.field, e.message, e.ctx) for e in caught.value.errors]


def broken(rule_name: str, field: str | None = None, message: str = "broken") -> tuple:
    return ("RULE_FAILED", field, message, {"rule": rule_name})


def create(rt, values: dict[str, Any], actor=S) -> dict[str, Any]:
    return rt.records.create(actor, "deal", values)


def user_actor(rt, name: str):
    """A signed-in user whose role may read, create and update every deal."""
    sec = rt.security
    unit = sec.create_unit(S, f"unit {name}")
    if not any(r["name"] == "seller" for r in sec.roles(S)):
        sec.create_role(S, "seller", "Seller")
        sec.set_object_grant(S, "seller", "deal", ["read", "create", "update"], "all", "all")
    user = sec.create_user(S, {"username": name})
    sec.add_membership(S, user["id"], unit["id"], "seller")
    return sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"])


# -- saving rules -------------------------------------------------------------------------------
def test_create_update_delete_are_one_change_each(rt):
    definition = rule("positive_qty", "record.qty == null || record.qty > 0", "must be positive", field="qty")
    created, entry = accepted(rt, "create_validation_rule", "qty",
                              lambda: rt.metadata.create_validation_rule(S, "deal", definition))
    assert (created.api_name, created.expression, created.message, created.field, created.business_type, created.active,
            created.position) == ("positive_qty", "record.qty == null || record.qty > 0", "must be positive", "qty", None, True, 0)
    assert (entry["before"], entry["after"]) == (None, created.as_dict())
    assert rt.catalog().object("deal").validation_rules == (created,)

    second, _ = accepted(rt, "create_validation_rule", None, lambda: rt.metadata.create_validation_rule(
        S, "deal", rule("service_amount", "record.amount != null", "service sales need an amount", business_type="service",
                        active=False)))
    assert (second.position, second.business_type, second.active) == (1, "service", False)

    changed, entry = accepted(rt, "update_validation_rule", "amount", lambda: rt.metadata.update_validation_rule(
        S, "deal", "positive_qty", {"expression": "record.amount == null || record.amount > 0.0", "field": "amount"}))
    assert (changed.api_name, changed.expression, changed.message, changed.field, changed.position) == (
        "positive_qty", "record.amount == null || record.amount > 0.0", "must be positive", "amount", 0)
    assert (entry["before"], entry["after"]) == (created.as_dict(), changed.as_dict())
    assert [r.api_name for r in rt.catalog().object("deal").validation_rules] == ["positive_qty", "service_amount"]
    assert [(r["api_name"], r["position"], r["field"], r["active"]) for r in stored(rt)["rules"]] == [
        ("positive_qty", 0, "amount", True), ("service_amount", 1, None, False)]

    _, entry = accepted(rt, "delete_validation_rule", "amount",
                        lambda: rt.metadata.delete_validation_rule(S, "deal", "positive_qty"))
    assert (entry["before"], entry["after"]) == (changed.as_dict(), None)
    assert [(r.api_name, r.position) for r in rt.catalog().object("deal").validation_rules] == [("service_amount", 0)]
    assert [(r["api_name"], r["position"]) for r in stored(rt)["rules"]] == [("service_amount", 0)]


@pytest.mark.parametrize("expression, line, column, offset", [
    ("record.amount >> 1", 1, 16, 15),
    ("record.amount > 1 &&\n  record.qty <", 2, 15, 35),
    ('record.name == "h\u00e9llo" &&\n\n  )', 3, 3, 29),
    ("record.qty > 0 ||\n\trecord.name ==", 2, 16, 33),
    ("a b", 1, 3, 2),
    ("record.qty > 0 &&\r\n  record.name ==", 2, 17, 35),
], ids=["extra-token", "multi-line-eof", "unicode-third-line", "tab", "two-identifiers", "crlf"])
def test_syntax_errors_point_at_line_column_and_offset(rt, expression, line, column, offset):
    errors = refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("bad", expression)))
    assert errors == [("SYNTAX_ERROR", "expression", {"line": line, "column": column, "offset": offset})]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", expression))
    assert caught.value.errors[0].message.startswith(f"is not valid CEL at line {line}, column {column}: ")


def test_unknown_variables_are_reported_where_they_are_used(rt):
    errors = refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("bad", "amount > 1")))
    assert errors == [("UNKNOWN_VARIABLE", "expression", {"line": 1, "column": 1, "offset": 0})]
    # the name inside a string literal is not the variable; the second line's use is
    source = 'record.qty > 0 &&\n  "limit" != "" && limit < record.qty'
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", source))
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "UNKNOWN_VARIABLE", "field": "expression", "message": "'limit' is not known; use record, old, user, now",
         "ctx": {"line": 2, "column": 20, "offset": 37}}]


def test_unknown_fields_of_record_old_and_user_are_reported_with_their_positions(rt):
    source = 'record.nme == "record.zzz" &&\n old.amout > 1 && user.mail == ""'
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", source))
    assert [e.as_dict() for e in caught.value.errors] == [
        {"code": "UNKNOWN_FIELD", "field": "expression", "message": "'deal' has no field 'nme' (record.nme)",
         "ctx": {"line": 1, "column": 8, "offset": 7}},
        {"code": "UNKNOWN_FIELD", "field": "expression", "message": "'deal' has no field 'amout' (old.amout)",
         "ctx": {"line": 2, "column": 6, "offset": 35}},
        {"code": "UNKNOWN_FIELD", "field": "expression", "message": "the user has no field 'mail' (user.mail)",
         "ctx": {"line": 2, "column": 24, "offset": 53}},
    ]
    assert stored(rt)["rules"] == []


def test_field_names_inside_string_literals_and_system_fields_are_fine(rt):
    expression = ('record.name != "record.nothing" && record.note != \'old.nowhere\' && '
                  'record.owner_id != "" && old == null || old.version > 0 && user.username != "x" && user.id != ""')
    created = rt.metadata.create_validation_rule(S, "deal", rule("fine", expression))
    assert created.expression == expression


def test_comprehension_variables_are_not_unknown_variables(rt):
    # `t` is bound by the exists() macro; it is not a variable the rule reads
    created = rt.metadata.create_validation_rule(S, "deal", rule(
        "no_red_and_blue", 'record.tags == null || !record.tags.exists(t, t == "red") || record.tags.all(t, t != "blue")'))
    assert created.api_name == "no_red_and_blue"


PROVIDED_FUNCTIONS = {"size", "int", "uint", "double", "string", "bytes", "timestamp", "duration", "dyn", "type",
                      "optional.of", "optional.none", "optional.ofNonZeroValue"}
PROVIDED_METHODS = {"size", "contains", "startsWith", "endsWith", "matches", "getFullYear", "getMonth", "getDate", "getDayOfMonth",
                    "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds", "hasValue", "value",
                    "or", "orValue"}
"""What the installed CEL package evaluates without extra functions, as the rules run: ``f(x)`` or
``x.f()`` (``bool()``, ``lowerAscii()``, ``min()`` and the like are not among them)."""

EVERY_CALL = {
    "sizes": "size(record.name) == 3 && record.name.size() == 3 && size(record.tags) == 1 && record.tags.size() == 1 && "
             "record.size() > 0",
    "strings": 'record.name.contains("b") && record.name.startsWith("a") && record.name.endsWith("c") && '
               'record.name.matches("^a.c$")',
    "conversions": 'int("7") == record.qty && uint(record.qty) == 7u && double(record.qty) == 7.0 && string(record.qty) == "7" && '
                   'bytes(record.name) == b"abc" && dyn(record.qty) == 7 && type(record.qty) == int && type(record.tags) == list',
    "dates": 'timestamp("2024-03-05T00:00:00Z") == record.close_date && record.close_date.getFullYear() == 2024 && '
             "record.close_date.getMonth() == 2 && record.close_date.getDate() == 5 && record.close_date.getDayOfMonth() == 4 && "
             "record.close_date.getDayOfWeek() == 2 && record.close_date.getDayOfYear() == 64",
    "times": "record.due_at.getHours() == 10 && record.due_at.getMinutes() == 20 && record.due_at.getSeconds() == 30 && "
             'record.due_at.getMilliseconds() == 0 && record.due_at - record.close_date > duration("10h")',
    "durations": 'duration(string(record.qty) + "m").getHours() == 0 && duration(string(record.qty) + "h").getMinutes() == 420 && '
                 'duration(string(record.qty) + "s").getSeconds() == 7 && duration(string(record.qty) + "s").getMilliseconds() == 7000',
    "optionals": "optional.of(record.qty).hasValue() && optional.of(record.qty).value() == 7 && optional.none().orValue(1) == 1 && "
                 "optional.none().or(optional.ofNonZeroValue(record.qty)).value() == 7",
    "macros": 'has(record.name) && record.tags.all(t, t != "blue") && record.tags.exists(t, t == "red") && '
              'record.tags.exists_one(t, t == "red") && record.tags.existsOne(t, t == "red") && record.tags.map(t, t + "!") == ["red!"] '
              '&& record.tags.map(t, t == "red", t) == ["red"] && record.tags.filter(t, t == "red").size() == 1',
}
"""Rules calling every function and method the package provides, each way it provides it; they hold
for :data:`EVERY_CALL_RECORD`."""
EVERY_CALL_RECORD = {"name": "abc", "qty": 7, "tags": ["red"], "close_date": "2024-03-05", "due_at": "2024-03-05T10:20:30Z"}


def test_the_package_provides_the_functions_and_methods_the_check_accepts():
    functions, methods = supported_calls()
    assert (set(functions), set(methods)) == (PROVIDED_FUNCTIONS, PROVIDED_METHODS)
    every = " ".join(EVERY_CALL.values())
    assert [name for name in functions if f"{name}(" not in every] == []
    assert [name for name in methods if f".{name}(" not in every] == []


def test_every_function_and_method_the_package_provides_is_accepted_and_runs(rt):
    for name, expression in EVERY_CALL.items():
        rt.metadata.create_validation_rule(S, "deal", rule(name, expression, f"{name} do not hold"))
    assert [r.api_name for r in rt.catalog().object("deal").validation_rules] == list(EVERY_CALL)
    assert create(rt, EVERY_CALL_RECORD)["qty"] == 7
    # the same rules fail for another record (each one evaluated, none skipped)
    assert failed(rt, lambda: create(rt, {"name": "wxyz", "qty": 8, "tags": ["blue"], "close_date": "2023-01-01",
                                          "due_at": "2023-01-01T00:00:00Z"})) == [
        broken(name, None, f"{name} do not hold") for name in EVERY_CALL]


def test_the_calls_the_package_evaluates_are_accepted_and_the_others_refused(rt):
    deal = rt.catalog().object("deal")
    type_errors_only = {"[1].contains(1)"}  # 'contains' is a method of strings, not of lists: an evaluation error
    for sample in CANDIDATES:
        try:
            cel.evaluate(sample, {})
        except Exception:
            if sample not in type_errors_only:
                assert "UNKNOWN_FUNCTION" in [e.code for e in expression_problems(deal, sample)], sample
        else:
            assert expression_problems(deal, sample) == [], sample
    assert expression_problems(deal, "[1].contains(1)") == []


@pytest.mark.parametrize("expression, message, ctx", [
    ('record.name.startWith("a")', "'startWith' is not a CEL method; did you mean 'startsWith'?", (1, 13, 12)),
    ("record.qty > 0 &&\n  lenght(record.name) > 1", "'lenght' is not a CEL function", (2, 3, 20)),
    ('record.name.lowerAscii() == "a"', "'lowerAscii' is not a CEL method", (1, 13, 12)),
    ("bool(record.note)", "'bool' is not a CEL function", (1, 1, 0)),
    ("min([record.qty, 1]) > 0", "'min' is not a CEL function", (1, 1, 0)),
    ('startsWith(record.name, "a")', "'startsWith' is a method; call it on a value: value.startsWith(...)", (1, 1, 0)),
    ("record.qty.int() > 0", "'int' is not a method; call it as int(value)", (1, 12, 11)),
    ("record.qty > 0 && math.abs(record.qty) > 1", "'math.abs' is not a CEL function", (1, 19, 18)),
    ("optional.off(record.qty).hasValue()", "'optional.off' is not a CEL function; did you mean 'optional.of'?", (1, 1, 0)),
    ("cel.bind(x, record.qty, x > 1)", "'cel.bind' is not a CEL function", (1, 1, 0)),
    ('record.tags.exists(t, t == "red", 1)', "'exists' is a macro; write it as list.exists(x, condition)", (1, 13, 12)),
    ('record.name == "\u00e9" &&\n\t record.name.trim() == ""', "'trim' is not a CEL method", (2, 15, 36)),
], ids=["typo-method", "typo-function-second-line", "extension-method", "bool", "min", "method-as-function", "function-as-method",
        "namespace", "namespace-typo", "bind", "macro-misused", "tab-and-unicode"])
def test_unknown_functions_are_refused_with_the_name_and_where_they_are_called(rt, expression, message, ctx):
    where = dict(zip(("line", "column", "offset"), ctx))
    assert refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("bad", expression))) == [
        ("UNKNOWN_FUNCTION", "expression", where)]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", expression))
    assert [e.message for e in caught.value.errors] == [message]
    # an update to such an expression is refused the same way
    add(rt, rule("fine", "true"))
    assert refused(rt, lambda: rt.metadata.update_validation_rule(S, "deal", "fine", {"expression": expression})) == [
        ("UNKNOWN_FUNCTION", "expression", where)]
    assert rt.catalog().object("deal").validation_rules[0].expression == "true"


def test_each_unknown_function_is_reported_once_with_the_other_problems(rt):
    source = 'frob(record.qty) && record.nme.size() > 1 &&\n  limit > frob(2) && record.name.shout() == ""'
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", source))
    assert [(e.code, e.message, e.ctx["offset"]) for e in caught.value.errors] == [
        ("UNKNOWN_VARIABLE", "'limit' is not known; use record, old, user, now", 47),
        ("UNKNOWN_FUNCTION", "'frob' is not a CEL function", 0),
        ("UNKNOWN_FUNCTION", "'shout' is not a CEL method", 78),
        ("UNKNOWN_FIELD", "'deal' has no field 'nme' (record.nme)", 27),
    ]
    assert stored(rt)["rules"] == []


def test_calls_inside_string_literals_and_comments_are_not_read(rt):
    expression = ("record.name != 'frob(1)' && record.note != \"x.lowerAscii()\" // shout(record.nme)\n"
                  "  && record.name != r'''min(\n1)''' && size(b'ab') == 2")
    assert rt.metadata.create_validation_rule(S, "deal", rule("quoted", expression)).expression == expression
    assert referenced_fields(expression) == {"name", "note"}
    assert create(rt, {"name": "a"})["name"] == "a"


def test_a_method_called_on_the_record_is_not_a_field(rt):
    assert expression_problems(rt.catalog().object("deal"), "record.size() > 0 && record.name.size() > 0") == []
    assert referenced_fields("record.size() > 0 && record.qty . size() > 0") == {"qty"}


def test_unknown_field_and_business_type_and_every_problem_at_once(rt):
    errors = refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule(
        "bad", "record.nope > 1", field="missing", business_type="rental")))
    assert errors == [("UNKNOWN_FIELD", "expression", {"line": 1, "column": 8, "offset": 7}),
                      ("UNKNOWN_FIELD", "field", {}), ("UNKNOWN_BUSINESS_TYPE", "business_type", {})]
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "deal", rule("bad", "true", field="missing", business_type="rental"))
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [
        ("UNKNOWN_FIELD", "field", "'deal' has no field named 'missing'"),
        ("UNKNOWN_BUSINESS_TYPE", "business_type", "'deal' has no business type 'rental'")]
    # an object without business types has none to name
    with pytest.raises(InvalidDefinition) as caught:
        rt.metadata.create_validation_rule(S, "memo", rule("bad", "true", business_type="product"))
    assert [(e.code, e.field) for e in caught.value.errors] == [("UNKNOWN_BUSINESS_TYPE", "business_type")]


def test_malformed_definitions_and_duplicates_are_refused(rt):
    assert refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", {"api_name": "x"})) == [
        ("REQUIRED", "expression", {}), ("REQUIRED", "message", {})]
    assert refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("x", ""))) == [("INVALID", "expression", {})]
    assert [c for c, _, _ in refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("Bad Name", "true")))] == ["INVALID"]
    add(rt, rule("once", "true"))
    assert refused(rt, lambda: rt.metadata.create_validation_rule(S, "deal", rule("once", "false"))) == [("DUPLICATE", "api_name", {})]
    assert refused(rt, lambda: rt.metadata.update_validation_rule(S, "deal", "nope", {"message": "m"}), NotFound) == []
    assert refused(rt, lambda: rt.metadata.delete_validation_rule(S, "deal", "nope"), NotFound) == []
    assert refused(rt, lambda: rt.metadata.create_validation_rule(S, "nothing", rule("x", "true")), NotFound) == []
    # an update is checked like a creation, with every problem of the merged rule
    assert refused(rt, lambda: rt.metadata.update_validation_rule(S, "deal", "once", {"expression": "record.qty >", "field": "zz"})) == [
        ("SYNTAX_ERROR", "expression", {"line": 1, "column": 13, "offset": 12}), ("UNKNOWN_FIELD", "field", {})]
    assert refused(rt, lambda: rt.metadata.update_validation_rule(S, "deal", "once", {"business_type": "rental"})) == [
        ("UNKNOWN_BUSINESS_TYPE", "business_type", {})]
    assert [r.as_dict() for r in rt.catalog().object("deal").validation_rules] == [
        {"api_name": "once", "expression": "true", "message": "broken", "field": None, "business_type": None, "active": True}]


def test_only_administrators_change_rules(rt):
    seller = user_actor(rt, "ann")
    assert refused(rt, lambda: rt.metadata.create_validation_rule(seller, "deal", rule("x", "true")), Forbidden) == []
    add(rt, rule("x", "true"))
    refused(rt, lambda: rt.metadata.update_validation_rule(seller, "deal", "x", {"active": False}), Forbidden)
    refused(rt, lambda: rt.metadata.delete_validation_rule(seller, "deal", "x"), Forbidden)


# -- evaluating rules ---------------------------------------------------------------------------
def test_numbers_decimals_and_null_checks(rt):
    add(rt, rule("qty_positive", "record.qty == null || record.qty > 0", "quantity must be positive", field="qty"),
        rule("amount_cap", "record.amount == null || record.amount <= 1000.50", "at most 1000.50", field="amount"),
        rule("discount_share", "record.discount == null || record.amount != null && record.discount <= record.amount * 0.1",
             "discount at most a tenth of the amount", field="discount"))
    assert failed(rt, lambda: create(rt, {"qty": 0})) == [broken("qty_positive", "qty", "quantity must be positive")]
    assert failed(rt, lambda: create(rt, {"amount": "1000.51"})) == [broken("amount_cap", "amount", "at most 1000.50")]
    assert failed(rt, lambda: create(rt, {"discount": "0.001"})) == [
        broken("discount_share", "discount", "discount at most a tenth of the amount")]
    assert failed(rt, lambda: create(rt, {"amount": "100.00", "discount": "10.001"})) == [
        broken("discount_share", "discount", "discount at most a tenth of the amount")]
    ok = create(rt, {"qty": 1, "amount": "1000.50", "discount": "100.05"})
    assert (ok["qty"], ok["amount"], ok["discount"]) == (1, Decimal("1000.50"), Decimal("100.050"))
    empty = create(rt, {})
    assert (empty["qty"], empty["amount"], empty["discount"]) == (None, None, None)
    assert failed(rt, lambda: rt.records.update(S, "deal", ok["id"], {"qty": -3, "amount": "2000", "discount": "200.001"})) == [
        broken("qty_positive", "qty", "quantity must be positive"), broken("amount_cap", "amount", "at most 1000.50"),
        broken("discount_share", "discount", "discount at most a tenth of the amount")]


def test_dates_are_timestamps_at_midnight_utc_and_datetimes_compare_as_instants(rt):
    add(rt, rule("from_2024", 'record.close_date == null || record.close_date >= timestamp("2024-01-01T00:00:00Z")',
                 "closes in 2024 or later", field="close_date"),
        rule("due_after", 'record.due_at == null || record.due_at > timestamp("2024-06-01T12:00:00Z")', "due too early",
             field="due_at"),
        rule("due_by_close", 'record.due_at == null || record.close_date == null || '
                             'record.due_at < record.close_date + duration("24h")', "due after the close date"))
    create(rt, {"close_date": "2024-01-01"})  # midnight counts as on the day
    assert failed(rt, lambda: create(rt, {"close_date": "2023-12-31"})) == [broken("from_2024", "close_date", "closes in 2024 or later")]
    assert failed(rt, lambda: create(rt, {"due_at": "2024-06-01T14:00:00+02:00"})) == [broken("due_after", "due_at", "due too early")]
    create(rt, {"due_at": "2024-06-01T14:00:01+02:00"})
    create(rt, {"close_date": "2024-07-01", "due_at": "2024-07-01T23:59:59Z"})
    assert failed(rt, lambda: create(rt, {"close_date": "2024-07-01", "due_at": "2024-07-02T00:00:00Z"})) == [
        broken("due_by_close", None, "due after the close date")]
    # on update, the stored values are seen the same way
    record = create(rt, {"close_date": "2024-07-01"})
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"due_at": "2024-07-02T01:00:00+01:00"})) == [
        broken("due_by_close", None, "due after the close date")]
    assert rt.records.update(S, "deal", record["id"], {"due_at": "2024-07-02T00:59:59+01:00"})["version"] == 2


def test_picklists_and_multi_picklists(rt):
    add(rt, rule("fair_needs_amount", 'record.source != "fair" || record.amount != null', "fair deals need an amount",
                 field="amount"),
        rule("not_red_and_blue", 'record.tags == null || !("red" in record.tags && "blue" in record.tags)',
             "red and blue do not mix", field="tags"),
        rule("two_tags_at_most", "record.tags == null || size(record.tags) <= 2", "at most two tags", field="tags"))
    assert failed(rt, lambda: create(rt, {"source": "fair"})) == [broken("fair_needs_amount", "amount", "fair deals need an amount")]
    create(rt, {"source": "fair", "amount": 1})
    create(rt, {"source": "web"})
    create(rt, {"tags": ["red", "green"]})
    assert failed(rt, lambda: create(rt, {"tags": ["blue", "red"]})) == [broken("not_red_and_blue", "tags", "red and blue do not mix")]
    assert failed(rt, lambda: create(rt, {"tags": ["blue", "red", "green"]})) == [
        broken("not_red_and_blue", "tags", "red and blue do not mix"), broken("two_tags_at_most", "tags", "at most two tags")]


def test_old_is_the_record_before_an_update_and_null_on_create(rt):
    add(rt, rule("created_only_once", "old == null || old.name == record.name", "the name is fixed once set", field="name"),
        rule("no_shrinking", "old == null || old.amount == null || record.amount != null && record.amount >= old.amount",
             "the amount may only grow", field="amount"),
        rule("knows_old_version", "old == null || old.version == record.version", "old is the stored record"))
    record = create(rt, {"name": "first", "amount": "10.00"})
    grown = rt.records.update(S, "deal", record["id"], {"amount": "10.01"})
    assert grown["version"] == 2
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"amount": "10.00"})) == [
        broken("no_shrinking", "amount", "the amount may only grow")]
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"amount": None, "name": "second"})) == [
        broken("created_only_once", "name", "the name is fixed once set"), broken("no_shrinking", "amount", "the amount may only grow")]
    # a rule reading old without checking for null fails (with the evaluation error) on create
    add(rt, rule("needs_old", "old.name == record.name", "only updates"))
    with pytest.raises(ValidationFailed) as caught:
        create(rt, {"name": "third"})
    [error] = caught.value.errors
    assert (error.code, error.field, error.message, error.ctx["rule"]) == ("RULE_FAILED", None, "only updates", "needs_old")
    assert isinstance(error.ctx["error"], str) and error.ctx["error"]
    assert rt.records.update(S, "deal", record["id"], {"note": "x"})["version"] == 3


def test_user_and_now(rt):
    ann, bob = user_actor(rt, "ann"), user_actor(rt, "bob")
    add(rt, rule("not_own_approval", "record.approved != true || record.owner_id != user.id", "approve others' deals only",
                 field="approved"),
        rule("only_bob_marks_vip", 'record.note != "vip" || user.username == "bob"', "only bob marks deals vip", field="note"),
        rule("due_in_future", "record.due_at == null || record.due_at > now", "must lie ahead", field="due_at"))
    assert failed(rt, lambda: create(rt, {"approved": True}, ann)) == [
        broken("not_own_approval", "approved", "approve others' deals only")]
    theirs = create(rt, {"approved": True, "owner_id": ann.id}, bob)
    assert (theirs["owner_id"], theirs["approved"]) == (ann.id, True)
    mine = create(rt, {"name": "mine"}, ann)
    assert failed(rt, lambda: rt.records.update(ann, "deal", mine["id"], {"approved": True})) == [
        broken("not_own_approval", "approved", "approve others' deals only")]
    assert rt.records.update(bob, "deal", mine["id"], {"approved": True})["approved"] is True
    assert failed(rt, lambda: create(rt, {"note": "vip"}, ann)) == [broken("only_bob_marks_vip", "note", "only bob marks deals vip")]
    assert failed(rt, lambda: create(rt, {"note": "vip"})) == [broken("only_bob_marks_vip", "note", "only bob marks deals vip")]
    assert create(rt, {"note": "vip"}, bob)["note"] == "vip"
    assert failed(rt, lambda: create(rt, {"due_at": "2020-01-01T00:00:00Z"})) == [broken("due_in_future", "due_at", "must lie ahead")]
    create(rt, {"due_at": "2999-01-01T00:00:00Z"})


def test_rules_of_a_business_type_apply_to_its_records_only(rt):
    add(rt, rule("service_qty", "record.qty != null", "service sales need a quantity", field="qty", business_type="service"),
        rule("product_source", "record.source != null", "product sales need a source", field="source", business_type="product"))
    assert failed(rt, lambda: create(rt, {"business_type": "service", "source": "web"})) == [
        broken("service_qty", "qty", "service sales need a quantity")]
    assert failed(rt, lambda: create(rt, {"qty": 1})) == [broken("product_source", "source", "product sales need a source")]
    service = create(rt, {"business_type": "service", "qty": 1})
    product = create(rt, {"source": "web"})
    assert (service["business_type"], product["business_type"]) == ("service", "product")
    # changing the type brings the new type's rules
    assert failed(rt, lambda: rt.records.update(S, "deal", product["id"], {"business_type": "service"})) == [
        broken("service_qty", "qty", "service sales need a quantity")]
    assert rt.records.update(S, "deal", product["id"], {"business_type": "service", "qty": 2, "source": None})["business_type"] == "service"


def test_inactive_rules_do_nothing_and_rule_changes_apply_to_the_next_write(rt):
    add(rt, rule("never", "false", "nothing passes", active=False))
    record = create(rt, {"name": "a"})
    rt.metadata.update_validation_rule(S, "deal", "never", {"active": True})
    assert failed(rt, lambda: create(rt, {"name": "b"})) == [broken("never", None, "nothing passes")]
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"name": "c"})) == [broken("never", None, "nothing passes")]
    rt.metadata.update_validation_rule(S, "deal", "never", {"expression": 'record.name != "c"', "message": "not c", "field": "name"})
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"name": "c"})) == [broken("never", "name", "not c")]
    assert rt.records.update(S, "deal", record["id"], {"name": "d"})["name"] == "d"
    rt.metadata.delete_validation_rule(S, "deal", "never")
    assert rt.records.update(S, "deal", record["id"], {"name": "c"})["name"] == "c"
    assert create(rt, {"name": "c"})["name"] == "c"


def test_a_rule_that_cannot_be_evaluated_fails_with_the_error(rt):
    add(rt, rule("qty_positive", "record.qty > 0", "quantity must be positive", field="qty"))
    with pytest.raises(ValidationFailed) as caught:
        create(rt, {"name": "no quantity"})
    assert [e.as_dict() for e in caught.value.errors] == [{
        "code": "RULE_FAILED", "field": "qty", "message": "quantity must be positive",
        "ctx": {"rule": "qty_positive", "error": caught.value.errors[0].ctx["error"]}}]
    assert caught.value.errors[0].ctx["error"].startswith("No such overload")
    assert deal_rows(rt) == []
    # a rule that is not a boolean does not hold
    rt.metadata.update_validation_rule(S, "deal", "qty_positive", {"expression": "record.qty"})
    assert failed(rt, lambda: create(rt, {"qty": 3})) == [broken("qty_positive", "qty", "quantity must be positive")]


@pytest.mark.parametrize("expression", ["100 / record.qty > 1", "record.qty % 0 == 1", "[1, 2][record.qty] == 1",
                                        "9223372036854775807 + record.qty > 0"],
                         ids=["division-by-zero", "modulo-by-zero", "index-out-of-range", "overflow"])
def test_arithmetic_and_index_errors_fail_the_rule_too(rt, expression):
    add(rt, rule("careful", expression, "cannot be evaluated", field="qty"))
    with pytest.raises(ValidationFailed) as caught:
        create(rt, {"qty": 0 if "/" in expression or "%" in expression else 5})
    [error] = caught.value.errors
    assert (error.code, error.field, error.message, error.ctx["rule"]) == ("RULE_FAILED", "qty", "cannot be evaluated", "careful")
    assert deal_rows(rt) == []


def test_every_broken_rule_is_reported_in_rule_order(rt):
    add(rt, rule("a_name", "record.name != null", "a name please", field="name"),
        rule("b_qty", "record.qty != null && record.qty > 1", "more than one", field="qty"),
        rule("c_whole", 'record.note != "reject"', "rejected"),
        rule("d_fine", "true", "never"))
    assert failed(rt, lambda: create(rt, {"qty": 1, "note": "reject"})) == [
        broken("a_name", "name", "a name please"), broken("b_qty", "qty", "more than one"), broken("c_whole", None, "rejected")]


def test_bulk_writes_report_each_rows_path_and_write_nothing(rt):
    add(rt, rule("qty_positive", "record.qty == null || record.qty > 0", "quantity must be positive", field="qty"),
        rule("named", "record.name != null", "a name please"))
    assert failed(rt, lambda: rt.records.bulk_create(S, "deal", [
        {"name": "ok"}, {"name": "bad", "qty": 0}, {"qty": -1}, {"name": "fine", "qty": 3}])) == [
        broken("qty_positive", "1.qty", "quantity must be positive"),
        broken("qty_positive", "2.qty", "quantity must be positive"), broken("named", "2", "a name please")]
    first, second, third = rt.records.bulk_create(S, "deal", [{"name": "a"}, {"name": "b", "qty": 1}, {"name": "c"}])
    assert failed(rt, lambda: rt.records.bulk_update(S, "deal", [
        {"id": first["id"], "values": {"qty": 5}},
        {"id": second["id"], "values": {"qty": 0}},
        {"id": third["id"], "values": {"name": None, "qty": -2}}])) == [
        broken("qty_positive", "1.qty", "quantity must be positive"),
        broken("qty_positive", "2.qty", "quantity must be positive"), broken("named", "2", "a name please")]
    assert [r["version"] for r in rt.records.bulk_update(S, "deal", [
        {"id": first["id"], "values": {"qty": 5}}, {"id": third["id"], "values": {"qty": 2}}])] == [2, 2]


def test_a_field_a_rule_reads_or_names_cannot_be_deleted(rt):
    add(rt, rule("discount_cap", 'record.discount == null || record.discount <= 10.0 && record.name != "record.note"',
                 "too much"),
        rule("on_qty", "true", "nothing", field="qty"),
        rule("was_source", 'old == null || old.source == "web"', "was web"))
    before = stored(rt)
    for field, users in [("discount", ["validation rule 'discount_cap'"]), ("name", ["validation rule 'discount_cap'"]),
                         ("qty", ["validation rule 'on_qty'"]), ("source", ["validation rule 'was_source'"])]:
        with pytest.raises(InUse) as caught:
            rt.metadata.delete_field(S, "deal", field)
        assert (caught.value.field, caught.value.ctx["used_by"]) == ("field", users)
    assert stored(rt) == before
    # a field named only inside a string literal is not read by the rule
    rt.metadata.delete_field(S, "deal", "note")
    assert rt.catalog().object("deal").field("note") is None
    assert stored(rt)["version"] == before["version"] + 1
    rt.metadata.delete_validation_rule(S, "deal", "on_qty")
    rt.metadata.delete_field(S, "deal", "qty")
    assert rt.catalog().object("deal").field("qty") is None


# -- the order of a save ------------------------------------------------------------------------
def test_a_before_save_hook_runs_before_the_rules_and_its_changes_are_saved(rt):
    calls: list[tuple[str, Any, Any]] = []

    def stamp(ctx):
        calls.append((ctx.obj.api_name, ctx.old["id"] if ctx.old else None, ctx.record.get("note")))
        if ctx.record.get("note") is None:
            ctx.record["note"] = "stamped by hook"

    rt.records.hooks.before_save("deal", stamp)
    add(rt, rule("stamped", 'record.note == "stamped by hook"', "only the hook's value passes", field="note"))
    record = create(rt, {"name": "a"})
    assert record["note"] == "stamped by hook"
    assert rt.records.get(S, "deal", record["id"])["note"] == "stamped by hook"
    assert calls == [("deal", None, None)]
    assert failed(rt, lambda: create(rt, {"name": "b", "note": "mine"})) == [
        broken("stamped", "note", "only the hook's value passes")]
    updated = rt.records.update(S, "deal", record["id"], {"note": None, "name": "c"})
    assert (updated["note"], updated["name"], updated["version"]) == ("stamped by hook", "c", 2)
    assert calls[-1] == ("deal", record["id"], None)
    # hooks of other objects do not run; system validation comes first (an invalid input reaches no hook)
    rt.records.create(S, "memo", {"title": "t"})
    count = len(calls)
    assert [(code, field) for code, field, _, _ in failed(rt, lambda: create(rt, {"qty": "many"}))] == [("INVALID_TYPE", "qty")]
    assert len(calls) == count
    rows = rt.records.bulk_create(S, "deal", [{"name": "x"}, {"name": "y"}])
    assert [r["note"] for r in rows] == ["stamped by hook", "stamped by hook"]


def test_a_before_save_hook_may_refuse_the_write(rt):
    def refuse(ctx):
        if ctx.record.get("name") == "forbidden":
            raise ValidationFailed.of([FieldError("NOT_HERE", "name", "the hook refuses this name")])

    rt.records.hooks.before_save("deal", refuse)
    add(rt, rule("never", "false", "not reached either"))
    assert failed(rt, lambda: create(rt, {"name": "forbidden"})) == [("NOT_HERE", "name", "the hook refuses this name", {})]
    rt.metadata.delete_validation_rule(S, "deal", "never")
    record = create(rt, {"name": "allowed"})
    assert failed(rt, lambda: rt.records.update(S, "deal", record["id"], {"name": "forbidden"})) == [
        ("NOT_HERE", "name", "the hook refuses this name", {})]
    assert failed(rt, lambda: rt.records.bulk_create(S, "deal", [{"name": "fine"}, {"name": "forbidden"}])) == [
        ("NOT_HERE", "name", "the hook refuses this name", {})]


def test_an_after_save_hook_sees_the_saved_record(rt):
    seen: list[dict[str, Any]] = []
    table = rt.catalog().table("deal")

    def after(ctx):
        stored_row = ctx.conn.execute(select(table.c.version, table.c.name).where(table.c.id == ctx.record["id"])).one()
        seen.append({"id": ctx.record["id"], "version": ctx.record["version"], "name": ctx.record["name"],
                     "old": ctx.old["version"] if ctx.old else None, "stored": tuple(stored_row)})

    rt.records.hooks.after_save("deal", after)
    record = create(rt, {"name": "a"})
    updated = rt.records.update(S, "deal", record["id"], {"name": "b"})
    assert seen == [{"id": record["id"], "version": 1, "name": "a", "old": None, "stored": (1, "a")},
                    {"id": record["id"], "version": 2, "name": "b", "old": 1, "stored": (2, "b")}]
    assert updated["version"] == 2


def test_an_error_in_an_after_save_hook_writes_nothing(rt):
    def explode(ctx):
        if ctx.record.get("name") == "boom":
            raise RuntimeError("after-save hook failed")

    rt.records.hooks.after_save("deal", explode)
    record = create(rt, {"name": "fine"})
    before = (deal_rows(rt), history_count(rt))
    for call in (lambda: create(rt, {"name": "boom"}),
                 lambda: rt.records.update(S, "deal", record["id"], {"name": "boom"}),
                 lambda: rt.records.bulk_create(S, "deal", [{"name": "ok"}, {"name": "boom"}]),
                 lambda: rt.records.bulk_update(S, "deal", [{"id": record["id"], "values": {"name": "boom"}}])):
        with pytest.raises(RuntimeError, match="after-save hook failed"):
            call()
        assert (deal_rows(rt), history_count(rt)) == before


def test_a_business_type_a_rule_names_is_not_left_dangling(rt):
    add(rt, rule("service_qty", "record.qty != null", "service sales need a quantity", business_type="service"))
    try:
        rt.metadata.delete_business_type(S, "deal", "service")
    except InUse:
        assert rt.catalog().object("deal").business_type("service") is not None
    else:  # the rule went with its type (it could otherwise never be edited again, nor apply)
        assert [r.business_type for r in rt.catalog().object("deal").validation_rules] in ([], [None])
