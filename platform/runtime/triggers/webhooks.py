"""Webhook deliveries: the ``triggers.webhook`` job POSTs a saved record to its trigger's endpoint.

The job is enqueued in the write's transaction (see :mod:`.actions`), so a delivery exists exactly
when the record was saved, and it is made by a worker, never by the write. The body is JSON::

    {"id": <delivery id>, "event": "create" | "update" | "stage_change", "object": "opportunity",
     "trigger": "<api name>", "record": {<the saved values>}, "delivered_at": "<ISO 8601>"}

with the headers ``X-Lowcode-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the
webhook's secret>``, ``X-Lowcode-Event`` and ``X-Lowcode-Delivery`` (the job's id: the same on
every attempt, so a receiver that saw a delivery can ignore its repeats).

Decisions:

- The address, secret and timeout are the trigger's *current* ones (read when the job runs, so the
  secret is never copied into the job, and an administrator who fixes an address can retry the
  failed deliveries to it). A trigger or webhook removed since the save fails its deliveries.
- Only a 2xx answer delivers. A 5xx, a 408 or 429, a redirect (never followed), a timeout or a
  refused connection fails the attempt with the status or cause; the job service retries it with
  backoff (30 s, doubling) and after its last attempt marks it failed with that error, where
  administrators read it (``backgroundJobs``) and may retry it. Any other 4xx says the request
  itself is wrong (a missing endpoint, a refused signature): retrying the same request cannot
  help, so the delivery fails at once, to be retried by an administrator once fixed.
- Only ``http`` and ``https`` addresses are ever called (checked when saved and again here).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping
from urllib.parse import urlsplit

from ...metadata.definitions import thaw
from ...metadata.errors import LowcodeError
from ..jobs import FinalFailure, job_handler
from .settings import DEFAULT_TIMEOUT_SECONDS, WEBHOOK, url_refusal

WEBHOOK_JOB = "triggers.webhook"
TRIGGER_KIND = "trigger"
SIGNATURE_HEADER = "X-Lowcode-Signature"
EVENT_HEADER = "X-Lowcode-Event"
DELIVERY_HEADER = "X-Lowcode-Delivery"
USER_AGENT = "lowcode-webhooks/1"
MAX_ANSWER_READ = 64 * 1024


class WebhookFailed(LowcodeError):
    """An attempt to deliver that did not get a 2xx answer (the job retries it)."""

    code = "WEBHOOK_FAILED"
    http_status = 502


class WebhookRefused(WebhookFailed, FinalFailure):
    """The endpoint refused the request itself (a 4xx but 408 and 429): not retried."""

    code = "WEBHOOK_REFUSED"


RETRIED_CLIENT_ERRORS = (408, 429)


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-Lowcode-Signature`` for ``body``: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def jsonable(value: Any) -> Any:
    """A record's values as JSON: decimals as exact strings, dates and times in ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@job_handler(WEBHOOK_JOB)
def deliver(job) -> None:
    payload = job.payload
    webhook = current_webhook(job.runtime.catalog(), payload)
    body = json.dumps({
        "id": job.id, "event": payload["event"], "object": payload["object"], "trigger": payload["trigger"],
        "record": payload["record"], "delivered_at": job.runtime.clock.now().isoformat(),
    }, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               SIGNATURE_HEADER: signature(webhook["secret"], body), EVENT_HEADER: payload["event"], DELIVERY_HEADER: job.id}
    post(webhook["url"], body, headers, float(webhook.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS))


def current_webhook(catalog, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook action a delivery was enqueued for, as its trigger now has it."""
    obj = catalog.objects.get(payload["object"])
    automation = None if obj is None else next(
        (a for a in obj.automations if a.kind == TRIGGER_KIND and a.api_name == payload["trigger"]), None)
    actions = (thaw(automation.settings).get("actions") or []) if automation is not None else []
    index = payload["action"]
    if not isinstance(index, int) or not 0 <= index < len(actions) or actions[index].get("type") != WEBHOOK:
        raise WebhookFailed(f"The trigger '{payload['trigger']}' of '{payload['object']}' no longer has this webhook "
                            f"(action {index}); it was changed or deleted, so nothing was sent.")
    return actions[index]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx one: not followed, the attempt fails."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; returns the 2xx status, raises :class:`WebhookFailed` otherwise."""
    refusal = url_refusal(url)
    if refusal:
        raise WebhookFailed(f"The webhook address {url!r} {refusal}; nothing was sent.")
    shown = _shown(url)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(MAX_ANSWER_READ)
            return answer.status
    except urllib.error.HTTPError as answer:
        answer.close()
        refused = 400 <= answer.code < 500 and answer.code not in RETRIED_CLIENT_ERRORS
        failure = WebhookRefused if refused else WebhookFailed
        raise failure(f"{shown} answered HTTP {answer.code} {answer.reason}".rstrip() + ".", status=answer.code) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise WebhookFailed(f"{shown} did not answer within {timeout:g} s.") from None
        raise WebhookFailed(f"{shown} could not be reached ({error.reason}).") from None
    except TimeoutError:
        raise WebhookFailed(f"{shown} did not answer within {timeout:g} s.") from None
    except (http.client.HTTPException, OSError) as error:
        raise WebhookFailed(f"{shown} could not be reached ({type(error).__name__}: {error}).") from None


def _shown(url: str) -> str:
    """The address in messages, without credentials or query (which may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"
