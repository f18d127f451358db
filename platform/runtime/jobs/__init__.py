"""Background and scheduled jobs: recorded in the database, run by workers (RQ on Redis) or in process."""
from ..clock import Clock, ManualClock, SystemClock
from .handlers import FinalFailure, Handlers, default_handlers, job_handler
from .runner import JobRunner
from .service import Job, JobService, retry_delay
from .store import FAILED, QUEUED, RUNNING, STATUSES, SUCCEEDED

__all__ = [
    "Clock", "ManualClock", "SystemClock", "FinalFailure", "Handlers", "default_handlers", "job_handler", "JobRunner", "Job",
    "JobService", "retry_delay", "FAILED", "QUEUED", "RUNNING", "STATUSES", "SUCCEEDED",
]
