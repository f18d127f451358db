"""Jobs: work recorded in the database and run later, once, by whichever worker claims it.

The ``lc_job`` row is the job (an outbox): enqueueing inside a caller's transaction makes the job
exist exactly when that transaction commits, and a dedupe key makes a second enqueue of the same
work a no-op. Workers claim a due job with one conditional write (PostgreSQL skips rows another
worker holds), taking a lease; a worker that dies leaves the lease to expire, and another worker
runs the job again. A failed attempt is retried with exponential backoff, then the job is marked
failed with the last line of its error for administrators to read and retry. Redis, when
configured, only carries job ids to workers (:mod:`.transport`); losing a message loses nothing.
"""
from __future__ import annotations

import json
import logging
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...metadata.actors import Actor
from ...metadata.database import WRITE
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    LowcodeError,
    NotFound,
    ValidationFailed,
)
from ..clock import Clock, SystemClock
from . import store
from .handlers import FinalFailure, Handler, Handlers, default_handlers
from .schedules import Schedules
from .store import FAILED, QUEUED, RUNNING, STATUSES, SUCCEEDED

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_LEASE = timedelta(minutes=5)
MAX_ERROR_LENGTH = 2000
MAX_LISTED = 1000
ABANDONED_ERROR = ("Its worker stopped before finishing (the lease expired) on the last allowed attempt; "
                   "find why the worker stopped, then retry the job.")

JOBS = store.jobs
C = JOBS.c


def retry_delay(attempts: int) -> timedelta:
    """How long a job waits after its ``attempts``-th failed attempt: 30 s, 60 s, 120 s, ... up to an hour."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** min(attempts - 1, 20), BACKOFF_CAP_SECONDS))


@dataclass(frozen=True)
class Job:
    """One ``lc_job`` row; a handler receives it, with ``runtime`` set to what the service serves."""

    id: str
    kind: str
    payload: Any
    dedupe_key: str | None
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    locked_until: datetime | None
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    dispatched_at: datetime | None
    runtime: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_row(cls, row, runtime: Any = None) -> "Job":
        values = row._mapping
        return cls(**{c.name: values[c.name] for c in JOBS.columns}, runtime=runtime)

    def as_dict(self) -> dict[str, Any]:
        return {c.name: getattr(self, c.name) for c in JOBS.columns}


class JobService:
    def __init__(self, engine: Engine, clock: Clock | None = None, *, transport=None, context: Any = None,
                 lease: timedelta = DEFAULT_LEASE, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        self.engine = engine
        self.clock = clock or SystemClock()
        self.transport = transport
        """Pushes job ids to workers (:class:`~.transport.RedisTransport`); ``None``: workers poll the database."""
        self.context = context
        """What handlers reach as ``job.runtime`` (the :class:`~lowcode.runtime.Runtime`)."""
        self.lease = lease
        self.max_attempts = max_attempts
        self.redispatch_after = lease
        """A queued job pushed this long ago and still not claimed is pushed again (the message may be lost)."""
        self.handlers = Handlers(fallback=default_handlers)
        self.schedules = Schedules(self)

    def install(self) -> None:
        """Create the jobs tables when missing."""
        with self._transaction() as conn:
            store.jobs_metadata.create_all(conn)

    def register(self, kind: str, handler: Handler) -> Handler:
        return self.handlers.register(kind, handler)

    def handler(self, kind: str):
        """Decorator: ``@runtime.jobs.handler("kind")`` registers the function for that kind."""
        return self.handlers.handler(kind)

    # -- enqueueing ---------------------------------------------------------------------------
    def enqueue(self, kind: str, payload: Any = None, *, key: str | None = None, run_at: datetime | None = None,
                max_attempts: int | None = None, conn: Connection | None = None) -> str:
        """Record a job and return its id; with ``key``, a job already recorded under that key is
        kept and its id returned instead.

        With ``conn`` the job joins that open transaction: it exists if and only if the caller
        commits, and reaches Redis with the next sweep (:meth:`dispatch_pending`). Without it, the
        job is committed at once and pushed to Redis right after.
        """
        values = self._new_row(kind, {} if payload is None else payload, key, run_at, max_attempts)
        if conn is not None:
            return self._insert(conn, values)[0]
        with self._transaction() as conn:
            job_id, inserted = self._insert(conn, values)
        if inserted and values["run_at"] <= self.clock.now():
            self.dispatch([job_id])
        return job_id

    def _new_row(self, kind, payload, key, run_at, max_attempts) -> dict[str, Any]:
        problems = []
        if not isinstance(kind, str) or not kind or len(kind) > JOBS.c.kind.type.length:
            problems.append(FieldError("INVALID_VALUE", "kind", "must be a job kind of 1 to 127 characters"))
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(FieldError("INVALID_VALUE", "payload", f"must be JSON ({exc})"))
        if key is not None and (not isinstance(key, str) or not key or len(key) > JOBS.c.dedupe_key.type.length):
            problems.append(FieldError("INVALID_VALUE", "key", "must be a string of 1 to 255 characters"))
        if run_at is not None and (not isinstance(run_at, datetime) or run_at.tzinfo is None):
            problems.append(FieldError("INVALID_VALUE", "run_at", "must be a timezone-aware datetime"))
        attempts = self.max_attempts if max_attempts is None else max_attempts
        if not isinstance(attempts, int) or attempts < 1:
            problems.append(FieldError("INVALID_VALUE", "max_attempts", "must be a whole number of at least 1"))
        if problems:
            raise ValidationFailed.of(problems)
        now = self.clock.now()
        return {"id": str(uuid.uuid4()), "kind": kind, "payload": payload, "dedupe_key": key, "status": QUEUED,
                "attempts": 0, "max_attempts": attempts, "run_at": run_at or now, "created_at": now}

    @staticmethod
    def _insert(conn: Connection, values: dict[str, Any]) -> tuple[str, bool]:
        if values["dedupe_key"] is None:
            conn.execute(insert(JOBS).values(values))
            return values["id"], True
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        inserted = conn.execute(dialect_insert(JOBS).values(values).on_conflict_do_nothing(index_elements=[C.dedupe_key])
                                .returning(C.id)).first()
        if inserted is not None:
            return str(inserted.id), True
        return str(conn.execute(select(C.id).where(C.dedupe_key == values["dedupe_key"])).scalar_one()), False

    # -- handing to workers -------------------------------------------------------------------
    def dispatch(self, job_ids: list[str]) -> int:
        """Push these jobs to Redis now (none without a transport); returns how many were pushed.
        A job Redis did not take stays undispatched for the next sweep."""
        if self.transport is None or not job_ids:
            return 0
        pushed = []
        for job_id in job_ids:
            if not self.transport.push(job_id):
                break
            pushed.append(job_id)
        if pushed:
            with self._transaction() as conn:
                conn.execute(update(JOBS).where(C.id.in_(pushed)).values(dispatched_at=self.clock.now()))
        return len(pushed)

    def dispatch_pending(self, limit: int = 500) -> int:
        """The sweep: push the due jobs Redis never got (it was down, or they were enqueued in a
        caller's transaction), those pushed long ago and never claimed, and those whose worker's
        lease expired. Returns how many were pushed."""
        self.fail_abandoned()
        if self.transport is None:
            return 0
        now = self.clock.now()
        never_or_long_ago = or_(C.dispatched_at.is_(None), C.dispatched_at < now - self.redispatch_after)
        waiting = select(C.id).where(or_(
            and_(C.status == QUEUED, C.run_at <= now, never_or_long_ago),
            and_(C.status == RUNNING, C.locked_until < now, C.attempts < C.max_attempts,
                 or_(C.dispatched_at.is_(None), C.dispatched_at < C.locked_until)),
        )).order_by(C.run_at).limit(limit)
        with self.engine.connect() as conn:
            job_ids = [str(i) for i in conn.execute(waiting).scalars()]
        return self.dispatch(job_ids)

    # -- running ------------------------------------------------------------------------------
    def run_due(self, limit: int = 100) -> int:
        """Claim and run due jobs one after another, up to ``limit``; returns how many ran."""
        self.fail_abandoned()
        ran = 0
        while ran < limit:
            job = self._claim_next()
            if job is None:
                break
            self._run(job)
            ran += 1
        return ran

    def run_one(self, job_id: str) -> Job | None:
        """Claim and run this job if it is due and no live worker holds it (what an RQ worker calls
        for each id it receives); returns the job as it ended, or ``None`` when not claimed."""
        if not _is_uuid(job_id):
            return None
        with self._transaction() as conn:
            row = conn.execute(self._claiming(self.clock.now()).where(C.id == job_id)).first()
        if row is None:
            return None
        return self._run(Job.from_row(row, self.context))

    def claim(self, job_id: str) -> Job | None:
        """Claim a due job without running it (a worker that then stops: its lease runs out)."""
        if not _is_uuid(job_id):
            return None
        with self._transaction() as conn:
            row = conn.execute(self._claiming(self.clock.now()).where(C.id == job_id)).first()
        return Job.from_row(row, self.context) if row is not None else None

    def fail_abandoned(self) -> int:
        """Mark failed the jobs whose worker stopped on their last allowed attempt."""
        now = self.clock.now()
        with self._transaction() as conn:
            return conn.execute(update(JOBS).where(
                C.status == RUNNING, C.locked_until < now, C.attempts >= C.max_attempts,
            ).values(status=FAILED, finished_at=now, locked_until=None, last_error=ABANDONED_ERROR)).rowcount

    @staticmethod
    def _due(now: datetime):
        return or_(and_(C.status == QUEUED, C.run_at <= now),
                   and_(C.status == RUNNING, C.locked_until < now, C.attempts < C.max_attempts))

    def _claiming(self, now: datetime):
        """The conditional write that claims: it changes the row only while the job is still due."""
        return update(JOBS).where(self._due(now)).values(
            status=RUNNING, attempts=C.attempts + 1, started_at=now, finished_at=None, locked_until=now + self.lease,
        ).returning(*JOBS.columns)

    def _claim_next(self) -> Job | None:
        now = self.clock.now()
        with self._transaction() as conn:
            candidate = conn.execute(select(C.id).where(self._due(now)).order_by(C.run_at, C.created_at).limit(1)
                                     .with_for_update(skip_locked=True)).scalar()
            if candidate is None:
                return None
            row = conn.execute(self._claiming(now).where(C.id == candidate)).first()
        return Job.from_row(row, self.context) if row is not None else None

    def _run(self, job: Job) -> Job:
        handler = self.handlers.find(job.kind)
        if handler is None:
            return self._finish(job, f"No handler is registered for the job kind '{job.kind}'; import the module that "
                                     "registers it (lowcode worker --import MODULE), then retry the job.", final=True)
        try:
            handler(job)
        except FinalFailure as exc:
            log.warning("job %s (%s) failed for good on attempt %s", job.id, job.kind, job.attempts)
            return self._finish(job, describe(exc), final=True)
        except Exception as exc:
            log.warning("job %s (%s) failed on attempt %s of %s", job.id, job.kind, job.attempts, job.max_attempts, exc_info=True)
            return self._finish(job, describe(exc))
        return self._finish(job)

    def _finish(self, job: Job, error: str | None = None, *, final: bool = False) -> Job:
        """Record the attempt's outcome, unless the lease was lost and another worker took the job."""
        now = self.clock.now()
        if error is None:
            values = {"status": SUCCEEDED, "finished_at": now}
        elif final or job.attempts >= job.max_attempts:
            values = {"status": FAILED, "finished_at": now, "last_error": error}
        else:
            values = {"status": QUEUED, "run_at": now + retry_delay(job.attempts), "last_error": error, "dispatched_at": None}
        held = and_(C.id == job.id, C.status == RUNNING, C.attempts == job.attempts)
        with self._transaction() as conn:
            row = conn.execute(update(JOBS).where(held).values(locked_until=None, **values).returning(*JOBS.columns)).first()
            if row is None:
                log.warning("job %s: attempt %s ended after its lease was taken over; its outcome is not recorded", job.id, job.attempts)
                row = conn.execute(select(JOBS).where(C.id == job.id)).one()
        return Job.from_row(row, self.context)

    # -- administering ------------------------------------------------------------------------
    def job(self, job_id: str) -> Job | None:
        if not _is_uuid(job_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(JOBS).where(C.id == job_id)).first()
        return Job.from_row(row, self.context) if row is not None else None

    def list(self, actor: Actor, status: str | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
        """The newest jobs first, optionally of one status and kind (administrators)."""
        _require_admin(actor)
        problems = []
        if status is not None and status not in STATUSES:
            problems.append(FieldError("INVALID_VALUE", "status", f"must be one of {', '.join(STATUSES)}"))
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LISTED:
            problems.append(FieldError("OUT_OF_RANGE", "first", f"must be between 1 and {MAX_LISTED}"))
        if problems:
            raise ValidationFailed.of(problems)
        query = select(JOBS).order_by(C.created_at.desc(), C.id).limit(limit)
        if status is not None:
            query = query.where(C.status == status)
        if kind is not None:
            query = query.where(C.kind == kind)
        with self.engine.connect() as conn:
            return [Job.from_row(row, self.context) for row in conn.execute(query)]

    def retry(self, actor: Actor, job_id: str) -> Job:
        """Queue a failed job again, due now, with a fresh count of attempts (administrators)."""
        _require_admin(actor)
        if not _is_uuid(job_id):
            raise NotFound(f"There is no job with id '{job_id}'.", field="id")
        now = self.clock.now()
        with self._transaction() as conn:
            row = conn.execute(select(C.status).where(C.id == job_id).with_for_update()).first()
            if row is None:
                raise NotFound(f"There is no job with id '{job_id}'.", field="id")
            if row.status != FAILED:
                raise Conflict(f"The job is {row.status}; only failed jobs can be retried.", field="id")
            conn.execute(update(JOBS).where(C.id == job_id).values(
                status=QUEUED, attempts=0, run_at=now, started_at=None, finished_at=None, locked_until=None, dispatched_at=None))
        self.dispatch([job_id])
        return self.job(job_id)

    # -- schedules ----------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Enqueue the job of each schedule whose slot has come (see :meth:`.Schedules.tick`)."""
        return self.schedules.tick()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn


def describe(error: BaseException) -> str:
    """What administrators read about a failed attempt: the error's own last line, never a stack trace."""
    if isinstance(error, LowcodeError):
        text = f"{error.code}: {error.message}"
    else:
        text = traceback.format_exception_only(type(error), error)[-1].strip()
    return text[:MAX_ERROR_LENGTH]


def _require_admin(actor: Actor) -> None:
    if actor.is_system or (actor.access is not None and actor.access.administrator):
        return
    raise Forbidden("Only administrators see and retry background jobs.")


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
