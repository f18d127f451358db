"""The ``lowcode`` command, driven as a user would, on SQLite and PostgreSQL."""
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from lowcode.server.cli import main

PASSWORD = "correct horse battery"


@pytest.fixture
def lowcode(database_url):
    runner = CliRunner()

    def run(*args: str, ok: bool = True, input: str | None = None):
        result = runner.invoke(main, ["--database-url", database_url, *args], input=input, catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output + result.stderr
        return result

    return run


class Http:
    """The HTTP app over the same database (users only: no service token)."""

    def __init__(self, database_url: str):
        self.runtime = Runtime.connect(database_url).install()
        self.client = create_app(Settings(database_url=database_url, api_token=""), runtime=self.runtime).test_client()

    def sign_in(self, username: str, password: str = PASSWORD):
        return self.client.post("/auth/sign-in", json={"username": username, "password": password})

    def token(self, username: str, password: str = PASSWORD) -> str:
        response = self.sign_in(username, password)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def post(self, query: str, token: str) -> tuple[int, dict]:
        response = self.client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()


@pytest.fixture
def http(database_url):
    app = Http(database_url)
    yield app
    app.runtime.close()


def test_define_an_object_add_fields_and_list_records(lowcode):
    lowcode("init")
    lowcode("object", "create", "ticket", "--label", "Ticket")
    lowcode("field", "add", "ticket", "title", "--type", "text", "--label", "Title", "--required", "--option", "max_length=40")
    lowcode("field", "add", "ticket", "points", "--type", "integer", "--label", "Points", "--default", "3")
    created = json.loads(lowcode("record", "create", "ticket", "title=Printer on fire", "points=8").output)
    lowcode("record", "create", "ticket", "title=Paper jam")

    listing = lowcode("record", "list", "ticket", "--order-by", "-points", "--fields", "title,points").output
    lines = listing.splitlines()
    assert lines[0].split() == ["id", "title", "points"]
    assert "Printer on fire" in lines[1] and lines[1].rstrip().endswith("8")
    assert "Paper jam" in lines[2] and lines[2].rstrip().endswith("3")
    assert lines[-1] == "2 of 2 record(s)"

    shown = json.loads(lowcode("record", "get", "ticket", created["id"]).output)
    assert shown["title"] == "Printer on fire" and shown["version"] == 1


def test_errors_are_structured_json_and_exit_non_zero(lowcode):
    lowcode("object", "create", "ticket", "--label", "Ticket")
    lowcode("field", "add", "ticket", "title", "--type", "text", "--label", "Title", "--option", "max_length=5")
    result = lowcode("record", "create", "ticket", "title=far too long", "colour=red", ok=False)
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert {(e["code"], e["field"]) for e in error["errors"]} == {("TOO_LONG", "title"), ("UNKNOWN_FIELD", "colour")}
    assert "Traceback" not in result.output + result.stderr
    assert "0 of 0 record(s)" in lowcode("record", "list", "ticket").output

    bad_name = json.loads(lowcode("object", "create", "Drop Table", "--label", "x", ok=False).stderr)["error"]
    assert bad_name["code"] == "INVALID_DEFINITION" and bad_name["errors"][0]["field"] == "api_name"


def test_paging_through_the_printed_cursor(lowcode):
    lowcode("object", "create", "ticket", "--label", "Ticket")
    lowcode("field", "add", "ticket", "n", "--type", "integer", "--label", "N")
    for n in range(5):
        lowcode("record", "create", "ticket", f"n={n}")
    seen = []
    args = ["record", "list", "ticket", "--order-by", "n", "--first", "2"]
    for _ in range(5):
        output = lowcode(*args).output.splitlines()
        seen += [int(line.split()[1]) for line in output[1:-1]]
        if "--after" not in output[-1]:
            break
        args = [*args[:7], "--after", output[-1].split("--after ")[1]]
    assert seen == [0, 1, 2, 3, 4]


def test_demo_rebuilds_its_database_from_scratch_on_every_run(tmp_path):
    database = tmp_path / "demo.db"
    runs = []
    for _ in range(2):
        result = CliRunner().invoke(main, ["demo", "--no-serve", "--scale", "0.01", "--seed", "3", "--database", str(database)],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output + result.stderr
        runs.append(result.output)
    first, second = runs
    assert "Deleted the previous demo database" not in first and "Deleted the previous demo database" in second
    records = [next(line for line in run.splitlines() if line.startswith("Records: ")) for run in runs]
    assert records[0] == records[1] and "30 account" in records[0]
    tokens = [re.findall(r"Bearer (lct_[\w-]+)", run) for run in runs]
    assert len(tokens[0]) == len(tokens[1]) == 4 and not set(tokens[0]) & set(tokens[1])


# -- users ---------------------------------------------------------------------------------------
CREATE_TICKET = 'mutation { createObject(input: {apiName: "ticket", label: "Ticket"}) { apiName } }'


def _error(result) -> dict:
    assert result.exit_code == 1 and "Traceback" not in result.output
    return json.loads(result.stderr)["error"]


def _users(lowcode) -> list[list[str]]:
    """``user list`` as rows of (username, roles), with its closing count checked."""
    lines = lowcode("user", "list").output.splitlines()
    header = lines[0]
    starts = [header.index(c) for c in ("username", "full_name", "email", "active", "roles", "id")]
    rows = [[line[starts[0]:starts[1]].strip(), line[starts[4]:starts[5]].strip()] for line in lines[1:-1]]
    assert lines[-1] == f"{len(rows)} user(s)"
    return rows


def test_first_administrator_from_the_cli_signs_in_and_changes_metadata(lowcode, http):
    lowcode("init")
    created = json.loads(lowcode("user", "create", "admin", "--admin", "--email", "admin@example.com", "--full-name", "Ada Admin",
                                 "--password-stdin", input=PASSWORD + "\n").output)
    assert {k: created[k] for k in ("username", "email", "full_name", "active")} == {
        "username": "admin", "email": "admin@example.com", "full_name": "Ada Admin", "active": True}
    [membership] = created["memberships"]
    assert (membership["unit"], membership["role"]) == ("Organization", "administrator")
    roots = http.runtime.records.query(SYSTEM_ACTOR, "org_unit", filter={"parent": {"is_null": True}}).records
    assert [(u["id"], u["name"]) for u in roots] == [(membership["unit_id"], "Organization")]

    token = http.token("admin")
    assert http.post(CREATE_TICKET, token) == (200, {"data": {"createObject": {"apiName": "ticket"}}})

    # A user created without --admin holds no role: metadata changes are refused.
    clerk = json.loads(lowcode("user", "create", "clerk", "--password-stdin", input=PASSWORD + "\n").output)
    assert clerk["memberships"] == []
    status, body = http.post('mutation { createObject(input: {apiName: "memo", label: "Memo"}) { apiName } }', http.token("clerk"))
    assert status == 200 and body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert "memo" not in http.runtime.catalog().objects

    # A second administrator joins the one root unit rather than making another.
    second = json.loads(lowcode("user", "create", "root2", "--admin", "--password-stdin", input=PASSWORD + "\n").output)
    assert [m["unit_id"] for m in second["memberships"]] == [membership["unit_id"]]
    assert http.post('mutation { deleteObject(apiName: "ticket") }', http.token("root2")) == (200, {"data": {"deleteObject": "ticket"}})
    assert _users(lowcode) == [["admin", "administrator@Organization"], ["clerk", ""], ["root2", "administrator@Organization"]]


def test_user_create_refusals_are_structured_and_change_nothing(lowcode, http):
    lowcode("user", "create", "ann", "--password-stdin", input=PASSWORD + "\n")
    duplicate = _error(lowcode("user", "create", "ann", "--password-stdin", input="another long one\n", ok=False))
    assert duplicate["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in duplicate["errors"]] == [("DUPLICATE_VALUE", "username")]
    assert http.sign_in("ann", "another long one").status_code == 401
    assert http.sign_in("ann").status_code == 200

    short = _error(lowcode("user", "create", "bob", "--admin", "--password-stdin", input="short\n", ok=False))
    assert short["code"] == "VALIDATION_FAILED"
    assert [(e["code"], e["field"]) for e in short["errors"]] == [("INVALID_VALUE", "password")]
    assert _users(lowcode) == [["ann", ""]]

    bad_email = _error(lowcode("user", "create", "cy", "--email", "not an address", "--password-stdin", input=PASSWORD + "\n", ok=False))
    assert [(e["code"], e["field"]) for e in bad_email["errors"]] == [("INVALID_FORMAT", "email")]
    assert _users(lowcode) == [["ann", ""]]
    assert http.runtime.records.query(SYSTEM_ACTOR, "org_unit", total=True).total_count == 0

    unknown = _error(lowcode("user", "token", "nobody", "--name", "ci", ok=False))
    assert (unknown["code"], unknown["field"]) == ("NOT_FOUND", "username")
    unknown = _error(lowcode("user", "password", "nobody", "--password-stdin", input=PASSWORD + "\n", ok=False))
    assert (unknown["code"], unknown["field"]) == ("NOT_FOUND", "username")

    usage = lowcode("user", "create", "dee", "--unit", "Organization", ok=False)
    assert usage.exit_code == 2 and "add --admin" in usage.stderr


def test_several_root_units_make_the_administrator_unit_a_choice(lowcode, http):
    security = http.runtime.security
    north = security.create_unit(SYSTEM_ACTOR, "North")
    south = security.create_unit(SYSTEM_ACTOR, "South")
    security.create_unit(SYSTEM_ACTOR, "Sales", north["id"])
    security.create_unit(SYSTEM_ACTOR, "Sales", south["id"])

    ambiguous = _error(lowcode("user", "create", "ann", "--admin", "--password-stdin", input=PASSWORD + "\n", ok=False))
    assert ambiguous["code"] == "VALIDATION_FAILED"
    [problem] = ambiguous["errors"]
    assert (problem["code"], problem["field"]) == ("AMBIGUOUS", "unit")
    assert north["id"] in problem["message"] and south["id"] in problem["message"] and "--unit" in problem["message"]
    assert _users(lowcode) == []  # refused before anything was written (or a password asked for)

    by_name = json.loads(lowcode("user", "create", "ann", "--admin", "--unit", "South", "--password-stdin",
                                 input=PASSWORD + "\n").output)
    assert [(m["unit_id"], m["role"]) for m in by_name["memberships"]] == [(south["id"], "administrator")]
    by_id = json.loads(lowcode("user", "create", "bob", "--admin", "--unit", north["id"], "--password-stdin",
                               input=PASSWORD + "\n").output)
    assert [(m["unit_id"], m["role"]) for m in by_id["memberships"]] == [(north["id"], "administrator")]

    twice = _error(lowcode("user", "create", "cy", "--admin", "--unit", "Sales", "--password-stdin", input=PASSWORD + "\n", ok=False))
    assert [(e["code"], e["field"]) for e in twice["errors"]] == [("AMBIGUOUS", "unit")]
    missing = _error(lowcode("user", "create", "cy", "--admin", "--unit", "West", "--password-stdin", input=PASSWORD + "\n", ok=False))
    assert (missing["code"], missing["field"]) == ("NOT_FOUND", "unit")
    assert _users(lowcode) == [["ann", "administrator@South"], ["bob", "administrator@North"]]
    assert len(http.runtime.records.query(SYSTEM_ACTOR, "org_unit", filter={"parent": {"is_null": True}}).records) == 2
    assert http.post(CREATE_TICKET, http.token("ann"))[1] == {"data": {"createObject": {"apiName": "ticket"}}}


def test_the_password_is_prompted_twice_without_echo(lowcode, http):
    typed = "\n".join(["too short", PASSWORD, "a different one", PASSWORD, PASSWORD]) + "\n"
    result = lowcode("user", "create", "ann", input=typed)
    transcript, _, printed = result.output.partition("{")
    assert transcript.splitlines() == [
        "Password: ", "Error: The password must be at least 10 characters long.",
        "Password: ", "Repeat for confirmation: ", "Error: The two entered values do not match.",
        "Password: ", "Repeat for confirmation: ",
    ]
    assert json.loads("{" + printed)["username"] == "ann"
    assert PASSWORD not in result.output and "too short" not in result.output
    assert http.sign_in("ann").status_code == 200


def test_password_reset_ends_the_users_sessions(lowcode, http):
    lowcode("user", "create", "ann", "--password-stdin", input=PASSWORD + "\n")
    session = http.token("ann")
    api = json.loads(lowcode("user", "create", "bot", "--password-stdin", input=PASSWORD + "\n").output)
    assert api["username"] == "bot"

    result = lowcode("user", "password", "ann", input="a new long secret\na new long secret\n")
    assert "Changed the password of ann" in result.output and "a new long secret" not in result.output
    status, body = http.post("{ users { nodes { username } } }", session)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert http.sign_in("ann").status_code == 401
    assert http.sign_in("ann", "a new long secret").status_code == 200

    short = _error(lowcode("user", "password", "ann", "--password-stdin", input="short\n", ok=False))
    assert [(e["code"], e["field"]) for e in short["errors"]] == [("INVALID_VALUE", "password")]
    assert http.sign_in("ann", "a new long secret").status_code == 200


def test_api_token_is_printed_once_on_stdout_for_scripts(lowcode, http):
    lowcode("user", "create", "bot", "--full-name", "CI robot", "--password-stdin", input=PASSWORD + "\n")
    before = datetime.now(timezone.utc)
    result = lowcode("user", "token", "bot", "--name", "deploy", "--expires-in-days", "30")
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("lct_")
    assert "deploy" in result.stderr and "not shown again" in result.stderr and token not in result.stderr
    status, body = http.post("{ users { nodes { username fullName } } }", token)
    assert (status, body) == (200, {"data": {"users": {"nodes": [{"username": "bot", "fullName": "CI robot"}]}}})

    bot = http.runtime.records.query(SYSTEM_ACTOR, "user", filter={"username": {"eq": "bot"}}).records[0]
    [issued] = http.runtime.security.tokens(SYSTEM_ACTOR, bot["id"])
    assert (issued["name"], issued["kind"], issued["hint"]) == ("deploy", "api", f"lct_…{token[-4:]}")
    assert before + timedelta(days=30) <= issued["expires_at"] <= datetime.now(timezone.utc) + timedelta(days=30)

    forever = lowcode("user", "token", "bot", "--name", "nightly").stdout.strip()
    assert forever != token and http.post("{ users { nodes { username } } }", forever)[0] == 200
    assert [t["expires_at"] for t in http.runtime.security.tokens(SYSTEM_ACTOR, bot["id"])][1] is None
    assert lowcode("user", "token", "bot", "--name", "x", "--expires-in-days", "0", ok=False).exit_code == 2
