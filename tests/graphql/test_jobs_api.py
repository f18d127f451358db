"""The jobs admin API over HTTP GraphQL, on SQLite and PostgreSQL: administrators list failed jobs
with their errors and retry them; anyone else is refused."""
from __future__ import annotations

import pytest
from conftest import TOKEN, Api
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.server.app import Settings, create_app

JOBS = "query($s: BackgroundJobStatus, $k: String) { backgroundJobs(status: $s, kind: $k) { id kind status attempts maxAttempts lastError payload } }"
RETRY = "mutation($id: ID!) { retryBackgroundJob(id: $id) { id status attempts lastError runAt } }"


@pytest.fixture
def api(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock()).install()
    yield Api(create_app(Settings(database_url=database_url, api_token=TOKEN), runtime=runtime), runtime)
    runtime.close()


def broken(job):
    raise ValueError(f"the printer of order {job.payload['order']} is on fire")


def failed_job(runtime, order: int) -> str:
    job_id = runtime.jobs.enqueue("print.order", {"order": order}, max_attempts=2)
    runtime.jobs.run_due()
    runtime.jobs.clock.advance(30)
    runtime.jobs.run_due()
    assert runtime.jobs.job(job_id).status == "failed"
    return job_id


def test_administrators_list_failed_jobs_and_retry_one(api):
    api.runtime.jobs.register("print.order", broken)
    first, second = failed_job(api.runtime, 1), failed_job(api.runtime, 2)
    api.runtime.jobs.enqueue("print.later", {"order": 3}, run_at=api.runtime.clock.now().replace(year=2031))

    listed = api.data(JOBS, {"s": "FAILED"})["backgroundJobs"]
    assert listed == [
        {"id": second, "kind": "print.order", "status": "FAILED", "attempts": 2, "maxAttempts": 2,
         "lastError": "ValueError: the printer of order 2 is on fire", "payload": {"order": 2}},
        {"id": first, "kind": "print.order", "status": "FAILED", "attempts": 2, "maxAttempts": 2,
         "lastError": "ValueError: the printer of order 1 is on fire", "payload": {"order": 1}},
    ]
    assert [j["kind"] for j in api.data(JOBS)["backgroundJobs"]] == ["print.later", "print.order", "print.order"]
    assert api.data(JOBS, {"k": "print.later"})["backgroundJobs"][0]["status"] == "QUEUED"

    retried = api.data(RETRY, {"id": first})["retryBackgroundJob"]
    assert retried == {"id": first, "status": "QUEUED", "attempts": 0,
                       "lastError": "ValueError: the printer of order 1 is on fire", "runAt": api.runtime.clock.now().isoformat()}
    assert [j["id"] for j in api.data(JOBS, {"s": "FAILED"})["backgroundJobs"]] == [second]

    status, errors = api.errors(RETRY, {"id": first})
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    status, errors = api.errors(RETRY, {"id": "00000000-0000-4000-8000-00000000abcd"})
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert "Traceback" not in str(errors)


def test_only_administrators_see_and_retry_jobs(api):
    api.runtime.jobs.register("print.order", broken)
    job_id = failed_job(api.runtime, 7)
    sec = api.runtime.security
    unit = sec.create_unit(S, "Floor")
    sec.create_role(S, "plain", "Plain")
    user = sec.create_user(S, {"username": "plain_jobs_user"})
    sec.add_membership(S, user["id"], unit["id"], "plain")
    token = sec.issue_token(S, "t", user_id=user["id"])["token"]
    status, errors = api.errors(JOBS, {"s": "FAILED"}, token=token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    status, errors = api.errors(RETRY, {"id": job_id}, token=token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert api.runtime.jobs.job(job_id).status == "failed"
