"""Concurrent record writes: optimistic locking, gap-free auto numbers, all-or-nothing bulk writes.

Real threads against real databases: PostgreSQL (``postgres_url``) for true concurrency, plus the
auto-number check on both backends (on SQLite, writers queue on ``BEGIN IMMEDIATE``). Threads are
lined up with a Barrier and joined with a bound; outcomes are asserted, never timings.
"""
from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.errors import Conflict, LowcodeError, NotFound, ValidationFailed
from lowcode.runtime import Runtime

SYS = SYSTEM_ACTOR
JOIN_SECONDS = 120

SCHEMA = [
    {
        "api_name": "account", "label": "Account", "plural_api_name": "accounts", "plural_label": "Accounts",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text", "required": True, "tracked": True},
            {"api_name": "industry", "label": "Industry", "type": "picklist", "tracked": True,
             "options": {"values": [{"api_name": v, "label": v} for v in ("energy", "retail", "tech")]}},
            {"api_name": "revenue", "label": "Revenue", "type": "decimal"},
            {"api_name": "employees", "label": "Employees", "type": "integer"},
            {"api_name": "code", "label": "Code", "type": "text", "unique": True, "options": {"max_length": 40}},
            {"api_name": "active", "label": "Active", "type": "boolean"},
            {"api_name": "notes", "label": "Notes", "type": "textarea"},
            {"api_name": "founded", "label": "Founded", "type": "date"},
        ],
    },
    {
        "api_name": "ticket", "label": "Ticket", "plural_api_name": "tickets", "plural_label": "Tickets",
        "fields": [
            {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "T-{000000}"}},
            {"api_name": "title", "label": "Title", "type": "text", "required": True},
            {"api_name": "ref", "label": "Reference", "type": "text", "unique": True, "options": {"max_length": 40}},
            {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
        ],
    },
]


def run_together(n: int, work, timeout: float = JOIN_SECONDS):
    """Run ``work(i)`` in ``n`` threads released at once; results and exceptions by thread."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = work(i)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), name=f"lc-test-{i}", daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread did not finish"
    return results, errors


def unexpected(errors, *allowed: type) -> list:
    return [e for e in errors if e is not None and not isinstance(e, allowed)]


def numbers(records) -> list[int]:
    found = []
    for record in records:
        match = re.fullmatch(r"T-(\d{6})", record["number"])
        assert match, record["number"]
        found.append(int(match.group(1)))
    return found


def all_tickets(rt) -> list[dict]:
    page = rt.records.query(SYS, "ticket", first=1000)
    assert not page.has_next_page
    return page.records


@pytest.fixture
def pg(postgres_url):
    rt = Runtime.connect(postgres_url).install()
    rt.metadata.create_objects(SYS, SCHEMA)
    yield rt
    rt.close()


@pytest.fixture
def pg_second(pg, postgres_url):
    """A second platform on the same database: another process, as far as the database can tell."""
    rt = Runtime.connect(postgres_url)
    yield rt
    rt.close()


@pytest.fixture
def both(runtime):
    runtime.metadata.create_objects(SYS, SCHEMA)
    return runtime


# -- optimistic locking -------------------------------------------------------------------------

def test_two_updates_with_the_same_expected_version_one_wins(pg, pg_second):
    platforms = (pg, pg_second)  # two engines: as if two processes
    for round_ in range(12):
        record = pg.records.create(SYS, "account", {"name": f"start {round_}"})
        results, errors = run_together(2, lambda i: platforms[i].records.update(
            SYS, "account", record["id"], {"name": f"writer {i}"}, expected_version=1))
        assert unexpected(errors, Conflict) == []
        winners = [i for i in range(2) if errors[i] is None]
        assert len(winners) == 1, errors
        loser = 1 - winners[0]
        assert errors[loser].code == "CONFLICT"
        final = pg.records.get(SYS, "account", record["id"])
        assert final["version"] == 2
        assert final["name"] == f"writer {winners[0]}" == results[winners[0]]["name"]
        updates = [h for h in pg.records.history(SYS, "account", record["id"]) if h["event"] == "updated"]
        assert [(h["old"], h["new"]) for h in updates] == [(f"start {round_}", f"writer {winners[0]}")]


def test_many_writers_with_the_same_expected_version_exactly_one_wins(pg):
    record = pg.records.create(SYS, "account", {"name": "start", "employees": 0})
    results, errors = run_together(8, lambda i: pg.records.update(
        SYS, "account", record["id"], {"employees": i + 1}, expected_version=1))
    assert unexpected(errors, Conflict) == []
    winners = [i for i in range(8) if errors[i] is None]
    assert len(winners) == 1
    final = pg.records.get(SYS, "account", record["id"])
    assert (final["version"], final["employees"]) == (2, winners[0] + 1)


def test_concurrent_partial_updates_of_different_fields_lose_nothing(pg):
    record = pg.records.create(SYS, "account", {"name": "start"})
    changes = [
        {"name": "renamed"}, {"industry": "tech"}, {"revenue": "12.50"}, {"employees": 7},
        {"code": "C-1"}, {"active": True}, {"notes": "note"}, {"founded": "2001-02-03"},
    ]
    _, errors = run_together(len(changes), lambda i: pg.records.update(SYS, "account", record["id"], changes[i]))
    assert errors == [None] * len(changes)
    final = pg.records.get(SYS, "account", record["id"])
    assert final["version"] == 1 + len(changes)
    assert (final["name"], final["industry"], final["revenue"], final["employees"]) == ("renamed", "tech", Decimal("12.50"), 7)
    assert (final["code"], final["active"], final["notes"], str(final["founded"])) == ("C-1", True, "note", "2001-02-03")


def test_update_racing_a_delete_either_lands_first_or_finds_nothing(pg):
    for round_ in range(10):
        record = pg.records.create(SYS, "account", {"name": f"r{round_}"})

        def work(i):
            if i == 0:
                return pg.records.delete(SYS, "account", record["id"])
            return pg.records.update(SYS, "account", record["id"], {"name": "updated"}, expected_version=1)

        results, errors = run_together(2, work)
        assert errors[0] is None
        assert unexpected(errors, NotFound) == []
        binned = pg.records.get(SYS, "account", record["id"], deleted=True)
        if errors[1] is None:
            assert binned["name"] == "updated" and binned["version"] == 3
        else:
            assert binned["name"] == f"r{round_}" and binned["version"] == 2


# -- auto numbers -------------------------------------------------------------------------------

def _concurrent_single_creates(rt, threads=8, each=25):
    def work(i):
        return [rt.records.create(SYS, "ticket", {"title": f"t{i}-{k}"}) for k in range(each)]

    results, errors = run_together(threads, work)
    assert errors == [None] * threads, [e for e in errors if e]
    created = [r for batch in results for r in batch]
    assert len(created) == threads * each
    return created


def test_concurrent_creates_get_a_gap_free_number_sequence(both):
    """8 threads x 25 creates: 200 distinct numbers forming 1..200 (SQLite and PostgreSQL)."""
    created = _concurrent_single_creates(both)
    assert sorted(numbers(created)) == list(range(1, 201))
    stored = all_tickets(both)
    assert sorted(numbers(stored)) == list(range(1, 201))
    assert {r["id"]: r["number"] for r in stored} == {r["id"]: r["number"] for r in created}
    # each thread's own creates were numbered in the order it made them
    for i in range(8):
        mine = [int(r["number"][2:]) for r in created if r["title"].startswith(f"t{i}-")]
        assert mine == sorted(mine)


def test_concurrent_bulk_creates_get_contiguous_blocks_of_a_gap_free_sequence(pg, pg_second):
    platforms = (pg, pg_second)
    results, errors = run_together(8, lambda i: platforms[i % 2].records.bulk_create(
        SYS, "ticket", [{"title": f"b{i}-{k}"} for k in range(25)]))
    assert errors == [None] * 8, [e for e in errors if e]
    for batch in results:
        got = numbers(batch)
        assert got == list(range(got[0], got[0] + 25)), got  # one block, in row order
    assert sorted(numbers([r for batch in results for r in batch])) == list(range(1, 201))
    assert sorted(numbers(all_tickets(pg))) == list(range(1, 201))


def test_failed_bulk_creates_among_concurrent_ones_use_no_numbers(pg):
    def work(i):
        rows = [{"title": f"m{i}-{k}"} for k in range(20)]
        if i % 3 == 0:
            rows[7] = {"title": None}  # this whole batch is refused
        return pg.records.bulk_create(SYS, "ticket", rows)

    results, errors = run_together(9, work)
    assert unexpected(errors, ValidationFailed) == []
    failed = [i for i in range(9) if errors[i] is not None]
    assert failed == [0, 3, 6]
    for i in failed:
        assert {(e.code, e.field) for e in errors[i].errors} == {("REQUIRED", "7.title")}
    stored = all_tickets(pg)
    assert len(stored) == 6 * 20
    assert sorted(numbers(stored)) == list(range(1, 121))
    assert not any(r["title"].startswith(("m0-", "m3-", "m6-")) for r in stored)


def test_concurrent_creates_of_one_unique_value_one_wins_and_numbers_stay_gap_free(pg):
    """The unique check and the insert race: the losers must get DUPLICATE_VALUE, not a database
    error, and the numbers their rolled-back inserts took must be given back."""
    for round_ in range(5):
        results, errors = run_together(8, lambda i: pg.records.create(SYS, "ticket", {"title": f"u{i}", "ref": f"REF-{round_}"}))
        assert unexpected(errors, ValidationFailed) == [], [repr(e)[:300] for e in unexpected(errors, ValidationFailed)]
        assert sum(e is None for e in errors) == 1
        for e in errors:
            if e is not None:
                assert {(x.code, x.field) for x in e.errors} == {("DUPLICATE_VALUE", "ref")}
    stored = all_tickets(pg)
    assert len(stored) == 5
    assert sorted(numbers(stored)) == list(range(1, 6))
    assert pg.records.create(SYS, "ticket", {"title": "next"})["number"] == "T-000006"


def test_concurrent_bulk_creates_with_overlapping_unique_values_are_all_or_nothing(pg):
    def work(i):
        # every batch holds one value another batch also holds
        return pg.records.bulk_create(SYS, "ticket", [
            {"title": f"o{i}-{k}", "ref": f"O-{i}-{k}"} for k in range(10)] + [{"title": f"o{i}-shared", "ref": f"S-{i // 2}"}])

    results, errors = run_together(8, work)
    assert unexpected(errors, ValidationFailed) == [], [repr(e)[:300] for e in unexpected(errors, ValidationFailed)]
    winners = [i for i in range(8) if errors[i] is None]
    assert len(winners) == 4 and {i // 2 for i in winners} == {0, 1, 2, 3}
    stored = all_tickets(pg)
    assert len(stored) == 4 * 11
    assert {r["title"].split("-")[0] for r in stored} == {f"o{i}" for i in winners}
    assert sorted(numbers(stored)) == list(range(1, 45))


# -- bulk updates -------------------------------------------------------------------------------

def test_concurrent_bulk_updates_over_the_same_records_in_opposite_orders(pg):
    """Two all-or-nothing bulk updates touching the same records in opposite orders: each either
    applies fully or fails with a platform error (no deadlock surfacing as a database error)."""
    records = pg.records.bulk_create(SYS, "account", [{"name": f"r{k}", "employees": 0} for k in range(60)])
    ids = [r["id"] for r in records]
    orders = (ids, list(reversed(ids)))

    for round_ in range(3):
        results, errors = run_together(2, lambda i: pg.records.bulk_update(
            SYS, "account", [{"id": rid, "values": {"employees": (round_ * 10) + i + 1}} for rid in orders[i]]))
        assert unexpected(errors, LowcodeError) == [], [repr(e)[:300] for e in unexpected(errors, LowcodeError)]
        assert any(e is None for e in errors)
        values = {r["employees"] for r in pg.records.query(SYS, "account", first=1000).records}
        assert len(values) == 1  # one whole batch is the last word, never a mix of both
        assert values <= {(round_ * 10) + 1, (round_ * 10) + 2}


def test_concurrent_bulk_updates_with_expected_versions_one_wins_whole(pg):
    records = pg.records.bulk_create(SYS, "account", [{"name": f"r{k}", "employees": 0} for k in range(20)])
    results, errors = run_together(4, lambda i: pg.records.bulk_update(SYS, "account", [
        {"id": r["id"], "values": {"employees": i + 1}, "expected_version": 1} for r in records]))
    assert unexpected(errors, LowcodeError) == [], [repr(e)[:300] for e in unexpected(errors, LowcodeError)]
    winners = [i for i in range(4) if errors[i] is None]
    assert len(winners) == 1, errors
    for i in range(4):
        if errors[i] is not None:
            assert errors[i].code in ("VALIDATION_FAILED", "CONFLICT")
    stored = pg.records.query(SYS, "account", first=1000).records
    assert {(r["employees"], r["version"]) for r in stored} == {(winners[0] + 1, 2)}
