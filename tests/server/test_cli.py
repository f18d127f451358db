"""The ``lowcode`` command, driven as a user would, on SQLite and PostgreSQL."""
import json

import pytest
from click.testing import CliRunner
from lowcode.server.cli import main


@pytest.fixture
def lowcode(database_url):
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, ["--database-url", database_url, *args], catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output + result.stderr
        return result

    return run


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


def test_demo_walks_through_and_can_run_twice(lowcode):
    for _ in range(2):
        output = lowcode("demo").output
        assert "OPP-" in output and "2 match." in output
        assert '"code": "VALIDATION_FAILED"' in output
