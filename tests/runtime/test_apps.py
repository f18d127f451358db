"""Apps: install, upgrade and uninstall through the app service, on SQLite and PostgreSQL.

The test apps live in ``tests/app_fixtures`` (v1: ``shop`` and ``shop_extras`` which depends on it;
v2: the next version of ``shop``). A round trip must leave the database as it was; a broken
manifest or a failing hook must leave nothing half-installed; data and administrators'
customizations survive an upgrade.
"""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import (
    Conflict,
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
)
from lowcode.runtime import Runtime

FIXTURES = Path(__file__).resolve().parents[1] / "app_fixtures"
V1, V2 = FIXTURES / "v1", FIXTURES / "v2"


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, apps_root=V1).install()
    yield runtime
    runtime.close()


def problems(caught) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in caught.value.errors]


def test_install_brings_everything_the_manifest_names(rt):
    installed = rt.apps.install_app(S, "shop")
    assert (installed["name"], installed["installed_version"], installed["title"]) == ("shop", "1.0.0", "Shop")
    catalog = rt.catalog()
    product, purchase = catalog.object("product"), catalog.object("purchase")
    assert [f.api_name for f in product.fields] == ["name", "price", "code"]
    assert catalog.object("user").field("shop_nickname").label == "Shop nickname"
    assert [s.api_name for s in purchase.business_types[0].stages] == ["cart", "paid"]
    assert [r.api_name for r in product.validation_rules] == ["positive_price"]
    assert [layout.api_name for layout in product.layouts] == ["product_form"]
    clerk = rt.security.role(S, "shop_clerk")
    assert [(g["object"], g["actions"], g["read_scope"]) for g in clerk["objects"]] == [
        ("product", ["read", "create", "update"], "all"), ("purchase", ["read", "create"], "own")]
    assert clerk["fields"] == [{"object": "product", "field": "price", "access": "read"}]
    products = {r["name"]: r for r in rt.records.query(S, "product").records}
    assert {n: (r["price"], r["code"]) for n, r in products.items()} == {"Widget": (Decimal("9.99"), "W-1"), "Gadget": (Decimal("19.50"), None)}
    notes = {r["note"]: r for r in rt.records.query(S, "purchase").records}
    assert notes["first"]["product"] == products["Widget"]["id"] and notes["first"]["business_type"] == "retail"
    assert "installed 1.0.0 from None" in notes, "on_install ran in the install"
    assert rt.records.create(S, "product", {"name": "Cog", "code": "c-9"})["code"] == "C-9", "the app's hooks are active"
    with pytest.raises(Conflict):
        rt.apps.install_app(S, "shop")
    listed = {a["name"]: (a["installed_version"], a["available_version"], a["depends"]) for a in rt.apps.list()}
    assert listed == {"shop": ("1.0.0", "1.0.0", []), "shop_extras": (None, "0.3.0", ["shop"])}


def test_a_round_trip_leaves_the_database_as_before(rt, database_snapshot):
    before = database_snapshot(rt)
    rt.apps.install_app(S, "shop")
    rt.apps.install_app(S, "shop_extras")
    rt.records.create(S, "product", {"name": "Made by hand", "ribbon": True})
    rt.apps.upgrade_app(S, str(V2 / "shop"))
    rt.apps.uninstall_app(S, "shop_extras")
    assert rt.catalog().object("product").field("ribbon") is None
    rt.apps.uninstall_app(S, "shop")
    assert database_snapshot(rt) == before
    assert rt.apps.list()[0]["installed_version"] is None


def test_upgrade_applies_the_difference_and_keeps_data_and_customizations(rt):
    rt.apps.install_app(S, "shop")
    cart = rt.records.create(S, "purchase", {"note": "in the cart", "business_type": "retail", "stage": "cart"})
    rt.metadata.update_field(S, "product", "price", {"label": "Unit price"})
    rt.metadata.create_field(S, "product", {"api_name": "notes", "label": "Notes", "type": "text"})
    gadget = next(r for r in rt.records.query(S, "product").records if r["name"] == "Gadget")
    widget = next(r for r in rt.records.query(S, "product").records if r["name"] == "Widget")
    rt.records.update(S, "product", widget["id"], {"price": "8.00"})

    upgraded = rt.apps.upgrade_app(S, str(V2 / "shop"))
    assert upgraded["installed_version"] == "1.1.0"
    product = rt.catalog().object("product")
    assert product.label == "Catalogue item"
    assert [f.api_name for f in product.fields] == ["name", "price", "code", "notes", "weight"]
    assert product.field("price").label == "Unit price", "an administrator's change the manifest did not touch survives"
    assert product.validation_rules == ()
    assert [s.api_name for s in rt.catalog().object("purchase").business_types[0].stages] == ["cart", "shipped", "paid"]
    assert rt.records.get(S, "purchase", cart["id"])["stage"] == "cart"
    assert rt.records.get(S, "product", gadget["id"])["price"] == Decimal("21.00"), "a seed value the manifest changed"
    assert rt.records.get(S, "product", widget["id"])["price"] == Decimal("8.00"), "a seed value someone changed stays theirs"
    assert rt.records.create(S, "product", {"name": "Free", "price": "-1"})["price"] == Decimal("-1.00"), "the removed rule is gone"
    notes = [r["note"] for r in rt.records.query(S, "purchase").records]
    assert "installed 1.1.0 from 1.0.0" in notes


def test_uninstall_exports_first_when_asked_and_refuses_while_needed(rt):
    rt.apps.install_app(S, "shop")
    rt.apps.install_app(S, "shop_extras")
    with pytest.raises(InUse) as caught:
        rt.apps.uninstall_app(S, "shop")
    assert caught.value.ctx["dependents"] == ["shop_extras"]
    names = {r["id"]: r["name"] for r in rt.records.query(S, "product").records}
    done = rt.apps.uninstall_app(S, "shop_extras", export=True)
    ribbons = {names[i]: value for i, value in done["exported"]["fields"]["product"]["ribbon"].items()}
    assert ribbons == {"Widget": None, "Gadget": None, "Bow": True}
    assert not any(r["name"] == "Bow" for r in rt.records.query(S, "product").records), "seed records on others' objects go"
    done = rt.apps.uninstall_app(S, "shop", export=True)
    assert sorted(r["name"] for r in done["exported"]["objects"]["product"]) == ["Gadget", "Widget"]
    assert "product" not in rt.catalog().objects
    with pytest.raises(NotFound):
        rt.apps.uninstall_app(S, "shop")


def test_dependencies_must_be_installed_in_a_matching_version(rt, tmp_path):
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, "shop_extras")
    assert problems(caught) == [("MISSING_DEPENDENCY", "depends.0")]
    rt.apps.install_app(S, "shop")
    folder = copy_app(tmp_path, V1 / "shop_extras")
    manifest = (folder / "manifest.json").read_text().replace(">=1.0.0,<2", ">=2")
    (folder / "manifest.json").write_text(manifest)
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, str(folder))
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [
        ("MISSING_DEPENDENCY", "depends.0.version", "needs 'shop' >=2, but 1.0.0 is installed")]


def copy_app(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    return folder


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_broken_manifest_reports_every_problem_and_installs_nothing(rt, tmp_path, database_snapshot):
    folder = copy_app(tmp_path, V1 / "shop")

    def break_it(data):
        data["version"] = "one"
        data["objects"][0]["fields"][0]["required"] = "yes"
        data["roles"][0]["objects"][0]["extra"] = 1
        del data["layouts"][0]["sections"]

    edit_manifest(folder, break_it)
    before = database_snapshot(rt)
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, str(folder))
    assert problems(caught) == [("SCHEMA", "layouts.0"), ("SCHEMA", "objects.0.fields.0.required"),
                                ("SCHEMA", "roles.0.objects.0"), ("SCHEMA", "version")]
    assert database_snapshot(rt) == before


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["objects"][0]["fields"].append({"api_name": "size", "label": "Size", "type": "nonsense"}),
     ("INVALID", "objects.0.fields.3.type")),
    (lambda d: d["objects"][1]["fields"][0]["options"].update(target="nowhere"), ("UNKNOWN_TARGET", "objects.1.fields.0.options.target")),
    (lambda d: d["business_types"][0]["stages"][0].update(probability=140), ("INVALID", "business_types.0.stages.0.probability")),
    (lambda d: d["validation_rules"][0].update(expression="record.price >"), ("SYNTAX_ERROR", "validation_rules.0.expression")),
    (lambda d: d["layouts"][0]["sections"][0]["fields"].append({"field": "nope"}), ("UNKNOWN_FIELD", "layouts.0.sections.0.fields.3.field")),
    (lambda d: d["roles"][0]["objects"][0].update(read_scope="galaxy"), ("INVALID_VALUE", "roles.0.objects.0.read_scope")),
    (lambda d: d["seed"][1]["values"].update(price="cheap"), ("INVALID_FORMAT", "seed.1.values.price")),
    (lambda d: d["seed"][2]["values"].update(product={"$ref": "nothing"}), ("UNKNOWN_KEY", "seed.2.values.product")),
])
def test_a_refused_step_is_reported_at_its_place_and_nothing_is_left(rt, tmp_path, change, expected, database_snapshot):
    folder = copy_app(tmp_path, V1 / "shop")
    edit_manifest(folder, change)
    before = database_snapshot(rt)
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, str(folder))
    assert expected in problems(caught), problems(caught)
    assert database_snapshot(rt) == before


def test_a_failing_hook_undoes_the_install(rt, tmp_path, database_snapshot):
    folder = copy_app(tmp_path, V1 / "shop")
    (folder / "hooks.py").write_text("def on_install(context):\n    raise RuntimeError('the warehouse is closed')\n")
    before = database_snapshot(rt)
    with pytest.raises(InvalidDefinition) as caught:
        rt.apps.install_app(S, str(folder))
    assert [(e.code, e.field, e.message) for e in caught.value.errors] == [
        ("HOOK_FAILED", "hooks", "The app's on_install hook failed: the warehouse is closed")]
    assert database_snapshot(rt) == before


def test_only_administrators_manage_apps(rt):
    sec = rt.security
    unit = sec.create_unit(S, "Shop floor")
    sec.create_role(S, "plain", "Plain")
    user = sec.create_user(S, {"username": "plain_user"})
    sec.add_membership(S, user["id"], unit["id"], "plain")
    actor = sec.authenticate(sec.issue_token(S, "t", user_id=user["id"])["token"])
    for call in (lambda: rt.apps.install_app(actor, "shop"), lambda: rt.apps.upgrade_app(actor, "shop"),
                 lambda: rt.apps.uninstall_app(actor, "shop")):
        with pytest.raises(Forbidden):
            call()
    assert "product" not in rt.catalog().objects


def test_unknown_apps_are_not_found(rt):
    with pytest.raises(NotFound):
        rt.apps.install_app(S, "nothing_here")
    with pytest.raises(NotFound):
        rt.apps.upgrade_app(S, "shop")


def test_two_installs_at_once_install_once_on_postgresql(postgres_url):
    import threading

    runtime = Runtime.connect(postgres_url, apps_root=V1).install()
    try:
        barrier, outcomes = threading.Barrier(2), [None, None]

        def install(i: int) -> None:
            barrier.wait(timeout=30)
            try:
                outcomes[i] = runtime.apps.install_app(S, "shop")["installed_version"]
            except Conflict as refused:
                outcomes[i] = refused.code

        threads = [threading.Thread(target=install, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(outcomes) == ["1.0.0", "CONFLICT"]
        assert sorted(r["name"] for r in runtime.records.query(S, "product").records) == ["Gadget", "Widget"]
    finally:
        runtime.close()
