"""Two real ``lowcode serve`` processes on one PostgreSQL database, talked to over real HTTP.

A metadata change made through one server is served by the other from its very next request:
each request compares the metadata version (the Redis key ``lowcode:meta:version`` when Redis is
configured, else the database row) with the version of the schema it holds. Nothing here waits
for the pub/sub announcement: every request to the other server is sent right after the change
returned, so the result must come from the per-request version check.

Security likewise: a change of the org tree (roles, grants, memberships) raises the policy version,
which every request with a user's token reads; with Redis, the Casbin watcher also makes the other
process reload before any request reaches it (seen on ``/healthz`` as ``policyVersionLoaded``).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.runtime import Runtime

STARTUP_SECONDS = 30
VERSION_KEY = "lowcode:meta:version"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``lowcode serve`` process and an HTTP client for it."""

    def __init__(self, name: str, database_url: str, redis_url: str | None, log_dir: Path):
        self.name = name
        self.port = _free_port()
        self.token = f"token-{name}-{os.getpid()}"
        self.log_path = log_dir / f"server-{name}.log"
        command = [sys.executable, "-c", "from lowcode.server.cli import main; main()", "--database-url", database_url]
        if redis_url:
            command += ["--redis-url", redis_url]
        command += ["serve", "--port", str(self.port), "--token", self.token]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOWCODE_") or k.startswith("LOWCODE_TEST_")}
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    # -- life cycle -------------------------------------------------------------------------
    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + STARTUP_SECONDS
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server {self.name} exited with status {self.process.returncode} before it was ready:\n{self.output()}",
                            pytrace=False)
            try:
                status, body = self.request("GET", "/healthz")
            except OSError as exc:
                last_problem = repr(exc)
            else:
                if status == 200:
                    return body
                last_problem = f"/healthz answered {status}: {body}"
            time.sleep(0.1)
        pytest.fail(f"server {self.name} did not become ready within {STARTUP_SECONDS} s ({last_problem}):\n{self.output()}",
                    pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            if token:
                headers["Authorization"] = f"Bearer {token}"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            raise AssertionError(f"server {self.name} answered {response.status} with non-JSON: {raw[:500]!r}") from None

    def post(self, query: str, variables: dict | None = None) -> tuple[int, dict]:
        body = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.request("POST", "/graphql", body, token=self.token)

    def data(self, query: str, variables: dict | None = None) -> dict:
        status, body = self.post(query, variables)
        assert status == 200 and "errors" not in body, f"server {self.name}: {status} {body}"
        return body["data"]

    def version(self) -> int:
        return self.data("{ metadataVersion }")["metadataVersion"]

    def as_user(self, token: str, query: str, variables: dict | None = None) -> tuple[int, dict]:
        body = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.request("POST", "/graphql", body, token=token)

    def user_data(self, token: str, query: str, variables: dict | None = None) -> dict:
        status, body = self.as_user(token, query, variables)
        assert status == 200 and "errors" not in body, f"server {self.name}: {status} {body}"
        return body["data"]

    def policy_version_loaded(self) -> int:
        """The policy version this process has loaded, from ``/healthz`` (which never reloads it)."""
        status, body = self.request("GET", "/healthz")
        assert status == 200, body
        return body["policyVersionLoaded"]


@pytest.fixture
def start_servers(tmp_path):
    started: list[Server] = []

    def start(database_url: str, redis_url: str | None) -> tuple[Server, Server]:
        a = Server("a", database_url, redis_url, tmp_path)
        started.append(a)
        a.wait_ready()  # A installs the platform tables first; B then finds them
        b = Server("b", database_url, redis_url, tmp_path)
        started.append(b)
        b.wait_ready()
        return a, b

    yield start
    for server in started:
        server.stop()


CREATE_DEAL_OBJECT = """mutation {
  createObject(input: {apiName: "deal", label: "Deal", fields: [{apiName: "title", label: "Title", type: TEXT}]}) { apiName }
}"""
CREATE_POINTS_FIELD = """mutation {
  createField(object: "deal", input: {apiName: "points", label: "Points", type: INTEGER, options: {min: "0", max: "100"}}) {
    apiName graphqlName
  }
}"""
CREATE_DEAL_WITH_POINTS = "mutation($t: String, $p: Int) { createDeal(input: {title: $t, points: $p}) { id title points } }"
LIST_WITH_POINTS = "{ deals(orderBy: [POINTS_ASC]) { totalCount nodes { title points } } }"


def assert_unknown_field_rejected(server: Server, query: str, field: str, variables: dict | None = None) -> None:
    status, body = server.post(query, variables)
    assert status == 400, f"server {server.name}: {status} {body}"
    assert "data" not in body, body
    assert body["errors"], body
    for error in body["errors"]:
        assert error["extensions"]["code"] == "BAD_QUERY", body
    assert any(f"'{field}'" in error["message"] for error in body["errors"]), body


def _field_round_trip(a: Server, b: Server) -> None:
    """Create an object and field through A, use them through B at once, then delete the field through A."""
    a.data(CREATE_DEAL_OBJECT)
    # B serves the object (its schema is now built at this version, with the title-only query cached).
    assert b.data("{ deals { totalCount nodes { title } } }")["deals"] == {"totalCount": 0, "nodes": []}
    assert_unknown_field_rejected(b, LIST_WITH_POINTS, "points")

    assert a.data(CREATE_POINTS_FIELD)["createField"] == {"apiName": "points", "graphqlName": "points"}
    created = b.data(CREATE_DEAL_WITH_POINTS, {"t": "first", "p": 7})["createDeal"]
    assert created["title"] == "first" and created["points"] == 7
    b.data(CREATE_DEAL_WITH_POINTS, {"t": "second", "p": 3})
    assert b.data(LIST_WITH_POINTS)["deals"] == {
        "totalCount": 2, "nodes": [{"title": "second", "points": 3}, {"title": "first", "points": 7}],
    }
    filtered = b.data("{ deals(filter: {points: {gte: 5}}) { nodes { title } } }")["deals"]["nodes"]
    assert filtered == [{"title": "first"}]
    # The field's options travel too: B enforces max 100.
    status, body = b.post(CREATE_DEAL_WITH_POINTS, {"t": "too many", "p": 101})
    assert status == 200 and body["data"] is None, body
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED", body
    assert [e["field"] for e in body["errors"][0]["extensions"]["errors"]] == ["input.points"], body

    assert a.data('mutation { deleteField(object: "deal", apiName: "points") }') == {"deleteField": "points"}
    # The exact query text B validated (and cached) before is now a validation error, not a 500.
    assert_unknown_field_rejected(b, LIST_WITH_POINTS, "points")
    assert_unknown_field_rejected(b, "{ deals(filter: {points: {gte: 5}}) { nodes { title } } }", "points")
    assert_unknown_field_rejected(b, CREATE_DEAL_WITH_POINTS, "points", {"t": "third", "p": 1})
    # What does not name the field still works, and the records kept their other values.
    assert b.data("{ deals(orderBy: [TITLE_ASC]) { nodes { title } } }")["deals"]["nodes"] == [{"title": "first"}, {"title": "second"}]
    assert a.version() == b.version()


def test_field_created_on_one_server_is_served_by_the_other_on_the_next_request(postgres_url, redis_url, start_servers):
    a, b = start_servers(postgres_url, redis_url)
    _field_round_trip(a, b)

    client = redis.Redis.from_url(redis_url)
    try:
        mirrored = client.get(VERSION_KEY)
    finally:
        client.close()
    assert mirrored is not None and int(mirrored) == a.version() == b.version()


def test_records_and_metadata_version_agree_across_servers(postgres_url, redis_url, start_servers):
    a, b = start_servers(postgres_url, redis_url)
    health_a, health_b = a.wait_ready(), b.wait_ready()
    assert health_a["redis"] == "ok" and health_b["redis"] == "ok"
    start = a.version()
    assert b.version() == start == health_a["metadataVersion"] == health_b["metadataVersion"]

    a.data(CREATE_DEAL_OBJECT)
    assert a.version() == b.version() == start + 1
    created = b.data('mutation { createDeal(input: {title: "made on B"}) { id version title } }')["createDeal"]
    assert created["version"] == 1
    assert a.data("query($id: ID!) { deal(id: $id) { id title version } }", {"id": created["id"]})["deal"] == created
    assert a.data("{ deals { totalCount nodes { id } } }")["deals"] == {"totalCount": 1, "nodes": [{"id": created["id"]}]}

    # A change through B is seen by A, and both report the same version (also on /healthz).
    b.data('mutation { updateObject(apiName: "deal", input: {label: "Opportunity"}) { label } }')
    assert a.version() == b.version() == start + 2
    assert a.data('{ object(apiName: "deal") { label } }')["object"]["label"] == "Opportunity"
    _, health_a = a.request("GET", "/healthz")
    _, health_b = b.request("GET", "/healthz")
    assert health_a["metadataVersion"] == health_b["metadataVersion"] == start + 2

    # An update through A is read back through B with the new version.
    updated = a.data('mutation($id: ID!) { updateDeal(id: $id, input: {title: "changed on A"}, expectedVersion: 1) { version } }',
                     {"id": created["id"]})["updateDeal"]
    assert updated["version"] == 2
    assert b.data("query($id: ID!) { deal(id: $id) { title version } }", {"id": created["id"]})["deal"] == {
        "title": "changed on A", "version": 2,
    }
    # A stale expectedVersion sent to B is a conflict, whichever server wrote last.
    status, body = b.post('mutation($id: ID!) { updateDeal(id: $id, input: {title: "x"}, expectedVersion: 1) { version } }',
                          {"id": created["id"]})
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "CONFLICT", body


def test_deleted_object_disappears_from_the_other_server(postgres_url, redis_url, start_servers):
    a, b = start_servers(postgres_url, redis_url)
    a.data(CREATE_DEAL_OBJECT)
    b.data('mutation { createDeal(input: {title: "doomed"}) { id } }')
    assert b.data("{ deals { totalCount } }")["deals"]["totalCount"] == 1

    assert a.data('mutation { deleteObject(apiName: "deal") }') == {"deleteObject": "deal"}
    assert_unknown_field_rejected(b, "{ deals { totalCount } }", "deals")
    assert_unknown_field_rejected(b, 'mutation { createDeal(input: {title: "x"}) { id } }', "createDeal")
    assert "deal" not in [o["apiName"] for o in b.data("{ objects { apiName } }")["objects"]]

    # Recreated with other fields through B: A serves the new shape at once, with no old records.
    b.data('mutation { createObject(input: {apiName: "deal", label: "Deal", fields: [{apiName: "code", label: "Code", type: TEXT}]}) { apiName } }')
    assert a.data('mutation { createDeal(input: {code: "D1"}) { code } }') == {"createDeal": {"code": "D1"}}
    assert a.data("{ deals { totalCount } }")["deals"]["totalCount"] == 1
    assert_unknown_field_rejected(a, "{ deals { nodes { title } } }", "title")
    assert a.version() == b.version()


def test_without_redis_the_database_version_gives_next_request_visibility(postgres_url, start_servers):
    a, b = start_servers(postgres_url, None)
    _, health = b.request("GET", "/healthz")
    assert health["status"] == "ok" and "redis" not in health
    _field_round_trip(a, b)

    # A record created via B is readable via A, and a change through B is served by A.
    created = b.data('mutation { createDeal(input: {title: "via B"}) { id } }')["createDeal"]
    assert a.data("query($id: ID!) { deal(id: $id) { title } }", {"id": created["id"]})["deal"] == {"title": "via B"}
    b.data('mutation { createField(object: "deal", input: {apiName: "note", label: "Note", type: TEXTAREA}) { apiName } }')
    a.data('mutation($id: ID!) { updateDeal(id: $id, input: {note: "hello"}) { id } }', {"id": created["id"]})
    assert b.data("query($id: ID!) { deal(id: $id) { note } }", {"id": created["id"]})["deal"] == {"note": "hello"}
    assert a.version() == b.version()



# -- security across processes ------------------------------------------------------------------
DEAL_TITLES = "{ deals(orderBy: [TITLE_ASC]) { nodes { title } } }"


def _titles(server: Server, token: str) -> list[str]:
    return [n["title"] for n in server.user_data(token, DEAL_TITLES)["deals"]["nodes"]]


@pytest.fixture
def service_runtime(postgres_url):
    """The platform in this test process, on the servers' database (no Redis: nothing it changes
    is announced; the servers learn of it from the policy version their requests read)."""
    runtimes: list[Runtime] = []

    def connect(redis_url: str | None = None) -> Runtime:
        runtime = Runtime.connect(postgres_url, redis_url).install()
        runtimes.append(runtime)
        return runtime

    yield connect
    for runtime in runtimes:
        runtime.close()


def test_reparenting_a_region_changes_who_sees_its_records_on_the_next_request_of_either_server(
        postgres_url, start_servers, service_runtime):
    a, b = start_servers(postgres_url, None)
    a.data(CREATE_DEAL_OBJECT)
    rt = service_runtime()
    sec = rt.security
    group = sec.create_unit(SYSTEM_ACTOR, "Group")
    sub_a = sec.create_unit(SYSTEM_ACTOR, "Subsidiary A", group["id"])
    sub_b = sec.create_unit(SYSTEM_ACTOR, "Subsidiary B", group["id"])
    region = sec.create_unit(SYSTEM_ACTOR, "Region R", sub_a["id"])
    department = sec.create_unit(SYSTEM_ACTOR, "Department D", region["id"])
    sec.create_role(SYSTEM_ACTOR, "head", "Head")
    sec.set_object_grant(SYSTEM_ACTOR, "head", "deal", ["read", "update"], "unit_and_below", "unit_and_below")
    admin = sec.create_user(SYSTEM_ACTOR, {"username": "admin"}, "an administrator's password")
    sec.add_membership(SYSTEM_ACTOR, admin["id"], group["id"], "administrator")
    tokens = {}
    for name, unit in (("head_a", sub_a), ("head_b", sub_b), ("head_r", region)):
        user = sec.create_user(SYSTEM_ACTOR, {"username": name})
        sec.add_membership(SYSTEM_ACTOR, user["id"], unit["id"], "head")
        tokens[name] = sec.issue_token(SYSTEM_ACTOR, "test", user_id=user["id"])["token"]
    for title, unit in (("a1", sub_a), ("b1", sub_b), ("d1", department), ("d2", department)):
        created = rt.records.create(SYSTEM_ACTOR, "deal", {"title": title, "org_unit_id": unit["id"]})
        if title == "d1":
            d1 = created["id"]

    # Both servers answer (and cache each head's access at this policy version).
    for server in (a, b):
        assert _titles(server, tokens["head_a"]) == ["a1", "d1", "d2"]
        assert _titles(server, tokens["head_b"]) == ["b1"]
        assert _titles(server, tokens["head_r"]) == ["d1", "d2"]
    before = b.policy_version_loaded()

    # The administrator signs in on server A and moves the region under subsidiary B there.
    status, session = a.request("POST", "/auth/sign-in", {"username": "admin", "password": "an administrator's password"})
    assert status == 200, session
    moved = a.user_data(session["token"], "mutation($id: ID!, $parent: ID) { moveOrgUnit(id: $id, parentId: $parent) { id parent { name } path } }",
                        {"id": region["id"], "parent": sub_b["id"]})["moveOrgUnit"]
    assert moved == {"id": region["id"], "parent": {"name": "Subsidiary B"}, "path": f"{sub_b['path']}{region['id']}/"}

    # Server B is asked at once: nothing told it of the move but the version its request reads.
    assert _titles(b, tokens["head_a"]) == ["a1"]
    assert _titles(b, tokens["head_b"]) == ["b1", "d1", "d2"]
    assert _titles(b, tokens["head_r"]) == ["d1", "d2"]  # the region head's own subtree moved with the region
    assert b.policy_version_loaded() == before + 1
    status, body = b.as_user(tokens["head_a"], 'mutation($id: ID!) { updateDeal(id: $id, input: {title: "x"}) { id } }', {"id": d1})
    assert status == 200 and [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body
    updated = b.user_data(tokens["head_b"], 'mutation($id: ID!) { updateDeal(id: $id, input: {title: "d1b"}) { title } }', {"id": d1})
    assert updated == {"updateDeal": {"title": "d1b"}}
    assert _titles(a, tokens["head_a"]) == ["a1"]
    assert _titles(a, tokens["head_b"]) == ["b1", "d1b", "d2"]
    paths = b.user_data(tokens["head_a"], "{ orgUnits(orderBy: [NAME_ASC]) { nodes { name path } } }")["orgUnits"]["nodes"]
    assert {n["name"]: n["path"] for n in paths}["Department D"] == f"{sub_b['path']}{region['id']}/{department['id']}/"


def test_with_redis_the_other_server_reloads_its_policy_when_a_change_is_announced(
        postgres_url, redis_url, start_servers, service_runtime):
    a, b = start_servers(postgres_url, redis_url)
    loaded = b.policy_version_loaded()
    assert a.policy_version_loaded() == loaded

    # A change from a process that does not announce it: no server reloads until a request asks.
    quiet = service_runtime()
    quiet.security.create_role(SYSTEM_ACTOR, "quiet", "Quiet")
    time.sleep(1.5)
    assert b.policy_version_loaded() == loaded and a.policy_version_loaded() == loaded

    # A change made through server A is announced through the Redis watcher: server B reloads from
    # the announcement alone (only /healthz is asked of it, which reads the loaded version and
    # loads nothing).
    assert a.data('mutation { createOrgUnit(input: {name: "Announced"}) { name } }') == {"createOrgUnit": {"name": "Announced"}}
    deadline = time.monotonic() + 10
    while b.policy_version_loaded() != loaded + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.policy_version_loaded() == loaded + 2
    assert a.policy_version_loaded() == loaded + 2

    # Any process with the watcher announces too (here this test's own runtime).
    loud = service_runtime(redis_url)
    loud.warm_on_announcements()
    loud.security.create_role(SYSTEM_ACTOR, "loud", "Loud")
    deadline = time.monotonic() + 10
    while b.policy_version_loaded() != loaded + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.policy_version_loaded() == loaded + 3
