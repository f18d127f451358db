"""The ``lowcode worker`` process: runs jobs handed over by RQ, or polls the database without Redis.

With Redis, an RQ ``SimpleWorker`` (no fork per job, so the one platform :class:`Runtime` of the
process is reused) calls :func:`run_job` with each job id, while a thread ticks the schedules and
sweeps undispatched jobs into the queue. Without Redis, the worker ticks and runs due jobs itself.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

_runtime: "Runtime | None" = None


def use_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one :func:`run_job` works with in this process."""
    global _runtime
    _runtime = runtime


def run_job(job_id: str) -> str | None:
    """What RQ runs for each message: claim and run the job; returns its status, ``None`` if not claimed."""
    if _runtime is None:
        raise RuntimeError("run_job runs inside `lowcode worker`, which connects the platform first")
    job = _runtime.jobs.run_one(job_id)
    return job.status if job is not None else None


def round_of_work(runtime: Runtime) -> int:
    """Tick the schedules and run due jobs once (without Redis); returns how many ran."""
    runtime.jobs.tick()
    return runtime.jobs.run_due()


def poll_database(runtime: Runtime, *, burst: bool, poll: float, stop: threading.Event | None = None) -> int:
    """Work without Redis until stopped, or with ``burst`` until nothing is due; returns how many ran."""
    stop = stop or threading.Event()
    total = 0
    while not stop.is_set():
        ran = round_of_work(runtime)
        total += ran
        if ran == 0:
            if burst:
                break
            stop.wait(poll)
    return total


def sweep(runtime: Runtime) -> int:
    """Tick the schedules and push what Redis has not got; returns how many were pushed."""
    runtime.jobs.tick()
    return runtime.jobs.dispatch_pending()


def work_from_redis(runtime: Runtime, *, burst: bool, poll: float) -> None:
    """Run an RQ worker on the jobs queue; in ``burst`` mode until the queue is empty."""
    from rq import SimpleWorker

    sweep(runtime)
    stop = threading.Event()
    sweeper = None
    if not burst:
        sweeper = threading.Thread(target=_sweep_until, args=(runtime, poll, stop), name="lowcode-job-sweep", daemon=True)
        sweeper.start()
    try:
        SimpleWorker([runtime.jobs.transport.queue()], connection=runtime.redis).work(burst=burst)
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.join(timeout=poll + 5)


def work(runtime: Runtime, *, burst: bool = False, poll: float = 1.0) -> None:
    """Work with whatever the runtime has: RQ when it has Redis, the database otherwise."""
    use_runtime(runtime)
    try:
        if runtime.jobs.transport is not None:
            work_from_redis(runtime, burst=burst, poll=poll)
        else:
            poll_database(runtime, burst=burst, poll=poll)
    finally:
        use_runtime(None)


def _sweep_until(runtime: Runtime, poll: float, stop: threading.Event) -> None:
    while not stop.wait(poll):
        try:
            sweep(runtime)
        except Exception:
            log.exception("the job sweep failed; trying again in %s s", poll)
