"""The CRM records of the demo: partners, competitors, accounts in group hierarchies, contacts,
leads, opportunities of every business type moved along their stages, contracts with payment
plans and payments for the won ones, activities and tasks.

Each record is owned by a seat (a user in a department) of the subsidiary whose business it is,
so that every caller sees the part of the data their roles reach.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import demo_vocabulary as words
from .demo_batches import Batches
from .demo_company import Company, Seat
from .demo_pipeline import Deal, Process, outcomes_covering_every_stage, walk
from .demo_volumes import Volumes

CENT = Decimal("0.01")
BUSINESS_SHARE = {"machinery": 0.45, "media": 0.25, "digital": 0.30}
"""Each subsidiary's share of the accounts."""
DEAL_MIX = {
    ("machinery", "product_sale"): (0.30, 40_000, 2_500_000),
    ("machinery", "project_sale"): (0.12, 800_000, 20_000_000),
    ("media", "product_sale"): (0.25, 20_000, 1_800_000),
    ("digital", "project_sale"): (0.23, 300_000, 12_000_000),
    ("digital", "product_sale"): (0.10, 15_000, 600_000),
}
"""(share of the opportunities, smallest amount, largest amount) per subsidiary and business type."""
CHANNELS = {"product_sale": (("direct", 6), ("distributor", 2), ("agent", 1), ("online", 1)),
            "project_sale": (("direct", 4), ("agent", 1))}
INSTALMENTS = {2: (50, 50), 3: (30, 60, 10), 4: (30, 30, 30, 10)}
"""The percentages of a contract's amount due per instalment, by number of instalments."""
DUE_AFTER_SIGNING = (15, 90, 180, 270)


def money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def amount_between(rng: random.Random, low: float, high: float) -> Decimal:
    """Log-uniform between low and high, rounded to hundreds."""
    return money(round(low * (high / low) ** rng.random(), -2))


def weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([c for c, _ in choices], [w for _, w in choices])[0]


@dataclass
class Generation:
    """What every generator shares: the random source, today (UTC), the writer and the company."""

    rng: random.Random
    today: date
    batches: Batches
    company: Company
    catalog: Any

    def weighted_seat(self, seats: list[Seat]) -> Seat:
        return self.rng.choices(seats, [s.weight for s in seats])[0]

    def city(self, seat: Seat) -> words.City:
        return words.CITIES[self.rng.choice(seat.unit.cities)]

    def process(self, business_type: str) -> Process:
        return Process.of(self.catalog.object("opportunity"), business_type)

    def moment(self, days_back: int) -> datetime:
        """A working-hours moment within the last ``days_back`` days (UTC)."""
        day = self.today - timedelta(days=self.rng.randint(1, days_back))
        return datetime(day.year, day.month, day.day, self.rng.randint(1, 10), self.rng.choice((0, 15, 30, 45)), tzinfo=timezone.utc)


@dataclass
class Account:
    name: str
    short_name: str
    seat: Seat
    city: words.City
    business: str
    category: str
    row: dict[str, Any]
    parent: "Account | None" = None
    level: int = 0
    id: str = ""
    contacts: list[str] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)


def owned_by(seat: Seat) -> dict[str, str]:
    return {"owner_id": seat.user_id, "org_unit_id": seat.unit_id}


class CrmData:
    def __init__(self, gen: Generation, volumes: Volumes):
        self.gen = gen
        self.volumes = volumes
        self.accounts: list[Account] = []
        self.partners: list[str] = []
        self.competitors: list[str] = []
        self.deals: list[Deal] = []
        self._names: set[str] = set()

    @property
    def rng(self) -> random.Random:
        return self.gen.rng

    def accounts_of(self, business: str) -> list[Account]:
        return [a for a in self.accounts if a.business == business]

    # -- reference data ----------------------------------------------------------------------
    def make_partners_and_competitors(self) -> None:
        """Partners up to the planned number (the apps' seed ones count) and a few competitors."""
        seeded_partners = self.gen.batches.every("partner", fields=["id", "name"])
        taken = {p["name"] for p in seeded_partners}
        names = [name for name in (f"{brand} {suffix}" for brand in words.BRAND_WORDS for suffix in words.PARTNER_SUFFIXES)
                 if name not in taken]
        rows = [{"name": name, "level": weighted(self.rng, (("strategic", 1), ("gold", 3), ("silver", 5), ("registered", 8))),
                 "region": self.rng.choice(["north", "east", "south", "central", "southwest"])}
                for name in self.rng.sample(names, max(self.volumes.partner - len(seeded_partners), 0))]
        self.partners = [p["id"] for p in seeded_partners + self.gen.batches.create("partner", rows, "Partners")]
        seeded = self.gen.batches.every("competitor", fields=["id", "name"])
        known = {c["name"] for c in seeded}
        rows = [{"name": name, "strengths": strengths} for name, strengths in words.COMPETITORS if name not in known]
        self.competitors = [c["id"] for c in seeded] + [c["id"] for c in self.gen.batches.create("competitor", rows, "Competitors")]

    # -- accounts ----------------------------------------------------------------------------
    def _unique(self, candidates: list[tuple[str, str]]) -> tuple[str, str]:
        """The first (name, short name) whose name is not taken yet; numbered when all are."""
        name, short = next((c for c in candidates if c[0] not in self._names), candidates[0])
        numbered, n = name, 2
        while numbered in self._names:
            numbered, n = f"{name} No. {n}", n + 1
        self._names.add(numbered)
        return numbered, short

    def make_accounts(self) -> None:
        """Standalone companies and group families (a group, its subsidiaries, some with branches),
        created level by level so that each child names its parent."""
        total = self.volumes.account
        quotas = {b: round(total * share) for b, share in BUSINESS_SHARE.items()}
        quotas["digital"] += total - sum(quotas.values())
        planned: list[Account] = []
        for business, quota in quotas.items():
            seats = self.gen.company.seats_of(business)
            while quota > 0:
                size = min(self.rng.randint(3, 7), quota) if quota >= 3 and self.rng.random() < 0.2 else 1
                planned += self._family(business, seats, size)
                quota -= size
        for level in range(3):
            accounts = [a for a in planned if a.level == level]
            rows = [{**a.row, "parent": a.parent.id} if a.parent else a.row for a in accounts]
            for account, record in zip(accounts, self.gen.batches.create("account", rows, f"Accounts, level {level + 1}")):
                account.id = record["id"]
            self.accounts += accounts

    def _family(self, business: str, seats: list[Seat], size: int) -> list[Account]:
        industry = self.rng.choice(words.INDUSTRIES[business])
        brands = self.rng.sample(words.BRAND_WORDS, len(words.BRAND_WORDS))
        seat = self.gen.weighted_seat(seats)
        city = self.gen.city(seat)
        districts = self.rng.sample(city.districts, len(city.districts))
        if size == 1:
            if business == "digital" and self.rng.random() < 0.3:
                body = self.rng.choice(words.PUBLIC_BODIES)
                names = [(f"{city.name} {body}", f"{city.name} {body}"),
                         *((f"{city.name} {district} {body}", f"{district} {body}") for district in districts)]
                return [self._account(names, seat, city, business, "government")]
            category = weighted(self.rng, (("customer", 9), ("prospect", 7), ("key_account", 2), ("distributor", 1)))
            names = [(f"{city.name} {brand} {industry} Co., Ltd.", f"{brand} {industry}") for brand in brands]
            return [self._account(names, seat, city, business, category)]
        group = self._account([(f"{brand} {industry} Group", f"{brand} Group") for brand in brands], seat, city, business,
                              "key_account", revenue=(5_000_000, 80_000_000))
        brand = group.short_name.removesuffix(" Group")
        family = [group]
        while len(family) < size:
            parent = group if len(family) < 3 or self.rng.random() < 0.6 else self.rng.choice(family[1:])
            if parent.level == 2:
                parent = group
            seat = self.gen.weighted_seat(seats)
            city = self.gen.city(seat)
            districts = self.rng.sample(city.districts, len(city.districts))
            if parent is group:
                names = [(f"{brand} {industry} ({city.name}) Co., Ltd.", f"{brand} {city.name}"),
                         *((f"{brand} {industry} ({city.name} {district}) Co., Ltd.", f"{brand} {district}") for district in districts)]
            else:
                names = [(f"{parent.name} {district} Branch", f"{brand} {district}") for district in districts]
            child = self._account(names, seat, city, business, weighted(self.rng, (("customer", 5), ("key_account", 2))))
            child.parent, child.level = parent, parent.level + 1
            family.append(child)
        return family

    def _account(self, names: list[tuple[str, str]], seat: Seat, city: words.City, business: str, category: str,
                 revenue: tuple[float, float] = (5_000, 8_000_000)) -> Account:
        name, short_name = self._unique(names)
        yearly = None if self.rng.random() < 0.05 else amount_between(self.rng, *revenue)
        grade = ("a" if yearly >= 2_000_000 else "b" if yearly >= 200_000 else "c" if yearly >= 10_000 else "d") if yearly else "d"
        if self.rng.random() < 0.15:
            grade = self.rng.choice("abcd")
        slug = "".join(ch for ch in short_name.lower() if ch.isalnum())
        row = {"name": name, "category": category, "grade": grade, "yearly_revenue": str(yearly) if yearly else None,
               "region": seat.unit.region, "phone": words.phone(self.rng), "address": words.street_address(self.rng, city),
               "website": f"https://www.{slug}.example.cn", **owned_by(seat)}
        return Account(name, short_name, seat, city, business, category, row)

    # -- contacts and leads ------------------------------------------------------------------
    def make_contacts(self) -> None:
        rows, owners = [], []
        for _ in range(self.volumes.contact):
            account = self.rng.choice(self.accounts)
            name = words.person_name(self.rng)
            rows.append({"account": account.id, "name": name, "title": self.rng.choice(words.JOB_TITLES), "phone": words.phone(self.rng),
                         "email": words.email_of(name, account.row["website"].removeprefix("https://www.")), **owned_by(account.seat)})
            owners.append(account)
        for account, record in zip(owners, self.gen.batches.create("contact", rows, "Contacts")):
            account.contacts.append(record["id"])

    def make_leads(self) -> None:
        seats = self.gen.company.seats
        rows = []
        for _ in range(self.volumes.lead):
            seat = self.gen.weighted_seat(seats)
            city = self.gen.city(seat)
            name = words.person_name(self.rng)
            company = f"{city.name} {self.rng.choice(words.BRAND_WORDS)} {self.rng.choice(words.INDUSTRIES[seat.unit.business])} Co., Ltd."
            rows.append({"name": name, "company": company, "phone": words.phone(self.rng), "email": words.email_of(name, "mail.example.cn"),
                         "source": weighted(self.rng, (("web", 5), ("phone", 2), ("trade_fair", 3), ("referral", 2), ("partner", 2),
                                                        ("advertising", 1))),
                         "region": seat.unit.region,
                         "status": weighted(self.rng, (("new", 6), ("working", 5), ("qualified", 3), ("unqualified", 3), ("converted", 3))),
                         "description": self.rng.choice(words.LEAD_DESCRIPTIONS), **owned_by(seat)})
        self.gen.batches.create("lead", rows, "Leads")

    # -- opportunities -----------------------------------------------------------------------
    def make_opportunities(self) -> None:
        """Product and project sales per subsidiary, created in their first stage with a close date
        ahead, then moved along their stages."""
        count = self.volumes.opportunity
        per_mix = {mix: max(round(count * share), 1) for mix, (share, _, _) in DEAL_MIX.items()}
        per_mix[("machinery", "product_sale")] += count - sum(per_mix.values())
        planned: list[Deal] = []
        rows = []
        for (business, kind), how_many in per_mix.items():
            accounts = self.accounts_of(business)
            process = self.gen.process(kind)
            _, low, high = DEAL_MIX[(business, kind)]
            for journey in outcomes_covering_every_stage(self.rng, process, how_many):
                account = self.rng.choice(accounts)
                amount = amount_between(self.rng, low, high)
                row = self._opportunity(business, kind, account, amount)
                planned.append(Deal(process, journey, date.fromisoformat(row["close_date"]), row["name"], amount, account,
                                    owned_by(account.seat)))
                rows.append(row)
        for deal, record in zip(planned, self.gen.batches.create("opportunity", rows, "Opportunities")):
            deal.record_id = record["id"]
            deal.account.deals.append(deal)
        walk(self.gen.batches, "opportunity", planned, self.gen.today, self.rng, "Opportunity stage moves")
        self.deals += planned
        self._competitors_met(planned)

    def _opportunity(self, business: str, kind: str, account: Account, amount: Decimal) -> dict[str, Any]:
        channel = weighted(self.rng, CHANNELS[kind])
        offering = self.rng.choice(words.OFFERINGS[(business, kind)])
        row = {"name": f"{account.short_name}: {offering}", "account": account.id, "business_type": kind, "amount": str(amount),
               "close_date": (self.gen.today + timedelta(days=self.rng.randint(3, 200))).isoformat(), "channel": channel,
               "next_step": self.rng.choice(words.NEXT_STEPS), **owned_by(account.seat)}
        if channel in ("agent", "distributor") and self.partners:
            row["partner"] = self.rng.choice(self.partners)
        if kind == "product_sale" and self.rng.random() < 0.4:
            row["discount"] = str(money(self.rng.uniform(2, 15)))
        return row

    def _competitors_met(self, deals: list[Deal]) -> None:
        rows = []
        for deal in deals:
            if self.rng.random() < 0.25:
                for competitor in self.rng.sample(self.competitors, min(len(self.competitors), self.rng.randint(1, 2))):
                    rows.append({"opportunity": deal.record_id, "competitor": competitor,
                                 "notes": self.rng.choice(("Cheaper by about 10%.", "Incumbent supplier.", "Strong local service team.",
                                                           "Offered free commissioning.")), **deal.owner})
        self.gen.batches.create("opportunity_competitor", rows, "Competitors met")

    # -- contracts and payments --------------------------------------------------------------
    def make_contracts(self, deals: list[Deal]) -> None:
        """A contract per won deal; signed ones have payment plans, and the instalments due by
        now are mostly paid (some partly, some overdue)."""
        won = [d for d in deals if d.won]
        contract_rows, plan_rows, payment_rows = [], [], []
        plans_of: list[list[dict[str, Any]]] = []
        for deal in won:
            signed_on = min(deal.close_date + timedelta(days=self.rng.randint(0, 10)), self.gen.today)
            row = {"name": deal.name, "account": deal.account.id, "opportunity": deal.record_id, "amount": str(deal.amount),
                   **deal.owner}
            plans: list[dict[str, Any]] = []
            if (self.gen.today - deal.close_date).days < 30 and self.rng.random() < 0.3:
                row["status"] = "in_review"
            else:
                plans = self._instalments(deal.amount, signed_on, deal.owner)
                every_paid = all(p["status"] == "paid" for p in plans)
                row.update(status="completed" if every_paid else "signed", signed_on=signed_on.isoformat())
            contract_rows.append(row)
            plans_of.append(plans)
        contracts = self.gen.batches.create("contract", contract_rows, "Contracts")
        for contract, plans in zip(contracts, plans_of):
            for plan in plans:
                plan["row"]["contract"] = contract["id"]
                plan_rows.append(plan)
        made = self.gen.batches.create("payment_plan", [p["row"] for p in plan_rows], "Payment plans")
        for plan, record in zip(plan_rows, made):
            for payment in plan["payments"]:
                payment_rows.append({**payment, "payment_plan": record["id"]})
        self.gen.batches.create("payment", payment_rows, "Payments received")

    def _instalments(self, amount: Decimal, signed_on: date, owner: dict[str, str]) -> list[dict[str, Any]]:
        shares = INSTALMENTS[self.rng.choice(list(INSTALMENTS))]
        amounts = [money(amount * share / 100) for share in shares[:-1]]
        amounts.append(amount - sum(amounts))
        plans = []
        for number, (part, days) in enumerate(zip(amounts, DUE_AFTER_SIGNING), 1):
            due = signed_on + timedelta(days=days)
            payments: list[dict[str, Any]] = []
            if due <= self.gen.today:
                state = weighted(self.rng, (("paid", 80), ("partly_paid", 12), ("planned", 8)))
            else:
                state = "paid" if self.rng.random() < 0.05 else "planned"
            if state != "planned":
                paid = part if state == "paid" else money(part * Decimal(self.rng.randint(30, 70)) / 100)
                pieces = [paid] if state != "paid" or self.rng.random() < 0.8 else [money(paid / 2), paid - money(paid / 2)]
                for piece in pieces:
                    received = min(due + timedelta(days=self.rng.randint(-5, 20)), self.gen.today)
                    payments.append({"amount": str(piece), "received_on": received.isoformat(),
                                     "reference": f"TH{received:%Y%m%d}{self.rng.randint(10000, 99999)}", **owner})
            plans.append({"status": state, "payments": payments, "row": {
                "name": f"Instalment {number} of {len(amounts)}", "due_date": due.isoformat(), "amount": str(part), "status": state,
                **owner}})
        return plans

    # -- activities and tasks ----------------------------------------------------------------
    def make_activities(self) -> None:
        rows = []
        for _ in range(self.volumes.activity):
            account = self.rng.choice(self.accounts)
            kind = weighted(self.rng, (("visit", 9), ("call", 7), ("note", 4)))
            at = self.gen.moment(180)
            row: dict[str, Any] = {"business_type": kind, "account": account.id, "occurred_at": at.isoformat(), **owned_by(account.seat)}
            if account.deals and self.rng.random() < 0.5:
                row["opportunity"] = self.rng.choice(account.deals).record_id
            if account.contacts and kind != "note" and self.rng.random() < 0.6:
                row["contact"] = self.rng.choice(account.contacts)
            if kind == "visit":
                row.update(subject=f"{self.rng.choice(words.VISIT_SUBJECTS)} at {account.short_name}",
                           check_in_location=words.near(self.rng, account.city, 0.05),
                           checked_in_at=(at + timedelta(minutes=self.rng.randint(0, 20))).isoformat(),
                           duration_minutes=self.rng.choice((30, 45, 60, 90, 120)))
            elif kind == "call":
                row.update(subject=f"{self.rng.choice(words.CALL_SUBJECTS)} with {account.short_name}",
                           duration_minutes=self.rng.randint(3, 40))
            else:
                row.update(subject=self.rng.choice(words.NOTE_SUBJECTS), notes=self.rng.choice(words.FINDINGS + words.NEXT_STEPS))
            rows.append(row)
        self.gen.batches.create("activity", rows, "Activities")

    def make_tasks(self) -> None:
        rows = []
        for _ in range(self.volumes.task):
            account = self.rng.choice(self.accounts)
            due = self.gen.today + timedelta(days=self.rng.randint(-45, 30))
            if due < self.gen.today:
                status = weighted(self.rng, (("completed", 7), ("postponed", 1), ("in_progress", 1), ("not_started", 1)))
            else:
                status = weighted(self.rng, (("not_started", 3), ("in_progress", 2)))
            row = {"subject": self.rng.choice(words.TASK_SUBJECTS), "due_date": due.isoformat(), "status": status,
                   "priority": weighted(self.rng, (("high", 2), ("normal", 5), ("low", 2))), "account": account.id,
                   **owned_by(account.seat)}
            if account.deals and self.rng.random() < 0.5:
                row["opportunity"] = self.rng.choice(account.deals).record_id
            rows.append(row)
        self.gen.batches.create("task", rows, "Tasks")
