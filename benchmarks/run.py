#!/usr/bin/env python3
"""lowcode benchmarks: what the platform costs, measured against raw SQL on the same database.

    python3 benchmarks/run.py [--postgres URL] [--only NAME[,NAME]] [--rows N] [--json PATH] [--profile]

The GraphQL benchmarks (graphql_list, graphql_get, schema_build) live in graphql_bench.py, the
permission benchmark (scoped_list, PostgreSQL only) in permissions_bench.py, the funnel benchmark
(funnel, PostgreSQL only) in funnel_bench.py, the bookings benchmark (bookings) in bookings_bench.py, the
automation benchmark (automation: duplicate and assignment rules) in automation_bench.py.

SQLite (a temporary file) always; PostgreSQL too with --postgres URL or LOWCODE_BENCH_POSTGRES_URL
(its public schema is DROPPED and recreated before every benchmark, except between graphql_list and
graphql_get, which share their data, and for scoped_list, funnel and bookings, which keep their
data for re-runs). No speed is asserted: the results are printed as a table, and written as JSON
with --json. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from time import perf_counter

import automation_bench
import bookings_bench
import funnel_bench
import graphql_bench
import permissions_bench
from jsonschema import Draft202012Validator
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.catalog import load_catalog
from lowcode.metadata.database import database_engine
from lowcode.runtime import Runtime
from lowcode.runtime.records import new_record_id
from lowcode.runtime.schema_check import compile_check
from lowcode.runtime.validation import RecordValidator

STATUSES = ["new", "open", "waiting", "done", "cancelled"]
CITIES = ["Berlin", "Lisbon", "Oslo", "Porto", "Vienna", "Zurich", "Madrid", "Dublin"]
BULK_FIELDS = [  # 4 text, 2 integer, 1 currency, 1 date, 1 boolean, 1 picklist
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "code", "label": "Code", "type": "text", "options": {"max_length": 40}},
    {"api_name": "city", "label": "City", "type": "text", "options": {"max_length": 100}},
    {"api_name": "notes", "label": "Notes", "type": "text"},
    {"api_name": "quantity", "label": "Quantity", "type": "integer", "options": {"min": 0}},
    {"api_name": "priority", "label": "Priority", "type": "integer"},
    {"api_name": "amount", "label": "Amount", "type": "currency"},
    {"api_name": "due_on", "label": "Due on", "type": "date"},
    {"api_name": "active", "label": "Active", "type": "boolean"},
    {"api_name": "status", "label": "Status", "type": "picklist",
     "options": {"values": [{"api_name": s, "label": s.title()} for s in STATUSES]}},
]
CATALOG_TYPES = ["text", "integer", "decimal", "currency", "date", "datetime", "boolean", "email", "picklist",
                 "textarea", "percent", "phone", "url", "multi_picklist", "lookup"]


class Report:
    """Results as rows: benchmark, backend, metric, value, unit, note."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, bench, backend, metric, value, unit="", note=""):
        self.rows.append({"benchmark": bench, "backend": backend, "metric": metric, "value": value, "unit": unit, "note": note})
        print(f"  {metric}: {fmt(value, unit)} {note}".rstrip(), flush=True)

    def print_table(self):
        header = ("benchmark", "backend", "metric", "value", "note")
        lines = [(r["benchmark"], r["backend"], r["metric"], fmt(r["value"], r["unit"]), r["note"]) for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
        rule = "  ".join("-" * w for w in widths)
        print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n" + rule)
        last = None
        for line in lines:
            if last is not None and line[:2] != last:
                print()
            last = line[:2]
            print("  ".join((str(x).rjust(w) if i == 3 else str(x).ljust(w)) for i, (x, w) in enumerate(zip(line, widths))).rstrip())


def fmt(value, unit):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return f"{value}{' ' + unit if unit else ''}"
    if unit in ("rows/s", "req/s"):
        return f"{value:,.0f} {unit}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("s", "ms"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "µs":
        return f"{value:,.1f} µs"
    if isinstance(value, int):
        return f"{value:,}{' ' + unit if unit else ''}"
    return f"{value:.3f}{' ' + unit if unit else ''}"


def object_def(api_name, fields):
    return {"api_name": api_name, "label": api_name.replace("_", " ").title(), "fields": fields}


def median_ms(samples):
    return statistics.median(samples) * 1000


# -- 1. bulk insert ---------------------------------------------------------------------------
def bulk_inputs(n, seed=42):
    """JSON-like input, as a client would send it (currency and date as strings)."""
    rnd, start = random.Random(seed), date(2024, 1, 1)
    return [{
        "name": f"Item {i}", "code": f"C-{i:08d}", "city": rnd.choice(CITIES), "notes": "lorem ipsum " * rnd.randint(1, 6),
        "quantity": rnd.randint(0, 10_000), "priority": rnd.randint(-100, 100), "amount": f"{rnd.randint(0, 10**8) / 100:.2f}",
        "due_on": (start + timedelta(days=rnd.randint(0, 730))).isoformat(), "active": rnd.random() < 0.5,
        "status": rnd.choice(STATUSES),
    } for i in range(n)]


def raw_row(values, now):
    """The database row the service would write for ``values``, prepared by hand."""
    return {"id": new_record_id(), "owner_id": None, "org_unit_id": None, "business_type": None, "created_at": now,
            "created_by": None, "updated_at": now, "updated_by": None, "version": 1, "deleted_at": None,
            **values, "amount": Decimal(values["amount"]), "due_on": date.fromisoformat(values["due_on"])}


def bench_bulk_insert(rt, backend, report, args):
    name, rows, chunk = "bulk_insert", args.rows, args.chunk
    rt.metadata.create_objects(SYSTEM_ACTOR, [object_def("bench_item", BULK_FIELDS), object_def("bench_raw", BULK_FIELDS)])
    inputs = bulk_inputs(rows)
    now = datetime.now(timezone.utc)
    raw_rows = [raw_row(v, now) for v in inputs]
    table = rt.catalog().table("bench_raw")
    raw_s = service_s = 0.0
    for start in range(0, rows, chunk):  # interleaved, so both see the same database conditions
        t = perf_counter()
        with rt.engine.begin() as conn:
            conn.execute(table.insert(), raw_rows[start:start + chunk])
        raw_s += perf_counter() - t
        t = perf_counter()
        rt.records.bulk_create(SYSTEM_ACTOR, "bench_item", inputs[start:start + chunk])
        service_s += perf_counter() - t
    with rt.engine.connect() as conn:
        counts = [conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in ("obj_bench_raw", "obj_bench_item")]
    ratio = raw_s / service_s
    report.add(name, backend, "rows x chunk", f"{rows:,} x {chunk:,}", "", "" if counts == [rows, rows] else f"COUNT MISMATCH {counts}")
    report.add(name, backend, "raw SQL executemany", raw_s, "s")
    report.add(name, backend, "raw SQL throughput", rows / raw_s, "rows/s")
    report.add(name, backend, "records.bulk_create", service_s, "s")
    report.add(name, backend, "service throughput", rows / service_s, "rows/s")
    report.add(name, backend, "ratio raw/service", ratio, "", "goal >= 0.25: " + ("met" if ratio >= 0.25 else "NOT met"))

    obj = rt.catalog().object("bench_item")
    validator = RecordValidator(obj)
    t = perf_counter()
    for values in inputs:
        validator.check(values, creating=True)
    check_s = perf_counter() - t
    fast = compile_check(validator.create_schema)
    t = perf_counter()
    for values in inputs:
        fast(values)
    fast_s = perf_counter() - t
    schema = Draft202012Validator(validator.create_schema)
    t = perf_counter()
    for values in inputs:
        for _ in schema.iter_errors(values):
            pass
    schema_s = perf_counter() - t
    report.add(name, backend, "phase: RecordValidator.check", check_s, "s", f"{check_s / service_s:.0%} of service time")
    report.add(name, backend, "phase:   of which compiled schema check", fast_s, "s", f"{fast_s / service_s:.0%} of service time")
    report.add(name, backend, "for scale: jsonschema iter_errors alone", schema_s, "s", "what the check would cost per row through jsonschema")
    rest = service_s - check_s - raw_s
    report.add(name, backend, "phase: rest (ids, rows, commit)", rest, "s", f"≈{rest / service_s:.0%} (service - check - raw)")
    if args.profile:
        profile_bulk_create(rt, backend, chunk)


def profile_bulk_create(rt, backend, chunk):
    """cProfile of two more bulk_create chunks (not part of the timings above)."""
    inputs = bulk_inputs(2 * chunk, seed=7)
    profiler = cProfile.Profile()
    profiler.enable()
    for start in range(0, len(inputs), chunk):
        rt.records.bulk_create(SYSTEM_ACTOR, "bench_item", inputs[start:start + chunk])
    profiler.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(15)
        body = out.getvalue()
        print(f"\n--- [{backend}] cProfile of bulk_create, 2 x {chunk} rows, top 15 by {order} ---")
        print(body[body.find("   ncalls"):].rstrip())


# -- 2. catalog build -------------------------------------------------------------------------
def catalog_definitions(objects, fields):
    defs = []
    for i in range(objects):
        targets = [f"cat_{i - 1:03d}", f"cat_{i // 2:03d}", f"cat_{i // 3:03d}"] if i else ["user"] * 3
        field_defs = []
        for j in range(fields):
            kind = CATALOG_TYPES[j % len(CATALOG_TYPES)]
            field = {"api_name": f"f{j:02d}_{kind}", "label": f"Field {j}", "type": kind, "indexed": j % 10 == 3}
            if kind in ("picklist", "multi_picklist"):
                field["options"] = {"values": [{"api_name": f"v{k}", "label": f"Value {k}"} for k in range(8)]}
            elif kind == "lookup":
                field["options"] = {"target": targets[j // len(CATALOG_TYPES) % 3]}
            field_defs.append(field)
        defs.append(object_def(f"cat_{i:03d}", field_defs))
    return defs


def bench_catalog_build(rt, backend, report, args):
    name, objects, fields, batch = "catalog_build", args.objects, args.fields, 20
    defs = catalog_definitions(objects, fields)
    t = perf_counter()
    for start in range(0, objects, batch):
        rt.metadata.create_objects(SYSTEM_ACTOR, defs[start:start + batch])
    create_s = perf_counter() - t
    report.add(name, backend, "objects x fields", f"{objects} x {fields}")
    report.add(name, backend, "create_objects (all, 20/call)", create_s, "s", f"{create_s / objects * 1000:.0f} ms per object")
    loads, tables, validators = [], [], []
    for run in range(args.repeat):
        with rt.engine.connect() as conn:  # a pooled connection per run; checkout not timed
            t = perf_counter()
            catalog = load_catalog(conn)
            loads.append(perf_counter() - t)
        if run < 5:
            t = perf_counter()
            for api_name in catalog.objects:
                catalog.table(api_name)
            tables.append(perf_counter() - t)
            t = perf_counter()
            for obj in catalog.objects.values():
                RecordValidator(obj)
            validators.append(perf_counter() - t)
    load_ms = median_ms(loads)
    report.add(name, backend, f"load_catalog (median of {len(loads)})", load_ms, "ms",
               f"min {min(loads) * 1000:.1f}, max {max(loads) * 1000:.1f}; goal < 200 ms: " + ("met" if load_ms < 200 else "NOT met"))
    report.add(name, backend, f"build all {len(catalog.objects)} query Tables", median_ms(tables), "ms", "median of 5")
    report.add(name, backend, f"build all {len(catalog.objects)} validators", median_ms(validators), "ms", "median of 5")
    report.add(name, backend, "load + Tables + validators", load_ms + median_ms(tables) + median_ms(validators), "ms",
               "a cold process touching every object")
    with rt.engine.connect() as conn:
        rt.catalogs.current(conn)
        checks = []
        for _ in range(200):
            t = perf_counter()
            rt.catalogs.current(conn)
            checks.append(perf_counter() - t)
    report.add(name, backend, "catalogs.current() when unchanged", statistics.median(checks) * 1e6, "µs",
               "per-request version check, median of 200")


# -- 3. add a field to a 1M-row table while writing ---------------------------------------------
class Writer(threading.Thread):
    """Creates and updates records through the record service in a loop, timing every write."""

    def __init__(self, rt, object_name, max_seconds=300.0, max_writes=500_000):
        super().__init__(daemon=True)
        self.rt, self.object_name, self.max_seconds, self.max_writes = rt, object_name, max_seconds, max_writes
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self):
        records, deadline, i = self.rt.records, perf_counter() + self.max_seconds, 0
        while not self.stopping.is_set() and perf_counter() < deadline and len(self.samples) < self.max_writes:
            i += 1
            try:
                t = perf_counter()
                record = records.create(SYSTEM_ACTOR, self.object_name, {"name": f"writer {i}", "amount": i})
                self.samples.append((t, perf_counter()))
                t = perf_counter()
                records.update(SYSTEM_ACTOR, self.object_name, record["id"], {"amount": -i})
                self.samples.append((t, perf_counter()))
            except Exception as exc:  # reported, never fatal: the benchmark measures, it does not test
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                time.sleep(0.01)


def bench_add_field(rt, backend, report, args):
    name, n = "add_field_1m", args.ddl_rows
    rt.metadata.create_object(SYSTEM_ACTOR, object_def("big", [
        {"api_name": "name", "label": "Name", "type": "text"}, {"api_name": "amount", "label": "Amount", "type": "integer"}]))
    t = perf_counter()
    with rt.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO obj_big (id, created_at, updated_at, version, name, amount) "
            f"SELECT gen_random_uuid(), now(), now(), 1, 'row ' || g, g FROM generate_series(1, {int(n)}) g")
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE obj_big")
    report.add(name, backend, "fill (raw INSERT ... SELECT + VACUUM)", perf_counter() - t, "s", f"{n:,} rows")
    cases = [("plain nullable text", {"api_name": "extra_note", "label": "Extra note", "type": "text"}),
             ("indexed text", {"api_name": "extra_code", "label": "Extra code", "type": "text", "indexed": True})]
    for label, field in cases:
        writer = Writer(rt, "big")
        writer.start()
        time.sleep(args.baseline)
        t0 = perf_counter()
        rt.metadata.create_field(SYSTEM_ACTOR, "big", field)
        t1 = perf_counter()
        time.sleep(0.5)
        writer.stopping.set()
        writer.join()
        ddl = t1 - t0
        baseline = [e - s for s, e in writer.samples if e < t0]
        completed = sum(1 for _, e in writer.samples if t0 <= e <= t1)
        overlapping = [e - s for s, e in writer.samples if s < t1 and e > t0]
        worst = max(overlapping, default=0.0)
        blocked = worst > 0.5 * ddl and worst > 0.05
        report.add(name, backend, f"{label}: DDL time", ddl, "s")
        report.add(name, backend, f"{label}: writes completed during DDL", completed, "", f"{len(writer.samples):,} writes in all")
        report.add(name, backend, f"{label}: baseline write latency", median_ms(baseline) if baseline else None, "ms",
                   f"median of {len(baseline)}; p99 {percentile(baseline, 99) * 1000:.1f} ms" if baseline else "no baseline writes")
        report.add(name, backend, f"{label}: max write latency in DDL window", worst * 1000, "ms")
        report.add(name, backend, f"{label}: writes blocked", "yes" if blocked else "no",
                   "", "a write waited > 50% of the DDL time and > 50 ms" if blocked else "")
        if writer.errors:
            report.add(name, backend, f"{label}: writer errors", len(writer.errors), "", writer.errors[0])


def percentile(samples, pct):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


BENCHMARKS = {"bulk_insert": bench_bulk_insert, "catalog_build": bench_catalog_build, "add_field_1m": bench_add_field,
              **graphql_bench.BENCHMARKS, "scoped_list": permissions_bench.bench_scoped_list,
              "funnel": funnel_bench.bench_funnel, "bookings": bookings_bench.bench_bookings,
              "automation": automation_bench.bench_automation}
POSTGRES_ONLY = {"add_field_1m", "scoped_list", "funnel"}
KEEPS_DATA = {"scoped_list": permissions_bench.open_runtime, "funnel": funnel_bench.open_runtime,
              "bookings": bookings_bench.open_runtime}
"""Benchmarks that reuse their PostgreSQL data from an earlier run (they check a marker themselves)."""
SHARED_DATA = graphql_bench.SHARED_DATA
"""Benchmarks of one group run on the same database when they follow each other (no reset between)."""


# -- running ----------------------------------------------------------------------------------
def reset_postgres(url):
    engine = database_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


def fresh_runtime(backend, pg_url, workdir, tag):
    if backend == "sqlite":
        return Runtime.connect(f"sqlite:///{os.path.join(workdir, tag + '.db')}").install()
    reset_postgres(pg_url)
    return Runtime.connect(pg_url).install()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get("LOWCODE_BENCH_POSTGRES_URL"),
                        help="also run on this PostgreSQL database (its public schema is reset!); default $LOWCODE_BENCH_POSTGRES_URL")
    parser.add_argument("--only", metavar="NAME", action="append", help=f"run only these (comma-separated or repeated): {', '.join(BENCHMARKS)}")
    parser.add_argument("--rows", type=int, default=100_000, help="bulk_insert: records per table (default 100000)")
    parser.add_argument("--chunk", type=int, default=5_000, help="bulk_insert: records per bulk_create call / transaction (default 5000)")
    parser.add_argument("--objects", type=int, default=200, help="catalog_build: objects (default 200)")
    parser.add_argument("--fields", type=int, default=50, help="catalog_build: fields per object (default 50)")
    parser.add_argument("--repeat", type=int, default=10, help="catalog_build: load_catalog runs (default 10)")
    parser.add_argument("--ddl-rows", type=int, default=1_000_000, help="add_field_1m: rows in the table (default 1000000)")
    parser.add_argument("--baseline", type=float, default=1.0, help="add_field_1m: seconds of writes before each DDL (default 1)")
    parser.add_argument("--gql-rows", type=int, default=200_000, help="graphql_list/get: opportunities (default 200000)")
    parser.add_argument("--gql-runs", type=int, default=200, help="graphql_list/get: timed requests (default 200)")
    parser.add_argument("--gql-warmup", type=int, default=20, help="graphql_list/get: untimed requests first (default 20)")
    parser.add_argument("--rps-threads", type=int, default=4, help="graphql_get: client threads against gunicorn (default 4)")
    parser.add_argument("--rps-requests", type=int, default=2_000, help="graphql_get: requests per client thread (default 2000)")
    parser.add_argument("--schema-objects", type=int, default=100, help="schema_build: objects (default 100)")
    parser.add_argument("--schema-fields", type=int, default=30, help="schema_build: fields per object (default 30)")
    parser.add_argument("--schema-repeat", type=int, default=7, help="schema_build: timed builds (default 7)")
    parser.add_argument("--schema-changes", type=int, default=5, help="schema_build: metadata changes timed (default 5)")
    parser.add_argument("--sec-rows", type=int, default=1_000_000, help="scoped_list: deals (default 1000000)")
    parser.add_argument("--sec-reps", type=int, default=5, help="scoped_list: sales reps per department (default 5)")
    parser.add_argument("--sec-shares", type=int, default=10_000,
                        help="scoped_list: record shares, and as many team members (default 10000)")
    parser.add_argument("--sec-runs", type=int, default=30, help="scoped_list: timed runs per query (default 30)")
    parser.add_argument("--sec-alt-runs", type=int, default=10,
                        help="scoped_list: timed runs of each alternative predicate (default 10)")
    parser.add_argument("--sec-warmup", type=int, default=3, help="scoped_list: untimed runs first (default 3)")
    parser.add_argument("--sec-rebuild", action="store_true",
                        help="scoped_list: load the data again even when the database holds it already")
    parser.add_argument("--funnel-rows", type=int, default=1_000_000, help="funnel: opportunities (default 1000000)")
    parser.add_argument("--funnel-runs", type=int, default=15, help="funnel: timed runs (default 15)")
    parser.add_argument("--funnel-warmup", type=int, default=2, help="funnel: untimed runs first (default 2)")
    parser.add_argument("--funnel-rebuild", action="store_true",
                        help="funnel: load the data again even when the database holds it already")
    parser.add_argument("--booking-resources", type=int, default=2_000, help="bookings: screens booked (default 2000)")
    parser.add_argument("--booking-days", type=int, default=120,
                        help="bookings: bookings per screen, laid over two years (default 120)")
    parser.add_argument("--booking-runs", type=int, default=50, help="bookings: timed runs (default 50)")
    parser.add_argument("--booking-warmup", type=int, default=5, help="bookings: untimed runs first (default 5)")
    parser.add_argument("--booking-rebuild", action="store_true",
                        help="bookings: load the data again even when the database holds it already (PostgreSQL)")
    parser.add_argument("--auto-rows", type=int, default=100_000, help="automation: leads loaded before the rules (default 100000)")
    parser.add_argument("--auto-chunk", type=int, default=5_000, help="automation: leads per bulk_create call (default 5000)")
    parser.add_argument("--auto-runs", type=int, default=200, help="automation: timed runs per phase (default 200)")
    parser.add_argument("--auto-warmup", type=int, default=20, help="automation: untimed runs first (default 20)")
    parser.add_argument("--auto-profile-runs", type=int, default=50,
                        help="automation --profile: creates and queries profiled (default 50)")
    parser.add_argument("--profile", action="store_true",
                        help="bulk_insert: also print a cProfile of bulk_create; graphql_list, bookings: of the request path")
    parser.add_argument("--gql-profile-runs", type=int, default=50, help="graphql_list, bookings --profile: requests profiled (default 50)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    args = parser.parse_args(argv)
    only = {n.strip() for item in args.only or [] for n in item.split(",") if n.strip()}
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    args.only = only or set(BENCHMARKS)
    return args


def main(argv=None):
    args = parse_args(argv)
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    report = Report()
    workdir = args.workdir = tempfile.mkdtemp(prefix="lowcode-bench-")
    try:
        for backend in backends:
            kept = None  # (data group, runtime) kept for the next benchmark of the same group
            try:
                for name, bench in BENCHMARKS.items():
                    if name not in args.only:
                        continue
                    print(f"[{backend}] {name}", flush=True)
                    if name in POSTGRES_ONLY and backend != "postgresql":
                        report.add(name, backend, "skipped", "PostgreSQL only", "", "" if args.postgres else "pass --postgres URL to run it")
                        continue
                    group = SHARED_DATA.get(name)
                    if kept and (group is None or kept[0] != group):
                        kept[1].close()
                        kept = None
                    if kept:
                        rt = kept[1]
                    elif name in KEEPS_DATA and backend == "postgresql":
                        rt = KEEPS_DATA[name](args.postgres, args, reset_postgres)
                    else:
                        rt = fresh_runtime(backend, args.postgres, workdir, name)
                    kept = (group, rt) if group else None
                    try:
                        bench(rt, backend, report, args)
                    finally:
                        if not kept:
                            rt.close()
            finally:
                if kept:
                    kept[1].close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.print_table()
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"python": sys.version.split()[0], "at": datetime.now(timezone.utc).isoformat(),
                       "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items() if k not in ("postgres", "workdir")},
                       "results": report.rows}, out, indent=2, default=str)
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
