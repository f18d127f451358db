"""Hooks of the media app: bookings are priced from their resource, and only resources in service
take new or revived bookings."""
from __future__ import annotations

from decimal import Decimal

from lowcode.metadata import SYSTEM_ACTOR
from lowcode.metadata.errors import FieldError, ValidationFailed

ACTIVE = ("hold", "confirmed")
IN_SERVICE = "active"


def register(hooks):
    hooks.before_save("media_booking", price_and_check_resource)


def price_and_check_resource(context) -> None:
    record, old = context.record, context.old
    if not record.get("resource"):
        return
    takes_days = record.get("status") in ACTIVE and (
        old is None or old.get("resource") != record["resource"] or old.get("status") not in ACTIVE)
    unpriced = record.get("amount") is None and record.get("start_date") and record.get("end_date")
    if not takes_days and not unpriced:
        return
    resource = context.records.get(SYSTEM_ACTOR, "media_resource", record["resource"], fields=["status", "daily_price"])
    if takes_days and resource["status"] != IN_SERVICE:
        raise ValidationFailed.of([FieldError("RESOURCE_UNAVAILABLE", "resource",
                                              f"the resource is {resource['status']}; only resources in service take bookings")])
    if unpriced and record["end_date"] >= record["start_date"]:
        days = (record["end_date"] - record["start_date"]).days + 1
        record["amount"] = Decimal(resource["daily_price"]) * days
