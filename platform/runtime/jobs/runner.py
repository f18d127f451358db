"""Running jobs inside the serving process, for installations without Redis (the embedded demo).

A daemon thread ticks the schedules and runs the due jobs every few seconds. Several processes
may each run one: claims in the database keep every job to one runner.
"""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 2.0


class JobRunner:
    def __init__(self, runtime, interval: float = DEFAULT_INTERVAL_SECONDS, batch: int = 100):
        self.jobs = runtime.jobs
        self.interval = interval
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round: fire due schedules, then run due jobs until none is left; returns how many ran."""
        self.jobs.tick()
        total = ran = self.jobs.run_due(self.batch)
        while ran == self.batch and not self._stop.is_set():
            ran = self.jobs.run_due(self.batch)
            total += ran
        return total

    def start(self) -> "JobRunner":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="lowcode-job-runner", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("the job runner's round failed; trying again in %s s", self.interval)
            self._stop.wait(self.interval)
