"""Funnels, stage conversions, validation rules and layouts through the GraphQL endpoint, over HTTP,
on SQLite and PostgreSQL.

The object: ``opportunity`` with a business type ``sale`` (prospect 10 %, proposal 40 %, won, lost)
and one without stages (``service``). Five opportunities in three org units (North, North-A below
it, South) move through the stages; the expected funnel rows and conversion rates are computed
here from that data. A regional director (read, North and below) sees only the North subtree.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from lowcode.metadata import SYSTEM_ACTOR as S

PASSWORD = "a long password 1"
OPPORTUNITY = {"apiName": "opportunity", "label": "Opportunity", "pluralApiName": "opportunities", "pluralLabel": "Opportunities",
               "fields": [
                   {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
                   {"apiName": "amount", "label": "Amount", "type": "DECIMAL", "options": {"precision": 12, "scale": 2}},
                   {"apiName": "close_date", "label": "Close date", "type": "DATE"},
               ]}
STAGES = {"prospect": (10, "open"), "proposal": (40, "open"), "won": (100, "won"), "lost": (0, "lost")}
SALE = {"apiName": "sale", "label": "Sale", "stages": [
    {"apiName": name, "label": name.title(), "probability": p, "category": c.upper()} for name, (p, c) in STAGES.items()]}
SERVICE = {"apiName": "service", "label": "Service"}
PATH = ["prospect", "proposal", "won"]

# name, unit, owner, amount, close date, stages passed through (the last is the current one)
DATA = [
    ("A1", "north_a", "ann", "100.00", "2025-01-15", ["prospect"]),
    ("A2", "north_a", "ann", "200.50", "2025-02-10", ["prospect", "proposal"]),
    ("A3", "north", "dora", "300.00", "2025-01-20", ["prospect", "proposal", "won"]),
    ("S1", "south", "sam", "1000.00", "2025-01-05", ["prospect", "lost"]),
    ("S2", "south", "sam", "50.00", "2025-04-01", ["prospect", "proposal"]),
]

FUNNEL = """query($amount: OpportunityFunnelAmount!, $date: OpportunityFunnelDate, $period: FunnelPeriod, $byOwner: Boolean,
                  $filter: OpportunityFilter, $unit: ID) {
  opportunityFunnel(amountField: $amount, dateField: $date, period: $period, byOwner: $byOwner, filter: $filter, unit: $unit) {
    period businessType stage probability category ownerId owner { username } count amount weightedAmount } }"""
CONVERSIONS = """query($filter: OpportunityFilter, $unit: ID) { opportunityStageConversions(filter: $filter, unit: $unit) {
    businessType fromStage toStage reached converted rate } }"""


def build(api):
    """The object, the org, the users and the data; returns (unit ids, user ids, director token)."""
    api.data("mutation($i: ObjectInput!) { createObject(input: $i) { apiName } }", {"i": OPPORTUNITY})
    for kind in (SALE, SERVICE):
        api.data("mutation($i: BusinessTypeInput!) { createBusinessType(object: \"opportunity\", input: $i) { apiName } }", {"i": kind})
    sec, records = api.runtime.security, api.runtime.records
    root = sec.create_unit(S, "Group")
    units = {"north": sec.create_unit(S, "North", root["id"])["id"], "south": sec.create_unit(S, "South", root["id"])["id"]}
    units["north_a"] = sec.create_unit(S, "North A", units["north"])["id"]
    sec.create_role(S, "rep", "Sales rep")
    sec.set_object_grant(S, "rep", "opportunity", ["read", "create", "update"], "own", "own")
    sec.create_role(S, "director", "Regional director")
    sec.set_object_grant(S, "director", "opportunity", ["read", "create", "update"], "unit_and_below", "unit_and_below")
    users = {}
    for name, unit, role in (("ann", "north_a", "rep"), ("dora", "north", "director"), ("sam", "south", "rep")):
        users[name] = sec.create_user(S, {"username": name}, PASSWORD)["id"]
        sec.add_membership(S, users[name], units[unit], role)
    for name, unit, owner, amount, close, stages in DATA:
        record = records.create(S, "opportunity", {"name": name, "amount": amount, "close_date": close,
                                                   "owner_id": users[owner], "org_unit_id": units[unit], "stage": stages[0]})
        for stage in stages[1:]:
            records.update(S, "opportunity", record["id"], {"stage": stage})
    token = sec.issue_token(S, "director", user_id=users["dora"])["token"]
    return units, users, token


def expected_funnel(rows, period=None, by_owner=False, users=None):
    """The funnel of ``rows`` of DATA, computed here: stage order, then owner."""
    groups = defaultdict(lambda: [0, Decimal(0)])
    for name, _unit, owner, amount, close, stages in rows:
        day = date.fromisoformat(close)
        start = {None: None, "MONTH": day.replace(day=1), "QUARTER": day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1),
                 "YEAR": day.replace(month=1, day=1)}[period]
        key = (start.isoformat() if start else None, stages[-1], users[owner] if by_owner else None)
        groups[key][0] += 1
        groups[key][1] += Decimal(amount)
    order = list(STAGES)
    result = []
    for (start, stage, owner), (count, amount) in sorted(groups.items(), key=lambda g: (g[0][0] or "", order.index(g[0][1]), g[0][2] or "")):
        probability, category = STAGES[stage]
        result.append({"period": start, "businessType": "SALE", "stage": stage.upper(), "probability": probability,
                       "category": category.upper(), "ownerId": owner, "count": count, "amount": amount,
                       "weightedAmount": amount * probability / 100})
    return result


def funnel(api, token=None, **variables):
    rows = api.data(FUNNEL, {"amount": "AMOUNT", **variables}, **({"token": token} if token else {}))["opportunityFunnel"]
    owners = [row.pop("owner") for row in rows]
    for row in rows:
        row["amount"], row["weightedAmount"] = Decimal(row["amount"]), Decimal(row["weightedAmount"])
    return rows, owners


def expected_conversions(rows):
    reached = [sum(1 for r in rows if any(s in PATH[i:] for s in r[5])) for i in range(len(PATH))]
    return [{"businessType": "SALE", "fromStage": PATH[i].upper(), "toStage": PATH[i + 1].upper(), "reached": reached[i],
             "converted": reached[i + 1], "rate": f"{Decimal(reached[i + 1]) / Decimal(reached[i]):.4f}"} for i in range(len(PATH) - 1)]


def test_funnel_and_conversions(api):
    units, users, director = build(api)
    rows, owners = funnel(api)
    assert rows == expected_funnel(DATA, users=users)
    assert [r["stage"] for r in rows] == ["PROSPECT", "PROPOSAL", "WON", "LOST"]
    assert rows[1]["count"] == 2 and rows[1]["amount"] == Decimal("250.50") and rows[1]["weightedAmount"] == Decimal("100.20")
    assert owners == [None] * 4
    by_month, _ = funnel(api, date="CLOSE_DATE", period="MONTH")
    assert by_month == expected_funnel(DATA, "MONTH", users=users)
    by_quarter, _ = funnel(api, date="CLOSE_DATE", period="QUARTER", byOwner=True)
    assert by_quarter == expected_funnel(DATA, "QUARTER", True, users)
    _, owners = funnel(api, byOwner=True)
    names = {v: k for k, v in users.items()}
    assert owners == [{"username": names[r["ownerId"]]} for r in expected_funnel(DATA, by_owner=True, users=users)]

    north = [r for r in DATA if r[1] in ("north", "north_a")]
    assert funnel(api, director)[0] == expected_funnel(north, users=users)
    assert funnel(api, director, byOwner=True)[0] == expected_funnel(north, by_owner=True, users=users)
    assert funnel(api, unit=units["south"])[0] == expected_funnel([r for r in DATA if r[1] == "south"], users=users)
    assert funnel(api, director, unit=units["north_a"])[0] == expected_funnel([r for r in DATA if r[1] == "north_a"], users=users)
    big = {"amount": {"gte": "200"}}
    assert funnel(api, filter=big)[0] == expected_funnel([r for r in DATA if Decimal(r[3]) >= 200], users=users)

    conversions = api.data(CONVERSIONS)["opportunityStageConversions"]
    assert conversions == expected_conversions(DATA)
    assert [c["rate"] for c in conversions] == ["0.6000", "0.3333"]
    assert api.data(CONVERSIONS, token=director)["opportunityStageConversions"] == expected_conversions(north)
    assert api.data(CONVERSIONS, {"unit": units["south"]})["opportunityStageConversions"] == \
        expected_conversions([r for r in DATA if r[1] == "south"])


def test_funnel_errors(api):
    build(api)
    _, errors = api.errors(FUNNEL, {"amount": "AMOUNT", "period": "MONTH"})
    assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("INVALID_VALUE", "dateField")]
    status, errors = api.errors(FUNNEL, {"amount": "CLOSE_DATE"})
    assert status == 400 and errors[0]["extensions"]["code"] == "BAD_QUERY"
    _, errors = api.errors(FUNNEL, {"amount": "AMOUNT", "filter": {"name": {"gt": 1}}})
    assert errors[0]["extensions"]["code"] == "BAD_QUERY"


RULE = "apiName expression message field businessType active"
CREATE_RULE = f"mutation($i: ValidationRuleInput!) {{ createValidationRule(object: \"opportunity\", input: $i) {{ {RULE} }} }}"
UPDATE_RULE = (f"mutation($a: String!, $i: ValidationRuleUpdateInput!) {{ updateValidationRule(object: \"opportunity\", apiName: $a, "
               f"input: $i) {{ {RULE} }} }}")
DELETE_RULE = "mutation($a: String!) { deleteValidationRule(object: \"opportunity\", apiName: $a) }"
CREATE = "mutation($i: OpportunityCreateInput!) { createOpportunity(input: $i) { name amount } }"


def test_validation_rules(api):
    build(api)
    version = api.data("{ metadataVersion }")["metadataVersion"]
    _, errors = api.errors(CREATE_RULE, {"i": {"apiName": "cap", "expression": "record.amount <", "message": "Too large"}})
    assert errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    [problem] = errors[0]["extensions"]["errors"]
    assert (problem["code"], problem["field"]) == ("SYNTAX_ERROR", "input.expression")
    assert problem["ctx"] == {"line": 1, "column": 16, "offset": 15}
    _, errors = api.errors(CREATE_RULE, {"i": {"apiName": "cap", "expression": "true", "message": "x", "field": "nope"}})
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("UNKNOWN_FIELD", "input.field")]
    assert api.data("{ metadataVersion }")["metadataVersion"] == version

    rule = {"apiName": "cap", "expression": "record.amount == null || record.amount < 10000.0", "message": "Too large",
            "field": "amount", "businessType": "sale"}
    assert api.data(CREATE_RULE, {"i": rule})["createValidationRule"] == {**rule, "active": True}
    assert api.data("{ object(apiName: \"opportunity\") { validationRules { " + RULE + " } } }")["object"]["validationRules"] == \
        [{**rule, "active": True}]
    _, errors = api.errors(CREATE, {"i": {"name": "Huge", "amount": "20000"}})
    assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"], e["message"]) for e in errors[0]["extensions"]["errors"]] == \
        [("RULE_FAILED", "input.amount", "Too large")]
    assert api.data(CREATE, {"i": {"name": "Fine", "amount": "9999"}})["createOpportunity"] == {"name": "Fine", "amount": "9999.00"}
    assert api.data(CREATE, {"i": {"name": "Service", "amount": "20000", "businessType": "SERVICE"}})["createOpportunity"]["name"] == "Service"

    assert api.data(UPDATE_RULE, {"a": "cap", "i": {"active": False}})["updateValidationRule"]["active"] is False
    assert api.data(CREATE, {"i": {"name": "Huge", "amount": "20000"}})["createOpportunity"]["amount"] == "20000.00"
    _, errors = api.errors(UPDATE_RULE, {"a": "cap", "i": {"expression": "record.nope > 1"}})
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("UNKNOWN_FIELD", "input.expression")]
    _, errors = api.errors(UPDATE_RULE, {"a": "missing", "i": {"active": True}})
    assert errors[0]["extensions"]["code"] == "NOT_FOUND" and errors[0]["extensions"]["field"] == "apiName"
    assert api.data(DELETE_RULE, {"a": "cap"})["deleteValidationRule"] == "cap"
    assert api.data("{ object(apiName: \"opportunity\") { validationRules { apiName } } }")["object"]["validationRules"] == []


LAYOUT = ("apiName label businessType role sections { label columns fields { field graphqlName label type required readOnly } } "
          "relatedLists { object field label columns graphqlName }")
CREATE_LAYOUT = f"mutation($i: LayoutInput!) {{ createLayout(object: \"opportunity\", input: $i) {{ {LAYOUT} }} }}"
LAYOUT_QUERY = f"query($t: String) {{ layout(object: \"opportunity\", businessType: $t) {{ {LAYOUT} }} }}"


def field(name, label, type_, required=False, read_only=False):
    graphql = {"close_date": "closeDate"}.get(name, name)
    return {"field": name, "graphqlName": graphql, "label": label, "type": type_, "required": required, "readOnly": read_only}


def test_layouts(api):
    _units, _users, director = build(api)
    default = {"apiName": "default_form", "label": "Default", "sections": [{"label": "Main", "fields": [{"field": "name", "required": True}]}]}
    sale = {"apiName": "sale_form", "label": "Sale", "businessType": "sale", "sections": [
        {"label": "Deal", "columns": 1, "fields": [{"field": "name", "required": True}, {"field": "amount", "required": True},
                                                   {"field": "close_date", "readOnly": True}]}]}
    sale_director = {"apiName": "sale_director", "label": "Sale (director)", "businessType": "sale", "role": "director",
                     "sections": [{"label": "Main", "fields": [{"field": "name"}, {"field": "amount", "readOnly": True}]}]}
    created = [api.data(CREATE_LAYOUT, {"i": layout})["createLayout"] for layout in (default, sale, sale_director)]
    expected_default = {"apiName": "default_form", "label": "Default", "businessType": None, "role": None, "relatedLists": [],
                        "sections": [{"label": "Main", "columns": 2, "fields": [field("name", "Name", "TEXT", required=True)]}]}
    expected_sale = {"apiName": "sale_form", "label": "Sale", "businessType": "sale", "role": None, "relatedLists": [],
                     "sections": [{"label": "Deal", "columns": 1, "fields": [
                         field("name", "Name", "TEXT", required=True), field("amount", "Amount", "DECIMAL", required=True),
                         field("close_date", "Close date", "DATE", read_only=True)]}]}
    expected_director = {"apiName": "sale_director", "label": "Sale (director)", "businessType": "sale", "role": "director",
                         "relatedLists": [], "sections": [{"label": "Main", "columns": 2, "fields": [
                             field("name", "Name", "TEXT"), field("amount", "Amount", "DECIMAL", read_only=True)]}]}
    assert created == [expected_default, expected_sale, expected_director]
    listed = api.data("{ object(apiName: \"opportunity\") { layouts { " + LAYOUT + " } } }")["object"]["layouts"]
    assert listed == [expected_default, expected_director, expected_sale]  # by api name

    assert api.data(LAYOUT_QUERY)["layout"] == expected_sale  # the default business type: sale
    assert api.data(LAYOUT_QUERY, {"t": "sale"})["layout"] == expected_sale
    assert api.data(LAYOUT_QUERY, {"t": "service"})["layout"] == expected_default
    assert api.data(LAYOUT_QUERY, {"t": "sale"}, token=director)["layout"] == expected_director
    assert api.data(LAYOUT_QUERY, {"t": "service"}, token=director)["layout"] == expected_default
    _, errors = api.errors(LAYOUT_QUERY, {"t": "nope"})
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("UNKNOWN_BUSINESS_TYPE", "businessType")]

    # the layout's required fields on create: sale needs an amount (system caller: no roles), service only a name
    _, errors = api.errors(CREATE, {"i": {"name": "No amount"}})
    assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("REQUIRED_BY_LAYOUT", "input.amount")]
    assert api.data(CREATE, {"i": {"name": "No amount", "businessType": "SERVICE"}})["createOpportunity"] == \
        {"name": "No amount", "amount": None}
    assert api.data(CREATE, {"i": {"name": "No amount"}}, token=director)["createOpportunity"] == {"name": "No amount", "amount": None}

    _, errors = api.errors(CREATE_LAYOUT, {"i": {"apiName": "bad", "label": "Bad", "role": "rep", "sections": [
        {"label": "Main", "fields": [{"field": "name"}, {"field": "nope"}]}]}})
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("UNKNOWN_FIELD", "input.sections.0.fields.1.field")]
    update = f"mutation($i: LayoutUpdateInput!) {{ updateLayout(object: \"opportunity\", apiName: \"sale_form\", input: $i) {{ {LAYOUT} }} }}"
    updated = api.data(update, {"i": {"label": "Sale form"}})["updateLayout"]
    assert updated == {**expected_sale, "label": "Sale form"}
    assert api.data("mutation { deleteLayout(object: \"opportunity\", apiName: \"sale_form\") }")["deleteLayout"] == "sale_form"
    assert api.data(LAYOUT_QUERY, {"t": "sale"})["layout"] == expected_default
    assert api.data(CREATE, {"i": {"name": "No amount"}})["createOpportunity"] == {"name": "No amount", "amount": None}


def test_the_callers_layout_leaves_out_fields_they_may_not_read(api):
    units, _users, _director = build(api)
    sec = api.runtime.security
    sec.create_role(S, "clerk", "Clerk")
    sec.set_object_grant(S, "clerk", "opportunity", ["read", "create", "update"], "all", "all")
    sec.set_field_grant(S, "clerk", "opportunity", "amount", "hidden")
    sec.set_field_grant(S, "clerk", "opportunity", "close_date", "read")
    clerk = sec.create_user(S, {"username": "clerk"}, PASSWORD)["id"]
    sec.add_membership(S, clerk, units["south"], "clerk")
    token = sec.issue_token(S, "clerk", user_id=clerk)["token"]
    api.data(CREATE_LAYOUT, {"i": {"apiName": "sale_form", "label": "Sale", "businessType": "sale", "sections": [
        {"label": "Deal", "fields": [{"field": "name", "required": True}, {"field": "amount"}, {"field": "close_date"}]}]}})

    mine = api.data(LAYOUT_QUERY, {"t": "sale"}, token=token)["layout"]["sections"][0]["fields"]
    assert [(f["field"], f["required"], f["readOnly"]) for f in mine] == [("name", True, False), ("close_date", False, True)]
    everyone = api.data(LAYOUT_QUERY, {"t": "sale"})["layout"]["sections"][0]["fields"]
    assert [(f["field"], f["readOnly"]) for f in everyone] == [("name", False), ("amount", False), ("close_date", False)]
