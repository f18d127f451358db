"""Carrying job ids to workers through RQ on Redis.

Only the id travels: the worker reads the job from the database and claims it there, so a message
delivered twice runs nothing twice, and a message lost (Redis down, restarted, flushed) is pushed
again by the sweep (:meth:`~.service.JobService.dispatch_pending`).
"""
from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger(__name__)

QUEUE_NAME = "lowcode-jobs"
RUN_JOB = "lowcode.runtime.jobs.worker.run_job"
RESULT_TTL_SECONDS = 0
FAILURE_TTL_SECONDS = 7 * 24 * 3600


class RedisTransport:
    def __init__(self, redis, prefix: str = "", lease: timedelta = timedelta(minutes=5)):
        self.redis = redis
        self.queue_name = prefix + QUEUE_NAME
        self.timeout_seconds = int(lease.total_seconds())
        """RQ stops a handler running longer than the lease, when another worker may take the job over."""
        self._queue = None

    def queue(self):
        if self._queue is None:
            from rq import Queue

            self._queue = Queue(self.queue_name, connection=self.redis)
        return self._queue

    def push(self, job_id: str) -> bool:
        """Hand one job id to the workers; ``False`` (logged) when Redis cannot take it."""
        from redis.exceptions import RedisError

        try:
            self.queue().enqueue_call(RUN_JOB, args=(job_id,), timeout=self.timeout_seconds,
                                      result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS,
                                      description=f"lowcode job {job_id}")
        except (RedisError, OSError) as exc:
            log.warning("could not push job %s to Redis (%s); the sweep will push it when Redis is back", job_id, exc)
            return False
        return True
