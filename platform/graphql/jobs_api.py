"""The jobs admin API: background jobs with their status and last error, and retrying a failed one
(administrators only)."""
from __future__ import annotations

import graphene

from ..runtime.jobs import STATUSES
from .scalars import JSON, DateTime

BackgroundJobStatus = graphene.Enum("BackgroundJobStatus", [(s.upper(), s) for s in STATUSES],
                          description="QUEUED (waiting to run or to be retried), RUNNING, SUCCEEDED or FAILED (out of attempts).")


class BackgroundJob(graphene.ObjectType):
    id = graphene.ID(required=True)
    kind = graphene.String(required=True)
    status = BackgroundJobStatus(required=True)
    payload = JSON()
    dedupe_key = graphene.String(description="The key that made a second enqueue of the same work a no-op.")
    attempts = graphene.Int(required=True, description="Attempts made since it was enqueued or last retried.")
    max_attempts = graphene.Int(required=True)
    run_at = DateTime(required=True, description="When it is due (after a failed attempt: when it is retried).")
    last_error = graphene.String(description="The last line of the error of its last failed attempt.")
    created_at = DateTime(required=True)
    started_at = DateTime()
    finished_at = DateTime()


def _plain(value):
    return getattr(value, "value", value)


class JobsQuery(graphene.ObjectType):
    background_jobs = graphene.List(graphene.NonNull(BackgroundJob), required=True, status=BackgroundJobStatus(), kind=graphene.String(),
                         first=graphene.Int(default_value=100, description="1 to 1000, newest first."),
                         description="Background jobs, newest first (administrators).")

    @staticmethod
    def resolve_background_jobs(_root, info, status=None, kind=None, first=100):
        context = info.context
        return context.jobs.list(context.actor, status=_plain(status), kind=kind, limit=first)


class JobsMutation(graphene.ObjectType):
    retry_background_job = graphene.Field(BackgroundJob, required=True, id=graphene.ID(required=True),
                               description="Queue a failed job again, due now, with a fresh count of attempts (administrators).")

    @staticmethod
    def resolve_retry_background_job(_root, info, id):
        context = info.context
        return context.jobs.retry(context.actor, id)
