"""The scheduled work of pools: hourly, recycle the records whose protection ran out and remind
the owners of those about to run out (both idempotent, as job handlers must be)."""
from __future__ import annotations

from ..jobs import job_handler
from .service import RECYCLE_JOB, REMIND_JOB


@job_handler(RECYCLE_JOB)
def recycle(job) -> None:
    job.runtime.pools.recycle_due()


@job_handler(REMIND_JOB)
def remind(job) -> None:
    job.runtime.pools.remind_due()
