"""The apps admin API over HTTP GraphQL, on SQLite and PostgreSQL: listing, installing, upgrading
and uninstalling by name (the test apps of ``tests/app_fixtures/v1``), administrators only."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app

V1 = Path(__file__).resolve().parents[1] / "app_fixtures" / "v1"
APPS = "{ apps { name title installedVersion availableVersion depends } }"
INSTALL = "mutation($n: String!) { installApp(name: $n) { name installedVersion } }"
UPGRADE = "mutation($n: String!) { upgradeApp(name: $n) { name installedVersion } }"
UNINSTALL = "mutation($n: String!, $e: Boolean) { uninstallApp(name: $n, export: $e) { name version exported } }"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url, apps_root=V1).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


def test_listing_installing_and_uninstalling(api):
    assert api.data(APPS)["apps"] == [
        {"name": "shop", "title": "Shop", "installedVersion": None, "availableVersion": "1.0.0", "depends": []},
        {"name": "shop_extras", "title": "Shop extras", "installedVersion": None, "availableVersion": "0.3.0", "depends": ["shop"]}]
    assert api.data(INSTALL, {"n": "shop"})["installApp"] == {"name": "shop", "installedVersion": "1.0.0"}
    names = api.data("{ products(orderBy: [NAME_ASC]) { nodes { name price } } }")["products"]["nodes"]
    assert names == [{"name": "Gadget", "price": "19.50"}, {"name": "Widget", "price": "9.99"}]
    assert api.data(UPGRADE, {"n": "shop"})["upgradeApp"] == {"name": "shop", "installedVersion": "1.0.0"}
    done = api.data(UNINSTALL, {"n": "shop", "e": True})["uninstallApp"]
    assert (done["name"], done["version"]) == ("shop", "1.0.0")
    assert sorted(r["name"] for r in done["exported"]["objects"]["product"]) == ["Gadget", "Widget"]
    status, errors = api.errors("{ products { nodes { name } } }")
    assert status == 400 and errors[0]["extensions"]["code"] == "BAD_QUERY"


def test_refusals_name_the_problem(api):
    status, errors = api.errors(INSTALL, {"n": "shop_extras"})
    assert status == 200 and errors[0]["extensions"]["code"] == "INVALID_DEFINITION"
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("MISSING_DEPENDENCY", "depends.0")]
    for name in ("../shop", "/etc"):
        status, errors = api.errors(INSTALL, {"n": name})
        assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED", name
    status, errors = api.errors(INSTALL, {"n": "unknown"})
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    status, errors = api.errors(UNINSTALL, {"n": "shop"})
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    api.data(INSTALL, {"n": "shop"})
    api.data(INSTALL, {"n": "shop_extras"})
    status, errors = api.errors(UNINSTALL, {"n": "shop"})
    assert errors[0]["extensions"]["code"] == "IN_USE"


def test_only_administrators(api):
    sec = api.runtime.security
    unit = sec.create_unit(S, "Floor")
    sec.create_role(S, "plain", "Plain")
    user = sec.create_user(S, {"username": "plain_api_user"})
    sec.add_membership(S, user["id"], unit["id"], "plain")
    token = sec.issue_token(S, "t", user_id=user["id"])["token"]
    status, errors = api.errors(INSTALL, {"n": "shop"}, token=token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert "product" not in api.runtime.catalog().objects
