"""The Catalog: an immutable snapshot per metadata version, cached per process, kept current across
processes through the database version row or, with Redis, the mirrored version key.

A second ``Runtime`` on the same database stands in for a second process.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import redis
import sqlalchemy
from lowcode.metadata.actors import Actor
from lowcode.metadata.errors import InvalidDefinition, NotFound
from lowcode.runtime import Runtime

ALICE = Actor("0b6c1b2e-8d0e-4a8e-9a57-3f0f3c2a1d10", "alice", is_system=True)
VERSION_KEY = "lowcode:meta:version"


def thing(name="thing", **extra):
    return {"api_name": name, "label": name.title(), "fields": [
        {"api_name": "title", "label": "Title", "type": "text", "options": {"max_length": 80}},
        {"api_name": "status", "label": "Status", "type": "picklist",
         "options": {"values": [{"api_name": "open", "label": "Open"}]}},
    ], **extra}


def stored_version(database_url) -> int:
    engine = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT version FROM lc_meta_version WHERE id = 1")).scalar_one()
    finally:
        engine.dispose()


def wait_until(condition, timeout=10.0, step=0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; the caller asserts the result."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


@pytest.fixture
def runtimes():
    """Extra runtimes a test opens, closed after it."""
    opened = []

    def open_runtime(*args, install=False, **kwargs):
        rt = Runtime.connect(*args, **kwargs)
        opened.append(rt)
        return rt.install() if install else rt

    yield open_runtime
    for rt in opened:
        rt.close()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- immutability ------------------------------------------------------------------------------
def test_catalog_is_an_immutable_snapshot(runtime):
    runtime.metadata.create_object(ALICE, thing())
    catalog = runtime.catalog()
    obj = catalog.object("thing")
    field = obj.field("status")

    with pytest.raises(TypeError):
        catalog.objects["other"] = obj
    with pytest.raises(TypeError):
        del catalog.objects["thing"]
    with pytest.raises(AttributeError):
        catalog.objects.clear()
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.label = "Changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        field.required = True
    with pytest.raises(AttributeError):
        obj.fields.append(field)
    with pytest.raises(TypeError):
        field.options["values"] = ()
    with pytest.raises(TypeError):
        field.options["values"][0]["label"] = "Changed"
    with pytest.raises(TypeError):
        obj.fields_by_name["title"] = field
    assert catalog.object("thing").label == "Thing"
    assert field.options["values"][0]["label"] == "Open"

    # A Catalog never changes: later changes produce a new one.
    runtime.metadata.update_object(ALICE, "thing", {"label": "Changed"})
    runtime.metadata.create_object(ALICE, thing("other"))
    assert catalog.object("thing").label == "Thing"
    assert "other" not in catalog.objects
    newer = runtime.catalog()
    assert newer is not catalog and newer.version == catalog.version + 2
    assert newer.object("thing").label == "Changed" and "other" in newer.objects

    with pytest.raises(NotFound):
        catalog.object("other")


def test_definitions_given_to_the_service_are_copied(runtime):
    definition = thing()
    runtime.metadata.create_object(ALICE, definition)
    definition["label"] = "Mutated"
    definition["fields"][0]["options"]["max_length"] = 5
    definition["fields"][1]["options"]["values"].append({"api_name": "sneaky", "label": "Sneaky"})

    obj = runtime.catalog().object("thing")
    assert obj.label == "Thing"
    assert obj.field("title").options["max_length"] == 80
    assert [v["api_name"] for v in obj.field("status").options["values"]] == ["open"]


# -- caching -----------------------------------------------------------------------------------
def test_catalog_is_cached_per_version(runtime):
    first = runtime.catalog()
    loads = runtime.catalogs.loads
    for _ in range(20):
        assert runtime.catalog() is first
    assert runtime.catalogs.loads == loads
    assert first.table("user") is first.table("user")  # derived artefacts are memoised too

    runtime.metadata.create_object(ALICE, thing())
    second = runtime.catalog()
    assert second.version == first.version + 1
    assert runtime.catalogs.loads == loads + 1
    for _ in range(20):
        assert runtime.catalog() is second
    assert runtime.catalogs.loads == loads + 1

    # A refused change does not move the version, so nothing is reloaded.
    with pytest.raises(InvalidDefinition):
        runtime.metadata.create_object(ALICE, thing())
    assert runtime.catalog() is second
    assert runtime.catalogs.loads == loads + 1

    # Reading and writing records reuses the cached Catalog.
    runtime.records.create(ALICE, "thing", {"title": "hello"})
    runtime.records.query(ALICE, "thing")
    assert runtime.catalogs.loads == loads + 1

    runtime.metadata.update_field(ALICE, "thing", "title", {"label": "Headline"})
    assert runtime.catalog().object("thing").field("title").label == "Headline"
    assert runtime.catalogs.loads == loads + 2


def test_a_second_runtime_on_the_same_database_sees_changes_on_its_next_call(runtime, database_url, runtimes):
    other = runtimes(database_url)
    assert other.catalog().version == runtime.catalog().version
    assert "thing" not in other.catalog().objects
    loads = other.catalogs.loads

    runtime.metadata.create_object(ALICE, thing())

    catalog = other.catalog()
    assert catalog.version == runtime.catalog().version
    assert catalog.object("thing").field("title").options["max_length"] == 80
    assert other.catalogs.loads == loads + 1
    record = other.records.create(ALICE, "thing", {"title": "from the other process"})
    assert runtime.records.get(ALICE, "thing", record["id"])["title"] == "from the other process"

    # And the other way round, including a field change that affects validation.
    other.metadata.update_field(ALICE, "thing", "title", {"options": {"max_length": 200}})
    assert runtime.catalog().object("thing").field("title").options["max_length"] == 200
    runtime.records.create(ALICE, "thing", {"title": "x" * 150})

    other.metadata.delete_object(ALICE, "thing")
    assert "thing" not in runtime.catalog().objects
    with pytest.raises(NotFound):
        runtime.records.query(ALICE, "thing")


def test_a_change_in_between_is_the_base_of_the_next_change(runtime, database_url, runtimes):
    """A runtime whose cached Catalog is stale still checks a change against the stored metadata."""
    other = runtimes(database_url)
    other.catalog()
    runtime.metadata.create_object(ALICE, thing())

    with pytest.raises(InvalidDefinition) as caught:
        other.metadata.create_object(ALICE, thing())
    assert {e.field: e.code for e in caught.value.errors}["api_name"] == "DUPLICATE"
    other.metadata.create_field(ALICE, "thing", {"api_name": "size", "label": "Size", "type": "integer"})
    assert [f.api_name for f in runtime.catalog().object("thing").fields] == ["title", "status", "size"]


# -- Redis -------------------------------------------------------------------------------------
def test_version_is_mirrored_to_redis(database_url, redis_url, redis_client, runtimes):
    rt = runtimes(database_url, redis_url=redis_url, install=True)
    assert int(redis_client.get(VERSION_KEY)) == rt.catalog().version == stored_version(database_url)

    rt.metadata.create_object(ALICE, thing())
    assert int(redis_client.get(VERSION_KEY)) == stored_version(database_url) == rt.catalog().version

    rt.metadata.create_field(ALICE, "thing", {"api_name": "size", "label": "Size", "type": "integer"})
    assert int(redis_client.get(VERSION_KEY)) == stored_version(database_url) == rt.catalog().version


def test_runtimes_sharing_redis_see_each_others_changes(database_url, redis_url, runtimes):
    first = runtimes(database_url, redis_url=redis_url, install=True)
    second = runtimes(database_url, redis_url=redis_url)
    assert "thing" not in second.catalog().objects
    loads = second.catalogs.loads
    for _ in range(10):
        second.catalog()
    assert second.catalogs.loads == loads

    first.metadata.create_object(ALICE, thing())
    assert "thing" in second.catalog().objects
    assert second.catalogs.loads == loads + 1

    second.metadata.update_object(ALICE, "thing", {"label": "Renamed"})
    assert first.catalog().object("thing").label == "Renamed"
    assert first.catalog().version == second.catalog().version == stored_version(database_url)


def test_a_deleted_redis_key_falls_back_to_the_database(database_url, redis_url, redis_client, runtimes):
    first = runtimes(database_url, redis_url=redis_url, install=True)
    second = runtimes(database_url, redis_url=redis_url)
    second.catalog()

    first.metadata.create_object(ALICE, thing())
    redis_client.delete(VERSION_KEY)  # evicted, flushed or never written

    catalog = second.catalog()
    assert "thing" in catalog.objects
    assert catalog.version == stored_version(database_url)
    assert int(redis_client.get(VERSION_KEY)) == stored_version(database_url)  # repaired from the database

    # A change made while the key is missing is seen as well.
    redis_client.delete(VERSION_KEY)
    first_loads = first.catalogs.loads
    second.metadata.update_object(ALICE, "thing", {"label": "Renamed"})
    redis_client.delete(VERSION_KEY)
    assert first.catalog().object("thing").label == "Renamed"
    assert first.catalogs.loads == first_loads + 1


def test_announcements_only_raise_the_redis_key_and_a_key_ahead_follows_the_database(database_url, redis_url, redis_client, runtimes):
    """An announcement never lowers the key, so a writer announcing late cannot move it back. A key
    ahead of the database (set by hand here, as after restoring a database backup) is corrected to
    the database's version, the truth, by the next reader; every runtime still sees every change."""
    first = runtimes(database_url, redis_url=redis_url, install=True)
    second = runtimes(database_url, redis_url=redis_url)
    first.metadata.create_object(ALICE, thing())
    current = stored_version(database_url)
    assert int(redis_client.get(VERSION_KEY)) == current

    first.versions.announce(current - 1)
    assert int(redis_client.get(VERSION_KEY)) == current

    redis_client.set(VERSION_KEY, current + 100)
    second.metadata.update_object(ALICE, "thing", {"label": "Renamed"})
    truth = stored_version(database_url)
    for rt in (first, second):
        catalog = rt.catalog()
        assert catalog.object("thing").label == "Renamed"
        assert catalog.version == truth
    assert int(redis_client.get(VERSION_KEY)) == truth
    loads = first.catalogs.loads
    first.catalog()
    assert first.catalogs.loads == loads  # corrected once, not reloaded on every call

    redis_client.set(VERSION_KEY, 1)
    first.metadata.update_object(ALICE, "thing", {"label": "Again"})
    assert int(redis_client.get(VERSION_KEY)) == stored_version(database_url)
    assert second.catalog().object("thing").label == "Again"


def test_warm_on_announcements_reloads_the_catalog_in_the_background(database_url, redis_url, runtimes):
    listener = runtimes(database_url, redis_url=redis_url, install=True)
    writer = runtimes(database_url, redis_url=redis_url)
    thread = listener.warm_on_announcements()
    assert isinstance(thread, threading.Thread) and thread.daemon and thread.is_alive()
    start = listener.catalog()
    loads = listener.catalogs.loads

    writer.metadata.create_object(ALICE, thing())
    target = stored_version(database_url)

    def warmed():
        catalog = listener.catalogs.peek()
        return catalog is not None and catalog.version == target

    assert wait_until(warmed), f"listener still at {listener.catalogs.peek()!r}, expected v{target}"
    assert listener.catalogs.peek() is not start
    assert "thing" in listener.catalogs.peek().objects
    assert listener.catalogs.loads == loads + 1
    # The request path finds it already warm: no further load.
    assert listener.catalog().version == target
    assert listener.catalogs.loads == loads + 1

    # A second change is picked up as well.
    writer.metadata.delete_object(ALICE, "thing")
    target = stored_version(database_url)
    assert wait_until(warmed)
    assert "thing" not in listener.catalogs.peek().objects


def test_warm_on_announcements_needs_redis(runtime):
    assert runtime.warm_on_announcements() is None


def test_closing_a_runtime_stops_its_listener(database_url, redis_url):
    rt = Runtime.connect(database_url, redis_url=redis_url).install()
    thread = rt.warm_on_announcements()
    assert thread.is_alive()
    rt.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_redis_prefix_keeps_installations_apart(database_url, redis_url, redis_client, runtimes):
    rt = runtimes(database_url, redis_url=redis_url, redis_prefix="tenant_a:", install=True)
    rt.metadata.create_object(ALICE, thing())
    assert int(redis_client.get("tenant_a:" + VERSION_KEY)) == stored_version(database_url)
    assert redis_client.get(VERSION_KEY) is None
