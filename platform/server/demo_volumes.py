"""How much data the demo makes: counts per object at scale 1 ("full"), multiplied by the scale.

Objects listed here are made in exactly these numbers; the others follow from them (a contract per
won opportunity, its payment plans and payments, a service sale per recommending service record,
bookings along each media resource's calendar).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

PRESETS = {"small": 0.05, "full": 1.0}

FULL = {
    "account": 3000, "contact": 4500, "lead": 4000, "partner": 40, "opportunity": 6000, "activity": 9000, "task": 2500,
    "equipment": 1500, "service_record": 4000, "media_resource": 400,
}
MINIMUM = {"partner": 6, "media_resource": 30, "equipment": 30, "service_record": 80}
"""Even a small demo keeps enough of these to show something."""
MAXIMUM = {"partner": 150}
"""A big demo stays within these (partner names are drawn from a small vocabulary)."""


@dataclass(frozen=True)
class Volumes:
    account: int
    contact: int
    lead: int
    partner: int
    opportunity: int
    """Product and project sales (service sales come from service records)."""
    activity: int
    task: int
    equipment: int
    service_record: int
    media_resource: int

    @classmethod
    def at(cls, scale: float) -> "Volumes":
        return cls(**{name: min(max(round(full * scale), MINIMUM.get(name, 1)), MAXIMUM.get(name, 1 << 30))
                      for name, full in FULL.items()})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_scale(text: str) -> float:
    """``small``, ``full`` or a positive number (1 = full)."""
    if text in PRESETS:
        return PRESETS[text]
    try:
        scale = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not {', '.join(PRESETS)} or a number") from None
    if not 0 < scale <= 20:
        raise ValueError("the scale is a number above 0 and at most 20")
    return scale
