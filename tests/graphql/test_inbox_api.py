"""The inbox API over HTTP GraphQL, on SQLite and PostgreSQL: two users with their own tokens
each read, page and mark only their own notifications; the service token has no inbox."""
from __future__ import annotations

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.server.app import Settings, create_app

INBOX = """query($unread: Boolean, $first: Int, $after: String) {
  inbox(unreadOnly: $unread, first: $first, after: $after) {
    nodes { id kind title body objectApiName recordId createdAt readAt }
    pageInfo { hasNextPage endCursor }
    unreadCount
  }
}"""
TITLES = "query($unread: Boolean, $first: Int, $after: String) { inbox(unreadOnly: $unread, first: $first, after: $after) { nodes { title } pageInfo { hasNextPage endCursor } unreadCount } }"
COUNT = "{ inboxUnreadCount }"
MARK = "mutation($ids: [ID!]!) { markInboxRead(ids: $ids) }"
MARK_ALL = "mutation { markAllInboxRead }"
RECORD = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock()).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


@pytest.fixture
def people(api):
    """``{name: (user id, token)}`` for ann and bob, users without any role."""
    sec = api.runtime.security
    found = {}
    for name in ("ann", "bob"):
        user = sec.create_user(S, {"username": name})
        found[name] = (user["id"], sec.issue_token(S, "tests", user_id=user["id"])["token"])
    return found


def test_each_user_reads_their_own_inbox_newest_first_in_pages(api, people):
    (ann, ann_token), (bob, bob_token) = people["ann"], people["bob"]
    notify, clock = api.runtime.notifications.notify, api.runtime.clock
    notify([ann], "reminder", "Call Acme", "Before noon", record=("deal", RECORD))
    first_at = clock.now()
    clock.advance(60)
    notify([ann, bob], "announcement", "We won Acme")
    clock.advance(60)
    notify([ann], "approval", "Approve the discount")

    page = api.data(INBOX, {"first": 2}, token=ann_token)["inbox"]
    assert [n["title"] for n in page["nodes"]] == ["Approve the discount", "We won Acme"]
    assert page["pageInfo"]["hasNextPage"] is True and page["unreadCount"] == 3
    rest = api.data(INBOX, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=ann_token)["inbox"]
    assert rest["nodes"] == [{"id": rest["nodes"][0]["id"], "kind": "reminder", "title": "Call Acme", "body": "Before noon",
                              "objectApiName": "deal", "recordId": RECORD, "createdAt": first_at.isoformat(), "readAt": None}]
    assert rest["pageInfo"]["hasNextPage"] is False
    after_last = api.data(TITLES, {"after": rest["pageInfo"]["endCursor"]}, token=ann_token)["inbox"]
    assert after_last == {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}, "unreadCount": 3}

    bobs = api.data(TITLES, token=bob_token)["inbox"]
    assert bobs == {"nodes": [{"title": "We won Acme"}], "pageInfo": {"hasNextPage": False, "endCursor": bobs["pageInfo"]["endCursor"]},
                    "unreadCount": 1}
    assert api.data(COUNT, token=ann_token) == {"inboxUnreadCount": 3}
    assert api.data(COUNT, token=bob_token) == {"inboxUnreadCount": 1}


def test_users_mark_only_their_own_notifications_read(api, people):
    (ann, ann_token), (bob, bob_token) = people["ann"], people["bob"]
    api.runtime.notifications.notify([ann, bob], "reminder", "one")
    api.runtime.clock.advance(1)
    api.runtime.notifications.notify([ann, bob], "reminder", "two")
    anns = [n["id"] for n in api.data(INBOX, token=ann_token)["inbox"]["nodes"]]
    bobs = [n["id"] for n in api.data(INBOX, token=bob_token)["inbox"]["nodes"]]

    status, errors = api.errors(MARK, {"ids": [anns[0], bobs[0]]}, token=ann_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert errors[0]["extensions"]["field"] == "ids.1"
    assert "Traceback" not in str(errors)
    status, errors = api.errors(MARK, {"ids": ["not-an-id"]}, token=bob_token)
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert api.data(COUNT, token=ann_token) == {"inboxUnreadCount": 2}
    assert api.data(COUNT, token=bob_token) == {"inboxUnreadCount": 2}

    assert api.data(MARK, {"ids": [anns[0]]}, token=ann_token) == {"markInboxRead": 1}
    assert api.data(MARK, {"ids": [anns[0]]}, token=ann_token) == {"markInboxRead": 0}
    unread = api.data(TITLES, {"unread": True}, token=ann_token)["inbox"]
    assert ([n["title"] for n in unread["nodes"]], unread["unreadCount"]) == (["one"], 1)
    read_at = api.data(INBOX, token=ann_token)["inbox"]["nodes"][0]["readAt"]
    assert read_at == api.runtime.clock.now().isoformat()

    assert api.data(MARK_ALL, token=ann_token) == {"markAllInboxRead": 1}
    assert api.data(MARK_ALL, token=ann_token) == {"markAllInboxRead": 0}
    assert api.data(COUNT, token=ann_token) == {"inboxUnreadCount": 0}
    assert api.data(COUNT, token=bob_token) == {"inboxUnreadCount": 2}
    assert api.data(TITLES, {"unread": True}, token=bob_token)["inbox"]["unreadCount"] == 2


def test_bad_arguments_are_validation_errors(api, people):
    _, token = people["ann"]
    for variables, field, code in (({"first": 0}, "first", "OUT_OF_RANGE"), ({"first": 201}, "first", "OUT_OF_RANGE"),
                                   ({"after": "nonsense"}, "after", "INVALID_CURSOR")):
        status, errors = api.errors(INBOX, variables, token=token)
        assert errors[0]["extensions"]["code"] == "VALIDATION_FAILED"
        assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [(code, field)]


def test_the_service_token_has_no_inbox(api, people):
    ann, _ = people["ann"]
    api.runtime.notifications.notify([ann], "reminder", "for ann")
    for query, variables in ((INBOX, None), (COUNT, None), (MARK, {"ids": [RECORD]}), (MARK_ALL, None)):
        status, errors = api.errors(query, variables)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
        assert "has no inbox" in errors[0]["message"]
    assert api.runtime.notifications.inbox(api.runtime.security.authenticate(people["ann"][1])).unread_count == 1


def test_an_object_named_notification_keeps_its_own_fields_beside_the_inbox(api, people):
    _, token = people["ann"]
    api.runtime.metadata.create_object(S, {"api_name": "notification", "label": "Notification",
                                           "fields": [{"api_name": "subject", "label": "Subject", "type": "text"}]})
    api.runtime.records.create(S, "notification", {"subject": "a record, not an inbox entry"})
    data = api.data("{ notifications { totalCount nodes: edges { node { subject } } } }")
    assert data == {"notifications": {"totalCount": 1, "nodes": [{"node": {"subject": "a record, not an inbox entry"}}]}}
    assert api.data(COUNT, token=token) == {"inboxUnreadCount": 0}
