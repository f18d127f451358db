"""Record triggers: the ``trigger`` kind of automation, joined to every write of its object.

A trigger fires on a write when one of its events matches and its condition holds:

- ``create``: a record is created (a record created in a stage is a create, not a stage change);
- ``update``: a record is updated and something changed;
- ``stage_change``: an update moves the record to another stage; with ``stage`` only into that
  stage, with ``stage_category`` only into a stage of that category (``won``: a win).

The CEL condition sees the record as each step has it: ``set_fields`` runs before the write (the
values being saved, before any trigger set fields) and changes the record in place, so the system's
layout checks and validation rules judge the result; the other actions run after the write, in its
transaction, on the record as saved. A write that is refused or rolled back therefore notifies no
one, creates nothing and enqueues no webhook.

Loops: a trigger's ``create_task`` is a write like any other and may fire triggers of its own (one
creating a task on its own object would fire again, forever). Writes made by triggers count their
depth (in a context variable, so per thread or task); a write :data:`MAX_DEPTH` levels down runs no
triggers at all, which ends any loop after a bounded number of records, and is logged.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from ...metadata.errors import FieldError
from ..rules import SaveContext, condition_holds
from . import actions
from .settings import (
    CREATE_TASK,
    NOTIFY,
    SET_FIELDS,
    WEBHOOK,
    Trigger,
    fields_used,
    settings_problems,
    triggers,
)

log = logging.getLogger(__name__)

MAX_DEPTH = 3
"""How many levels of writes made by triggers may fire triggers in turn."""
_depth: ContextVar[int] = ContextVar("lowcode_trigger_depth", default=0)


@contextmanager
def _deeper() -> Iterator[None]:
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    finally:
        _depth.reset(token)


class RecordTriggers:
    kind = "trigger"

    def __init__(self, runtime):
        self.runtime = runtime

    def install(self) -> None:
        """Nothing to create: deliveries are jobs and messages are notifications."""

    def check(self, check) -> list[FieldError]:
        return settings_problems(check)

    def fields_used(self, obj, settings) -> set[str]:
        return fields_used(obj, settings)

    # -- joined to writes ---------------------------------------------------------------------
    def before_save(self, context: SaveContext, automations) -> list[FieldError]:
        if self._too_deep(context):
            return []
        problems: list[FieldError] = []
        for trigger in triggers(context.catalog, context.obj, self.kind):
            if trigger.has(SET_FIELDS) and self._event(context, trigger) is not None:
                for action in trigger.actions:
                    if action["type"] == SET_FIELDS:
                        problems += actions.set_fields(context, trigger, action)
        return problems

    def after_save(self, context: SaveContext, automations) -> None:
        if self._too_deep(context):
            return
        for trigger in triggers(context.catalog, context.obj, self.kind):
            event = self._event(context, trigger)
            if event is None:
                continue
            for index, action in enumerate(trigger.actions):
                if action["type"] == NOTIFY:
                    actions.notify(context, trigger, action, index, self.runtime.notifications, self.runtime.records.policy)
                elif action["type"] == CREATE_TASK:
                    with _deeper():
                        actions.create_task(context, trigger, action)
                elif action["type"] == WEBHOOK:
                    actions.enqueue_webhook(context, trigger, index, event, self.runtime.jobs)

    # -- which triggers fire ------------------------------------------------------------------
    def _event(self, context: SaveContext, trigger: Trigger) -> str | None:
        """The event a write is for this trigger (the most specific one it listens to), when its
        condition holds; ``None`` when it does not fire."""
        record, old = context.record, context.old
        if old is None:
            happened = ["create"]
        else:
            happened = ["update"]
            stage = record.get("stage")
            if stage is not None and stage != old.get("stage") and self._enters(context, trigger, stage):
                happened.insert(0, "stage_change")
        event = next((e for e in happened if e in trigger.events), None)
        if event is None:
            return None
        now = context.now or self.runtime.clock.now()
        if not condition_holds(context.catalog, context.obj, trigger.condition, context.actor, record, old, now):
            return None
        return event

    @staticmethod
    def _enters(context: SaveContext, trigger: Trigger, stage: str) -> bool:
        if trigger.stage is not None:
            return stage == trigger.stage
        if trigger.stage_category is not None:
            found = context.obj.stage(stage)
            return found is not None and found[1].category == trigger.stage_category
        return True

    @staticmethod
    def _too_deep(context: SaveContext) -> bool:
        if _depth.get() < MAX_DEPTH:
            return False
        log.warning("triggers of '%s' not run for record %s: it was written by triggers %s levels deep (a loop?)",
                    context.obj.api_name, context.record.get("id"), _depth.get())
        return True
