"""A four-level organisation with roles, users, records, shares and a team, built once per module
and database, plus an independent model of the permission rules that the tests check against.

The org: ``G`` (group) -> ``S1``, ``S2`` (subsidiaries) -> ``S1R1`` .. ``S2R2`` (regions) ->
``S1R1D1`` .. ``S2R2D2`` (departments). Objects: ``account``; ``deal`` (lookup ``account``, whose
relationship name gives accounts a ``deals`` connection); ``deal_line`` (master-detail of deal).

:class:`Model` computes, from the rules of the security cheat sheet alone (never by asking the
platform), which records each user may read, update, delete, restore or create and which fields
are hidden or read-only. Requests go through the HTTP app with each user's bearer token.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lowcode.metadata import SYSTEM_ACTOR
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app

SERVICE_TOKEN = "svc"
S = SYSTEM_ACTOR

# -- the organisation -------------------------------------------------------------------------

TREE: dict[str, str | None] = {"G": None}
for _s in ("S1", "S2"):
    TREE[_s] = "G"
    for _r in ("R1", "R2"):
        TREE[_s + _r] = _s
        for _d in ("D1", "D2"):
            TREE[_s + _r + _d] = _s + _r
SUBSIDIARIES = ["S1", "S2"]
REGIONS = [u for u in TREE if len(u) == 4]
DEPARTMENTS = [u for u in TREE if len(u) == 6]
UNITS = list(TREE)


def ancestors(unit: str) -> list[str]:
    """The unit and every unit above it."""
    chain = []
    while unit is not None:
        chain.append(unit)
        unit = TREE[unit]
    return chain


ALL_ACTIONS = ["read", "create", "update", "delete", "export", "transfer", "restore"]
SALES_OBJECTS = ("account", "deal", "deal_line")


def _same(actions, read, write):
    return {o: (list(actions), read, write) for o in SALES_OBJECTS}


ROLES: dict[str, dict[str, Any]] = {
    "rep": {
        "label": "Sales rep",
        "grants": {"account": (["read", "create", "update"], "own", "own"),
                   "deal": (["read", "create", "update"], "own", "own"),
                   "deal_line": (["read", "create", "update", "delete"], "own", "own")},
        "fields": {("deal", "margin"): "hidden", ("deal", "amount"): "read", ("account", "revenue"): "hidden"},
    },
    "manager": {
        "label": "Sales manager",
        "grants": _same(["read", "create", "update", "delete", "restore", "transfer", "export"], "unit", "unit"),
        "fields": {},
    },
    "director": {
        "label": "Regional director",
        "grants": _same(["read", "create", "update", "delete", "transfer", "export"], "unit_and_below", "unit"),
        "fields": {},
    },
    "head": {
        "label": "Subsidiary head",
        "grants": _same(ALL_ACTIONS, "unit_and_below", "unit_and_below"),
        "fields": {},
    },
    "executive": {
        "label": "Group executive",
        "grants": {"account": (["read"], "all", "own"), "deal": (["read", "update", "export"], "all", "own"),
                   "deal_line": (["read"], "all", "own")},
        "fields": {},
    },
    "auditor": {
        "label": "Read-only auditor",
        "grants": {"*": (["read", "export"], "all", "all")},
        "fields": {("deal", "margin"): "hidden", ("deal", "cost_center"): "hidden"},
    },
}

USERS: dict[str, list[tuple[str, str]]] = {
    "rep_a": [("S1R1D1", "rep")],
    "rep_b": [("S1R1D2", "rep"), ("S2R1D1", "rep")],
    "mgr": [("S1R1D1", "manager")],
    "mgr_dir": [("S1R2D1", "manager"), ("S2R1", "director")],
    "dir": [("S1R1", "director")],
    "head": [("S2", "head")],
    "exec": [("G", "executive")],
    "auditor": [("G", "auditor")],
    "rep_aud": [("S2R2D2", "rep"), ("S2R2D2", "auditor")],
    "staff": [],
}
"""Memberships in the order they are added (``staff`` only owns records)."""
MATRIX_USERS = [u for u in USERS if USERS[u]]
OWNERS = ["rep_a", "rep_b", "mgr", "mgr_dir", "dir", "head", "exec", "auditor", "rep_aud", "staff"]

OBJECTS = [
    {"api_name": "account", "label": "Account", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True, "unique": True},
        {"api_name": "revenue", "label": "Revenue", "type": "currency"},
        {"api_name": "note", "label": "Note", "type": "text"},
    ]},
    {"api_name": "deal", "label": "Deal", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True},
        {"api_name": "amount", "label": "Amount", "type": "currency"},
        {"api_name": "margin", "label": "Margin", "type": "decimal", "options": {"precision": 12, "scale": 2}},
        {"api_name": "cost_center", "label": "Cost center", "type": "text"},
        {"api_name": "note", "label": "Note", "type": "text"},
        {"api_name": "account", "label": "Account", "type": "lookup",
         "options": {"target": "account", "relationship_name": "deals"}},
    ]},
    {"api_name": "deal_line", "label": "Deal line", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True},
        {"api_name": "quantity", "label": "Quantity", "type": "integer"},
        {"api_name": "note", "label": "Note", "type": "text"},
        {"api_name": "deal", "label": "Deal", "type": "master_detail", "required": True, "options": {"target": "deal"}},
    ]},
]


@dataclass
class Rec:
    obj: str
    name: str
    owner: str
    unit: str
    id: str = ""
    account: str | None = None
    deal: str | None = None
    amount: Decimal | None = None
    margin: Decimal | None = None
    cost_center: str | None = None
    revenue: Decimal | None = None


def plan_records() -> dict[str, list[Rec]]:
    """Every record of the org, deterministic: accounts, deals (with specials owned far from their
    unit) and two lines per deal (one like its deal, one in another unit)."""
    accounts = []
    for k, unit in enumerate([*DEPARTMENTS, *REGIONS, "G"]):
        owner = {"S1R1D1": "rep_a", "S2R1D1": "rep_b", "S2R2D2": "rep_aud"}.get(unit, "staff")
        accounts.append(Rec("account", f"A-{unit}", owner, unit, revenue=Decimal(1000 + k)))
    deals = []
    for i, unit in enumerate(DEPARTMENTS):
        deals.append(Rec("deal", f"D-{unit}-1", "staff", unit, account=f"A-{unit}"))
        deals.append(Rec("deal", f"D-{unit}-2", OWNERS[i % len(OWNERS)], unit, account=f"A-{DEPARTMENTS[(i + 3) % 8]}"))
        deals.append(Rec("deal", f"D-{unit}-3", "staff", unit, account=f"A-{TREE[unit]}" if i % 2 == 0 else None))
    for unit in REGIONS:
        deals.append(Rec("deal", f"D-{unit}-1", "staff", unit, account=f"A-{unit}"))
        deals.append(Rec("deal", f"D-{unit}-2", "mgr", unit, account="A-G"))
    for unit in SUBSIDIARIES:
        deals.append(Rec("deal", f"D-{unit}-1", "staff", unit, account=f"A-{unit}R1D1"))
    deals.append(Rec("deal", "D-G-1", "staff", "G", account="A-G"))
    for owner, unit in (("rep_a", "S2R2D1"), ("mgr", "S2R1D2"), ("exec", "S1R2D2"), ("head", "S1R1D1"),
                        ("dir", "S2R2D2"), ("rep_aud", "S1R1D1"), ("auditor", "S1R2D2"), ("rep_b", "G")):
        deals.append(Rec("deal", f"D-X-{owner}", owner, unit, account=f"A-{unit}" if unit != "G" else None))
    for k, deal in enumerate(deals):
        deal.amount = Decimal(100 * (k + 1)) + Decimal("0.25")
        deal.margin = Decimal(k * 3) / 2
        deal.cost_center = f"CC{k % 3}"
    lines = []
    for k, deal in enumerate(deals):
        lines.append(Rec("deal_line", f"L-{deal.name}-a", deal.owner, deal.unit, deal=deal.name))
        lines.append(Rec("deal_line", f"L-{deal.name}-b", OWNERS[(k + 4) % len(OWNERS)], UNITS[k % len(UNITS)], deal=deal.name))
    return {"account": accounts, "deal": deals, "deal_line": lines}


SHARES = [
    ("deal", "D-S2R2D1-1", "rep_a", "read"),
    ("deal", "D-S1R2D2-1", "S1R1", "read"),
    ("deal", "D-S2R1D2-1", "mgr", "edit"),
    ("deal", "D-S1R2D1-3", "S2", "edit"),
    ("deal", "D-S2R2D2-3", "auditor", "edit"),
    ("account", "A-S2R2D1", "rep_a", "read"),
    ("account", "A-S1R2D1", "S1R1D1", "edit"),
    ("deal_line", "L-D-S1R2D2-2-a", "S1R1D1", "read"),
]
"""(object, record, grantee user or unit, read|edit)."""
TEAM = [
    ("deal", "D-S2R2D1-2", "rep_a", "edit"),
    ("deal", "D-S1R2D2-2", "rep_aud", "read"),
    ("deal", "D-S2R1D1-1", "exec", "edit"),
]
"""(object, record, user, read|edit)."""


# -- the model of the rules ---------------------------------------------------------------------

class Model:
    """The cheat sheet's rules, in plain Python over the planned org."""

    def __init__(self, records: dict[str, list[Rec]], users: dict[str, list[tuple[str, str]]] | None = None):
        self.records = records
        self.users = USERS if users is None else users
        self.by_name = {r.name: r for recs in records.values() for r in recs}

    @staticmethod
    def grant(role: str, obj: str):
        grants = ROLES[role]["grants"]
        return grants.get(obj) or grants.get("*")

    def granted(self, user: str, obj: str, action: str) -> bool:
        return any((g := self.grant(role, obj)) and action in g[0] for _, role in self.users[user])

    def in_scope(self, user: str, obj: str, action: str, owner: str, unit: str, name: str | None = None) -> bool:
        """Whether a record of ``obj`` (its owner, unit and, for shares, its name) lies within the
        rows ``action`` reaches for ``user``."""
        granted = False
        for member_unit, role in self.users[user]:
            g = self.grant(role, obj)
            if not g or action not in g[0]:
                continue
            granted = True
            scope = g[1] if action in ("read", "export") else g[2]
            if scope == "all" or owner == user:
                return True
            if scope == "unit" and unit == member_unit:
                return True
            if scope == "unit_and_below" and member_unit in ancestors(unit):
                return True
        if not granted or name is None or action not in ("read", "export", "update"):
            return False
        levels = {"edit"} if action == "update" else {"read", "edit"}
        reach = {a for member_unit, _ in self.users[user] for a in ancestors(member_unit)}
        for o, record, grantee, access in SHARES:
            if o == obj and record == name and access in levels and (grantee == user or grantee in reach):
                return True
        return any(o == obj and record == name and member == user and access in levels for o, record, member, access in TEAM)

    def can(self, user: str, action: str, rec: Rec) -> bool:
        return self.in_scope(user, rec.obj, action, rec.owner, rec.unit, rec.name)

    def visible(self, user: str, obj: str) -> list[Rec]:
        return [r for r in self.records[obj] if self.can(user, "read", r)]

    def outcome(self, user: str, action: str, rec: Rec) -> str:
        """``ok``, ``FORBIDDEN`` (no role grants the action) or ``NOT_FOUND`` (out of scope)."""
        if not self.granted(user, rec.obj, action):
            return "FORBIDDEN"
        return "ok" if self.can(user, action, rec) else "NOT_FOUND"

    def kind(self, user: str, rec: Rec) -> tuple:
        """How a record relates to a user: owned or not, where its unit lies from each membership
        (same unit, below, above, or apart and how far up they meet), the shares and team entries
        reaching the user, and the expected outcome of every action."""
        def where(unit: str) -> tuple:
            if unit == rec.unit:
                return ("same",)
            if unit in ancestors(rec.unit):
                return ("below", len(ancestors(rec.unit)) - len(ancestors(unit)))
            if rec.unit in ancestors(unit):
                return ("above",)
            meet = next(a for a in ancestors(unit) if a in ancestors(rec.unit))
            return ("apart", len(ancestors(meet)))

        reach = {a for unit, _ in self.users[user] for a in ancestors(unit)}
        shares = sorted(("user" if g == user else "unit", access) for o, name, g, access in SHARES
                        if o == rec.obj and name == rec.name and (g == user or g in reach))
        team = sorted(access for o, name, member, access in TEAM if o == rec.obj and name == rec.name and member == user)
        outcomes = tuple(self.outcome(user, a, rec) for a in ("read", "update", "delete", "restore", "transfer"))
        return rec.owner == user, tuple(where(unit) for unit, _ in self.users[user]), tuple(shares), tuple(team), outcomes

    def sample(self, user: str, obj: str, per_kind: int = 1) -> list[Rec]:
        """Up to ``per_kind`` records of every kind (see :meth:`kind`): what the write checks use,
        so that each case the rules distinguish is tried without writing every record."""
        kinds: dict[tuple, list[Rec]] = {}
        for rec in self.records[obj]:
            kinds.setdefault(self.kind(user, rec), []).append(rec)
        return [rec for group in kinds.values() for rec in group[:per_kind]]

    def hidden(self, user: str, obj: str) -> set[str]:
        sets = [self._restricted(role, obj, {"hidden"}) for _, role in self.users[user]
                if (g := self.grant(role, obj)) and "read" in g[0]]
        return set.intersection(*sets) if sets else set()

    def read_only(self, user: str, obj: str) -> set[str]:
        sets = [self._restricted(role, obj, {"hidden", "read"}) for _, role in self.users[user]
                if (g := self.grant(role, obj)) and {"create", "update"} & set(g[0])]
        return (set.intersection(*sets) if sets else set()) | self.hidden(user, obj)

    @staticmethod
    def _restricted(role: str, obj: str, levels: set[str]) -> set[str]:
        return {f for (o, f), access in ROLES[role]["fields"].items() if o == obj and access in levels}

    def create_unit(self, user: str, obj: str) -> str | None:
        """The unit of the first membership whose role may create ``obj`` records."""
        return next((unit for unit, role in self.users[user] if (g := self.grant(role, obj)) and "create" in g[0]), None)


# -- the HTTP client ----------------------------------------------------------------------------

class Client:
    def __init__(self, url: str):
        self.url = url
        self.runtime = Runtime.connect(url).install()
        self.app = create_app(Settings(database_url=url, api_token=SERVICE_TOKEN), runtime=self.runtime)
        self.http = self.app.test_client()

    def post(self, query: str, variables: dict | None = None, token: str | None = SERVICE_TOKEN) -> tuple[int, dict]:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.http.post("/graphql", json=body, headers=headers)
        return response.status_code, response.get_json()

    def data(self, query: str, variables: dict | None = None, token: str | None = SERVICE_TOKEN) -> dict:
        status, body = self.post(query, variables, token)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def close(self) -> None:
        self.runtime.close()


class Org:
    """The built org: ids of units, users and records, a token per user, and the model."""

    def __init__(self, client: Client):
        self.client = client
        self.runtime = client.runtime
        self.sec = client.runtime.security
        self.records = plan_records()
        self.model = Model(self.records)
        self.by_name = self.model.by_name
        self.unit_ids: dict[str, str] = {}
        self.user_ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}

    def build(self) -> "Org":
        md, sec = self.runtime.metadata, self.sec
        for definition in OBJECTS:
            md.create_object(S, definition)
        for unit, parent in TREE.items():
            self.unit_ids[unit] = sec.create_unit(S, unit, self.unit_ids[parent] if parent else None)["id"]
        for role, spec in ROLES.items():
            sec.create_role(S, role, spec["label"])
            for obj, (actions, read, write) in spec["grants"].items():
                sec.set_object_grant(S, role, obj, actions, read, write)
            for (obj, field), access in spec["fields"].items():
                sec.set_field_grant(S, role, obj, field, access)
        for user, memberships in USERS.items():
            self.user_ids[user] = sec.create_user(S, {"username": user, "full_name": user.title()})["id"]
            for unit, role in memberships:
                sec.add_membership(S, self.user_ids[user], self.unit_ids[unit], role)
            self.tokens[user] = sec.issue_token(S, "matrix", user_id=self.user_ids[user])["token"]
        records = self.runtime.records
        for obj in SALES_OBJECTS:
            planned = self.records[obj]
            created = records.bulk_create(S, obj, [self.values(r) for r in planned])
            for rec, row in zip(planned, created):
                rec.id = row["id"]
        self.ids = {r.name: r.id for r in self.by_name.values()}
        self.by_id = {r.id: r for r in self.by_name.values()}
        for obj, name, grantee, access in SHARES:
            grantee_id = self.user_ids.get(grantee) or self.unit_ids[grantee]
            sec.share_record(S, obj, self.ids[name], grantee_id, access)
        for obj, name, user, access in TEAM:
            sec.add_team_member(S, obj, self.ids[name], self.user_ids[user], access)
        return self

    def values(self, rec: Rec) -> dict[str, Any]:
        values: dict[str, Any] = {"name": rec.name, "owner_id": self.user_ids[rec.owner], "org_unit_id": self.unit_ids[rec.unit]}
        if rec.obj == "account":
            values["revenue"] = rec.revenue
        elif rec.obj == "deal":
            values.update(amount=rec.amount, margin=rec.margin, cost_center=rec.cost_center,
                          account=self.ids_of(rec.account))
        else:
            values.update(deal=self.by_name[rec.deal].id, quantity=len(rec.name))
        return values

    def record(self, record_id: str) -> Rec:
        return self.by_id[record_id]

    def ids_of(self, name: str | None) -> str | None:
        return self.by_name[name].id if name else None

    def post(self, user: str, query: str, variables: dict | None = None) -> tuple[int, dict]:
        token = SERVICE_TOKEN if user == "system" else self.tokens[user]
        return self.client.post(query, variables, token)

    def data(self, user: str, query: str, variables: dict | None = None) -> dict:
        status, body = self.post(user, query, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]


def without_id(error: dict, *ids: str) -> dict:
    """An error body with the given ids (and its location and path) blanked, to compare shapes."""
    text = json.dumps({k: v for k, v in error.items() if k not in ("locations", "path")}, sort_keys=True)
    for i in ids:
        text = text.replace(i, "<id>")
    return json.loads(text)
