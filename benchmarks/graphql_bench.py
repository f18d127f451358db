"""GraphQL benchmarks for benchmarks/run.py: the HTTP API against raw SQL on the same database.

graphql_list  the 50 largest open opportunities, owner and account joined, over HTTP vs one raw JOIN
graphql_get   one opportunity by id over HTTP vs raw SQL by primary key; requests/s under gunicorn
schema_build  build_schema for 100 objects x 30 fields; first request after a metadata change

See benchmarks/README.md. Every GraphQL answer is checked against the raw SQL answer (same records,
same order, same values), so a fast but wrong result fails loudly instead of being reported.
"""
from __future__ import annotations

import cProfile
import http.client
import io
import json
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from time import perf_counter

from lowcode.graphql import schema as schema_module
from lowcode.graphql.schema import build_schema
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.graphql_names import list_field
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from werkzeug.serving import WSGIRequestHandler, make_server

TOKEN = "bench-token"
INDUSTRIES = ["technology", "retail", "finance", "healthcare", "energy", "media", "logistics", "education"]
STAGES = ["prospecting", "qualification", "quote", "negotiation", "closed_won", "closed_lost"]
SOURCES = ["web", "referral", "partner", "event", "cold_call"]
OPEN_STAGES = ["quote", "negotiation"]
NODE = "id name amount salesStage closeDate owner { fullName } account { name industry }"
LIST_QUERY = ("query TopOpportunities { opportunities(first: 50, orderBy: [AMOUNT_DESC], "
              "filter: {salesStage: {in: [QUOTE, NEGOTIATION]}}) { edges { node { " + NODE + " } } } }")
GET_QUERY = "query Opportunity($id: ID!) { opportunity(id: $id) { " + NODE + " } }"
# The same records by hand: same columns, filter, order (amount, then id, as the API pages), limit,
# and the same recycle-bin rule (deleted records, and deleted owners/accounts, are not shown).
RAW_SELECT = ("SELECT o.id, o.name, o.amount, o.sales_stage, o.close_date, u.full_name, a.name, a.industry "
              "FROM obj_opportunity o "
              "LEFT JOIN obj_user u ON u.id = o.owner_id AND u.deleted_at IS NULL "
              "LEFT JOIN obj_account a ON a.id = o.account AND a.deleted_at IS NULL ")
RAW_LIST = RAW_SELECT + "WHERE o.deleted_at IS NULL AND o.sales_stage IN ({p}, {p}) ORDER BY o.amount DESC, o.id LIMIT 50"
RAW_GET = RAW_SELECT + "WHERE o.id = {p} AND o.deleted_at IS NULL"


def pick(values):
    return {"values": [{"api_name": v, "label": v.replace("_", " ").title()} for v in values]}


ACCOUNT = {"api_name": "account", "label": "Account", "fields": [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "industry", "label": "Industry", "type": "picklist", "options": pick(INDUSTRIES)},
]}
# 'stage' is a reserved system field name (names.SYSTEM_FIELD_NAMES), hence 'sales_stage'.
OPPORTUNITY = {"api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities",
               "plural_label": "Opportunities", "fields": [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "amount", "label": "Amount", "type": "decimal", "indexed": True},
    {"api_name": "sales_stage", "label": "Sales stage", "type": "picklist", "options": pick(STAGES)},
    {"api_name": "close_date", "label": "Close date", "type": "date"},
    {"api_name": "probability", "label": "Probability", "type": "percent"},
    {"api_name": "quantity", "label": "Quantity", "type": "integer"},
    {"api_name": "source", "label": "Source", "type": "picklist", "options": pick(SOURCES)},
    {"api_name": "description", "label": "Description", "type": "textarea"},
    {"api_name": "is_priority", "label": "Is priority", "type": "boolean"},
    {"api_name": "next_step", "label": "Next step", "type": "text"},
    {"api_name": "account", "label": "Account", "type": "lookup", "options": {"target": "account"}},
]}


def ms(seconds):
    return seconds * 1000


def pct(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# -- data ----------------------------------------------------------------------------------------
def setup_crm(rt, backend, report, args, bench):
    """account, opportunity, 50 users, 5,000 accounts and --gql-rows opportunities (once per backend:
    graphql_list and graphql_get share them when both run)."""
    if "opportunity" in rt.catalog().objects:
        return
    rnd = random.Random(2024)
    t = perf_counter()
    rt.metadata.create_objects(SYSTEM_ACTOR, [ACCOUNT, OPPORTUNITY])
    users = [r["id"] for r in rt.records.bulk_create(
        SYSTEM_ACTOR, "user", [{"username": f"rep{i:02d}", "full_name": f"Sales Rep {i:02d}"} for i in range(50)])]
    accounts = []
    for start in range(0, 5_000, args.chunk):
        accounts += [r["id"] for r in rt.records.bulk_create(SYSTEM_ACTOR, "account", [
            {"name": f"Account {i:05d}", "industry": rnd.choice(INDUSTRIES)} for i in range(start, min(5_000, start + args.chunk))])]
    start_day = date(2024, 1, 1)
    for start in range(0, args.gql_rows, args.chunk):
        rt.records.bulk_create(SYSTEM_ACTOR, "opportunity", [{
            "name": f"Opportunity {i:06d}", "amount": f"{rnd.randint(100, 10**8) / 100:.2f}",
            "sales_stage": rnd.choice(STAGES), "close_date": (start_day + timedelta(days=rnd.randint(0, 730))).isoformat(),
            "probability": rnd.choice(["10", "25", "50", "75", "90"]), "quantity": rnd.randint(1, 500),
            "source": rnd.choice(SOURCES), "description": "Customer asked for a proposal. " * rnd.randint(1, 4),
            "is_priority": rnd.random() < 0.2, "next_step": rnd.choice(["call", "send quote", "demo", "follow up"]),
            "account": rnd.choice(accounts), "owner_id": rnd.choice(users),
        } for i in range(start, min(args.gql_rows, start + args.chunk))])
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE")
    report.add(bench, backend, "setup (objects, 50 users, 5,000 accounts, opportunities)", perf_counter() - t, "s",
               f"{args.gql_rows:,} opportunities through records.bulk_create, {args.chunk:,} per call")


# -- the HTTP server and client ------------------------------------------------------------------
class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class Server:
    """The Flask app served by werkzeug's threaded WSGI server (HTTP/1.1 keep-alive) on a thread."""

    def __init__(self, app):
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Client:
    """One keep-alive connection; ``post`` returns (seconds, status, body bytes)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

    def post(self, body: bytes):
        t = perf_counter()
        self.conn.request("POST", "/graphql", body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return perf_counter() - t, response.status, data

    def close(self):
        self.conn.close()


def encode(query, variables=None):
    body = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return json.dumps(body).encode()


def data_of(status, body):
    payload = json.loads(body)
    if status != 200 or payload.get("errors"):
        raise AssertionError(f"GraphQL request failed ({status}): {body[:500]!r}")
    return payload["data"]


# -- raw SQL -------------------------------------------------------------------------------------
class Raw:
    """The hand-written baseline: the DBAPI connection (psycopg or sqlite3) of a pooled connection,
    one statement (autocommit on PostgreSQL), rows turned into the API's JSON by hand."""

    def __init__(self, rt, backend):
        self.engine, self.sqlite = rt.engine, backend == "sqlite"
        p = "?" if self.sqlite else "%s"
        self.list_sql, self.get_sql = RAW_LIST.format(p=p), RAW_GET.format(p=p)
        self.scale = Decimal(1).scaleb(-2)

    def _node(self, row):
        rid, name, amount, stage, close_date, full_name, account_name, industry = row
        if self.sqlite:  # ids are 32 hex digits, decimals scaled integers, dates ISO text
            rid, amount = str(uuid.UUID(rid)), None if amount is None else Decimal(amount).scaleb(-2).quantize(self.scale)
        else:
            rid, close_date = str(rid), close_date and close_date.isoformat()
        return {"id": rid, "name": name, "amount": None if amount is None else str(amount),
                "salesStage": stage and stage.upper(), "closeDate": close_date,
                "owner": None if full_name is None else {"fullName": full_name},
                "account": None if account_name is None else {"name": account_name, "industry": industry and industry.upper()}}

    def _run(self, sql, params):
        raw = self.engine.raw_connection()  # a pooled connection, as a request would take
        driver = raw.driver_connection
        try:
            if not self.sqlite:
                driver.autocommit = True  # one round trip: no BEGIN/COMMIT around a single read
            cursor = raw.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.close()
        finally:
            if not self.sqlite:
                driver.autocommit = False
            raw.close()  # back to the pool
        return rows

    def top(self):
        rows = self._run(self.list_sql, OPEN_STAGES)
        return json.dumps({"data": {"opportunities": {"edges": [{"node": self._node(r)} for r in rows]}}})

    def get(self, record_id):
        rid = uuid.UUID(record_id).hex if self.sqlite else record_id
        rows = self._run(self.get_sql, (rid,))
        return json.dumps({"data": {"opportunity": self._node(rows[0]) if rows else None}})


def timed(fn, *a):
    t = perf_counter()
    result = fn(*a)
    return perf_counter() - t, result


def compare(report, bench, backend, label, ours, raw, runs, goal, goal_text):
    """median/p90 of both, and the ratio ours/raw of the medians."""
    ratio = statistics.median(ours) / statistics.median(raw)
    report.add(bench, backend, f"{label}: GraphQL over HTTP", ms(statistics.median(ours)), "ms",
               f"median of {runs}; p90 {ms(pct(ours, 90)):.2f} ms")
    report.add(bench, backend, f"{label}: raw SQL + json.dumps", ms(statistics.median(raw)), "ms",
               f"median of {runs}; p90 {ms(pct(raw, 90)):.2f} ms")
    report.add(bench, backend, f"{label}: ratio ours/raw (median)", ratio, "x",
               f"p90 ratio {pct(ours, 90) / pct(raw, 90):.2f}x; {goal_text}: " + ("met" if ratio <= goal else "NOT met"))


def serve(rt):
    app = create_app(Settings(database_url=str(rt.engine.url), api_token=TOKEN), runtime=rt)
    return app, Server(app)


# -- graphql_list --------------------------------------------------------------------------------
def bench_graphql_list(rt, backend, report, args):
    name = "graphql_list"
    setup_crm(rt, backend, report, args, name)
    raw = Raw(rt, backend)
    app, server = serve(rt)
    client = Client(server.port)
    body = encode(LIST_QUERY)
    endpoint = app.extensions["lowcode"]["endpoint"]
    try:
        expected = json.loads(raw.top())["data"]
        first_s, (status, answer) = timed(lambda: client.post(body)[1:])
        got = data_of(status, answer)
        check_same(got, expected, "opportunities")
        report.add(name, backend, "first request (schema build + query)", ms(first_s), "ms")
        for _ in range(args.gql_warmup):
            client.post(body)
            raw.top()
        ours, base, inproc = [], [], []
        for _ in range(args.gql_runs):  # interleaved: both see the same conditions
            seconds, status, answer = client.post(body)
            ours.append(seconds)
            base.append(timed(raw.top)[0])
            inproc.append(timed(endpoint.run, SYSTEM_ACTOR, {"query": LIST_QUERY})[0])
        check_same(data_of(status, answer), expected, "opportunities")
        assert json.loads(raw.top())["data"] == expected
        compare(report, name, backend, "top 50", ours, base, args.gql_runs, 1.09, "goal <= 1.09x (PostGraphile)")
        report.add(name, backend, "top 50: GraphQL in-process (endpoint.run)", ms(statistics.median(inproc)), "ms",
                   f"no HTTP/Flask/JSON encoding; {statistics.median(inproc) / statistics.median(base):.2f}x raw")
        report.add(name, backend, "same 50 ids, same order, same values", "yes", "",
                   f"{len(expected['opportunities']['edges'])} rows, checked on the first and last run")
        gunicorn_latency(rt, backend, report, args, name, "top 50", [body] * (args.gql_warmup + args.gql_runs), base,
                         lambda n, status, answer: check_same(data_of(status, answer), expected, "opportunities"))
        if args.profile:
            profile_requests(app, body, backend, f"graphql_list request path, {args.gql_profile_runs} requests",
                             args.gql_profile_runs)
    finally:
        client.close()
        server.close()


def check_same(got, expected, key):
    ours = [e["node"]["id"] for e in got[key]["edges"]] if key == "opportunities" else [got[key] and got[key]["id"]]
    theirs = [e["node"]["id"] for e in expected[key]["edges"]] if key == "opportunities" else [expected[key] and expected[key]["id"]]
    assert ours == theirs, f"GraphQL and raw SQL return different records: {ours[:5]}... vs {theirs[:5]}..."
    assert got == expected, f"GraphQL and raw SQL return different values:\n{json.dumps(got)[:800]}\n{json.dumps(expected)[:800]}"


def profile_requests(app, body, backend, title, runs):
    """cProfile of ``runs`` requests through the WSGI app (Flask test client, same thread)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    client.post("/graphql", data=body, headers=headers)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.post("/graphql", data=body, headers=headers)
    profiler.disable()
    for order, restrict, label in (("cumulative", (15,), "all code"), ("cumulative", ("lowcode|/platform/", 15), "platform code"),
                                   ("tottime", (15,), "all code")):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(*restrict)
        text = out.getvalue()
        print(f"\n--- [{backend}] cProfile of {title}, top 15 by {order} ({label}) ---")
        print(text[text.find("   ncalls"):].rstrip())


# -- graphql_get ---------------------------------------------------------------------------------
def bench_graphql_get(rt, backend, report, args):
    name = "graphql_get"
    setup_crm(rt, backend, report, args, name)
    raw = Raw(rt, backend)
    with rt.engine.connect() as conn:
        ids = [str(uuid.UUID(str(i))) for i in conn.exec_driver_sql("SELECT id FROM obj_opportunity").scalars()]
    rnd = random.Random(7)
    sample = [rnd.choice(ids) for _ in range(args.gql_runs + args.gql_warmup)]
    bodies = [encode(GET_QUERY, {"id": i}) for i in sample]
    app, server = serve(rt)
    client = Client(server.port)
    try:
        endpoint = app.extensions["lowcode"]["endpoint"]
        ours, base, inproc = [], [], []
        for n, (record_id, body) in enumerate(zip(sample, bodies)):
            seconds, status, answer = client.post(body)
            raw_s, raw_json = timed(raw.get, record_id)
            inproc_s = timed(endpoint.run, SYSTEM_ACTOR, {"query": GET_QUERY, "variables": {"id": record_id}})[0]
            if n < 20 or n == len(sample) - 1:
                check_same(data_of(status, answer), json.loads(raw_json)["data"], "opportunity")
            if n >= args.gql_warmup:
                ours.append(seconds)
                base.append(raw_s)
                inproc.append(inproc_s)
        compare(report, name, backend, "get by id", ours, base, args.gql_runs, 4.9, "goal <= 4.9x (PostGraphile)")
        report.add(name, backend, "get by id: GraphQL in-process (endpoint.run)", ms(statistics.median(inproc)), "ms",
                   f"no HTTP/Flask/JSON encoding; {statistics.median(inproc) / statistics.median(base):.2f}x raw")
        report.add(name, backend, "same record, same values", "yes", "", "checked on 21 random ids")
        gunicorn_latency(rt, backend, report, args, name, "get by id", bodies, base,
                         lambda n, status, answer: check_same(data_of(status, answer), json.loads(raw.get(sample[n]))["data"], "opportunity"))
    finally:
        client.close()
        server.close()
    rps_gunicorn(rt, backend, report, args, name, ids)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_gunicorn():
    try:
        import gunicorn  # noqa: F401  (run as a subprocess; only checked here)
    except ImportError:
        return False
    return True


@contextmanager
def gunicorn_server(rt, backend, args, workers, extra=()):
    """``gunicorn -w N 'lowcode.server.app:create_app()'`` as in production: a subprocess reading
    LOWCODE_DATABASE_URL / LOWCODE_API_TOKEN; yields its port once /healthz answers, then stops it."""
    port = free_port()
    log_path = os.path.join(args.workdir, f"gunicorn-{backend}-{port}.log")
    env = {**os.environ, "LOWCODE_DATABASE_URL": rt.engine.url.render_as_string(hide_password=False), "LOWCODE_API_TOKEN": TOKEN}
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), *extra, *gunicorn_quiet(), "-b", f"127.0.0.1:{port}",
               "lowcode.server.app:create_app()"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_healthy(port, proc, 60):
            raise RuntimeError(f"gunicorn did not start: {tail(log_path)}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gunicorn_latency(rt, backend, report, args, name, label, bodies, raw_samples, check):
    """The same requests, one at a time on one keep-alive connection, through ``gunicorn -w 1 -k
    gthread`` (the production server instead of werkzeug's): median/p90 and ratio to raw SQL."""
    metric = f"{label}: GraphQL over HTTP, gunicorn -w 1 gthread"
    if not have_gunicorn():
        report.add(name, backend, metric, "skipped", "", "gunicorn is not installed: pip install gunicorn")
        return
    try:
        with gunicorn_server(rt, backend, args, 1, ["-k", "gthread", "--threads", "2"]) as port:
            client = Client(port)
            try:
                samples = []
                for n, body in enumerate(bodies):
                    seconds, status, answer = client.post(body)
                    if n < 5 or n == len(bodies) - 1:
                        check(n, status, answer)
                    if n >= args.gql_warmup:
                        samples.append(seconds)
            finally:
                client.close()
    except RuntimeError as exc:
        report.add(name, backend, metric, "failed", "", str(exc)[:300])
        return
    report.add(name, backend, metric, ms(statistics.median(samples)), "ms",
               f"median of {len(samples)}; p90 {ms(pct(samples, 90)):.2f} ms; "
               f"{statistics.median(samples) / statistics.median(raw_samples):.2f}x raw (median)")


def rps_gunicorn(rt, backend, report, args, name, ids):
    """``gunicorn -w 2`` driven by client threads (keep-alive connections; sync workers close them)."""
    if not have_gunicorn():
        report.add(name, backend, "rps, gunicorn -w 2", "skipped", "", "gunicorn is not installed: pip install gunicorn")
        return
    for label, extra in (("sync workers", []), ("gthread workers, keep-alive", ["-k", "gthread", "--threads", "4"])):
        metric = f"rps, gunicorn -w 2 ({label})"
        try:
            with gunicorn_server(rt, backend, args, 2, extra) as port:
                per_thread, threads = args.rps_requests, args.rps_threads
                rnd = random.Random(11)
                plans = [[encode(GET_QUERY, {"id": rnd.choice(ids)}) for _ in range(per_thread)] for _ in range(threads)]
                for plan in plans:  # warm both workers (schema build, pools) outside the clock
                    warm = Client(port)
                    for body in plan[:20]:
                        warm.post(body)
                    warm.close()
                latencies, failures = [], []
                barrier = threading.Barrier(threads + 1)
                drivers = [threading.Thread(target=drive, args=(port, plan, barrier, latencies, failures)) for plan in plans]
                for d in drivers:
                    d.start()
                barrier.wait()
                t = perf_counter()
                for d in drivers:
                    d.join()
                wall = perf_counter() - t
        except RuntimeError as exc:
            report.add(name, backend, metric, "failed", "", str(exc)[:300])
            continue
        total = per_thread * threads
        report.add(name, backend, metric, total / wall, "req/s",
                   f"{threads} threads x {per_thread:,} get-by-id; median latency {ms(statistics.median(latencies)):.2f} ms, "
                   f"p90 {ms(pct(latencies, 90)):.2f} ms" + (f"; {len(failures)} FAILED: {failures[0]!r}" if failures else ""))


def drive(port, plan, barrier, latencies, failures):
    """One client thread: its requests in turn on one connection (reopened if the server closes it)."""
    client = Client(port)
    barrier.wait()
    for body in plan:
        try:
            seconds, status, answer = client.post(body)
            latencies.append(seconds)
            if status != 200 or b'"errors"' in answer:
                failures.append(answer[:200])
        except (http.client.HTTPException, OSError) as exc:
            failures.append(repr(exc))
            client.close()
            client = Client(port)
    client.close()


def gunicorn_quiet():
    """Newer gunicorns open a control socket at a fixed path (~/.gunicorn): not for a throwaway server."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def wait_healthy(port, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return True
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    return False


def tail(path, lines=5):
    with open(path, errors="replace") as f:
        return " | ".join(f.read().strip().splitlines()[-lines:])


# -- schema_build --------------------------------------------------------------------------------
def bench_schema_build(rt, backend, report, args):
    from run import catalog_definitions

    name, objects, fields = "schema_build", args.schema_objects, args.schema_fields
    defs = catalog_definitions(objects, fields)
    for start in range(0, objects, 20):
        rt.metadata.create_objects(SYSTEM_ACTOR, defs[start:start + 20])
    catalog = rt.catalog()
    report.add(name, backend, "objects x fields", f"{objects} x {fields}", "", "types as catalog_build; 2 lookups per object")
    schema_module.platform_schema.cache_clear()
    cold_s, _ = timed(build_schema, catalog)
    report.add(name, backend, "first build in a process", ms(cold_s), "ms", "incl. the shared metadata API part (built once)")
    builds = []
    for _ in range(args.schema_repeat):
        seconds, generated = timed(build_schema, catalog)  # the previous schema is alive meanwhile, as in a server
        builds.append(seconds)
    build_ms = ms(statistics.median(builds))
    report.add(name, backend, f"build_schema (median of {len(builds)})", build_ms, "ms",
               f"min {ms(min(builds)):.1f}, max {ms(max(builds)):.1f}; validation included; goal < 300 ms: "
               + ("met" if build_ms < 300 else "NOT met"))
    report.add(name, backend, "types in schema", len(generated.schema.type_map))

    # The first request after a metadata change made by another process: catalog reload, schema
    # build and validation, parsing, and the query, through the HTTP server.
    other = Runtime.connect(rt.engine.url.render_as_string(hide_password=False))
    _, server = serve(rt)
    client = Client(server.port)
    obj = catalog.object(defs[0]["api_name"])
    body = encode(f"{{ {list_field(obj)}(first: 10) {{ edges {{ node {{ id }} }} }} }}")
    try:
        data_of(*client.post(body)[1:])
        firsts, seconds_ = [], []
        for k in range(args.schema_changes):
            other.metadata.create_field(SYSTEM_ACTOR, defs[k % objects]["api_name"],
                                        {"api_name": f"added_{k}", "label": f"Added {k}", "type": "text"})
            s, status, answer = client.post(body)
            data_of(status, answer)
            firsts.append(s)
            s, status, answer = client.post(body)
            data_of(status, answer)
            seconds_.append(s)
        report.add(name, backend, "first request after a metadata change", ms(statistics.median(firsts)), "ms",
                   f"median of {len(firsts)}; change made by another Runtime; catalog reload + build + query")
        report.add(name, backend, "the request after it (schema cached)", ms(statistics.median(seconds_)), "ms",
                   f"median of {len(seconds_)}")
    finally:
        client.close()
        server.close()
        other.close()


BENCHMARKS = {"graphql_list": bench_graphql_list, "graphql_get": bench_graphql_get, "schema_build": bench_schema_build}
SHARED_DATA = {"graphql_list": "crm", "graphql_get": "crm"}
