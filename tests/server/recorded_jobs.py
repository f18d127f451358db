"""A job handler for the worker tests, imported by ``lowcode worker --import recorded_jobs``: it
writes one row per run into ``test_job_run`` (no unique key, so a job run twice shows twice)."""
from __future__ import annotations

import os

from lowcode.runtime.jobs import job_handler
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

KIND = "test.record_run"

runs_metadata = MetaData()
runs = Table(
    "test_job_run", runs_metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("process", Integer, nullable=False),
)


@job_handler(KIND)
def record_run(job) -> None:
    with job.runtime.engine.begin() as conn:
        conn.execute(insert(runs).values(job_id=job.id, process=os.getpid()))
