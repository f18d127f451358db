"""``lowcode demo`` end to end: the small demo is built once through the command line, on its own
SQLite file (LOWCODE_DATABASE_URL points elsewhere and is ignored), then checked against its
promises: the org tree and its matrix memberships, the record counts the generator promises for
the scale, every stage of every opportunity process populated with a stage history, active media
bookings never overlapping, the printed tokens seeing different shares of the data over HTTP, and
the README's demo queries answering in the shapes they ask for.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from graphql import FieldNode, OperationDefinitionNode, SelectionSetNode, parse
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from lowcode.server.cli import main
from lowcode.server.demo_volumes import PRESETS, Volumes

SCALE = "small"
TOKEN_LINE = re.compile(r'^(\w+)\s+(\S+) \(.*\n\s+\{"Authorization": "Bearer (lct_\S+)"\}$', re.M)

def readme_demo_queries(markdown: str) -> list[tuple[str, str]]:
    """(username, GraphQL document) of each ```graphql block of the markdown's "## The demo"
    section; a block names its user on its first line, ``# as <username>``."""
    section = re.split(r"^## The demo\n", markdown, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
    queries = []
    for block in re.findall(r"```graphql\n(.*?)```", section, re.S):
        user = re.match(r"# as (\S+)\n", block)
        assert user, f"a demo query names its user on its first line (# as <username>):\n{block}"
        queries.append((user.group(1), block))
    return queries


DEMO_QUERIES = readme_demo_queries((Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8"))


class Demo:
    def __init__(self, output: str, database_url: str):
        self.output = output
        self.tokens = {username: token for _, username, token in TOKEN_LINE.findall(output)}
        self.reach = {reach: username for reach, username, _ in TOKEN_LINE.findall(output)}
        self.runtime = Runtime.connect(database_url).install()
        self.client = create_app(Settings(database_url=database_url, api_token=""), runtime=self.runtime).test_client()
        self.installed = {app["name"] for app in self.runtime.apps.list() if app["installed_version"]}

    def all(self, object_name: str, **query) -> list[dict]:
        found, after = [], None
        while True:
            page = self.runtime.records.query(SYSTEM_ACTOR, object_name, first=1000, after=after, **query)
            found += page.records
            if not page.has_next_page:
                return found
            after = page.end_cursor

    def count(self, object_name: str, filter: dict | None = None) -> int:
        return self.runtime.records.query(SYSTEM_ACTOR, object_name, filter=filter, first=0, total=True).total_count

    def post(self, query: str, username: str) -> dict:
        response = self.client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {self.tokens[username]}"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def data(self, query: str, username: str) -> dict:
        body = self.post(query, username)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def user_id(self, username: str) -> str:
        return self.all("user", filter={"username": {"eq": username}})[0]["id"]



@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = CliRunner().invoke(main, ["demo", "--no-serve", "--scale", SCALE, "--database", str(path)],
                                env={"LOWCODE_DATABASE_URL": "postgresql://nobody@192.0.2.1/elsewhere"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    built = Demo(result.output, f"sqlite:///{path}")
    yield built
    built.runtime.close()


def test_the_group_company_has_subsidiaries_regions_departments_and_a_matrix_of_roles(demo):
    units = demo.all("org_unit", fields=["id", "name", "parent"])
    children = defaultdict(list)
    for unit in units:
        children[unit["parent"]].append(unit["id"])
    [group] = children[None]
    subsidiaries = children[group]
    regions = [r for s in subsidiaries for r in children[s]]
    departments = [d for r in regions for d in children[r]]
    assert (len(subsidiaries), len(regions), len(departments), len(units)) == (3, 7, 14, 25)
    assert all(children[s] for s in subsidiaries) and all(children[r] for r in regions)
    assert not any(children[d] for d in departments)

    users = demo.all("user", fields=["id", "username"])
    assert 35 <= len(users) <= 50
    memberships = demo.runtime.security.memberships(SYSTEM_ACTOR)
    per_user = Counter(m["user_id"] for m in memberships)
    assert set(per_user) == {u["id"] for u in users}
    several = [user for user, held in per_user.items() if held > 1]
    assert len(several) >= 5
    units_of = defaultdict(set)
    for m in memberships:
        units_of[m["user_id"]].add(m["unit_id"])
    assert sum(len(units_of[user]) > 1 for user in several) >= 5
    assert f"{len(units)} org units, {len(users)} users, {len(memberships)} memberships" in demo.output


def test_record_counts_are_what_the_scale_promises(demo):
    volumes = Volumes.at(PRESETS[SCALE])
    promised = volumes.as_dict()
    exact = ["account", "contact", "lead", "partner", "activity", "task"]
    if "manufacturing" in demo.installed:
        exact += ["equipment", "service_record"]
    if "media" in demo.installed:
        exact.append("media_resource")
    assert {name: demo.count(name) for name in exact} == {name: promised[name] for name in exact}

    service_sales = demo.count("opportunity", {"business_type": {"eq": "service_sale"}}) if "manufacturing" in demo.installed else 0
    if "manufacturing" in demo.installed:
        assert service_sales == demo.count("service_record", {"recommendation": {"ne": "none"}}) > 0
    assert demo.count("opportunity") == volumes.opportunity + service_sales

    won_stages = [stage.api_name for kind in demo.runtime.catalog().object("opportunity").business_types
                  for stage in kind.stages if stage.category == "won"]
    assert demo.count("contract") == demo.count("opportunity", {"stage": {"in": won_stages}}) > 0
    signed = demo.count("contract", {"status": {"in": ["signed", "completed"]}})
    assert 2 * signed <= demo.count("payment_plan") <= 4 * signed
    assert demo.count("payment") > 0
    assert demo.count("account", {"parent": {"is_null": False}}) > 0
    if "media" in demo.installed:
        assert demo.count("media_booking") > demo.count("media_resource")
    printed = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", demo.output.split("Records: ", 1)[1].split("\n", 1)[0])}
    assert printed == {name: demo.count(name) for name in printed} and printed["account"] == volumes.account


def test_every_stage_of_every_business_type_is_populated_and_has_a_history(demo):
    opportunity = demo.runtime.catalog().object("opportunity")
    kinds = {kind.api_name: [stage.api_name for stage in kind.stages] for kind in opportunity.business_types if kind.stages}
    expected = {"product_sale", "project_sale"} | ({"service_sale"} if "manufacturing" in demo.installed else set())
    assert set(kinds) == expected
    for kind, stages in kinds.items():
        groups = demo.runtime.records.aggregate(SYSTEM_ACTOR, "opportunity", filter={"business_type": {"eq": kind}},
                                                group_by=[{"field": "stage"}])
        counts = {group["key"]["stage"]: group["count"] for group in groups}
        assert set(counts) == set(stages) and min(counts.values()) > 0, (kind, counts)

    conversions = demo.data("{ opportunityStageConversions { businessType fromStage reached converted } }", demo.reach["executive"])
    steps = conversions["opportunityStageConversions"]
    assert {step["businessType"].lower() for step in steps} == expected
    assert all(step["reached"] > 0 for step in steps)
    assert all(0 < step["converted"] < step["reached"] for step in steps)


def test_active_bookings_of_a_resource_never_overlap(demo):
    bookings = demo.all("media_booking", fields=["resource", "start_date", "end_date", "status", "hold_until"])
    assert {b["status"] for b in bookings} == {"hold", "confirmed", "cancelled"}
    calendars = defaultdict(list)
    for booking in bookings:
        assert booking["start_date"] <= booking["end_date"]
        if booking["status"] in ("hold", "confirmed"):
            calendars[booking["resource"]].append((booking["start_date"], booking["end_date"]))
        if booking["status"] == "hold":
            assert date.today() - timedelta(days=1) <= booking["hold_until"] < booking["start_date"]
    for resource, taken in calendars.items():
        taken.sort()
        for (_, end), (start, _) in zip(taken, taken[1:]):
            assert start > end, (resource, taken)
    overlapped_by_cancelled = 0
    for booking in bookings:
        if booking["status"] == "cancelled":
            overlapped_by_cancelled += any(s <= booking["end_date"] and booking["start_date"] <= e for s, e in calendars[booking["resource"]])
    assert overlapped_by_cancelled > 0


def test_the_printed_tokens_see_the_group_their_region_or_their_own_records(demo):
    assert set(demo.reach) == {"executive", "director", "rep", "administrator"}
    assert "http://127.0.0.1:8000/graphql" in demo.output
    listings = {"opportunities": "opportunity", "accounts": "account", "activities": "activity"}
    query = "{ " + " ".join(f"{listing} {{ totalCount }}" for listing in listings) + " }"
    seen = {reach: demo.data(query, username) for reach, username in demo.reach.items()}
    for listing, object_name in listings.items():
        executive, director, rep = (seen[reach][listing]["totalCount"] for reach in ("executive", "director", "rep"))
        assert executive == seen["administrator"][listing]["totalCount"] == demo.count(object_name)
        assert executive > director > rep > 0, listing

    rep_id = demo.user_id(demo.reach["rep"])
    for listing in ("opportunities", "accounts", "contacts", "activities", "tasks", "contracts", "leads"):
        owners = demo.data(f"{{ {listing}(first: 500) {{ nodes {{ ownerId }} }} }}", demo.reach["rep"])[listing]["nodes"]
        assert {node["ownerId"] for node in owners} <= {rep_id}, listing

    units = {u["id"]: u for u in demo.all("org_unit", fields=["id", "name", "path"])}
    region = next(u for u in units.values() if u["name"] == "Machinery East China")
    nodes = demo.data("{ opportunities(first: 500) { nodes { orgUnitId } } }", demo.reach["director"])["opportunities"]["nodes"]
    assert all(units[node["orgUnitId"]]["path"].startswith(region["path"]) for node in nodes)


def _shape(selection: SelectionSetNode | None, value):
    """Whether ``value`` has exactly the fields the selection asks for, at every level."""
    if selection is None or value is None:
        return True
    if isinstance(value, list):
        return all(_shape(selection, item) for item in value)
    fields = [node for node in selection.selections if isinstance(node, FieldNode)]
    if set(value) != {(node.alias or node.name).value for node in fields}:
        return False
    return all(_shape(node.selection_set, value[(node.alias or node.name).value]) for node in fields)


def _non_empty(value) -> bool:
    if isinstance(value, dict) and "totalCount" in value:
        return value["totalCount"] > 0
    return value not in (None, [], {})


def test_the_readme_queries_answer_in_the_shapes_they_ask_for(demo):
    for username, query in DEMO_QUERIES:
        data = demo.data(query, username)
        [operation] = [d for d in parse(query).definitions if isinstance(d, OperationDefinitionNode)]
        assert _shape(operation.selection_set, data), (query, data)
        assert all(_non_empty(value) for value in data.values()), (query, data)
