"""The notification inbox through its service, on SQLite and PostgreSQL: delivery inside a
caller's transaction, once per user and key, to users resolved from org units and roles; each
user's inbox newest first with cursors; marking read only one's own; purging read ones."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import Forbidden, LowcodeError, NotFound, ValidationFailed
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.notifications import Delivery
from lowcode.runtime.notifications.store import notifications as NOTIFICATIONS
from sqlalchemy import func, select

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock()).install()
    yield runtime
    runtime.close()


def make_user(rt, username):
    """A new user without any role: the actor their token authenticates as."""
    sec = rt.security
    user = sec.create_user(S, {"username": username})
    return sec.authenticate(sec.issue_token(S, "tests", user_id=user["id"])["token"])


def stored(rt, **where):
    """``(user_id, title)`` of every stored notification matching ``where``, sorted."""
    query = select(NOTIFICATIONS.c.user_id, NOTIFICATIONS.c.title)
    for name, value in where.items():
        query = query.where(NOTIFICATIONS.c[name] == value)
    with rt.engine.connect() as conn:
        return sorted((str(r.user_id), r.title) for r in conn.execute(query))


def count_all(rt):
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(NOTIFICATIONS)).scalar_one()


def problems(error):
    return [(e.code, e.field) for e in error.value.errors]


# -- delivering -----------------------------------------------------------------------------------
def test_notify_in_a_transaction_exists_only_if_the_caller_commits(rt):
    ann = make_user(rt, "ann")
    with pytest.raises(RuntimeError):
        with rt.engine.connect() as conn, conn.begin():
            assert rt.notifications.notify([ann.id], "reminder", "Call the customer", conn=conn) == 1
            assert count_all(rt) == 0
            raise RuntimeError("the caller's work failed")
    assert count_all(rt) == 0
    assert rt.notifications.unread_count(ann) == 0

    with rt.engine.connect() as conn, conn.begin():
        rt.notifications.notify([ann.id], "reminder", "Call the customer", "Today", conn=conn)
    page = rt.notifications.inbox(ann)
    assert [(n.kind, n.title, n.body, n.read_at) for n in page.notifications] == [("reminder", "Call the customer", "Today", None)]
    assert page.notifications[0].created_at == rt.clock.now()
    assert page.notifications[0].user_id == ann.id


def test_a_keyed_notification_reaches_each_user_once(rt):
    ann, bob, cat = make_user(rt, "ann"), make_user(rt, "bob"), make_user(rt, "cat")
    notify = rt.notifications.notify
    assert notify([ann.id, bob.id], "reminder", "Renewal due", key="renewal:42") == 2
    assert notify([ann.id, bob.id], "reminder", "Renewal due", key="renewal:42") == 0
    assert notify([bob.id, cat.id, cat.id], "reminder", "Renewal due", key="renewal:42") == 1
    assert notify([ann.id], "reminder", "Renewal due", key="renewal:43") == 1
    assert notify([ann.id], "reminder", "Renewal due") == 1
    assert notify([ann.id], "reminder", "Renewal due") == 1
    assert stored(rt, title="Renewal due") == sorted([(ann.id, "Renewal due")] * 4 + [(bob.id, "Renewal due"), (cat.id, "Renewal due")])
    assert [rt.notifications.unread_count(a) for a in (ann, bob, cat)] == [4, 1, 1]


def test_unknown_inactive_and_deleted_users_are_refused_by_index_and_nothing_is_delivered(rt):
    ann, bob, eve = make_user(rt, "ann"), make_user(rt, "bob"), make_user(rt, "eve")
    rt.records.update(S, "user", bob.id, {"active": False})
    rt.security.delete_user(S, eve.id)
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify([ann.id, UNKNOWN, bob.id, "not-an-id", eve.id], "reminder", "Hello", key="k")
    assert problems(error) == [("INVALID_VALUE", "user_ids.3"), ("NOT_FOUND", "user_ids.1"),
                               ("NOT_FOUND", "user_ids.2"), ("NOT_FOUND", "user_ids.4")]
    assert error.value.errors[1].ctx == {"id": UNKNOWN}
    assert count_all(rt) == 0
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify(ann.id, "reminder", "Hello")
    assert problems(error) == [("INVALID_VALUE", "user_ids")]
    assert rt.notifications.notify([], "reminder", "Hello") == 0
    assert count_all(rt) == 0


def test_the_message_is_checked_before_anything_is_delivered(rt):
    ann = make_user(rt, "ann")
    notify = rt.notifications.notify
    with pytest.raises(ValidationFailed) as error:
        notify([ann.id], "Win Announcement", "", 7, record=("Deal", UNKNOWN), key="")
    assert problems(error) == [("INVALID_VALUE", "kind"), ("INVALID_VALUE", "title"), ("INVALID_VALUE", "body"),
                               ("INVALID_VALUE", "record"), ("INVALID_VALUE", "key")]
    for title in ("   ", "x" * 256, None):
        with pytest.raises(ValidationFailed) as error:
            notify([ann.id], "reminder", title)
        assert problems(error) == [("INVALID_VALUE", "title")]
    for record in (("deal",), ("deal", "42"), "deal", ("deal", UNKNOWN, 1)):
        with pytest.raises(ValidationFailed) as error:
            notify([ann.id], "reminder", "Hi", record=record)
        assert problems(error) == [("INVALID_VALUE", "record")]
    with pytest.raises(ValidationFailed) as error:
        notify([ann.id], "reminder", "Hi", "b" * 4001)
    assert problems(error) == [("INVALID_VALUE", "body")]
    assert count_all(rt) == 0
    assert notify([ann.id], "approval.request", "x" * 255, "b" * 4000, record=("deal", UNKNOWN.upper()), key="k" * 255) == 1
    [only] = rt.notifications.inbox(ann).notifications
    assert (only.kind, len(only.title), only.object_api_name, only.record_id) == ("approval.request", 255, "deal", UNKNOWN)


def test_many_deliveries_go_in_at_once_each_once_per_user_and_key(rt):
    ann, bob = make_user(rt, "ann"), make_user(rt, "bob")
    each = [Delivery(ann.id, "reminder.visit", "Visit Acme", "visit:acme:1", "due today", ("account", UNKNOWN)),
            Delivery(bob.id, "reminder.visit", "Visit Bolt", "visit:bolt:1"),
            Delivery(ann.id, "reminder.task", "Call back", "task:7")]
    assert rt.notifications.notify_each(each) == 3
    assert rt.notifications.notify_each([*each, Delivery(bob.id, "reminder.task", "Call back", "task:7")]) == 1
    assert stored(rt) == sorted([(ann.id, "Visit Acme"), (bob.id, "Visit Bolt"), (ann.id, "Call back"), (bob.id, "Call back")])
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify_each([Delivery(ann.id, "reminder", "Fine", "k:1"), Delivery(ann.id, "Bad Kind", "", None)])
    assert problems(error) == [("INVALID_VALUE", "deliveries.1.kind"), ("INVALID_VALUE", "deliveries.1.title"),
                               ("REQUIRED", "deliveries.1.key")]
    assert count_all(rt) == 4
    assert rt.notifications.notify_each([]) == 0


# -- org units and roles --------------------------------------------------------------------------
@pytest.fixture
def org(rt):
    """group > east > (shanghai, hangzhou), group > west; ann manages east and sells in shanghai,
    bob sells in shanghai, cat manages hangzhou, dan sells in west, old (deactivated) manages east."""
    sec = rt.security
    group = sec.create_unit(S, "Group")
    east = sec.create_unit(S, "East", group["id"])
    units = {"group": group, "east": east, "shanghai": sec.create_unit(S, "Shanghai", east["id"]),
             "hangzhou": sec.create_unit(S, "Hangzhou", east["id"]), "west": sec.create_unit(S, "West", group["id"])}
    units = {name: unit["id"] for name, unit in units.items()}
    sec.create_role(S, "manager", "Manager")
    sec.create_role(S, "sales", "Sales")
    users = {name: make_user(rt, name).id for name in ("ann", "bob", "cat", "dan", "old")}
    for user, unit, role in (("ann", "east", "manager"), ("ann", "shanghai", "sales"), ("bob", "shanghai", "sales"),
                             ("cat", "hangzhou", "manager"), ("dan", "west", "sales"), ("old", "east", "manager")):
        sec.add_membership(S, users[user], units[unit], role)
    rt.records.update(S, "user", users["old"], {"active": False})
    names = {user_id: name for name, user_id in users.items()}
    return units, users, lambda title: sorted(names[user_id] for user_id, _ in stored(rt, title=title))


def test_units_resolve_to_their_active_members_each_once(rt, org):
    units, _, reached = org
    notify_units = rt.notifications.notify_units
    assert notify_units([units["east"]], "announcement", "East only") == 1
    assert reached("East only") == ["ann"]
    assert notify_units([units["east"], units["shanghai"]], "announcement", "East and below", include_below=True) == 3
    assert reached("East and below") == ["ann", "bob", "cat"]
    assert notify_units([units["group"]], "announcement", "Everyone", include_below=True) == 4
    assert reached("Everyone") == ["ann", "bob", "cat", "dan"]
    assert notify_units([units["group"]], "announcement", "Group itself") == 0
    assert notify_units([units["east"]], "approval", "Managers below east", include_below=True, roles=["manager"]) == 2
    assert reached("Managers below east") == ["ann", "cat"]
    assert notify_units([units["shanghai"], units["west"]], "approval", "Sales", roles=["sales"], key="sales") == 3
    assert notify_units([units["shanghai"], units["west"]], "approval", "Sales", roles=["sales"], key="sales") == 0
    assert reached("Sales") == ["ann", "bob", "dan"]
    assert notify_units([units["east"]], "approval", "No roles", roles=[]) == 0


def test_roles_resolve_to_their_holders_anywhere_or_within_a_unit(rt, org):
    units, _, reached = org
    notify_roles = rt.notifications.notify_roles
    assert notify_roles(["sales"], "announcement", "All sales") == 3
    assert reached("All sales") == ["ann", "bob", "dan"]
    assert notify_roles(["sales", "manager"], "announcement", "Everyone with a role") == 4
    assert reached("Everyone with a role") == ["ann", "bob", "cat", "dan"]
    assert notify_roles(["manager"], "announcement", "East managers", unit_id=units["east"]) == 1
    assert reached("East managers") == ["ann"]
    assert notify_roles(["manager"], "announcement", "Managers in east", unit_id=units["east"], include_below=True) == 2
    assert reached("Managers in east") == ["ann", "cat"]


def test_unknown_units_and_roles_are_refused_by_index(rt, org):
    units, _, _ = org
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify_units([units["east"], UNKNOWN, "x"], "announcement", "Hi", roles=["sales", "pilot"])
    assert problems(error) == [("INVALID_VALUE", "unit_ids.2"), ("NOT_FOUND", "unit_ids.1"), ("NOT_FOUND", "roles.1")]
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify_roles(["pilot", "sales"], "announcement", "Hi")
    assert problems(error) == [("NOT_FOUND", "role_names.0")]
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.notify_roles(["sales"], "announcement", "Hi", unit_id=UNKNOWN)
    assert problems(error) == [("NOT_FOUND", "unit_ids.0")]
    assert count_all(rt) == 0


# -- the inbox ------------------------------------------------------------------------------------
def test_the_inbox_lists_newest_first_in_pages_with_counts(rt):
    ann, bob = make_user(rt, "ann"), make_user(rt, "bob")
    for n in range(1, 6):
        rt.notifications.notify([ann.id], "reminder", f"n{n}")
        rt.clock.advance(60)
    rt.notifications.notify([bob.id], "reminder", "bob's")
    inbox = rt.notifications.inbox

    first = inbox(ann, first=2)
    assert ([n.title for n in first.notifications], first.has_next_page, first.unread_count) == (["n5", "n4"], True, 5)
    second = inbox(ann, first=2, after=first.end_cursor)
    assert ([n.title for n in second.notifications], second.has_next_page) == (["n3", "n2"], True)
    last = inbox(ann, first=2, after=second.end_cursor)
    assert ([n.title for n in last.notifications], last.has_next_page) == (["n1"], False)
    empty = inbox(ann, after=last.end_cursor)
    assert (empty.notifications, empty.has_next_page, empty.end_cursor) == ([], False, None)

    by_title = {n.title: n.id for n in inbox(ann).notifications}
    assert rt.notifications.mark_read(ann, [by_title["n4"], by_title["n2"]]) == 2
    unread = inbox(ann, unread_only=True, first=2)
    assert ([n.title for n in unread.notifications], unread.has_next_page, unread.unread_count) == (["n5", "n3"], True, 3)
    rest = inbox(ann, unread_only=True, first=2, after=unread.end_cursor)
    assert ([n.title for n in rest.notifications], rest.has_next_page) == (["n1"], False)
    assert [n.read_at is not None for n in inbox(ann).notifications] == [False, True, False, True, False]
    assert (rt.notifications.unread_count(ann), rt.notifications.unread_count(bob)) == (3, 1)


def test_paging_through_notifications_of_the_same_instant_lists_each_once(rt):
    ann = make_user(rt, "ann")
    for n in range(7):
        rt.notifications.notify([ann.id], "reminder", f"same {n}")
    seen, after = [], None
    while True:
        page = rt.notifications.inbox(ann, first=2, after=after)
        seen.extend(n.id for n in page.notifications)
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert len(seen) == 7 == len(set(seen))
    assert seen == [n.id for n in rt.notifications.inbox(ann).notifications]


def test_bad_paging_arguments_are_refused(rt):
    ann = make_user(rt, "ann")
    for first in (0, 201, "2", True):
        with pytest.raises(ValidationFailed) as error:
            rt.notifications.inbox(ann, first=first)
        assert problems(error) == [("OUT_OF_RANGE", "first")]
    for cursor in ("nonsense", "W10", "WyIyMDMwLTAxLTAxVDAwOjAwOjAwIiwiYSJd"):
        with pytest.raises(ValidationFailed) as error:
            rt.notifications.inbox(ann, after=cursor)
        assert problems(error) == [("INVALID_CURSOR", "after")]


def test_a_linked_record_stays_listed_when_the_user_can_no_longer_read_it(rt):
    sec = rt.security
    rt.metadata.create_object(S, {"api_name": "deal", "label": "Deal", "fields": [{"api_name": "name", "label": "Name", "type": "text"}]})
    unit = sec.create_unit(S, "Sales")
    sec.create_role(S, "reader", "Reader")
    sec.set_object_grant(S, "reader", "deal", ["read"], "all", "all")
    ann = make_user(rt, "ann")
    sec.add_membership(S, ann.id, unit["id"], "reader")
    deal = rt.records.create(S, "deal", {"name": "Big one"})
    rt.notifications.notify([ann.id], "announcement", "We won Big one", record=("deal", deal["id"]))
    reader = sec.authenticate(sec.issue_token(S, "again", user_id=ann.id)["token"])
    assert rt.records.get(reader, "deal", deal["id"])["name"] == "Big one"

    sec.remove_membership(S, ann.id, unit["id"], "reader")
    outsider = sec.authenticate(sec.issue_token(S, "later", user_id=ann.id)["token"])
    [only] = rt.notifications.inbox(outsider).notifications
    assert (only.title, only.object_api_name, only.record_id) == ("We won Big one", "deal", deal["id"])
    with pytest.raises((NotFound, Forbidden)):
        rt.records.get(outsider, "deal", deal["id"])


# -- marking read ---------------------------------------------------------------------------------
def test_users_mark_only_their_own_notifications(rt):
    ann, bob = make_user(rt, "ann"), make_user(rt, "bob")
    rt.notifications.notify([ann.id, bob.id], "reminder", "one")
    rt.clock.advance(1)
    rt.notifications.notify([ann.id, bob.id], "reminder", "two")
    anns = [n.id for n in rt.notifications.inbox(ann).notifications]
    bobs = [n.id for n in rt.notifications.inbox(bob).notifications]

    with pytest.raises(NotFound) as error:
        rt.notifications.mark_read(ann, [anns[0], bobs[0]])
    assert (error.value.code, error.value.field) == ("NOT_FOUND", "ids.1")
    assert bobs[0] in error.value.message
    for wrong in (UNKNOWN, "not-an-id"):
        with pytest.raises(NotFound):
            rt.notifications.mark_read(ann, [wrong])
    assert (rt.notifications.unread_count(ann), rt.notifications.unread_count(bob)) == (2, 2)

    assert rt.notifications.mark_read(ann, [anns[0], anns[0]]) == 1
    assert rt.notifications.mark_read(ann, [anns[0]]) == 0
    assert rt.notifications.mark_read(ann, []) == 0
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.mark_read(ann, anns[0])
    assert problems(error) == [("INVALID_VALUE", "ids")]
    assert [n.read_at for n in rt.notifications.inbox(ann).notifications] == [rt.clock.now(), None]
    assert rt.notifications.mark_all_read(ann) == 1
    assert rt.notifications.mark_all_read(ann) == 0
    assert (rt.notifications.unread_count(ann), rt.notifications.unread_count(bob)) == (0, 2)
    assert [n.read_at for n in rt.notifications.inbox(bob).notifications] == [None, None]


def test_the_system_actor_has_no_inbox(rt):
    for call in (lambda: rt.notifications.inbox(S), lambda: rt.notifications.unread_count(S),
                 lambda: rt.notifications.mark_read(S, [UNKNOWN]), lambda: rt.notifications.mark_all_read(S)):
        with pytest.raises(Forbidden) as error:
            call()
        assert "has no inbox" in error.value.message


# -- retention ------------------------------------------------------------------------------------
def test_purge_deletes_only_old_read_notifications(rt):
    ann = make_user(rt, "ann")
    rt.notifications.notify([ann.id], "reminder", "old read")
    rt.notifications.notify([ann.id], "reminder", "old unread")
    rt.clock.advance(days=40)
    rt.notifications.notify([ann.id], "reminder", "new read")
    page = rt.notifications.inbox(ann).notifications
    rt.notifications.mark_read(ann, [n.id for n in page if n.title.endswith(" read")])
    assert rt.notifications.purge(timedelta(days=30)) == 1
    assert [n.title for n in rt.notifications.inbox(ann).notifications] == ["new read", "old unread"]
    assert rt.notifications.purge(rt.clock.now() + timedelta(seconds=1)) == 1
    assert [n.title for n in rt.notifications.inbox(ann).notifications] == ["old unread"]
    with pytest.raises(ValidationFailed) as error:
        rt.notifications.purge(rt.clock.now().replace(tzinfo=None))
    assert problems(error) == [("INVALID_VALUE", "older_than")]


# -- concurrency ----------------------------------------------------------------------------------
def test_eight_threads_delivering_one_keyed_notification_reach_each_user_once(postgres_url):
    rt = Runtime.connect(postgres_url).install()
    try:
        users = [make_user(rt, f"user{n}").id for n in range(5)]
        barrier = threading.Barrier(8)
        delivered, failures = [], []
        lock = threading.Lock()

        def deliver(order):
            barrier.wait()
            try:
                count = rt.notifications.notify(order, "reminder", "Once", key="reminder:once")
            except LowcodeError as exc:
                failures.append(exc)
                return
            with lock:
                delivered.append(count)

        threads = [threading.Thread(target=deliver, args=(users[n % 5:] + users[:n % 5],)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        assert sum(delivered) == 5 and len(delivered) == 8
        assert stored(rt) == sorted((user_id, "Once") for user_id in users)
    finally:
        rt.close()
