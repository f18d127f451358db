"""Bookings benchmark for benchmarks/run.py: a booking rule's availability and occupancy queries and
the creation of one booking through GraphQL, against hand-written SQL on the same database.

bookings  --booking-resources screens (default 2,000), each with --booking-days bookings (default 120)
          laid over two years, made through records.bulk_create. Medians of: slotsAvailability for a
          14-day window (first 100 free screens) against NOT EXISTS written by hand; slotsOccupancy of
          one quarter over the 500 screens of a city against one GROUP BY by hand; createSlot (the
          service's overlap check, then the database's guard) against a raw INSERT of the same row.

SQLite builds its data every run (a temporary file); on PostgreSQL the data is kept (a marker table
records how it was made) unless the parameters differ or --booking-rebuild is given. Every GraphQL
answer is compared with the hand SQL's, and both with figures computed in Python from the stored
bookings; a difference stops the benchmark. See benchmarks/README.md.
"""
from __future__ import annotations

import cProfile
import io
import itertools
import json
import pstats
import random
import re
import statistics
import uuid
from datetime import date, datetime, timedelta, timezone
from time import perf_counter

from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.runtime import Runtime
from lowcode.runtime.reading import Selection, Window
from lowcode.server.app import Settings, create_app
from permissions_bench import capturing, ms, pct, stored_params

NAME = "bookings"
MARKER = "bench_bookings_marker"
DATA_FORMAT = 1
"""Raised when the generated data changes shape, so that old databases are rebuilt."""
TOKEN = "bench-bookings-token"
SEED = 2025
FIRST_DAY, SPAN_DAYS = date(2025, 1, 1), 730
IDLE_STRETCHES, IDLE_DAYS = 3, (20, 90)
"""Per screen, stretches of days without any booking (maintenance, off season)."""
STATES = [("confirmed", 0.55), ("hold", 0.35), ("cancelled", 0.10)]
ACTIVE = ("hold", "confirmed")
DELETED_EVERY = 500
"""Every 500th booking goes to the recycle bin (through records.delete)."""
LOAD_CHUNK = 250
"""Bookings per bulk_create call: its in-batch overlap check compares every pair (see the README)."""
SCREENS_PER_CITY = 500
CITIES = ["Lisbon", "Porto", "Madrid", "Vienna", "Oslo", "Dublin", "Zurich", "Berlin"]
WINDOW = (date(2025, 10, 6), date(2025, 10, 19))
QUARTER = (date(2025, 7, 1), date(2025, 9, 30))
NEW_BOOKINGS_FROM = date(2030, 1, 1)
"""The bookings the creation measure makes start here, after all others; they are removed afterwards."""
PAGE = 100

SCREEN = {"api_name": "screen", "label": "Screen", "plural_api_name": "screens", "plural_label": "Screens", "fields": [
    {"api_name": "code", "label": "Code", "type": "text", "required": True, "unique": True},
    {"api_name": "city", "label": "City", "type": "text", "indexed": True},
]}
SLOT = {"api_name": "slot", "label": "Slot", "plural_api_name": "slots", "plural_label": "Slots", "fields": [
    {"api_name": "screen", "label": "Screen", "type": "lookup", "options": {"target": "screen", "on_delete": "restrict"}},
    {"api_name": "first_day", "label": "First day", "type": "date", "required": True},
    {"api_name": "last_day", "label": "Last day", "type": "date", "required": True},
    {"api_name": "state", "label": "State", "type": "picklist", "options": {"values": [
        {"api_name": s, "label": s.title()} for s, _ in STATES]}},
]}
RULE = {"api_name": "screen_slots", "label": "Screen slots", "resource_field": "screen", "start_field": "first_day",
        "end_field": "last_day", "status_field": "state", "active_values": list(ACTIVE)}

AVAILABILITY = (f"query Free($from: Date!, $to: Date!) {{ slotsAvailability(from: $from, to: $to, first: {PAGE}) "
                "{ nodes { id code } pageInfo { hasNextPage } } }")
OCCUPANCY = ("query Quarter($from: Date!, $to: Date!, $city: String!) { slotsOccupancy(from: $from, to: $to, "
             "filter: {city: {eq: $city}}) { resourceId month days bookedDays } }")
CREATE = "mutation Book($input: SlotCreateInput!) { createSlot(input: $input) { id } }"

HELD_BY = "b.deleted_at IS NULL AND b.state IN ('hold', 'confirmed')"
"""Active bookings, as the rule says (a non-null screen and days follow from the join and the range test)."""
HELD_BY_GUARD = HELD_BY + " AND b.screen IS NOT NULL AND b.first_day IS NOT NULL AND b.last_day IS NOT NULL"
"""The exclusion constraint's own predicate, spelt out so that PostgreSQL may use its GiST index."""
AVAILABILITY_SQL = {  # (databases, form): SQL; :from and :to are the window's days; a page and one more
    ("both", "NOT EXISTS, day comparison"):
        "SELECT r.id, r.code FROM obj_screen r WHERE r.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM obj_slot b "
        f"WHERE b.screen = r.id AND {HELD_BY} AND b.first_day <= :to AND b.last_day >= :from) ORDER BY r.id LIMIT {PAGE + 1}",
    ("postgresql", "NOT EXISTS, daterange &&"):
        "SELECT r.id, r.code FROM obj_screen r WHERE r.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM obj_slot b "
        f"WHERE b.screen = r.id AND {HELD_BY_GUARD} AND daterange(b.first_day, b.last_day, '[]') "
        f"&& daterange(:from, :to, '[]')) ORDER BY r.id LIMIT {PAGE + 1}",
    ("postgresql", "NOT IN (booked), daterange &&"):
        "SELECT r.id, r.code FROM obj_screen r WHERE r.deleted_at IS NULL AND r.id NOT IN (SELECT b.screen FROM obj_slot b "
        f"WHERE {HELD_BY_GUARD} AND daterange(b.first_day, b.last_day, '[]') && daterange(:from, :to, '[]')) "
        f"ORDER BY r.id LIMIT {PAGE + 1}",
}
PG_DAYS = "least(b.last_day, m.last_day) - greatest(b.first_day, m.first_day) + 1"
SQLITE_DAYS = "julianday(min(b.last_day, m.last_day)) - julianday(max(b.first_day, m.first_day)) + 1"
OCCUPANCY_SQL = {  # (databases, form): per screen of :city and month from :from to :to; {months}: (first, last) days
    ("postgresql", "LEFT JOIN, day comparison"):
        "WITH m(first_day, last_day) AS (VALUES {months}) SELECT r.id, m.first_day, m.last_day - m.first_day + 1, "
        f"coalesce(sum({PG_DAYS}) FILTER (WHERE b.id IS NOT NULL), 0) "  # least and greatest skip nulls
        f"FROM obj_screen r CROSS JOIN m LEFT JOIN obj_slot b ON b.screen = r.id AND {HELD_BY} "
        "AND b.first_day <= m.last_day AND b.last_day >= m.first_day "
        "WHERE r.deleted_at IS NULL AND r.city = :city GROUP BY r.id, m.first_day, m.last_day ORDER BY r.id, m.first_day",
    ("postgresql", "GiST: the quarter's bookings grouped, then the screens"):
        "WITH m(first_day, last_day) AS (VALUES {months}), booked AS (SELECT b.screen, m.first_day, "
        f"sum({PG_DAYS}) AS days FROM obj_screen r JOIN obj_slot b ON b.screen = r.id AND {HELD_BY_GUARD} "
        "AND daterange(b.first_day, b.last_day, '[]') && daterange(:from, :to, '[]') "
        "JOIN m ON b.first_day <= m.last_day AND b.last_day >= m.first_day "
        "WHERE r.deleted_at IS NULL AND r.city = :city GROUP BY b.screen, m.first_day) "
        "SELECT r.id, m.first_day, m.last_day - m.first_day + 1, coalesce(booked.days, 0) FROM obj_screen r CROSS JOIN m "
        "LEFT JOIN booked ON booked.screen = r.id AND booked.first_day = m.first_day "
        "WHERE r.deleted_at IS NULL AND r.city = :city ORDER BY r.id, m.first_day",
    ("sqlite", "LEFT JOIN, day comparison"):
        "WITH m(first_day, last_day) AS (VALUES {months}) SELECT r.id, m.first_day, "
        f"julianday(m.last_day) - julianday(m.first_day) + 1, coalesce(sum({SQLITE_DAYS}), 0) "
        f"FROM obj_screen r CROSS JOIN m LEFT JOIN obj_slot b ON b.screen = r.id AND {HELD_BY} "
        "AND b.first_day <= m.last_day AND b.last_day >= m.first_day "
        "WHERE r.deleted_at IS NULL AND r.city = :city GROUP BY r.id, m.first_day ORDER BY r.id, m.first_day",
}
BOOKING_COLUMNS = ("id", "owner_id", "org_unit_id", "business_type", "stage", "stage_entered_at", "created_at", "created_by",
                   "updated_at", "updated_by", "version", "deleted_at", "screen", "first_day", "last_day", "state")


def params_of(args):
    return {"format": DATA_FORMAT, "resources": args.booking_resources, "bookings_per_resource": args.booking_days,
            "seed": SEED}


# -- the database --------------------------------------------------------------------------------
def open_runtime(url, args, reset):
    """The kept database when its marker matches the parameters, else an empty one (``reset``
    drops the public schema) that the benchmark fills."""
    if args.booking_rebuild or stored_params(url, MARKER) != params_of(args):
        reset(url)
    return Runtime.connect(url).install()


def bookings_of(rnd, count):
    """``count`` bookings of one screen as (first, last) day offsets within SPAN_DAYS, none sharing a
    day, none in the screen's idle stretches: 2 × count distinct busy days drawn at random, paired in
    order, each pair cut at the end of its run of busy days."""
    idle = set()
    for _ in range(IDLE_STRETCHES):
        length = rnd.randint(*IDLE_DAYS)
        begin = rnd.randrange(SPAN_DAYS - length)
        idle.update(range(begin, begin + length))
    busy = [day for day in range(SPAN_DAYS) if day not in idle]
    points = sorted(rnd.sample(range(len(busy)), min(2 * count, len(busy) // 2 * 2)))
    found = []
    for a, b in zip(points[0::2], points[1::2]):
        last = busy[a]
        for i in range(a + 1, b):
            if busy[i] != last + 1:
                break
            last = busy[i]
        found.append((busy[a], last))
    return found


def city_of(index):
    number = index // SCREENS_PER_CITY
    return CITIES[number] if number < len(CITIES) else f"City {number + 1}"


def load(rt, backend, report, args):
    """The objects and the rule through the metadata service; the screens and their bookings through
    records.bulk_create as the system actor; every DELETED_EVERY-th booking deleted through
    records.delete; then (VACUUM) ANALYZE and, on PostgreSQL, the marker."""
    rnd = random.Random(SEED)
    S = SYSTEM_ACTOR
    t0 = perf_counter()
    rt.metadata.create_objects(S, [SCREEN, SLOT])
    rt.metadata.create_booking_rule(S, "slot", RULE)
    screens = []
    for start in range(0, args.booking_resources, 1000):
        screens += rt.records.bulk_create(S, "screen", [
            {"code": f"SCR-{i + 1:05d}", "city": city_of(i)} for i in range(start, min(start + 1000, args.booking_resources))])
    states, weights = zip(*STATES)
    bookings = []
    for screen in screens:
        for first, last in bookings_of(rnd, args.booking_days):
            bookings.append({"screen": screen["id"], "first_day": (FIRST_DAY + timedelta(first)).isoformat(),
                             "last_day": (FIRST_DAY + timedelta(last)).isoformat(),
                             "state": rnd.choices(states, weights)[0]})
    t_generated = perf_counter()
    made = []
    for start in range(0, len(bookings), LOAD_CHUNK):
        made += [r["id"] for r in rt.records.bulk_create(S, "slot", bookings[start:start + LOAD_CHUNK])]
    t_bookings = perf_counter()
    for record_id in made[DELETED_EVERY - 1::DELETED_EVERY]:
        rt.records.delete(S, "slot", record_id)
    t_deleted = perf_counter()
    if backend == "postgresql":
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE obj_screen")
            conn.exec_driver_sql("VACUUM ANALYZE obj_slot")
            conn.exec_driver_sql(f"CREATE TABLE {MARKER} (params jsonb NOT NULL, loaded_at timestamptz NOT NULL, "
                                 "load_seconds double precision NOT NULL)")
            conn.exec_driver_sql(f"INSERT INTO {MARKER} VALUES (%s, now(), %s)",
                                 (json.dumps(params_of(args)), perf_counter() - t0))
    else:
        with rt.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    total = perf_counter() - t0
    rate = len(bookings) / (t_bookings - t_generated)
    print(f"  {len(screens):,} screens and the rule {t_generated - t0:.1f} s; {len(bookings):,} bookings by bulk_create "
          f"({LOAD_CHUNK} per call) {t_bookings - t_generated:.1f} s ({rate:,.0f}/s); {len(made) // DELETED_EVERY} deleted "
          f"{t_deleted - t_bookings:.1f} s; ANALYZE {perf_counter() - t_deleted:.1f} s", flush=True)
    kept = "; kept for re-runs (--booking-rebuild to redo)" if backend == "postgresql" else ""
    report.add(NAME, backend, "load (screens, bookings through bulk_create, deletes)", total, "s",
               f"{len(bookings):,} bookings in {t_bookings - t_generated:.0f} s, {rate:,.0f}/s{kept}")


# -- hand SQL ------------------------------------------------------------------------------------
def for_driver(sql, postgres):
    """``:name`` parameters as the driver wants them (psycopg: ``%(name)s``; sqlite3 takes ``:name``)."""
    return re.sub(r"(?<![:\w]):([a-z_][a-z_0-9]*)", r"%(\1)s", sql) if postgres else sql


class Hand:
    """Statements through the DBAPI connection of a pooled connection: on PostgreSQL in autocommit
    (one round trip), rows fetched, nothing else. Parameters given by name are stored as the platform
    stores them (on SQLite: ids as 32 hex digits, days and UTC instants as text)."""

    def __init__(self, engine):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    def value(self, value):
        if self.postgres:
            return value
        if isinstance(value, uuid.UUID):
            return value.hex
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, date):
            return value.isoformat()
        return value

    def run(self, sql, params=None, *, write=False):
        if isinstance(params, dict):
            params = {name: self.value(value) for name, value in params.items()}
        raw = self.engine.raw_connection()
        driver = raw.driver_connection
        try:
            if self.postgres:
                driver.autocommit = True
            cur = driver.cursor()
            try:
                cur.execute(sql, params or {})
                rows = cur.fetchall() if cur.description else []
            finally:
                cur.close()
            if write and not self.postgres:
                driver.commit()
            return rows
        except Exception:
            if not self.postgres:
                driver.rollback()
            raise
        finally:
            if self.postgres:
                driver.autocommit = False
            raw.close()

    def timed(self, sql, params=None, *, write=False):
        t = perf_counter()
        rows = self.run(sql, params, write=write)
        return perf_counter() - t, rows


def forms(statements, backend):
    """The hand SQL forms for ``backend``, written for its driver."""
    return {form: for_driver(sql, backend == "postgresql") for (databases, form), sql in statements.items()
            if databases in ("both", backend)}


# -- figures computed in Python from the stored bookings --------------------------------------------
def held_bookings(hand):
    """Every active booking as (screen id, first day, last day)."""
    rows = hand.run(f"SELECT b.screen, b.first_day, b.last_day FROM obj_slot b WHERE {HELD_BY}")
    return [(as_id(s), as_date(first), as_date(last)) for s, first, last in rows]


def as_date(value):
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def as_id(value):
    return str(uuid.UUID(str(value)))


def expected_free(screens, held, start, end):
    taken = {s for s, first, last in held if first <= end and last >= start}
    return [s for s in screens if s not in taken]


def month_spans(start, end):
    spans, first = [], start
    while first <= end:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        spans.append((first, min(following - timedelta(1), end)))
        first = following
    return spans


def expected_occupancy(screens, held, start, end):
    spans = month_spans(start, end)
    booked = {(s, first): 0 for s in screens for first, _ in spans}
    wanted = set(screens)
    for screen, first_day, last_day in held:
        if screen in wanted:
            for first, last in spans:
                days = (min(last_day, last) - max(first_day, first)).days + 1
                if days > 0:
                    booked[screen, first] += days
    return {(s, first): ((last - first).days + 1, booked[s, first]) for s in screens for first, last in spans}


def check_same(label, ours, theirs):
    if ours != theirs:
        if isinstance(theirs, dict):
            differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            sample = [(k, ours.get(k), theirs.get(k)) for k in differing[:5]]
            raise AssertionError(f"{label}: {len(differing)} of {len(theirs)} differ (key, found, expected): {sample}")
        raise AssertionError(f"{label}: found {str(ours)[:300]}, expected {str(theirs)[:300]}")


# -- plans ---------------------------------------------------------------------------------------
def plan_of(hand, sql, params):
    """The EXPLAIN text and a one-line summary: per table read, how (index), rows read and removed by
    filters over all loops; execution time (PostgreSQL), or the query plan lines (SQLite)."""
    if not hand.postgres:
        lines = [row[-1] for row in hand.run("EXPLAIN QUERY PLAN " + sql, params)]
        return "\n".join(lines), "; ".join(lines)
    text = "\n".join(r[0] for r in hand.run("EXPLAIN (ANALYZE, BUFFERS) " + sql, params))
    plan = hand.run("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)[0][0][0]
    reads = []

    def walk(node):
        table = node.get("Relation Name")
        index = node.get("Index Name")
        if table or index:
            loops = node.get("Actual Loops", 1)
            rows = node.get("Actual Rows", 0) * loops
            removed = (node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)) * loops
            where = f"{table or ''}{' ' if table and index else ''}{index or ''}"
            reads.append(f"{node['Node Type'].lower()} {where}: {rows:,} rows"
                         + (f" (+{removed:,} filtered out)" if removed else "") + (f" in {loops:,} loops" if loops > 1 else ""))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    return text, f"{'; '.join(reads)}; {buffers:,} buffers; server {plan['Execution Time']:.2f} ms"


def abbreviated(text, width=160):
    return "\n".join("    " + (line if len(line) <= width else line[:width - 3] + "...") for line in text.splitlines())


def captured(statement, parameters, postgres):
    """A statement the platform sent, ready for Hand.run (sqlite3's qmark parameters as a tuple)."""
    return statement, parameters if postgres else tuple(parameters)


class Api:
    """GraphQL requests through the Flask app's WSGI interface (Flask's test client: bearer token,
    create_app, authentication, the endpoint, the JSON response), answers decoded."""

    def __init__(self, rt):
        app = create_app(Settings(database_url=str(rt.engine.url), api_token=TOKEN), runtime=rt)
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def post(self, query, variables):
        response = self.client.post("/graphql", data=json.dumps({"query": query, "variables": variables}), headers=self.headers)
        return response.status_code, json.loads(response.get_data())

    def data(self, query, variables):
        status, payload = self.post(query, variables)
        if status != 200 or payload.get("errors"):
            raise AssertionError(f"GraphQL request failed ({status}): {json.dumps(payload)[:500]}")
        return payload["data"]


def only_statement_on_slots(seen):
    on_slots = [(s, p) for s, p in seen if "obj_slot" in s]
    assert len(on_slots) == 1, f"expected one statement on obj_slot, saw {len(on_slots)}"
    return on_slots[0]


# -- the benchmark -----------------------------------------------------------------------------------
def bench_bookings(rt, backend, report, args):
    if "slot" not in rt.catalog().objects:
        load(rt, backend, report, args)
    else:
        with rt.engine.connect() as conn:
            loaded_at, seconds = conn.exec_driver_sql(f"SELECT loaded_at, load_seconds FROM {MARKER}").first()
        report.add(NAME, backend, "load", "reused", "", f"loaded {loaded_at:%Y-%m-%d %H:%M} in {seconds:.0f} s; "
                   "--booking-rebuild to load again")
    hand, api = Hand(rt.engine), Api(rt)
    postgres = hand.postgres
    remove_new = for_driver("DELETE FROM obj_slot WHERE first_day >= :from", postgres)
    hand.run(remove_new, {"from": NEW_BOOKINGS_FROM}, write=True)  # left by an interrupted run

    screens = [(as_id(i), city) for i, city in hand.run("SELECT id, city FROM obj_screen WHERE deleted_at IS NULL ORDER BY id")]
    screen_ids = [s for s, _ in screens]
    held = held_bookings(hand)
    stored, deleted = hand.run("SELECT count(*), sum(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END) FROM obj_slot")[0]
    city = city_of(0)
    city_screens = [s for s, c in screens if c == city]
    report.add(NAME, backend, "data", f"{len(screens):,} screens, {stored:,} bookings", "",
               f"{len(held):,} active, {deleted:,} in the recycle bin, the rest cancelled; "
               f"runs: {args.booking_runs} after {args.booking_warmup}")

    # 1. availability of a 14-day window: the first 100 free screens by id
    window = {"from": WINDOW[0], "to": WINDOW[1]}
    free = expected_free(screen_ids, held, *WINDOW)
    expected_page = (free[:PAGE], len(free) > PAGE)

    def availability():
        page = api.data(AVAILABILITY, {k: v.isoformat() for k, v in window.items()})["slotsAvailability"]
        return [n["id"] for n in page["nodes"]], page["pageInfo"]["hasNextPage"]

    def availability_in_process():
        branch = rt.records.available(SYSTEM_ACTOR, "slot", WINDOW[0], WINDOW[1], Window(first=PAGE), Selection(fields=["code"]))
        return [as_id(r["id"]) for r in branch.records], branch.has_next_page

    def page_of(rows):
        return [as_id(r[0]) for r in rows[:PAGE]], len(rows) > PAGE

    availability_forms = forms(AVAILABILITY_SQL, backend)
    availability()  # the schema is built
    with capturing(rt.engine) as seen:
        check_same("availability, GraphQL", availability(), expected_page)
    availability_sql = captured(*only_statement_on_slots(seen), postgres)
    check_same("availability, records.available", availability_in_process(), expected_page)
    check_same("availability, the platform's SQL", page_of(hand.run(*availability_sql)), expected_page)
    for form, sql in availability_forms.items():
        check_same(f"availability, hand SQL {form}", page_of(hand.run(sql, window)), expected_page)

    # 2. occupancy of a quarter, per screen of one city and month
    spans = month_spans(*QUARTER)
    quarter = {"city": city, "from": QUARTER[0], "to": QUARTER[1], **{f"first_{i}": first for i, (first, _) in enumerate(spans)},
               **{f"last_{i}": last for i, (_, last) in enumerate(spans)}}
    months = ", ".join(f"(:first_{i}, :last_{i})" for i in range(len(spans)))
    expected_months = expected_occupancy(city_screens, held, *QUARTER)

    def occupancy():
        variables = {"from": QUARTER[0].isoformat(), "to": QUARTER[1].isoformat(), "city": city}
        return {(r["resourceId"], date.fromisoformat(r["month"])): (r["days"], r["bookedDays"])
                for r in api.data(OCCUPANCY, variables)["slotsOccupancy"]}

    def occupancy_in_process():
        rows = rt.records.occupancy(SYSTEM_ACTOR, "slot", QUARTER[0], QUARTER[1], filter={"city": {"eq": city}})
        return {(as_id(r["resource_id"]), r["month"]): (r["days"], r["booked_days"]) for r in rows}

    def months_of(rows):
        return {(as_id(s), as_date(m)): (int(d), int(b)) for s, m, d, b in rows}

    occupancy_forms = {form: for_driver(sql.format(months=months), postgres)
                       for (databases, form), sql in OCCUPANCY_SQL.items() if databases in ("both", backend)}
    with capturing(rt.engine) as seen:
        check_same("occupancy, GraphQL", occupancy(), expected_months)
    occupancy_statements = len(seen)
    occupancy_sql = captured(*only_statement_on_slots(seen), postgres)
    check_same("occupancy, records.occupancy", occupancy_in_process(), expected_months)
    for form, sql in occupancy_forms.items():
        check_same(f"occupancy, hand SQL {form}", months_of(hand.run(sql, quarter)), expected_months)

    # 3. creating a booking: the n-th new one books screen n mod screens for two days, after all others
    def new_booking(n, state="confirmed"):
        first = NEW_BOOKINGS_FROM + timedelta(3 * (n // len(screen_ids)))
        return {"screen": uuid.UUID(screen_ids[n % len(screen_ids)]), "first_day": first, "last_day": first + timedelta(1),
                "state": state}

    def graphql_input(booking):
        return {"input": {"screenId": str(booking["screen"]), "firstDay": booking["first_day"].isoformat(),
                          "lastDay": booking["last_day"].isoformat(), "state": booking["state"].upper()}}

    def create(booking):
        return api.data(CREATE, graphql_input(booking))["createSlot"]["id"]

    def create_in_process(booking):
        return rt.records.create(SYSTEM_ACTOR, "slot", {**booking, "screen": str(booking["screen"]),
                                                        "first_day": booking["first_day"].isoformat(),
                                                        "last_day": booking["last_day"].isoformat()})["id"]

    columns = ", ".join(BOOKING_COLUMNS)
    row_of = for_driver(f"SELECT {columns} FROM obj_slot WHERE screen = :screen AND first_day = :first_day", postgres)
    insert_sql = for_driver(f"INSERT INTO obj_slot ({columns}) VALUES ({', '.join(':' + c for c in BOOKING_COLUMNS)})", postgres)
    with capturing(rt.engine) as seen:
        create(new_booking(0))
    create_statements = len(seen)
    overlap_sql = captured(*next((s, p) for s, p in seen if s.lstrip().startswith("SELECT") and "obj_slot" in s), postgres)
    made_by_service = dict(zip(BOOKING_COLUMNS, hand.run(row_of, new_booking(0))[0]))

    def insert(booking):
        """The row the service writes (owner, unit, version...: those of its own), by hand."""
        now = datetime.now(timezone.utc)
        row = {**made_by_service, "id": uuid.uuid4(), "created_at": now, "updated_at": now, **booking}
        return hand.timed(insert_sql, row, write=True)[0]

    insert(new_booking(1))
    made_by_hand = dict(zip(BOOKING_COLUMNS, hand.run(row_of, new_booking(1))[0]))
    differing = [c for c in BOOKING_COLUMNS if made_by_hand[c] != made_by_service[c]
                 and c not in ("id", "created_at", "updated_at", "screen")]
    assert not differing, f"the raw row differs from the service's in {differing}"
    clash = {**new_booking(0), "first_day": new_booking(0)["last_day"], "state": "hold"}
    status, payload = api.post(CREATE, graphql_input(clash))
    codes = [e["code"] for error in payload.get("errors", []) for e in error.get("extensions", {}).get("errors", [])]
    assert codes == ["OVERLAP"], f"an overlapping booking through GraphQL was not refused as OVERLAP: {payload}"
    try:
        insert(clash)
    except Exception as exc:  # the guard: ExclusionViolation on PostgreSQL, the trigger's ABORT on SQLite
        guard_error = type(exc).__name__
    else:
        raise AssertionError("the database accepted an overlapping booking")

    # interleaved runs: every side sees the same machine conditions
    sides = ["graphql availability", "service availability", "platform availability SQL",
             *(f"hand availability: {f}" for f in availability_forms),
             "graphql occupancy", "service occupancy", "platform occupancy SQL", *(f"hand occupancy: {f}" for f in occupancy_forms),
             "graphql create", "service create", "overlap SELECT", "raw INSERT", "raw INSERT, cancelled"]
    samples = {side: [] for side in sides}
    n = 2
    for run in range(args.booking_warmup + args.booking_runs):
        took = {}
        t = perf_counter()
        answer = availability()
        took["graphql availability"] = perf_counter() - t
        check_same("availability, GraphQL", answer, expected_page)
        t = perf_counter()
        answer = availability_in_process()
        took["service availability"] = perf_counter() - t
        check_same("availability, records.available", answer, expected_page)
        took["platform availability SQL"] = hand.timed(*availability_sql)[0]
        for form, sql in availability_forms.items():
            took[f"hand availability: {form}"] = hand.timed(sql, window)[0]
        t = perf_counter()
        answer = occupancy()
        took["graphql occupancy"] = perf_counter() - t
        check_same("occupancy, GraphQL", answer, expected_months)
        t = perf_counter()
        answer = occupancy_in_process()
        took["service occupancy"] = perf_counter() - t
        check_same("occupancy, records.occupancy", answer, expected_months)
        took["platform occupancy SQL"] = hand.timed(*occupancy_sql)[0]
        for form, sql in occupancy_forms.items():
            took[f"hand occupancy: {form}"] = hand.timed(sql, quarter)[0]
        t = perf_counter()
        create(new_booking(n))
        took["graphql create"] = perf_counter() - t
        t = perf_counter()
        create_in_process(new_booking(n + 1))
        took["service create"] = perf_counter() - t
        took["overlap SELECT"] = hand.timed(*overlap_sql)[0]
        took["raw INSERT"] = insert(new_booking(n + 2))
        took["raw INSERT, cancelled"] = insert(new_booking(n + 3, "cancelled"))
        n += 4
        if run >= args.booking_warmup:
            for side, seconds in took.items():
                samples[side].append(seconds)
    made = hand.run(for_driver("SELECT count(*) FROM obj_slot WHERE first_day >= :from", postgres), {"from": NEW_BOOKINGS_FROM})
    assert made[0][0] == n, f"expected {n} new bookings, found {made[0][0]}"
    if args.profile:
        numbers = itertools.count(n)
        profile_requests(backend, [("slotsAvailability", availability), ("slotsOccupancy", occupancy),
                                   ("createSlot", lambda: create(new_booking(next(numbers))))], args.gql_profile_runs)
    hand.run(remove_new, {"from": NEW_BOOKINGS_FROM}, write=True)

    plans = {}
    statements = {"platform availability SQL": availability_sql,
                  **{f"hand availability: {f}": (sql, window) for f, sql in availability_forms.items()},
                  "platform occupancy SQL": occupancy_sql,
                  **{f"hand occupancy: {f}": (sql, quarter) for f, sql in occupancy_forms.items()},
                  "overlap SELECT": overlap_sql}
    for side, (sql, params) in statements.items():
        text, plans[side] = plan_of(hand, sql, params)
        shown = sql if len(sql) < 2000 else sql[:2000] + " ..."
        print(f"\n  [{backend}] {side}:\n    {shown}\n    {str(params)[:400]}\n  plan:\n{abbreviated(text)}", flush=True)

    def median(side):
        return statistics.median(samples[side])

    def spread(side):
        return f"p90 {ms(pct(samples[side], 90)):.2f} ms"

    def fastest(prefix):
        return min((s for s in sides if s.startswith(prefix)), key=median)

    for measure, label, rows in (
            ("availability", f"availability {(WINDOW[1] - WINDOW[0]).days + 1} days",
             f"{min(PAGE, len(free))} of {len(free):,} free screens"),
            ("occupancy", f"occupancy {QUARTER[0]:%Y} Q{(QUARTER[0].month + 2) // 3}, {len(city_screens)} screens",
             f"{len(expected_months):,} rows; {occupancy_statements} statements")):
        best = fastest(f"hand {measure}: ")
        report.add(NAME, backend, f"{label}: GraphQL (Flask app)", ms(median(f"graphql {measure}")), "ms",
                   f"median of {args.booking_runs}, {spread(f'graphql {measure}')}; {rows}")
        service = {"availability": "records.available", "occupancy": "records.occupancy"}[measure]
        report.add(NAME, backend, f"{measure}: {service} in process", ms(median(f"service {measure}")), "ms",
                   spread(f"service {measure}"))
        report.add(NAME, backend, f"{measure}: the platform's SQL, raw", ms(median(f"platform {measure} SQL")), "ms",
                   f"{spread(f'platform {measure} SQL')}; plan: {plans[f'platform {measure} SQL']}")
        for side in sides:
            if side.startswith(f"hand {measure}: "):
                form = side.split(": ", 1)[1]
                report.add(NAME, backend, f"{measure}: hand SQL, {form}", ms(median(side)), "ms",
                           f"{spread(side)}; plan: {plans[side]}")
        report.add(NAME, backend, f"{measure}: ratio GraphQL / fastest hand SQL", median(f"graphql {measure}") / median(best),
                   "x", f"against {best.split(': ', 1)[1]}; the platform's SQL / it: "
                        f"{median(f'platform {measure} SQL') / median(best):.2f}x")
    report.add(NAME, backend, "create a booking: GraphQL createSlot", ms(median("graphql create")), "ms",
               f"median of {args.booking_runs}, {spread('graphql create')}; {create_statements} statements")
    report.add(NAME, backend, "create a booking: records.create in process", ms(median("service create")), "ms",
               spread("service create"))
    report.add(NAME, backend, "create a booking: the service's overlap SELECT, raw", ms(median("overlap SELECT")), "ms",
               f"{spread('overlap SELECT')}; plan: {plans['overlap SELECT']}")
    report.add(NAME, backend, "create a booking: raw INSERT (pays the guard)", ms(median("raw INSERT")), "ms",
               spread("raw INSERT"))
    report.add(NAME, backend, "create a booking: raw INSERT of a cancelled one", ms(median("raw INSERT, cancelled")), "ms",
               f"{spread('raw INSERT, cancelled')}; not held, so the guard skips it")
    report.add(NAME, backend, "create a booking: ratio GraphQL / raw INSERT", median("graphql create") / median("raw INSERT"), "x")
    report.add(NAME, backend, "same answers", "yes", "",
               "availability ids and hasNextPage, occupancy days per screen and month: GraphQL (every run), the platform's "
               "SQL and every hand form equal figures computed in Python; an overlap is refused by GraphQL (OVERLAP) and "
               f"by the database ({guard_error})")


def profile_requests(backend, requests, count):
    """cProfile of ``count`` more of each request (not in the timings): top 15 by cumulative time (all
    code, then platform code only) and by own time."""
    for label, call in requests:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            call()
        profiler.disable()
        for order, restrict, code in (("cumulative", (15,), "all code"), ("cumulative", ("lowcode|/platform/", 15), "platform code"),
                                      ("tottime", (15,), "all code")):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(*restrict)
            body = out.getvalue()
            print(f"\n--- [{backend}] cProfile of {count} {label} requests, top 15 by {order} ({code}) ---")
            print(body[body.find("   ncalls"):].rstrip(), flush=True)
