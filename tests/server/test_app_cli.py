"""``lowcode app list|install|upgrade|uninstall``, driven as a user would, on SQLite and PostgreSQL."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lowcode.server.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "app_fixtures"


@pytest.fixture
def lowcode(database_url, monkeypatch):
    monkeypatch.setenv("LOWCODE_APPS_DIR", str(FIXTURES / "v1"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, ["--database-url", database_url, *args], catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output + result.stderr
        return result

    return run


def test_install_upgrade_and_uninstall_with_an_export(lowcode, tmp_path):
    shop = str(FIXTURES / "v1" / "shop")
    installed = json.loads(lowcode("app", "install", shop).output)
    assert (installed["name"], installed["installed_version"]) == ("shop", "1.0.0")
    listed = lowcode("app", "list").output.splitlines()
    assert listed[0].split() == ["name", "title", "installed_version", "available_version"]
    assert listed[1].split()[:3] == ["shop", "Shop", "1.0.0"]
    upgraded = json.loads(lowcode("app", "upgrade", str(FIXTURES / "v2" / "shop")).output)
    assert upgraded["installed_version"] == "1.1.0"
    assert "weight" in lowcode("object", "show", "product").output
    export = tmp_path / "shop.json"
    done = json.loads(lowcode("app", "uninstall", "shop", "--export", str(export)).output)
    assert done == {"name": "shop", "version": "1.1.0", "exported_to": str(export)}
    saved = json.loads(export.read_text())
    assert sorted(r["name"] for r in saved["objects"]["product"]) == ["Gadget", "Widget"]
    assert "product" not in lowcode("object", "list").output


def test_errors_are_printed_as_data_and_change_nothing(lowcode):
    failed = lowcode("app", "install", str(FIXTURES / "v1" / "shop_extras"), ok=False)
    error = json.loads(failed.stderr)["error"]
    assert error["code"] == "INVALID_DEFINITION"
    assert [(e["code"], e["field"]) for e in error["errors"]] == [("MISSING_DEPENDENCY", "depends.0")]
    failed = lowcode("app", "uninstall", "shop", ok=False)
    assert json.loads(failed.stderr)["error"]["code"] == "NOT_FOUND"
    assert "product" not in lowcode("object", "list").output
