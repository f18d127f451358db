"""The demo's automation that needs its people: new leads go by their region to the sales reps of
the region's units, in turn. (What needs no org, such as approvals, reminders, duplicate rules and
the win announcement, comes with the CRM app.) Set up after the generated leads exist, so that only
leads created in the running demo are assigned."""
from __future__ import annotations

from ..metadata.actors import SYSTEM_ACTOR
from .demo_company import REP, Company

LEAD_REGIONS = {"north": "mach_north", "northeast": "mach_north", "east": "mach_east", "southwest": "mach_sw",
                "south": "media_south", "central": "dig_central", "northwest": "dig_north"}
"""Lead region picklist values → the unit whose reps take those leads (others go to Machinery)."""


def configure_automation(runtime, company: Company) -> None:
    units = company.units
    runtime.metadata.create_automation(SYSTEM_ACTOR, "lead", {
        "api_name": "lead_routing", "kind": "assignment_rule", "label": "Leads by region",
        "settings": {"entries": [{
            "method": "region", "field": "region", "include_below": True, "role": REP,
            "regions": {value: units[key]["id"] for value, key in LEAD_REGIONS.items()},
            "fallback_unit": units["machinery"]["id"]}]}})
