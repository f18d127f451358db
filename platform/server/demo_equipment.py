"""The manufacturing app's records: equipment installed at the machinery customers' sites (placed
around their cities, for the map), service records by the region's engineers, and the service
sales opened from the engineers' recommendations, moved along their stages.

The app's hook opens a service sale for each recommending service record, owned like the record;
any it did not open is opened here the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from . import demo_vocabulary as words
from .demo_company import region_of
from .demo_data import (
    Account,
    CrmData,
    Generation,
    amount_between,
    money,
    owned_by,
    weighted,
)
from .demo_pipeline import Deal, outcomes_covering_every_stage, walk
from .demo_volumes import Volumes

PRODUCT_LINES = {
    "compressor": ("Compressor", ("TC-160", "TC-250", "TC-400", "TS-75", "TS-110")),
    "blower": ("Magnetic-bearing blower", ("MB-100", "MB-200", "MB-300")),
    "turbine": ("Steam turbine", ("ST-6", "ST-12", "ST-25")),
    "pump": ("Process pump", ("PP-80", "PP-150", "PP-300")),
    "control_system": ("Control system", ("DCS-3000", "DCS-5000")),
}
"""Per product line: the label and the models."""
LINE_WEIGHTS = (("compressor", 9), ("blower", 5), ("turbine", 2), ("pump", 5), ("control_system", 2))
RECENT_DAYS = 45
"""Services this recent may recommend a sale (so the service pipeline is current)."""
CLOSE_AFTER_SERVICE_DAYS = 60
RECOMMENDATIONS = (("spare_parts", 4), ("upgrade", 2), ("replacement", 1), ("service_contract", 3))
RECOMMENDATION_LABEL = {"spare_parts": "Spare parts", "upgrade": "Upgrade", "replacement": "Replacement",
                        "service_contract": "Service contract"}


@dataclass(frozen=True)
class Machine:
    id: str
    serial: str
    account: Account
    install_date: date


@dataclass(frozen=True)
class Recommendation:
    """A service record recommending a sale, as written."""

    record_id: str
    machine: Machine
    values: dict[str, Any]

    @property
    def sale_name(self) -> str:
        return f"{RECOMMENDATION_LABEL[self.values['recommendation']]} for {self.machine.serial}"


class EquipmentData:
    def __init__(self, gen: Generation, volumes: Volumes, crm: CrmData):
        self.gen = gen
        self.volumes = volumes
        self.crm = crm
        self.machines: list[Machine] = []
        self.deals: list[Deal] = []

    @property
    def rng(self):
        return self.gen.rng

    def make_equipment(self) -> None:
        """Units at the sites of machinery customers, owned like their account."""
        customers = [a for a in self.crm.accounts_of("machinery") if a.category != "prospect"] or self.crm.accounts_of("machinery")
        rows, planned = [], []
        for number in range(1, self.volumes.equipment + 1):
            account = self.rng.choice(customers)
            line = weighted(self.rng, LINE_WEIGHTS)
            label, models = PRODUCT_LINES[line]
            model = self.rng.choice(models)
            installed = self.gen.today - timedelta(days=self.rng.randint(60, 3650))
            serial = f"TH-{model.split('-')[0]}-{installed.year}-{number:05d}"
            rows.append({"serial_number": serial, "name": f"{label} {model}", "model": model, "product_line": line,
                         "install_date": installed.isoformat(),
                         "warranty_end": (installed + timedelta(days=365 * self.rng.choice((2, 3)))).isoformat(),
                         "location": words.near(self.rng, account.city, 0.25),
                         "site_address": words.street_address(self.rng, account.city), "account": account.id,
                         "status": weighted(self.rng, (("running", 15), ("standby", 3), ("under_repair", 2), ("decommissioned", 1))),
                         **owned_by(account.seat)})
            planned.append((serial, account, installed))
        for (serial, account, installed), record in zip(planned, self.gen.batches.create("equipment", rows, "Equipment")):
            self.machines.append(Machine(record["id"], serial, account, installed))

    def make_service_records(self) -> None:
        """Service records over each unit's life, a quarter of them recent, by an engineer of the
        unit's region; some recent ones recommend a sale."""
        rows, machines, recommending = [], [], []
        for _ in range(self.volumes.service_record):
            machine = self.rng.choice(self.machines)
            age = (self.gen.today - machine.install_date).days
            served = self.gen.today - timedelta(days=self.rng.randint(0, min(age, RECENT_DAYS) if self.rng.random() < 0.25 else age))
            engineers = self.gen.company.engineers_of(region_of(machine.account.seat.unit).key)
            engineer = self.rng.choice(engineers) if engineers else None
            owner = {"owner_id": engineer.user_id, "org_unit_id": engineer.unit_id} if engineer else owned_by(machine.account.seat)
            row: dict[str, Any] = {
                "equipment": machine.id, "service_date": served.isoformat(),
                "kind": weighted(self.rng, (("maintenance", 8), ("inspection", 4), ("repair", 3), ("upgrade", 1))),
                "engineer": engineer.user_id if engineer else None, "findings": self.rng.choice(words.FINDINGS),
                "labor_hours": str(money(self.rng.uniform(1, 24))), "parts_cost": str(amount_between(self.rng, 200, 80_000)),
                "recommendation": "none", **owner}
            if (self.gen.today - served).days <= RECENT_DAYS and self.rng.random() < 0.45:
                row.update(recommendation=weighted(self.rng, RECOMMENDATIONS), estimated_value=str(amount_between(self.rng, 8_000, 900_000)))
            rows.append(row)
            machines.append(machine)
        made = self.gen.batches.create("service_record", rows, "Service records")
        for record, row, machine in zip(made, rows, machines):
            if row["recommendation"] != "none":
                recommending.append(Recommendation(record["id"], machine, row))
        self._service_sales(recommending)

    def _service_sales(self, recommending: list[Recommendation]) -> None:
        """Each recommending record's service sale (opened by the app, or here), moved along the
        service stages."""
        opened = {o["service_record"]: o["id"] for o in self.gen.batches.every(
            "opportunity", filter={"service_record": {"is_null": False}}, fields=["id", "service_record"])}
        missing = [r for r in recommending if r.record_id not in opened]
        rows = [{"name": r.sale_name, "business_type": "service_sale", "account": r.machine.account.id, "equipment": r.machine.id,
                 "service_record": r.record_id, "amount": r.values["estimated_value"],
                 "close_date": self._close_date(r).isoformat(), "owner_id": r.values["owner_id"], "org_unit_id": r.values["org_unit_id"]}
                for r in missing]
        for recommendation, made in zip(missing, self.gen.batches.create("opportunity", rows, "Service sales opened here")):
            opened[recommendation.record_id] = made["id"]
        process = self.gen.process("service_sale")
        for recommendation, journey in zip(recommending, outcomes_covering_every_stage(self.rng, process, len(recommending))):
            owner = {"owner_id": recommendation.values["owner_id"], "org_unit_id": recommendation.values["org_unit_id"]}
            self.deals.append(Deal(process, journey, self._close_date(recommendation), recommendation.sale_name,
                                   Decimal(recommendation.values["estimated_value"]), recommendation.machine.account, owner,
                                   opened[recommendation.record_id]))
        walk(self.gen.batches, "opportunity", self.deals, self.gen.today, self.rng, "Service sale stage moves")

    def _close_date(self, recommendation: Recommendation) -> date:
        served = date.fromisoformat(recommendation.values["service_date"])
        return max(served + timedelta(days=CLOSE_AFTER_SERVICE_DAYS), self.gen.today)
