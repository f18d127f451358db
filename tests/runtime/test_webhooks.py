"""Webhook deliveries of record triggers against a real HTTP server on 127.0.0.1, on SQLite and
PostgreSQL: a signed POST with its headers and payload once the write commits; an endpoint
answering 500, timing out or refusing connections retried on the backoff schedule and finally
failed with the cause, while the record write succeeded at once; nothing enqueued by a write that
is refused or rolled back."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.database import WRITE
from lowcode.metadata.errors import InvalidDefinition, ValidationFailed
from lowcode.runtime import Runtime
from lowcode.runtime.clock import ManualClock
from lowcode.runtime.triggers import WEBHOOK_JOB

START = datetime(2030, 5, 6, 7, 0, tzinfo=timezone.utc)
SECRET = "s3cret-shared-with-the-receiver"
BACKOFF = [30, 60, 120, 240]
"""Seconds between the five attempts of a job (30 s, doubling)."""


class Receiver:
    """An HTTP endpoint that records every request and answers as told: ``status`` after
    ``delay`` seconds."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    if 300 <= receiver.status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deals?token=abc"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def rt(database_url):
    runtime = Runtime.connect(database_url, clock=ManualClock(START)).install()
    runtime.metadata.create_object(S, {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals", "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True},
        {"api_name": "amount", "label": "Amount", "type": "currency", "options": {"precision": 12, "scale": 2}},
        {"api_name": "closes_on", "label": "Closes on", "type": "date"}]})
    yield runtime
    runtime.close()


def webhook(rt, url, events=("create", "update"), **options):
    return rt.metadata.create_automation(S, "deal", {"api_name": "push", "kind": "trigger", "label": "Push deals", "settings": {
        "events": list(events), "actions": [{"type": "webhook", "url": url, "secret": SECRET, **options}]}})


def deliveries(rt):
    return rt.jobs.list(S, kind=WEBHOOK_JOB)


def expected_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def attempt(rt, number):
    """Run the ``number``-th attempt of the one delivery, exactly when the backoff before it ends."""
    if number > 1:
        rt.clock.advance(BACKOFF[number - 2] - 1)
        assert rt.jobs.run_due() == 0, "no attempt before its backoff ends"
        rt.clock.advance(1)
    assert rt.jobs.run_due() == 1


def test_a_saved_record_is_posted_signed_once_its_write_commits(rt, receiver):
    webhook(rt, receiver.url)
    made = rt.records.create(S, "deal", {"name": "Acme", "amount": "1200.5", "closes_on": "2030-06-30"})
    assert receiver.requests == [], "the write never calls the endpoint itself"
    [job] = deliveries(rt)
    assert (job.status, job.attempts) == ("queued", 0)
    assert "secret" not in json.dumps(job.payload), "the secret is never copied into the job"

    assert rt.jobs.run_due() == 1
    [request] = receiver.requests
    body, headers = request["body"], request["headers"]
    assert request["path"] == "/hooks/deals?token=abc"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Lowcode-Signature"] == expected_signature(body)
    assert headers["X-Lowcode-Signature"] != expected_signature(body, "another secret")
    assert (headers["X-Lowcode-Event"], headers["X-Lowcode-Delivery"]) == ("create", job.id)
    sent = json.loads(body)
    assert {k: sent[k] for k in ("id", "event", "object", "trigger", "delivered_at")} == {
        "id": job.id, "event": "create", "object": "deal", "trigger": "push", "delivered_at": START.isoformat()}
    assert {k: sent["record"][k] for k in ("id", "name", "amount", "closes_on", "version")} == {
        "id": made["id"], "name": "Acme", "amount": "1200.50", "closes_on": "2030-06-30", "version": 1}
    assert rt.jobs.job(job.id).status == "succeeded"

    rt.records.update(S, "deal", made["id"], {"name": "Acme Ltd"})
    rt.records.update(S, "deal", made["id"], {"name": "Acme Ltd"})
    assert rt.jobs.run_due() == 1 and rt.jobs.run_due() == 0, "one delivery per saved version"
    update = receiver.requests[1]
    assert update["headers"]["X-Lowcode-Event"] == "update"
    assert update["headers"]["X-Lowcode-Signature"] == expected_signature(update["body"])
    assert json.loads(update["body"])["record"]["name"] == "Acme Ltd"


def test_an_endpoint_answering_500_is_retried_on_the_backoff_schedule_then_failed(rt, receiver):
    receiver.status = 500
    webhook(rt, receiver.url)
    made = rt.records.create(S, "deal", {"name": "Acme"})
    assert rt.records.get(S, "deal", made["id"])["name"] == "Acme"

    for number in range(1, 6):
        attempt(rt, number)
    [job] = deliveries(rt)
    assert (job.status, job.attempts) == ("failed", 5)
    assert "HTTP 500" in job.last_error and "127.0.0.1" in job.last_error and "token" not in job.last_error
    assert len(receiver.requests) == 5
    assert {r["headers"]["X-Lowcode-Delivery"] for r in receiver.requests} == {job.id}, "the delivery id is stable across retries"
    assert all(r["headers"]["X-Lowcode-Signature"] == expected_signature(r["body"]) for r in receiver.requests)
    assert [j.id for j in rt.jobs.list(S, status="failed", kind=WEBHOOK_JOB)] == [job.id]

    receiver.status = 204
    rt.jobs.retry(S, job.id)
    assert rt.jobs.run_due() == 1
    assert rt.jobs.job(job.id).status == "succeeded" and len(receiver.requests) == 6


def test_an_endpoint_that_times_out_is_retried_and_failed_without_delaying_the_write(rt, receiver):
    receiver.delay = 1.5
    webhook(rt, receiver.url, timeout_seconds=0.3)
    started = time.monotonic()
    rt.records.create(S, "deal", {"name": "Acme"})
    assert time.monotonic() - started < 1.0
    assert receiver.requests == []

    started = time.monotonic()
    assert rt.jobs.run_due() == 1
    assert time.monotonic() - started < 1.2, "the attempt gives up after the timeout"
    job = deliveries(rt)[0]
    assert (job.status, job.attempts, job.run_at) == ("queued", 1, START + timedelta(seconds=30))
    assert "did not answer within 0.3 s" in job.last_error
    for number in range(2, 6):
        attempt(rt, number)
    job = deliveries(rt)[0]
    assert (job.status, job.attempts) == ("failed", 5)
    assert "did not answer within 0.3 s" in job.last_error


def test_a_redirect_and_too_many_requests_are_retried_but_a_refusal_fails_at_once(rt, receiver):
    receiver.status = 307
    webhook(rt, receiver.url)
    rt.records.create(S, "deal", {"name": "Acme"})
    attempt(rt, 1)
    assert [r["path"] for r in receiver.requests] == ["/hooks/deals?token=abc"]
    assert "HTTP 307" in deliveries(rt)[0].last_error
    receiver.status = 429
    attempt(rt, 2)
    job = deliveries(rt)[0]
    assert (job.status, job.attempts, len(receiver.requests)) == ("queued", 2, 2)
    assert "HTTP 429" in job.last_error
    receiver.status = 404
    attempt(rt, 3)
    job = deliveries(rt)[0]
    assert (job.status, job.attempts, len(receiver.requests)) == ("failed", 3, 3)
    assert job.last_error.startswith("WEBHOOK_REFUSED") and "HTTP 404" in job.last_error
    rt.clock.advance(hours=2)
    assert rt.jobs.run_due() == 0 and len(receiver.requests) == 3
    receiver.status = 200
    rt.jobs.retry(S, job.id)
    assert rt.jobs.run_due() == 1
    assert deliveries(rt)[0].status == "succeeded" and len(receiver.requests) == 4


def test_an_unreachable_endpoint_fails_with_the_cause(rt):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook(rt, f"http://127.0.0.1:{port}/closed")
    rt.records.create(S, "deal", {"name": "Acme"})
    assert rt.jobs.run_due() == 1
    job = deliveries(rt)[0]
    assert job.status == "queued" and "could not be reached" in job.last_error


def test_a_refused_or_rolled_back_write_enqueues_nothing(rt, receiver):
    webhook(rt, receiver.url)
    rt.metadata.create_validation_rule(S, "deal", {"api_name": "positive", "expression": "record.amount == null || record.amount > 0.0",
                                                   "message": "The amount must be positive.", "field": "amount"})
    with pytest.raises(ValidationFailed):
        rt.records.create(S, "deal", {"name": "Refused", "amount": "-1"})

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        with rt.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            rt.records.joined(conn).create(S, "deal", {"name": "Rolled back"})
            raise Undone
    assert deliveries(rt) == []
    assert rt.jobs.run_due() == 0 and receiver.requests == []


def test_a_delivery_uses_its_triggers_current_webhook_and_fails_once_it_is_gone(rt, receiver):
    webhook(rt, "http://127.0.0.1:9/not-yet")
    made = rt.records.create(S, "deal", {"name": "Acme"})
    fixed = receiver.url.replace("deals", "fixed")
    rt.metadata.update_automation(S, "deal", "push", {"settings": {"events": ["create", "update"], "actions": [
        {"type": "webhook", "url": fixed, "secret": "rotated"}]}})
    assert rt.jobs.run_due() == 1
    [request] = receiver.requests
    assert request["path"].startswith("/hooks/fixed")
    assert request["headers"]["X-Lowcode-Signature"] == expected_signature(request["body"], "rotated")

    rt.records.update(S, "deal", made["id"], {"name": "Acme Ltd"})
    rt.metadata.delete_automation(S, "deal", "push")
    assert rt.jobs.run_due() == 1
    latest = max(deliveries(rt), key=lambda j: j.payload["record"]["version"])
    assert latest.status == "queued" and "no longer has this webhook" in latest.last_error
    assert len(receiver.requests) == 1


def test_only_http_and_https_addresses_are_accepted(rt):
    for url in ("ftp://example.com/hook", "file:///etc/passwd", "gopher://example.com", "http:///path-only", "https://exa mple.com/"):
        with pytest.raises(InvalidDefinition) as error:
            webhook(rt, url)
        assert [(e.code, e.field) for e in error.value.errors] == [("INVALID_URL", "settings.actions.0.url")], url
    assert rt.catalog().object("deal").automations == ()
    assert webhook(rt, "https://hooks.example.com:8443/deals").api_name == "push"
