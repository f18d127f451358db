"""``lowcode demo``: a group company's CRM on an embedded SQLite database, built from scratch.

It installs the crm, manufacturing and media apps, builds the
group's org tree and people (demo_company), generates the records of every app through the
record service (demo_data, demo_equipment, demo_media), routes new leads by region
(demo_automation) and issues API tokens for users of different reach, whose GraphiQL headers it
prints.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..metadata.actors import SYSTEM_ACTOR
from ..runtime import Runtime
from .demo_automation import configure_automation
from .demo_batches import Batches, Progress, silent_progress
from .demo_company import DEMO_PASSWORD, FEATURED, PEOPLE, UNITS, build_company
from .demo_data import CrmData, Generation
from .demo_equipment import EquipmentData
from .demo_media import MediaData
from .demo_volumes import Volumes

DEMO_APPS = ("crm", "manufacturing", "media")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class DemoUser:
    reach: str
    username: str
    full_name: str
    sees: str
    token: str


@dataclass
class DemoResult:
    database_url: str
    installed_apps: list[str]
    units: int
    users: int
    memberships: int
    counts: dict[str, int]
    """Live records per object."""
    featured: list[DemoUser]
    seconds: float


def remove_database(path: Path) -> bool:
    """Delete the SQLite file and its journal files; whether there was one."""
    existed = path.exists()
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        candidate.unlink(missing_ok=True)
    return existed


def build_demo(path: Path, *, scale: float, seed: int, progress: Progress = silent_progress) -> DemoResult:
    """Build the demo database at ``path`` (which must not hold a database yet)."""
    started = time.monotonic()
    url = f"sqlite:///{path.resolve()}"
    runtime = Runtime.connect(url).install()
    try:
        with progress("Installing apps", len(DEMO_APPS)) as bar:
            for name in DEMO_APPS:
                runtime.apps.install_app(SYSTEM_ACTOR, name)
                bar.update(1)
        roles = {role["name"] for role in runtime.security.roles(SYSTEM_ACTOR)}
        with progress("Org units and people", len(UNITS) + len(PEOPLE)) as bar:
            company = build_company(runtime.security, roles, bar.update)
        volumes = Volumes.at(scale)
        batches = Batches(runtime.records, progress)
        gen = Generation(random.Random(seed), datetime.now(timezone.utc).date(), batches, company, runtime.catalog())
        crm = CrmData(gen, volumes)
        crm.make_partners_and_competitors()
        crm.make_accounts()
        crm.make_contacts()
        crm.make_leads()
        crm.make_opportunities()
        deals = list(crm.deals)
        equipment = EquipmentData(gen, volumes, crm)
        equipment.make_equipment()
        equipment.make_service_records()
        deals += equipment.deals
        media = MediaData(gen, volumes, crm)
        media.make_resources()
        media.make_bookings()
        crm.make_contracts(deals)
        crm.make_activities()
        crm.make_tasks()
        configure_automation(runtime, company)
        featured = []
        for reach, username, sees in FEATURED:
            user = company.users[username]
            token = runtime.security.issue_token(SYSTEM_ACTOR, "lowcode demo", user_id=user["id"])["token"]
            featured.append(DemoUser(reach, username, user["full_name"], sees, token))
        return DemoResult(url, list(DEMO_APPS), len(UNITS), len(company.users),
                          company.memberships, record_counts(runtime), featured, time.monotonic() - started)
    finally:
        runtime.close()


def record_counts(runtime: Runtime) -> dict[str, int]:
    """The live records of every app object."""
    return {obj.api_name: runtime.records.query(SYSTEM_ACTOR, obj.api_name, first=0, total=True).total_count
            for obj in runtime.catalog().objects.values() if not obj.system}


def summary(result: DemoResult) -> list[str]:
    """What the demo built, as lines to print."""
    lines = [f"Built {result.database_url} in {result.seconds:.1f} s: apps {', '.join(result.installed_apps)}; "
             f"{result.units} org units, {result.users} users, {result.memberships} memberships."]
    lines.append("Records: " + ", ".join(f"{count} {name}" for name, count in sorted(result.counts.items())) + ".")
    return lines


def user_lines(result: DemoResult, base_url: str) -> list[str]:
    """The featured users with their tokens, and how to use them in GraphiQL."""
    lines = [f"GraphiQL: {base_url}/graphql  (paste a user's headers below into its Headers tab)", ""]
    for user in result.featured:
        lines += [f"{user.reach:<14} {user.username} ({user.full_name}): {user.sees}",
                  f"{'':<14} {json.dumps({'Authorization': f'Bearer {user.token}'})}"]
    lines += ["", f"These users also sign in with the password '{DEMO_PASSWORD}' (POST {base_url}/auth/sign-in); "
              "any other user gets a token with",
              f"  lowcode --database-url {result.database_url} user token <username> --name demo"]
    return lines
