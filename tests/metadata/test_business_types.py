"""Business types and stages as metadata, through the public MetadataService.

Every test runs on SQLite and PostgreSQL (the ``runtime`` / ``database_url`` fixtures). An accepted
change bumps the Catalog version by one and writes one change-log entry; a refused change leaves
the version, the change log and the stored business-type and stage rows exactly as they were.
"""
from __future__ import annotations

from typing import Any

import pytest
from lowcode.metadata import SYSTEM_ACTOR, store
from lowcode.metadata.errors import Forbidden, InUse, InvalidDefinition, NotFound
from lowcode.runtime import Runtime
from sqlalchemy import inspect, select, text

S = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

DEAL = {
    "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "source", "label": "Source", "type": "picklist", "options": PICK("web", "phone", "fair")},
        {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green", "blue")},
        {"api_name": "amount", "label": "Amount", "type": "integer"},
        {"api_name": "contract", "label": "Contract", "type": "text"},
    ],
}
MEMO = {"api_name": "memo", "label": "Memo", "plural_api_name": "memos", "plural_label": "Memos",
        "fields": [{"api_name": "title", "label": "Title", "type": "text"}]}


def stage(api_name: str, probability: int = 10, **more: Any) -> dict[str, Any]:
    return {"api_name": api_name, "label": api_name.replace("_", " ").title(), "probability": probability, **more}


PRODUCT = {
    "api_name": "product", "label": "Product sale", "description": "Boxes",
    "picklists": {"source": ["web", "phone"], "tags": ["red", "green"]},
    "stages": [stage("p_new", 10, expected_days=7), stage("p_quote", 50, required_fields=["amount"]),
               stage("p_won", 100, category="won", required_fields=["contract"]), stage("p_lost", 0, category="lost")],
}
PROJECT = {"api_name": "project", "label": "Project sale", "stages": [stage("j_new", 5), stage("j_won", 100, category="won")]}


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(S, [DEAL, MEMO])
    return runtime


# -- helpers ------------------------------------------------------------------------------------
def stored(rt) -> dict[str, Any]:
    """The stored version, change-log length and every business-type and stage row."""
    with rt.engine.connect() as conn:
        kinds = [dict(r) for r in conn.execute(select(store.business_types).order_by(
            store.business_types.c.object_api_name, store.business_types.c.api_name)).mappings()]
        stages = [dict(r) for r in conn.execute(select(store.stages).order_by(
            store.stages.c.object_api_name, store.stages.c.api_name)).mappings()]
        version = conn.execute(select(store.meta_version.c.version)).scalar_one()
        changes = conn.execute(select(store.meta_changes.c.id)).all()
    return {"version": version, "changes": len(changes), "business_types": kinds, "stages": stages}


def refused(rt, exc_type, call) -> list[tuple[str, str | None]]:
    """Run a change that must fail with ``exc_type``; assert nothing changed; its (code, field) list."""
    before = stored(rt)
    catalog_version = rt.catalog().version
    with pytest.raises(exc_type) as caught:
        call()
    assert stored(rt) == before
    assert rt.catalog().version == catalog_version
    return [(e.code, e.field) for e in caught.value.errors]


class Accepted:
    """Asserts that the block made exactly one metadata change: version +1, one change-log entry."""

    def __init__(self, rt, action: str, object_api_name: str = "deal"):
        self.rt, self.action, self.object = rt, action, object_api_name

    def __enter__(self):
        self.version = self.rt.catalog().version
        self.count = len(self.rt.metadata.changes(limit=1000))
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is not None:
            return False
        assert self.rt.catalog().version == self.version + 1
        changes = self.rt.metadata.changes(limit=1000)
        assert len(changes) == self.count + 1
        self.entry = changes[0]
        assert (self.entry["action"], self.entry["object_api_name"], self.entry["field_api_name"], self.entry["version"]) == (
            self.action, self.object, None, self.version + 1)
        return False


def kinds(rt, object_api_name: str = "deal") -> list[tuple[str, bool, bool]]:
    return [(k.api_name, k.default, k.active) for k in rt.catalog().object(object_api_name).business_types]


def type_rows(rt) -> list[tuple]:
    return [(r["object_api_name"], r["api_name"], r["is_default"], r["active"], r["position"]) for r in stored(rt)["business_types"]]


def stage_rows(rt) -> list[tuple]:
    return sorted((r["object_api_name"], r["business_type"], r["position"], r["api_name"], r["probability"], r["category"],
                   r["expected_days"], list(r["required_fields"])) for r in stored(rt)["stages"])


# -- creating, updating, deleting ---------------------------------------------------------------
def test_create_business_types_with_stages_and_picklist_subsets(rt):
    with Accepted(rt, "create_business_type") as change:
        product = rt.metadata.create_business_type(S, "deal", PRODUCT)
    assert product.default is True  # the first type of an object is the default
    assert (product.api_name, product.label, product.description, product.active, product.position) == (
        "product", "Product sale", "Boxes", True, 0)
    assert {k: list(v) for k, v in product.picklists.items()} == {"source": ["web", "phone"], "tags": ["red", "green"]}
    assert [(s.api_name, s.label, s.probability, s.category, s.expected_days, s.required_fields, s.position, s.closed)
            for s in product.stages] == [
        ("p_new", "P New", 10, "open", 7, (), 0, False),
        ("p_quote", "P Quote", 50, "open", None, ("amount",), 1, False),
        ("p_won", "P Won", 100, "won", None, ("contract",), 2, True),
        ("p_lost", "P Lost", 0, "lost", None, (), 3, True),
    ]
    assert change.entry["before"] is None
    assert change.entry["after"] == product.as_dict()
    assert change.entry["after"]["default"] is True

    obj = rt.catalog().object("deal")
    assert obj.business_types == (product,)
    assert obj.default_business_type == product
    assert obj.stage("p_quote") == (product, product.stages[1])
    assert obj.stage("nope") is None

    with Accepted(rt, "create_business_type") as change:
        project = rt.metadata.create_business_type(S, "deal", {**PROJECT, "default": False})
    assert (project.default, project.position, project.picklists) == (False, 1, {})
    assert change.entry["after"] == project.as_dict()
    assert kinds(rt) == [("product", True, True), ("project", False, True)]
    assert type_rows(rt) == [("deal", "product", True, True, 0), ("deal", "project", False, True, 1)]
    assert stage_rows(rt) == [
        ("deal", "product", 0, "p_new", 10, "open", 7, []),
        ("deal", "product", 1, "p_quote", 50, "open", None, ["amount"]),
        ("deal", "product", 2, "p_won", 100, "won", None, ["contract"]),
        ("deal", "product", 3, "p_lost", 0, "lost", None, []),
        ("deal", "project", 0, "j_new", 5, "open", None, []),
        ("deal", "project", 1, "j_won", 100, "won", None, []),
    ]
    assert [r["picklists"] for r in stored(rt)["business_types"]] == [{"source": ["web", "phone"], "tags": ["red", "green"]}, {}]

    # the same api name twice
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(S, "deal", {"api_name": "project", "label": "X"})) == [
        ("DUPLICATE", "api_name")]
    assert refused(rt, NotFound, lambda: rt.metadata.create_business_type(S, "nothing", {"api_name": "x", "label": "X"})) == []


def test_setting_another_default_clears_the_old_one(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    rt.metadata.create_business_type(S, "deal", PROJECT)
    with Accepted(rt, "update_business_type") as change:
        project = rt.metadata.update_business_type(S, "deal", "project", {"default": True})
    assert project.default is True
    assert change.entry["before"]["default"] is False and change.entry["after"]["default"] is True
    assert kinds(rt) == [("product", False, True), ("project", True, True)]
    assert type_rows(rt) == [("deal", "product", False, True, 0), ("deal", "project", True, True, 1)]
    assert rt.catalog().object("deal").default_business_type.api_name == "project"

    with Accepted(rt, "create_business_type"):
        rt.metadata.create_business_type(S, "deal", {"api_name": "service", "label": "Service", "default": True})
    assert kinds(rt) == [("product", False, True), ("project", False, True), ("service", True, True)]
    assert [r[2] for r in type_rows(rt)] == [False, False, True]


def test_the_default_must_be_active_and_cannot_be_unset(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    # the default cannot be deactivated, nor stop being the default without another taking over
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.update_business_type(S, "deal", "product", {"active": False})) == [
        ("INVALID_VALUE", "default")]
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.update_business_type(S, "deal", "product", {"default": False})) == [
        ("INVALID_VALUE", "default")]
    # an inactive type cannot be (or become) the default
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(
        S, "deal", {"api_name": "old", "label": "Old", "active": False, "default": True})) == [("INVALID_VALUE", "default")]
    with Accepted(rt, "create_business_type"):
        old = rt.metadata.create_business_type(S, "deal", {"api_name": "old", "label": "Old", "active": False})
    assert (old.active, old.default) == (False, False)
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.update_business_type(S, "deal", "old", {"default": True})) == [
        ("INVALID_VALUE", "default")]
    assert kinds(rt) == [("product", True, True), ("old", False, False)]
    # activating and making it the default in one change is fine
    with Accepted(rt, "update_business_type"):
        rt.metadata.update_business_type(S, "deal", "old", {"active": True, "default": True})
    assert kinds(rt) == [("product", False, True), ("old", True, True)]
    # a first type that is inactive would be a default that is not active
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(
        S, "memo", {"api_name": "note", "label": "Note", "active": False})) == [("INVALID_VALUE", "default")]


def test_update_changes_parts_and_replaces_the_ordered_stages(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    with Accepted(rt, "update_business_type") as change:
        product = rt.metadata.update_business_type(S, "deal", "product", {
            "label": "Products", "picklists": {"source": ["fair"]},
            "stages": [stage("p_quote", 40), stage("p_new", 15, expected_days=3), stage("p_won", 100, category="won"),
                       stage("p_lost", 0, category="lost"), stage("p_hold", 20, expected_days=0)]})
    assert change.entry["before"] == {**PRODUCT, "active": True, "default": True, "stages": [
        {"expected_days": None, "required_fields": [], "category": "open", **s} for s in PRODUCT["stages"]]}
    assert change.entry["after"] == product.as_dict()
    assert (product.label, product.description, product.default) == ("Products", "Boxes", True)
    assert {k: list(v) for k, v in product.picklists.items()} == {"source": ["fair"]}
    assert [(s.api_name, s.probability, s.expected_days, s.position) for s in product.stages] == [
        ("p_quote", 40, None, 0), ("p_new", 15, 3, 1), ("p_won", 100, None, 2), ("p_lost", 0, None, 3), ("p_hold", 20, 0, 4)]
    assert [r[2:5] for r in stage_rows(rt)] == [
        (0, "p_quote", 40), (1, "p_new", 15), (2, "p_won", 100), (3, "p_lost", 0), (4, "p_hold", 20)]
    assert rt.catalog().object("deal").business_type("product") == product
    # leaving stages out keeps them
    with Accepted(rt, "update_business_type"):
        rt.metadata.update_business_type(S, "deal", "product", {"description": "Crates"})
    assert [s.api_name for s in rt.catalog().object("deal").business_type("product").stages] == [
        "p_quote", "p_new", "p_won", "p_lost", "p_hold"]
    assert refused(rt, NotFound, lambda: rt.metadata.update_business_type(S, "deal", "nope", {"label": "X"})) == []


# -- validation ---------------------------------------------------------------------------------
CREATE_PROBLEMS = [
    ({"stages": [stage("s1", 140)]}, [("INVALID", "stages.0.probability")]),
    ({"stages": [stage("s1", 0), stage("s2", -1)]}, [("INVALID", "stages.1.probability")]),
    ({"stages": [stage("s1", 1.5)]}, [("INVALID", "stages.0.probability")]),
    ({"stages": [stage("s1", "50")]}, [("INVALID", "stages.0.probability")]),
    ({"stages": [{"api_name": "s1", "label": "S1"}]}, [("REQUIRED", "stages.0.probability")]),
    ({"stages": [stage("s1", category="pending")]}, [("INVALID", "stages.0.category")]),
    ({"stages": [stage("s1", expected_days=-1)]}, [("INVALID", "stages.0.expected_days")]),
    ({"stages": [stage("s1", expected_days=2.5)]}, [("INVALID", "stages.0.expected_days")]),
    ({"stages": [stage("s1"), stage("s2"), stage("s1")]}, [("INVALID", "stages.2.api_name")]),
    ({"stages": [stage("s1"), stage("p_quote")]}, [("DUPLICATE_STAGE", "stages.1.api_name")]),
    ({"stages": [stage("s1", required_fields=["name", "nope"])]}, [("UNKNOWN_FIELD", "stages.0.required_fields.1")]),
    ({"stages": [stage("s1", required_fields=["created_at", "id", "business_type", "stage", "stage_entered_at", "version",
                                              "updated_by", "deleted_at"])]},
     [("INVALID_VALUE", f"stages.0.required_fields.{i}") for i in range(8)]),
    ({"picklists": {"nope": ["web"]}}, [("UNKNOWN_FIELD", "picklists.nope")]),
    ({"picklists": {"amount": ["1"]}}, [("NOT_A_PICKLIST", "picklists.amount")]),
    ({"picklists": {"name": ["web"]}}, [("NOT_A_PICKLIST", "picklists.name")]),
    ({"picklists": {"source": ["web", "tv"], "tags": ["red", "pink"]}},
     [("UNKNOWN_VALUE", "picklists.source.1"), ("UNKNOWN_VALUE", "picklists.tags.1")]),
    ({"picklists": {"source": []}}, [("INVALID_VALUE", "picklists.source")]),
    ({"api_name": "Bad Name"}, [("INVALID", "api_name")]),
    ({"api_name": "9lives"}, [("INVALID", "api_name")]),
    ({"api_name": "two__parts"}, [("INVALID", "api_name")]),
    ({"api_name": "trailing_"}, [("INVALID", "api_name")]),
    ({"stages": [stage("s1"), {**stage("s2"), "api_name": "Stage-2"}]}, [("INVALID", "stages.1.api_name")]),
    ({"label": ""}, [("INVALID", "label")]),
]


def test_invalid_business_types_are_refused_with_exact_paths(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    for problem, expected in CREATE_PROBLEMS:
        definition = {"api_name": "other", "label": "Other", **problem}
        assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(S, "deal", definition)) == expected, problem
    # several problems at once are all reported
    errors = refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(S, "deal", {
        "api_name": "other", "label": "Other", "picklists": {"source": ["tv"], "amount": ["1"]},
        "stages": [stage("s1", required_fields=["nope"]), stage("p_won")]}))
    assert sorted(errors) == sorted([("UNKNOWN_VALUE", "picklists.source.0"), ("NOT_A_PICKLIST", "picklists.amount"),
                                     ("UNKNOWN_FIELD", "stages.0.required_fields.0"), ("DUPLICATE_STAGE", "stages.1.api_name")])
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(S, "deal", ["not", "a", "mapping"])) == [
        ("INVALID_TYPE", None)]
    assert kinds(rt) == [("product", True, True)]


def test_invalid_updates_are_refused_with_exact_paths(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    rt.metadata.create_business_type(S, "deal", PROJECT)
    for problem, expected in CREATE_PROBLEMS:
        if "api_name" in problem:
            continue
        changes = dict(problem)
        assert refused(rt, InvalidDefinition, lambda: rt.metadata.update_business_type(S, "deal", "project", changes)) == expected, problem
    # the api name never changes (not part of an update)
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.update_business_type(S, "deal", "project", {"api_name": "x"})) == [
        ("UNKNOWN_FIELD", "api_name")]
    # a stage of its own type may stay where it is
    with Accepted(rt, "update_business_type"):
        rt.metadata.update_business_type(S, "deal", "project", {"stages": [stage("j_won", 100, category="won"), stage("j_new", 5)]})
    assert [s.api_name for s in rt.catalog().object("deal").business_type("project").stages] == ["j_won", "j_new"]


def test_requirable_fields_include_stage_only_once_the_object_has_stages(rt):
    # before any type has stages, ``stage`` is not a field of the object at all
    assert refused(rt, InvalidDefinition, lambda: rt.metadata.create_business_type(
        S, "memo", {"api_name": "note", "label": "Note", "stages": [stage("n1", required_fields=["stage"])]})) == [
        ("UNKNOWN_FIELD", "stages.0.required_fields.0")]
    # owner and org unit are the caller's to set, so they may be required
    with Accepted(rt, "create_business_type", "memo"):
        note = rt.metadata.create_business_type(S, "memo", {"api_name": "note", "label": "Note",
                                                             "stages": [stage("n1", required_fields=["owner_id", "title"])]})
    assert note.stages[0].required_fields == ("owner_id", "title")


# -- what records are in ------------------------------------------------------------------------
def test_removing_a_stage_records_are_in_is_in_use(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    record = rt.records.create(S, "deal", {"name": "d", "stage": "p_quote", "amount": 5})
    keep = [s for s in PRODUCT["stages"] if s["api_name"] != "p_quote"]
    before = stored(rt)
    with pytest.raises(InUse) as caught:
        rt.metadata.update_business_type(S, "deal", "product", {"stages": keep})
    assert (caught.value.field, caught.value.ctx.get("records")) == ("stages", 1)
    assert stored(rt) == before
    # a record in the recycle bin still holds its stage
    rt.records.delete(S, "deal", record["id"])
    assert refused(rt, InUse, lambda: rt.metadata.update_business_type(S, "deal", "product", {"stages": keep})) == []
    # a stage nobody is in may go; one records are in may stay (relabelled, reordered)
    with Accepted(rt, "update_business_type"):
        rt.metadata.update_business_type(S, "deal", "product", {"stages": [
            {**stage("p_quote", 45), "label": "Quote sent"}, *[s for s in keep if s["api_name"] != "p_lost"]]})
    assert [s.api_name for s in rt.catalog().object("deal").business_type("product").stages] == ["p_quote", "p_new", "p_won"]
    rt.records.hard_delete(S, "deal", record["id"])
    with Accepted(rt, "update_business_type"):
        rt.metadata.update_business_type(S, "deal", "product", {"stages": [stage("p_new")]})
    assert [r[3] for r in stage_rows(rt)] == ["p_new"]


def test_delete_business_types(rt):
    product = rt.metadata.create_business_type(S, "deal", PRODUCT)
    rt.metadata.create_business_type(S, "deal", PROJECT)
    rt.metadata.create_business_type(S, "deal", {"api_name": "service", "label": "Service"})
    # the default goes last
    assert refused(rt, InUse, lambda: rt.metadata.delete_business_type(S, "deal", "product")) == []
    # a type records use (in the recycle bin too) stays
    record = rt.records.create(S, "deal", {"name": "d", "business_type": "project"})
    rt.records.delete(S, "deal", record["id"])
    with pytest.raises(InUse) as caught:
        rt.metadata.delete_business_type(S, "deal", "project")
    assert (caught.value.field, caught.value.ctx.get("records")) == ("api_name", 1)
    assert refused(rt, InUse, lambda: rt.metadata.delete_business_type(S, "deal", "project")) == []
    assert refused(rt, NotFound, lambda: rt.metadata.delete_business_type(S, "deal", "nope")) == []

    with Accepted(rt, "delete_business_type") as change:
        rt.metadata.delete_business_type(S, "deal", "service")
    assert (change.entry["before"]["api_name"], change.entry["after"]) == ("service", None)
    rt.records.hard_delete(S, "deal", record["id"])
    with Accepted(rt, "delete_business_type") as change:
        rt.metadata.delete_business_type(S, "deal", "project")
    assert (change.entry["before"]["api_name"], change.entry["before"]["default"]) == ("project", False)
    assert type_rows(rt) == [("deal", "product", True, True, 0)]
    assert [r[1] for r in stage_rows(rt)] == ["product"] * 4
    # the last one, the default, may go
    with Accepted(rt, "delete_business_type") as change:
        rt.metadata.delete_business_type(S, "deal", "product")
    assert change.entry["before"] == product.as_dict()
    assert type_rows(rt) == [] and stage_rows(rt) == []
    obj = rt.catalog().object("deal")
    assert (obj.business_types, obj.default_business_type, obj.has_stages) == ((), None, False)


def test_stage_fields_exist_only_while_some_type_has_stages(rt):
    def system_names(name="deal"):
        return [f.api_name for f in rt.catalog().object(name).system_fields]

    base = ["id", "owner_id", "org_unit_id", "business_type", "created_at", "created_by", "updated_at", "updated_by",
            "version", "deleted_at"]
    assert system_names() == base
    assert rt.catalog().object("deal").has_stages is False
    rt.metadata.create_business_type(S, "deal", {"api_name": "plain", "label": "Plain"})
    assert system_names() == base and rt.catalog().object("deal").has_stages is False
    assert rt.catalog().object("deal").field("stage") is None
    rt.metadata.create_business_type(S, "deal", PROJECT)
    obj = rt.catalog().object("deal")
    assert obj.has_stages is True
    assert system_names() == [*base, "stage", "stage_entered_at"]
    assert (obj.field("stage").type, obj.field("stage_entered_at").type) == ("text", "datetime")
    assert system_names("memo") == base
    rt.metadata.update_business_type(S, "deal", "project", {"stages": []})
    assert system_names() == base and rt.catalog().object("deal").has_stages is False


def test_deleting_an_object_deletes_its_business_types_and_stages(rt):
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    rt.metadata.create_business_type(S, "deal", PROJECT)
    rt.metadata.create_business_type(S, "memo", {"api_name": "note", "label": "Note", "stages": [stage("n1")]})
    rt.records.create(S, "deal", {"name": "d"})
    with Accepted(rt, "delete_object"):
        rt.metadata.delete_object(S, "deal")
    assert type_rows(rt) == [("memo", "note", True, True, 0)]
    assert stage_rows(rt) == [("memo", "note", 0, "n1", 10, "open", None, [])]
    with rt.engine.connect() as conn:
        assert conn.execute(select(store.stage_history.c.id).where(store.stage_history.c.object_api_name == "deal")).all() == []
    # an object of the same name starts without types
    rt.metadata.create_object(S, DEAL)
    assert rt.catalog().object("deal").business_types == ()


def test_a_field_a_business_type_names_is_not_left_dangling(rt):
    """Deleting a field that a stage requires or a picklist subset names either is refused (InUse)
    or takes those references with it; the type stays usable and editable either way."""
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    for field in ("amount", "source"):
        try:
            rt.metadata.delete_field(S, "deal", field)
        except InUse:
            assert rt.catalog().object("deal").field(field) is not None
            continue
        product = rt.catalog().object("deal").business_type("product")
        assert field not in product.picklists
        assert all(field not in s.required_fields for s in product.stages)
    rt.metadata.update_business_type(S, "deal", "product", {"label": "Renamed"})
    record = rt.records.create(S, "deal", {"name": "d", "source": "web"} if rt.catalog().object("deal").field("source") else {"name": "d"})
    values = {"stage": "p_quote", **({"amount": 1} if rt.catalog().object("deal").field("amount") else {})}
    assert rt.records.update(S, "deal", record["id"], values)["stage"] == "p_quote"


def test_only_administrators_change_business_types(rt):
    sec = rt.security
    unit = sec.create_unit(S, "Unit")
    sec.create_role(S, "editor", "Editor")
    sec.set_object_grant(S, "editor", "*", ["read", "create", "update", "delete"], "all", "all")
    user = sec.create_user(S, {"username": "ed"})
    sec.add_membership(S, user["id"], unit["id"], "editor")
    actor = sec.authenticate(sec.issue_token(S, "t", user_id=user["id"])["token"])
    refused(rt, Forbidden, lambda: rt.metadata.create_business_type(actor, "deal", PRODUCT))
    rt.metadata.create_business_type(S, "deal", PRODUCT)
    refused(rt, Forbidden, lambda: rt.metadata.update_business_type(actor, "deal", "product", {"label": "X"}))
    refused(rt, Forbidden, lambda: rt.metadata.delete_business_type(actor, "deal", "product"))
    sec.create_role(S, "admin2", "Admin", administrator=True)
    boss = sec.create_user(S, {"username": "boss"})
    sec.add_membership(S, boss["id"], unit["id"], "admin2")
    admin = sec.authenticate(sec.issue_token(S, "t", user_id=boss["id"])["token"])
    with Accepted(rt, "update_business_type") as change:
        rt.metadata.update_business_type(admin, "deal", "product", {"label": "X"})
    assert change.entry["actor_id"] == boss["id"]


# -- the database upgrade -----------------------------------------------------------------------
def _layout(url: str, table: str) -> tuple[set[str], dict[str, list[str]], list[str]]:
    rt = Runtime.connect(url)
    try:
        inspector = inspect(rt.engine)
        columns = {c["name"] for c in inspector.get_columns(table)}
        indexes = {i["name"]: list(i["column_names"]) for i in inspector.get_indexes(table)}
        return columns, indexes, sorted(inspector.get_table_names())
    finally:
        rt.close()


def _revision(rt) -> list[tuple[int, int]]:
    with rt.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(store.platform_revision.c.id, store.platform_revision.c.revision))]


def test_a_new_database_is_at_the_latest_revision_and_installing_again_changes_nothing(runtime, database_url):
    runtime.metadata.create_objects(S, [DEAL, MEMO])
    assert _revision(runtime) == [(1, 1)]
    columns, indexes, _ = _layout(database_url, "obj_memo")
    assert {"stage", "stage_entered_at", "business_type"} <= columns
    assert indexes["ix_obj_memo_stage"] == ["stage"]
    before = stored(runtime)
    runtime.install()
    runtime.install()
    assert stored(runtime) == before
    assert _revision(runtime) == [(1, 1)]


def test_an_older_database_gains_the_stage_columns_at_install(database_url):
    rt = Runtime.connect(database_url).install()
    try:
        rt.metadata.create_objects(S, [DEAL, MEMO])
        first = rt.records.create(S, "deal", {"name": "first", "source": "web", "amount": 3})
        second = rt.records.create(S, "memo", {"title": "note"})
    finally:
        rt.close()
    # simulate a database from before business types: no revision table, no stage columns or index
    rt = Runtime.connect(database_url)
    try:
        with rt.engine.begin() as conn:
            for table in ("lc_platform_revision", "lc_stage_history", "lc_stage", "lc_business_type"):
                conn.execute(text(f"DROP TABLE {table}"))
            for table in ("obj_deal", "obj_memo"):
                conn.execute(text(f"DROP INDEX ix_{table}_stage"))
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN stage_entered_at"))
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN stage"))
    finally:
        rt.close()
    columns, indexes, tables = _layout(database_url, "obj_deal")
    assert "stage" not in columns and "stage_entered_at" not in columns and "ix_obj_deal_stage" not in indexes
    assert not {"lc_platform_revision", "lc_stage_history", "lc_stage", "lc_business_type"} & set(tables)

    rt = Runtime.connect(database_url).install()
    try:
        assert _revision(rt) == [(1, 1)]
        assert {"lc_platform_revision", "lc_stage_history", "lc_stage", "lc_business_type"} <= set(_layout(database_url, "obj_deal")[2])
        for table in ("obj_deal", "obj_memo"):
            columns, indexes, _ = _layout(database_url, table)
            assert {"stage", "stage_entered_at"} <= columns
            assert indexes[f"ix_{table}_stage"] == ["stage"]
        got = rt.records.get(S, "deal", first["id"])
        assert (got["name"], got["source"], got["amount"], got["version"], got["created_at"]) == (
            "first", "web", 3, 1, first["created_at"])
        assert rt.records.get(S, "memo", second["id"])["title"] == "note"
        # and the columns work
        rt.metadata.create_business_type(S, "deal", PROJECT)
        moved = rt.records.update(S, "deal", first["id"], {"business_type": "project", "stage": "j_new"})
        assert (moved["stage"], moved["business_type"]) == ("j_new", "project")
        before = stored(rt)
    finally:
        rt.close()
    # installing again is a no-op
    rt = Runtime.connect(database_url).install()
    try:
        assert _revision(rt) == [(1, 1)]
        assert stored(rt) == before
        assert rt.records.get(S, "deal", first["id"])["stage"] == "j_new"
    finally:
        rt.close()
