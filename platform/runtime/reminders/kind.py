"""The ``reminder`` automation kind: its settings checked when saved, and the scan that delivers.

A scan reads each object's active reminders from the current Catalog, finds the due records of
each in one statement and delivers them under per-occasion keys, one transaction per reminder.
Nothing it does is remembered apart from the notifications themselves: the keys are what makes a
rerun, a second worker or a restarted process deliver nothing twice, and a reminder missed while
no worker ran is delivered by the next scan (a due record stays due until its occasion changes).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import Connection

from ...metadata.automations import AutomationCheck
from ...metadata.database import WRITE
from ...metadata.definitions import AutomationDef, ObjectDef, thaw
from ...metadata.errors import FieldError
from . import schedule
from .delivery import deliveries
from .due import due
from .settings import checked, fields_used, fields_used_elsewhere

log = logging.getLogger(__name__)

KIND = "reminder"


class Reminders:
    kind = KIND

    def __init__(self, runtime):
        self.runtime = runtime

    def install(self) -> None:
        """Declare the hourly scan when some object has a reminder (a process restarted with reminders
        keeps scanning even if its schedule was deactivated meanwhile)."""
        catalog = self.runtime.catalog()
        if any(obj.automations_of(KIND) for obj in catalog.objects.values()):
            with self._transaction() as conn:
                schedule.declare(self.runtime.jobs, conn)

    def check(self, check: AutomationCheck) -> list[FieldError]:
        """Every problem of the settings; settings without any declare the hourly scan in the same
        transaction, so the scan is scheduled exactly when a reminder is saved."""
        _, problems = checked(check.catalog, check.obj, check.api_name, check.settings)
        if not problems:
            schedule.declare(self.runtime.jobs, check.conn)
        return problems

    def fields_used_elsewhere(self, settings: Any) -> set[tuple[str, str]]:
        return fields_used_elsewhere(settings)

    def removed(self, conn: Connection, remaining: list[AutomationDef]) -> None:
        """Withdraw the hourly scan with the last reminder (an app uninstalled leaves none behind)."""
        if not remaining:
            schedule.withdraw(self.runtime.jobs, conn)

    def fields_used(self, obj: ObjectDef, settings: Any) -> set[str]:
        return fields_used(obj, settings)

    def scan(self, now: datetime | None = None) -> int:
        """Deliver every active reminder's due records not delivered yet; returns how many
        notifications were delivered. A reminder whose settings no longer fit its object (a field
        changed type, say) is skipped with a warning."""
        now = now or self.runtime.clock.now()
        catalog = self.runtime.catalogs.current()
        delivered = 0
        for obj in sorted(catalog.objects.values(), key=lambda o: o.api_name):
            for automation in obj.automations_of(KIND):
                reminder, problems = checked(catalog, obj, automation.api_name, thaw(automation.settings), automation.label)
                if reminder is None:
                    log.warning("reminder %s.%s is skipped: %s", obj.api_name, automation.api_name,
                                "; ".join(f"{p.field}: {p.message}" for p in problems))
                    continue
                with self._transaction() as conn:
                    found = due(conn, catalog, reminder, now)
                    if found:
                        delivered += self.runtime.notifications.notify_each(deliveries(reminder, found), conn=conn)
        return delivered

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.runtime.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn
