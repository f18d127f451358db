"""Business types and stages applied to records, through the public RecordService.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture). A refused write must change
nothing: no record, no new version, no stage-history entry.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from lowcode.metadata import SYSTEM_ACTOR, store
from lowcode.metadata.errors import Forbidden, NotFound, ValidationFailed
from lowcode.runtime.processes import probability, stage_of
from lowcode.runtime.reading import Selection, Window
from sqlalchemy import func, select, update

S = SYSTEM_ACTOR

PICK = lambda *names: {"values": [{"api_name": n, "label": n.title()} for n in names]}  # noqa: E731

DEAL = {
    "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "source", "label": "Source", "type": "picklist", "options": PICK("web", "phone", "fair", "partner")},
        {"api_name": "tags", "label": "Tags", "type": "multi_picklist", "options": PICK("red", "green", "blue")},
        {"api_name": "amount", "label": "Amount", "type": "integer"},
        {"api_name": "contract", "label": "Contract", "type": "text"},
    ],
}
MEMO = {"api_name": "memo", "label": "Memo", "plural_api_name": "memos", "plural_label": "Memos",
        "fields": [{"api_name": "title", "label": "Title", "type": "text"}]}


def stage(api_name: str, label: str, probability: int, **more: Any) -> dict[str, Any]:
    return {"api_name": api_name, "label": label, "probability": probability, **more}


TYPES = [
    {"api_name": "product", "label": "Product sale", "picklists": {"source": ["web", "phone"], "tags": ["red", "green"]},
     "stages": [stage("p_new", "New lead", 10, expected_days=10), stage("p_quote", "Quote sent", 50, expected_days=3, required_fields=["amount"]),
                stage("p_won", "Closed won", 100, category="won", required_fields=["contract", "amount"]),
                stage("p_lost", "Closed lost", 0, category="lost", expected_days=5)]},
    {"api_name": "project", "label": "Project sale", "picklists": {"source": ["fair", "partner"]},
     "stages": [stage("j_new", "Scoping", 5), stage("j_build", "Building", 60, expected_days=20), stage("j_won", "Delivered", 100, category="won")]},
    {"api_name": "legacy", "label": "Legacy", "stages": [stage("l_new", "Old new", 10), stage("l_next", "Old next", 20)]},
    {"api_name": "plain", "label": "Plain"},
]


@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(S, [DEAL, MEMO])
    for kind in TYPES:
        runtime.metadata.create_business_type(S, "deal", kind)
    return runtime


# -- helpers ------------------------------------------------------------------------------------
def errors(exc) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.errors]


def history_rows(rt) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.stage_history)).scalar_one()


def deal_rows(rt) -> list[dict[str, Any]]:
    table = rt.catalog().table("deal")
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def refused(rt, exc_type, call) -> list[tuple[str, str | None]]:
    """A write that must fail with ``exc_type`` and change nothing; its (code, field) list."""
    before = (deal_rows(rt), history_rows(rt))
    with pytest.raises(exc_type) as caught:
        call()
    assert (deal_rows(rt), history_rows(rt)) == before
    return errors(caught.value)


def user_actor(rt, name: str, actions: list[str], read_scope: str = "all", write_scope: str = "all"):
    sec = rt.security
    unit = sec.create_unit(S, f"unit {name}")
    sec.create_role(S, name, name.title())
    sec.set_object_grant(S, name, "deal", actions, read_scope, write_scope)
    user = sec.create_user(S, {"username": name})
    sec.add_membership(S, user["id"], unit["id"], name)
    return sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"])


def history(rt, record_id: str, actor=S) -> list[tuple]:
    return [(h["stage"], h["business_type"], h["entered_by"], h["left_by"], h["left_at"] is None, h["seconds_in_stage"] is None)
            for h in rt.records.stage_history(actor, "deal", record_id)]


# -- defaults, types and stages -----------------------------------------------------------------
def test_new_records_take_the_default_type_and_its_first_stage(rt):
    created = rt.records.create(S, "deal", {"name": "a"})
    assert (created["business_type"], created["stage"]) == ("product", "p_new")
    assert created["stage_entered_at"] == created["created_at"]
    got = rt.records.get(S, "deal", created["id"])
    assert (got["business_type"], got["stage"], got["stage_entered_at"]) == ("product", "p_new", created["created_at"])

    project = rt.records.create(S, "deal", {"name": "b", "business_type": "project"})
    assert (project["business_type"], project["stage"]) == ("project", "j_new")
    quoted = rt.records.create(S, "deal", {"name": "c", "stage": "p_quote", "amount": 5})
    assert (quoted["business_type"], quoted["stage"]) == ("product", "p_quote")
    built = rt.records.create(S, "deal", {"name": "d", "business_type": "project", "stage": "j_build"})
    assert (built["business_type"], built["stage"]) == ("project", "j_build")
    plain = rt.records.create(S, "deal", {"name": "e", "business_type": "plain"})
    assert (plain["business_type"], plain["stage"], plain["stage_entered_at"]) == ("plain", None, None)

    # another default takes over for later records only
    rt.metadata.update_business_type(S, "deal", "project", {"default": True})
    later = rt.records.create(S, "deal", {"name": "f"})
    assert (later["business_type"], later["stage"]) == ("project", "j_new")
    assert rt.records.get(S, "deal", created["id"])["business_type"] == "product"

    obj = rt.catalog().object("deal")
    assert [probability(obj, s) for s in ("p_new", "p_quote", "j_build", "j_won", "nope", None)] == [10, 50, 60, 100, None, None]
    assert stage_of(obj, "p_won").category == "won" and stage_of(obj, "p_won").closed
    assert stage_of(obj, "nope") is None and stage_of(obj, None) is None


def test_the_stage_must_belong_to_the_records_type(rt):
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "a", "stage": "j_new"})) == [
        ("INVALID_STAGE", "stage")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(
        S, "deal", {"name": "a", "business_type": "project", "stage": "p_new"})) == [("INVALID_STAGE", "stage")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "a", "stage": "nope"})) == [
        ("INVALID_STAGE", "stage")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(
        S, "deal", {"name": "a", "business_type": "plain", "stage": "p_new"})) == [("INVALID_STAGE", "stage")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "a", "business_type": "nope"})) == [
        ("INVALID_VALUE", "business_type")]

    record = rt.records.create(S, "deal", {"name": "a"})
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", record["id"], {"stage": "j_build"})) == [
        ("INVALID_STAGE", "stage")]
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", record["id"], {"business_type": "nope"})) == [
        ("INVALID_VALUE", "business_type")]


def test_changing_the_type_needs_a_stage_of_the_new_type(rt):
    record = rt.records.create(S, "deal", {"name": "a", "source": "web"})
    with pytest.raises(ValidationFailed) as caught:
        before = deal_rows(rt)
        rt.records.update(S, "deal", record["id"], {"business_type": "legacy"})
    assert errors(caught.value) == [("INVALID_STAGE", "stage")]
    assert "Legacy" in caught.value.errors[0].message
    assert deal_rows(rt) == before
    assert refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", record["id"], {"business_type": "legacy", "stage": "p_quote"})) == [("INVALID_STAGE", "stage")]
    moved = rt.records.update(S, "deal", record["id"], {"business_type": "legacy", "stage": "l_next"})
    assert (moved["business_type"], moved["stage"], moved["version"]) == ("legacy", "l_next", 2)
    assert moved["stage_entered_at"] == moved["updated_at"] > record["stage_entered_at"]
    got = rt.records.get(S, "deal", record["id"])
    assert (got["business_type"], got["stage"], got["stage_entered_at"]) == ("legacy", "l_next", moved["updated_at"])


def test_a_record_may_move_to_a_type_without_stages(rt):
    record = rt.records.create(S, "deal", {"name": "a"})
    moved = rt.records.update(S, "deal", record["id"], {"business_type": "plain"})
    assert (moved["business_type"], moved["stage"], moved["stage_entered_at"]) == ("plain", None, None)
    # the stage it left is closed in its history
    assert history(rt, record["id"]) == [("p_new", "product", None, None, False, False)]


def test_records_from_before_their_types_or_stages_can_still_be_edited(runtime):
    """Records written before the object had business types (no type) or before their type had
    stages (no stage): an edit that touches neither must not be refused."""
    runtime.metadata.create_objects(S, [MEMO])
    untyped = runtime.records.create(S, "memo", {"title": "before types"})
    runtime.metadata.create_business_type(S, "memo", {"api_name": "note", "label": "Note"})
    unstaged = runtime.records.create(S, "memo", {"title": "before stages"})
    assert (unstaged["business_type"], unstaged["stage"] if "stage" in unstaged else None) == ("note", None)
    runtime.metadata.update_business_type(S, "memo", "note", {"stages": [stage("n1", "First", 10)]})
    assert runtime.records.update(S, "memo", unstaged["id"], {"title": "edited"})["title"] == "edited"
    assert runtime.records.update(S, "memo", untyped["id"], {"title": "edited"})["title"] == "edited"


def test_business_type_on_an_object_without_types_is_not_allowed(rt):
    with pytest.raises(ValidationFailed) as caught:
        rt.records.create(S, "memo", {"title": "x", "business_type": "product"})
    assert errors(caught.value) == [("NOT_ALLOWED", "business_type")]


def test_inactive_types_take_no_new_records_but_keep_their_own(rt):
    old = rt.records.create(S, "deal", {"name": "old", "business_type": "legacy"})
    rt.metadata.update_business_type(S, "deal", "legacy", {"active": False})
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "n", "business_type": "legacy"})) == [
        ("INACTIVE", "business_type")]
    assert refused(rt, ValidationFailed, lambda: rt.records.bulk_create(
        S, "deal", [{"name": "n"}, {"name": "n", "business_type": "legacy", "stage": "l_next"}])) == [("INACTIVE", "1.business_type")]
    record = rt.records.create(S, "deal", {"name": "p"})
    assert refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", record["id"], {"business_type": "legacy", "stage": "l_new"})) == [("INACTIVE", "business_type")]
    # records of the inactive type still change, move between its stages, and may leave it
    edited = rt.records.update(S, "deal", old["id"], {"name": "older"})
    assert (edited["name"], edited["business_type"], edited["version"]) == ("older", "legacy", 2)
    again = rt.records.update(S, "deal", old["id"], {"business_type": "legacy", "name": "oldest"})
    assert (again["business_type"], again["stage"], again["name"]) == ("legacy", "l_new", "oldest")
    moved = rt.records.update(S, "deal", old["id"], {"stage": "l_next"})
    assert moved["stage"] == "l_next"
    left = rt.records.update(S, "deal", old["id"], {"business_type": "project", "stage": "j_new"})
    assert (left["business_type"], left["stage"]) == ("project", "j_new")


def test_picklist_values_are_limited_per_type(rt):
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "a", "source": "fair"})) == [
        ("NOT_ALLOWED_FOR_TYPE", "source")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(S, "deal", {"name": "a", "tags": ["red", "blue"]})) == [
        ("NOT_ALLOWED_FOR_TYPE", "tags")]
    assert refused(rt, ValidationFailed, lambda: rt.records.create(
        S, "deal", {"name": "a", "business_type": "project", "source": "web"})) == [("NOT_ALLOWED_FOR_TYPE", "source")]
    product = rt.records.create(S, "deal", {"name": "a", "source": "web", "tags": ["red", "green"]})
    assert (product["source"], product["tags"]) == ("web", ["red", "green"])
    # a type without a subset takes every value
    project = rt.records.create(S, "deal", {"name": "b", "business_type": "project", "source": "fair", "tags": ["blue"]})
    assert (project["source"], project["tags"]) == ("fair", ["blue"])
    plain = rt.records.create(S, "deal", {"name": "c", "business_type": "plain", "source": "fair", "tags": ["blue"]})
    assert plain["source"] == "fair"

    # changing a value
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", product["id"], {"source": "partner"})) == [
        ("NOT_ALLOWED_FOR_TYPE", "source")]
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", product["id"], {"tags": ["blue"]})) == [
        ("NOT_ALLOWED_FOR_TYPE", "tags")]
    assert rt.records.update(S, "deal", product["id"], {"source": "phone", "tags": ["green"]})["source"] == "phone"
    assert rt.records.update(S, "deal", product["id"], {"source": None, "tags": []})["source"] is None

    # changing the type checks every value against the new type's subsets
    assert sorted(refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", project["id"], {"business_type": "product", "stage": "p_new"}))) == [
        ("NOT_ALLOWED_FOR_TYPE", "source"), ("NOT_ALLOWED_FOR_TYPE", "tags")]
    switched = rt.records.update(S, "deal", project["id"], {"business_type": "product", "stage": "p_new", "source": "web", "tags": []})
    assert (switched["business_type"], switched["source"], switched["tags"]) == ("product", "web", None)

    # a value a later subset leaves out stays until it is changed
    kept = rt.records.create(S, "deal", {"name": "d", "source": "web"})
    rt.metadata.update_business_type(S, "deal", "product", {"picklists": {"source": ["phone"]}})
    assert rt.records.update(S, "deal", kept["id"], {"name": "dd"})["source"] == "web"
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", kept["id"], {"source": "web"})) == [
        ("NOT_ALLOWED_FOR_TYPE", "source")]
    assert rt.records.get(S, "deal", kept["id"])["source"] == "web"


def test_entering_a_stage_needs_its_required_fields(rt):
    for missing in ({}, {"amount": None}):
        with pytest.raises(ValidationFailed) as caught:
            rt.records.create(S, "deal", {"name": "a", "stage": "p_quote", **missing})
        assert errors(caught.value) == [("REQUIRED_FOR_STAGE", "amount")]
        assert "'Quote sent'" in caught.value.errors[0].message
    assert deal_rows(rt) == [] and history_rows(rt) == 0

    record = rt.records.create(S, "deal", {"name": "a"})
    assert refused(rt, ValidationFailed, lambda: rt.records.update(S, "deal", record["id"], {"stage": "p_quote"})) == [
        ("REQUIRED_FOR_STAGE", "amount")]
    quoted = rt.records.update(S, "deal", record["id"], {"stage": "p_quote", "amount": 10})
    assert (quoted["stage"], quoted["amount"]) == ("p_quote", 10)
    # won needs a contract (and the amount): an empty string and null are both missing
    for contract in ("", None):
        with pytest.raises(ValidationFailed) as caught:
            before = deal_rows(rt)
            rt.records.update(S, "deal", record["id"], {"stage": "p_won", "contract": contract})
        assert errors(caught.value) == [("REQUIRED_FOR_STAGE", "contract")]
        assert "'Closed won'" in caught.value.errors[0].message
        assert deal_rows(rt) == before
    assert refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", record["id"], {"stage": "p_won", "contract": "C-1", "amount": None})) == [("REQUIRED_FOR_STAGE", "amount")]
    assert refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", record["id"], {"stage": "p_won", "amount": None})) == [
        ("REQUIRED_FOR_STAGE", "contract"), ("REQUIRED_FOR_STAGE", "amount")]
    won = rt.records.update(S, "deal", record["id"], {"stage": "p_won", "contract": "C-1"})
    assert (won["stage"], won["contract"], won["amount"]) == ("p_won", "C-1", 10)
    # the requirement is checked when entering, not on later edits within the stage
    assert rt.records.update(S, "deal", record["id"], {"contract": None})["contract"] is None
    # a type change entering a stage checks that stage's requirements too
    rt.metadata.update_business_type(S, "deal", "project", {"stages": [
        stage("j_new", "Scoping", 5, required_fields=["contract"]), stage("j_build", "Building", 60, expected_days=20),
        stage("j_won", "Delivered", 100, category="won")]})
    other = rt.records.create(S, "deal", {"name": "b"})
    assert refused(rt, ValidationFailed, lambda: rt.records.update(
        S, "deal", other["id"], {"business_type": "project", "stage": "j_new"})) == [("REQUIRED_FOR_STAGE", "contract")]


def test_bulk_writes_report_each_rows_path_and_write_nothing(rt):
    rows = [{"name": "a"}, {"name": "b", "stage": "p_quote"}, {"name": "c", "stage": "j_new"},
            {"name": "d", "business_type": "project", "source": "web"}, {"name": "e", "business_type": "nope"}]
    assert refused(rt, ValidationFailed, lambda: rt.records.bulk_create(S, "deal", rows)) == [
        ("REQUIRED_FOR_STAGE", "1.amount"), ("INVALID_STAGE", "2.stage"), ("NOT_ALLOWED_FOR_TYPE", "3.source"),
        ("INVALID_VALUE", "4.business_type")]
    created = rt.records.bulk_create(S, "deal", [{"name": "a"}, {"name": "b", "business_type": "project"},
                                                 {"name": "c", "stage": "p_quote", "amount": 1}])
    assert [(r["business_type"], r["stage"]) for r in created] == [("product", "p_new"), ("project", "j_new"), ("product", "p_quote")]
    assert history_rows(rt) == 3
    ids = [r["id"] for r in created]
    changes = [{"id": ids[0], "values": {"stage": "p_lost"}}, {"id": ids[1], "values": {"stage": "p_new"}},
               {"id": ids[2], "values": {"stage": "p_won", "contract": ""}},
               {"id": ids[0], "values": {"business_type": "project"}}]
    assert refused(rt, ValidationFailed, lambda: rt.records.bulk_update(S, "deal", changes)) == [
        ("INVALID_STAGE", "1.stage"), ("REQUIRED_FOR_STAGE", "2.contract"), ("INVALID_STAGE", "3.stage")]
    done = rt.records.bulk_update(S, "deal", [{"id": ids[0], "values": {"stage": "p_lost"}},
                                              {"id": ids[1], "values": {"stage": "j_build"}}])
    assert [r["stage"] for r in done] == ["p_lost", "j_build"]
    assert history_rows(rt) == 5


# -- reopening ----------------------------------------------------------------------------------
def test_leaving_a_closed_stage_is_the_reopen_action(rt):
    seller = user_actor(rt, "seller", ["read", "create", "update"])
    closer = user_actor(rt, "closer", ["read", "create", "update", "reopen"])
    record = rt.records.create(seller, "deal", {"name": "a"})
    # moving between open stages, and closing, need only update
    assert rt.records.update(seller, "deal", record["id"], {"stage": "p_quote", "amount": 3})["stage"] == "p_quote"
    assert rt.records.update(seller, "deal", record["id"], {"stage": "p_new"})["stage"] == "p_new"
    assert rt.records.update(seller, "deal", record["id"], {"stage": "p_won", "amount": 3, "contract": "C"})["stage"] == "p_won"
    # editing a closed record without moving it is an update
    assert rt.records.update(seller, "deal", record["id"], {"name": "b", "stage": "p_won"})["name"] == "b"
    # leaving won (to an open stage, to lost, or through a type change) reopens it
    for values in ({"stage": "p_new"}, {"stage": "p_lost"}, {"business_type": "project", "stage": "j_new"}):
        with pytest.raises(Forbidden) as caught:
            before = deal_rows(rt), history_rows(rt)
            rt.records.update(seller, "deal", record["id"], values)
        assert caught.value.ctx.get("action") == "reopen"
        assert (deal_rows(rt), history_rows(rt)) == before
    assert refused(rt, Forbidden, lambda: rt.records.bulk_update(seller, "deal", [{"id": record["id"], "values": {"stage": "p_new"}}])) == []
    lost = rt.records.update(closer, "deal", record["id"], {"stage": "p_lost"})
    assert lost["stage"] == "p_lost"
    assert refused(rt, Forbidden, lambda: rt.records.update(seller, "deal", record["id"], {"stage": "p_quote"})) == []
    reopened = rt.records.update(closer, "deal", record["id"], {"stage": "p_quote"})
    assert (reopened["stage"], reopened["version"]) == ("p_quote", 7)
    # the system actor and administrators may always reopen
    rt.records.update(S, "deal", record["id"], {"stage": "p_won", "contract": "C"})
    assert rt.records.update(S, "deal", record["id"], {"stage": "p_new"})["stage"] == "p_new"


# -- when and who -------------------------------------------------------------------------------
def test_stage_entered_at_changes_only_on_entering_a_stage(rt):
    record = rt.records.create(S, "deal", {"name": "a"})
    entered = record["stage_entered_at"]
    assert entered == record["created_at"]
    edited = rt.records.update(S, "deal", record["id"], {"name": "b", "amount": 4})
    assert (edited["stage_entered_at"], edited["version"]) == (entered, 2)
    same = rt.records.update(S, "deal", record["id"], {"stage": "p_new", "name": "c"})
    assert same["stage_entered_at"] == entered
    assert rt.records.get(S, "deal", record["id"])["stage_entered_at"] == entered
    moved = rt.records.update(S, "deal", record["id"], {"stage": "p_quote"})
    assert moved["stage_entered_at"] == moved["updated_at"] > entered
    assert rt.records.get(S, "deal", record["id"])["stage_entered_at"] == moved["updated_at"]
    assert rt.records.update(S, "deal", record["id"], {"contract": "x"})["stage_entered_at"] == moved["updated_at"]


def _age_open_entry(rt, record_id: str, seconds: int) -> None:
    """Move the record's open stage-history entry ``seconds`` into the past."""
    h = store.stage_history
    with rt.engine.begin() as conn:
        entry = conn.execute(select(h.c.id, h.c.entered_at).where(h.c.record_id == record_id, h.c.left_at.is_(None))).one()
        conn.execute(update(h).where(h.c.id == entry.id).values(entered_at=entry.entered_at - timedelta(seconds=seconds)))


def test_stage_history_records_every_move_with_who_and_how_long(rt):
    mover = user_actor(rt, "mover", ["read", "create", "update", "reopen"])
    record = rt.records.create(S, "deal", {"name": "a"})
    assert history(rt, record["id"]) == [("p_new", "product", None, None, True, True)]
    entries = rt.records.stage_history(S, "deal", record["id"])
    assert entries[0]["entered_at"] == record["stage_entered_at"]

    _age_open_entry(rt, record["id"], 3600)
    quoted = rt.records.update(mover, "deal", record["id"], {"stage": "p_quote", "amount": 1})
    rt.records.update(mover, "deal", record["id"], {"name": "edited", "amount": 2})
    rt.records.update(mover, "deal", record["id"], {"stage": "p_quote"})
    _age_open_entry(rt, record["id"], 90)
    switched = rt.records.update(S, "deal", record["id"], {"business_type": "project", "stage": "j_build"})
    assert history(rt, record["id"]) == [
        ("p_new", "product", None, mover.id, False, False),
        ("p_quote", "product", mover.id, None, False, False),
        ("j_build", "project", None, None, True, True),
    ]
    first, second, third = rt.records.stage_history(S, "deal", record["id"])
    assert first["left_at"] == quoted["stage_entered_at"] == second["entered_at"] + timedelta(seconds=90)
    assert second["left_at"] == third["entered_at"] == switched["stage_entered_at"]
    assert first["seconds_in_stage"] == int((first["left_at"] - first["entered_at"]).total_seconds())
    assert 3600 <= first["seconds_in_stage"] < 3660
    assert second["seconds_in_stage"] == int((second["left_at"] - second["entered_at"]).total_seconds())
    assert 90 <= second["seconds_in_stage"] < 150
    # an update naming the same stage, or not moving at all, adds nothing
    rt.records.update(S, "deal", record["id"], {"stage": "j_build", "name": "x"})
    assert len(rt.records.stage_history(S, "deal", record["id"])) == 3
    # records of a type without stages have no history
    plain = rt.records.create(S, "deal", {"name": "p", "business_type": "plain"})
    assert rt.records.stage_history(S, "deal", plain["id"]) == []
    assert rt.records.stage_history(S, "memo", rt.records.create(S, "memo", {"title": "m"})["id"]) == []


def test_stage_history_is_visible_only_within_read_scope(rt):
    own = user_actor(rt, "own", ["read", "create", "update"], "own", "own")
    mine = rt.records.create(own, "deal", {"name": "mine"})
    other = rt.records.create(S, "deal", {"name": "other"})
    assert history(rt, mine["id"], own) == [("p_new", "product", own.id, None, True, True)]
    with pytest.raises(NotFound):
        rt.records.stage_history(own, "deal", other["id"])
    with pytest.raises(NotFound):
        rt.records.stage_history(own, "deal", "01900000-0000-7000-8000-000000000000")
    blind = user_actor(rt, "blind", ["create"])
    with pytest.raises(Forbidden):
        rt.records.stage_history(blind, "deal", mine["id"])
    rt.security.share_record(S, "deal", other["id"], own.id, "read")
    own = rt.security.authenticate(rt.security.issue_token(S, "again", user_id=own.id)["token"])
    assert history(rt, other["id"], own) == [("p_new", "product", None, None, True, True)]


# -- due records --------------------------------------------------------------------------------
NOW = datetime(2030, 6, 15, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)

DUE = {
    # name: (business type, stage, entered this long before NOW, owned by the "rep" user)
    "new_overdue": ("product", "p_new", 11 * DAY, True),          # expected 10 days
    "new_exactly": ("product", "p_new", 10 * DAY, False),          # due at NOW: overdue (<=)
    "new_second_short": ("product", "p_new", 10 * DAY - timedelta(seconds=1), False),
    "new_eight": ("product", "p_new", 8 * DAY, True),              # due in 2 days
    "new_fresh": ("product", "p_new", timedelta(0), False),         # due in 10 days
    "quote_one": ("product", "p_quote", DAY, False),                # expected 3: due in 2 days
    "quote_late": ("product", "p_quote", 30 * DAY, True),           # overdue
    "lost_old": ("product", "p_lost", 100 * DAY, True),             # closed: never due
    "won_old": ("product", "p_won", 100 * DAY, False),              # closed, no expected days
    "scoping_old": ("project", "j_new", 100 * DAY, True),           # no expected days
    "build_late": ("project", "j_build", 25 * DAY, False),          # expected 20: overdue
    "build_mid": ("project", "j_build", 15 * DAY, True),            # due in 5 days
    "plain": ("plain", None, 100 * DAY, False),                     # no stage
    "deleted_late": ("product", "p_new", 50 * DAY, True),           # in the recycle bin
}


@pytest.fixture
def due(rt):
    rep = user_actor(rt, "rep", ["read", "create", "update"], "own", "own")
    table = rt.catalog().table("deal")
    ids = {}
    for name, (kind, stage_name, age, owned) in DUE.items():
        values = {"name": name, "business_type": kind, "amount": 1, "contract": "C",
                  **({"stage": stage_name} if stage_name else {}), **({"owner_id": rep.id} if owned else {})}
        ids[name] = rt.records.create(S, "deal", values)["id"]
    with rt.engine.begin() as conn:
        for name, (_, stage_name, age, _) in DUE.items():
            conn.execute(update(table).where(table.c.id == ids[name]).values(stage_entered_at=NOW - age if stage_name else None))
    rt.records.delete(S, "deal", ids["deleted_late"])
    return rt, rep


def _due(rt, actor, within: int, now=NOW, object_name="deal") -> set[str]:
    page = rt.records.read_page(actor, object_name, Window(first=100), Selection(["name", "stage"]), stage_due_within=within, now=now)
    assert not page.has_next_page
    return {r["name"] for r in page.records}


def test_due_records_are_those_past_or_near_their_expected_days(due):
    rt, rep = due
    assert _due(rt, S, 0) == {"new_overdue", "new_exactly", "quote_late", "build_late"}
    assert _due(rt, S, 1) == {"new_overdue", "new_exactly", "new_second_short", "quote_late", "build_late"}
    assert _due(rt, S, 2) == {"new_overdue", "new_exactly", "new_second_short", "new_eight", "quote_one", "quote_late", "build_late"}
    assert _due(rt, S, 5) == {"new_overdue", "new_exactly", "new_second_short", "new_eight", "quote_one", "quote_late",
                              "build_late", "build_mid"}
    assert _due(rt, S, 10) == _due(rt, S, 5) | {"new_fresh"}
    assert _due(rt, S, 3650) == _due(rt, S, 10)
    # a second later the almost-due record is overdue
    assert _due(rt, S, 0, NOW + timedelta(seconds=1)) == {"new_overdue", "new_exactly", "new_second_short", "quote_late", "build_late"}
    # far earlier nothing is due yet
    assert _due(rt, S, 0, NOW - 40 * DAY) == set()
    # the caller's read scope applies
    assert _due(rt, rep, 0) == {"new_overdue", "quote_late"}
    assert _due(rt, rep, 2) == {"new_overdue", "new_eight", "quote_late"}
    assert _due(rt, rep, 5) == {"new_overdue", "new_eight", "quote_late", "build_mid"}
    # without the option every live record is read
    page = rt.records.read_page(S, "deal", Window(first=100), Selection(["name"]))
    assert {r["name"] for r in page.records} == set(DUE) - {"deleted_late"}
    # objects without stages have no due records
    rt.records.create(S, "memo", {"title": "m"})
    assert rt.records.read_page(S, "memo", Window(), Selection(["title"]), stage_due_within=0, now=NOW).records == []


def test_due_records_follow_the_stages_expected_days(due):
    rt, _ = due
    rt.metadata.update_business_type(S, "deal", "project", {"stages": [
        stage("j_new", "Scoping", 5, expected_days=30), stage("j_build", "Building", 60),
        stage("j_won", "Delivered", 100, category="won")]})
    assert _due(rt, S, 0) == {"new_overdue", "new_exactly", "quote_late", "scoping_old"}


def test_stage_due_within_is_a_whole_number_of_days(due):
    rt, _ = due
    for bad in (-1, 3651, True, 1.5, "2"):
        with pytest.raises(ValidationFailed) as caught:
            rt.records.read_page(S, "deal", Window(), Selection(["name"]), stage_due_within=bad, now=NOW)
        assert errors(caught.value) == [("OUT_OF_RANGE", "stage_due_within")]
