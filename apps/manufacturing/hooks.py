"""Hooks of the manufacturing app.

After a service record is saved with a recommendation, a service sale opportunity is opened for the
equipment's account, owned by the service record's owner in its unit: one per service record at
most (a deleted one counts, so that it is not opened again). The platform opens it, in the save's
transaction: whoever records the service need not be allowed to create opportunities.

On the first install, the CRM's roles get grants on the equipment and service records.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from lowcode.metadata import SYSTEM_ACTOR

NO_RECOMMENDATION = "none"
DAYS_TO_CLOSE = 60

CRM_ROLE_GRANTS = {
    "crm_sales_rep": [
        ("equipment", ["read", "create", "update"], "own", "own"),
        ("service_record", ["read"], "own", "own"),
    ],
    "crm_sales_manager": [
        ("equipment", ["read", "create", "update", "export", "transfer"], "unit", "unit"),
        ("service_record", ["read", "export"], "unit", "unit"),
    ],
    "crm_regional_director": [
        ("equipment", ["read", "create", "update", "delete", "export", "transfer", "restore"], "unit_and_below", "unit_and_below"),
        ("service_record", ["read", "export"], "unit_and_below", "unit_and_below"),
    ],
    "crm_subsidiary_head": [
        ("equipment", ["read", "create", "update", "delete", "export", "transfer", "restore"], "unit_and_below", "unit_and_below"),
        ("service_record", ["read", "export"], "unit_and_below", "unit_and_below"),
    ],
    "crm_group_executive": [
        ("equipment", ["read", "export"], "all", "own"),
        ("service_record", ["read", "export"], "all", "own"),
    ],
}
"""What the CRM's roles may do with this app's records (the CRM administrator may do everything)."""


def register(hooks):
    hooks.after_save("service_record", open_service_sale)


def open_service_sale(context) -> None:
    record, records = context.record, context.records
    if record.get("recommendation") in (None, NO_RECOMMENDATION):
        return
    linked = {"service_record": {"eq": record["id"]}}
    for deleted in (False, True):
        if records.query(SYSTEM_ACTOR, "opportunity", filter=linked, first=1, fields=["id"], deleted=deleted).records:
            return
    equipment = records.get(SYSTEM_ACTOR, "equipment", record["equipment"], fields=["serial_number", "account"])
    recommendation = _label(context.obj.field("recommendation"), record["recommendation"])
    records.create(SYSTEM_ACTOR, "opportunity", {
        "business_type": "service_sale",
        "name": f"{recommendation} for {equipment['serial_number']}",
        "account": equipment["account"],
        "equipment": record["equipment"],
        "service_record": record["id"],
        "amount": record.get("estimated_value"),
        "close_date": _close_date(record["service_date"]).isoformat(),
        "owner_id": record["owner_id"],
        "org_unit_id": record["org_unit_id"],
    }, acknowledge=["POSSIBLE_DUPLICATE"])


def on_install(context) -> None:
    if context.upgrading_from is not None:
        return
    for role, grants in CRM_ROLE_GRANTS.items():
        for obj, actions, read_scope, write_scope in grants:
            context.security.set_object_grant(context.actor, role, obj, actions, read_scope, write_scope)


def _label(field, value: str) -> str:
    return next((v["label"] for v in field.options["values"] if v["api_name"] == value), value)


def _close_date(service_date: date) -> date:
    """Sixty days after the service, and never before today (UTC): the CRM refuses new opportunities
    closing in the past, and a service recorded late still deserves its follow-up."""
    return max(service_date + timedelta(days=DAYS_TO_CLOSE), datetime.now(timezone.utc).date())
