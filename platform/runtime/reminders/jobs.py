"""The scheduled work of reminders: hourly, deliver what is due (idempotent, as job handlers must be)."""
from __future__ import annotations

from ..jobs import job_handler
from .schedule import SCAN_JOB


@job_handler(SCAN_JOB)
def scan(job) -> None:
    job.runtime.reminders.scan()
