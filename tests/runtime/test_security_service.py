"""The security core at service level: the org tree, scopes, shares and teams, ownership, field
access and credentials, through ``runtime.security`` and ``runtime.records`` with the Actor that
``authenticate(token)`` gives.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture: a fresh database per test),
except the concurrent org-tree changes at the end: PostgreSQL only (``postgres_url``), since SQLite
writers queue behind ``BEGIN IMMEDIATE`` and cannot interleave.
"""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.metadata.errors import (
    Forbidden,
    InUse,
    LowcodeError,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from lowcode.metadata.store import field_history
from lowcode.runtime import Runtime
from lowcode.runtime.security import store
from lowcode.runtime.security.credentials import token_digest
from sqlalchemy import event, func, select, text, update

S = SYSTEM_ACTOR
PASSWORD = "a long password 1"

SCHEMA = [
    {
        "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text"},
            {"api_name": "secret", "label": "Secret", "type": "text"},
        ],
    },
    {
        "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text"},
            {"api_name": "amount", "label": "Amount", "type": "decimal", "tracked": True, "options": {"precision": 12, "scale": 2}},
            {"api_name": "margin", "label": "Margin", "type": "decimal", "tracked": True, "options": {"precision": 12, "scale": 2}},
            {"api_name": "note", "label": "Stage", "type": "text"},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
        ],
    },
]


# -- helpers ------------------------------------------------------------------------------------
class Org:
    """Builds units, roles, users and memberships through the security service."""

    def __init__(self, rt, schema: bool = True):
        self.rt = rt
        self.sec = rt.security
        self._tokens: dict[str, str] = {}
        if schema:
            rt.metadata.create_objects(S, SCHEMA)

    def unit(self, name: str, parent: dict | None = None) -> dict:
        return self.sec.create_unit(S, name, parent["id"] if parent else None)

    def role(self, name: str, grants: dict | None = None, fields: dict | None = None, administrator: bool = False) -> str:
        self.sec.create_role(S, name, name.title(), administrator=administrator)
        for obj, (actions, read_scope, write_scope) in (grants or {}).items():
            self.sec.set_object_grant(S, name, obj, list(actions), read_scope, write_scope)
        for (obj, field), access in (fields or {}).items():
            self.sec.set_field_grant(S, name, obj, field, access)
        return name

    def user(self, name: str, *memberships: tuple[dict, str], password: str | None = None) -> str:
        user_id = self.sec.create_user(S, {"username": name}, password)["id"]
        for unit, role in memberships:
            self.sec.add_membership(S, user_id, unit["id"], role)
        return user_id

    def token(self, user_id: str) -> str:
        if user_id not in self._tokens:
            self._tokens[user_id] = self.sec.issue_token(S, "tests", user_id=user_id)["token"]
        return self._tokens[user_id]

    def actor(self, user_id: str):
        return self.sec.authenticate(self.token(user_id))

    def deal(self, owner: str, unit: dict, **values) -> str:
        return self.rt.records.create(S, "deal", {"name": "d", **values, "owner_id": owner, "org_unit_id": unit["id"]})["id"]


def errors_of(exc) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.errors]


def count(rt, table_or_name) -> int:
    with rt.engine.connect() as conn:
        if isinstance(table_or_name, str):
            return conn.execute(text(f"SELECT count(*) FROM {table_or_name}")).scalar_one()
        return conn.execute(select(func.count()).select_from(table_or_name)).scalar_one()


def policy_version(rt) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(store.policy_version.c.version)).scalar_one()


def audit_rows(rt) -> list[dict]:
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.audit_log).order_by(store.audit_log.c.id)).mappings()]


def units_snapshot(rt) -> dict:
    t = rt.catalog().table("org_unit")
    with rt.engine.connect() as conn:
        return {str(r.id): (r.parent and str(r.parent), r.path, r.version, r.deleted_at)
                for r in conn.execute(select(t.c.id, t.c.parent, t.c.path, t.c.version, t.c.deleted_at))}


def _table(rt, object_name: str) -> str:
    return rt.catalog().table(object_name).name


def ids(page) -> set[str]:
    return {r["id"] for r in page.records}


class Unchanged:
    """Asserts that a failing call left the security state as it was: no audit entry, the same
    policy version, and the same row counts of the given tables."""

    def __init__(self, rt, *tables):
        self.rt, self.tables = rt, tables

    def __enter__(self):
        self.before = (policy_version(self.rt), len(audit_rows(self.rt)), [count(self.rt, t) for t in self.tables])
        return self

    def __exit__(self, *exc):
        after = (policy_version(self.rt), len(audit_rows(self.rt)), [count(self.rt, t) for t in self.tables])
        assert after == self.before
        return False


# -- the org tree -------------------------------------------------------------------------------
def test_units_nest_with_materialized_paths(runtime):
    org = Org(runtime, schema=False)
    root = org.unit("Group")
    child = org.unit("Europe", root)
    grandchild = org.unit("France", child)
    leaf = org.unit("Paris", grandchild)
    assert root["path"] == f"/{root['id']}/" and root["parent"] is None
    assert child["path"] == f"/{root['id']}/{child['id']}/" and child["parent"] == root["id"]
    assert grandchild["path"] == f"{child['path']}{grandchild['id']}/"
    assert leaf["path"] == f"/{root['id']}/{child['id']}/{grandchild['id']}/{leaf['id']}/"
    assert leaf["parent"] == grandchild["id"] and leaf["name"] == "Paris"
    stored = runtime.records.get(S, "org_unit", leaf["id"])
    assert (stored["path"], stored["parent"]) == (leaf["path"], grandchild["id"])


def test_move_subtree_rewrites_every_descendant_in_one_transaction(runtime):
    org = Org(runtime, schema=False)
    root = org.unit("Group")
    a = org.unit("A", root)
    b = org.unit("B", a)
    c = org.unit("C", b)
    side = org.unit("Side", root)
    other = org.unit("Other")
    before = units_snapshot(runtime)
    version, audits = policy_version(runtime), len(audit_rows(runtime))

    commits = []

    def on_commit(conn):
        commits.append(conn)

    event.listen(runtime.engine, "commit", on_commit)
    try:
        moved = runtime.security.move_unit(S, a["id"], other["id"])
    finally:
        event.remove(runtime.engine, "commit", on_commit)
    assert len(commits) == 1

    assert moved["id"] == a["id"] and moved["parent"] == other["id"]
    assert moved["path"] == f"/{other['id']}/{a['id']}/"
    after = units_snapshot(runtime)
    assert after[a["id"]][:3] == (other["id"], f"/{other['id']}/{a['id']}/", before[a["id"]][2] + 1)
    assert after[b["id"]][:3] == (a["id"], f"/{other['id']}/{a['id']}/{b['id']}/", before[b["id"]][2] + 1)
    assert after[c["id"]][:3] == (b["id"], f"/{other['id']}/{a['id']}/{b['id']}/{c['id']}/", before[c["id"]][2] + 1)
    for untouched in (root, side, other):
        assert after[untouched["id"]] == before[untouched["id"]]
    assert policy_version(runtime) == version + 1
    entries = audit_rows(runtime)[audits:]
    assert [(e["actor_id"], e["action"], e["target"], e["details"]) for e in entries] == [
        (None, "unit.move", f"org_unit:{a['id']}", {"parent_id": other["id"]})]

    # a root (with its subtree) under another root
    runtime.security.move_unit(S, other["id"], root["id"])
    after = units_snapshot(runtime)
    assert after[other["id"]][:2] == (root["id"], f"/{root['id']}/{other['id']}/")
    assert after[c["id"]][1] == f"/{root['id']}/{other['id']}/{a['id']}/{b['id']}/{c['id']}/"

    # back to the top: parent None
    top = runtime.security.move_unit(S, b["id"], None)
    assert (top["parent"], top["path"]) == (None, f"/{b['id']}/")
    after = units_snapshot(runtime)
    assert after[c["id"]][:2] == (b["id"], f"/{b['id']}/{c['id']}/")
    assert after[a["id"]][1] == f"/{root['id']}/{other['id']}/{a['id']}/"

    # the policy sees the new paths: a unit_and_below membership on root reaches c no longer
    runtime.metadata.create_objects(S, SCHEMA)
    org.role("boss", {"deal": (["read"], "unit_and_below", "unit_and_below")})
    boss = org.user("boss", (root, "boss"))
    in_a, in_c = org.deal(boss, a), org.deal(boss, c)
    someone = org.user("someone")
    runtime.records.transfer(S, "deal", in_a, someone, org_unit_id=a["id"])
    runtime.records.transfer(S, "deal", in_c, someone, org_unit_id=c["id"])
    assert ids(runtime.records.query(org.actor(boss), "deal")) == {in_a}


def test_moving_a_unit_below_itself_is_a_cycle_and_changes_nothing(runtime):
    org = Org(runtime, schema=False)
    root = org.unit("Group")
    a = org.unit("A", root)
    b = org.unit("B", a)
    before = units_snapshot(runtime)
    for unit, parent in ((a, a), (a, b), (root, b), (root, root)):
        with Unchanged(runtime, store.audit_log):
            with pytest.raises(ValidationFailed) as failed:
                runtime.security.move_unit(S, unit["id"], parent["id"])
        assert errors_of(failed.value) == [("CYCLE", "parent_id")]
    assert units_snapshot(runtime) == before


def test_unknown_units_are_not_found(runtime):
    org = Org(runtime, schema=False)
    root = org.unit("Group")
    ghost = str(uuid.uuid4())
    before = units_snapshot(runtime)
    with Unchanged(runtime):
        with pytest.raises(NotFound) as missing:
            runtime.security.move_unit(S, ghost, root["id"])
        assert missing.value.field == "id"
        with pytest.raises(NotFound) as missing:
            runtime.security.move_unit(S, root["id"], ghost)
        assert missing.value.field == "parent_id"
        with pytest.raises(NotFound) as missing:
            runtime.security.create_unit(S, "Orphan", ghost)
        assert missing.value.field == "parent_id"
        with pytest.raises(NotFound):
            runtime.security.delete_unit(S, ghost)
        with pytest.raises(ValidationFailed) as invalid:
            runtime.security.move_unit(S, "not-an-id", root["id"])
        assert errors_of(invalid.value) == [("INVALID_VALUE", "id")]
    assert units_snapshot(runtime) == before


def test_delete_unit_refused_while_in_use_and_leaf_delete_works(runtime):
    org = Org(runtime, schema=False)
    org.role("rep")
    root = org.unit("Group")
    a = org.unit("A", root)
    b = org.unit("B", a)
    member = org.user("ann", (b, "rep"))
    with Unchanged(runtime, store.audit_log):
        with pytest.raises(InUse) as in_use:
            runtime.security.delete_unit(S, a["id"])
        assert in_use.value.ctx == {"sub_units": 1, "memberships": 0}
        with pytest.raises(InUse) as in_use:
            runtime.security.delete_unit(S, b["id"])
        assert in_use.value.ctx == {"sub_units": 0, "memberships": 1}
        with pytest.raises(InUse) as in_use:
            runtime.security.delete_unit(S, root["id"])
        assert in_use.value.ctx == {"sub_units": 2, "memberships": 0}

    runtime.security.remove_membership(S, member, b["id"], "rep")
    version, audits = policy_version(runtime), len(audit_rows(runtime))
    runtime.security.delete_unit(S, b["id"])
    assert policy_version(runtime) == version + 1
    assert [(e["action"], e["target"]) for e in audit_rows(runtime)[audits:]] == [("unit.delete", f"org_unit:{b['id']}")]
    with pytest.raises(NotFound):
        runtime.records.get(S, "org_unit", b["id"])
    assert runtime.records.get(S, "org_unit", b["id"], deleted=True)["deleted_at"] is not None
    # deleted sub-units no longer hold their parent
    runtime.security.delete_unit(S, a["id"])
    assert ids(runtime.records.query(S, "org_unit")) == {root["id"]}
    with pytest.raises(NotFound):
        runtime.security.move_unit(S, root["id"], a["id"])


def test_generic_record_api_cannot_shape_the_tree(runtime):
    org = Org(runtime, schema=False)
    org.role("boss", administrator=True)
    root = org.unit("Group")
    a = org.unit("A", root)
    b = org.unit("B")
    admin = org.actor(org.user("root", (root, "boss")))
    assert admin.access.administrator
    before = units_snapshot(runtime)

    with Unchanged(runtime, _table(runtime, "org_unit")):
        with pytest.raises(Forbidden):
            runtime.records.create(admin, "org_unit", {"name": "Rogue"})
        with pytest.raises(Forbidden):
            runtime.records.bulk_create(admin, "org_unit", [{"name": "Rogue"}])
        with pytest.raises(Forbidden):
            runtime.records.delete(admin, "org_unit", a["id"])
        with pytest.raises(Forbidden):
            runtime.records.transfer(admin, "org_unit", a["id"], admin.id)
        with pytest.raises(Forbidden) as refused:
            runtime.records.update(admin, "org_unit", a["id"], {"parent": b["id"]})
        assert errors_of(refused.value) == [("FORBIDDEN", "parent")]
        with pytest.raises(Forbidden) as refused:
            runtime.records.update(admin, "org_unit", a["id"], {"path": "/x/", "parent": None})
        assert sorted(errors_of(refused.value)) == [("FORBIDDEN", "parent"), ("FORBIDDEN", "path")]
        with pytest.raises(Forbidden):
            runtime.records.create(admin, "user", {"username": "rogue"})
    assert units_snapshot(runtime) == before
    assert "path" in runtime.records.field_access(admin, "org_unit").read_only

    # renaming is a plain record edit
    assert runtime.records.update(admin, "org_unit", a["id"], {"name": "Alpha"})["name"] == "Alpha"
    # the platform itself may
    made = runtime.records.create(S, "org_unit", {"name": "Made", "parent": b["id"], "path": "/made/"})
    assert (made["parent"], made["path"]) == (b["id"], "/made/")
    assert runtime.records.update(S, "org_unit", made["id"], {"parent": None})["parent"] is None
    runtime.records.delete(S, "org_unit", made["id"])


# -- scopes -------------------------------------------------------------------------------------
@pytest.fixture
def tree(runtime):
    """root > east > east_sub, root > west; one deal per unit owned by 'other', one owned by each user."""
    org = Org(runtime)
    root = org.unit("Root")
    east = org.unit("East", root)
    east_sub = org.unit("East sub", east)
    west = org.unit("West", root)
    other = org.user("other")
    deals = {name: org.deal(other, unit, name=name) for name, unit in
             (("root", root), ("east", east), ("east_sub", east_sub), ("west", west))}
    return org, {"root": root, "east": east, "east_sub": east_sub, "west": west}, deals, other


ALL_ACTIONS = ["read", "create", "update", "delete", "export", "transfer", "restore"]


def test_a_detail_under_a_master_one_may_read_but_not_change_is_refused_with_that_reason(tree):
    org, units, _, other = tree
    rt = org.rt
    rt.metadata.create_object(S, {"api_name": "note_line", "label": "Note line", "fields": [
        {"api_name": "deal", "label": "Deal", "type": "master_detail", "options": {"target": "deal"}},
        {"api_name": "text", "label": "Text", "type": "text"}]})
    org.role("reader", {"deal": (["read"], "all", "own"), "note_line": (["read", "create"], "all", "all")})
    reader = org.actor(org.user("reader", (units["east"], "reader")))
    theirs = org.deal(other, units["west"])
    with pytest.raises(ValidationFailed) as caught:
        rt.records.create(reader, "note_line", {"deal": theirs, "text": "hello"})
    assert errors_of(caught.value) == [("INVALID_REFERENCE", "deal")]
    assert caught.value.errors[0].message == f"you may read but not change Deal {theirs}, so you may not add records under it"
    missing = str(uuid.uuid4())
    with pytest.raises(ValidationFailed) as caught:
        rt.records.create(reader, "note_line", {"deal": missing})
    assert caught.value.errors[0].message == f"no Deal record with id {missing} exists"


def test_records_the_platform_makes_for_an_owner_belong_to_the_owners_unit(tree):
    org, units, _, other = tree
    rt = org.rt
    org.role("seller", {"deal": (["read", "create"], "unit", "unit")})
    org.role("viewer", {"deal": (["read"], "unit", "unit")})
    seller = org.user("seller", (units["west"], "viewer"), (units["east_sub"], "seller"))
    made = rt.records.bulk_create(S, "deal", [{"name": "a", "owner_id": seller}, {"name": "b", "owner_id": other},
                                              {"name": "c", "owner_id": seller, "org_unit_id": units["west"]["id"]}, {"name": "d"}])
    assert [r["org_unit_id"] for r in made] == [units["east_sub"]["id"], None, units["west"]["id"], None]
    assert {r["name"] for r in rt.records.query(org.actor(seller), "deal", first=100).records} >= {"a", "c"}
    mine = rt.records.create(org.actor(seller), "deal", {"name": "e", "owner_id": other})
    assert mine["org_unit_id"] == units["east_sub"]["id"]


def test_read_and_write_scopes_through_the_record_service(tree):
    org, units, deals, _ = tree
    rt = org.rt
    expected = {
        "own": set(),
        "unit": {"east"},
        "unit_and_below": {"east", "east_sub"},
        "all": {"root", "east", "east_sub", "west"},
    }
    for scope, names in expected.items():
        role = org.role(f"r_{scope}", {"deal": (["read", "update", "delete", "export"], scope, scope)})
        user = org.user(f"u_{scope}", (units["east"], role))
        mine = org.deal(user, units["west"], name="mine")
        actor = org.actor(user)
        visible = ids(rt.records.query(S, "deal", first=100)) if scope == "all" else {deals[n] for n in names} | {mine}
        assert ids(rt.records.query(actor, "deal", first=100)) == visible, scope
        assert [g["count"] for g in rt.records.aggregate(actor, "deal")] == [len(visible)], scope
        for name, deal_id in deals.items():
            if name in names:
                assert rt.records.get(actor, "deal", deal_id)["id"] == deal_id
                assert rt.records.update(actor, "deal", deal_id, {"note": scope})["note"] == scope
            else:
                for call in (lambda: rt.records.get(actor, "deal", deal_id),
                             lambda: rt.records.update(actor, "deal", deal_id, {"note": scope}),
                             lambda: rt.records.delete(actor, "deal", deal_id),
                             lambda: rt.records.history(actor, "deal", deal_id)):
                    with pytest.raises(NotFound):
                        call()
        rt.records.delete(actor, "deal", mine)
        with pytest.raises(NotFound):
            rt.records.get(actor, "deal", mine)
        rt.records.restore(S, "deal", mine)

    # read and write scopes apart: read everything, write only one's own
    org.role("reader_writer", {"deal": (["read", "update", "delete"], "all", "own")})
    user = org.user("rw", (units["east"], "reader_writer"))
    mine = org.deal(user, units["root"])
    actor = org.actor(user)
    assert ids(rt.records.query(actor, "deal", first=100)) == ids(rt.records.query(S, "deal", first=100))
    assert rt.records.get(actor, "deal", deals["east"])["name"] == "east"
    with pytest.raises(NotFound):
        rt.records.update(actor, "deal", deals["east"], {"note": "x"})
    with pytest.raises(NotFound):
        rt.records.delete(actor, "deal", deals["east"])
    assert rt.records.update(actor, "deal", mine, {"note": "mine"})["note"] == "mine"
    # an action no role grants: FORBIDDEN, whatever the record
    with pytest.raises(Forbidden):
        rt.records.transfer(actor, "deal", mine, user)
    with pytest.raises(Forbidden):
        rt.records.create(actor, "deal", {"name": "new"})
    with pytest.raises(Forbidden):
        rt.records.query(actor, "account")


def test_memberships_combine_by_union(tree):
    org, units, deals, _ = tree
    rt = org.rt
    org.role("unit_rep", {"deal": (["read"], "unit", "unit")})
    org.role("below_rep", {"deal": (["read"], "unit_and_below", "own")})
    org.role("own_rep", {"deal": (["read"], "own", "own")})
    org.role("account_only", {"account": (["read"], "all", "all")})
    two_units = org.actor(org.user("two", (units["east"], "unit_rep"), (units["west"], "unit_rep")))
    assert ids(rt.records.query(two_units, "deal")) == {deals["east"], deals["west"]}
    mixed = org.actor(org.user("mixed", (units["root"], "own_rep"), (units["east"], "below_rep")))
    assert ids(rt.records.query(mixed, "deal")) == {deals["east"], deals["east_sub"]}
    nested = org.actor(org.user("nested", (units["east_sub"], "below_rep"), (units["root"], "below_rep")))
    assert ids(rt.records.query(nested, "deal")) == set(deals.values())
    # a membership whose role says nothing about deals adds nothing
    extra = org.actor(org.user("extra", (units["east"], "unit_rep"), (units["root"], "account_only")))
    assert ids(rt.records.query(extra, "deal")) == {deals["east"]}


def test_shares_to_users_and_units(tree):
    org, units, deals, other = tree
    rt = org.rt
    org.role("rep", {"deal": (["read", "update", "delete"], "own", "own")})
    org.role("reader", {"deal": (["read"], "own", "own")})
    org.role("account_only", {"account": (["read"], "all", "all")})
    owner = org.user("owner", (units["east"], "rep"))
    record = org.deal(owner, units["east"], name="shared")
    ann = org.user("ann", (units["east"], "rep"))
    bob = org.user("bob", (units["east_sub"], "rep"))
    carl = org.user("carl", (units["root"], "rep"))
    dora = org.user("dora", (units["west"], "rep"))
    eve = org.user("eve", (units["east"], "reader"))
    finn = org.user("finn", (units["east"], "account_only"))
    owner_actor = org.actor(owner)

    def sees(user) -> bool:
        actor = org.actor(user)
        visible = record in ids(rt.records.query(actor, "deal"))
        try:
            rt.records.get(actor, "deal", record)
            assert visible
        except NotFound:
            assert not visible
        return visible

    def edits(user) -> bool:
        try:
            rt.records.update(org.actor(user), "deal", record, {"note": "edited"})
            return True
        except NotFound:
            return False

    assert not any(sees(u) for u in (ann, bob, carl, dora, eve))
    # someone who may not edit the record may not share it
    runtime = rt
    with Unchanged(runtime, store.record_shares, store.audit_log):
        with pytest.raises(NotFound):
            rt.security.share_record(org.actor(ann), "deal", record, ann, "edit")
        with pytest.raises(NotFound):
            rt.security.share_record(owner_actor, "deal", deals["east"], ann, "read")
        with pytest.raises(NotFound) as missing:
            rt.security.share_record(owner_actor, "deal", record, str(uuid.uuid4()), "read")
        assert missing.value.field == "grantee_id"
        with pytest.raises(ValidationFailed) as invalid:
            rt.security.share_record(owner_actor, "deal", record, ann, "write")
        assert errors_of(invalid.value) == [("INVALID_VALUE", "access")]
        with pytest.raises(Forbidden):
            rt.security.share_record(org.actor(eve), "deal", record, eve, "read")

    # a read share to a user
    version = policy_version(runtime)
    shared = rt.security.share_record(owner_actor, "deal", record, ann, "read")
    assert shared == {"object": "deal", "record_id": record, "grantee_id": ann, "grantee_kind": "user", "access": "read",
                      "created_at": shared["created_at"], "created_by": owner}
    assert shared["created_at"].tzinfo is not None
    assert policy_version(runtime) == version
    assert audit_rows(runtime)[-1]["action"] == "record.share"
    assert sees(ann) and not edits(ann)
    assert not any(sees(u) for u in (bob, carl, dora))
    with pytest.raises(NotFound):
        rt.records.delete(org.actor(ann), "deal", record)
    # an edit share replaces it: update, but never delete
    rt.security.share_record(owner_actor, "deal", record, ann, "edit")
    assert [s["access"] for s in rt.security.sharing(owner_actor, "deal", record)["shares"]] == ["edit"]
    assert sees(ann) and edits(ann)
    with pytest.raises(NotFound):
        rt.records.delete(org.actor(ann), "deal", record)
    # with an edit share, ann may share it on
    rt.security.share_record(org.actor(ann), "deal", record, eve, "edit")
    # shares never grant an action the roles lack: eve reads, may not update; finn may not read deals at all
    assert sees(eve)
    with pytest.raises(Forbidden):
        rt.records.update(org.actor(eve), "deal", record, {"note": "x"})
    rt.security.share_record(owner_actor, "deal", record, finn, "edit")
    with pytest.raises(Forbidden):
        rt.records.get(org.actor(finn), "deal", record)
    with pytest.raises(Forbidden):
        rt.records.query(org.actor(finn), "deal")
    # unshare
    rt.security.unshare_record(owner_actor, "deal", record, ann)
    assert not sees(ann)
    with pytest.raises(NotFound) as missing:
        rt.security.unshare_record(owner_actor, "deal", record, ann)
    assert missing.value.field == "grantee_id"
    rt.security.unshare_record(owner_actor, "deal", record, eve)

    # a share to a unit reaches its members and the units below it, not above, not siblings
    shared = rt.security.share_record(owner_actor, "deal", record, units["east"]["id"], "read")
    assert shared["grantee_kind"] == "unit"
    assert sees(ann) and sees(bob) and sees(eve)
    assert not sees(carl) and not sees(dora)
    assert not edits(ann) and not edits(bob)
    rt.security.share_record(owner_actor, "deal", record, units["east"]["id"], "edit")
    assert edits(bob) and not edits(carl)
    rt.security.unshare_record(owner_actor, "deal", record, units["east"]["id"])
    assert not sees(bob)
    # the aggregate counts what the query returns
    rt.security.share_record(owner_actor, "deal", record, units["west"]["id"], "read")
    assert [g["count"] for g in rt.records.aggregate(org.actor(dora), "deal")] == [1]


def test_teams_widen_like_shares(tree):
    org, units, deals, _ = tree
    rt = org.rt
    org.role("rep", {"deal": (["read", "update"], "own", "own")})
    org.role("reader", {"deal": (["read"], "own", "own")})
    owner = org.user("owner", (units["east"], "rep"))
    record = org.deal(owner, units["east"])
    dora = org.user("dora", (units["west"], "rep"))
    eve = org.user("eve", (units["west"], "reader"))
    owner_actor = org.actor(owner)

    added = rt.security.add_team_member(owner_actor, "deal", record, dora, "read", "reviewer")
    assert added == {"object": "deal", "record_id": record, "user_id": dora, "access": "read", "team_role": "reviewer",
                     "created_at": added["created_at"], "created_by": owner}
    assert ids(rt.records.query(org.actor(dora), "deal")) == {record}
    with pytest.raises(NotFound):
        rt.records.update(org.actor(dora), "deal", record, {"note": "x"})
    with pytest.raises(NotFound):  # sharing takes edit access
        rt.security.add_team_member(org.actor(dora), "deal", record, eve, "read")
    rt.security.add_team_member(owner_actor, "deal", record, dora, "edit")
    assert rt.records.update(org.actor(dora), "deal", record, {"note": "team"})["note"] == "team"
    team = rt.security.sharing(org.actor(dora), "deal", record)["team"]
    assert [(m["user_id"], m["access"], m["team_role"]) for m in team] == [(dora, "edit", "")]
    # a team edit does not give the reader role an update
    rt.security.add_team_member(owner_actor, "deal", record, eve, "edit")
    assert rt.records.get(org.actor(eve), "deal", record)["id"] == record
    with pytest.raises(Forbidden):
        rt.records.update(org.actor(eve), "deal", record, {"note": "x"})
    rt.security.remove_team_member(owner_actor, "deal", record, dora)
    with pytest.raises(NotFound):
        rt.records.get(org.actor(dora), "deal", record)
    with pytest.raises(NotFound) as missing:
        rt.security.remove_team_member(owner_actor, "deal", record, dora)
    assert missing.value.field == "user_id"
    with pytest.raises(NotFound):
        rt.security.add_team_member(owner_actor, "deal", record, str(uuid.uuid4()))
    assert count(rt, store.team_members) == 1


# -- ownership: create and transfer -------------------------------------------------------------
def test_create_takes_the_first_membership_that_may_create(tree):
    org, units, deals, other = tree
    rt = org.rt
    org.role("viewer", {"deal": (["read"], "all", "all")})
    org.role("maker", {"deal": (["read", "create", "update"], "unit", "unit")})
    maker = org.user("maker", (units["west"], "viewer"), (units["east_sub"], "maker"), (units["root"], "maker"))
    assert [m["unit_id"] for m in rt.security.memberships(S, user_id=maker)] == [
        units["west"]["id"], units["east_sub"]["id"], units["root"]["id"]]
    actor = org.actor(maker)
    made = rt.records.create(actor, "deal", {"name": "new"})
    assert (made["owner_id"], made["org_unit_id"], made["created_by"]) == (maker, units["east_sub"]["id"], maker)
    # explicit owner and unit within the create scope
    given = rt.records.create(actor, "deal", {"name": "given", "owner_id": other, "org_unit_id": units["root"]["id"]})
    assert (given["owner_id"], given["org_unit_id"]) == (other, units["root"]["id"])
    # one's own record is within any scope, whatever its unit
    mine = rt.records.create(actor, "deal", {"name": "mine", "org_unit_id": units["west"]["id"]})
    assert (mine["owner_id"], mine["org_unit_id"]) == (maker, units["west"]["id"])

    deal_table = _table(rt, "deal")
    with Unchanged(rt, deal_table, field_history):
        with pytest.raises(Forbidden) as refused:
            rt.records.create(actor, "deal", {"name": "outside", "owner_id": other, "org_unit_id": units["west"]["id"]})
        assert errors_of(refused.value) == [("FORBIDDEN", "owner_id")]
        with pytest.raises(Forbidden) as refused:  # east is not east_sub or root ('unit' scope: those units only)
            rt.records.create(actor, "deal", {"name": "outside", "owner_id": other, "org_unit_id": units["east"]["id"]})
        assert errors_of(refused.value) == [("FORBIDDEN", "owner_id")]
    # update may not move ownership, not even for an administrator
    org.role("chief", administrator=True)
    admin = org.actor(org.user("chief", (units["root"], "chief")))
    for who in (actor, admin):
        with Unchanged(rt, deal_table):
            with pytest.raises(Forbidden) as refused:
                rt.records.update(who, "deal", made["id"], {"owner_id": other})
            assert errors_of(refused.value) == [("FORBIDDEN", "owner_id")]
            with pytest.raises(Forbidden) as refused:
                rt.records.bulk_update(who, "deal", [{"id": made["id"], "values": {"note": "x", "org_unit_id": units["root"]["id"]}}])
            assert errors_of(refused.value) == [("FORBIDDEN", "0.org_unit_id")]
    assert rt.records.get(S, "deal", made["id"])["version"] == 1
    # a user whose roles may not create deals
    with pytest.raises(Forbidden):
        rt.records.create(org.actor(org.user("viewer", (units["east"], "viewer"))), "deal", {"name": "x"})


def test_bulk_create_outside_scope_names_each_row(tree):
    org, units, _, other = tree
    rt = org.rt
    org.role("maker", {"deal": (["read", "create"], "unit", "unit")})
    actor = org.actor(org.user("maker", (units["east"], "maker")))
    with Unchanged(rt, _table(rt, "deal")):
        with pytest.raises(Forbidden) as refused:
            rt.records.bulk_create(actor, "deal", [
                {"name": "ok"},
                {"name": "bad", "owner_id": other, "org_unit_id": units["west"]["id"]},
                {"name": "ok", "owner_id": other},
                {"name": "bad", "owner_id": other, "org_unit_id": units["east_sub"]["id"]},
            ])
    assert errors_of(refused.value) == [("FORBIDDEN", "1.owner_id"), ("FORBIDDEN", "3.owner_id")]


def test_transfer_moves_owner_and_unit_and_writes_history(tree):
    org, units, deals, other = tree
    rt = org.rt
    org.role("mover", {"deal": (["read", "update", "transfer"], "unit", "unit")})
    org.role("rep", {"deal": (["read", "update"], "own", "own")})
    org.role("maker", {"deal": (["read", "create"], "own", "own")})
    boss = org.user("boss", (units["east"], "mover"))
    ann = org.user("ann", (units["west"], "rep"), (units["root"], "rep"))
    bob = org.user("bob", (units["root"], "rep"), (units["east_sub"], "maker"))
    loner = org.user("loner")
    actor = org.actor(boss)

    moved = rt.records.transfer(actor, "deal", deals["east"], ann)
    assert (moved["owner_id"], moved["org_unit_id"], moved["version"]) == (ann, units["west"]["id"], 2)
    assert moved["updated_by"] == boss
    stored = rt.records.get(S, "deal", deals["east"])
    assert (stored["owner_id"], stored["org_unit_id"], stored["version"]) == (ann, units["west"]["id"], 2)
    history = [(h["field"], h["event"], h["old"], h["new"], h["actor_id"])
               for h in rt.records.history(S, "deal", deals["east"]) if h["event"] == "transferred"]
    assert sorted(history) == sorted([
        ("owner_id", "transferred", other, ann, boss),
        ("org_unit_id", "transferred", units["east"]["id"], units["west"]["id"], boss),
    ])
    assert ids(rt.records.query(org.actor(ann), "deal")) == {deals["east"]}
    # now outside the boss's scope
    for call in (lambda: rt.records.get(actor, "deal", deals["east"]),
                 lambda: rt.records.transfer(actor, "deal", deals["east"], boss)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        rt.records.transfer(actor, "deal", deals["west"], boss)
    # the new owner's first membership whose role may create deals; an explicit unit wins
    to_bob = rt.records.transfer(actor, "deal", org.deal(boss, units["east"]), bob)
    assert to_bob["org_unit_id"] == units["east_sub"]["id"]
    explicit = rt.records.transfer(actor, "deal", org.deal(boss, units["east"]), ann, org_unit_id=units["root"]["id"])
    assert (explicit["owner_id"], explicit["org_unit_id"]) == (ann, units["root"]["id"])
    # a new owner without memberships: the unit stays
    kept = rt.records.transfer(actor, "deal", org.deal(boss, units["east"]), loner)
    assert (kept["owner_id"], kept["org_unit_id"]) == (loner, units["east"]["id"])
    # bad owner
    target = org.deal(boss, units["east"])
    with pytest.raises(ValidationFailed) as invalid:
        rt.records.transfer(actor, "deal", target, str(uuid.uuid4()))
    assert errors_of(invalid.value) == [("INVALID_REFERENCE", "owner_id")]
    # the action is needed
    with pytest.raises(Forbidden):
        rt.records.transfer(org.actor(ann), "deal", deals["east"], boss)
    assert rt.records.get(S, "deal", target)["version"] == 1


# -- field access -------------------------------------------------------------------------------
@pytest.fixture
def fields_org(runtime):
    org = Org(runtime)
    root = org.unit("Root")
    east = org.unit("East", root)
    org.role("rep", {"deal": (ALL_ACTIONS, "all", "all"), "account": (["read"], "all", "all")},
             {("deal", "margin"): "hidden", ("deal", "amount"): "read", ("account", "secret"): "hidden"})
    account = runtime.records.create(S, "account", {"name": "Acme", "secret": "s3cret"})["id"]
    deal = runtime.records.create(S, "deal", {"name": "big", "amount": "100", "margin": "7", "account": account})["id"]
    return org, root, east, account, deal


def test_hidden_fields_read_as_none(fields_org):
    org, _, east, account, deal = fields_org
    rt = org.rt
    ann = org.user("ann", (east, "rep"))
    actor = org.actor(ann)
    access = rt.records.field_access(actor, "deal")
    assert access.hidden == frozenset({"margin"})
    assert access.read_only == frozenset({"margin", "amount"})

    got = rt.records.get(actor, "deal", deal)
    assert (got["margin"], got["amount"], got["name"]) == (None, Decimal("100.00"), "big")
    assert rt.records.get(actor, "deal", deal, fields=["margin"]) == {"id": deal, "version": 1, "margin": None}
    assert [(r["id"], r["margin"]) for r in rt.records.query(actor, "deal").records] == [(deal, None)]
    assert rt.records.get(actor, "account", account)["secret"] is None
    made = rt.records.create(actor, "deal", {"name": "mine"})
    assert made["margin"] is None
    bulk = rt.records.bulk_create(actor, "deal", [{"name": "b1"}, {"name": "b2"}])
    assert [r["margin"] for r in bulk] == [None, None]
    rt.records.update(S, "deal", made["id"], {"margin": "3"})
    assert rt.records.update(actor, "deal", made["id"], {"name": "renamed"})["margin"] is None
    assert rt.records.bulk_update(actor, "deal", [{"id": made["id"], "values": {"note": "s"}}])[0]["margin"] is None
    assert rt.records.transfer(actor, "deal", made["id"], ann)["margin"] is None
    assert rt.records.get(S, "deal", made["id"])["margin"] == Decimal("3.00")
    assert rt.records.restore(actor, "deal", _deleted(rt, actor, made["id"]))["margin"] is None


def _deleted(rt, actor, record_id):
    rt.records.delete(actor, "deal", record_id)
    return record_id


def test_uses_of_hidden_fields_are_forbidden(fields_org):
    org, _, east, _, _ = fields_org
    rt = org.rt
    actor = org.actor(org.user("ann", (east, "rep")))

    def forbidden(call) -> list[tuple[str, str]]:
        with pytest.raises(Forbidden) as refused:
            call()
        return errors_of(refused.value)

    assert forbidden(lambda: rt.records.query(actor, "deal", filter={"margin": {"gt": "1"}})) == [("FORBIDDEN", "filter.margin")]
    assert forbidden(lambda: rt.records.query(actor, "deal", filter={"or": [{"name": {"eq": "x"}}, {"margin": {"is_null": True}}]})) == [
        ("FORBIDDEN", "filter.or.1.margin")]
    assert forbidden(lambda: rt.records.query(actor, "deal", order_by=["-margin"])) == [("FORBIDDEN", "order_by.0")]
    assert forbidden(lambda: rt.records.query(actor, "deal", order_by=["name", "margin"])) == [("FORBIDDEN", "order_by.1")]
    assert forbidden(lambda: rt.records.aggregate(actor, "deal", group_by=[{"field": "margin"}])) == [("FORBIDDEN", "group_by.0.field")]
    assert forbidden(lambda: rt.records.aggregate(actor, "deal", measures=[("sum", "margin")])) == [("FORBIDDEN", "measures.0")]
    assert forbidden(lambda: rt.records.aggregate(actor, "deal", filter={"margin": {"gt": "1"}})) == [("FORBIDDEN", "filter.margin")]
    assert forbidden(lambda: rt.records.query(actor, "deal", filter={"account": {"secret": {"eq": "s3cret"}}})) == [
        ("FORBIDDEN", "filter.account.secret")]
    # visible fields still work
    assert len(rt.records.query(actor, "deal", filter={"account": {"name": {"eq": "Acme"}}}, order_by=["-amount"]).records) == 1
    assert rt.records.aggregate(actor, "deal", measures=[("sum", "amount")])[0]["count"] == 1


def test_writing_hidden_or_read_only_fields_is_forbidden(fields_org):
    org, _, east, _, deal = fields_org
    rt = org.rt
    actor = org.actor(org.user("ann", (east, "rep")))
    deal_table = _table(rt, "deal")
    with Unchanged(rt, deal_table, field_history):
        with pytest.raises(Forbidden) as refused:
            rt.records.create(actor, "deal", {"name": "x", "margin": "1", "amount": "2"})
        assert sorted(errors_of(refused.value)) == [("FORBIDDEN", "amount"), ("FORBIDDEN", "margin")]
        with pytest.raises(Forbidden) as refused:
            rt.records.bulk_create(actor, "deal", [{"name": "ok"}, {"name": "x", "margin": "1"}, {"amount": "3"}])
        assert errors_of(refused.value) == [("FORBIDDEN", "1.margin"), ("FORBIDDEN", "2.amount")]
        with pytest.raises(Forbidden) as refused:
            rt.records.update(actor, "deal", deal, {"name": "renamed", "margin": "9"})
        assert errors_of(refused.value) == [("FORBIDDEN", "margin")]
        with pytest.raises(Forbidden) as refused:
            rt.records.bulk_update(actor, "deal", [{"id": deal, "values": {"name": "y"}}, {"id": deal, "values": {"amount": "1"}}])
        assert errors_of(refused.value) == [("FORBIDDEN", "1.amount")]
    got = rt.records.get(S, "deal", deal)
    assert (got["name"], got["amount"], got["margin"], got["version"]) == ("big", Decimal("100.00"), Decimal("7.00"), 1)


def test_field_access_is_the_union_across_memberships(fields_org):
    org, root, east, _, deal = fields_org
    rt = org.rt
    org.role("analyst", {"deal": (["read"], "all", "all")}, {("deal", "amount"): "hidden"})
    org.role("editor", {"deal": (["read", "update"], "own", "own")}, {("deal", "margin"): "hidden"})
    bob = org.actor(org.user("bob", (east, "rep"), (root, "analyst")))
    access = rt.records.field_access(bob, "deal")
    # margin: hidden by rep, visible to analyst; amount: hidden by analyst, read-only to rep
    assert access.hidden == frozenset()
    assert access.read_only == frozenset({"margin", "amount"})
    got = rt.records.get(bob, "deal", deal)
    assert (got["margin"], got["amount"]) == (Decimal("7.00"), Decimal("100.00"))
    assert len(rt.records.query(bob, "deal", filter={"margin": {"gt": "1"}}, order_by=["margin"]).records) == 1
    # write access: a role granting update that leaves amount at edit makes it editable
    carl = org.actor(org.user("carl", (east, "rep"), (root, "editor")))
    assert rt.records.field_access(carl, "deal") == type(access)(hidden=frozenset({"margin"}), read_only=frozenset({"margin"}))
    mine = rt.records.create(carl, "deal", {"name": "c", "amount": "5"})
    assert mine["amount"] == Decimal("5.00") and mine["margin"] is None


def test_history_leaves_out_hidden_fields(fields_org):
    org, _, east, _, deal = fields_org
    rt = org.rt
    rt.records.update(S, "deal", deal, {"amount": "150", "margin": "9"})
    actor = org.actor(org.user("ann", (east, "rep")))
    seen = [(h["field"], h["event"]) for h in rt.records.history(actor, "deal", deal)]
    assert ("amount", "updated") in seen and ("margin", "updated") not in seen
    assert {f for f, _ in seen} <= {None, "amount"}
    everything = [(h["field"], h["event"]) for h in rt.records.history(S, "deal", deal)]
    assert ("margin", "updated") in everything


# -- credentials --------------------------------------------------------------------------------
def test_sign_in_failures_are_limited_per_username_and_client(runtime):
    sec = runtime.security
    sec.create_user(S, {"username": "ann"}, PASSWORD)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            sec.sign_in("ann", "wrong password!", client="10.0.0.1")
    with pytest.raises(RateLimited) as limited:
        sec.sign_in("Ann", PASSWORD, client="10.0.0.1")
    assert 0 < limited.value.ctx["retry_after"] <= 900
    # another client is not blocked
    signed = sec.sign_in("ann", PASSWORD, client="10.0.0.2")
    assert signed["token"].startswith("lct_") and signed["kind"] == "session"
    assert sec.authenticate(signed["token"]).name == "ann"
    # a success resets the count
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            sec.sign_in("ann", "wrong password!", client="10.0.0.3")
    sec.sign_in("ann", PASSWORD, client="10.0.0.3")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            sec.sign_in("ann", "wrong password!", client="10.0.0.3")
    # unknown users count too
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            sec.sign_in("nobody", PASSWORD, client="c")
    with pytest.raises(RateLimited):
        sec.sign_in("nobody", PASSWORD, client="c")


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_concurrent_guesses_cannot_outrun_the_limit(database_url, redis_url, shared):
    """Attempts are counted before the password is checked: twenty threads guessing at once get
    at most five password checks between them."""
    runtime = Runtime.connect(database_url, redis_url if shared else None).install()
    try:
        runtime.security.create_user(S, {"username": "ann"}, PASSWORD)
        outcomes: list[str] = []
        lock = threading.Lock()

        def guess() -> None:
            for _ in range(2):
                try:
                    runtime.security.sign_in("ann", "wrong password!", client="10.9.9.9")
                    outcome = "signed in"
                except Unauthenticated:
                    outcome = "checked"
                except RateLimited:
                    outcome = "limited"
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=guess) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("checked") == 5
        assert outcomes.count("limited") == 35
    finally:
        runtime.close()


def test_authenticate_rejects_bad_tokens(runtime):
    org = Org(runtime, schema=False)
    sec = runtime.security
    users = {name: org.user(name) for name in ("live", "revoked", "expired", "deleted", "inactive")}
    tokens = {name: sec.issue_token(S, "t", user_id=user_id) for name, user_id in users.items()}
    for name in users:
        assert sec.authenticate(tokens[name]["token"]).id == users[name]

    sec.revoke_token(S, tokens["revoked"]["id"])
    with runtime.engine.begin() as conn:
        conn.execute(update(store.tokens).where(store.tokens.c.id == tokens["expired"]["id"])
                     .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    runtime.records.delete(S, "user", users["deleted"])
    runtime.records.update(S, "user", users["inactive"], {"active": False})

    for name, message in (("revoked", "revoked"), ("expired", "expired"), ("deleted", "deleted"), ("inactive", "deactivated")):
        with pytest.raises(Unauthenticated) as refused:
            sec.authenticate(tokens[name]["token"])
        assert message in refused.value.message, name
    for unknown in ("lct_unknown", "", tokens["live"]["token"] + "x"):
        with pytest.raises(Unauthenticated):
            sec.authenticate(unknown)
    assert sec.authenticate(tokens["live"]["token"]).name == "live"
    # delete_user revokes at once and drops memberships
    org.role("rep")
    unit = org.unit("U")
    sec.add_membership(S, users["live"], unit["id"], "rep")
    sec.delete_user(S, users["live"])
    with pytest.raises(Unauthenticated):
        sec.authenticate(tokens["live"]["token"])
    assert sec.memberships(S, user_id=users["live"]) == []
    # expiry must lie ahead
    with pytest.raises(ValidationFailed):
        sec.issue_token(S, "t", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1), user_id=users["inactive"])
    # sign-in of an inactive user
    runtime.records.update(S, "user", users["inactive"], {"active": True})
    sec.set_password(S, users["inactive"], PASSWORD)
    runtime.records.update(S, "user", users["inactive"], {"active": False})
    with pytest.raises(Unauthenticated):
        sec.sign_in("inactive", PASSWORD)


def test_set_password_by_the_user_needs_the_current_one_and_ends_sessions(runtime):
    org = Org(runtime, schema=False)
    sec = runtime.security
    ann = org.user("ann", password=PASSWORD)
    bob = org.user("bob")
    session = sec.sign_in("ann", PASSWORD)["token"]
    api = sec.issue_token(S, "api", user_id=ann)["token"]
    actor = sec.authenticate(session)

    with Unchanged(runtime, store.credentials):
        with pytest.raises(ValidationFailed) as invalid:
            sec.set_password(actor, ann, "a new long password")
        assert errors_of(invalid.value) == [("INVALID_VALUE", "current_password")]
        with pytest.raises(ValidationFailed) as invalid:
            sec.set_password(actor, ann, "a new long password", current_password="not it at all")
        assert errors_of(invalid.value) == [("INVALID_VALUE", "current_password")]
        with pytest.raises(Forbidden):
            sec.set_password(actor, bob, "a new long password", current_password=PASSWORD)
        with pytest.raises(ValidationFailed) as invalid:
            sec.set_password(actor, ann, "short", current_password=PASSWORD)
        assert errors_of(invalid.value) == [("INVALID_VALUE", "password")]
    assert sec.authenticate(session).id == ann

    sec.set_password(actor, ann, "a new long password", current_password=PASSWORD)
    with pytest.raises(Unauthenticated):
        sec.authenticate(session)
    assert sec.authenticate(api).id == ann  # API tokens are not sessions
    with pytest.raises(Unauthenticated):
        sec.sign_in("ann", PASSWORD, client="x")
    assert sec.sign_in("ann", "a new long password", client="x")["user_id"] == ann
    # an administrator needs no current password
    sec.set_password(S, bob, "bobs long password")
    assert audit_rows(runtime)[-1]["action"] == "user.password"


def test_tokens_are_listed_without_plain_values(runtime):
    org = Org(runtime, schema=False)
    sec = runtime.security
    ann, bob = org.user("ann"), org.user("bob")
    first = sec.issue_token(S, "laptop", user_id=ann)
    actor = sec.authenticate(first["token"])
    second = sec.issue_token(actor, "ci", expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    assert second["user_id"] == ann and second["kind"] == "api"
    listed = sec.tokens(actor)
    assert [t["id"] for t in listed] == [first["id"], second["id"]]
    assert set(listed[0]) == {"id", "name", "kind", "hint", "created_at", "expires_at", "revoked_at", "last_used_at"}
    assert [t["hint"] for t in listed] == ["lct_…" + first["token"][-4:], "lct_…" + second["token"][-4:]]
    assert first["token"] not in repr(listed) and second["token"] not in repr(listed)
    assert listed[0]["last_used_at"] is not None and listed[1]["last_used_at"] is None
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(store.tokens.c.token_hash)).scalars().all()
    assert sorted(stored) == sorted([token_digest(first["token"]), token_digest(second["token"])])
    assert sec.tokens(S, user_id=ann) == listed
    with pytest.raises(Forbidden):
        sec.tokens(actor, user_id=bob)
    with pytest.raises(Forbidden):
        sec.issue_token(actor, "for bob", user_id=bob)
    # revoking someone else's token: not found
    bobs = sec.issue_token(S, "bob", user_id=bob)
    with pytest.raises(NotFound):
        sec.revoke_token(actor, bobs["id"])
    sec.revoke_token(actor, second["id"])
    assert sec.tokens(actor)[1]["revoked_at"] is not None
    assert sec.authenticate(bobs["token"]).id == bob


# -- the org tree under concurrent changes (PostgreSQL: writers do not queue there) -------------
def tree_problems(rt) -> list[str]:
    """Units whose stored path is not their parent's path plus their id, and cycles."""
    units = {k: v for k, v in units_snapshot(rt).items() if v[3] is None}
    problems = []
    for unit_id, (parent, path, _, _) in units.items():
        expected = (units[parent][1] if parent in units else "/") + f"{unit_id}/"
        if path != expected:
            problems.append(f"{unit_id}: path {path} but parent's path gives {expected}")
        seen, cursor = set(), unit_id
        while cursor is not None and cursor in units:
            if cursor in seen:
                problems.append(f"{unit_id}: cycle")
                break
            seen.add(cursor)
            cursor = units[cursor][0]
    return problems


class Pause:
    """Holds the first statement of one thread that starts with ``start`` and holds ``needle`` until released."""

    def __init__(self, engine, thread_name: str, start: str, needle: str):
        self.engine, self.thread_name, self.start, self.needle = engine, thread_name, start, needle
        self.reached, self.release = threading.Event(), threading.Event()
        event.listen(engine, "before_cursor_execute", self._hook)

    def _hook(self, conn, cursor, statement, *args):
        if threading.current_thread().name == self.thread_name and not self.reached.is_set() \
                and statement.lstrip().startswith(self.start) and self.needle in statement:
            self.reached.set()
            self.release.wait(timeout=20)

    def close(self, threads):
        self.release.set()
        for thread in threads:
            thread.join(timeout=30)
        event.remove(self.engine, "before_cursor_execute", self._hook)


def waiting_on_locks(rt) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar_one()


def run_in_thread(name: str, call, outcome: dict) -> threading.Thread:
    def target():
        try:
            outcome[name] = call()
        except Exception as exc:
            outcome[name] = exc
    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def _wait(condition, seconds=10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_unit_created_under_a_unit_being_moved_gets_the_new_path(postgres_url):
    """create_unit reads the parent's path without a lock; a move of the parent committing
    meanwhile must not leave the new unit with the parent's old path."""
    rt = Runtime.connect(postgres_url).install()
    try:
        org = Org(rt, schema=False)
        root, other = org.unit("Root"), org.unit("Other")
        a = org.unit("A", root)
        unit_table = _table(rt, "org_unit")
        pause = Pause(rt.engine, "mover", "UPDATE", unit_table)
        outcome: dict = {}
        threads = [run_in_thread("mover", lambda: rt.security.move_unit(S, a["id"], other["id"]), outcome)]
        try:
            assert pause.reached.wait(timeout=10)
            threads.append(run_in_thread("creator", lambda: rt.security.create_unit(S, "Child", a["id"]), outcome))
            _wait(lambda: waiting_on_locks(rt) >= 1 or not threads[1].is_alive(), 5)
        finally:
            pause.close(threads)
        assert not isinstance(outcome["mover"], Exception), outcome["mover"]
        assert tree_problems(rt) == []
    finally:
        rt.close()


def test_crosswise_moves_never_make_a_cycle_nor_fail_raw(postgres_url):
    """A under B and B under A at once: one may win, the other must fail as a platform error
    (CYCLE or CONFLICT), never as a raw database error."""
    rt = Runtime.connect(postgres_url).install()
    try:
        org = Org(rt, schema=False)
        root = org.unit("Root")
        a, b = org.unit("A", root), org.unit("B", root)
        pause = Pause(rt.engine, "first", "SELECT", "FOR SHARE")
        outcome: dict = {}
        threads = [run_in_thread("first", lambda: rt.security.move_unit(S, a["id"], b["id"]), outcome)]
        try:
            assert pause.reached.wait(timeout=10)
            threads.append(run_in_thread("second", lambda: rt.security.move_unit(S, b["id"], a["id"]), outcome))
            _wait(lambda: waiting_on_locks(rt) >= 1 or not threads[1].is_alive(), 5)
        finally:
            pause.close(threads)
        failures = [v for v in outcome.values() if isinstance(v, Exception)]
        assert len(failures) <= 1
        assert [f"{type(f).__name__}: {str(f)[:60]}" for f in failures if not isinstance(f, LowcodeError)] == []
        assert tree_problems(rt) == []
    finally:
        rt.close()


def test_membership_added_while_its_unit_is_deleted(postgres_url):
    """delete_unit counts the memberships, add_membership reads the unit without a lock: both must
    not succeed (a membership in a deleted unit)."""
    rt = Runtime.connect(postgres_url).install()
    try:
        org = Org(rt, schema=False)
        org.role("rep")
        unit = org.unit("Doomed")
        ann = org.user("ann")
        pause = Pause(rt.engine, "deleter", "UPDATE", _table(rt, "org_unit"))
        outcome: dict = {}
        threads = [run_in_thread("deleter", lambda: rt.security.delete_unit(S, unit["id"]), outcome)]
        try:
            assert pause.reached.wait(timeout=10)
            threads.append(run_in_thread("adder", lambda: rt.security.add_membership(S, ann, unit["id"], "rep"), outcome))
            _wait(lambda: waiting_on_locks(rt) >= 1 or not threads[1].is_alive(), 5)
        finally:
            pause.close(threads)
        failures = {k: v for k, v in outcome.items() if isinstance(v, Exception)}
        assert len(failures) == 1 and all(isinstance(f, LowcodeError) for f in failures.values()), outcome
        deleted = rt.records.get(S, "org_unit", unit["id"], deleted=True) if "deleter" not in failures else None
        assert deleted is None or rt.security.memberships(S, unit_id=unit["id"]) == []
    finally:
        rt.close()


def test_membership_added_while_its_role_is_deleted(postgres_url):
    """delete_role counts the holders, add_membership checks the role without a lock: the loser
    must fail as a platform error (IN_USE / NOT_FOUND), not as a raw foreign-key violation."""
    rt = Runtime.connect(postgres_url).install()
    try:
        org = Org(rt, schema=False)
        org.role("rep")
        unit = org.unit("U")
        ann = org.user("ann")
        pause = Pause(rt.engine, "deleter", "DELETE", "lc_role")
        outcome: dict = {}
        threads = [run_in_thread("deleter", lambda: rt.security.delete_role(S, "rep"), outcome)]
        try:
            assert pause.reached.wait(timeout=10)
            threads.append(run_in_thread("adder", lambda: rt.security.add_membership(S, ann, unit["id"], "rep"), outcome))
            _wait(lambda: waiting_on_locks(rt) >= 1 or not threads[1].is_alive(), 5)
        finally:
            pause.close(threads)
        failures = {k: v for k, v in outcome.items() if isinstance(v, Exception)}
        assert len(failures) == 1, outcome
        assert {k: type(f).__name__ for k, f in failures.items() if not isinstance(f, LowcodeError)} == {}
    finally:
        rt.close()
