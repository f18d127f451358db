"""Roles, grants and memberships as policy: validation, the audit log and the policy version, and
the per-process PolicyStore (Casbin) that answers ``UserAccess`` per user and version.

Every test runs on SQLite and PostgreSQL (the ``runtime`` fixture: a fresh database per test);
the Redis tests also need ``LOWCODE_TEST_REDIS_URL``.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from lowcode.metadata import SYSTEM_ACTOR
from lowcode.metadata.errors import (
    Forbidden,
    InUse,
    NotFound,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from lowcode.runtime import Runtime
from lowcode.runtime.security import store
from lowcode.runtime.security.grants import ACTIONS, UserAccess
from sqlalchemy import event, select

S = SYSTEM_ACTOR

SCHEMA = [
    {
        "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
        "fields": [{"api_name": "name", "label": "Name", "type": "text"}],
    },
    {
        "api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text"},
            {"api_name": "amount", "label": "Amount", "type": "decimal", "options": {"precision": 12, "scale": 2}},
        ],
    },
]
SECURITY_TABLES = (store.roles, store.object_grants, store.field_grants, store.memberships, store.audit_log)


# -- helpers ------------------------------------------------------------------------------------
def errors_of(exc) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.errors]


def policy_version(rt) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(store.policy_version.c.version)).scalar_one()


def audit_rows(rt) -> list[dict]:
    with rt.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.audit_log).order_by(store.audit_log.c.id)).mappings()]


def rows(rt, table) -> list[tuple]:
    with rt.engine.connect() as conn:
        return sorted(tuple(str(v) for v in r) for r in conn.execute(select(table)))


def state(rt) -> tuple:
    """Everything a failing change must leave as it was."""
    return policy_version(rt), [rows(rt, t) for t in SECURITY_TABLES]


def setup_schema(rt) -> None:
    rt.metadata.create_objects(S, SCHEMA)


def new_user(rt, name: str, *memberships: tuple[str, str]) -> str:
    user_id = rt.security.create_user(S, {"username": name})["id"]
    for unit_id, role in memberships:
        rt.security.add_membership(S, user_id, unit_id, role)
    return user_id


def token_for(rt, user_id: str) -> str:
    return rt.security.issue_token(S, "tests", user_id=user_id)["token"]


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- validation ---------------------------------------------------------------------------------
def test_role_and_grant_validation(runtime):
    setup_schema(runtime)
    sec = runtime.security
    sec.create_role(S, "rep", "Rep")
    before = state(runtime)

    def refused(error, call) -> list[tuple[str, str | None]]:
        with pytest.raises(error) as caught:
            call()
        assert state(runtime) == before
        return errors_of(caught.value)

    assert refused(ValidationFailed, lambda: sec.create_role(S, "Bad Name", "Bad")) == [("INVALID_NAME", "name")]
    assert refused(ValidationFailed, lambda: sec.create_role(S, "9lives", "Cat")) == [("INVALID_NAME", "name")]
    assert refused(ValidationFailed, lambda: sec.create_role(S, "fine", " ")) == [("INVALID_VALUE", "label")]
    assert refused(ValidationFailed, lambda: sec.create_role(S, 7, None)) == [("INVALID_NAME", "name"), ("INVALID_VALUE", "label")]
    assert refused(ValidationFailed, lambda: sec.create_role(S, "rep", "Again")) == [("DUPLICATE_VALUE", "name")]
    assert refused(ValidationFailed, lambda: sec.update_role(S, "rep", label="")) == [("INVALID_VALUE", "label")]

    assert refused(ValidationFailed, lambda: sec.set_object_grant(S, "rep", "nothing", ["read"], "all", "all")) == [
        ("UNKNOWN_OBJECT", "object")]
    assert refused(ValidationFailed, lambda: sec.set_object_grant(S, "rep", "deal", ["read", "fly", "*"], "all", "all")) == [
        ("INVALID_VALUE", "actions.1"), ("INVALID_VALUE", "actions.2")]
    assert refused(ValidationFailed, lambda: sec.set_object_grant(S, "rep", "deal", "read", "all", "all")) == [
        ("INVALID_TYPE", "actions")]
    assert refused(ValidationFailed, lambda: sec.set_object_grant(S, "rep", "deal", ["read"], "everyone", "team")) == [
        ("INVALID_VALUE", "read_scope"), ("INVALID_VALUE", "write_scope")]
    assert refused(ValidationFailed, lambda: sec.set_object_grant(S, "rep", "nothing", [1], "x", "own")) == [
        ("UNKNOWN_OBJECT", "object"), ("INVALID_TYPE", "actions"), ("INVALID_VALUE", "read_scope")]

    assert refused(ValidationFailed, lambda: sec.set_field_grant(S, "rep", "nothing", "name", "hidden")) == [("UNKNOWN_OBJECT", "object")]
    assert refused(ValidationFailed, lambda: sec.set_field_grant(S, "rep", "deal", "nothing", "hidden")) == [("UNKNOWN_FIELD", "field")]
    assert refused(ValidationFailed, lambda: sec.set_field_grant(S, "rep", "deal", "id", "hidden")) == [("INVALID_VALUE", "field")]
    assert refused(ValidationFailed, lambda: sec.set_field_grant(S, "rep", "deal", "version", "read")) == [("INVALID_VALUE", "field")]
    assert refused(ValidationFailed, lambda: sec.set_field_grant(S, "rep", "deal", "amount", "write")) == [("INVALID_VALUE", "access")]

    unit = sec.create_unit(S, "Root")["id"]
    user = new_user(runtime, "ann")
    before = state(runtime)
    for call in (lambda: sec.set_object_grant(S, "ghost", "deal", ["read"], "all", "all"),
                 lambda: sec.set_field_grant(S, "ghost", "deal", "amount", "hidden"),
                 lambda: sec.update_role(S, "ghost", label="Ghost"),
                 lambda: sec.delete_role(S, "ghost"),
                 lambda: sec.role(S, "ghost"),
                 lambda: sec.add_membership(S, user, unit, "ghost"),
                 lambda: sec.remove_membership(S, user, unit, "rep"),
                 lambda: sec.add_membership(S, str(uuid.uuid4()), unit, "rep"),
                 lambda: sec.add_membership(S, user, str(uuid.uuid4()), "rep")):
        refused(NotFound, call)

    # non-administrators manage nothing
    rep_unit_user = new_user(runtime, "bob", (unit, "rep"))
    bob = sec.authenticate(token_for(runtime, rep_unit_user))
    before = state(runtime)
    for call in (lambda: sec.create_role(bob, "mine", "Mine"),
                 lambda: sec.set_object_grant(bob, "rep", "deal", ["read"], "all", "all"),
                 lambda: sec.set_field_grant(bob, "rep", "deal", "amount", "edit"),
                 lambda: sec.add_membership(bob, rep_unit_user, unit, "administrator"),
                 lambda: sec.create_unit(bob, "Mine"),
                 lambda: sec.create_user(bob, {"username": "eve"}),
                 lambda: sec.audit(bob)):
        refused(Forbidden, call)


def test_grants_are_normalised_and_replaced(runtime):
    setup_schema(runtime)
    sec = runtime.security
    sec.create_role(S, "rep", "Rep", description="Sells")
    role = sec.set_object_grant(S, "rep", "deal", ["update", "read", "read", "create"], "unit", "own")
    assert role["objects"] == [{"object": "deal", "actions": ["read", "create", "update"], "read_scope": "unit", "write_scope": "own",
                                "business_types": []}]
    role = sec.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
    assert role["objects"] == [{"object": "deal", "actions": ["read"], "read_scope": "all", "write_scope": "all", "business_types": []}]
    role = sec.set_object_grant(S, "rep", "*", ["read", "export"], "all", "own")
    assert [g["object"] for g in role["objects"]] == ["*", "deal"]
    role = sec.set_field_grant(S, "rep", "deal", "amount", "hidden")
    assert role["fields"] == [{"object": "deal", "field": "amount", "access": "hidden"}]
    role = sec.set_field_grant(S, "rep", "deal", "amount", "read")
    assert role["fields"] == [{"object": "deal", "field": "amount", "access": "read"}]
    role = sec.set_field_grant(S, "rep", "deal", "amount", "edit")
    assert role["fields"] == []
    role = sec.set_object_grant(S, "rep", "deal", [], "own", "own")
    assert role == {**role, "name": "rep", "label": "Rep", "description": "Sells", "administrator": False,
                    "objects": [{"object": "*", "actions": ["read", "export"], "read_scope": "all", "write_scope": "own", "business_types": []}]}
    assert [r["name"] for r in sec.roles(S)] == ["administrator", "rep"]
    assert sec.role(S, "administrator")["administrator"] is True


def test_role_delete_refused_while_held_and_administrator_protected(runtime):
    setup_schema(runtime)
    sec = runtime.security
    unit = sec.create_unit(S, "Root")["id"]
    sec.create_role(S, "rep", "Rep")
    sec.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
    sec.set_field_grant(S, "rep", "deal", "amount", "hidden")
    ann = new_user(runtime, "ann", (unit, "rep"))
    bob = new_user(runtime, "bob", (unit, "rep"))
    admin = new_user(runtime, "root", (unit, "administrator"))
    admin_actor = runtime.security.authenticate(token_for(runtime, admin))
    before = state(runtime)
    with pytest.raises(InUse) as in_use:
        sec.delete_role(S, "rep")
    assert in_use.value.ctx == {"memberships": 2}
    with pytest.raises(Forbidden):
        sec.delete_role(S, "administrator")
    with pytest.raises(Forbidden):
        sec.update_role(S, "administrator", administrator=False)
    with pytest.raises(Forbidden):
        sec.update_role(admin_actor, "administrator", label="Boss", administrator=False)
    assert state(runtime) == before
    assert sec.role(S, "administrator")["label"] == "Administrator"
    assert sec.update_role(S, "administrator", label="Boss", administrator=True)["administrator"] is True
    assert sec.authenticate(token_for(runtime, admin)).access.administrator

    sec.remove_membership(S, ann, unit, "rep")
    with pytest.raises(InUse) as in_use:
        sec.delete_role(S, "rep")
    assert in_use.value.ctx == {"memberships": 1}
    sec.remove_membership(S, bob, unit, "rep")
    sec.delete_role(S, "rep")
    assert [r["name"] for r in sec.roles(S)] == ["administrator"]
    for table in (store.object_grants, store.field_grants):
        assert rows(runtime, table) == []
    # a new role of the same name starts empty
    assert sec.create_role(S, "rep", "Rep")["objects"] == []
    # promoting a role makes its holders administrators at once
    sec.add_membership(S, ann, unit, "rep")
    token = token_for(runtime, ann)
    assert not sec.authenticate(token).access.administrator
    sec.update_role(S, "rep", administrator=True)
    assert sec.authenticate(token).access.administrator
    assert runtime.records.create(sec.authenticate(token), "deal", {"name": "x"})["owner_id"] == ann


# -- audit and version --------------------------------------------------------------------------
def test_every_change_is_audited_once_and_raises_the_version_once(runtime):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    admin_id = new_user(runtime, "root", (root, "administrator"))
    admin = sec.authenticate(token_for(runtime, admin_id))

    def change(call, action, target, details, policy=True):
        version, count = policy_version(runtime), len(audit_rows(runtime))
        result = call()
        entries = audit_rows(runtime)[count:]
        if target.endswith(":"):  # a creation names what it created
            target += result["id"]
        assert [(e["actor_id"], e["action"], e["target"], e["details"]) for e in entries] == [(admin_id, action, target, details)]
        assert policy_version(runtime) == version + (1 if policy else 0), action
        return result

    change(lambda: sec.create_role(admin, "rep", "Rep"), "role.create", "role:rep", {"label": "Rep", "administrator": False})
    change(lambda: sec.update_role(admin, "rep", label="Reps", description="d"), "role.update", "role:rep", {"label": "Reps", "description": "d"})
    change(lambda: sec.set_object_grant(admin, "rep", "deal", ["read", "update"], "unit", "own"), "grant.object", "role:rep",
           {"object": "deal", "actions": ["read", "update"], "read_scope": "unit", "write_scope": "own"})
    change(lambda: sec.set_field_grant(admin, "rep", "deal", "amount", "read"), "grant.field", "role:rep",
           {"object": "deal", "field": "amount", "access": "read"})
    east = change(lambda: sec.create_unit(admin, "East", root), "unit.create", "org_unit:", {"name": "East", "parent_id": root})["id"]
    west = change(lambda: sec.create_unit(admin, "West"), "unit.create", "org_unit:", {"name": "West", "parent_id": None})["id"]
    ann = change(lambda: sec.create_user(admin, {"username": "ann"}), "user.create", "user:", {"username": "ann"}, policy=False)["id"]
    change(lambda: sec.add_membership(admin, ann, east, "rep"), "membership.add", f"user:{ann}",
           {"user_id": ann, "unit_id": east, "role": "rep"})
    change(lambda: sec.move_unit(admin, east, west), "unit.move", f"org_unit:{east}", {"parent_id": west})
    deal = runtime.records.create(S, "deal", {"name": "d", "owner_id": ann, "org_unit_id": east})["id"]
    change(lambda: sec.share_record(admin, "deal", deal, west, "read"), "record.share", f"deal:{deal}",
           {"object": "deal", "record_id": deal, "grantee_id": west, "access": "read"}, policy=False)
    change(lambda: sec.unshare_record(admin, "deal", deal, west), "record.unshare", f"deal:{deal}",
           {"object": "deal", "record_id": deal, "grantee_id": west}, policy=False)
    change(lambda: sec.add_team_member(admin, "deal", deal, ann, "edit", "lead"), "team.add", f"deal:{deal}",
           {"object": "deal", "record_id": deal, "user_id": ann, "access": "edit", "team_role": "lead"}, policy=False)
    change(lambda: sec.remove_team_member(admin, "deal", deal, ann), "team.remove", f"deal:{deal}",
           {"object": "deal", "record_id": deal, "user_id": ann}, policy=False)
    version, count = policy_version(runtime), len(audit_rows(runtime))
    token = sec.issue_token(admin, "ci", user_id=ann)
    assert [(e["actor_id"], e["action"], e["target"], e["details"]) for e in audit_rows(runtime)[count:]] == [
        (admin_id, "token.issue", f"token:{token['id']}", {"user_id": ann, "name": "ci", "kind": "api", "expires_at": None})]
    assert policy_version(runtime) == version
    change(lambda: sec.revoke_token(admin, token["id"]), "token.revoke", f"token:{token['id']}", {}, policy=False)
    change(lambda: sec.set_password(admin, ann, "a long password 1"), "user.password", f"user:{ann}", {}, policy=False)
    change(lambda: sec.remove_membership(admin, ann, east, "rep"), "membership.remove", f"user:{ann}",
           {"user_id": ann, "unit_id": east, "role": "rep"})
    runtime.records.delete(S, "deal", deal)
    change(lambda: sec.delete_unit(admin, east), "unit.delete", f"org_unit:{east}", {})
    change(lambda: sec.delete_user(admin, ann), "user.delete", f"user:{ann}", {})
    change(lambda: sec.delete_role(admin, "rep"), "role.delete", "role:rep", {})
    # the audit API answers newest first, filtered by target
    assert [e["action"] for e in sec.audit(admin, limit=2)] == ["role.delete", "user.delete"]
    assert [e["action"] for e in sec.audit(admin, target=f"user:{ann}")] == [
        "user.delete", "membership.remove", "user.password", "membership.add", "user.create"]
    with pytest.raises(ValidationFailed):
        sec.audit(admin, limit=0)


def test_change_audit_and_version_share_one_transaction(runtime):
    setup_schema(runtime)
    sec = runtime.security
    sec.create_role(S, "rep", "Rep")
    statements: list[tuple[int, str]] = []
    transactions: list[tuple[str, int]] = []

    def on_execute(conn, cursor, statement, *args):
        statements.append((id(conn.connection.dbapi_connection), statement.split()[0].upper() + " " + _table_of(statement)))

    def on_begin(conn):
        transactions.append(("begin", id(conn.connection.dbapi_connection)))

    def on_commit(conn):
        transactions.append(("commit", id(conn.connection.dbapi_connection)))

    listeners = (("before_cursor_execute", on_execute), ("begin", on_begin), ("commit", on_commit))
    for name, fn in listeners:
        event.listen(runtime.engine, name, fn)
    try:
        sec.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
    finally:
        for name, fn in listeners:
            event.remove(runtime.engine, name, fn)
    writes = [(conn, s) for conn, s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert [s for _, s in writes] == ["UPDATE lc_policy_version", "DELETE lc_object_grant", "INSERT lc_object_grant",
                                      "INSERT lc_security_audit"]
    assert len({conn for conn, _ in writes}) == 1
    commits = [t for t in transactions if t[0] == "commit"]
    assert commits == [("commit", writes[0][0])]


def _table_of(statement: str) -> str:
    words = statement.replace("(", " ").replace('"', "").split()
    for keyword in ("INTO", "UPDATE", "FROM"):
        if keyword in (w.upper() for w in words):
            index = [w.upper() for w in words].index(keyword)
            return words[index + 1]
    return ""


def test_failing_changes_leave_nothing_behind(runtime):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    child = sec.create_unit(S, "Child", root)["id"]
    sec.create_role(S, "rep", "Rep")
    ann = new_user(runtime, "ann", (child, "rep"))
    units_before = runtime.records.query(S, "org_unit").records
    users_before = runtime.records.query(S, "user").records
    before = state(runtime)
    for error, call in (
        (NotFound, lambda: sec.create_unit(S, "Orphan", str(uuid.uuid4()))),
        (ValidationFailed, lambda: sec.create_unit(S, "", root)),
        (ValidationFailed, lambda: sec.move_unit(S, root, child)),
        (InUse, lambda: sec.delete_unit(S, child)),
        (InUse, lambda: sec.delete_unit(S, root)),
        (ValidationFailed, lambda: sec.create_user(S, {"username": "ann"}, "a long password 1")),
        (ValidationFailed, lambda: sec.create_user(S, {"username": "eve"}, "short")),
        (NotFound, lambda: sec.add_membership(S, ann, root, "ghost")),
        (NotFound, lambda: sec.delete_user(S, str(uuid.uuid4()))),
        (InUse, lambda: sec.delete_role(S, "rep")),
        (NotFound, lambda: sec.set_object_grant(S, "ghost", "deal", ["read"], "all", "all")),
    ):
        with pytest.raises(error):
            call()
        assert state(runtime) == before, call
    assert runtime.records.query(S, "org_unit").records == units_before
    assert runtime.records.query(S, "user").records == users_before
    assert rows(runtime, store.credentials) == []


# -- the policy store ---------------------------------------------------------------------------
def test_authenticate_reflects_each_change_on_the_next_request(runtime):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    sec.create_role(S, "rep", "Rep")
    ann = new_user(runtime, "ann")
    token = token_for(runtime, ann)
    deal = runtime.records.create(S, "deal", {"name": "d", "owner_id": ann, "org_unit_id": root})["id"]

    first = sec.authenticate(token)
    assert first.access.version == policy_version(runtime) and first.access.memberships == ()
    with pytest.raises(Forbidden):
        runtime.records.get(first, "deal", deal)
    sec.add_membership(S, ann, root, "rep")
    with pytest.raises(Forbidden):
        runtime.records.get(sec.authenticate(token), "deal", deal)
    sec.set_object_grant(S, "rep", "deal", ["read"], "own", "own")
    second = sec.authenticate(token)
    assert second.access.version == first.access.version + 2 == policy_version(runtime)
    assert runtime.records.get(second, "deal", deal)["id"] == deal
    with pytest.raises(Forbidden):
        runtime.records.update(second, "deal", deal, {"name": "x"})
    # the Actor of an earlier request keeps what it had
    assert not first.access.on("deal").allows("read")
    sec.set_object_grant(S, "rep", "deal", ["read", "update"], "own", "own")
    assert runtime.records.update(sec.authenticate(token), "deal", deal, {"name": "x"})["name"] == "x"
    sec.set_field_grant(S, "rep", "deal", "amount", "hidden")
    assert runtime.records.field_access(sec.authenticate(token), "deal").hidden == frozenset({"amount"})
    sec.remove_membership(S, ann, root, "rep")
    with pytest.raises(Forbidden):
        runtime.records.get(sec.authenticate(token), "deal", deal)
    sec.add_membership(S, ann, root, "administrator")
    assert sec.authenticate(token).access.administrator


def test_access_is_cached_per_user_and_version(runtime):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    sec.create_role(S, "rep", "Rep")
    ann = new_user(runtime, "ann", (root, "rep"))
    bob = new_user(runtime, "bob", (root, "rep"))
    token = token_for(runtime, ann)
    one, two = sec.authenticate(token), sec.authenticate(token)
    assert one.access is two.access
    version = policy_version(runtime)
    assert runtime.policies.version == version
    assert runtime.policies.access(ann, version) is one.access
    assert runtime.policies.access(bob, version) is not one.access
    assert runtime.policies.access(bob, version) is runtime.policies.access(bob, version)
    reloads = runtime.policies.reloads
    sec.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
    three = sec.authenticate(token)
    assert three.access is not one.access and three.access.version == version + 1
    assert runtime.policies.reloads == reloads + 1
    assert sec.authenticate(token).access is three.access
    assert runtime.policies.reloads == reloads + 1
    # a request that read an older version is served by the newer policy, without a reload
    assert runtime.policies.access(ann, version) is three.access
    assert runtime.policies.reloads == reloads + 1
    # changes that are not policy (tokens, shares) keep the cache
    token_for(runtime, bob)
    assert sec.authenticate(token).access is three.access


def test_second_runtime_on_the_same_database_follows(runtime, database_url):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    sec.create_role(S, "rep", "Rep")
    ann = new_user(runtime, "ann", (root, "rep"))
    token = token_for(runtime, ann)
    other = Runtime.connect(database_url)
    try:
        assert other.policies.version is None
        before = other.security.authenticate(token)
        assert before.access.version == policy_version(runtime) and not before.access.on("deal").allows("read")
        sec.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
        assert other.policies.version == before.access.version
        after = other.security.authenticate(token)
        assert after.access.version == before.access.version + 1 == other.policies.version
        assert after.access.on("deal").allows("read")
        assert other.records.query(after, "deal").records == []
        # and the other way round
        other.security.set_object_grant(S, "rep", "deal", [], "own", "own")
        assert not sec.authenticate(token).access.on("deal").allows("read")
        assert runtime.policies.version == policy_version(runtime)
    finally:
        other.close()


def test_casbin_enforce_agrees_with_user_access(runtime):
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    east = sec.create_unit(S, "East", root)["id"]
    west = sec.create_unit(S, "West", root)["id"]
    sec.create_role(S, "rep", "Rep")
    sec.set_object_grant(S, "rep", "deal", ["read", "create", "update"], "own", "own")
    sec.create_role(S, "viewer", "Viewer")
    sec.set_object_grant(S, "viewer", "*", ["read", "export"], "all", "all")
    sec.create_role(S, "manager", "Manager")
    sec.set_object_grant(S, "manager", "deal", list(ACTIONS), "unit_and_below", "unit")
    sec.set_object_grant(S, "manager", "account", ["read", "delete"], "unit", "unit")
    sec.set_field_grant(S, "manager", "deal", "amount", "read")
    sec.create_role(S, "boss", "Boss", administrator=True)
    sec.create_role(S, "idle", "Idle")
    users = {
        "rep": new_user(runtime, "u_rep", (east, "rep")),
        "viewer": new_user(runtime, "u_viewer", (root, "viewer")),
        "both": new_user(runtime, "u_both", (west, "manager"), (east, "rep"), (east, "viewer")),
        "boss": new_user(runtime, "u_boss", (west, "boss")),
        "idle": new_user(runtime, "u_idle", (root, "idle")),
        "none": new_user(runtime, "u_none"),
    }
    version = policy_version(runtime)
    checked = 0
    for name, user in users.items():
        access = runtime.policies.access(user, version)
        assert isinstance(access, UserAccess) and access.user_id == user
        unit_ids = {m.unit_id for m in access.memberships}
        for obj in ("deal", "account"):
            for action in ACTIONS:
                casbin = any(runtime.policies.enforce(user, unit, obj, action) for unit in unit_ids)
                assert casbin == (access.administrator or access.on(obj).allows(action)), (name, obj, action)
                checked += 1
                for unit in {root, east, west} - unit_ids:
                    assert not runtime.policies.enforce(user, unit, obj, action), (name, unit, obj, action)
    assert checked == len(users) * 2 * len(ACTIONS)
    assert runtime.policies.access(users["boss"], version).administrator
    assert runtime.policies.enforce(users["both"], west, "deal", "transfer")
    assert not runtime.policies.enforce(users["both"], east, "deal", "transfer")
    assert runtime.policies.enforce(users["both"], east, "account", "read")  # the viewer's "*"


def test_casbin_enforce_agrees_when_a_role_has_both_a_star_and_an_object_grant(runtime):
    """A role's own grant for an object replaces its "*" grant for that object (grants.object_access);
    Casbin's matcher must answer the same."""
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    sec.create_role(S, "mixed", "Mixed")
    sec.set_object_grant(S, "mixed", "*", ["read", "export"], "all", "all")
    sec.set_object_grant(S, "mixed", "deal", ["create"], "own", "own")
    user = new_user(runtime, "ann", (root, "mixed"))
    access = runtime.policies.access(user, policy_version(runtime))
    assert access.on("account").allows("read") and access.on("deal").allows("create")
    answers = {(obj, action): (runtime.policies.enforce(user, root, obj, action), access.on(obj).allows(action))
               for obj in ("deal", "account") for action in ("read", "create", "export")}
    assert {k: v for k, v in answers.items() if v[0] != v[1]} == {}


def test_many_threads_read_access_while_the_policy_changes(runtime):
    """Readers (``access`` and ``authenticate``) while one thread changes grants and another keeps
    reloading: no errors, and every UserAccess answers the policy of its version.

    The grants only grow (one more action per change), so the answer says which version it was
    computed from. On PostgreSQL the loader reads the version and the policy lines in separate
    statements under READ COMMITTED, so an answer may be newer than its label (never older)."""
    setup_schema(runtime)
    sec = runtime.security
    root = sec.create_unit(S, "Root")["id"]
    east = sec.create_unit(S, "East", root)["id"]
    sec.create_role(S, "rep", "Rep")
    sec.set_object_grant(S, "rep", "deal", ["read"], "unit", "unit")
    users = [new_user(runtime, f"user{i}", (root, "rep"), (east, "rep")) for i in range(4)]
    tokens = {u: token_for(runtime, u) for u in users}
    for token in tokens.values():  # first use stamps last_used_at (a write); later ones within a minute only read
        sec.authenticate(token)
    steps = [("deal", ACTIONS[:n]) for n in range(2, len(ACTIONS) + 1)] + [("account", ACTIONS[:n]) for n in range(1, len(ACTIONS) + 1)]
    grown_at: dict[int, int] = {policy_version(runtime): 1}
    stop = threading.Event()
    problems: list[str] = []
    seen: list[tuple[int, int]] = []

    def writer():
        try:
            for obj, actions in steps:
                sec.set_object_grant(S, "rep", obj, list(actions), "unit", "unit")
                grown_at[policy_version(runtime)] = len(grown_at) + 1
                time.sleep(0.005)
        except Exception as exc:  # pragma: no cover - reported below
            problems.append(f"writer: {exc!r}")
        finally:
            stop.set()

    def reloader():
        while not stop.is_set():
            try:
                runtime.policies.reload()
            except Exception as exc:  # pragma: no cover
                problems.append(f"reload: {exc!r}")
            time.sleep(0.001)

    def reader(user):
        while not stop.is_set():
            try:
                stored = policy_version(runtime)
                access = runtime.policies.access(user, stored)
                actor = sec.authenticate(tokens[user])
                for one in (access, actor.access):
                    if not isinstance(one, UserAccess) or one.user_id != user or one.version < stored:
                        problems.append(f"inconsistent access {one!r} for {user} at {stored}")
                    elif sorted((m.unit_id, m.role) for m in one.memberships) != sorted([(root, "rep"), (east, "rep")]):
                        problems.append(f"memberships {one.memberships!r}")
                    elif not one.on("deal").allows("read") or one.on("deal").scopes["read"].units != frozenset({root, east}):
                        problems.append(f"scopes {one.on('deal')!r}")
                    else:
                        granted = sum(one.on(obj).allows(a) for obj in ("deal", "account") for a in ACTIONS)
                        seen.append((one.version, granted))
            except Exception as exc:
                problems.append(f"reader: {exc!r}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reloader)]
    threads += [threading.Thread(target=reader, args=(u,)) for u in users for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert len(seen) > 20 and len({v for v, _ in seen}) > 3
    exact = runtime.engine.dialect.name == "sqlite"
    wrong = [(v, g, grown_at.get(v)) for v, g in seen if g != grown_at.get(v) and (exact or g < grown_at.get(v, 0))]
    assert wrong == []
    final = runtime.policies.access(users[0], policy_version(runtime))
    assert sum(final.on(obj).allows(a) for obj in ("deal", "account") for a in ACTIONS) == len(steps) + 1


def test_authenticate_while_another_connection_writes(runtime):
    """The first use of a token stamps its last_used_at; that must not fail a request when other
    connections write at the same time (on SQLite the stamp must not upgrade a read transaction)."""
    sec = runtime.security
    sec.create_role(S, "rep", "Rep")
    user = new_user(runtime, "ann")
    tokens = [token_for(runtime, user) for _ in range(24)]
    stop = threading.Event()
    problems: list[str] = []

    def writer():
        i = 0
        while not stop.is_set():
            sec.update_role(S, "rep", label=f"Rep {i}")
            i += 1

    def reader(mine):
        for token in mine:
            try:
                assert sec.authenticate(token).id == user
            except Exception as exc:
                problems.append(repr(exc)[:120])

    writing = threading.Thread(target=writer)
    writing.start()
    readers = [threading.Thread(target=reader, args=(tokens[i::4],)) for i in range(4)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(timeout=60)
    stop.set()
    writing.join(timeout=60)
    assert problems == []


# -- Redis --------------------------------------------------------------------------------------
def test_redis_watcher_reloads_another_runtime_without_a_request(database_url, redis_url):
    first = Runtime.connect(database_url, redis_url).install()
    second = None
    try:
        first.warm_on_announcements()
        setup_schema(first)
        second = Runtime.connect(database_url, redis_url).install()
        second.warm_on_announcements()
        start, reloads = second.policies.version, second.policies.reloads
        assert start == policy_version(first)
        first.security.create_role(S, "rep", "Rep")
        assert wait_for(lambda: second.policies.version == start + 1), (second.policies.version, start)
        assert second.policies.reloads == reloads + 1
        first.security.set_object_grant(S, "rep", "deal", ["read"], "all", "all")
        assert wait_for(lambda: second.policies.version == start + 2)
        unit = first.security.create_unit(S, "Root")["id"]
        ann = new_user(first, "ann", (unit, "rep"))
        assert wait_for(lambda: second.policies.version == policy_version(first))
        access = second.policies.loaded_access(ann)
        assert access.on("deal").allows("read") and access.version == policy_version(first)
        # non-policy changes announce nothing
        version, reloads = second.policies.version, second.policies.reloads
        token_for(first, ann)
        time.sleep(0.3)
        assert (second.policies.version, second.policies.reloads) == (version, reloads)
    finally:
        first.close()
        if second is not None:
            second.close()


def test_warm_on_announcements_before_the_first_request(database_url, redis_url):
    """A process that connects to an installed database and listens at once (no install, no
    request yet) must still follow policy changes."""
    first = Runtime.connect(database_url, redis_url).install()
    second = Runtime.connect(database_url, redis_url)
    try:
        second.warm_on_announcements()
        first.security.create_role(S, "rep", "Rep")
        assert wait_for(lambda: second.policies.version == policy_version(first))
    finally:
        first.close()
        second.close()


def test_sign_in_failures_are_counted_in_redis(database_url, redis_url):
    """With Redis the failures are shared by every process."""
    first = Runtime.connect(database_url, redis_url).install()
    second = Runtime.connect(database_url, redis_url)
    try:
        first.security.create_user(S, {"username": "ann"}, "a long password 1")
        for rt in (first, second, first, second, first):
            with pytest.raises(Unauthenticated):
                rt.security.sign_in("ann", "wrong password!", client="1.2.3.4")
        with pytest.raises(RateLimited) as limited:
            second.security.sign_in("ann", "a long password 1", client="1.2.3.4")
        assert 0 < limited.value.ctx["retry_after"] <= 900
        assert first.security.sign_in("ann", "a long password 1", client="5.6.7.8")["user_id"]
    finally:
        first.close()
        second.close()
