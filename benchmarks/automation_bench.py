"""Automation benchmark for benchmarks/run.py: what a duplicate rule and an assignment rule add to
creating one record, and the duplicates query, against hand-written SQL doing the same job on the
same database.

automation  --auto-rows leads (default 100,000) loaded through records.bulk_create before any rule
            exists, so creating the duplicate rule builds the match keys of every lead (timed). Then,
            in three phases, medians of --auto-runs (default 200) creates through the record
            service against raw SQL: (1) no automation vs one INSERT; (2) with the duplicate rule
            (phone as a phone number, email normalized, match any, warn) vs one SELECT of the two
            keys + INSERT of the record + INSERT of its keys; (3) with the duplicate rule and a
            round-robin assignment rule (8 users of a unit holding role sales) vs (2) + the cursor
            row read (FOR UPDATE on PostgreSQL) and updated + an UPDATE of the record's owner. In
            phase 2 also runtime.duplicates.duplicates(values={phone}) vs the key lookup joined to
            the record table. Statements per write counted with before_cursor_execute.

The data is loaded every run (the key build is one of the measures); the leads the timed runs
create are removed after each phase. Answers are checked: the duplicates query and the hand lookup
return the same record ids, a raw row equals the service's in every column the rules set, and the
round robin gave the 8 users equal turns over service and raw creates alike. See benchmarks/README.md.
"""
from __future__ import annotations

import json
import random
import statistics
import uuid
from collections import Counter
from datetime import datetime, timezone
from time import perf_counter

from bookings_bench import Hand, for_driver, plan_of, profile_requests
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.runtime.duplicates.normalize import keys as match_keys_of
from lowcode.runtime.records import new_record_id
from permissions_bench import capturing, ms, pct
from sqlalchemy import text

NAME = "automation"
SEED = 2026
REGIONS = ["north", "south", "east", "west", "central", "overseas"]
REPS = 8
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.cn"]
NEW = "New lead "
"""Name prefix of the leads the timed runs create (service and raw alike): removed after each phase."""

FIELDS = [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "company", "label": "Company", "type": "text"},
    {"api_name": "phone", "label": "Phone", "type": "phone"},
    {"api_name": "email", "label": "Email", "type": "email"},
    {"api_name": "region", "label": "Region", "type": "picklist",
     "options": {"values": [{"api_name": r, "label": r.title()} for r in REGIONS]}},
]
LEAD = {"api_name": "lead", "label": "Lead", "plural_api_name": "leads", "plural_label": "Leads", "fields": FIELDS}
DUPLICATE_RULE = {"api_name": "same_contact", "kind": "duplicate_rule", "label": "Same phone or email", "settings": {
    "match": "any", "fields": [{"field": "phone", "method": "phone"}, {"field": "email", "method": "normalized"}], "action": "warn"}}
ASSIGNMENT_RULE_NAME = "sales_turns"
COLUMNS = ("id", "owner_id", "org_unit_id", "business_type", "created_at", "created_by", "updated_at", "updated_by", "version",
           "deleted_at", "name", "company", "phone", "email", "region")
"""What the service's INSERT writes (the object has no stages)."""
RULE_SET = ("org_unit_id", "business_type", "created_by", "updated_by", "version", "deleted_at")
"""Columns a raw row must share with the service's (owners rotate, ids and times differ)."""


def digits_of(i):
    return f"139{i:08d}"


def stored_phone(i):
    """Phones stored in three formats, all one number for the phone method."""
    d = digits_of(i)
    return (f"+86 {d[:3]} {d[3:7]} {d[7:]}", f"{d[:3]}-{d[3:7]}-{d[7:]}", d)[i % 3]


def lead_values(i, rnd, owners):
    return {"name": f"Lead {i:06d}", "company": f"{rnd.choice(COMPANIES)} {rnd.randint(1, 999)}", "phone": stored_phone(i),
            "email": f"lead{i}@{DOMAINS[i % len(DOMAINS)]}", "region": rnd.choice(REGIONS), "owner_id": owners[i % len(owners)]}


def new_values(n):
    """The n-th lead a timed run creates: a phone and an email no other lead has."""
    return {"name": f"{NEW}{n}", "company": "Newco", "phone": f"150{n:08d}", "email": f"new{n}@bench.example", "region": REGIONS[n % 6]}


# -- hand SQL ------------------------------------------------------------------------------------
DUPLICATE_SQL = (
    "SELECT k.record_id FROM lc_duplicate_key k JOIN obj_lead r ON r.id = k.record_id AND r.deleted_at IS NULL "
    "WHERE k.object_api_name = 'lead' AND k.field = 'phone' AND k.method = 'phone' AND k.\"key\" = :phone UNION ALL "
    "SELECT k.record_id FROM lc_duplicate_key k JOIN obj_lead r ON r.id = k.record_id AND r.deleted_at IS NULL "
    "WHERE k.object_api_name = 'lead' AND k.field = 'email' AND k.method = 'normalized' AND k.\"key\" = :email LIMIT 50")
"""The write's duplicate check: live leads holding either key, in one statement. (An OR of the two
keys under one SELECT lets SQLite's planner scan all the object's keys: 1 ms at 5,000 leads.)"""
INSERT_SQL = f"INSERT INTO obj_lead ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"
KEYS_SQL = ("INSERT INTO lc_duplicate_key (object_api_name, field, method, \"key\", record_id, size) VALUES "
            "('lead', 'email', 'normalized', :email_key, :id, 1), ('lead', 'phone', 'phone', :phone_key, :id, 1)")
CURSOR_SQL = ("SELECT last_user_id, counter FROM lc_assignment_cursor WHERE object_api_name = 'lead' AND rule = :rule "
              "AND entry = '0'")
CURSOR_UPDATE_SQL = ("UPDATE lc_assignment_cursor SET last_user_id = :user, counter = :counter, updated_at = :now "
                     "WHERE object_api_name = 'lead' AND rule = :rule AND entry = '0'")
OWNER_SQL = "UPDATE obj_lead SET owner_id = :owner, org_unit_id = :unit, version = 2, updated_at = :now WHERE id = :id"
MEMBERS_SQL = (
    "SELECT DISTINCT u.id, u.username, u.active FROM lc_membership m JOIN obj_user u ON u.id = m.user_id "
    "JOIN obj_org_unit o ON o.id = m.unit_id WHERE u.deleted_at IS NULL AND o.deleted_at IS NULL AND o.id = :unit "
    "AND m.role_name = 'sales'")
HISTORY_SQL = (
    "INSERT INTO lc_field_history (object_api_name, record_id, field_api_name, event, old_value, new_value, actor_id, at) "
    "VALUES ('lead', :id, 'owner_id', 'transferred', NULL, :owner, NULL, :now), "
    "('lead', :id, 'org_unit_id', 'transferred', NULL, :unit, NULL, :now)")
NOTIFY_SQL = (
    "INSERT INTO lc_notification (id, user_id, kind, title, body, object_api_name, record_id, created_at, dedupe_key) "
    "VALUES (:nid, :user, 'assignment.assigned', 'A Lead record was assigned to you', "
    "'The assignment rule ''Sales turns'' gave you this record.', 'lead', :id, :now, :key) "
    "ON CONFLICT (user_id, dedupe_key) DO NOTHING")
LOOKUP_SQL = (
    "SELECT r.id, r.owner_id, u.full_name, u.username, r.name, r.company, r.phone, r.email, r.region "
    "FROM lc_duplicate_key k JOIN obj_lead r ON r.id = k.record_id AND r.deleted_at IS NULL "
    "LEFT JOIN obj_user u ON u.id = r.owner_id "
    "WHERE k.object_api_name = 'lead' AND k.field = 'phone' AND k.method = 'phone' AND k.\"key\" = :key ORDER BY r.id LIMIT 50")
"""The duplicates query by hand: the key of the phone (normalized in Python), the live leads holding
it with their fields and their owner's name."""


class Raw(Hand):
    """One write transaction through the DBAPI connection of a pooled connection (checkout and its
    ping included): ``BEGIN IMMEDIATE`` on SQLite (as the platform's writers), the statements, COMMIT."""

    def write(self, work):
        raw = self.engine.raw_connection()
        driver = raw.driver_connection
        cur = driver.cursor()
        sent = [0]

        def run(sql, params):
            sent[0] += 1
            cur.execute(for_driver(sql, self.postgres), {k: self.value(v) for k, v in params.items()})
            return cur.fetchall() if cur.description else []

        try:
            if not self.postgres:
                run("BEGIN IMMEDIATE", {})
            work(run)
            driver.commit()
            return sent[0]
        except Exception:
            driver.rollback()
            raise
        finally:
            cur.close()
            raw.close()


def key_of(method, value):
    return next(iter(match_keys_of(method, value)))


class RawLeads:
    """The three hand-written writes; ``members`` are the round robin's users in turn order (read
    once: the hand code knows the group)."""

    def __init__(self, raw, members, unit, turns=None):
        self.raw, self.members, self.unit = raw, members, unit
        self.turns = turns  # the assignment rule's name once it exists

    def _insert(self, run, values, now):
        row = {c: None for c in COLUMNS}
        row.update(values, id=uuid.UUID(new_record_id()), created_at=now, updated_at=now, version=1)
        run(INSERT_SQL, row)
        return row["id"]

    def plain(self, values):
        now = datetime.now(timezone.utc)
        return self.raw.write(lambda run: self._insert(run, values, now))

    def checked(self, run, values, now):
        keys = {"phone": key_of("phone", values["phone"]), "email": key_of("normalized", values["email"])}
        if run(DUPLICATE_SQL, keys):
            raise AssertionError(f"the hand check found a duplicate of {values}")
        record_id = self._insert(run, values, now)
        run(KEYS_SQL, {"id": record_id, "phone_key": keys["phone"], "email_key": keys["email"]})
        return record_id

    def duplicate_checked(self, values):
        now = datetime.now(timezone.utc)
        return self.raw.write(lambda run: self.checked(run, values, now))

    def assigned(self, values, everything=False):
        """``everything``: also what the platform does beyond the brief's raw job (the group's members
        read, the two transfer history rows and the new owner's notification), for scale."""
        now = datetime.now(timezone.utc)

        def work(run):
            record_id = self.checked(run, values, now)
            ids = self.members
            if everything:
                found = run(MEMBERS_SQL, {"unit": uuid.UUID(self.unit)})
                ids = [str(uuid.UUID(str(i))) for i, _ in sorted(((i, n) for i, n, active in found if active),
                                                                  key=lambda r: (r[1] or "", str(uuid.UUID(str(r[0])))))]
            lock = " FOR UPDATE" if self.raw.postgres else ""  # SQLite: BEGIN IMMEDIATE holds the write lock
            last, counter = run(CURSOR_SQL + lock, {"rule": self.turns})[0]
            last = None if last is None else str(uuid.UUID(str(last)))
            chosen = ids[(ids.index(last) + 1) % len(ids)] if last in ids else ids[0]
            run(CURSOR_UPDATE_SQL, {"user": uuid.UUID(chosen), "counter": counter + 1, "now": now, "rule": self.turns})
            run(OWNER_SQL, {"owner": uuid.UUID(chosen), "unit": uuid.UUID(self.unit), "now": now, "id": record_id})
            if everything:
                run(HISTORY_SQL, {"id": record_id, "owner": json.dumps(chosen), "unit": json.dumps(self.unit), "now": now})
                run(NOTIFY_SQL, {"nid": uuid.uuid4(), "user": uuid.UUID(chosen), "id": record_id, "now": now,
                                 "key": f"assignment:lead:{record_id}:2"})

        return self.raw.write(work)


# -- the benchmark -----------------------------------------------------------------------------------
def load(rt, report, backend, args):
    """Unit, role and 8 reps; the leads through bulk_create (owned by the reps in turn); ANALYZE."""
    S, rnd = SYSTEM_ACTOR, random.Random(SEED)
    t0 = perf_counter()
    rt.metadata.create_objects(S, [LEAD])
    sec = rt.security
    unit = sec.create_unit(S, "Sales")["id"]
    sec.create_role(S, "sales", "Sales")
    reps = []
    for i in range(REPS):
        user = sec.create_user(S, {"username": f"rep{i + 1:02d}", "full_name": f"Rep {i + 1}"})
        sec.add_membership(S, user["id"], unit, "sales")
        reps.append(user["id"])
    t1 = perf_counter()
    for start in range(0, args.auto_rows, args.auto_chunk):
        rt.records.bulk_create(S, "lead", [lead_values(i, rnd, reps) for i in range(start, min(start + args.auto_chunk, args.auto_rows))])
    t2 = perf_counter()
    analyze(rt, backend)
    report.add(NAME, backend, "load: leads through bulk_create", t2 - t1, "s",
               f"{args.auto_rows:,} leads, {args.auto_chunk:,} a call, {args.auto_rows / (t2 - t1):,.0f}/s; object, unit, "
               f"role and {REPS} users {t1 - t0:.1f} s")
    return unit, reps


def analyze(rt, backend):
    """Statistics for the planner (and on PostgreSQL a checkpoint) before the timed runs."""
    if backend == "postgresql":
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE obj_lead")
            conn.exec_driver_sql("VACUUM ANALYZE lc_duplicate_key")
            try:  # written pages out now, not during the timed runs (superuser or pg_checkpoint)
                conn.exec_driver_sql("CHECKPOINT")
            except Exception as exc:
                print(f"  (no CHECKPOINT: {type(exc).__name__})", flush=True)
    else:
        with rt.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def remove_new(rt):
    """The leads the timed runs made, with their keys, history and notifications."""
    made, new = "SELECT id FROM obj_lead WHERE name LIKE :new", {"new": NEW + "%"}
    with rt.engine.begin() as conn:
        for table in ("lc_duplicate_key", "lc_field_history", "lc_notification"):
            conn.execute(text(f"DELETE FROM {table} WHERE record_id IN ({made})"), new)
        return conn.execute(text("DELETE FROM obj_lead WHERE name LIKE :new"), new).rowcount


def counted(rt, call):
    """Statements the engine sends during ``call`` (and the statements themselves)."""
    with capturing(rt.engine) as seen:
        call()
    return len(seen), [s for s, _ in seen]


def interleaved(runs, warmup, sides):
    """Each side once per run, in turn; the samples after the warm-up."""
    samples = {name: [] for name in sides}
    for run in range(warmup + runs):
        for name, call in sides.items():
            t = perf_counter()
            call()
            if run >= warmup:
                samples[name].append(perf_counter() - t)
    return samples


def bench_automation(rt, backend, report, args):
    S = SYSTEM_ACTOR
    unit, reps = load(rt, report, backend, args)
    raw = Raw(rt.engine)
    with rt.engine.connect() as conn:
        usernames = dict(conn.exec_driver_sql("SELECT id, username FROM obj_user").all())
    members = [str(uuid.UUID(str(i))) for i, _ in sorted(usernames.items(), key=lambda item: (item[1] or "", str(uuid.UUID(str(item[0])))))
               if str(uuid.UUID(str(i))) in reps]
    hand = RawLeads(raw, members, unit)
    numbers = iter(range(10**8))

    def service():
        rt.records.create(S, "lead", new_values(next(numbers)))

    runs, warmup = args.auto_runs, args.auto_warmup

    def summary(label, service_side, raw_side, samples, statements, raw_note=""):
        s, r = statistics.median(samples[service_side]), statistics.median(samples[raw_side])
        report.add(NAME, backend, f"{label}: records.create", ms(s), "ms",
                   f"median of {runs}, p90 {ms(pct(samples[service_side], 90)):.2f} ms; {statements[0]} statements")
        report.add(NAME, backend, f"{label}: raw SQL", ms(r), "ms",
                   f"p90 {ms(pct(samples[raw_side], 90)):.2f} ms; {statements[1]} statements{raw_note}")
        report.add(NAME, backend, f"{label}: ratio service / raw", s / r, "x")

    # 1. no automation: the service's create against one INSERT
    service()  # the catalog is loaded
    plain_statements = counted(rt, lambda: service())[0]
    raw_plain = hand.plain(new_values(next(numbers)))
    samples = interleaved(runs, warmup, {"service": service, "raw": lambda: hand.plain(new_values(next(numbers)))})
    summary("1 no automation", "service", "raw", samples, (plain_statements, raw_plain))
    remove_new(rt)

    # the duplicate rule: builds the keys of every lead
    t = perf_counter()
    rt.metadata.create_automation(S, "lead", DUPLICATE_RULE)
    rule_s = perf_counter() - t
    with rt.engine.connect() as conn:
        built = conn.exec_driver_sql("SELECT count(*) FROM lc_duplicate_key").scalar_one()
    report.add(NAME, backend, "create the duplicate rule (builds the keys)", rule_s, "s",
               f"{built:,} keys for {args.auto_rows:,} leads, {args.auto_rows / rule_s:,.0f} leads/s")
    analyze(rt, backend)

    # 2. with the duplicate rule; and the duplicates query
    service()  # the catalog is loaded again after the metadata change
    dup_statements = counted(rt, lambda: service())[0]
    raw_dup = hand.duplicate_checked(new_values(next(numbers)))
    probe = args.auto_rows // 2
    asked = f"0086 {digits_of(probe)}"  # the stored phone in another format
    phone_key = key_of("phone", asked)

    def duplicates():
        return [m["record_id"] for m in rt.duplicates.duplicates(S, "lead", values={"phone": asked})]

    lookup = for_driver(LOOKUP_SQL, raw.postgres)

    def by_hand():
        return [str(uuid.UUID(str(row[0]))) for row in raw.run(lookup, {"key": phone_key})]

    with rt.engine.connect() as conn:
        expected = [str(uuid.UUID(str(conn.execute(text("SELECT id FROM obj_lead WHERE name = :name"),
                                                   {"name": f"Lead {probe:06d}"}).scalar_one())))]
    query_statements = counted(rt, duplicates)[0]
    found = {"service": duplicates(), "raw": by_hand()}
    assert found["service"] == found["raw"] == expected, f"duplicates differ: {found}, expected {expected}"
    samples = interleaved(runs, warmup, {"service": service, "raw": lambda: hand.duplicate_checked(new_values(next(numbers))),
                                         "query": duplicates, "hand query": by_hand})
    _, check_plan = plan_of(raw, for_driver(DUPLICATE_SQL, raw.postgres),
                            {"phone": key_of("phone", new_values(1)["phone"]), "email": key_of("normalized", new_values(1)["email"])})
    summary("2 duplicate rule", "service", "raw", samples, (dup_statements, raw_dup), f"; check's plan: {check_plan}")
    q, h = statistics.median(samples["query"]), statistics.median(samples["hand query"])
    report.add(NAME, backend, "4 duplicates query (values: phone)", ms(q), "ms",
               f"median of {runs}, p90 {ms(pct(samples['query'], 90)):.2f} ms; {query_statements} statements; "
               f"found {len(found['service'])} lead, the same as by hand")
    _, lookup_plan = plan_of(raw, lookup, {"key": phone_key})
    report.add(NAME, backend, "4 hand key lookup joined to the leads", ms(h), "ms",
               f"p90 {ms(pct(samples['hand query'], 90)):.2f} ms; plan: {lookup_plan}")
    report.add(NAME, backend, "4 ratio service / hand", q / h, "x")
    if args.profile:
        profile_requests(backend, [("records.create with the duplicate rule", service), ("duplicates query", duplicates)],
                         args.auto_profile_runs)
    remove_new(rt)

    # 3. with the duplicate and the assignment rule
    rt.metadata.create_automation(S, "lead", {"api_name": ASSIGNMENT_RULE_NAME, "kind": "assignment_rule", "label": "Sales turns",
                                              "settings": {"entries": [{"method": "round_robin",
                                                                        "group": {"unit": unit, "role": "sales"}}]}})
    hand.turns = ASSIGNMENT_RULE_NAME
    service()  # the first turn makes the cursor row
    both_statements, both_sql = counted(rt, lambda: service())
    raw_both = hand.assigned(new_values(next(numbers)))
    raw_all = hand.assigned(new_values(next(numbers)), everything=True)
    samples = interleaved(runs, warmup, {"service": service, "raw": lambda: hand.assigned(new_values(next(numbers))),
                                         "raw all": lambda: hand.assigned(new_values(next(numbers)), everything=True)})
    summary("3 duplicate + assignment rules", "service", "raw", samples, (both_statements, raw_both))
    a = statistics.median(samples["raw all"])
    report.add(NAME, backend, "3 for scale: raw SQL + members read, history, notification", ms(a), "ms",
               f"p90 {ms(pct(samples['raw all'], 90)):.2f} ms; {raw_all} statements; service / it: "
               f"{statistics.median(samples['service']) / a:.2f}x")
    with rt.engine.connect() as conn:
        new = {"new": NEW + "%"}
        rows = conn.execute(text(f"SELECT {', '.join(COLUMNS)} FROM obj_lead WHERE name LIKE :new"), new).all()
        key_counts = Counter(r[0] for r in conn.execute(text(
            "SELECT k.record_id FROM lc_duplicate_key k JOIN obj_lead r ON r.id = k.record_id WHERE r.name LIKE :new"), new))
    made = [dict(zip(COLUMNS, row)) for row in rows]
    turns = Counter(str(uuid.UUID(str(r["owner_id"]))) for r in made)
    shapes = {tuple(r[c] for c in RULE_SET) for r in made}
    assert len(shapes) == 1, f"raw and service rows differ in {RULE_SET}: {shapes}"
    assert set(key_counts.values()) == {2} and len(key_counts) == len(made), "every new lead has its two keys"
    assert set(turns) == set(members) and max(turns.values()) - min(turns.values()) <= 1, f"unequal turns: {turns}"
    report.add(NAME, backend, "same work", "yes", "",
               f"the duplicates query and the hand lookup found the same lead; {len(made)} leads made in phase 3 (service and "
               f"raw) share {dict(zip(RULE_SET, next(iter(shapes))))} and have 2 keys each; turns per user "
               f"{min(turns.values())}-{max(turns.values())}")
    if args.profile:
        profile_requests(backend, [("records.create with both rules", service)], args.auto_profile_runs)
    remove_new(rt)

    # 5. statements per write
    report.add(NAME, backend, "5 statements per write, duplicate rule", dup_statements, "",
               f"raw {raw_dup}; no automation: {plain_statements} (raw {raw_plain})")
    report.add(NAME, backend, "5 statements per write, both rules", both_statements, "",
               f"raw {raw_both}; raw with the platform's extra reads and writes {raw_all}")
    print(f"  [{backend}] statements of one create with both rules:", flush=True)
    for statement in both_sql:
        print("    " + " ".join(statement.split())[:150], flush=True)
