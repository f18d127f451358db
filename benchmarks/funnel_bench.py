"""Funnel benchmark for benchmarks/run.py: the quarterly funnel with weighted forecast through
GraphQL against a hand-written SQL GROUP BY of the same figures (PostgreSQL only).

funnel  1,000,000 opportunities of two business types (six stages each) over three years of close
        dates. ``opportunityFunnel(amountField: AMOUNT, dateField: CLOSE_DATE, period: QUARTER)``
        through the Flask app (service token, and a regional director's token), the SQL statement
        the record service sent for it, and one GROUP BY written by hand: medians, ratio, plans.

The data is loaded once and kept (a marker table records how it was made): re-runs reuse it unless
the parameters differ or --funnel-rebuild is given. Every GraphQL answer is compared with the hand
SQL's figures; a difference stops the benchmark. See benchmarks/README.md.
"""
from __future__ import annotations

import json
import statistics
from datetime import date
from decimal import Decimal
from time import perf_counter

from lowcode.metadata.actors import SYSTEM_ACTOR
from lowcode.runtime import Runtime
from lowcode.server.app import Settings, create_app
from permissions_bench import Raw, capturing, ms, pct, stored_params

NAME = "funnel"
MARKER = "bench_funnel_marker"
DATA_FORMAT = 2
"""Raised when the generated data changes shape, so that old databases are rebuilt."""
TOKEN = "bench-funnel-token"
SEED = 0.2024
FIRST_CLOSE, CLOSE_DAYS = date(2023, 1, 1), 1096  # 2023 to 2025: twelve quarters
AS_OF = date(2025, 4, 1)
"""The day the data describes: most deals closing before it are won or lost, most after it open."""
REGIONS, DEPARTMENTS_PER_REGION, REPS_PER_DEPARTMENT = 4, 5, 4
GOAL_RATIO, GOAL_MS = 1.5, 1000.0

OPPORTUNITY = {"api_name": "opportunity", "label": "Opportunity", "plural_api_name": "opportunities",
               "plural_label": "Opportunities", "fields": [
    {"api_name": "name", "label": "Name", "type": "text", "required": True},
    {"api_name": "amount", "label": "Amount", "type": "currency"},
    {"api_name": "close_date", "label": "Close date", "type": "date"},
]}


def stage(api_name, probability, category="open"):
    return {"api_name": api_name, "label": api_name.replace("_", " ").capitalize(), "probability": probability,
            "category": category}


BUSINESS_TYPES = [  # (definition, share of the deals, amount range)
    ({"api_name": "product_sale", "label": "Product sale", "stages": [
        stage("first_contact", 10), stage("needs_confirmed", 30), stage("solution", 50), stage("quote_negotiation", 70),
        stage("won", 100, "won"), stage("lost", 0, "lost")]}, 0.7, (500, 50_000)),
    ({"api_name": "project_sale", "label": "Project sale", "stages": [
        stage("scoping", 5), stage("workshop", 20), stage("proposal", 40), stage("contract_review", 75),
        stage("project_won", 100, "won"), stage("project_lost", 0, "lost")]}, 0.3, (20_000, 2_000_000)),
]
FUNNEL_QUERY = ("query QuarterlyFunnel { opportunityFunnel(amountField: AMOUNT, dateField: CLOSE_DATE, period: QUARTER) "
                "{ period businessType stage probability count amount weightedAmount } }")
ACTORS = [("service", "service token (system actor)"), ("director", "regional director (unit_and_below)")]


def params_of(args):
    return {"format": DATA_FORMAT, "rows": args.funnel_rows, "seed": SEED, "regions": REGIONS,
            "departments_per_region": DEPARTMENTS_PER_REGION, "reps_per_department": REPS_PER_DEPARTMENT}


# -- the database --------------------------------------------------------------------------------
def open_runtime(url, args, reset):
    """The kept database when its marker matches the parameters, else an empty one (``reset``
    drops the public schema) that the benchmark fills."""
    if args.funnel_rebuild or stored_params(url, MARKER) != params_of(args):
        reset(url)
    return Runtime.connect(url).install()


# One INSERT ... SELECT: per row a business type, a rep (owner; unit: the rep's department), a close
# date, a stage (closing before AS_OF: mostly won or lost; after it: mostly open, early stages more
# often), an amount, the creation (30 to 330 days before the close date, and before AS_OF), the entry
# into the current stage (the creation itself for a deal still in its first stage; version: one more per
# stage move), UUIDv7 ids from the creation time, and 1% of the deals in the recycle bin.
LOAD_SQL = """
INSERT INTO obj_opportunity (id, owner_id, org_unit_id, business_type, stage, stage_entered_at, created_at, created_by,
                             updated_at, updated_by, version, deleted_at, name, amount, close_date)
SELECT (lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3) || '8'
        || substr(h, 4, 15))::uuid,
       owner_id, org_unit_id, business_type, stage, stage_entered_at, created_at, owner_id,
       coalesce(deleted_at, stage_entered_at), owner_id, version + (deleted_at IS NOT NULL)::int, deleted_at,
       'Opportunity ' || g, amount, close_date
FROM (
 SELECT *, CASE WHEN r_deleted < 0.01 THEN stage_entered_at + interval '1 day' END AS deleted_at
 FROM (
  SELECT *, CASE WHEN version = 1 THEN created_at
                 ELSE created_at + r_entered * (least(close_date::timestamptz, %(as_of)s::timestamptz) - created_at)
            END AS stage_entered_at
  FROM (
   SELECT g, md5(g::text) AS h, r_deleted, r_entered, close_date,
          (%(reps)s::uuid[])[rep] AS owner_id, (%(rep_units)s::uuid[])[rep] AS org_unit_id,
          CASE WHEN product THEN %(product)s ELSE %(project)s END AS business_type,
          CASE WHEN r_stage < closed * 0.4 THEN CASE WHEN product THEN %(product_won)s ELSE %(project_won)s END
               WHEN r_stage < closed THEN CASE WHEN product THEN %(product_lost)s ELSE %(project_lost)s END
               WHEN product THEN (%(product_open)s::text[])[open_stage]
               ELSE (%(project_open)s::text[])[open_stage] END AS stage,
          CASE WHEN r_stage < closed * 0.4 THEN 5 WHEN r_stage < closed THEN 1 + open_stage ELSE open_stage END AS version,
          round((CASE WHEN product THEN %(product_low)s + r_amount ^ 2 * %(product_span)s
                      ELSE %(project_low)s + r_amount ^ 2 * %(project_span)s END)::numeric, 2) AS amount,
          least(close_date - 30 - age, %(as_of)s::date - 1 - age)::timestamptz + (g %% 86400) * interval '1 second'
            AS created_at
   FROM (
    SELECT *, %(first_close)s::date + day AS close_date, r_type < %(product_share)s AS product,
           CASE WHEN %(first_close)s::date + day < %(as_of)s::date THEN 0.85 ELSE 0.1 END AS closed,
           1 + floor(r_open ^ 1.5 * 4)::int AS open_stage, floor(r_age * 300)::int AS age
    FROM (
     SELECT g, random() AS r_type, 1 + floor(random() * %(rep_count)s)::int AS rep,
            floor(random() * %(close_days)s)::int AS day, random() AS r_stage, random() AS r_open,
            random() AS r_amount, random() AS r_age, random() AS r_entered, random() AS r_deleted
     FROM generate_series(1, %(rows)s) AS g
    ) AS drawn
   ) AS typed
  ) AS shaped
 ) AS timed
) AS staged
"""
HISTORY_SQL = """
INSERT INTO lc_stage_history (object_api_name, record_id, business_type, stage, entered_at, entered_by)
SELECT 'opportunity', id, business_type, stage, stage_entered_at, owner_id::text FROM obj_opportunity
"""


def load(rt, report, args):
    """The object and its business types through the metadata service, the org tree, roles and users
    through the security service; the opportunities by one INSERT ... SELECT, the open stage-history
    entry of each by another; then VACUUM ANALYZE and the marker."""
    params = params_of(args)
    sec, S = rt.security, SYSTEM_ACTOR
    t0 = perf_counter()
    rt.metadata.create_object(S, OPPORTUNITY)
    for definition, _, _ in BUSINESS_TYPES:
        rt.metadata.create_business_type(S, "opportunity", definition)
    group = sec.create_unit(S, "Group")
    regions = [sec.create_unit(S, f"Region {r + 1}", group["id"]) for r in range(REGIONS)]
    sec.create_role(S, "sales_rep", "Sales rep")
    sec.set_object_grant(S, "sales_rep", "opportunity", ["read", "create", "update"], "own", "own")
    sec.create_role(S, "director", "Director")
    sec.set_object_grant(S, "director", "opportunity", ["read", "create", "update"], "unit_and_below", "unit_and_below")
    reps, rep_units = [], []
    for r, region in enumerate(regions):
        for d in range(DEPARTMENTS_PER_REGION):
            department = sec.create_unit(S, f"Department {r + 1}.{d + 1}", region["id"])
            for k in range(REPS_PER_DEPARTMENT):
                user = sec.create_user(S, {"username": f"rep_{r + 1}_{d + 1}_{k + 1}", "full_name": f"Rep {r + 1}.{d + 1}/{k + 1}"})
                sec.add_membership(S, user["id"], department["id"], "sales_rep")
                reps.append(user["id"])
                rep_units.append(department["id"])
    director = sec.create_user(S, {"username": "bench_funnel_director", "full_name": "Director of Region 1"})
    sec.add_membership(S, director["id"], regions[0]["id"], "director")
    t_setup = perf_counter()

    (product, product_share, product_amounts), (project, _, project_amounts) = BUSINESS_TYPES

    def stages_of(definition, category):
        return [s["api_name"] for s in definition["stages"] if s["category"] == category]

    values = {
        "rows": args.funnel_rows, "reps": reps, "rep_units": rep_units, "rep_count": len(reps),
        "first_close": FIRST_CLOSE, "close_days": CLOSE_DAYS, "as_of": AS_OF, "product_share": product_share,
        "product": product["api_name"], "project": project["api_name"],
        "product_open": stages_of(product, "open"), "project_open": stages_of(project, "open"),
        "product_won": stages_of(product, "won")[0], "project_won": stages_of(project, "won")[0],
        "product_lost": stages_of(product, "lost")[0], "project_lost": stages_of(project, "lost")[0],
        "product_low": product_amounts[0], "product_span": product_amounts[1] - product_amounts[0],
        "project_low": project_amounts[0], "project_span": project_amounts[1] - project_amounts[0],
    }
    raw = rt.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            cur.execute("SELECT setseed(%s)", (SEED,))
            cur.execute(LOAD_SQL, values)
            t_rows = perf_counter()
            cur.execute(HISTORY_SQL)
        raw.driver_connection.commit()
    finally:
        raw.close()
    t_history = perf_counter()
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE obj_opportunity")
        conn.exec_driver_sql("VACUUM ANALYZE lc_stage_history")
        conn.exec_driver_sql(f"CREATE TABLE {MARKER} (params jsonb NOT NULL, loaded_at timestamptz NOT NULL, "
                             "load_seconds double precision NOT NULL)")
        conn.exec_driver_sql(f"INSERT INTO {MARKER} VALUES (%s, now(), %s)", (json.dumps(params), perf_counter() - t0))
    total = perf_counter() - t0
    print(f"  metadata, {len(regions) * (DEPARTMENTS_PER_REGION + 1) + 1} units, {len(reps) + 1} users {t_setup - t0:.1f} s; "
          f"{args.funnel_rows:,} opportunities by INSERT ... SELECT {t_rows - t_setup:.1f} s; stage history "
          f"{t_history - t_rows:.1f} s; VACUUM ANALYZE {perf_counter() - t_history:.1f} s", flush=True)
    report.add(NAME, "postgresql", "load (metadata, org, users, opportunities, stage history)", total, "s",
               f"{args.funnel_rows:,} opportunities by INSERT ... SELECT in {t_rows - t_setup:.0f} s; "
               "kept for re-runs (--funnel-rebuild to redo)")


# -- the hand-written SQL --------------------------------------------------------------------------
HAND_FORMS = {
    "weight per row": "GROUP BY quarter, business_type, stage; sum(amount * CASE stage ... END) / 100",
    "weight per group": "GROUP BY quarter, stage; sum(amount) * CASE stage ... END / 100 and the business type by a "
                        "CASE on the grouped stage",
}


def hand_sql(obj, form, scoped):
    """The same figures by hand: quarter, business type, stage; count, sum(amount) and the weighted
    sum, the probability by a CASE over the stages (``form``: see HAND_FORMS); live records only, and
    for a scoped user those of the units below theirs (``%(units)s``: the ids, read from the org tree)."""
    stages = [(kind, s) for kind in obj.business_types for s in kind.stages]
    probability = "CASE o.stage " + " ".join(f"WHEN '{s.api_name}' THEN {s.probability}" for _, s in stages) + " END"
    kind_of_stage = "CASE o.stage " + " ".join(f"WHEN '{s.api_name}' THEN '{kind.api_name}'" for kind, s in stages) + " END"
    quarter = "date_trunc('quarter', o.close_date::timestamp)::date"
    where = "o.deleted_at IS NULL" + (" AND o.org_unit_id = ANY(%(units)s)" if scoped else "")
    if form == "weight per row":
        return (f"SELECT {quarter} AS quarter, o.business_type, o.stage, count(*), sum(o.amount), "
                f"sum(o.amount * {probability}) / 100 FROM obj_opportunity o WHERE {where} GROUP BY 1, 2, 3")
    return (f"SELECT {quarter} AS quarter, {kind_of_stage}, o.stage, count(*), sum(o.amount), "
            f"sum(o.amount) * {probability} / 100 FROM obj_opportunity o WHERE {where} GROUP BY 1, 3")


def figures_of_sql(rows):
    return {(quarter.isoformat(), kind, stage): (count, amount, weighted) for quarter, kind, stage, count, amount, weighted in rows}


def figures_of_graphql(obj, data):
    """The funnel rows as {(quarter, business type, stage): (count, amount, weighted)}, enum names
    turned back into api names."""
    names = {s.api_name.upper(): s.api_name for kind in obj.business_types for s in kind.stages}
    names.update({kind.api_name.upper(): kind.api_name for kind in obj.business_types})
    return {(row["period"], names[row["businessType"]], names[row["stage"]]):
            (row["count"], Decimal(row["amount"]), Decimal(row["weightedAmount"])) for row in data["opportunityFunnel"]}


def check_same(label, ours, theirs):
    if ours != theirs:
        differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        sample = [(k, ours.get(k), theirs.get(k)) for k in differing[:5]]
        raise AssertionError(f"{label}: the GraphQL funnel and the hand-written SQL differ in {len(differing)} of "
                             f"{len(theirs)} groups (key, GraphQL, SQL): {sample}")


def plan_summary(raw, sql, params):
    """EXPLAIN (ANALYZE, BUFFERS): the text plan and 'execution time; how obj_opportunity is read'."""
    text = "\n".join(r[0] for r in raw.run("EXPLAIN (ANALYZE, BUFFERS) " + sql, params))
    plan = raw.run("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)[0][0][0]
    scans, workers = [], 0

    def walk(node):
        nonlocal workers
        if node.get("Relation Name") == "obj_opportunity" or (node.get("Index Name") or "").startswith("ix_obj_opportunity"):
            parallel = "parallel " if node.get("Parallel Aware") else ""
            scans.append(f"{parallel}{node['Node Type'].lower()}{' ' + node['Index Name'] if node.get('Index Name') else ''}")
        workers = max(workers, node.get("Workers Launched", 0))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return text, (f"server {plan['Execution Time']:.0f} ms; {' + '.join(dict.fromkeys(scans))}"
                  + (f"; {workers} workers" if workers else ""))


def abbreviated(text, width=150):
    return "\n".join("    " + (line if len(line) <= width else line[:width - 3] + "...") for line in text.splitlines())


# -- the benchmark -----------------------------------------------------------------------------------
def bench_funnel(rt, backend, report, args):
    if "opportunity" not in rt.catalog().objects:
        load(rt, report, args)
    else:
        with rt.engine.connect() as conn:
            loaded_at, seconds = conn.exec_driver_sql(f"SELECT loaded_at, load_seconds FROM {MARKER}").first()
        report.add(NAME, backend, "load", "reused", "", f"loaded {loaded_at:%Y-%m-%d %H:%M} in {seconds:.0f} s; "
                   "--funnel-rebuild to load again")
    obj = rt.catalog().object("opportunity")
    with rt.engine.connect() as conn:
        live = conn.exec_driver_sql("SELECT count(*) FROM obj_opportunity WHERE deleted_at IS NULL").scalar_one()
        size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('obj_opportunity'))").scalar_one()
        director_id = str(conn.exec_driver_sql("SELECT id FROM obj_user WHERE username = 'bench_funnel_director'").scalar_one())
        region_units = [r[0] for r in conn.exec_driver_sql(
            "SELECT u.id FROM obj_org_unit u, obj_org_unit region WHERE region.name = 'Region 1' "
            "AND u.path LIKE region.path || %s AND u.deleted_at IS NULL", ("%",))]
    tokens = {"service": TOKEN,
              "director": rt.security.issue_token(SYSTEM_ACTOR, "funnel benchmark", user_id=director_id)["token"]}
    app = create_app(Settings(database_url=str(rt.engine.url), api_token=TOKEN), runtime=rt)
    client = app.test_client()
    body = json.dumps({"query": FUNNEL_QUERY}).encode()
    raw = Raw(rt.engine)
    hand = {(key, form): (hand_sql(obj, form, key != "service"), {} if key == "service" else {"units": region_units})
            for key, _ in ACTORS for form in HAND_FORMS}
    report.add(NAME, backend, "data", f"{live:,} live opportunities", "",
               f"obj_opportunity with its indexes: {size}; runs: {args.funnel_runs} after {args.funnel_warmup}")
    print(f"  query: {FUNNEL_QUERY}", flush=True)
    for form, description in HAND_FORMS.items():
        print(f"  hand SQL, {form}: {description}", flush=True)

    def request(key):
        headers = {"Authorization": f"Bearer {tokens[key]}", "Content-Type": "application/json"}
        response = client.post("/graphql", data=body, headers=headers)
        payload = json.loads(response.get_data())
        if response.status_code != 200 or payload.get("errors"):
            raise AssertionError(f"GraphQL request failed ({response.status_code}): {json.dumps(payload)[:500]}")
        return payload["data"]

    platform_sql, expected = {}, {}
    for key, label in ACTORS:
        request(key)  # schema build, policy load: not in the capture
        with capturing(rt.engine) as seen:
            answer = request(key)
        grouped = [(s, p) for s, p in seen if "GROUP BY" in s and "obj_opportunity" in s]
        assert len(grouped) == 1, f"expected one GROUP BY statement on obj_opportunity, saw {len(grouped)}"
        platform_sql[key] = grouped[0]
        expected[key] = figures_of_sql(raw.run(*hand[key, "weight per row"]))
        check_same(f"{label}, GraphQL", figures_of_graphql(obj, answer), expected[key])
        check_same(f"{label}, hand SQL weight per group", figures_of_sql(raw.run(*hand[key, "weight per group"])), expected[key])

    samples = {(key, side): [] for key, _ in ACTORS for side in ("graphql", "platform", *HAND_FORMS)}
    for run in range(args.funnel_warmup + args.funnel_runs):  # interleaved: the same conditions for all
        for key, label in ACTORS:
            t = perf_counter()
            answer = request(key)
            took = {"graphql": perf_counter() - t}
            check_same(f"{label}, GraphQL", figures_of_graphql(obj, answer), expected[key])
            took["platform"] = raw.timed(*platform_sql[key])[0]
            for form in HAND_FORMS:
                took[form], rows = raw.timed(*hand[key, form])
                check_same(f"{label}, hand SQL {form}", figures_of_sql(rows), expected[key])
            if run >= args.funnel_warmup:
                for side, seconds in took.items():
                    samples[key, side].append(seconds)

    for key, label in ACTORS:
        median = {side: statistics.median(samples[key, side]) for side in ("graphql", "platform", *HAND_FORMS)}
        statements = {"the record service's statement": platform_sql[key],
                      **{f"hand SQL, {form}": hand[key, form] for form in HAND_FORMS}}
        plans = {}
        for title, (sql, params) in statements.items():
            text, plans[title] = plan_summary(raw, sql, params)
            print(f"\n  [{label}] {title}:\n    {sql}\n    {params}\n  EXPLAIN (ANALYZE, BUFFERS):\n{abbreviated(text)}", flush=True)
        seen = sum(count for count, _, _ in expected[key].values())
        p90 = {side: ms(pct(samples[key, side], 90)) for side in median}
        report.add(NAME, backend, f"{label}: GraphQL (Flask app)", ms(median["graphql"]), "ms",
                   f"median of {args.funnel_runs}; p90 {p90['graphql']:.0f} ms; {len(expected[key])} groups of "
                   f"{seen:,} opportunities ({seen / live:.0%})")
        report.add(NAME, backend, f"{label}: the service's SQL, raw", ms(median["platform"]), "ms",
                   f"p90 {p90['platform']:.0f} ms; plan: {plans[next(iter(statements))]}")
        for form in HAND_FORMS:
            report.add(NAME, backend, f"{label}: hand SQL, {form}", ms(median[form]), "ms",
                       f"p90 {p90[form]:.0f} ms; plan: {plans[f'hand SQL, {form}']}")
        for form in HAND_FORMS:
            ratio = median["graphql"] / median[form]
            met = ratio <= GOAL_RATIO and ms(median["graphql"]) < GOAL_MS
            report.add(NAME, backend, f"{label}: ratio GraphQL/hand SQL, {form}", ratio, "x",
                       f"goal <= {GOAL_RATIO}x and GraphQL < {GOAL_MS:.0f} ms: {'met' if met else 'NOT met'}")
    report.add(NAME, backend, "same figures (count, amount, weighted amount per quarter and stage)", "yes", "",
               "GraphQL and both hand SQL forms, checked on every run")
