"""Writing the demo's records: through the record service as the platform itself, in batches,
with a progress bar per step."""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Protocol

from ..metadata.actors import SYSTEM_ACTOR

BATCH_SIZE = 500
GENERATED = ("POSSIBLE_DUPLICATE",)
"""Generated names repeat by design (two "Huaxin Trading" in different cities): the CRM's duplicate
rules would question them, and the demo accepts that."""


class Bar(Protocol):
    def update(self, n_steps: int) -> None: ...


Progress = Callable[[str, int], ContextManager[Bar]]
"""``progress(label, length)``: a bar to advance, like ``click.progressbar(length=, label=)``."""


class _SilentBar:
    def update(self, n_steps: int) -> None:
        pass


@contextmanager
def silent_progress(label: str, length: int) -> Iterator[Bar]:
    yield _SilentBar()


class Batches:
    """Creates and updates records in batches; counts what it created per object."""

    def __init__(self, records, progress: Progress = silent_progress):
        self.records = records
        self.progress = progress
        self.created: Counter[str] = Counter()

    def create(self, object_name: str, rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = []
        with self.progress(label, len(rows)) as bar:
            for start in range(0, len(rows), BATCH_SIZE):
                chunk = rows[start:start + BATCH_SIZE]
                made += self.records.bulk_create(SYSTEM_ACTOR, object_name, chunk, acknowledge=GENERATED)
                bar.update(len(chunk))
        self.created[object_name] += len(made)
        return made

    def update(self, object_name: str, changes: list[tuple[str, dict[str, Any]]], bar: Bar) -> None:
        """``(id, values)`` pairs, advancing ``bar`` by one per record."""
        for start in range(0, len(changes), BATCH_SIZE):
            chunk = changes[start:start + BATCH_SIZE]
            self.records.bulk_update(SYSTEM_ACTOR, object_name, [{"id": record_id, "values": values} for record_id, values in chunk])
            bar.update(len(chunk))

    def every(self, object_name: str, **query: Any) -> list[dict[str, Any]]:
        """Every live record of an object matching the query."""
        return self.records.every(SYSTEM_ACTOR, object_name, **query)
