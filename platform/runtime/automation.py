"""Where the kinds of automation join the record service's writes.

A kind (``lowcode.runtime.assignment``, ``duplicates``, ``approvals``, ``triggers``, ``reminders``)
is registered once on the metadata service's :class:`~lowcode.metadata.automations.AutomationKinds`;
the record service calls the steps it has, for objects that have active automations of that kind,
inside the write's transaction:

- ``guard(context, automations, action)`` before an update, transfer or delete touches a record
  (``action`` names which), to refuse it (an approval pending);
- ``before_save(context, automations)`` once the record passed system validation: it may change
  ``context.record`` (a trigger setting fields) and returns the problems that refuse the save
  (a duplicate), reported with every other row's;
- ``after_save(context, automations)`` once the record is written: assign it, notify, enqueue work.
"""
from __future__ import annotations

from typing import Iterator

from ..metadata.automations import AutomationKinds
from ..metadata.definitions import AutomationDef, ObjectDef
from ..metadata.errors import FieldError
from .rules import SaveContext


class AutomationSteps:
    """The steps of the registered kinds, called for the automations an object has."""

    def __init__(self, kinds: AutomationKinds | None = None):
        self.kinds = kinds if kinds is not None else AutomationKinds()

    def _with(self, obj: ObjectDef, step: str) -> Iterator[tuple[object, tuple[AutomationDef, ...]]]:
        if not obj.automations:
            return
        for kind in self.kinds:
            method = getattr(kind, step, None)
            if method is None:
                continue
            automations = obj.automations_of(kind.kind)
            if automations:
                yield method, automations

    def any(self, obj: ObjectDef) -> bool:
        return bool(obj.automations)

    def guard(self, context: SaveContext, action: str) -> None:
        for method, automations in self._with(context.obj, "guard"):
            method(context, automations, action)

    def before_save(self, context: SaveContext) -> list[FieldError]:
        problems: list[FieldError] = []
        for method, automations in self._with(context.obj, "before_save"):
            problems.extend(method(context, automations) or ())
        return problems

    def after_save(self, context: SaveContext) -> None:
        for method, automations in self._with(context.obj, "after_save"):
            method(context, automations)
