"""Permission benchmark for benchmarks/run.py: what row-level security costs a list query.

scoped_list  1,000,000 deals over a 4-level org tree of 200 units (PostgreSQL only). The same list
             query by an administrator (unscoped) and by users whose roles reach fewer rows (a
             subsidiary head, a regional director, a department's sales rep): medians through the
             GraphQL endpoint in process (token lookup included), the SQL the permission predicate
             produces against the same SQL without it, EXPLAIN (ANALYZE, BUFFERS) of the scoped SQL,
             and alternative predicates written by hand to show what a different one would cost.

The data is loaded once and kept (a marker table records how it was made): re-runs reuse it unless
the parameters differ or --sec-rebuild is given. See benchmarks/README.md.
"""
from __future__ import annotations

import json
import random
import re
import statistics
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from time import perf_counter

from lowcode.graphql.endpoint import GraphQLEndpoint
from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.metadata.database import database_engine
from lowcode.runtime import Runtime
from lowcode.runtime.records import new_record_id
from lowcode.runtime.security import store
from sqlalchemy import event

NAME = "scoped_list"
MARKER = "bench_scoped_list_marker"
DATA_FORMAT = 1
"""Raised when the generated data changes shape, so that old databases are rebuilt."""

STAGES = ["prospecting", "qualification", "quote", "negotiation", "closed_won", "closed_lost"]
SUBSIDIARIES, REGIONS_PER_SUBSIDIARY, UNITS = 4, 5, 200
DEAL = {"api_name": "deal", "label": "Deal", "plural_api_name": "deals", "plural_label": "Deals", "fields": [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "amount", "label": "Amount", "type": "currency"},
    # 'stage' is a reserved system field name (names.SYSTEM_FIELD_NAMES), hence 'sales_stage'.
    {"api_name": "sales_stage", "label": "Sales stage", "type": "picklist",
     "options": {"values": [{"api_name": s, "label": s.replace("_", " ").title()} for s in STAGES]}},
    {"api_name": "close_date", "label": "Close date", "type": "date"},
]}
ACTORS = [  # (key, username, label); the administrator first: the unscoped reference
    ("admin", "bench_admin", "administrator (unscoped)"),
    ("head", "bench_head", "subsidiary head (unit_and_below)"),
    ("director", "bench_director", "regional director (unit_and_below)"),
    ("rep", "bench_rep", "sales rep (own)"),
]
QUERIES = [  # (key, label, GraphQL)
    ("list", "list first 50",
     "query ScopedList { deals(first: 50) { nodes { id name amount salesStage } } }"),
    ("top", "filter stage + order -amount",
     "query ScopedTop { deals(first: 50, filter: {salesStage: {eq: NEGOTIATION}}, orderBy: [AMOUNT_DESC]) "
     "{ nodes { id name amount salesStage } } }"),
]
GOAL = 1.3
COPY_COLUMNS = ("id", "owner_id", "org_unit_id", "created_at", "created_by", "updated_at", "updated_by", "version",
                "name", "amount", "sales_stage", "close_date")


def ms(seconds):
    return seconds * 1000


def pct(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def params_of(args):
    return {"format": DATA_FORMAT, "rows": args.sec_rows, "units": UNITS, "reps_per_department": args.sec_reps,
            "shares": args.sec_shares, "seed": 2024}


# -- the database --------------------------------------------------------------------------------
def stored_params(url, marker=None):
    """The parameters in the ``marker`` table (scoped_list's by default), or None when the database
    holds no (complete) data of that benchmark."""
    marker = marker or MARKER
    engine = database_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT to_regclass(%s)", (f"public.{marker}",)).scalar()
            if found is None:
                return None
            row = conn.exec_driver_sql(f"SELECT params FROM {marker}").first()
            return row[0] if row else None
    finally:
        engine.dispose()


def open_runtime(url, args, reset):
    """The runtime for scoped_list: the kept database when its marker matches the parameters,
    else an empty one (``reset`` drops the public schema) that the benchmark fills."""
    wanted = params_of(args)
    if args.sec_rebuild or stored_params(url) != wanted:
        reset(url)
    return Runtime.connect(url).install()


def load(rt, report, args):
    """Units, roles, users and memberships through the security service; the deals, shares and
    team members by raw bulk inserts (COPY); then VACUUM ANALYZE and the marker."""
    params = params_of(args)
    rnd = random.Random(params["seed"])
    sec, S = rt.security, SYSTEM_ACTOR
    t0 = perf_counter()
    rt.metadata.create_object(S, DEAL)

    # the org tree: 1 group -> 4 subsidiaries -> 5 regions each -> departments (200 units in all)
    group = sec.create_unit(S, "Group")
    subsidiaries = [sec.create_unit(S, f"Subsidiary {s + 1}", group["id"]) for s in range(SUBSIDIARIES)]
    regions = [sec.create_unit(S, f"Region {s + 1}.{r + 1}", sub["id"])
               for s, sub in enumerate(subsidiaries) for r in range(REGIONS_PER_SUBSIDIARY)]
    departments = [sec.create_unit(S, f"Department {d + 1}", regions[d % len(regions)]["id"])
                   for d in range(UNITS - 1 - len(subsidiaries) - len(regions))]
    t_units = perf_counter()

    sec.create_role(S, "sales_rep", "Sales rep")
    sec.set_object_grant(S, "sales_rep", "deal", ["read", "create", "update"], "own", "own")
    sec.create_role(S, "director", "Director")
    sec.set_object_grant(S, "director", "deal", ["read", "create", "update"], "unit_and_below", "unit_and_below")

    reps = []  # (user id, department id)
    for d, dept in enumerate(departments):
        for k in range(args.sec_reps):
            user = sec.create_user(S, {"username": f"rep_{d:03d}_{k}", "full_name": f"Rep {d}/{k}"})
            sec.add_membership(S, user["id"], dept["id"], "sales_rep")
            reps.append((user["id"], dept["id"]))
    director_region = regions[0]  # Region 1.1, below Subsidiary 1
    featured = {"admin": (group, "administrator"), "head": (subsidiaries[0], "director"),
                "director": (director_region, "director")}
    users = {}
    for key, username, label in ACTORS:
        if key == "rep":
            continue
        unit, role = featured[key]
        user = sec.create_user(S, {"username": username, "full_name": label})
        sec.add_membership(S, user["id"], unit["id"], role)
        users[key] = user["id"]
    # the featured rep: an ordinary rep account of a department in the director's region
    rep_dept = departments[0]  # department 1 sits in region 0
    rep_user = sec.create_user(S, {"username": "bench_rep", "full_name": "Featured sales rep"})
    sec.add_membership(S, rep_user["id"], rep_dept["id"], "sales_rep")
    users["rep"] = rep_user["id"]
    reps.append((rep_user["id"], rep_dept["id"]))
    t_security = perf_counter()
    print(f"  org tree ({len(departments) + len(regions) + len(subsidiaries) + 1} units) {t_units - t0:.1f} s; "
          f"roles, {len(reps) + 3} users, memberships {t_security - t_units:.1f} s", flush=True)

    # the deals: COPY of pre-formatted rows, ids time-ordered like the service's (UUIDv7)
    rows, chunk = args.sec_rows, 50_000
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    close0 = date(2024, 1, 1)
    shared_at = set(rnd.sample(range(rows), min(rows, 2 * args.sec_shares)))
    picked = []
    raw = rt.engine.raw_connection()
    try:
        driver = raw.driver_connection
        with driver.cursor() as cur:
            with cur.copy(f"COPY obj_deal ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
                for first in range(0, rows, chunk):
                    lines = []
                    for i in range(first, min(rows, first + chunk)):
                        rid = new_record_id()
                        owner, unit = reps[rnd.randrange(len(reps))]
                        at = (start + timedelta(seconds=i * 60)).isoformat()
                        lines.append(f"{rid}\t{owner}\t{unit}\t{at}\t{owner}\t{at}\t{owner}\t1\tDeal {i:07d}\t"
                                     f"{rnd.randint(100, 10**8) / 100:.2f}\t{STAGES[rnd.randrange(6)]}\t"
                                     f"{(close0 + timedelta(days=rnd.randrange(730))).isoformat()}\n")
                        if i in shared_at:
                            picked.append(rid)
                    copy.write("".join(lines))
        driver.commit()
    finally:
        raw.close()
    t_copy = perf_counter()
    print(f"  {rows:,} deals by COPY {t_copy - t_security:.1f} s", flush=True)

    # shares (half with users, half with units) and team members, on random deals
    now = datetime.now(timezone.utc)
    rnd.shuffle(picked)
    user_ids = [u for u, _ in reps] + [users["director"], users["head"]]
    unit_ids = [u["id"] for u in departments + regions]
    shares, seen = [], set()
    for n, rid in enumerate(picked[:args.sec_shares]):
        if n < 40:  # a few for the featured users, so that their share branch finds something
            grantee, kind = users["rep" if n % 2 else "director"], "user"
        elif n % 2:
            grantee, kind = rnd.choice(user_ids), "user"
        else:
            grantee, kind = rnd.choice(unit_ids), "unit"
        if (rid, grantee) not in seen:
            seen.add((rid, grantee))
            shares.append({"object_api_name": "deal", "record_id": rid, "grantee_id": grantee, "grantee_kind": kind,
                           "access": "read" if n % 3 else "edit", "created_at": now, "created_by": None})
    team = [{"object_api_name": "deal", "record_id": rid, "user_id": users["rep"] if n < 20 else rnd.choice(user_ids),
             "access": "read" if n % 3 else "edit", "team_role": "", "created_at": now, "created_by": None}
            for n, rid in enumerate(picked[args.sec_shares:])]
    with rt.engine.begin() as conn:
        for first in range(0, len(shares), 5_000):
            conn.execute(store.record_shares.insert(), shares[first:first + 5_000])
        for first in range(0, len(team), 5_000):
            conn.execute(store.team_members.insert(), team[first:first + 5_000])
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        conn.exec_driver_sql(f"CREATE TABLE {MARKER} (params jsonb NOT NULL, loaded_at timestamptz NOT NULL, "
                             "load_seconds double precision NOT NULL)")
        conn.exec_driver_sql(f"INSERT INTO {MARKER} VALUES (%s, now(), %s)", (json.dumps(params), perf_counter() - t0))
    total = perf_counter() - t0
    print(f"  {len(shares):,} shares, {len(team):,} team members, VACUUM ANALYZE {perf_counter() - t_copy:.1f} s", flush=True)
    report.add(NAME, "postgresql", "load (units, users, memberships, deals, shares)", total, "s",
               f"{rows:,} deals by COPY in {t_copy - t_security:.0f} s; security setup through SecurityService "
               f"{t_security - t0:.0f} s; kept for re-runs (--sec-rebuild to redo)")


# -- measuring -----------------------------------------------------------------------------------
@contextmanager
def capturing(engine):
    """The statements (and DBAPI parameters) the engine sends meanwhile."""
    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


class Raw:
    """Statements through the DBAPI (psycopg) connection of a pooled connection, autocommit: one
    round trip, rows fetched, nothing else (the same as graphql_bench's raw side)."""

    def __init__(self, engine):
        self.engine = engine

    def run(self, sql, params):
        raw = self.engine.raw_connection()
        driver = raw.driver_connection
        try:
            driver.autocommit = True
            with driver.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            driver.autocommit = False
            raw.close()

    def timed(self, sql, params):
        t = perf_counter()
        rows = self.run(sql, params)
        return perf_counter() - t, rows

    def explain(self, sql, params):
        """EXPLAIN (ANALYZE, BUFFERS): the text plan, and a one-line summary from the JSON plan."""
        text = "\n".join(r[0] for r in self.run("EXPLAIN (ANALYZE, BUFFERS) " + sql, params))
        plan = self.run("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)[0][0][0]
        return text, summarize(plan)


SCAN_WORDS = {"Seq Scan": "seq scan", "Index Scan": "index scan", "Index Only Scan": "index-only scan",
              "Bitmap Index Scan": "bitmap", "Bitmap Heap Scan": "bitmap heap scan"}


def summarize(plan):
    """How obj_deal is read (scan, index), how many matching rows the planner expected, rows read
    from it and removed by filters, buffers and execution time, from an EXPLAIN (ANALYZE, BUFFERS,
    FORMAT JSON) plan. The subplans (units, shares, team) are in the printed plans."""
    scans, removed, read, expected = [], 0, 0, []

    def walk(node, sub, gathered):
        nonlocal removed, read
        kind, index = node["Node Type"], node.get("Index Name") or ""
        on_deal = node.get("Relation Name") == "obj_deal" or index.startswith(("ix_obj_deal_", "obj_deal_"))
        loops = node.get("Actual Loops", 1)
        if kind in ("Gather", "Gather Merge"):
            gathered = node["Plan Rows"]
        if on_deal and not sub:
            name = index.replace("ix_obj_deal_", "").replace("obj_deal_", "")
            parallel = node.get("Parallel Aware")
            scans.append(f"{'parallel ' if parallel else ''}{SCAN_WORDS.get(kind, kind)}{' ' + name if name else ''}")
            removed += (node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)) * loops
            if kind != "Bitmap Index Scan":
                read += node["Actual Rows"] * loops + node.get("Rows Removed by Filter", 0) * loops
                if not expected:  # the planner's guess of the matching rows (all of them, before any LIMIT)
                    expected.append(gathered if parallel and gathered else node["Plan Rows"])
        for child in node.get("Plans", []):
            walk(child, sub or child.get("Parent Relationship") in ("SubPlan", "InitPlan") and not on_deal, gathered)

    walk(plan["Plan"], False, None)
    top = plan["Plan"]
    buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    guess = f" (planner expected {expected[0]:,} matches)" if expected else ""
    return (f"{' + '.join(dict.fromkeys(scans))}{guess}: {read:,} rows read, {removed:,} filtered out; {buffers:,} buffers; "
            f"{plan['Execution Time']:.2f} ms")


def abbreviated(text, width=150):
    return "\n".join("    " + (line if len(line) <= width else line[:width - 3] + "...") for line in text.splitlines())


# -- alternative predicates (raw SQL only) -----------------------------------------------------------
OWNER_INDEX = "bench_scoped_list_owner_id_id"
"""A composite index (owner_id, id) made only for the ``split+index`` measurement, then dropped."""
LOW_RANDOM_PAGE_COST = 1.1
VARIANTS = {
    "units_listed": "the subtree's unit ids resolved before the query (the process already holds every unit's path) "
                    "and sent as a list; shares and team still IN (subquery)",
    "any_array": "units listed; shares and team as id = ANY(ARRAY(subquery)) (InitPlans): every OR branch indexable, "
                 "one statement",
    "any_array_sql": "nothing resolved in Python: units, shares and team each as = ANY(ARRAY(subquery))",
    "resolved": "units listed and the share/team record ids read by a first statement (its time included): "
                "only literal arrays in the predicate",
    "in_union_all": "id IN (owner's ids UNION ALL units' ids UNION ALL shared ids UNION ALL team ids)",
    "split": "(owner OR units: ordered, limited) UNION ALL (shared/team records outside that: ordered, limited), "
             "ordered and limited again: the OR of subqueries leaves the indexable branch",
    f"any_array@rpc{LOW_RANDOM_PAGE_COST}": f"any_array with random_page_cost = {LOW_RANDOM_PAGE_COST} (default 4)",
    f"resolved@rpc{LOW_RANDOM_PAGE_COST}": f"resolved with random_page_cost = {LOW_RANDOM_PAGE_COST} (default 4)",
    "split+index": "split, with an extra index on (owner_id, id) (created for this run, dropped after)",
}
SHARES_SQL = ("SELECT s.record_id FROM lc_record_share s WHERE s.object_api_name = 'deal' "
              "AND s.grantee_id = ANY(%(alt_reach)s) AND s.access IN ('read', 'edit')")
TEAM_SQL = ("SELECT t.record_id FROM lc_team_member t WHERE t.object_api_name = 'deal' "
            "AND t.user_id = %(alt_user)s AND t.access IN ('read', 'edit')")
BELOW_SQL = "SELECT u.id FROM obj_org_unit u WHERE u.path LIKE ANY(%(alt_paths)s)"


class Statement:
    """One way to read a scoped page: SQL and parameters on a Raw; ``pre`` is a statement run
    first whose time counts too (reading the shared record ids)."""

    def __init__(self, raw, sql, params, pre=None):
        self.raw, self.sql, self.params, self.pre = raw, sql, params, pre

    def run(self):
        if self.pre is not None:
            self.raw.run(*self.pre)
        return self.raw.run(self.sql, self.params)

    def timed(self):
        t = perf_counter()
        rows = self.run()
        return perf_counter() - t, rows

    def explain(self):
        return self.raw.explain(self.sql, self.params)


def scope_of(access, paths):
    """(user id, unit ids the read scope reaches, ids whose shares reach the user, subtree paths)."""
    scope = access.on("deal").scopes["read"]
    units = sorted(set(scope.units) | {u for u, p in paths.items() if any(p.startswith(s) for s in scope.subtrees)})
    return access.user_id, units, sorted({access.user_id, *access.reach}), list(scope.subtrees)


def variants(unscoped, access, paths, raw, low_raw):
    """The hand-written statements for one actor and query: name -> Statement (see VARIANTS)."""
    base_sql, base_params = unscoped
    order_at = base_sql.rindex(" ORDER BY ")
    select_part, order_part = base_sql[:order_at], base_sql[order_at:]
    user, units, reach, subtrees = scope_of(access, paths)
    params = {**base_params, "alt_user": uuid.UUID(user), "alt_units": [uuid.UUID(u) for u in units],
              "alt_reach": [uuid.UUID(r) for r in reach], "alt_paths": [p + "%" for p in subtrees]}
    owner = "obj_deal.owner_id = %(alt_user)s"
    listed = owner + (" OR obj_deal.org_unit_id = ANY(%(alt_units)s)" if units else "")
    below = f" OR obj_deal.org_unit_id = ANY(ARRAY({BELOW_SQL}))" if subtrees else ""

    def where(predicate, extra_params=None, on=raw, pre=None):
        return Statement(on, f"{select_part} AND ({predicate}){order_part}", {**params, **(extra_params or {})}, pre)

    shared_sql = f"{SHARES_SQL} UNION {TEAM_SQL}"
    shared = [r[0] for r in raw.run(shared_sql, params)]
    resolved = (f"{listed} OR obj_deal.id = ANY(%(alt_shared)s)", {"alt_shared": shared})
    outer_order = re.sub(r"obj_deal\.(\w+)", r"r_\1", order_part)
    split_sql = (f"SELECT * FROM (({select_part} AND ({listed}){order_part}) UNION ALL "
                 f"({select_part} AND obj_deal.id IN ({shared_sql}) AND ({listed}) IS NOT TRUE{order_part})) AS scoped{outer_order}")
    rpc = f"@rpc{LOW_RANDOM_PAGE_COST}"
    return {
        "units_listed": where(f"{listed} OR obj_deal.id IN ({SHARES_SQL}) OR obj_deal.id IN ({TEAM_SQL})"),
        "any_array": where(f"{listed} OR obj_deal.id = ANY(ARRAY({SHARES_SQL})) OR obj_deal.id = ANY(ARRAY({TEAM_SQL}))"),
        "any_array_sql": where(f"{owner}{below} OR obj_deal.id = ANY(ARRAY({SHARES_SQL})) OR obj_deal.id = ANY(ARRAY({TEAM_SQL}))"),
        "resolved": where(*resolved, pre=(shared_sql, params)),
        "in_union_all": where("obj_deal.id IN (SELECT d.id FROM obj_deal d WHERE d.owner_id = %(alt_user)s"
                              + (" UNION ALL SELECT d.id FROM obj_deal d WHERE d.org_unit_id = ANY(%(alt_units)s)" if units else "")
                              + f" UNION ALL {SHARES_SQL} UNION ALL {TEAM_SQL})"),
        "split": Statement(raw, split_sql, params),
        "any_array" + rpc: where(f"{listed} OR obj_deal.id = ANY(ARRAY({SHARES_SQL})) OR obj_deal.id = ANY(ARRAY({TEAM_SQL}))",
                                 on=low_raw),
        "resolved" + rpc: where(*resolved, on=low_raw, pre=(shared_sql, params)),
        "split+index": Statement(raw, split_sql, params),
    }


def owner_index(engine, create):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {OWNER_INDEX}")
        if create:
            conn.exec_driver_sql(f"CREATE INDEX {OWNER_INDEX} ON obj_deal (owner_id, id)")


# -- the benchmark -----------------------------------------------------------------------------------
def bench_scoped_list(rt, backend, report, args):
    if "deal" not in rt.catalog().objects:
        load(rt, report, args)
    else:
        with rt.engine.connect() as conn:
            loaded_at, seconds = conn.exec_driver_sql(f"SELECT loaded_at, load_seconds FROM {MARKER}").first()
        report.add(NAME, backend, "load", "reused", "", f"loaded {loaded_at:%Y-%m-%d %H:%M} in {seconds:.0f} s; "
                   "--sec-rebuild to load again")
    owner_index(rt.engine, False)  # left over from an interrupted run
    sec = rt.security
    with rt.engine.connect() as conn:
        users = {key: str(conn.exec_driver_sql("SELECT id FROM obj_user WHERE username = %s", (username,)).scalar_one())
                 for key, username, _ in ACTORS}
        total_rows = conn.exec_driver_sql("SELECT count(*) FROM obj_deal WHERE deleted_at IS NULL").scalar_one()
        size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('obj_deal'))").scalar_one()
        paths = {str(i): p for i, p in conn.exec_driver_sql("SELECT id, path FROM obj_org_unit WHERE deleted_at IS NULL")}
    tokens = {key: sec.issue_token(SYSTEM_ACTOR, "scoped_list benchmark", user_id=uid)["token"] for key, uid in users.items()}
    labels = {key: label for key, _, label in ACTORS}
    scoped = [key for key in users if key != "admin"]
    endpoint = GraphQLEndpoint(rt)
    raw = Raw(rt.engine)
    low_engine = database_engine(rt.engine.url.render_as_string(hide_password=False),
                                 connect_args={"options": f"-c random_page_cost={LOW_RANDOM_PAGE_COST}"})
    low_raw = Raw(low_engine)
    access_of = {key: sec.authenticate(token).access for key, token in tokens.items()}
    report.add(NAME, backend, "data", f"{total_rows:,} deals, {len(paths)} units", "",
               f"obj_deal with its indexes: {size}; runs: {args.sec_runs} (alternatives {args.sec_alt_runs}) after {args.sec_warmup}")
    print("  alternatives (raw SQL, same rows as the platform's predicate, checked):", flush=True)
    for vkey, description in VARIANTS.items():
        print(f"    {vkey}: {description}", flush=True)

    def request(token, body):
        actor = sec.authenticate(token)  # what the server does per request: token, user, policy version
        status, payload = endpoint.run(actor, body)
        if status != 200 or payload.get("errors"):
            raise AssertionError(f"GraphQL request failed ({status}): {json.dumps(payload)[:500]}")
        return payload["data"]

    catalog = rt.catalog()
    obj, table = catalog.object("deal"), catalog.table("deal")
    built = {}
    for key in scoped:  # the Python side of the predicate: built per request
        actor, samples = sec.authenticate(tokens[key]), []
        for _ in range(200):
            t = perf_counter()
            rt.records.policy.row_filter(actor, obj, table, "read")
            samples.append(perf_counter() - t)
        built[key] = statistics.median(samples) * 1e6
    report.add(NAME, backend, "RolePolicy.row_filter (predicate built per request)", built["director"], "µs",
               "regional director; " + ", ".join(f"{labels[k].split(' (')[0]} {built[k]:.0f} µs" for k in scoped)
               + "; administrator: none; median of 200")
    try:
        for qkey, qlabel, query in QUERIES:
            measure_query(rt, report, args, backend, qkey, qlabel, query, users, tokens, labels, scoped, request, raw,
                          low_raw, access_of, paths, total_rows)
    finally:
        owner_index(rt.engine, False)
        low_engine.dispose()


def measure_query(rt, report, args, backend, qkey, qlabel, query, users, tokens, labels, scoped, request, raw, low_raw,
                  access_of, paths, total_rows):
    body = {"query": query}
    print(f"  -- {qlabel}: {query}", flush=True)
    # one request per actor, capturing the statement the record service sends for the list
    sql, answers = {}, {}
    for key in users:
        request(tokens[key], body)  # schema build, policy load: not in the capture
        with capturing(rt.engine) as seen:
            answers[key] = request(tokens[key], body)
        listed = [(s, p) for s, p in seen if "FROM obj_deal" in s]
        assert len(listed) == 1, f"expected one statement on obj_deal, saw {len(listed)}"
        sql[key] = listed[0]
    platform = {key: Statement(raw, *sql[key]) for key in users}
    for key in users:  # the same rows by raw SQL as through the API
        ids = [str(r[0]) for r in platform[key].run()][:50]
        assert ids == [n["id"] for n in answers[key]["deals"]["nodes"]], f"{key}: API and raw SQL disagree"
    alts = {key: variants(sql["admin"], access_of[key], paths, raw, low_raw) for key in scoped}
    indexed = {(key, "split+index"): alts[key].pop("split+index") for key in scoped}
    for key in scoped:  # every alternative answers the same rows as the platform's predicate
        expected = platform[key].run()
        for vkey, statement in alts[key].items():
            got = statement.run()
            assert got == expected, f"alternative {vkey} for {key} answers other rows ({len(got)} vs {len(expected)})"

    api_t = {key: [] for key in users}
    raw_t = {key: [] for key in users}
    alt_t = {(key, vkey): [] for key in scoped for vkey in alts[key]}
    auth_t = []
    for run in range(args.sec_warmup + max(args.sec_runs, args.sec_alt_runs)):  # interleaved: same conditions for all
        timed = run >= args.sec_warmup
        if run < args.sec_warmup + args.sec_runs:
            for key in users:
                t = perf_counter()
                request(tokens[key], body)
                if timed:
                    api_t[key].append(perf_counter() - t)
            for key in users:
                seconds, _ = platform[key].timed()
                if timed:
                    raw_t[key].append(seconds)
            t = perf_counter()
            rt.security.authenticate(tokens["admin"])
            if timed:
                auth_t.append(perf_counter() - t)
        if run < args.sec_warmup + args.sec_alt_runs:
            for (key, vkey), samples in alt_t.items():
                seconds, _ = alts[key][vkey].timed()
                if timed:
                    samples.append(seconds)
    # the composite index, for the split form only (then dropped)
    owner_index(rt.engine, True)
    try:
        for key in scoped:
            assert indexed[key, "split+index"].run() == platform[key].run()
        index_t = {k: [] for k in indexed}
        for run in range(args.sec_warmup + args.sec_alt_runs):
            for k, statement in indexed.items():
                seconds, _ = statement.timed()
                if run >= args.sec_warmup:
                    index_t[k].append(seconds)
        index_plans = {k: statement.explain()[1] for k, statement in indexed.items()}
    finally:
        owner_index(rt.engine, False)
    alt_t.update(index_t)

    api_ref, raw_ref = statistics.median(api_t["admin"]), statistics.median(raw_t["admin"])
    text, summary = platform["admin"].explain()
    print(f"\n  EXPLAIN (ANALYZE, BUFFERS) [{qlabel}] {labels['admin']}:\n{abbreviated(text)}\n", flush=True)
    if qkey == QUERIES[0][0]:
        report.add(NAME, backend, "authenticate(token) alone", ms(statistics.median(auth_t)), "ms",
                   f"median of {len(auth_t)}; included in every endpoint figure below")
    report.add(NAME, backend, f"{qlabel}: {labels['admin']}: endpoint", ms(api_ref), "ms",
               f"median of {args.sec_runs}; p90 {ms(pct(api_t['admin'], 90)):.2f} ms; authenticate + endpoint.run")
    report.add(NAME, backend, f"{qlabel}: {labels['admin']}: raw SQL", ms(raw_ref), "ms",
               f"p90 {ms(pct(raw_t['admin'], 90)):.2f} ms; plan: {summary}")
    for key in scoped:
        count_sql = "SELECT count(*) FROM (" + sql[key][0][:sql[key][0].rindex(" ORDER BY ")] + ") AS visible"
        visible = raw.run(count_sql, sql[key][1])[0][0]
        api_med, raw_med = statistics.median(api_t[key]), statistics.median(raw_t[key])
        ratio = api_med / api_ref
        text, summary = platform[key].explain()
        print(f"  EXPLAIN (ANALYZE, BUFFERS) [{qlabel}] {labels[key]}:\n{abbreviated(text)}\n", flush=True)
        label = f"{qlabel}: {labels[key]}"
        report.add(NAME, backend, f"{label}: endpoint", ms(api_med), "ms",
                   f"{ratio:.2f}x administrator; goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}; "
                   f"p90 {ms(pct(api_t[key], 90)):.2f} ms; sees {visible:,} deals ({visible / total_rows:.2%})")
        report.add(NAME, backend, f"{label}: raw SQL with predicate", ms(raw_med), "ms",
                   f"{raw_med / raw_ref:.2f}x raw SQL without predicate; plan: {summary}")
        for vkey in VARIANTS:
            median = statistics.median(alt_t[key, vkey])
            summary = index_plans[key, vkey] if vkey == "split+index" else alts[key][vkey].explain()[1]
            report.add(NAME, backend, f"{label}: alt {vkey}", ms(median), "ms",
                       f"{median / raw_ref:.2f}x without predicate, {median / raw_med:.2f}x platform SQL; plan: {summary}")
    if qkey == QUERIES[0][0]:
        print(f"  the scoped SQL (regional director):\n    {sql['director'][0]}\n    {sql['director'][1]}\n", flush=True)
