"""``lowcode worker`` and ``lowcode job``: workers polling the database without Redis, two real
worker processes sharing an RQ queue on Redis (each job runs once), and Redis down at enqueue
time (the write succeeds, the job waits undispatched, and runs once Redis is back)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis
from click.testing import CliRunner
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.runtime.jobs.transport import RedisTransport
from lowcode.server.cli import main
from recorded_jobs import KIND, runs, runs_metadata
from rq import Queue
from sqlalchemy import select

HERE = Path(__file__).resolve().parent
WORKER_SECONDS = 90


def recorded_runs(runtime) -> Counter:
    with runtime.engine.connect() as conn:
        return Counter(conn.execute(select(runs.c.job_id)).scalars())


def prepared(database_url, redis_url=None) -> Runtime:
    runtime = Runtime.connect(database_url, redis_url).install()
    runs_metadata.create_all(runtime.engine)
    return runtime


def start_worker(database_url: str, redis_url: str | None, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from lowcode.server.cli import main; main()", "--database-url", database_url]
    if redis_url:
        command += ["--redis-url", redis_url]
    command += ["worker", "--burst", "--import", "recorded_jobs"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOWCODE_") or k.startswith("LOWCODE_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=HERE)


def finish(workers: list[subprocess.Popen], logs: list[Path]) -> None:
    for worker, log in zip(workers, logs):
        try:
            worker.wait(WORKER_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        assert worker.returncode == 0, log.read_text(errors="replace")


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(database_url: str, *args: str):
    return CliRunner().invoke(main, ["--database-url", database_url, *args], catch_exceptions=False)


def test_a_worker_without_redis_runs_due_jobs_and_the_cli_shows_failures(database_url):
    runtime = prepared(database_url)
    try:
        ids = [runtime.jobs.enqueue(KIND, {"n": n}) for n in range(5)]
        orphan = runtime.jobs.enqueue("nobody.handles.this")
    finally:
        runtime.close()

    result = cli(database_url, "worker", "--burst", "--import", "recorded_jobs")
    assert result.exit_code == 0, result.output

    runtime = Runtime.connect(database_url).install()
    try:
        assert recorded_runs(runtime) == Counter({job_id: 1 for job_id in ids})
        assert [j.id for j in runtime.jobs.list(S, status="succeeded")] == ids[::-1]
        listed = cli(database_url, "job", "list", "--status", "failed")
        assert listed.exit_code == 0, listed.output
        lines = listed.output.splitlines()
        assert lines[0].split() == ["id", "kind", "status", "attempts", "run_at", "last_error"]
        assert lines[1].split()[:4] == [orphan, "nobody.handles.this", "failed", "1"]
        assert "No handler is registered" in lines[1]
        assert lines[-1] == "1 job(s)"
        retried = cli(database_url, "job", "retry", orphan)
        assert retried.exit_code == 0, retried.output
        assert '"status": "queued"' in retried.output and '"attempts": 0' in retried.output
        assert runtime.jobs.job(orphan).status == "queued"
        again = cli(database_url, "job", "retry", orphan)
        assert again.exit_code == 1 and '"code": "CONFLICT"' in again.output
    finally:
        runtime.close()


def test_an_unimportable_handler_module_is_refused(database_url):
    result = CliRunner().invoke(main, ["--database-url", database_url, "worker", "--burst", "--import", "no_such_module_here"])
    assert result.exit_code == 2
    assert "cannot import no_such_module_here" in result.output


def test_two_redis_workers_run_each_job_once(postgres_url, redis_url, tmp_path):
    """Each id is pushed twice: the claim in the database, not the queue, keeps each job to one run."""
    runtime = prepared(postgres_url, redis_url)
    try:
        ids = {runtime.jobs.enqueue(KIND, {"n": n}) for n in range(40)}
        queue = Queue(runtime.jobs.transport.queue_name, connection=runtime.redis)
        assert queue.count == 40
        assert all(runtime.jobs.job(i).dispatched_at is not None for i in ids)
        assert runtime.jobs.dispatch(sorted(ids)) == 40  # every message delivered twice
        assert queue.count == 80
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        workers = [start_worker(postgres_url, redis_url, log) for log in logs]
        finish(workers, logs)
        assert recorded_runs(runtime) == Counter({job_id: 1 for job_id in ids})
        assert {runtime.jobs.job(i).status for i in ids} == {"succeeded"}
        assert queue.count == 0
    finally:
        runtime.close()


def test_with_redis_down_the_job_waits_and_runs_when_redis_is_back(database_url, redis_url, tmp_path):
    runtime = prepared(database_url)
    runtime.jobs.transport = RedisTransport(redis.Redis(host="127.0.0.1", port=closed_port()))
    try:
        job_id = runtime.jobs.enqueue(KIND, {"during": "outage"})
        job = runtime.jobs.job(job_id)
        assert (job.status, job.dispatched_at) == ("queued", None)
        assert runtime.jobs.dispatch_pending() == 0

        back = redis.Redis.from_url(redis_url)
        runtime.jobs.transport = RedisTransport(back)
        assert runtime.jobs.dispatch_pending() == 1
        assert runtime.jobs.job(job_id).dispatched_at is not None
        assert runtime.jobs.dispatch_pending() == 0
        assert Queue(runtime.jobs.transport.queue_name, connection=back).count == 1
        log = tmp_path / "worker.log"
        finish([start_worker(database_url, redis_url, log)], [log])
        assert recorded_runs(runtime) == Counter({job_id: 1})
        assert runtime.jobs.job(job_id).status == "succeeded"
        back.close()
    finally:
        runtime.close()
