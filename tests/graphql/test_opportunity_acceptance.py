"""Acceptance of issue 5 end to end over HTTP GraphQL, on SQLite and PostgreSQL.

Everything is built through the API, once per database (``module_database_url``): an org tree
(group -> two subsidiaries -> regions -> departments), users with API tokens, roles and grants
(security admin API); an ``opportunity`` object with two business types -- product sale (first
contact 10, needs confirmed 30, solution 50, quote and negotiation 70, won 100, lost 0) and project
sale (six stages of its own) --, picklists limited per type, stage entry requirements, validation
rules (one reading ``old``, one the acting ``user``, one for one type only) and layouts per type and
role (metadata API); then a seeded random data set of a few hundred opportunities over two years
of close dates, created and moved along their stages with bulk mutations.

1. Records take only their type's stages and picklist values; every move is allowed or refused
   with the exact code, field path and configured message; reopening needs the reopen action;
   the stage history, probability and overdue records are exposed.
2. ``opportunityFunnel`` (per stage x quarter: count, amount, weighted amount, exact) and
   ``opportunityStageConversions`` equal figures computed here from the generated data, for the
   administrator, a regional director (their subtree only) and a rep (own records only), and with
   the ``unit`` argument.
3. Invalid configuration (a stage in two types, probability 140, a CEL syntax error, a layout naming
   a field of another object) is refused with exact errors and changes neither the metadata version
   nor the object's metadata nor the served schema.

Records written by the tests of part 1 are named ``t1 ...`` and moved to the recycle bin after each
test (``scratch``), so the funnel only ever sees the generated data set (``ds ...``).
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import pytest
from lowcode.graphql.limits import Limits
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from sqlalchemy import update

SERVICE = "acceptance-service-token"
"""The service token: acts as the platform itself."""


# -- the configuration ----------------------------------------------------------------------------
def values(*names: str) -> list[dict[str, str]]:
    return [{"apiName": n, "label": n.replace("_", " ").capitalize()} for n in names]


ACCOUNT = {"apiName": "account", "label": "Account", "pluralApiName": "accounts", "pluralLabel": "Accounts", "fields": [
    {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
    {"apiName": "industry", "label": "Industry", "type": "TEXT"}]}
OPPORTUNITY = {"apiName": "opportunity", "label": "Opportunity", "pluralApiName": "opportunities", "pluralLabel": "Opportunities",
               "fields": [
                   {"apiName": "name", "label": "Name", "type": "TEXT", "required": True},
                   {"apiName": "amount", "label": "Amount", "type": "CURRENCY", "options": {"precision": 14, "scale": 2}},
                   {"apiName": "discount", "label": "Discount", "type": "DECIMAL", "options": {"precision": 5, "scale": 2}},
                   {"apiName": "close_date", "label": "Close date", "type": "DATE"},
                   {"apiName": "next_step", "label": "Next step", "type": "TEXT"},
                   {"apiName": "loss_reason", "label": "Loss reason", "type": "TEXT"},
                   {"apiName": "source", "label": "Lead source", "type": "PICKLIST",
                    "options": {"values": values("web", "partner", "trade_fair", "tender", "referral")}},
                   {"apiName": "delivery", "label": "Delivery", "type": "PICKLIST",
                    "options": {"values": values("download", "shipment", "on_site")}},
               ]}
SOURCES = ["web", "partner", "trade_fair", "tender", "referral"]
DELIVERIES = ["download", "shipment", "on_site"]

# api name, label, probability, category, expected days, fields required to enter
PRODUCT_STAGES = [
    ("first_contact", "First contact", 10, "open", 5, ()),
    ("needs_confirmed", "Needs confirmed", 30, "open", 10, ("next_step",)),
    ("solution", "Solution", 50, "open", 14, ()),
    ("quote_negotiation", "Quote and negotiation", 70, "open", 7, ("amount", "close_date")),
    ("won", "Won", 100, "won", None, ("amount", "close_date")),
    ("lost", "Lost", 0, "lost", None, ("loss_reason",)),
]
PROJECT_STAGES = [
    ("qualification", "Qualification", 10, "open", 20, ()),
    ("scoping", "Scoping", 25, "open", 30, ("next_step",)),
    ("proposal", "Proposal", 40, "open", None, ("amount",)),
    ("contract_negotiation", "Contract negotiation", 75, "open", 15, ("amount", "close_date")),
    ("project_won", "Project won", 100, "won", None, ("amount", "close_date")),
    ("project_lost", "Project lost", 0, "lost", None, ("loss_reason",)),
]
STAGES = {"product_sale": PRODUCT_STAGES, "project_sale": PROJECT_STAGES}
TYPE_LABEL = {"product_sale": "Product sale", "project_sale": "Project sale"}
SUBSETS = {"product_sale": {"source": ["web", "partner", "trade_fair", "referral"], "delivery": ["download", "shipment"]},
           "project_sale": {"source": ["partner", "tender", "referral"]}}
"""Picklist values per type (a picklist a type does not limit takes every value)."""

STAGE = {s[0]: {"type": kind, "label": s[1], "probability": s[2], "category": s[3], "expected_days": s[4], "required": s[5]}
         for kind, stages in STAGES.items() for s in stages}
STAGE_ORDER = {name: i for i, name in enumerate(STAGE)}
OPEN = {kind: [s[0] for s in stages if s[3] == "open"] for kind, stages in STAGES.items()}
WON = {kind: next(s[0] for s in stages if s[3] == "won") for kind, stages in STAGES.items()}
LOST = {kind: next(s[0] for s in stages if s[3] == "lost") for kind, stages in STAGES.items()}
PATH = {kind: [*OPEN[kind], WON[kind]] for kind in STAGES}
"""Each type's path to won: the steps of the stage conversions."""


GRAPHQL_FIELD = {"next_step": "nextStep", "close_date": "closeDate", "loss_reason": "lossReason", "amount": "amount"}
FILL = {"next_step": "Workshop", "amount": "12500.00", "close_date": "2026-03-31", "loss_reason": "Lost to a competitor"}
"""Values of the fields stages require."""


def stage_input(api_name: str, label: str, probability: int, category: str, expected_days: int | None, required) -> dict[str, Any]:
    return {"apiName": api_name, "label": label, "probability": probability, "category": category.upper(),
            "expectedDays": expected_days, "requiredFields": list(required)}


def type_input(kind: str, description: str) -> dict[str, Any]:
    return {"apiName": kind, "label": TYPE_LABEL[kind], "description": description,
            "picklists": [{"field": f, "values": v} for f, v in SUBSETS[kind].items()],
            "stages": [stage_input(*s) for s in STAGES[kind]]}


BUSINESS_TYPES = [type_input("product_sale", "Licences and hardware"), type_input("project_sale", "Integration projects")]

RULES = [
    {"apiName": "discount_needs_manager", "field": "discount", "businessType": None,
     "expression": "record.discount == null || record.discount <= 10.0 || user.username == 'mia'",
     "message": "Discounts above 10 % need a sales manager's approval"},
    {"apiName": "product_discount_cap", "field": "discount", "businessType": "product_sale",
     "expression": "record.discount == null || record.discount <= 25.0", "message": "Product discounts are capped at 25 %"},
    {"apiName": "amount_not_lowered", "field": "amount", "businessType": None,
     "expression": ("old == null || old.stage != record.stage || !(record.stage in ['quote_negotiation', 'contract_negotiation'])\n"
                    "  || old.amount == null || (record.amount != null && record.amount >= old.amount)"),
     "message": "The amount cannot be lowered during negotiation"},
]


def item(name: str, required: bool = False, read_only: bool = False) -> dict[str, Any]:
    return {"field": name, "required": required, "readOnly": read_only}


LAYOUTS = [
    {"apiName": "default_form", "label": "Opportunity form", "businessType": None, "role": None,
     "sections": [{"label": "Main", "columns": 2, "fields": [item("name", True)]}]},
    {"apiName": "product_form", "label": "Product sale form", "businessType": "product_sale", "role": None, "sections": [
        {"label": "Deal", "columns": 2, "fields": [item("name", True), item("source", True), item("amount"), item("close_date"),
                                                   item("discount")]},
        {"label": "Progress", "columns": 1, "fields": [item("next_step"), item("loss_reason"), item("delivery")]}]},
    {"apiName": "project_form", "label": "Project sale form", "businessType": "project_sale", "role": None, "sections": [
        {"label": "Project", "columns": 2, "fields": [item("name", True), item("source"), item("amount"), item("close_date"),
                                                      item("next_step"), item("discount"), item("delivery")]}]},
    {"apiName": "project_rep_form", "label": "Project form for reps", "businessType": "project_sale", "role": "rep", "sections": [
        {"label": "Project", "columns": 1, "fields": [item("name", True), item("next_step", True), item("amount"),
                                                      item("close_date", read_only=True), item("source")]}]},
]

# -- the org --------------------------------------------------------------------------------------
UNITS = [("group", "Group", None), ("alpha", "Alpha GmbH", "group"), ("beta", "Beta AG", "group"),
         ("an", "Alpha North", "alpha"), ("as", "Alpha South", "alpha"), ("be", "Beta East", "beta"), ("bw", "Beta West", "beta"),
         ("an1", "North Enterprise", "an"), ("an2", "North Mid-market", "an"), ("as1", "South Public", "as"),
         ("be1", "East Retail", "be"), ("be2", "East Industry", "be"), ("bw1", "West General", "bw")]
PARENT = {key: parent for key, _, parent in UNITS}
REPS = {"ann": "an1", "ben": "an2", "cai": "an", "dev": "as1", "hal": "as", "eli": "be1", "fay": "be2", "gus": "bw1"}
USERS = [("ada", "group", "administrator"), ("rita", "an", "director"), ("mia", "alpha", "sales_manager"),
         *((name, unit, "rep") for name, unit in REPS.items())]
ROLES = [("rep", "Sales rep", ["READ", "CREATE", "UPDATE"], "OWN", "OWN"),
         ("director", "Regional director", ["READ"], "UNIT_AND_BELOW", "OWN"),
         ("sales_manager", "Sales manager", ["READ", "CREATE", "UPDATE", "REOPEN"], "UNIT_AND_BELOW", "UNIT_AND_BELOW")]


def subtree(key: str) -> set[str]:
    found = {key}
    while True:
        more = {child for child, parent in PARENT.items() if parent in found} - found
        if not more:
            return found
        found |= more


# -- GraphQL text ---------------------------------------------------------------------------------
STAGE_FIELDS = "apiName label probability category expectedDays requiredFields"
LAYOUT_FIELDS = "apiName label businessType role sections { label columns fields { field required readOnly } }"
RULE_FIELDS = "apiName expression message field businessType active"
CONFIGURATION = (f"businessTypes {{ apiName label description active default graphqlName picklists {{ field values }} "
                 f"stages {{ {STAGE_FIELDS} graphqlName }} }} validationRules {{ {RULE_FIELDS} }} layouts {{ {LAYOUT_FIELDS} }}")
SNAPSHOT = (f"{{ metadataVersion metadataChanges(limit: 500) {{ version action objectApiName fieldApiName }} "
            f"objects {{ apiName }} "
            f"opportunity: object(apiName: \"opportunity\") {{ fields(includeSystem: true) {{ apiName type required options {{ "
            f"values {{ apiName active }} }} }} {CONFIGURATION} }} "
            f"account: object(apiName: \"account\") {{ fields {{ apiName type }} layouts {{ apiName }} }} "
            f"stageEnum: __type(name: \"OpportunityStage\") {{ enumValues {{ name }} }} "
            f"typeEnum: __type(name: \"OpportunityBusinessType\") {{ enumValues {{ name }} }} }}")

RECORD = "id name businessType stage source delivery amount discount closeDate nextStep lossReason version probability stageCategory"
CREATE = f"mutation($i: OpportunityCreateInput!) {{ createOpportunity(input: $i) {{ {RECORD} }} }}"
CREATE_MANY = f"mutation($i: [OpportunityCreateInput!]!) {{ createOpportunities(inputs: $i) {{ {RECORD} }} }}"
UPDATE = f"mutation($id: ID!, $i: OpportunityUpdateInput!) {{ updateOpportunity(id: $id, input: $i) {{ {RECORD} }} }}"
UPDATE_MANY = f"mutation($items: [OpportunityUpdateItem!]!) {{ updateOpportunities(items: $items) {{ {RECORD} }} }}"
GET = f"query($id: ID!) {{ opportunity(id: $id) {{ {RECORD} }} }}"
HISTORY = ("query($id: ID!) { opportunity(id: $id) { stage stageEnteredAt stageHistory { stage businessType enteredAt enteredById "
           "leftAt leftById secondsInStage } } }")
LISTED = ("query($f: OpportunityFilter) { opportunities(filter: $f, orderBy: [NAME_ASC], first: 500) { totalCount nodes { "
          f"{RECORD} }} }} }}")
DUE = ("query($d: Int, $f: OpportunityFilter) { opportunitiesDueInStage(withinDays: $d, filter: $f, orderBy: [NAME_ASC]) { "
       "totalCount nodes { name stage daysInStage stageDueAt } } }")
FUNNEL = ("query($date: OpportunityFunnelDate, $period: FunnelPeriod, $byOwner: Boolean, $unit: ID, $filter: OpportunityFilter) { "
          "opportunityFunnel(amountField: AMOUNT, dateField: $date, period: $period, byOwner: $byOwner, unit: $unit, filter: $filter) { "
          "period businessType stage probability category ownerId count amount weightedAmount } }")
CONVERSIONS = ("query($unit: ID, $filter: OpportunityFilter) { opportunityStageConversions(unit: $unit, filter: $filter) { "
               "businessType fromStage toStage reached converted rate } }")


class Client:
    """HTTP GraphQL through Flask's test client (routing, auth and JSON handling included)."""

    def __init__(self, database_url: str):
        self.runtime = Runtime.connect(database_url).install()
        app = create_app(Settings(database_url=database_url, api_token=SERVICE, limits=Limits()), runtime=self.runtime)
        self.http = app.test_client()

    def close(self) -> None:
        self.runtime.close()

    def post(self, query: str, variables: dict | None = None, token: str = SERVICE) -> tuple[int, dict]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables or {}},
                                  headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, token: str = SERVICE) -> dict:
        status, body = self.post(query, variables, token)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def refused(self, query: str, variables: dict | None = None, token: str = SERVICE, code: str = "VALIDATION_FAILED") -> dict:
        """The one error of a request refused at its root field (status 200, no data)."""
        status, body = self.post(query, variables, token)
        nothing = body.get("data") is None or all(value is None for value in body["data"].values())
        assert status == 200 and nothing and len(body["errors"]) == 1, body
        error = body["errors"][0]
        assert error["extensions"]["code"] == code, error
        return error

    def batch(self, signature: dict[str, str], call: str, items: list[dict[str, Any]], token: str = SERVICE) -> list[Any]:
        """One mutation running ``call`` once per item (aliases a0, a1, ...); ``signature``: its variables' types."""
        if not items:
            return []
        definitions, fields, variables = [], [], {}
        for i, entry in enumerate(items):
            text = call
            for name, type_ in signature.items():
                definitions.append(f"${name}{i}: {type_}")
                text = re.sub(rf"\${name}\b", f"${name}{i}", text)
                variables[f"{name}{i}"] = entry.get(name)
            fields.append(f"a{i}: {text}")
        found = self.data(f"mutation({', '.join(definitions)}) {{ {' '.join(fields)} }}", variables, token)
        return [found[f"a{i}"] for i in range(len(items))]


def problems(error: dict) -> list[tuple]:
    """(code, field, message) of each problem of a VALIDATION_FAILED error, checking its summary."""
    found = [(p["code"], p["field"], p["message"]) for p in error["extensions"]["errors"]]
    count = len(found)
    assert error["message"] == f"{count} value{'s' if count != 1 else ''} failed validation: fix the listed fields.", error
    return found


def required(path: str, stage: str) -> tuple[str, str, str]:
    return ("REQUIRED_FOR_STAGE", path, f"is required to enter the stage '{STAGE[stage]['label']}'")


def not_a_stage(path: str, stage: str, kind: str) -> tuple[str, str, str]:
    return ("INVALID_STAGE", path, f"'{stage}' is not a stage of {TYPE_LABEL[kind]} records")


def not_for_type(path: str, value: str, kind: str) -> tuple[str, str, str]:
    return ("NOT_ALLOWED_FOR_TYPE", path, f"'{value}' is not a value for {TYPE_LABEL[kind]} records")


def rule_failed(path: str, rule: str) -> tuple[str, str, str]:
    return ("RULE_FAILED", path, next(r["message"] for r in RULES if r["apiName"] == rule))


def by_layout(path: str, layout: str) -> tuple[str, str, str]:
    return ("REQUIRED_BY_LAYOUT", path, f"is required by the layout '{next(x['label'] for x in LAYOUTS if x['apiName'] == layout)}'")


# -- the generated data set -----------------------------------------------------------------------
RECORDS = 360
FIRST_DAY = date(2024, 1, 1)
DAYS = 731  # 2024 and 2025: eight quarters
DELETED = 11


@dataclass
class Opportunity:
    name: str
    kind: str
    owner: str
    unit: str
    amount: Decimal | None
    close_date: date | None
    source: str
    delivery: str | None
    discount: Decimal | None
    journey: list[str]
    """Every stage entered, in order (the first on create)."""
    id: str = ""
    deleted: bool = False

    @property
    def stage(self) -> str:
        return self.journey[-1]


def journey_of(rng: random.Random, kind: str) -> list[str]:
    """Forward steps of one or two stages, sometimes lost (and now and then reopened), sometimes won."""
    path = OPEN[kind]
    position = rng.choice([0, 0, 0, 1, 2])
    journey = [path[position]]
    reopened = False
    while True:
        roll = rng.random()
        if roll < 0.3:
            return journey
        if roll < 0.45:
            journey.append(LOST[kind])
            if reopened or rng.random() < 0.7:
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


def generate(rng: random.Random) -> list[Opportunity]:
    units = [key for key, _, _ in UNITS if key not in ("group", "alpha", "beta")]
    made = []
    for i in range(RECORDS):
        kind = "product_sale" if rng.random() < 0.6 else "project_sale"
        owner = rng.choice(sorted(REPS))
        journey = journey_of(rng, kind)
        needs = {name for stage in journey for name in STAGE[stage]["required"]}
        amount = Decimal(rng.randrange(100_000, 25_000_000)) / 100
        made.append(Opportunity(
            name=f"ds {i:03d}", kind=kind, owner=owner, unit=REPS[owner] if rng.random() < 0.88 else rng.choice(units),
            amount=None if "amount" not in needs and rng.random() < 0.12 else amount.quantize(Decimal("0.01")),
            close_date=None if "close_date" not in needs and rng.random() < 0.08 else FIRST_DAY + timedelta(days=rng.randrange(DAYS)),
            source=rng.choice(SUBSETS[kind]["source"]), delivery=rng.choice([None, *SUBSETS[kind].get("delivery", DELIVERIES)]),
            discount=None if rng.random() < 0.5 else (Decimal(rng.randrange(0, 1001)) / 100).quantize(Decimal("0.01")),
            journey=journey))
    return made


def enum(value: str | None) -> str | None:
    return value.upper() if value is not None else None


@dataclass
class World:
    client: Client
    units: dict[str, str] = field(default_factory=dict)
    """unit key -> id"""
    users: dict[str, str] = field(default_factory=dict)
    """username -> id"""
    tokens: dict[str, str] = field(default_factory=dict)
    versions: tuple[int, int] = (0, 0)
    """The metadata versions before and after the configuration was built."""
    opportunities: list[Opportunity] = field(default_factory=list)

    def live(self, keep: Callable[[Opportunity], bool] = lambda o: True) -> list[Opportunity]:
        return [o for o in self.opportunities if not o.deleted and keep(o)]

    def in_units(self, *keys: str) -> Callable[[Opportunity], bool]:
        wanted = set().union(*(subtree(k) for k in keys))
        return lambda o: o.unit in wanted

    # -- building, through the API ----------------------------------------------------------
    def build(self) -> "World":
        c = self.client
        depth = {None: -1}
        for key, _, parent in UNITS:
            depth[key] = depth[parent] + 1
        for level in range(max(depth.values()) + 1):
            keys = [(key, name, parent) for key, name, parent in UNITS if depth[key] == level]
            created = c.batch({"n": "String!", "p": "ID"}, "createOrgUnit(input: {name: $n, parentId: $p}) { id name path }",
                              [{"n": name, "p": self.units.get(parent)} for _, name, parent in keys])
            for (key, name, parent), unit in zip(keys, created):
                assert unit["name"] == name
                assert unit["path"] == (f"/{unit['id']}/" if parent is None else unit_path(self, parent) + f"{unit['id']}/")
                self.units[key] = unit["id"]
        created = c.batch({"u": "String!", "f": "String"}, "createUser(input: {username: $u, fullName: $f}) { id username }",
                          [{"u": name, "f": name.title()} for name, _, _ in USERS])
        self.users = {user["username"]: user["id"] for user in created}
        issued = c.batch({"u": "ID"}, "createApiToken(name: \"acceptance\", userId: $u) { token userId }",
                         [{"u": self.users[name]} for name, _, _ in USERS])
        self.tokens = {name: token["token"] for (name, _, _), token in zip(USERS, issued)}
        c.data("mutation($u: ID!, $n: ID!) { addMembership(userId: $u, unitId: $n, role: \"administrator\") { role } }",
               {"u": self.users["ada"], "n": self.units["group"]})

        # The configuration, by the administrator Ada.
        ada = self.tokens["ada"]
        before = c.data("{ metadataVersion }", token=ada)["metadataVersion"]
        for definition in (ACCOUNT, OPPORTUNITY):
            c.data("mutation($i: ObjectInput!) { createObject(input: $i) { apiName } }", {"i": definition}, ada)
        c.batch({"n": "String!", "l": "String!"}, "createRole(input: {name: $n, label: $l}) { name }",
                [{"n": name, "l": label} for name, label, *_ in ROLES], ada)
        c.batch({"r": "String!", "a": "[RecordAction!]!", "rs": "DataScope!", "ws": "DataScope!"},
                "setObjectPermission(role: $r, object: \"opportunity\", actions: $a, readScope: $rs, writeScope: $ws) { name }",
                [{"r": name, "a": actions, "rs": read, "ws": write} for name, _, actions, read, write in ROLES], ada)
        c.batch({"u": "ID!", "n": "ID!", "r": "String!"}, "addMembership(userId: $u, unitId: $n, role: $r) { role }",
                [{"u": self.users[name], "n": self.units[unit], "r": role} for name, unit, role in USERS if name != "ada"], ada)
        for kind in BUSINESS_TYPES:
            c.data("mutation($i: BusinessTypeInput!) { createBusinessType(object: \"opportunity\", input: $i) { apiName } }",
                   {"i": kind}, ada)
        for rule in RULES:
            c.data("mutation($i: ValidationRuleInput!) { createValidationRule(object: \"opportunity\", input: $i) { apiName } }",
                   {"i": rule}, ada)
        for layout in LAYOUTS:
            c.data("mutation($i: LayoutInput!) { createLayout(object: \"opportunity\", input: $i) { apiName } }", {"i": layout}, ada)
        self.versions = (before, c.data("{ metadataVersion }", token=ada)["metadataVersion"])

        # The data set: created in one bulk mutation, moved stage by stage in bulk, a few deleted.
        self.opportunities = generate(random.Random(20250605))
        created = c.data("mutation($i: [OpportunityCreateInput!]!) { createOpportunities(inputs: $i) { id name stage } }", {"i": [{
            "name": o.name, "businessType": enum(o.kind), "stage": enum(o.journey[0]),
            "amount": str(o.amount) if o.amount is not None else None,
            "closeDate": o.close_date.isoformat() if o.close_date else None, "nextStep": "Call back",
            "lossReason": "Budget cut" if LOST[o.kind] in o.journey else None, "source": enum(o.source), "delivery": enum(o.delivery),
            "discount": str(o.discount) if o.discount is not None else None,
            "ownerId": self.users[o.owner], "orgUnitId": self.units[o.unit]} for o in self.opportunities]})["createOpportunities"]
        for opportunity, record in zip(self.opportunities, created, strict=True):
            assert (record["name"], record["stage"]) == (opportunity.name, enum(opportunity.journey[0]))
            opportunity.id = record["id"]
        for step in range(1, max(len(o.journey) for o in self.opportunities)):
            moving = [o for o in self.opportunities if len(o.journey) > step]
            moved = c.data("mutation($items: [OpportunityUpdateItem!]!) { updateOpportunities(items: $items) { id stage } }",
                           {"items": [{"id": o.id, "input": {"stage": enum(o.journey[step])}} for o in moving]})
            assert moved["updateOpportunities"] == [{"id": o.id, "stage": enum(o.journey[step])} for o in moving]
        doomed = random.Random(7).sample(self.opportunities, DELETED)
        assert c.batch({"id": "ID!"}, "deleteOpportunity(id: $id)", [{"id": o.id} for o in doomed]) == [o.id for o in doomed]
        for opportunity in doomed:
            opportunity.deleted = True
        return self


def unit_path(world: World, key: str) -> str:
    path = ""
    while key is not None:
        path = f"/{world.units[key]}" + path
        key = PARENT[key]
    return path + "/"


@pytest.fixture(scope="module")
def world(module_database_url):
    client = Client(module_database_url)
    try:
        yield World(client).build()
    finally:
        client.close()


@pytest.fixture
def scratch(world):
    """The world for a test writing records of its own (named ``t1 ...``): moved to the recycle bin
    afterwards, so they never reach the data set's figures."""
    yield world
    c = world.client
    left = c.data(LISTED, {"f": {"name": {"startsWith": "t1 "}}})["opportunities"]["nodes"]
    c.batch({"id": "ID!"}, "deleteOpportunity(id: $id)", [{"id": r["id"]} for r in left])


def set_stage_entered_at(world: World, record_id: str, at: datetime) -> None:
    """Make time pass: the record entered its stage at ``at``."""
    table = world.client.runtime.catalog().table("opportunity")
    with world.client.runtime.engine.begin() as conn:
        assert conn.execute(update(table).where(table.c.id == record_id).values(stage_entered_at=at)).rowcount == 1


# == 1. the configuration and the records =========================================================
def test_the_configuration_built_through_the_metadata_api_reads_back_exactly(world):
    c = world.client
    found = c.data(SNAPSHOT, token=world.tokens["rita"])  # everyone reads metadata

    expected_types = [{
        **kind, "active": True, "default": kind["apiName"] == "product_sale", "graphqlName": kind["apiName"].upper(),
        "stages": [{**s, "graphqlName": s["apiName"].upper()} for s in kind["stages"]]} for kind in BUSINESS_TYPES]
    config = found["opportunity"]
    assert config["businessTypes"] == expected_types
    assert [(s["apiName"], s["probability"]) for s in config["businessTypes"][0]["stages"]] == [
        ("first_contact", 10), ("needs_confirmed", 30), ("solution", 50), ("quote_negotiation", 70), ("won", 100), ("lost", 0)]
    assert config["validationRules"] == [{**rule, "active": True} for rule in RULES]
    assert config["layouts"] == sorted(LAYOUTS, key=lambda layout: layout["apiName"])
    assert sorted((f["apiName"], f["type"]) for f in config["fields"] if f["apiName"] in ("stage", "stage_entered_at", "business_type")) == [
        ("business_type", "TEXT"), ("stage", "TEXT"), ("stage_entered_at", "DATETIME")]
    assert [v["name"] for v in found["stageEnum"]["enumValues"]] == [name.upper() for name in STAGE]
    assert [v["name"] for v in found["typeEnum"]["enumValues"]] == ["PRODUCT_SALE", "PROJECT_SALE"]
    # One metadata change per definition, in the order made, each a version of its own.
    first, last = world.versions
    changes = sorted((ch["version"], ch["action"], ch["objectApiName"]) for ch in found["metadataChanges"] if ch["version"] > first)
    assert changes == [(first + 1 + i, action, obj) for i, (action, obj) in enumerate(
        [("create_object", "account"), ("create_object", "opportunity"), ("create_business_type", "opportunity"),
         ("create_business_type", "opportunity")] + [("create_validation_rule", "opportunity")] * 3
        + [("create_layout", "opportunity")] * 4)]
    assert found["metadataVersion"] == last == first + 11
    # Each user's form: the most specific layout for the type and their roles.
    layout = "query($t: String) { layout(object: \"opportunity\", businessType: $t) { apiName } }"
    assert [c.data(layout, {"t": t}, token=world.tokens[who])["layout"]["apiName"]
            for who, t in [("ann", None), ("ann", "project_sale"), ("rita", "project_sale"), ("mia", "product_sale")]] == [
        "product_form", "project_rep_form", "project_form", "product_form"]


def test_moves_from_the_first_stage_in_bulk_name_each_item_and_write_nothing(scratch):
    c = scratch.client
    for kind, first_value in (("product_sale", "WEB"), ("project_sale", "TENDER")):
        targets = list(STAGE)  # every stage of both types
        made = c.data(CREATE_MANY, {"i": [{"name": f"t1 move {kind} {t}", "businessType": enum(kind), "source": first_value}
                                          for t in targets]})["createOpportunities"]
        first = OPEN[kind][0]
        assert {(r["businessType"], r["stage"], r["version"]) for r in made} == {(enum(kind), enum(first), 1)}

        # All moves at once: each item's problems with its path, and nothing written.
        error = c.refused(UPDATE_MANY, {"items": [{"id": r["id"], "input": {"stage": enum(t)}} for r, t in zip(made, targets)]})
        expected = []
        for i, target in enumerate(targets):
            if STAGE[target]["type"] != kind:
                expected.append(not_a_stage(f"items.{i}.input.stage", target, kind))
            elif target != first:
                expected.extend(required(f"items.{i}.input.{GRAPHQL_FIELD[f]}", target) for f in STAGE[target]["required"])
        assert problems(error) == expected
        listed = c.data(LISTED, {"f": {"name": {"startsWith": f"t1 move {kind} "}}})["opportunities"]
        assert {(r["stage"], r["version"]) for r in listed["nodes"]} == {(enum(first), 1)} and listed["totalCount"] == 12

        # With what the stage requires, every stage of the type can be entered.
        items = [{"id": r["id"], "input": {"stage": enum(t), **{GRAPHQL_FIELD[f]: FILL[f] for f in STAGE[t]["required"]}}}
                 for r, t in zip(made, targets) if STAGE[t]["type"] == kind and STAGE[t]["required"]]
        moved = c.data(UPDATE_MANY, {"items": items})["updateOpportunities"]
        assert [(r["stage"], r["probability"], r["stageCategory"]) for r in moved] == [
            (i["input"]["stage"], STAGE[i["input"]["stage"].lower()]["probability"], STAGE[i["input"]["stage"].lower()]["category"].upper())
            for i in items]
        # Entry requirements hold on create as well.
        error = c.refused(CREATE_MANY, {"i": [{"name": "t1 ok", "businessType": enum(kind), "source": first_value},
                                              {"name": "t1 straight to won", "businessType": enum(kind), "stage": enum(WON[kind]),
                                               "source": first_value, "amount": "5"}]})
        assert problems(error) == [required("inputs.1.closeDate", WON[kind])]


def test_every_move_from_every_stage_is_allowed_or_refused_for_a_rep_without_the_reopen_action(scratch):
    """From each stage of each type to each of the twelve stages, one update each by the rep Ann,
    on a record holding just the fields its stage requires: another type's stage is invalid, a stage
    needing fields the record lacks names each of them, leaving won or lost is reopening (refused
    for Ann, allowed for the sales manager Mia), anything else moves."""
    c, ann, mia = scratch.client, scratch.tokens["ann"], scratch.tokens["mia"]
    pairs = [(kind, origin, target) for kind in STAGES for origin in (s[0] for s in STAGES[kind]) for target in STAGE]
    made = c.data(CREATE_MANY, {"i": [{
        "name": f"t1 matrix {i:03d}", "businessType": enum(kind), "stage": enum(origin), "source": "PARTNER",
        "ownerId": scratch.users["ann"], "orgUnitId": scratch.units["an1"],
        **{GRAPHQL_FIELD[f]: FILL[f] for f in STAGE[origin]["required"]}} for i, (kind, origin, target) in enumerate(pairs)]}
    )["createOpportunities"]
    assert [(r["businessType"], r["stage"]) for r in made] == [(enum(kind), enum(origin)) for kind, origin, _ in pairs]

    outcomes: dict[str, list] = defaultdict(list)
    for record, (kind, origin, target) in zip(made, pairs):
        variables = {"id": record["id"], "i": {"stage": enum(target)}}
        missing = [f for f in STAGE[target]["required"] if f not in STAGE[origin]["required"]]
        if STAGE[target]["type"] != kind:
            assert problems(c.refused(UPDATE, variables, ann)) == [not_a_stage("input.stage", target, kind)], (origin, target)
            outcomes["invalid"].append(record)
        elif missing:
            assert problems(c.refused(UPDATE, variables, ann)) == [required(f"input.{GRAPHQL_FIELD[f]}", target) for f in missing], (
                origin, target)
            outcomes["required"].append(record)
        elif target != origin and STAGE[origin]["category"] != "open":
            error = c.refused(UPDATE, variables, ann, code="FORBIDDEN")
            assert error["message"] == "None of your roles allows you to reopen closed Opportunity records.", (origin, target)
            outcomes["reopen"].append((record, target))
        else:
            moved = c.data(UPDATE, variables, ann)["updateOpportunity"]
            assert (moved["stage"], moved["probability"], moved["stageCategory"], moved["version"]) == (
                enum(target), STAGE[target]["probability"], STAGE[target]["category"].upper(), 1 if target == origin else 2)
            outcomes["moved"].append(record)
    assert {k: len(v) for k, v in outcomes.items()} == {"invalid": 72, "required": 39, "reopen": 9, "moved": 24}
    # The refused moves changed nothing.
    stored = {r["id"]: r for r in c.data(LISTED, {"f": {"name": {"startsWith": "t1 matrix"}}})["opportunities"]["nodes"]}
    for record in [*outcomes["invalid"], *outcomes["required"], *(r for r, _ in outcomes["reopen"])]:
        assert stored[record["id"]] == record
    # In bulk, a reopening among other moves refuses them all.
    [(closed, target)] = [(r, t) for r, t in outcomes["reopen"] if r["stage"] == "WON" and t == "first_contact"]
    fresh = c.data(CREATE, {"i": {"name": "t1 matrix fresh", "source": "WEB", "ownerId": scratch.users["ann"],
                                  "orgUnitId": scratch.units["an1"]}})["createOpportunity"]
    error = c.refused(UPDATE_MANY, {"items": [{"id": fresh["id"], "input": {"stage": "SOLUTION"}},
                                              {"id": closed["id"], "input": {"stage": enum(target)}}]}, ann, code="FORBIDDEN")
    assert error["message"] == "None of your roles allows you to reopen closed Opportunity records."
    assert [c.data(GET, {"id": r["id"]})["opportunity"] for r in (fresh, closed)] == [fresh, closed]
    # The sales manager may reopen.
    moved = c.data(UPDATE_MANY, {"items": [{"id": r["id"], "input": {"stage": enum(t)}} for r, t in outcomes["reopen"]]}, mia)
    assert [(r["stage"], r["stageCategory"], r["version"]) for r in moved["updateOpportunities"]] == [
        (enum(t), "OPEN", 2) for _, t in outcomes["reopen"]]


def test_picklist_values_are_limited_per_business_type(scratch):
    c = scratch.client
    allowed = [{"name": f"t1 pick {kind} {value}", "businessType": enum(kind), "source": enum(value)}
               for kind in STAGES for value in SOURCES if value in SUBSETS[kind]["source"]]
    made = c.data(CREATE_MANY, {"i": allowed})["createOpportunities"]
    assert [(r["businessType"], r["source"]) for r in made] == [(i["businessType"], i["source"]) for i in allowed]
    # Delivery: product sales limit it, project sales take every value.
    made = c.data(CREATE_MANY, {"i": [
        *({"name": f"t1 pick product {d}", "source": "WEB", "delivery": enum(d)} for d in SUBSETS["product_sale"]["delivery"]),
        *({"name": f"t1 pick project {d}", "businessType": "PROJECT_SALE", "delivery": enum(d)} for d in DELIVERIES)]}
    )["createOpportunities"]
    assert [(r["businessType"], r["delivery"]) for r in made] == [
        ("PRODUCT_SALE", "DOWNLOAD"), ("PRODUCT_SALE", "SHIPMENT"),
        ("PROJECT_SALE", "DOWNLOAD"), ("PROJECT_SALE", "SHIPMENT"), ("PROJECT_SALE", "ON_SITE")]
    count = c.data(LISTED, {"f": {"name": {"startsWith": "t1 pick"}}})["opportunities"]["totalCount"]

    refused = [("product_sale", "source", "tender"), ("project_sale", "source", "web"), ("project_sale", "source", "trade_fair"),
               ("product_sale", "delivery", "on_site")]
    error = c.refused(CREATE_MANY, {"i": [{"name": "t1 pick bad", "businessType": enum(kind), "source": "REFERRAL", name: enum(value)}
                                          for kind, name, value in refused]})
    assert problems(error) == [not_for_type(f"inputs.{i}.{name}", value, kind) for i, (kind, name, value) in enumerate(refused)]
    error = c.refused(CREATE, {"i": {"name": "t1 pick bad", "source": "TENDER", "delivery": "ON_SITE"}})
    assert problems(error) == [not_for_type("input.source", "tender", "product_sale"),
                               not_for_type("input.delivery", "on_site", "product_sale")]
    product = next(r for r in c.data(LISTED, {"f": {"name": {"eq": "t1 pick product_sale web"}}})["opportunities"]["nodes"])
    error = c.refused(UPDATE, {"id": product["id"], "i": {"source": "TENDER"}})
    assert problems(error) == [not_for_type("input.source", "tender", "product_sale")]
    assert c.data(GET, {"id": product["id"]})["opportunity"] == product
    assert c.data(LISTED, {"f": {"name": {"startsWith": "t1 pick"}}})["opportunities"]["totalCount"] == count


def test_validation_rules_read_the_old_record_and_the_acting_user(scratch):
    c, ann, mia = scratch.client, scratch.tokens["ann"], scratch.tokens["mia"]
    base = {"name": "t1 rule", "source": "WEB"}

    # The acting user: discounts above 10 % only by the sales manager; product discounts capped at 25 %.
    error = c.refused(CREATE, {"i": {**base, "discount": "15"}}, ann)
    assert problems(error) == [rule_failed("input.discount", "discount_needs_manager")]
    assert error["extensions"]["errors"][0]["ctx"] == {"rule": "discount_needs_manager"}
    error = c.refused(CREATE, {"i": {**base, "discount": "30"}}, ann)
    assert problems(error) == [rule_failed("input.discount", "discount_needs_manager"), rule_failed("input.discount", "product_discount_cap")]
    error = c.refused(CREATE, {"i": {**base, "discount": "30"}}, mia)
    assert problems(error) == [rule_failed("input.discount", "product_discount_cap")]
    assert c.data(CREATE, {"i": {**base, "discount": "10"}}, ann)["createOpportunity"]["discount"] == "10.00"
    assert c.data(CREATE, {"i": {**base, "discount": "25"}}, mia)["createOpportunity"]["discount"] == "25.00"
    project = c.data(CREATE, {"i": {**base, "businessType": "PROJECT_SALE", "source": "TENDER", "discount": "30"}}, mia)
    assert project["createOpportunity"]["discount"] == "30.00"  # the cap is for product sales only
    error = c.refused(CREATE_MANY, {"i": [{**base, "discount": "9.99"}, {**base, "discount": "10.01"}]}, ann)
    assert problems(error) == [rule_failed("inputs.1.discount", "discount_needs_manager")]
    mine = c.data(CREATE, {"i": {**base, "name": "t1 rule ann", "discount": "5"}}, ann)["createOpportunity"]
    error = c.refused(UPDATE, {"id": mine["id"], "i": {"discount": "12"}}, ann)
    assert problems(error) == [rule_failed("input.discount", "discount_needs_manager")]

    # The old record: no lower amount while negotiating (entering or leaving the stage may change it).
    deal = c.data(CREATE, {"i": {**base, "name": "t1 rule deal", "stage": "QUOTE_NEGOTIATION", "amount": "1000",
                                 "closeDate": "2026-06-30"}}, mia)["createOpportunity"]
    error = c.refused(UPDATE, {"id": deal["id"], "i": {"amount": "999.99"}}, mia)
    assert problems(error) == [rule_failed("input.amount", "amount_not_lowered")]
    assert error["extensions"]["errors"][0]["ctx"] == {"rule": "amount_not_lowered"}
    raised = c.data(UPDATE, {"id": deal["id"], "i": {"amount": "1200"}}, mia)["updateOpportunity"]
    assert (raised["amount"], raised["version"]) == ("1200.00", 2)
    other = c.data(CREATE, {"i": {**base, "name": "t1 rule other", "amount": "10"}}, mia)["createOpportunity"]
    error = c.refused(UPDATE_MANY, {"items": [{"id": other["id"], "input": {"amount": "5"}},
                                              {"id": deal["id"], "input": {"amount": "1100", "nextStep": "Call"}}]}, mia)
    assert problems(error) == [rule_failed("items.1.input.amount", "amount_not_lowered")]
    assert c.data(GET, {"id": other["id"]})["opportunity"]["amount"] == "10.00"
    moved = c.data(UPDATE, {"id": deal["id"], "i": {"stage": "SOLUTION", "amount": "800"}}, mia)["updateOpportunity"]
    assert (moved["stage"], moved["amount"]) == ("SOLUTION", "800.00")
    assert c.data(UPDATE, {"id": deal["id"], "i": {"amount": "700"}}, mia)["updateOpportunity"]["amount"] == "700.00"
    # A project in contract negotiation likewise.
    contract = c.data(CREATE, {"i": {"name": "t1 rule contract", "businessType": "PROJECT_SALE", "stage": "CONTRACT_NEGOTIATION",
                                     "amount": "50000", "closeDate": "2026-09-30"}})["createOpportunity"]
    error = c.refused(UPDATE, {"id": contract["id"], "i": {"amount": "49999"}})
    assert problems(error) == [rule_failed("input.amount", "amount_not_lowered")]
    assert c.data(GET, {"id": contract["id"]})["opportunity"]["version"] == 1


def test_layout_requirements_follow_the_business_type_and_the_role(scratch):
    c, ann, mia = scratch.client, scratch.tokens["ann"], scratch.tokens["mia"]
    # Product sales: the product form (every role) requires the lead source.
    for token in (SERVICE, ann, mia):
        error = c.refused(CREATE, {"i": {"name": "t1 form product"}}, token)
        assert problems(error) == [by_layout("input.source", "product_form")]
    # Project sales: reps fill the next step (their own form), others need only the name.
    error = c.refused(CREATE, {"i": {"name": "t1 form project", "businessType": "PROJECT_SALE"}}, ann)
    assert problems(error) == [by_layout("input.nextStep", "project_rep_form")]
    error = c.refused(CREATE, {"i": {"name": "", "businessType": "PROJECT_SALE", "nextStep": "Call"}}, ann)
    assert problems(error) == [("REQUIRED", "input.name", "is required and cannot be empty")]  # system validation comes first
    assert c.data(CREATE, {"i": {"name": "t1 form project", "businessType": "PROJECT_SALE"}}, mia)["createOpportunity"]["version"] == 1
    mine = c.data(CREATE, {"i": {"name": "t1 form ann", "businessType": "PROJECT_SALE", "nextStep": "Call"}}, ann)["createOpportunity"]
    error = c.refused(UPDATE, {"id": mine["id"], "i": {"nextStep": None}}, ann)
    assert problems(error) == [by_layout("input.nextStep", "project_rep_form")]
    # On other updates only the fields being emptied count.
    given = c.data(CREATE, {"i": {"name": "t1 form given", "businessType": "PROJECT_SALE", "ownerId": scratch.users["ann"],
                                  "orgUnitId": scratch.units["an1"]}})["createOpportunity"]
    assert c.data(UPDATE, {"id": given["id"], "i": {"amount": "10"}}, ann)["updateOpportunity"]["version"] == 2


def test_changing_the_business_type_revalidates_the_record(scratch):
    c, mia = scratch.client, scratch.tokens["mia"]
    product = c.data(CREATE, {"i": {"name": "t1 type product", "stage": "SOLUTION", "source": "WEB", "delivery": "DOWNLOAD",
                                    "discount": "5"}}, mia)["createOpportunity"]
    error = c.refused(UPDATE, {"id": product["id"], "i": {"businessType": "PROJECT_SALE"}}, mia)
    assert problems(error) == [
        not_for_type("input.source", "web", "project_sale"),
        ("INVALID_STAGE", "input.stage", "'solution' is not a stage of Project sale records; "
                                         "give one of Project sale's stages with the new business type")]
    error = c.refused(UPDATE, {"id": product["id"], "i": {"businessType": "PROJECT_SALE", "stage": "WON", "source": "PARTNER"}}, mia)
    assert problems(error) == [not_a_stage("input.stage", "won", "project_sale")]
    error = c.refused(UPDATE, {"id": product["id"], "i": {"businessType": "PROJECT_SALE", "stage": "PROPOSAL", "source": "PARTNER"}}, mia)
    assert problems(error) == [required("input.amount", "proposal")]
    assert c.data(GET, {"id": product["id"]})["opportunity"] == product
    moved = c.data(UPDATE, {"id": product["id"], "i": {"businessType": "PROJECT_SALE", "stage": "PROPOSAL", "source": "PARTNER",
                                                       "amount": "5000"}}, mia)["updateOpportunity"]
    assert {k: moved[k] for k in ("businessType", "stage", "source", "delivery", "probability", "version")} == {
        "businessType": "PROJECT_SALE", "stage": "PROPOSAL", "source": "PARTNER", "delivery": "DOWNLOAD", "probability": 40,
        "version": 2}
    history = c.data(HISTORY, {"id": product["id"]})["opportunity"]["stageHistory"]
    assert [(h["stage"], h["businessType"]) for h in history] == [("SOLUTION", "PRODUCT_SALE"), ("PROPOSAL", "PROJECT_SALE")]

    # Into a product sale: its picklist subset, then its form and its rules.
    project = c.data(CREATE, {"i": {"name": "t1 type project", "businessType": "PROJECT_SALE", "delivery": "ON_SITE",
                                    "discount": "30"}}, mia)["createOpportunity"]
    error = c.refused(UPDATE, {"id": project["id"], "i": {"businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT"}}, mia)
    assert problems(error) == [not_for_type("input.delivery", "on_site", "product_sale")]
    error = c.refused(UPDATE, {"id": project["id"], "i": {"businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT",
                                                          "delivery": "SHIPMENT"}}, mia)
    assert problems(error) == [by_layout("input.source", "product_form"), rule_failed("input.discount", "product_discount_cap")]
    error = c.refused(UPDATE, {"id": project["id"], "i": {"businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT",
                                                          "delivery": "SHIPMENT", "source": "REFERRAL"}}, mia)
    assert problems(error) == [rule_failed("input.discount", "product_discount_cap")]
    assert c.data(GET, {"id": project["id"]})["opportunity"] == project
    moved = c.data(UPDATE, {"id": project["id"], "i": {"businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT",
                                                       "delivery": "SHIPMENT", "source": "REFERRAL", "discount": "20"}}, mia)
    assert {k: moved["updateOpportunity"][k] for k in ("businessType", "stage", "discount", "probability")} == {
        "businessType": "PRODUCT_SALE", "stage": "FIRST_CONTACT", "discount": "20.00", "probability": 10}


def test_reopening_needs_the_reopen_action_and_the_history_shows_every_move(scratch):
    c, ann, mia, rita = scratch.client, scratch.tokens["ann"], scratch.tokens["mia"], scratch.tokens["rita"]
    users = scratch.users
    record = c.data(CREATE, {"i": {"name": "t1 reopen", "source": "PARTNER"}}, ann)["createOpportunity"]
    assert (record["stage"], record["probability"], record["stageCategory"]) == ("FIRST_CONTACT", 10, "OPEN")
    c.data(UPDATE, {"id": record["id"], "i": {"stage": "NEEDS_CONFIRMED", "nextStep": "Demo"}}, ann)
    won = c.data(UPDATE, {"id": record["id"], "i": {"stage": "WON", "amount": "4200", "closeDate": "2026-02-27"}}, ann)
    assert {k: won["updateOpportunity"][k] for k in ("stage", "probability", "stageCategory", "version")} == {
        "stage": "WON", "probability": 100, "stageCategory": "WON", "version": 3}

    for change in ({"stage": "SOLUTION"}, {"stage": "LOST", "lossReason": "x"},
                   {"businessType": "PROJECT_SALE", "stage": "QUALIFICATION"}):  # into another type's stage as well
        error = c.refused(UPDATE, {"id": record["id"], "i": change}, ann, code="FORBIDDEN")
        assert error["message"] == "None of your roles allows you to reopen closed Opportunity records."
        assert error["extensions"] == {"code": "FORBIDDEN", "ctx": {"object": "opportunity", "action": "reopen"}}
    error = c.refused(UPDATE, {"id": record["id"], "i": {"stage": "SOLUTION"}}, rita, code="FORBIDDEN")  # no update at all
    assert c.data(GET, {"id": record["id"]})["opportunity"] == won["updateOpportunity"]
    # Editing a closed record without leaving its stage is no reopening.
    assert c.data(UPDATE, {"id": record["id"], "i": {"nextStep": "Invoice"}}, ann)["updateOpportunity"]["version"] == 4

    reopened = c.data(UPDATE, {"id": record["id"], "i": {"stage": "QUOTE_NEGOTIATION"}}, mia)["updateOpportunity"]
    assert (reopened["stage"], reopened["probability"], reopened["stageCategory"]) == ("QUOTE_NEGOTIATION", 70, "OPEN")
    c.data(UPDATE, {"id": record["id"], "i": {"stage": "LOST", "lossReason": "No budget"}}, mia)
    error = c.refused(UPDATE, {"id": record["id"], "i": {"stage": "WON"}}, ann, code="FORBIDDEN")  # leaving lost is reopening too
    assert error["message"] == "None of your roles allows you to reopen closed Opportunity records."

    found = c.data(HISTORY, {"id": record["id"]})["opportunity"]
    history = found["stageHistory"]
    assert [(h["stage"], h["businessType"], h["enteredById"], h["leftById"]) for h in history] == [
        ("FIRST_CONTACT", "PRODUCT_SALE", users["ann"], users["ann"]), ("NEEDS_CONFIRMED", "PRODUCT_SALE", users["ann"], users["ann"]),
        ("WON", "PRODUCT_SALE", users["ann"], users["mia"]), ("QUOTE_NEGOTIATION", "PRODUCT_SALE", users["mia"], users["mia"]),
        ("LOST", "PRODUCT_SALE", users["mia"], None)]
    for earlier, later in zip(history, history[1:]):
        assert earlier["leftAt"] == later["enteredAt"]
        seconds = datetime.fromisoformat(earlier["leftAt"]) - datetime.fromisoformat(earlier["enteredAt"])
        assert earlier["secondsInStage"] == int(seconds.total_seconds())
    assert (history[-1]["leftAt"], history[-1]["secondsInStage"], found["stageEnteredAt"]) == (None, None, history[-1]["enteredAt"])
    # The owner reads the history too; a rep who does not own the record does not find it.
    assert c.data(HISTORY, {"id": record["id"]}, ann)["opportunity"] == found
    error = c.refused(HISTORY, {"id": record["id"]}, scratch.tokens["ben"], code="NOT_FOUND")
    assert error["message"] == f"There is no Opportunity record with id '{record['id']}'."


def test_overdue_records_within_each_callers_scope(scratch):
    c = scratch.client
    now = datetime.now(timezone.utc).replace(microsecond=0)
    plan = [  # name, owner, type, stage, entered
        ("t1 due a", "ann", "product_sale", "first_contact", now - timedelta(days=6)),         # 5 days expected: overdue
        ("t1 due b", "ann", "product_sale", "solution", now - timedelta(days=13, hours=2)),    # 14 days: due within 1
        ("t1 due c", "ben", "project_sale", "qualification", now - timedelta(days=25)),        # 20 days: overdue
        ("t1 due d", "dev", "product_sale", "needs_confirmed", now - timedelta(days=10, hours=1)),  # 10 days: overdue
        ("t1 due e", "ann", "product_sale", "won", now - timedelta(days=300)),                 # closed: never
        ("t1 due f", "ann", "project_sale", "proposal", now - timedelta(days=300)),            # no expected days: never
        ("t1 due g", "ann", "project_sale", "scoping", now - timedelta(days=2)),               # 30 days: not yet
        ("t1 due h", "ann", "product_sale", "first_contact", now - timedelta(days=9)),         # overdue, but deleted
    ]
    made = c.data(CREATE_MANY, {"i": [{
        "name": name, "businessType": enum(kind), "stage": enum(stage), "source": "PARTNER", "nextStep": "x", "amount": "1",
        "closeDate": "2026-01-31", "ownerId": scratch.users[owner], "orgUnitId": scratch.units[REPS[owner]]}
        for name, owner, kind, stage, _ in plan]})["createOpportunities"]
    for record, (*_, entered) in zip(made, plan):
        set_stage_entered_at(scratch, record["id"], entered)
    c.data("mutation($id: ID!) { deleteOpportunity(id: $id) }", {"id": made[-1]["id"]})

    def due(token, within=0, **filters):
        found = c.data(DUE, {"d": within, "f": filters or None}, token)["opportunitiesDueInStage"]
        assert found["totalCount"] == len(found["nodes"])
        return [n["name"] for n in found["nodes"]]

    assert due(SERVICE) == ["t1 due a", "t1 due c", "t1 due d"]  # the data set is fresh: nothing of it is due
    assert due(scratch.tokens["ada"]) == ["t1 due a", "t1 due c", "t1 due d"]
    assert due(scratch.tokens["ann"]) == ["t1 due a"]
    assert due(scratch.tokens["ann"], 1) == ["t1 due a", "t1 due b"]
    assert due(scratch.tokens["rita"]) == ["t1 due a", "t1 due c"]  # Alpha North only
    assert due(scratch.tokens["mia"], 1, businessType={"eq": "PRODUCT_SALE"}) == ["t1 due a", "t1 due b", "t1 due d"]
    [first] = c.data(DUE, {"d": 0, "f": {"name": {"eq": "t1 due a"}}}, scratch.tokens["ann"])["opportunitiesDueInStage"]["nodes"]
    assert first == {"name": "t1 due a", "stage": "FIRST_CONTACT", "daysInStage": 6,
                     "stageDueAt": (plan[0][4] + timedelta(days=5)).isoformat()}


# == 2. the funnel and the forecast over the generated data =======================================
def quarter(day: date | None) -> str | None:
    return None if day is None else date(day.year, 3 * ((day.month - 1) // 3) + 1, 1).isoformat()


def expected_funnel(world: World, records: list[Opportunity], period: str | None = "QUARTER",
                    by_owner: bool = False) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Opportunity]] = defaultdict(list)
    for o in records:
        groups[(quarter(o.close_date) if period else None, o.stage, world.users[o.owner] if by_owner else None)].append(o)
    rows = []
    for (start, stage, owner), members in groups.items():
        amounts = [o.amount for o in members if o.amount is not None]
        amount = sum(amounts, Decimal(0)) if amounts else None
        probability = STAGE[stage]["probability"]
        rows.append({"period": start, "businessType": enum(STAGE[stage]["type"]), "stage": enum(stage), "probability": probability,
                     "category": STAGE[stage]["category"].upper(), "ownerId": owner, "count": len(members),
                     "amount": None if amount is None else str(amount),
                     "weightedAmount": None if amount is None else str(amount * probability / Decimal(100))})
    rows.sort(key=lambda r: (r["period"] is None, r["period"] or "", STAGE_ORDER[r["stage"].lower()], r["ownerId"] or ""))
    return rows


def expected_conversions(records: list[Opportunity]) -> list[dict[str, Any]]:
    steps = []
    for kind, path in PATH.items():
        furthest = [max(path.index(s) for s in o.journey if s in path) for o in records if o.kind == kind]
        reached = [sum(1 for f in furthest if f >= i) for i in range(len(path))]
        for i in range(len(path) - 1):
            rate = None if not reached[i] else str((Decimal(reached[i + 1]) / Decimal(reached[i])).quantize(Decimal("0.0001")))
            steps.append({"businessType": enum(kind), "fromStage": enum(path[i]), "toStage": enum(path[i + 1]),
                          "reached": reached[i], "converted": reached[i + 1], "rate": rate})
    return steps


def funnel(world: World, who: str | None = "ada", period: str | None = "QUARTER", **variables) -> list[dict[str, Any]]:
    token = world.tokens[who] if who else SERVICE
    arguments = {"date": "CLOSE_DATE", "period": period} if period else {}
    return world.client.data(FUNNEL, {**arguments, **variables}, token)["opportunityFunnel"]


def conversions(world: World, who: str | None = "ada", **variables) -> list[dict[str, Any]]:
    token = world.tokens[who] if who else SERVICE
    return world.client.data(CONVERSIONS, variables, token)["opportunityStageConversions"]


def test_the_data_set_is_stored_as_generated_and_covers_what_the_funnel_must_handle(world):
    live = world.live()
    assert len(live) == RECORDS - DELETED
    assert {o.stage for o in live} == set(STAGE)  # every stage of both types holds records
    assert {quarter(o.close_date) for o in live} == {date(y, m, 1).isoformat() for y in (2024, 2025) for m in (1, 4, 7, 10)} | {None}
    assert any(o.amount is None for o in live)
    assert any(o.journey[0] != OPEN[o.kind][0] for o in live)  # created past the first stage
    assert any(LOST[o.kind] in o.journey[:-1] for o in live)  # lost, then reopened
    assert any(o.unit != REPS[o.owner] for o in live)  # records outside their owner's unit
    found = world.client.data("""query($f: OpportunityFilter) { opportunities(filter: $f, first: 500, orderBy: [NAME_ASC]) {
        totalCount nodes { name businessType stage amount closeDate ownerId orgUnitId } } }""",
                              {"f": {"name": {"startsWith": "ds "}}})["opportunities"]
    assert found["totalCount"] == len(live)
    assert found["nodes"] == [{"name": o.name, "businessType": enum(o.kind), "stage": enum(o.stage),
                               "amount": None if o.amount is None else str(o.amount),
                               "closeDate": o.close_date.isoformat() if o.close_date else None, "ownerId": world.users[o.owner],
                               "orgUnitId": world.units[o.unit]} for o in sorted(live, key=lambda o: o.name)]


def test_the_administrators_funnel_per_stage_and_quarter(world):
    expected = expected_funnel(world, world.live())
    rows = funnel(world, "ada")
    assert rows == expected
    assert funnel(world, None) == expected  # the service token sees the same
    # The totals add up to the data set's, exactly.
    live = world.live()
    assert sum(r["count"] for r in rows) == len(live)
    assert sum(Decimal(r["amount"] or 0) for r in rows) == sum(o.amount for o in live if o.amount is not None)
    assert sum(Decimal(r["weightedAmount"] or 0) for r in rows) == sum(
        o.amount * STAGE[o.stage]["probability"] / Decimal(100) for o in live if o.amount is not None)
    # The probability of each stage as configured.
    assert {(r["stage"], r["probability"]) for r in rows} == {(enum(name), s["probability"]) for name, s in STAGE.items()}


def test_the_funnel_without_periods_and_per_owner(world):
    assert funnel(world, "ada", period=None) == expected_funnel(world, world.live(), period=None)
    assert funnel(world, "ada", byOwner=True) == expected_funnel(world, world.live(), by_owner=True)
    rows = world.client.data("{ opportunityFunnel(amountField: AMOUNT, byOwner: true) { stage ownerId count owner { username } } }",
                             token=world.tokens["ada"])["opportunityFunnel"]
    names = {v: k for k, v in world.users.items()}
    assert [(r["stage"], r["ownerId"], r["count"], r["owner"]) for r in rows] == [
        (r["stage"], r["ownerId"], r["count"], {"username": names[r["ownerId"]]})
        for r in expected_funnel(world, world.live(), period=None, by_owner=True)]


def test_a_regional_directors_funnel_counts_only_their_subtree(world):
    north = world.live(world.in_units("an"))
    assert 0 < len(north) < len(world.live())
    assert funnel(world, "rita") == expected_funnel(world, north)
    assert funnel(world, "rita", period=None, byOwner=True) == expected_funnel(world, north, period=None, by_owner=True)
    # The sales manager of the Alpha subsidiary: Alpha North and Alpha South.
    assert funnel(world, "mia") == expected_funnel(world, world.live(world.in_units("alpha")))


def test_a_reps_funnel_counts_only_their_own_records(world):
    for rep in ("ann", "gus"):
        own = world.live(lambda o: o.owner == rep)
        assert own
        assert funnel(world, rep) == expected_funnel(world, own), rep
    assert any(o.unit != REPS["ann"] for o in world.live(lambda o: o.owner == "ann"))  # her records in other units count too


def test_the_unit_argument_limits_the_funnel_to_a_subtree(world):
    units = world.units
    for key in ("beta", "an", "an1", "as1", "group"):
        assert funnel(world, "ada", unit=units[key]) == expected_funnel(world, world.live(world.in_units(key))), key
    # Within the caller's own rows only.
    assert funnel(world, "rita", unit=units["an2"]) == expected_funnel(world, world.live(world.in_units("an2")))
    assert funnel(world, "rita", unit=units["group"]) == expected_funnel(world, world.live(world.in_units("an")))
    assert funnel(world, "rita", unit=units["beta"]) == []
    assert funnel(world, "ann", unit=units["an1"]) == expected_funnel(
        world, world.live(lambda o: o.owner == "ann" and o.unit == "an1"))
    # With a filter as well.
    projects = {"businessType": {"eq": "PROJECT_SALE"}}
    assert funnel(world, "ada", unit=units["alpha"], filter=projects) == expected_funnel(
        world, world.live(lambda o: o.kind == "project_sale" and o.unit in subtree("alpha")))


def test_stage_conversions_follow_the_moves_made(world):
    expected = expected_conversions(world.live())
    assert conversions(world, "ada") == expected
    assert [(r["businessType"], r["fromStage"], r["toStage"]) for r in expected] == [
        (enum(kind), enum(a), enum(b)) for kind, path in PATH.items() for a, b in zip(path, path[1:])]
    assert expected[0]["reached"] == len(world.live(lambda o: o.kind == "product_sale"))
    assert conversions(world, "rita") == expected_conversions(world.live(world.in_units("an")))
    assert conversions(world, "ann") == expected_conversions(world.live(lambda o: o.owner == "ann"))
    assert conversions(world, "ada", unit=world.units["beta"]) == expected_conversions(world.live(world.in_units("beta")))
    assert conversions(world, "rita", unit=world.units["an1"]) == expected_conversions(world.live(world.in_units("an1")))
    empty = conversions(world, "rita", unit=world.units["be"])
    assert [(r["reached"], r["converted"], r["rate"]) for r in empty] == [(0, 0, None)] * 8


# == 3. invalid configuration ========================================================================
def product_stages(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**stage_input(*s), **changes.get(s[0], {})} for s in PRODUCT_STAGES]


TYPE_PROBLEMS = "The business type has problems; fix the listed fields."
RULE_PROBLEMS = "The validation rule has problems; fix the listed fields."
LAYOUT_PROBLEMS = "The layout has problems; fix the listed fields."
CREATE_TYPE = "mutation($i: BusinessTypeInput!) { createBusinessType(object: \"opportunity\", input: $i) { apiName } }"
UPDATE_TYPE = ("mutation($a: String!, $i: BusinessTypeUpdateInput!) { updateBusinessType(object: \"opportunity\", apiName: $a, "
               "input: $i) { apiName } }")
CREATE_RULE = "mutation($i: ValidationRuleInput!) { createValidationRule(object: \"opportunity\", input: $i) { apiName } }"
UPDATE_RULE = ("mutation($a: String!, $i: ValidationRuleUpdateInput!) { updateValidationRule(object: \"opportunity\", apiName: $a, "
               "input: $i) { apiName } }")
CREATE_LAYOUT = "mutation($i: LayoutInput!) { createLayout(object: \"opportunity\", input: $i) { apiName } }"
UPDATE_LAYOUT = ("mutation($a: String!, $i: LayoutUpdateInput!) { updateLayout(object: \"opportunity\", apiName: $a, input: $i) "
                 "{ apiName } }")
DUPLICATE = "'{}' already belongs to business type '{}'; a stage belongs to one type"
OTHER_OBJECT = "'opportunity' has no field named 'industry' (it is a field of 'account')"

INVALID = {
    "stage_of_another_type_in_a_new_type": (CREATE_TYPE, {"i": {"apiName": "renewal", "label": "Renewal", "stages": [
        stage_input("renewal_due", "Renewal due", 60, "open", None, ()), stage_input("won", "Won", 100, "won", None, ())]}},
        TYPE_PROBLEMS, [("DUPLICATE_STAGE", "input.stages.1.apiName", DUPLICATE.format("won", "product_sale"))]),
    "stage_of_another_type_added_to_a_type": (UPDATE_TYPE, {"a": "project_sale", "i": {"stages": [
        *(stage_input(*s) for s in PROJECT_STAGES[:2]), stage_input("solution", "Solution", 50, "open", None, ()),
        *(stage_input(*s) for s in PROJECT_STAGES[2:])]}},
        TYPE_PROBLEMS, [("DUPLICATE_STAGE", "input.stages.2.apiName", DUPLICATE.format("solution", "product_sale"))]),
    "probability_140_in_a_new_type": (CREATE_TYPE, {"i": {"apiName": "renewal", "label": "Renewal", "stages": [
        stage_input("renewal_due", "Renewal due", 140, "open", None, ())]}},
        TYPE_PROBLEMS, [("INVALID", "input.stages.0.probability", "must be from 0 to 100")]),
    "probability_140_in_a_type_with_records": (UPDATE_TYPE, {"a": "product_sale", "i": {
        "stages": product_stages(quote_negotiation={"probability": 140})}},
        TYPE_PROBLEMS, [("INVALID", "input.stages.3.probability", "must be from 0 to 100")]),
    "cel_syntax_error_in_a_new_rule": (CREATE_RULE, {"i": {"apiName": "positive_amount", "field": "amount",
                                                           "expression": "record.amount > ", "message": "Must be positive"}},
                                       RULE_PROBLEMS, [("SYNTAX_ERROR", "input.expression", (
                                           "is not valid CEL at line 1, column 17: mismatched input '<EOF>' expecting {'[', '{', '(', "
                                           "'.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, "
                                           "IDENTIFIER}"), {"line": 1, "column": 17, "offset": 16})]),
    "cel_syntax_error_in_a_rule_in_use": (UPDATE_RULE, {"a": "amount_not_lowered", "i": {
        "expression": "old == null ||\n  (record.amount >= old.amount"}}, RULE_PROBLEMS, [
        ("SYNTAX_ERROR", "input.expression", "is not valid CEL at line 2, column 31: missing ')' at '<EOF>'",
         {"line": 2, "column": 31, "offset": 45})]),
    "layout_with_a_field_of_another_object": (CREATE_LAYOUT, {"i": {"apiName": "partner_form", "label": "Partner form",
                                                                     "role": "director", "sections": [
        {"label": "Main", "fields": [{"field": "name"}, {"field": "industry"}]}]}},
        LAYOUT_PROBLEMS, [("UNKNOWN_FIELD", "input.sections.0.fields.1.field", OTHER_OBJECT)]),
    "layout_in_use_changed_to_a_field_of_another_object": (UPDATE_LAYOUT, {"a": "product_form", "i": {"sections": [
        {"label": "Deal", "fields": [{"field": "name", "required": True}, {"field": "source", "required": True}]},
        {"label": "Account", "fields": [{"field": "amount"}, {"field": "industry"}]}]}},
        LAYOUT_PROBLEMS, [("UNKNOWN_FIELD", "input.sections.1.fields.1.field", OTHER_OBJECT)]),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_configuration_is_refused_with_exact_errors_and_changes_nothing(world, case):
    query, variables, message, expected = INVALID[case]
    c, ada = world.client, world.tokens["ada"]
    before = c.data(SNAPSHOT, token=ada)
    assert before["metadataVersion"] == world.versions[1]  # nothing before changed the configuration either

    error = c.refused(query, variables, ada, code="INVALID_DEFINITION")

    assert error["message"] == message
    assert error["extensions"] == {"code": "INVALID_DEFINITION", "errors": [
        {"code": code, "field": path, "message": text, **({"ctx": ctx[0]} if ctx else {})} for code, path, text, *ctx in expected]}
    for code, _, _, *ctx in expected:
        if code == "SYNTAX_ERROR":  # line and column point where the offset does
            source, where = variables["i"]["expression"], ctx[0]
            assert source.split("\n")[where["line"] - 1][where["column"] - 1:] == source[where["offset"]:].split("\n")[0]
    assert c.data(SNAPSHOT, token=ada) == before


def test_refused_configuration_leaves_the_old_rules_and_stages_working(world):
    """After every refusal above, records are still checked by the configuration as it was."""
    c, mia = world.client, world.tokens["mia"]
    for query, variables, *_ in INVALID.values():
        c.refused(query, variables, world.tokens["ada"], code="INVALID_DEFINITION")
    deal = c.data(CREATE, {"i": {"name": "t1 still", "source": "WEB", "stage": "QUOTE_NEGOTIATION", "amount": "100",
                                 "closeDate": "2026-01-01"}}, mia)["createOpportunity"]
    try:
        assert deal["probability"] == 70
        error = c.refused(UPDATE, {"id": deal["id"], "i": {"amount": "99"}}, mia)
        assert problems(error) == [rule_failed("input.amount", "amount_not_lowered")]
        error = c.refused(UPDATE, {"id": deal["id"], "i": {"stage": "PROPOSAL"}}, mia)
        assert problems(error) == [not_a_stage("input.stage", "proposal", "product_sale")]
    finally:
        c.data("mutation($id: ID!) { deleteOpportunity(id: $id) }", {"id": deal["id"]})
