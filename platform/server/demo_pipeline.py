"""Moving generated deals along their business type's stages, one stage at a time, so that the
stage history (and with it the stage conversions) tells how far each deal got.

Every deal is created in its type's first stage; then, step after step, the deals that go further
enter their next stage in bulk updates, until each has reached its planned outcome: an open
stage, won, or lost after some open stage. Entering a closed stage also sets a past close date
(a deal is recorded as won or lost after the fact).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from ..metadata.definitions import ObjectDef
from .demo_batches import Batches

OPEN_SHARE, WON_SHARE, LOST_SHARE = 50, 28, 22
"""Of a type's deals, the percentage still open, won and lost."""


@dataclass(frozen=True)
class Process:
    """A business type's path to won (its open stages, then won) and its lost stage."""

    business_type: str
    path: tuple[str, ...]
    lost: str

    @classmethod
    def of(cls, obj: ObjectDef, business_type: str) -> "Process":
        kind = obj.business_type(business_type)
        open_stages = tuple(s.api_name for s in kind.stages if s.category == "open")
        won = next(s.api_name for s in kind.stages if s.category == "won")
        lost = next(s.api_name for s in kind.stages if s.category == "lost")
        return cls(business_type, (*open_stages, won), lost)

    @property
    def first(self) -> str:
        return self.path[0]

    @property
    def won(self) -> str:
        return self.path[-1]

    @property
    def outcomes(self) -> tuple[str, ...]:
        return (*self.path, self.lost)


@dataclass
class Deal:
    """A generated deal: what it was created with, and the stages it enters after the first one."""

    process: Process
    journey: list[str]
    close_date: date
    name: str
    amount: Decimal
    account: Any
    """The generator's account the deal is for."""
    owner: dict[str, str]
    """``owner_id`` and ``org_unit_id``."""
    record_id: str = ""

    @property
    def stage(self) -> str:
        return self.journey[-1] if self.journey else self.process.first

    @property
    def won(self) -> bool:
        return self.stage == self.process.won

    @property
    def closed(self) -> bool:
        return self.stage in (self.process.won, self.process.lost)


def plan_journey(rng: random.Random, process: Process, outcome: str | None = None) -> list[str]:
    """The stages a deal enters after the first: towards ``outcome`` (drawn when not given)."""
    open_stages = process.path[:-1]
    if outcome is None:
        weights = [OPEN_SHARE * (len(open_stages) - i) / sum(range(1, len(open_stages) + 1)) for i in range(len(open_stages))]
        outcome = rng.choices(process.outcomes, [*weights, WON_SHARE, LOST_SHARE])[0]
    if outcome == process.lost:
        reached = rng.choices(range(len(open_stages)), [len(open_stages) - i for i in range(len(open_stages))])[0]
        return [*process.path[1:reached + 1], process.lost]
    return list(process.path[1:process.path.index(outcome) + 1])


def outcomes_covering_every_stage(rng: random.Random, process: Process, count: int) -> list[list[str]]:
    """Journeys for ``count`` deals: the first ones end in each stage in turn, the rest are drawn."""
    return [plan_journey(rng, process, process.outcomes[i] if i < len(process.outcomes) else None) for i in range(count)]


def walk(batches: Batches, object_name: str, deals: list[Deal], today: date, rng: random.Random, label: str) -> None:
    """Move every deal along its journey; closing moves get a close date in the last eleven months."""
    moves = sum(len(d.journey) for d in deals)
    with batches.progress(label, moves) as bar:
        step = 0
        while True:
            changes = []
            for deal in deals:
                if len(deal.journey) <= step:
                    continue
                stage = deal.journey[step]
                values: dict[str, Any] = {"stage": stage}
                if stage in (deal.process.won, deal.process.lost):
                    deal.close_date = today - timedelta(days=rng.randint(1, 330))
                    values["close_date"] = deal.close_date.isoformat()
                changes.append((deal.record_id, values))
            if not changes:
                return
            batches.update(object_name, changes, bar)
            step += 1
