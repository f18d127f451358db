"""Signing in, tokens and their ends, over the real WSGI app (Flask's test client), on SQLite and
PostgreSQL; the shared sign-in limit with Redis.

Users and tokens are set up through the security service (as an administrator would); everything
asserted goes through HTTP: ``POST /auth/sign-in``, ``POST /auth/sign-out`` and ``POST /graphql``.
"""
from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from argon2 import PasswordHasher
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.runtime.security import store
from lowcode.server.app import Settings, create_app
from sqlalchemy import select, text

PASSWORD = "correct horse battery"
WRONG = "wrong horse battery!"
USERS_QUERY = "{ users(orderBy: [USERNAME_ASC]) { nodes { username } } }"
BAD_CREDENTIALS = "The username or password is wrong, or the user is not active."
FAILURE_KEY = "lowcode:signin:attempts:"


class Server:
    """The app over one runtime, spoken to as an HTTP client would."""

    def __init__(self, runtime: Runtime, database_url: str, api_token: str = ""):
        self.runtime = runtime
        self.app = create_app(Settings(database_url=database_url, api_token=api_token), runtime=runtime)
        self.client = self.app.test_client()

    def sign_in(self, username, password, client: str = "127.0.0.1"):
        return self.client.post("/auth/sign-in", json={"username": username, "password": password},
                                environ_base={"REMOTE_ADDR": client})

    def token(self, username: str, password: str = PASSWORD) -> str:
        response = self.sign_in(username, password)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def graphql(self, query: str, token: str | None, headers: dict | None = None):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post("/graphql", json={"query": query}, headers=headers)

    def post(self, query: str, token: str, variables: dict | None = None) -> tuple[int, dict]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                    headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.get_json()

    def data(self, query: str, token: str, variables: dict | None = None) -> dict:
        status, body = self.post(query, token, variables)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def usernames(self, token: str) -> list[str]:
        response = self.graphql(USERS_QUERY, token)
        body = response.get_json()
        assert response.status_code == 200 and "errors" not in body, body
        return [n["username"] for n in body["data"]["users"]["nodes"]]

    def refused(self, token: str | None, message: str, headers: dict | None = None) -> None:
        """``/graphql`` answers 401 UNAUTHENTICATED with ``message`` and a bearer challenge."""
        response = self.graphql(USERS_QUERY, token, headers)
        assert response.status_code == 401, response.get_json()
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lowcode"'
        assert response.get_json() == {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}

    def token_rows(self) -> list[dict]:
        with self.runtime.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(store.tokens).order_by(store.tokens.c.created_at)).mappings()]


@pytest.fixture
def server(database_url):
    runtime = Runtime.connect(database_url).install()
    yield Server(runtime, database_url)
    runtime.close()


def add_user(server: Server, username: str, password: str | None = PASSWORD) -> str:
    return server.runtime.security.create_user(S, {"username": username}, password)["id"]


def assert_bad_credentials(response) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json() == {"errors": [{"message": BAD_CREDENTIALS, "extensions": {"code": "UNAUTHENTICATED"}}]}
    assert "Retry-After" not in response.headers


def assert_rate_limited(response) -> int:
    assert response.status_code == 429, response.get_json()
    error = response.get_json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert "token" not in response.get_json()
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 15 * 60
    assert error["message"] == f"Too many failed sign-ins; try again in {retry_after} seconds."
    return retry_after


# -- signing in ------------------------------------------------------------------------------
def test_sign_in_returns_a_session_token_that_works_on_graphql(server):
    ann = add_user(server, "ann")
    add_user(server, "bob")
    before = datetime.now(timezone.utc)
    response = server.sign_in("ann", PASSWORD)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"token", "expiresAt", "user"}
    assert body["user"] == {"id": ann, "username": "ann"}
    assert body["token"].startswith("lct_") and len(body["token"]) > 40
    expires = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(hours=12) <= expires <= datetime.now(timezone.utc) + timedelta(hours=12)

    # A user with no role at all reads the user directory.
    assert server.usernames(body["token"]) == ["ann", "bob"]
    [row] = server.token_rows()
    assert (row["user_id"], row["name"], row["kind"], row["revoked_at"]) == (ann, "sign-in", "session", None)


def test_wrong_password_and_unknown_user_are_refused_alike(server):
    add_user(server, "ann")
    add_user(server, "nopass", password=None)
    assert_bad_credentials(server.sign_in("ann", WRONG))
    assert_bad_credentials(server.sign_in("nobody", PASSWORD))
    assert_bad_credentials(server.sign_in("nopass", ""))
    assert_bad_credentials(server.sign_in("Ann", PASSWORD))  # usernames are exact
    assert server.token_rows() == []

    missing = server.client.post("/auth/sign-in", json={"username": "ann"})
    assert missing.status_code == 422
    assert missing.get_json()["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    not_json = server.client.post("/auth/sign-in", data="username=ann&password=x")
    assert not_json.status_code == 400
    assert not_json.get_json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_sixth_failed_attempt_is_rate_limited_even_with_the_right_password(server):
    add_user(server, "ann")
    for _ in range(5):
        assert_bad_credentials(server.sign_in("ann", WRONG))
    assert_rate_limited(server.sign_in("ann", PASSWORD))
    assert_rate_limited(server.sign_in("ann", WRONG))
    assert server.token_rows() == []


def test_the_limit_is_per_username_and_client(server):
    add_user(server, "ann")
    add_user(server, "bob")
    for _ in range(5):
        assert_bad_credentials(server.sign_in("ann", WRONG, client="10.0.0.1"))
    assert_rate_limited(server.sign_in("ann", PASSWORD, client="10.0.0.1"))
    # Another client may still sign in as ann; another user from the blocked client too.
    assert server.sign_in("ann", PASSWORD, client="10.0.0.2").status_code == 200
    assert_bad_credentials(server.sign_in("bob", WRONG, client="10.0.0.1"))
    assert server.sign_in("bob", PASSWORD, client="10.0.0.1").status_code == 200
    # Names differing in case share the count (the key is the lower-cased name).
    assert_rate_limited(server.sign_in("ANN", PASSWORD, client="10.0.0.1"))
    assert [r["kind"] for r in server.token_rows()] == ["session", "session"]


def test_success_resets_the_count(server):
    add_user(server, "ann")
    for _ in range(4):
        assert_bad_credentials(server.sign_in("ann", WRONG))
    assert server.sign_in("ann", PASSWORD).status_code == 200
    for _ in range(4):  # without the reset the second of these would be the sixth failure in the window
        assert_bad_credentials(server.sign_in("ann", WRONG))
    assert server.sign_in("ann", PASSWORD).status_code == 200


def test_without_redis_each_process_counts_alone(database_url):
    first, second = Runtime.connect(database_url).install(), Runtime.connect(database_url).install()
    try:
        one, two = Server(first, database_url), Server(second, database_url)
        add_user(one, "ann")
        for _ in range(5):
            assert_bad_credentials(one.sign_in("ann", WRONG))
        assert_rate_limited(one.sign_in("ann", PASSWORD))
        assert two.sign_in("ann", PASSWORD).status_code == 200
    finally:
        first.close()
        second.close()


def test_with_redis_the_limit_is_shared_by_every_app_instance(database_url, redis_url):
    first = Runtime.connect(database_url, redis_url).install()
    second = Runtime.connect(database_url, redis_url).install()
    store = redis.Redis.from_url(redis_url)
    try:
        one, two = Server(first, database_url), Server(second, database_url)
        add_user(one, "ann")
        for server in (one, two, one, two, one):
            assert_bad_credentials(server.sign_in("ann", WRONG))
        key = FAILURE_KEY + "ann|127.0.0.1"
        assert int(store.get(key)) == 5
        assert 0 < store.ttl(key) <= 15 * 60
        assert_rate_limited(two.sign_in("ann", PASSWORD))
        assert_rate_limited(one.sign_in("ann", PASSWORD))
        assert one.token_rows() == []

        # The count lives in Redis only: when its key goes (the window ended), both admit again,
        # and a success through one instance clears what the other counted.
        store.delete(key)
        assert two.sign_in("ann", PASSWORD).status_code == 200
        for _ in range(4):
            assert_bad_credentials(one.sign_in("ann", WRONG))
        assert int(store.get(key)) == 4
        assert two.sign_in("ann", PASSWORD).status_code == 200
        assert store.get(key) is None
        assert_bad_credentials(one.sign_in("ann", WRONG))
        assert int(store.get(key)) == 1
    finally:
        store.close()
        first.close()
        second.close()


# -- the ends of tokens ----------------------------------------------------------------------
def test_missing_or_malformed_authorization_is_a_bearer_challenge(server):
    add_user(server, "ann")
    message = "Send 'Authorization: Bearer <token>': sign in at /auth/sign-in or use an API token."
    server.refused(None, message)
    server.refused(None, message, headers={"Authorization": f"Basic {server.token('ann')}"})
    server.refused(None, message, headers={"Authorization": "Bearer "})
    server.refused("lct_not-a-token-anyone-was-given", "The token is not known; sign in again or ask for a new API token.")


CREATE_TOKEN = """mutation($name: String!, $expires: DateTime) {
  createApiToken(name: $name, expiresAt: $expires) { id token name kind userId expiresAt }
}"""
REVOKE_TOKEN = "mutation($id: ID!) { revokeApiToken(id: $id) }"
SET_PASSWORD = "mutation($user: ID!, $new: String!, $current: String) { setPassword(userId: $user, password: $new, currentPassword: $current) }"


def test_api_token_a_user_creates_works_until_revoked(server):
    ann = add_user(server, "ann")
    session = server.token("ann")
    issued = server.data(CREATE_TOKEN, session, {"name": "ci"})["createApiToken"]
    assert {k: v for k, v in issued.items() if k not in ("id", "token")} == {"name": "ci", "kind": "API", "userId": ann, "expiresAt": None}
    assert issued["token"].startswith("lct_") and issued["token"] != session
    other = server.data(CREATE_TOKEN, session, {"name": "backup"})["createApiToken"]
    assert server.usernames(issued["token"]) == ["ann"]

    assert server.data(REVOKE_TOKEN, session, {"id": issued["id"]}) == {"revokeApiToken": issued["id"]}
    server.refused(issued["token"], "The token was revoked.")
    assert server.usernames(other["token"]) == ["ann"]
    assert server.usernames(session) == ["ann"]

    # Another user's token is not found by a non-administrator (and keeps working).
    add_user(server, "bob")
    status, body = server.post(REVOKE_TOKEN, server.token("bob"), {"id": other["id"]})
    assert status == 200 and [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body
    assert server.usernames(other["token"]) == ["ann", "bob"]


def test_expired_token_is_refused(server):
    add_user(server, "ann")
    session = server.token("ann")
    expires = datetime.now(timezone.utc) + timedelta(seconds=2)
    issued = server.data(CREATE_TOKEN, session, {"name": "short-lived", "expires": expires.isoformat()})["createApiToken"]
    assert datetime.fromisoformat(issued["expiresAt"]) == expires
    assert server.usernames(issued["token"]) == ["ann"]
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    server.refused(issued["token"], "The token has expired; sign in again.")
    assert server.usernames(session) == ["ann"]

    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    status, body = server.post(CREATE_TOKEN, session, {"name": "past", "expires": past})
    assert status == 200 and body["data"] is None, body
    assert [(e["code"], e["field"]) for e in body["errors"][0]["extensions"]["errors"]] == [("INVALID_VALUE", "expiresAt")]


def test_tokens_of_a_deleted_user_stop_working(server):
    ann = add_user(server, "ann")
    add_user(server, "bob")
    session = server.token("ann")
    api = server.runtime.security.issue_token(S, "ci", user_id=ann)["token"]
    assert server.usernames(session) == ["ann", "bob"]

    server.runtime.security.delete_user(S, ann)
    server.refused(session, "The token was revoked.")
    server.refused(api, "The token was revoked.")
    assert_bad_credentials(server.sign_in("ann", PASSWORD))
    assert server.usernames(server.token("bob")) == ["bob"]


def test_tokens_of_a_deactivated_user_stop_working(server):
    ann = add_user(server, "ann")
    session = server.token("ann")
    api = server.runtime.security.issue_token(S, "ci", user_id=ann)["token"]

    server.runtime.records.update(S, "user", ann, {"active": False})
    server.refused(session, "The token's user is deleted or deactivated.")
    server.refused(api, "The token's user is deleted or deactivated.")
    assert_bad_credentials(server.sign_in("ann", PASSWORD))

    server.runtime.records.update(S, "user", ann, {"active": True})
    assert server.usernames(server.token("ann")) == ["ann"]


def test_sign_out_revokes_that_session_only(server):
    add_user(server, "ann")
    first, second = server.token("ann"), server.token("ann")
    response = server.client.post("/auth/sign-out", headers={"Authorization": f"Bearer {first}"})
    assert response.status_code == 204 and response.data == b""
    server.refused(first, "The token was revoked.")
    assert server.usernames(second) == ["ann"]
    assert [r["revoked_at"] is not None for r in server.token_rows()] == [True, False]

    anonymous = server.client.post("/auth/sign-out")
    assert anonymous.status_code == 401
    assert anonymous.get_json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_tokens_are_stored_as_sha256_digests_and_passwords_as_argon2id(server):
    ann = add_user(server, "ann")
    session = server.token("ann")
    api = server.runtime.security.issue_token(S, "ci", user_id=ann)["token"]
    rows = server.token_rows()
    assert [r["kind"] for r in rows] == ["session", "api"]
    for row, plain in zip(rows, (session, api)):
        assert row["token_hash"] == hashlib.sha256(plain.encode()).hexdigest()
        assert row["hint"] == f"lct_…{plain[-4:]}"
        assert all(plain not in str(value) for value in row.values())
    with server.runtime.engine.connect() as conn:
        dump = [str(v) for r in conn.execute(text("SELECT * FROM lc_token")) for v in r]
        [stored] = conn.execute(select(store.credentials.c.password_hash).where(store.credentials.c.user_id == ann)).scalars()
        audit = [str(v) for r in conn.execute(text("SELECT * FROM lc_security_audit")) for v in r]
    assert not any(plain in value for value in dump + audit for plain in (session, api))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert not any(PASSWORD in value for value in audit)
    assert PasswordHasher().verify(stored, PASSWORD)


# -- changing one's password -----------------------------------------------------------------
def test_a_user_changes_their_password_with_the_current_one_and_their_sessions_end(server):
    ann = add_user(server, "ann")
    add_user(server, "bob")
    here, elsewhere = server.token("ann"), server.token("ann")
    api = server.data(CREATE_TOKEN, here, {"name": "ci"})["createApiToken"]["token"]
    bobs = server.token("bob")

    changed = server.data(SET_PASSWORD, here, {"user": ann, "new": "a brand new secret", "current": PASSWORD})
    assert changed == {"setPassword": True}
    # Every session of the user ends, the one that asked included; API tokens are not sessions.
    server.refused(here, "The token was revoked.")
    server.refused(elsewhere, "The token was revoked.")
    assert server.usernames(api) == ["ann", "bob"]
    assert server.usernames(bobs) == ["ann", "bob"]
    assert_bad_credentials(server.sign_in("ann", PASSWORD))
    assert server.usernames(server.token("ann", "a brand new secret")) == ["ann", "bob"]


def test_a_wrong_current_password_changes_nothing(server):
    ann = add_user(server, "ann")
    bob = add_user(server, "bob")
    session = server.token("ann")

    def refused(variables: dict) -> tuple[str, list]:
        status, body = server.post(SET_PASSWORD, session, variables)
        assert status == 200 and body["data"] is None, body
        [error] = body["errors"]
        return error["extensions"]["code"], [(e["code"], e["field"]) for e in error["extensions"].get("errors", [])]

    assert refused({"user": ann, "new": "a brand new secret", "current": WRONG}) == (
        "VALIDATION_FAILED", [("INVALID_VALUE", "currentPassword")])
    assert refused({"user": ann, "new": "a brand new secret"}) == ("VALIDATION_FAILED", [("INVALID_VALUE", "currentPassword")])
    assert refused({"user": ann, "new": "short", "current": PASSWORD}) == ("VALIDATION_FAILED", [("INVALID_VALUE", "password")])
    assert refused({"user": bob, "new": "a brand new secret", "current": PASSWORD}) == ("FORBIDDEN", [])

    assert server.usernames(session) == ["ann", "bob"]
    assert server.sign_in("ann", PASSWORD).status_code == 200
    assert server.sign_in("bob", PASSWORD).status_code == 200
    assert_bad_credentials(server.sign_in("ann", "a brand new secret"))
    assert_bad_credentials(server.sign_in("bob", "a brand new secret"))
