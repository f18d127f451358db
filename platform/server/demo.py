"""A guided walk-through on a fresh (or existing) database, used by ``lowcode demo``."""
from __future__ import annotations

import json
from typing import Callable

from ..metadata.actors import SYSTEM_ACTOR
from ..metadata.errors import LowcodeError
from ..runtime import Runtime

ACCOUNT = {
    "api_name": "demo_account", "label": "Account", "plural_label": "Accounts",
    "fields": [
        {"api_name": "name", "label": "Account name", "type": "text", "required": True, "unique": True},
        {"api_name": "grade", "label": "Grade", "type": "picklist", "options": {"values": [
            {"api_name": "a", "label": "A"}, {"api_name": "b", "label": "B"}, {"api_name": "c", "label": "C"}]}},
        {"api_name": "location", "label": "Location", "type": "geolocation"},
    ],
}
OPPORTUNITY = {
    "api_name": "demo_opportunity", "label": "Opportunity", "plural_api_name": "demo_opportunities",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text", "required": True},
        {"api_name": "number", "label": "Number", "type": "auto_number", "options": {"format": "OPP-{YYYY}-{0000}"}},
        {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "demo_account", "on_delete": "restrict"}},
        {"api_name": "amount", "label": "Amount", "type": "currency", "tracked": True},
        {"api_name": "close_date", "label": "Close date", "type": "date"},
    ],
}


def run_demo(rt: Runtime, say: Callable[[str], None]) -> None:
    catalog = rt.catalog()
    if "demo_opportunity" in catalog.objects:
        rt.metadata.delete_object(SYSTEM_ACTOR, "demo_opportunity")
    if "demo_account" in catalog.objects:
        rt.metadata.delete_object(SYSTEM_ACTOR, "demo_account")

    say("1. Define two objects, Account and Opportunity (each becomes a real table).")
    rt.metadata.create_objects(SYSTEM_ACTOR, [ACCOUNT, OPPORTUNITY])
    say("2. Add a field to Opportunity while it runs: a picklist 'priority' with a default.")
    rt.metadata.create_field(SYSTEM_ACTOR, "demo_opportunity", {
        "api_name": "priority", "label": "Priority", "type": "picklist", "default": "normal",
        "options": {"values": [{"api_name": "low", "label": "Low"}, {"api_name": "normal", "label": "Normal"},
                               {"api_name": "high", "label": "High"}]},
    })
    say("3. Create records.")
    accounts = rt.records.bulk_create(SYSTEM_ACTOR, "demo_account", [
        {"name": "Shaangu Group", "grade": "a", "location": {"latitude": 34.27, "longitude": 108.95}},
        {"name": "East China Media", "grade": "b"},
    ])
    rt.records.bulk_create(SYSTEM_ACTOR, "demo_opportunity", [
        {"name": "Compressor retrofit", "account": accounts[0]["id"], "amount": "1250000.00", "close_date": "2026-12-20", "priority": "high"},
        {"name": "Service contract", "account": accounts[0]["id"], "amount": 380000, "close_date": "2027-01-15"},
        {"name": "Outdoor screens Q1", "account": accounts[1]["id"], "amount": "96000.50", "close_date": "2027-02-01"},
    ])
    say("4. Bad input is refused with every problem listed, and nothing is written:")
    try:
        rt.records.create(SYSTEM_ACTOR, "demo_opportunity", {"name": "", "amount": "lots", "priority": "urgent", "colour": "red"})
    except LowcodeError as error:
        say(json.dumps(error.as_dict(), indent=2, ensure_ascii=False))
    say("5. Query: opportunities of grade-A accounts over 300,000, largest first.")
    page = rt.records.query(SYSTEM_ACTOR, "demo_opportunity",
                            filter={"account": {"grade": {"eq": "a"}}, "amount": {"gt": 300000}},
                            order_by=["-amount"], fields=["number", "name", "amount", "priority"], total=True)
    for record in page.records:
        say(f"   {record['number']}  {record['name']:<22} {record['amount']:>14}  {record['priority']}")
    say(f"   {page.total_count} match.")
    say("Try it yourself: lowcode record list demo_opportunity --order-by -amount")
    say("Or through GraphQL: create an administrator (lowcode user create admin --admin), lowcode serve,")
    say("sign in (POST http://127.0.0.1:8000/auth/sign-in), open http://127.0.0.1:8000/graphql with the token and ask")
    say("  { demoOpportunities(orderBy: [AMOUNT_DESC]) { nodes { name amount account { name } } } }")
