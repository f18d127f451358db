"""The media app's records: outdoor media resources in the media subsidiary's cities and their
bookings along a calendar from five months ago to five months ahead.

Active bookings (hold, confirmed) of one resource never overlap, end dates included: each
resource's calendar is laid out as consecutive slots with gaps. Cancelled bookings are extra and
may overlap anything, as a cancelled booking holds nothing. Some resources are in more demand
than others, and the calendar thins out months ahead, so that availability has answers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from . import demo_vocabulary as words
from .demo_data import Account, CrmData, Generation, money, owned_by, weighted
from .demo_volumes import Volumes

RESOURCE_TYPES = {
    "billboard": ("BB", "Billboard", 3_000, 12_000, (1, 1)),
    "led_screen": ("LED", "LED screen", 5_000, 30_000, (1, 3)),
    "elevator_screen": ("ELV", "Elevator screens", 400, 1_500, (20, 150)),
    "bus_shelter": ("BUS", "Bus shelter", 300, 1_200, (1, 1)),
    "metro_light_box": ("MLB", "Metro light box", 500, 2_500, (1, 1)),
}
"""Per type: code, label, daily price range and screen count range."""
TYPE_WEIGHTS = (("billboard", 3), ("led_screen", 3), ("elevator_screen", 4), ("bus_shelter", 3), ("metro_light_box", 2))
LANDMARKS = ("Century Avenue", "Central Station", "Riverside", "Airport Expressway", "Metro Line 2", "Financial Center",
             "Sports Center", "University Town", "Wanda Plaza", "High-speed Rail Station", "Bund View", "Tech Park")
CALENDAR_DAYS_BACK = 150
CALENDAR_DAYS_AHEAD = 150


@dataclass
class Resource:
    id: str
    code: str
    city: str
    daily_price: Decimal
    status: str


class MediaData:
    def __init__(self, gen: Generation, volumes: Volumes, crm: CrmData):
        self.gen = gen
        self.volumes = volumes
        self.crm = crm
        self.resources: list[Resource] = []

    @property
    def rng(self):
        return self.gen.rng

    def make_resources(self) -> None:
        seats = self.gen.company.seats_of("media")
        rows, numbers = [], {}
        for _ in range(self.volumes.media_resource):
            seat = self.gen.weighted_seat(seats)
            city = self.gen.city(seat)
            kind = weighted(self.rng, TYPE_WEIGHTS)
            code_part, label, low, high, (fewest, most) = RESOURCE_TYPES[kind]
            numbers[(city.code, code_part)] = numbers.get((city.code, code_part), 0) + 1
            screens = self.rng.randint(fewest, most)
            rows.append({"name": f"{self.rng.choice(city.districts)} {self.rng.choice(LANDMARKS)} {label}",
                         "code": f"{city.code}-{code_part}-{numbers[(city.code, code_part)]:04d}", "resource_type": kind,
                         "city": city.name, "address": words.street_address(self.rng, city), "location": words.near(self.rng, city, 0.12),
                         "screen_count": screens, "daily_price": str(money(round(self.rng.uniform(low, high), -1))),
                         "status": weighted(self.rng, (("active", 22), ("maintenance", 2), ("retired", 1))), **owned_by(seat)})
        for row, record in zip(rows, self.gen.batches.create("media_resource", rows, "Media resources")):
            self.resources.append(Resource(record["id"], row["code"], row["city"], Decimal(row["daily_price"]), row["status"]))

    def make_bookings(self) -> None:
        rows: list[dict[str, Any]] = []
        accounts = self.crm.accounts_of("media")
        for resource in self.resources:
            if resource.status != "active":
                continue
            local = [a for a in accounts if a.city.name == resource.city] or accounts
            rows += self._calendar(resource, local)
        self.gen.batches.create("media_booking", rows, "Media bookings")

    def _calendar(self, resource: Resource, accounts: list[Account]) -> list[dict[str, Any]]:
        today = self.gen.today
        start = today - timedelta(days=CALENDAR_DAYS_BACK - self.rng.randint(0, 14))
        last = today + timedelta(days=CALENDAR_DAYS_AHEAD)
        demand = self.rng.choice((0.4, 1.0, 1.0, 1.5))
        bookings = []
        while start < last:
            end = start + timedelta(days=self.rng.randint(7, 35) - 1)
            account = self.rng.choice(accounts)
            if self.rng.random() < 0.12:
                bookings.append(self._booking(resource, account, start, end, "cancelled"))
            else:
                bookings.append(self._booking(resource, account, start, end, self._status(start)))
                if self.rng.random() < 0.08:
                    shift = timedelta(days=self.rng.randint(-5, 5))
                    bookings.append(self._booking(resource, self.rng.choice(accounts), start + shift, end + shift, "cancelled"))
            start = end + timedelta(days=1 + self._gap(end, demand))
        return bookings

    def _gap(self, end: date, demand: float) -> int:
        """Days until the next booking: short for sought-after resources, and longer the further
        ahead (fewer campaigns are booked months in advance)."""
        days_ahead = max((end - self.gen.today).days, 0)
        return round(self.rng.choice((0, 0, 1, 3, 7, 14, 21)) / demand + self.rng.uniform(0, days_ahead / 3))

    def _status(self, start: date) -> str:
        if start <= self.gen.today:
            return "confirmed"
        return "confirmed" if self.rng.random() < 0.55 else "hold"

    def _booking(self, resource: Resource, account: Account, start: date, end: date, status: str) -> dict[str, Any]:
        days = (end - start).days + 1
        row = {"resource": resource.id, "account": account.id, "start_date": start.isoformat(), "end_date": end.isoformat(),
               "status": status, "amount": str(resource.daily_price * days), **owned_by(account.seat)}
        if status == "hold":
            row["hold_until"] = min(start - timedelta(days=1), self.gen.today + timedelta(days=self.rng.randint(3, 21))).isoformat()
        deals = [d for d in account.deals if d.won] if status == "confirmed" else [d for d in account.deals if not d.closed]
        if deals and status != "cancelled":
            row["opportunity"] = self.rng.choice(deals).record_id
        return row
