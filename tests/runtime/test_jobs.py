"""Jobs through the job service, on SQLite and PostgreSQL, under a clock the tests move by hand:
the outbox (a job exists exactly when its transaction commits, once per dedupe key), retries with
backoff, failure after the last attempt and an administrator's retry, the lease that lets another
worker take over a job whose worker died, schedules that fire once per slot whatever the number
of tickers and restarts, and (PostgreSQL) concurrent workers running each job once."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.actors import Actor
from lowcode.metadata.database import WRITE
from lowcode.metadata.errors import Conflict, Forbidden, NotFound
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.jobs import FinalFailure, JobRunner
from lowcode.runtime.jobs.service import ABANDONED_ERROR
from sqlalchemy import func, select, text

START = datetime(2030, 1, 1, 10, 20, tzinfo=timezone.utc)
SOMEONE = Actor("00000000-0000-4000-8000-000000000001", "someone")


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def rt(database_url, clock):
    runtime = Runtime.connect(database_url, clock=clock).install()
    yield runtime
    runtime.close()


def job_count(runtime, kind=None) -> int:
    query = "SELECT count(*) FROM lc_job" + (" WHERE kind = :kind" if kind else "")
    with runtime.engine.connect() as conn:
        return conn.execute(text(query), {"kind": kind}).scalar_one()


class Flaky:
    """A handler failing its first ``failures`` calls."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def __call__(self, job):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"flaky call {self.calls}")


# -- the outbox ----------------------------------------------------------------------------------
def test_a_job_exists_exactly_when_its_transaction_commits(rt):
    rt.metadata.create_object(S, {"api_name": "ticket", "label": "Ticket", "fields": [
        {"api_name": "title", "label": "Title", "type": "text"}]})

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        with rt.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            ticket = rt.records.joined(conn).create(S, "ticket", {"title": "rolled back"})
            rt.jobs.enqueue("ticket.notify", {"ticket": ticket["id"]}, conn=conn)
            raise Undone
    assert job_count(rt) == 0
    assert rt.records.query(S, "ticket", total=True).total_count == 0

    with rt.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        ticket = rt.records.joined(conn).create(S, "ticket", {"title": "kept"})
        job_id = rt.jobs.enqueue("ticket.notify", {"ticket": ticket["id"]}, conn=conn)
    job = rt.jobs.job(job_id)
    assert (job.kind, job.payload, job.status, job.attempts, job.run_at) == ("ticket.notify", {"ticket": ticket["id"]}, "queued", 0, START)
    assert job.dispatched_at is None
    assert job_count(rt) == 1


def test_a_dedupe_key_makes_a_second_enqueue_a_no_op(rt):
    first = rt.jobs.enqueue("invoice.send", {"invoice": 7}, key="invoice:7")
    second = rt.jobs.enqueue("invoice.send", {"invoice": 7, "changed": True}, key="invoice:7")
    assert second == first
    assert job_count(rt) == 1
    assert rt.jobs.job(first).payload == {"invoice": 7}
    with rt.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        assert rt.jobs.enqueue("invoice.send", {}, key="invoice:7", conn=conn) == first
    assert rt.jobs.enqueue("invoice.send", {"invoice": 8}, key="invoice:8") != first
    assert job_count(rt) == 2


def test_a_job_is_not_run_before_its_time(rt, clock):
    ran = []
    rt.jobs.register("reminder.later", lambda job: ran.append(job.id))
    job_id = rt.jobs.enqueue("reminder.later", run_at=START + timedelta(minutes=10))
    clock.advance(minutes=9, seconds=59)
    assert rt.jobs.run_due() == 0 and ran == []
    clock.advance(seconds=1)
    assert rt.jobs.run_due() == 1 and ran == [job_id]
    assert rt.jobs.job(job_id).status == "succeeded"


# -- retries -------------------------------------------------------------------------------------
def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(rt, clock):
    handler = Flaky(failures=2)
    rt.jobs.register("flaky.twice", handler)
    job_id = rt.jobs.enqueue("flaky.twice", {"n": 1})

    assert rt.jobs.run_due() == 1
    job = rt.jobs.job(job_id)
    assert (job.status, job.attempts, job.run_at, job.last_error) == ("queued", 1, START + timedelta(seconds=30), "RuntimeError: flaky call 1")
    clock.advance(seconds=29)
    assert rt.jobs.run_due() == 0
    clock.advance(seconds=1)
    assert rt.jobs.run_due() == 1
    job = rt.jobs.job(job_id)
    assert (job.status, job.attempts, job.run_at, job.last_error) == ("queued", 2, START + timedelta(seconds=90), "RuntimeError: flaky call 2")
    clock.advance(seconds=59)
    assert rt.jobs.run_due() == 0
    clock.advance(seconds=1)
    assert rt.jobs.run_due() == 1
    job = rt.jobs.job(job_id)
    assert (job.status, job.attempts, job.finished_at, job.locked_until) == ("succeeded", 3, START + timedelta(seconds=90), None)
    assert handler.calls == 3
    clock.advance(hours=2)
    assert rt.jobs.run_due() == 0 and handler.calls == 3


def test_a_job_failing_every_attempt_is_failed_with_its_error_until_an_administrator_retries_it(rt, clock):
    handler = Flaky(failures=5)
    rt.jobs.register("flaky.always", handler)
    job_id = rt.jobs.enqueue("flaky.always")
    waits = []
    for attempt in range(1, 6):
        assert rt.jobs.run_due() == 1
        job = rt.jobs.job(job_id)
        assert job.attempts == attempt
        if attempt < 5:
            waits.append(job.run_at - clock.now())
            clock.set(job.run_at)
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    failed = rt.jobs.job(job_id)
    assert (failed.status, failed.attempts, failed.last_error, failed.finished_at) == ("failed", 5, "RuntimeError: flaky call 5", clock.now())
    clock.advance(days=1)
    assert rt.jobs.run_due() == 0 and handler.calls == 5
    assert [j.id for j in rt.jobs.list(S, status="failed")] == [job_id]

    with pytest.raises(Forbidden):
        rt.jobs.retry(SOMEONE, job_id)
    with pytest.raises(Forbidden):
        rt.jobs.list(SOMEONE)
    queued = rt.jobs.retry(S, job_id)
    assert (queued.status, queued.attempts, queued.run_at, queued.finished_at) == ("queued", 0, clock.now(), None)
    assert rt.jobs.run_due() == 1
    assert rt.jobs.job(job_id).status == "succeeded" and handler.calls == 6
    with pytest.raises(Conflict):
        rt.jobs.retry(S, job_id)
    with pytest.raises(NotFound):
        rt.jobs.retry(S, "00000000-0000-4000-8000-00000000abcd")
    with pytest.raises(NotFound):
        rt.jobs.retry(S, "not-an-id")


def test_a_job_of_an_unknown_kind_fails_at_once_with_a_clear_error(rt):
    job_id = rt.jobs.enqueue("nobody.handles.this", {"x": 1})
    assert rt.jobs.run_due() == 1
    job = rt.jobs.job(job_id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == ("No handler is registered for the job kind 'nobody.handles.this'; import the module that "
                              "registers it (lowcode worker --import MODULE), then retry the job.")


def test_a_job_that_can_never_succeed_fails_at_once_without_retries(rt, clock):
    def refuse(job):
        raise FinalFailure("the address answered 404")

    rt.jobs.register("doomed", refuse)
    job_id = rt.jobs.enqueue("doomed")
    assert rt.jobs.run_due() == 1
    job = rt.jobs.job(job_id)
    assert (job.status, job.attempts, job.last_error) == ("failed", 1, "lowcode.runtime.jobs.handlers.FinalFailure: the address answered 404")
    clock.advance(hours=3)
    assert rt.jobs.run_due() == 0


# -- the lease -----------------------------------------------------------------------------------
def test_a_job_whose_worker_died_runs_again_once_after_the_lease(rt, clock):
    runs = []
    rt.jobs.register("lease.check", lambda job: runs.append((job.id, job.attempts)))
    job_id = rt.jobs.enqueue("lease.check")
    held = rt.jobs.claim(job_id)
    assert (held.status, held.attempts, held.locked_until) == ("running", 1, START + rt.jobs.lease)
    assert rt.jobs.claim(job_id) is None
    assert rt.jobs.run_one(job_id) is None
    assert rt.jobs.run_due() == 0
    clock.advance(rt.jobs.lease.total_seconds() - 1)
    assert rt.jobs.run_due() == 0 and runs == []
    clock.advance(2)
    assert rt.jobs.run_due() == 1
    assert rt.jobs.run_due() == 0
    assert runs == [(job_id, 2)]
    assert rt.jobs.job(job_id).status == "succeeded"


def test_a_job_whose_worker_died_on_its_last_attempt_is_failed(rt, clock):
    ran = []
    rt.jobs.register("lease.last", lambda job: ran.append(job.id))
    job_id = rt.jobs.enqueue("lease.last", max_attempts=1)
    assert rt.jobs.claim(job_id).attempts == 1
    clock.advance(rt.jobs.lease.total_seconds() + 1)
    assert rt.jobs.run_due() == 0 and ran == []
    job = rt.jobs.job(job_id)
    assert (job.status, job.last_error) == ("failed", ABANDONED_ERROR)


# -- schedules -----------------------------------------------------------------------------------
def scheduled_keys(runtime, kind) -> list[str]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(text("SELECT dedupe_key FROM lc_job WHERE kind = :k ORDER BY run_at"), {"k": kind}).scalars())


def test_a_schedule_fires_once_per_slot_across_ticks_and_restarts(rt, clock, database_url):
    rt.jobs.schedules.schedule("hourly-check", "check.hourly", 3600, {"scope": "all"})
    first = rt.jobs.tick()
    assert len(first) == 1 and rt.jobs.job(first[0]).payload == {"scope": "all"}
    assert rt.jobs.tick() == []
    clock.set(datetime(2030, 1, 1, 10, 59, 59, tzinfo=timezone.utc))
    assert rt.jobs.tick() == []
    clock.set(datetime(2030, 1, 1, 11, 0, tzinfo=timezone.utc))
    assert len(rt.jobs.tick()) == 1
    assert rt.jobs.tick() == []

    restarted = Runtime.connect(database_url, clock=clock).install()
    try:
        restarted.jobs.schedules.schedule("hourly-check", "check.hourly", 3600, {"scope": "all"})
        assert restarted.jobs.tick() == []
        clock.set(datetime(2030, 1, 1, 14, 30, tzinfo=timezone.utc))
        assert len(restarted.jobs.tick()) == 1
        assert rt.jobs.tick() == [] and restarted.jobs.tick() == []
        assert restarted.jobs.schedules.get("hourly-check")["next_run_at"] == datetime(2030, 1, 1, 15, tzinfo=timezone.utc)
    finally:
        restarted.close()
    assert scheduled_keys(rt, "check.hourly") == [
        "schedule:hourly-check@2030-01-01T10:00:00+00:00", "schedule:hourly-check@2030-01-01T11:00:00+00:00",
        "schedule:hourly-check@2030-01-01T14:00:00+00:00"]


def test_an_inactive_schedule_does_not_fire(rt, clock):
    rt.jobs.schedules.schedule("paused", "check.paused", 60)
    rt.jobs.schedules.deactivate("paused")
    clock.advance(3600)
    assert rt.jobs.tick() == []
    assert job_count(rt, "check.paused") == 0


def test_two_tickers_at_once_enqueue_each_slot_once(postgres_url, clock):
    tickers = [Runtime.connect(postgres_url, clock=clock).install() for _ in range(4)]
    try:
        tickers[0].jobs.schedules.schedule("every-minute", "check.minute", 60)
        made: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(len(tickers))

        def tick(runtime, slots):
            for _ in range(slots):
                barrier.wait()
                ids = runtime.jobs.tick()
                with lock:
                    made.extend(ids)
                barrier.wait()
                if runtime is tickers[0]:
                    clock.advance(60)

        threads = [threading.Thread(target=tick, args=(r, 25)) for r in tickers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(made) == 25 == len(set(made))
        keys = scheduled_keys(tickers[0], "check.minute")
        assert len(keys) == 25 == len(set(keys))
    finally:
        for r in tickers:
            r.close()


# -- concurrent workers --------------------------------------------------------------------------
def test_four_workers_run_each_of_200_jobs_once(postgres_url):
    runtime = Runtime.connect(postgres_url).install()
    try:
        runs: Counter[str] = Counter()
        lock = threading.Lock()

        def count(job):
            with lock:
                runs[job.id] += 1

        runtime.jobs.register("count.me", count)
        ids = {runtime.jobs.enqueue("count.me", {"n": n}) for n in range(200)}
        barrier = threading.Barrier(4)
        ran_by_worker = []

        def work():
            barrier.wait()
            ran_by_worker.append(runtime.jobs.run_due(limit=1000))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert set(runs) == ids and set(runs.values()) == {1}
        assert sum(ran_by_worker) == 200
        with runtime.engine.connect() as conn:
            statuses = dict(conn.execute(select(text("status"), func.count()).select_from(text("lc_job")).group_by(text("status"))).all())
        assert statuses == {"succeeded": 200}
    finally:
        runtime.close()


# -- the in-process runner -----------------------------------------------------------------------
def test_the_in_process_runner_runs_jobs_and_schedules_until_stopped(database_url):
    runtime = Runtime.connect(database_url).install()
    runner = JobRunner(runtime, interval=0.05)
    try:
        done = threading.Event()
        ran: list[str] = []

        def handle(job):
            ran.append(job.kind)
            if job.kind == "runner.scheduled":
                done.set()

        runtime.jobs.register("runner.once", handle)
        runtime.jobs.register("runner.scheduled", handle)
        runtime.jobs.enqueue("runner.once")
        runtime.jobs.schedules.schedule("runner-check", "runner.scheduled", 3600)
        runner.start()
        assert done.wait(10)
        runner.stop()
        assert sorted(ran) == ["runner.once", "runner.scheduled"]
        assert runner._thread is None
        runtime.jobs.enqueue("runner.once")
        assert runner.run_once() == 1
    finally:
        runner.stop()
        runtime.close()
