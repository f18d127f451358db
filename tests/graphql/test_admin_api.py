"""The security admin API over HTTP, on SQLite and PostgreSQL: each query and mutation with the
exact answer, the audit entry it writes, its errors with their GraphQL paths, who may call it,
and the effect of changes on the next request (deleted users' tokens, re-parented units).

The org (built at the service level, then used only through HTTP with bearer tokens):
``Group`` -> ``East`` -> ``Sub``, ``Group`` -> ``West``; roles ``rep`` (deals: own) and
``director`` (deals: unit and below); users ``ann`` (rep in East), ``wes`` (rep in West),
``dan`` (director in East) and ``ada`` (administrator in Group); role ``auditor`` is held by no one. The service token
(``test-token``) acts as the platform itself.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S

PASSWORD = "a long password 1"
DEAL = {"api_name": "deal", "label": "Deal", "plural_label": "Deals",
        "fields": [{"api_name": "name", "label": "Name", "type": "text", "required": True}]}


class Org:
    def __init__(self, api):
        self.api = api
        sec = self.sec = api.runtime.security
        api.runtime.metadata.create_object(S, DEAL)
        self.group = sec.create_unit(S, "Group")["id"]
        self.east = sec.create_unit(S, "East", self.group)["id"]
        self.sub = sec.create_unit(S, "Sub", self.east)["id"]
        self.west = sec.create_unit(S, "West", self.group)["id"]
        sec.create_role(S, "rep", "Sales rep")
        sec.set_object_grant(S, "rep", "deal", ["read", "create", "update"], "own", "own")
        sec.create_role(S, "director", "Director")
        sec.set_object_grant(S, "director", "deal", ["read"], "unit_and_below", "own")
        sec.create_role(S, "auditor", "Auditor")
        self.ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        for name, unit, role in (("ann", self.east, "rep"), ("wes", self.west, "rep"), ("dan", self.east, "director"),
                                 ("ada", self.group, "administrator")):
            user = sec.create_user(S, {"username": name, "full_name": name.title(), "email": f"{name}@example.com"}, PASSWORD)
            sec.add_membership(S, user["id"], unit, role)
            self.ids[name] = user["id"]
            self.tokens[name] = sec.issue_token(S, "fixture", user_id=user["id"])["token"]

    def data(self, who: str | None, query: str, variables: dict | None = None):
        """``data`` of a request as ``who`` (``None``: the service token), failing on any error."""
        kwargs = {"token": self.tokens[who]} if who else {}
        return self.api.data(query, variables, **kwargs)

    def error(self, who: str | None, query: str, variables: dict | None = None) -> tuple[int, dict, dict]:
        """Status, the one error and ``data`` of a request expected to fail."""
        kwargs = {"token": self.tokens[who]} if who else {}
        status, body = self.api.post(query, variables, **kwargs)
        assert len(body.get("errors", [])) == 1, body
        return status, body["errors"][0], body.get("data")

    def audit(self, target: str | None = None, limit: int = 1) -> list[dict]:
        return self.data(None, "query ($t: String, $l: Int) { securityAudit(target: $t, limit: $l) { actorId action target details } }",
                         {"t": target, "l": limit})["securityAudit"]

    def audit_count(self) -> int:
        return len(self.data(None, "{ securityAudit(limit: 1000) { id } }")["securityAudit"])

    def deal(self, who: str, name: str) -> str:
        return self.data(who, "mutation ($n: String!) { createDeal(input: {name: $n}) { id } }", {"n": name})["createDeal"]["id"]

    def deal_names(self, who: str) -> list[str]:
        return sorted(d["name"] for d in self.data(who, "{ deals { nodes { name } } }")["deals"]["nodes"])


@pytest.fixture
def org(api):
    return Org(api)


def is_utc_now(value: str) -> bool:
    at = datetime.fromisoformat(value)
    return at.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - at) < timedelta(minutes=5)


def validation(error: dict) -> list[tuple[str, str]]:
    assert error["extensions"]["code"] == "VALIDATION_FAILED", error
    return [(e["code"], e["field"]) for e in error["extensions"]["errors"]]


# -- me -------------------------------------------------------------------------------------------

ME = "{ me { id username fullName administrator memberships { role unit { id name path } } user { username email } } }"


def test_me_is_the_signed_in_user_with_memberships(org):
    me = org.data("ann", ME)["me"]
    assert me == {
        "id": org.ids["ann"], "username": "ann", "fullName": "Ann", "administrator": False,
        "memberships": [{"role": "rep", "unit": {"id": org.east, "name": "East", "path": f"/{org.group}/{org.east}/"}}],
        "user": {"username": "ann", "email": "ann@example.com"},
    }
    assert org.data("ada", "{ me { username administrator memberships { role unit { name parent { id } } } } }")["me"] == {
        "username": "ada", "administrator": True, "memberships": [{"role": "administrator", "unit": {"name": "Group", "parent": None}}]}
    assert org.data(None, "{ me { id username } }") == {"me": None}


def test_me_reports_fields_a_permission_hides(org):
    org.sec.set_field_grant(S, "rep", "user", "full_name", "hidden")
    org.sec.set_object_grant(S, "rep", "user", ["read"], "all", "own")
    status, error, data = org.error("ann", "{ me { id username fullName } }")
    assert status == 200 and data == {"me": {"id": org.ids["ann"], "username": "ann", "fullName": None}}
    assert error["path"] == ["me", "fullName"] and error["extensions"]["code"] == "FORBIDDEN"


# -- the org tree ---------------------------------------------------------------------------------

UNIT = "id name path parentId parent { name } createdAt"


def test_create_move_and_delete_org_units(org):
    created = org.data("ada", f"mutation ($p: ID) {{ createOrgUnit(input: {{name: \"North\", parentId: $p}}) {{ {UNIT} }} }}",
                       {"p": org.west})["createOrgUnit"]
    north = created["id"]
    assert created == {"id": north, "name": "North", "path": f"/{org.group}/{org.west}/{north}/", "parentId": org.west,
                       "parent": {"name": "West"}, "createdAt": created["createdAt"]}
    assert is_utc_now(created["createdAt"])
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "unit.create", "target": f"org_unit:{north}",
                            "details": {"name": "North", "parent_id": org.west}}]
    root = org.data(None, "mutation { createOrgUnit(input: {name: \"Holding\"}) { name path parentId } }")["createOrgUnit"]
    assert root["name"] == "Holding" and root["parentId"] is None and root["path"].count("/") == 2

    moved = org.data("ada", "mutation ($id: ID!, $p: ID) { moveOrgUnit(id: $id, parentId: $p) { id path parent { name } } }",
                     {"id": org.east, "p": org.west})["moveOrgUnit"]
    assert moved == {"id": org.east, "path": f"/{org.group}/{org.west}/{org.east}/", "parent": {"name": "West"}}
    sub = org.data("ada", "query ($id: ID!) { orgUnit(id: $id) { path } }", {"id": org.sub})["orgUnit"]
    assert sub == {"path": f"/{org.group}/{org.west}/{org.east}/{org.sub}/"}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "unit.move", "target": f"org_unit:{org.east}",
                            "details": {"parent_id": org.west}}]
    to_root = org.data("ada", "mutation ($id: ID!) { moveOrgUnit(id: $id, parentId: null) { path parentId } }", {"id": org.east})
    assert to_root == {"moveOrgUnit": {"path": f"/{org.east}/", "parentId": None}}

    status, error, data = org.error("ada", "mutation ($id: ID!) { deleteOrgUnit(id: $id) }", {"id": org.west})
    assert status == 200 and data is None and error["path"] == ["deleteOrgUnit"]
    assert error["extensions"] == {"code": "IN_USE", "ctx": {"sub_units": 1, "memberships": 1}}
    assert org.data("ada", "mutation ($id: ID!) { deleteOrgUnit(id: $id) }", {"id": north}) == {"deleteOrgUnit": north}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "unit.delete", "target": f"org_unit:{north}", "details": {}}]
    _, error, _ = org.error("ada", "query ($id: ID!) { orgUnit(id: $id) { id } }", {"id": north})
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_org_unit_errors_name_the_arguments(org):
    create = "mutation ($i: CreateOrgUnitInput!) { createOrgUnit(input: $i) { id } }"
    _, error, _ = org.error(None, create, {"i": {"name": "X", "parentId": "not an id"}})
    assert validation(error) == [("INVALID_VALUE", "input.parentId")]
    _, error, _ = org.error(None, create, {"i": {"name": "X", "parentId": org.ids["ann"]}})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "input.parentId"}
    _, error, _ = org.error(None, create, {"i": {"name": "x" * 300}})
    assert [field for _, field in validation(error)] == ["input.name"]

    move = "mutation ($id: ID!, $p: ID) { moveOrgUnit(id: $id, parentId: $p) { id } }"
    for below in (org.sub, org.east):
        _, error, data = org.error(None, move, {"id": org.east, "p": below})
        assert data is None and validation(error) == [("CYCLE", "parentId")]
    _, error, _ = org.error(None, move, {"id": org.ids["ann"], "p": None})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    count = org.audit_count()
    assert org.data(None, "query ($id: ID!) { orgUnit(id: $id) { path } }", {"id": org.sub})["orgUnit"]["path"] == \
        f"/{org.group}/{org.east}/{org.sub}/"
    assert org.audit_count() == count


def test_moving_a_unit_changes_what_a_unit_and_below_director_sees_on_the_next_request(org):
    org.deal("ann", "East deal")
    org.deal("wes", "West deal")
    assert org.deal_names("dan") == ["East deal"]
    move = "mutation ($id: ID!, $p: ID) { moveOrgUnit(id: $id, parentId: $p) { path } }"
    org.data("ada", move, {"id": org.west, "p": org.sub})
    assert org.deal_names("dan") == ["East deal", "West deal"]
    org.data(None, move, {"id": org.west, "p": org.group})
    assert org.deal_names("dan") == ["East deal"]


# -- users ----------------------------------------------------------------------------------------

def sign_in(api, username: str, password: str) -> int:
    return api.client.post("/auth/sign-in", json={"username": username, "password": password}).status_code


def test_create_user_set_password_and_delete_user(org):
    api = org.api
    created = org.data("ada", """mutation ($i: CreateUserInput!) {
        createUser(input: $i) { id username email fullName active createdAt } }""",
                       {"i": {"username": "eve", "email": "eve@example.com", "fullName": "Eve E", "password": PASSWORD}})["createUser"]
    eve = created["id"]
    assert created == {"id": eve, "username": "eve", "email": "eve@example.com", "fullName": "Eve E", "active": True,
                       "createdAt": created["createdAt"]}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "user.create", "target": f"user:{eve}", "details": {"username": "eve"}}]
    assert sign_in(api, "eve", PASSWORD) == 200
    assert org.data(None, "mutation { createUser(input: {username: \"nopass\"}) { username } }") == {"createUser": {"username": "nopass"}}
    assert sign_in(api, "nopass", PASSWORD) == 401

    set_password = "mutation ($u: ID!, $p: String!, $c: String) { setPassword(userId: $u, password: $p, currentPassword: $c) }"
    assert org.data("ada", set_password, {"u": eve, "p": "another long one"}) == {"setPassword": True}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "user.password", "target": f"user:{eve}", "details": {}}]
    assert sign_in(api, "eve", PASSWORD) == 401 and sign_in(api, "eve", "another long one") == 200

    assert org.data("ann", set_password, {"u": org.ids["ann"], "p": "my new password", "c": PASSWORD}) == {"setPassword": True}
    assert org.audit()[0]["actorId"] == org.ids["ann"]
    assert sign_in(api, "ann", "my new password") == 200
    assert org.data("ann", "{ me { username } }") == {"me": {"username": "ann"}}, "API tokens survive a password change"
    _, error, _ = org.error("ann", set_password, {"u": org.ids["ann"], "p": "yet another one", "c": "wrong password"})
    assert validation(error) == [("INVALID_VALUE", "currentPassword")]
    _, error, _ = org.error("ann", set_password, {"u": org.ids["ann"], "p": "short", "c": "my new password"})
    assert validation(error) == [("INVALID_VALUE", "password")]
    _, error, _ = org.error("ann", set_password, {"u": org.ids["wes"], "p": "yet another one", "c": PASSWORD})
    assert error["extensions"]["code"] == "FORBIDDEN"
    _, error, _ = org.error(None, set_password, {"u": "nobody", "p": "yet another one"})
    assert validation(error) == [("INVALID_VALUE", "userId")]

    assert org.data("ann", "{ deals { nodes { id } } }") == {"deals": {"nodes": []}}
    assert org.data("ada", "mutation ($id: ID!) { deleteUser(id: $id) }", {"id": org.ids["ann"]}) == {"deleteUser": org.ids["ann"]}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "user.delete", "target": f"user:{org.ids['ann']}", "details": {}}]
    status, body = api.post("{ me { id } }", token=org.tokens["ann"])
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert org.data(None, "query ($u: ID!) { memberships(userId: $u) { role } }", {"u": org.ids["ann"]}) == {"memberships": []}
    _, error, _ = org.error(None, "mutation ($id: ID!) { deleteUser(id: $id) }", {"id": org.ids["ann"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    _, error, _ = org.error(None, "mutation { deleteUser(id: \"x\") }")
    assert validation(error) == [("INVALID_VALUE", "id")]


def test_create_user_errors_name_the_input_fields(org):
    create = "mutation ($i: CreateUserInput!) { createUser(input: $i) { id } }"
    _, error, data = org.error(None, create, {"i": {"username": "eve", "password": "short"}})
    assert data is None and validation(error) == [("INVALID_VALUE", "input.password")]
    _, error, _ = org.error(None, create, {"i": {"username": "eve", "email": "not an email", "fullName": "x" * 300}})
    assert sorted(field for _, field in validation(error)) == ["input.email", "input.fullName"]
    _, error, _ = org.error(None, create, {"i": {"username": "ann"}})
    assert [field for _, field in validation(error)] == ["input.username"]
    assert org.data(None, "{ users(filter: {username: {eq: \"eve\"}}) { nodes { id } } }") == {"users": {"nodes": []}}


# -- roles and permissions ------------------------------------------------------------------------

ROLE = "name label description administrator objectPermissions { object actions readScope writeScope } fieldPermissions { object field access }"


def test_roles_and_their_permissions(org):
    created = org.data("ada", f"mutation {{ createRole(input: {{name: \"manager\", label: \"Manager\", description: \"Runs a team\"}}) {{ {ROLE} createdAt updatedAt }} }}")["createRole"]
    assert {k: v for k, v in created.items() if k not in ("createdAt", "updatedAt")} == {
        "name": "manager", "label": "Manager", "description": "Runs a team", "administrator": False,
        "objectPermissions": [], "fieldPermissions": []}
    assert is_utc_now(created["createdAt"]) and is_utc_now(created["updatedAt"])
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "role.create", "target": "role:manager",
                            "details": {"label": "Manager", "administrator": False}}]

    granted = org.data("ada", f"""mutation {{ setObjectPermission(role: "manager", object: "deal", actions: [UPDATE, READ, EXPORT],
        readScope: UNIT_AND_BELOW, writeScope: UNIT) {{ {ROLE} }} }}""")["setObjectPermission"]
    assert granted["objectPermissions"] == [{"object": "deal", "actions": ["READ", "UPDATE", "EXPORT"],
                                             "readScope": "UNIT_AND_BELOW", "writeScope": "UNIT"}]
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "grant.object", "target": "role:manager",
                            "details": {"object": "deal", "actions": ["read", "update", "export"],
                                        "read_scope": "unit_and_below", "write_scope": "unit"}}]
    org.data("ada", "mutation { setObjectPermission(role: \"manager\", object: \"*\", actions: [READ], readScope: ALL, writeScope: OWN) { name } }")
    hidden = org.data("ada", "mutation { setFieldPermission(role: \"manager\", object: \"deal\", field: \"name\", access: READ) { fieldPermissions { object field access } } }")
    assert hidden == {"setFieldPermission": {"fieldPermissions": [{"object": "deal", "field": "name", "access": "READ"}]}}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "grant.field", "target": "role:manager",
                            "details": {"object": "deal", "field": "name", "access": "read"}}]

    updated = org.data("ada", f"mutation {{ updateRole(name: \"manager\", input: {{label: \"Team manager\", administrator: true}}) {{ {ROLE} }} }}")["updateRole"]
    assert updated == {"name": "manager", "label": "Team manager", "description": "Runs a team", "administrator": True,
                       "objectPermissions": [
                           {"object": "*", "actions": ["READ"], "readScope": "ALL", "writeScope": "OWN"},
                           {"object": "deal", "actions": ["READ", "UPDATE", "EXPORT"], "readScope": "UNIT_AND_BELOW", "writeScope": "UNIT"}],
                       "fieldPermissions": [{"object": "deal", "field": "name", "access": "READ"}]}
    assert org.data("ada", f"query {{ role(name: \"manager\") {{ {ROLE} }} }}") == {"role": updated}
    assert [r["name"] for r in org.data("ada", "{ roles { name } }")["roles"]] == ["administrator", "auditor", "director", "manager", "rep"]

    removed = org.data("ada", "mutation { setObjectPermission(role: \"manager\", object: \"*\", actions: [], readScope: OWN, writeScope: OWN) { objectPermissions { object } } }")
    assert removed == {"setObjectPermission": {"objectPermissions": [{"object": "deal"}]}}
    edit = org.data("ada", "mutation { setFieldPermission(role: \"manager\", object: \"deal\", field: \"name\", access: EDIT) { fieldPermissions { field } } }")
    assert edit == {"setFieldPermission": {"fieldPermissions": []}}

    assert org.data("ada", "mutation { deleteRole(name: \"manager\") }") == {"deleteRole": "manager"}
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "role.delete", "target": "role:manager", "details": {}}]
    _, error, _ = org.error("ada", "{ role(name: \"manager\") { name } }")
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "name"}


def test_role_errors_name_the_arguments(org):
    _, error, data = org.error(None, "mutation { createRole(input: {name: \"Bad Name\", label: \" \"}) { name } }")
    assert data is None and validation(error) == [("INVALID_NAME", "input.name"), ("INVALID_VALUE", "input.label")]
    _, error, _ = org.error(None, "mutation { createRole(input: {name: \"rep\", label: \"Again\"}) { name } }")
    assert validation(error) == [("DUPLICATE_VALUE", "input.name")]
    _, error, _ = org.error(None, "mutation { updateRole(name: \"rep\", input: {label: \"\"}) { name } }")
    assert validation(error) == [("INVALID_VALUE", "input.label")]
    _, error, _ = org.error(None, "mutation { updateRole(name: \"nobody\", input: {label: \"X\"}) { name } }")
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "name"}
    _, error, _ = org.error(None, "mutation { updateRole(name: \"administrator\", input: {administrator: false}) { name } }")
    assert error["extensions"]["code"] == "FORBIDDEN"

    grant = "mutation ($r: String!, $o: String!) { setObjectPermission(role: $r, object: $o, actions: [READ], readScope: ALL, writeScope: OWN) { name } }"
    _, error, _ = org.error(None, grant, {"r": "rep", "o": "nothing"})
    assert validation(error) == [("UNKNOWN_OBJECT", "object")]
    _, error, _ = org.error(None, grant, {"r": "nobody", "o": "deal"})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "role"}
    status, body = org.api.post("mutation ($s: DataScope!) { setObjectPermission(role: \"rep\", object: \"deal\", actions: [READ], readScope: $s, writeScope: OWN) { name } }",
                                {"s": "EVERYONE"})
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_QUERY" and "readScope" not in str(body.get("data"))
    status, body = org.api.post("mutation { setObjectPermission(role: \"rep\", object: \"deal\", actions: [READ], readScope: unit, writeScope: OWN) { name } }")
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_QUERY"

    field = "mutation ($o: String!, $f: String!) { setFieldPermission(role: \"rep\", object: $o, field: $f, access: HIDDEN) { name } }"
    _, error, _ = org.error(None, field, {"o": "deal", "f": "nothing"})
    assert validation(error) == [("UNKNOWN_FIELD", "field")]
    _, error, _ = org.error(None, field, {"o": "nothing", "f": "name"})
    assert validation(error) == [("UNKNOWN_OBJECT", "object")]
    _, error, _ = org.error(None, field, {"o": "deal", "f": "id"})
    assert validation(error) == [("INVALID_VALUE", "field")]

    _, error, _ = org.error(None, "mutation { deleteRole(name: \"rep\") }")
    assert error["extensions"] == {"code": "IN_USE", "ctx": {"memberships": 2}}
    _, error, _ = org.error(None, "mutation { deleteRole(name: \"administrator\") }")
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert org.data(None, "{ role(name: \"rep\") { objectPermissions { object actions } } }") == {
        "role": {"objectPermissions": [{"object": "deal", "actions": ["READ", "CREATE", "UPDATE"]}]}}


def test_a_changed_grant_applies_on_the_next_request(org):
    org.deal("ann", "Ann's")
    org.deal("wes", "Wes's")
    assert org.deal_names("ann") == ["Ann's"]
    org.data("ada", "mutation { setObjectPermission(role: \"rep\", object: \"deal\", actions: [READ], readScope: ALL, writeScope: OWN) { name } }")
    assert org.deal_names("ann") == ["Ann's", "Wes's"]
    org.data("ada", "mutation { setFieldPermission(role: \"rep\", object: \"deal\", field: \"name\", access: HIDDEN) { name } }")
    status, body = org.api.post("{ deals { nodes { name } } }", token=org.tokens["ann"])
    assert status == 200 and {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


# -- memberships ----------------------------------------------------------------------------------

def test_add_list_and_remove_memberships(org):
    added = org.data("ada", """mutation ($u: ID!, $n: ID!) { addMembership(userId: $u, unitId: $n, role: "director") {
        userId unitId role createdAt user { username } unit { name path parent { name } } } }""",
                     {"u": org.ids["wes"], "n": org.sub})["addMembership"]
    assert added == {"userId": org.ids["wes"], "unitId": org.sub, "role": "director", "createdAt": added["createdAt"],
                     "user": {"username": "wes"},
                     "unit": {"name": "Sub", "path": f"/{org.group}/{org.east}/{org.sub}/", "parent": {"name": "East"}}}
    assert is_utc_now(added["createdAt"])
    assert org.audit() == [{"actorId": org.ids["ada"], "action": "membership.add", "target": f"user:{org.ids['wes']}",
                            "details": {"user_id": org.ids["wes"], "unit_id": org.sub, "role": "director"}}]

    by_unit = org.data("ada", "query ($n: ID!) { memberships(unitId: $n) { role user { username } } }", {"n": org.east})
    assert sorted(by_unit["memberships"], key=lambda m: m["role"]) == [
        {"role": "director", "user": {"username": "dan"}}, {"role": "rep", "user": {"username": "ann"}}]
    own = org.data("wes", "query ($u: ID!) { memberships(userId: $u) { role mine: unit { name } } }", {"u": org.ids["wes"]})
    assert sorted(own["memberships"], key=lambda m: m["role"]) == [
        {"role": "director", "mine": {"name": "Sub"}}, {"role": "rep", "mine": {"name": "West"}}]
    for variables in ({"u": org.ids["ann"]}, {"u": None}):
        _, error, _ = org.error("wes", "query ($u: ID) { memberships(userId: $u) { role } }", variables)
        assert error["extensions"]["code"] == "FORBIDDEN"

    remove = "mutation ($u: ID!, $n: ID!, $r: String!) { removeMembership(userId: $u, unitId: $n, role: $r) }"
    assert org.data("ada", remove, {"u": org.ids["wes"], "n": org.sub, "r": "director"}) == {"removeMembership": True}
    assert org.audit()[0] == {"actorId": org.ids["ada"], "action": "membership.remove", "target": f"user:{org.ids['wes']}",
                              "details": {"user_id": org.ids["wes"], "unit_id": org.sub, "role": "director"}}
    _, error, _ = org.error("ada", remove, {"u": org.ids["wes"], "n": org.sub, "r": "director"})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "role"}

    add = "mutation ($u: ID!, $n: ID!, $r: String!) { addMembership(userId: $u, unitId: $n, role: $r) { role } }"
    for variables, expected in (({"u": org.ids["wes"], "n": org.sub, "r": "nobody"}, "role"),
                                ({"u": org.ids["wes"], "n": org.ids["wes"], "r": "rep"}, "unitId"),
                                ({"u": org.sub, "n": org.sub, "r": "rep"}, "userId")):
        _, error, _ = org.error("ada", add, variables)
        assert error["extensions"] == {"code": "NOT_FOUND", "field": expected}
    _, error, _ = org.error("ada", add, {"u": "x", "n": org.sub, "r": "rep"})
    assert validation(error) == [("INVALID_VALUE", "userId")]


def test_a_new_membership_applies_on_the_next_request(org):
    org.deal("wes", "West deal")
    assert org.deal_names("dan") == []
    org.data("ada", "mutation ($u: ID!, $n: ID!) { addMembership(userId: $u, unitId: $n, role: \"director\") { role } }",
             {"u": org.ids["dan"], "n": org.west})
    assert org.deal_names("dan") == ["West deal"]


# -- who may call what ----------------------------------------------------------------------------

ADMIN_ONLY = [
    ("mutation { createOrgUnit(input: {name: \"X\"}) { id } }", {}),
    ("mutation ($id: ID!) { moveOrgUnit(id: $id, parentId: null) { id } }", {"id": "sub"}),
    ("mutation ($id: ID!) { deleteOrgUnit(id: $id) }", {"id": "sub"}),
    ("mutation { createUser(input: {username: \"x\"}) { id } }", {}),
    ("mutation ($id: ID!) { deleteUser(id: $id) }", {"id": "wes"}),
    ("mutation ($u: ID!) { setPassword(userId: $u, password: \"a new long password\", currentPassword: \"a long password 1\") }", {"u": "wes"}),
    ("mutation { createRole(input: {name: \"x\", label: \"X\"}) { name } }", {}),
    ("mutation { updateRole(name: \"rep\", input: {administrator: true}) { name } }", {}),
    ("mutation { deleteRole(name: \"auditor\") }", {}),
    ("mutation { setObjectPermission(role: \"rep\", object: \"deal\", actions: [READ], readScope: ALL, writeScope: ALL) { name } }", {}),
    ("mutation { setFieldPermission(role: \"rep\", object: \"deal\", field: \"name\", access: HIDDEN) { name } }", {}),
    ("mutation ($u: ID!, $n: ID!) { addMembership(userId: $u, unitId: $n, role: \"administrator\") { role } }", {"u": "ann", "n": "east"}),
    ("mutation ($u: ID!, $n: ID!) { removeMembership(userId: $u, unitId: $n, role: \"director\") }", {"u": "dan", "n": "east"}),
    ("mutation ($u: ID!) { createApiToken(name: \"theirs\", userId: $u) { token } }", {"u": "wes"}),
    ("{ roles { name } }", {}),
    ("{ role(name: \"rep\") { name } }", {}),
    ("query ($n: ID!) { memberships(unitId: $n) { role } }", {"n": "east"}),
    ("query ($u: ID!) { apiTokens(userId: $u) { id } }", {"u": "wes"}),
    ("{ securityAudit { id } }", {}),
]


@pytest.mark.parametrize("query, variables", ADMIN_ONLY, ids=[q.split("{")[1].split("(")[0].strip() for q, _ in ADMIN_ONLY])
def test_non_administrators_are_refused(org, query, variables):
    ids = {**org.ids, "sub": org.sub, "east": org.east}
    count = org.audit_count()
    status, error, data = org.error("ann", query, {k: ids[v] for k, v in variables.items()})
    assert status == 200 and data is None and error["extensions"]["code"] == "FORBIDDEN", error
    assert org.audit_count() == count
    assert org.data("ada", query, {k: ids[v] for k, v in variables.items()})


# -- API tokens -----------------------------------------------------------------------------------

TOKEN_FIELDS = "id name kind hint createdAt expiresAt revokedAt lastUsedAt"


def test_api_tokens_own_and_others(org):
    api = org.api
    issued = org.data("ann", "mutation { createApiToken(name: \"laptop\", expiresAt: \"2099-01-01T10:00:00+02:00\") { id token name kind userId expiresAt } }")["createApiToken"]
    token = issued["token"]
    assert issued == {"id": issued["id"], "token": token, "name": "laptop", "kind": "API", "userId": org.ids["ann"],
                      "expiresAt": "2099-01-01T08:00:00+00:00"}
    assert token.startswith("lct_") and len(token) > 40
    assert org.audit() == [{"actorId": org.ids["ann"], "action": "token.issue", "target": f"token:{issued['id']}",
                            "details": {"user_id": org.ids["ann"], "name": "laptop", "kind": "api", "expires_at": "2099-01-01T08:00:00+00:00"}}]
    assert api.data("{ me { username } }", token=token) == {"me": {"username": "ann"}}

    listed = org.data("ann", f"{{ apiTokens {{ {TOKEN_FIELDS} }} }}")["apiTokens"]
    assert [(t["name"], t["kind"], t["hint"], t["expiresAt"], t["revokedAt"]) for t in listed] == [
        ("fixture", "API", f"lct_…{org.tokens['ann'][-4:]}", None, None),
        ("laptop", "API", f"lct_…{token[-4:]}", "2099-01-01T08:00:00+00:00", None)]
    assert all(is_utc_now(t["createdAt"]) and is_utc_now(t["lastUsedAt"]) for t in listed)
    assert org.data("ann", "query ($u: ID) { apiTokens(userId: $u) { id } }", {"u": org.ids["ann"]})["apiTokens"] == \
        [{"id": t["id"]} for t in listed]
    status, body = api.post("{ apiTokens { token } }", token=token)
    assert status == 400 and "token" in body["errors"][0]["message"]

    for_wes = org.data("ada", "mutation ($u: ID) { createApiToken(name: \"import\", userId: $u) { name userId expiresAt } }",
                       {"u": org.ids["wes"]})
    assert for_wes == {"createApiToken": {"name": "import", "userId": org.ids["wes"], "expiresAt": None}}
    assert [t["name"] for t in org.data("ada", "query ($u: ID) { apiTokens(userId: $u) { name } }", {"u": org.ids["wes"]})["apiTokens"]] == \
        ["fixture", "import"]

    wes_token = org.data("wes", "{ apiTokens { id } }")["apiTokens"][0]["id"]
    _, error, _ = org.error("ann", "mutation ($id: ID!) { revokeApiToken(id: $id) }", {"id": wes_token})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert org.data("ann", "mutation ($id: ID!) { revokeApiToken(id: $id) }", {"id": issued["id"]}) == {"revokeApiToken": issued["id"]}
    assert org.audit() == [{"actorId": org.ids["ann"], "action": "token.revoke", "target": f"token:{issued['id']}", "details": {}}]
    status, body = api.post("{ me { username } }", token=token)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert is_utc_now(org.data("ann", "{ apiTokens { revokedAt } }")["apiTokens"][1]["revokedAt"])
    assert org.data("ada", "mutation ($id: ID!) { revokeApiToken(id: $id) }", {"id": wes_token}) == {"revokeApiToken": wes_token}
    assert api.post("{ me { username } }", token=org.tokens["wes"])[0] == 401


def test_api_token_errors_name_the_arguments(org):
    create = "mutation ($n: String!, $e: DateTime, $u: ID) { createApiToken(name: $n, expiresAt: $e, userId: $u) { id } }"
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    for name, expires, field in (("x", past, "expiresAt"), ("x", "tomorrow", "expiresAt"), ("x", "2099-01-01T10:00:00", "expiresAt"),
                                 (" ", None, "name")):
        _, error, _ = org.error("ann", create, {"n": name, "e": expires})
        assert validation(error) == [("INVALID_VALUE", field)], (name, expires)
    _, error, _ = org.error(None, create, {"n": "x"})
    assert validation(error) == [("INVALID_VALUE", "userId")]
    _, error, _ = org.error(None, create, {"n": "x", "u": org.sub})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "userId"}
    _, error, _ = org.error("ann", "{ apiTokens(userId: \"x\") { id } }")
    assert validation(error) == [("INVALID_VALUE", "userId")]


# -- record shares and teams ----------------------------------------------------------------------

SHARE = "object recordId granteeId granteeKind access createdAt createdById"
MEMBER = "object recordId userId access teamRole createdAt createdById"


def test_share_a_record_and_manage_its_team(org):
    deal = org.deal("ann", "Ann's deal")
    see = "query ($id: ID!) { deal(id: $id) { name } }"
    _, error, _ = org.error("wes", see, {"id": deal})
    assert error["extensions"]["code"] == "NOT_FOUND"

    share = org.data("ann", f"mutation ($id: ID!, $g: ID!) {{ shareRecord(object: \"deal\", recordId: $id, granteeId: $g) {{ {SHARE} }} }}",
                     {"id": deal, "g": org.ids["wes"]})["shareRecord"]
    assert share == {"object": "deal", "recordId": deal, "granteeId": org.ids["wes"], "granteeKind": "USER", "access": "READ",
                     "createdAt": share["createdAt"], "createdById": org.ids["ann"]}
    assert is_utc_now(share["createdAt"])
    assert org.audit() == [{"actorId": org.ids["ann"], "action": "record.share", "target": f"deal:{deal}",
                            "details": {"object": "deal", "record_id": deal, "grantee_id": org.ids["wes"], "access": "read"}}]
    assert org.data("wes", see, {"id": deal}) == {"deal": {"name": "Ann's deal"}}
    _, error, _ = org.error("wes", "mutation ($id: ID!) { updateDeal(id: $id, input: {name: \"Mine\"}) { id } }", {"id": deal})
    assert error["extensions"]["code"] == "NOT_FOUND"

    unit_share = org.data("ann", "mutation ($id: ID!, $g: ID!) { shareRecord(object: \"deal\", recordId: $id, granteeId: $g, access: EDIT) { granteeKind access } }",
                          {"id": deal, "g": org.sub})
    assert unit_share == {"shareRecord": {"granteeKind": "UNIT", "access": "EDIT"}}
    member = org.data("ann", f"""mutation ($id: ID!, $u: ID!) {{ addTeamMember(object: "deal", recordId: $id, userId: $u, access: EDIT,
        teamRole: "Partner") {{ {MEMBER} }} }}""", {"id": deal, "u": org.ids["wes"]})["addTeamMember"]
    assert member == {"object": "deal", "recordId": deal, "userId": org.ids["wes"], "access": "EDIT", "teamRole": "Partner",
                      "createdAt": member["createdAt"], "createdById": org.ids["ann"]}
    assert org.audit() == [{"actorId": org.ids["ann"], "action": "team.add", "target": f"deal:{deal}",
                            "details": {"object": "deal", "record_id": deal, "user_id": org.ids["wes"], "access": "edit", "team_role": "Partner"}}]
    assert org.data("wes", "mutation ($id: ID!) { updateDeal(id: $id, input: {name: \"Shared deal\"}) { name } }", {"id": deal}) == \
        {"updateDeal": {"name": "Shared deal"}}

    sharing = org.data("wes", "query ($id: ID!) { recordSharing(object: \"deal\", recordId: $id) { shares { granteeId granteeKind access } team { userId access teamRole } } }",
                       {"id": deal})
    assert sharing == {"recordSharing": {
        "shares": [{"granteeId": org.ids["wes"], "granteeKind": "USER", "access": "READ"},
                   {"granteeId": org.sub, "granteeKind": "UNIT", "access": "EDIT"}],
        "team": [{"userId": org.ids["wes"], "access": "EDIT", "teamRole": "Partner"}]}}
    full = org.data("ann", f"query ($id: ID!) {{ recordSharing(object: \"deal\", recordId: $id) {{ shares {{ {SHARE} }} team {{ {MEMBER} }} }} }}",
                    {"id": deal})["recordSharing"]
    assert full["shares"][0] == share and full["team"] == [member]

    remove = "mutation ($id: ID!, $u: ID!) { removeTeamMember(object: \"deal\", recordId: $id, userId: $u) }"
    assert org.data("wes", remove, {"id": deal, "u": org.ids["wes"]}) == {"removeTeamMember": True}
    assert org.audit()[0]["action"] == "team.remove" and org.audit()[0]["actorId"] == org.ids["wes"]
    _, error, _ = org.error("ann", remove, {"id": deal, "u": org.ids["wes"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "userId"}
    unshare = "mutation ($id: ID!, $g: ID!) { unshareRecord(object: \"deal\", recordId: $id, granteeId: $g) }"
    _, error, _ = org.error("wes", unshare, {"id": deal, "g": org.ids["wes"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "recordId"}, "a read share does not let wes edit the record"
    assert org.data("ann", unshare, {"id": deal, "g": org.ids["wes"]}) == {"unshareRecord": True}
    assert org.audit() == [{"actorId": org.ids["ann"], "action": "record.unshare", "target": f"deal:{deal}",
                            "details": {"object": "deal", "record_id": deal, "grantee_id": org.ids["wes"]}}]
    _, error, _ = org.error("wes", see, {"id": deal})
    assert error["extensions"]["code"] == "NOT_FOUND"
    _, error, _ = org.error("ann", unshare, {"id": deal, "g": org.ids["wes"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "granteeId"}


def test_sharing_errors_name_the_arguments(org):
    deal = org.deal("ann", "Ann's deal")
    share = "mutation ($o: String!, $id: ID!, $g: ID!) { shareRecord(object: $o, recordId: $id, granteeId: $g) { access } }"
    _, error, _ = org.error("ann", share, {"o": "nothing", "id": deal, "g": org.ids["wes"]})
    assert validation(error) == [("UNKNOWN_OBJECT", "object")]
    _, error, _ = org.error("ann", share, {"o": "deal", "id": "x", "g": org.ids["wes"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "recordId"}
    _, error, _ = org.error("ann", share, {"o": "deal", "id": deal, "g": deal})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "granteeId"}
    _, error, _ = org.error("ann", share, {"o": "deal", "id": deal, "g": "x"})
    assert validation(error) == [("INVALID_VALUE", "granteeId")]
    _, error, _ = org.error("wes", share, {"o": "deal", "id": deal, "g": org.ids["wes"]})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "recordId"}
    _, error, _ = org.error("dan", share, {"o": "deal", "id": deal, "g": org.ids["wes"]})
    assert error["extensions"]["code"] == "FORBIDDEN", "directors may not update deals at all"
    team = "mutation ($id: ID!, $u: ID!, $r: String) { addTeamMember(object: \"deal\", recordId: $id, userId: $u, teamRole: $r) { access } }"
    _, error, _ = org.error("ann", team, {"id": deal, "u": org.ids["wes"], "r": "x" * 300})
    assert validation(error) == [("INVALID_VALUE", "teamRole")]
    _, error, _ = org.error("ann", team, {"id": deal, "u": "x"})
    assert validation(error) == [("INVALID_VALUE", "userId")]
    _, error, _ = org.error("ann", team, {"id": deal, "u": org.sub})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "userId"}
    _, error, _ = org.error("wes", "query ($id: ID!) { recordSharing(object: \"deal\", recordId: $id) { shares { access } } }", {"id": deal})
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "recordId"}


# -- the audit log --------------------------------------------------------------------------------

def test_security_audit_newest_first_by_target(org):
    org.data("ada", "mutation { updateRole(name: \"rep\", input: {description: \"Sells\"}) { name } }")
    entries = org.data("ada", "{ securityAudit(target: \"role:rep\", limit: 10) { id at actorId action target details } }")["securityAudit"]
    assert [(e["action"], e["actorId"], e["details"]) for e in entries] == [
        ("role.update", org.ids["ada"], {"description": "Sells"}),
        ("grant.object", None, {"object": "deal", "actions": ["read", "create", "update"], "read_scope": "own", "write_scope": "own"}),
        ("role.create", None, {"label": "Sales rep", "administrator": False}),
    ]
    assert all(e["target"] == "role:rep" and is_utc_now(e["at"]) for e in entries)
    assert int(entries[0]["id"]) > int(entries[1]["id"]) > int(entries[2]["id"])
    assert len(org.data("ada", "{ securityAudit(limit: 2) { id } }")["securityAudit"]) == 2
    for limit in (0, 1001):
        _, error, _ = org.error("ada", "query ($l: Int) { securityAudit(limit: $l) { id } }", {"l": limit})
        assert validation(error) == [("INVALID_VALUE", "limit")]


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("api_name", ["role", "membership", "api_token", "record_share"])
def test_objects_cannot_take_the_admin_api_names(api, api_name):
    status, body = api.post("mutation ($i: ObjectInput!) { createObject(input: $i) { apiName } }",
                            {"i": {"apiName": api_name, "label": "X"}})
    errors = body["errors"][0]["extensions"]
    assert errors["code"] == "INVALID_DEFINITION" and {e["code"] for e in errors["errors"]} == {"NAME_COLLISION"}, body


def test_the_admin_types_never_expose_a_stored_token(api):
    fields = api.data("{ __type(name: \"ApiToken\") { fields { name } } }")["__type"]["fields"]
    assert "token" not in {f["name"] for f in fields}
