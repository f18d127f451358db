"""How GraphQL selections compile into reads, through HTTP on SQLite and PostgreSQL.

The objects: ``account`` <- ``deal`` (lookup ``account``) <- ``line`` (master-detail ``deal``).

The read plan promised by ``platform/runtime/reading.py`` and ``platform/graphql/planning.py``: one
statement for the metadata version (the Catalog snapshot of the request), then one statement per
list level (to-one relations are joined into the statement of the records holding them; to-many
relations are read for every parent at once, ``first`` per parent through a window function) and
one per ``totalCount`` asked for -- whatever the number of rows. SQLite also sends an explicit
``BEGIN`` per connection (see ``platform/metadata/database.py``), which is not a query and is not
counted here.
"""
from __future__ import annotations

import threading

import pytest
from lowcode.graphql import endpoint as endpoint_module

SCHEMA = [
    '''mutation { createObject(input: {apiName: "account", label: "Account", fields: [
        {apiName: "name", label: "Name", type: TEXT}]}) { apiName } }''',
    '''mutation { createObject(input: {apiName: "deal", label: "Deal", fields: [
        {apiName: "name", label: "Name", type: TEXT, options: {maxLength: 50}},
        {apiName: "amount", label: "Amount", type: DECIMAL, options: {precision: 12, scale: 2}},
        {apiName: "close_date", label: "Close date", type: DATE},
        {apiName: "account", label: "Account", type: LOOKUP, options: {target: "account"}}]}) { apiName } }''',
    '''mutation { createObject(input: {apiName: "line", label: "Line", fields: [
        {apiName: "qty", label: "Quantity", type: INTEGER},
        {apiName: "deal", label: "Deal", type: MASTER_DETAIL, options: {target: "deal"}}]}) { apiName } }''',
]

BIG_QUERY = """{ deals(first: 500) { totalCount edges { node { name account { name }
  lines(first: 2) { totalCount nodes { qty deal { name account { name } } } } } } } }"""


@pytest.fixture
def crm(api):
    for mutation in SCHEMA:
        api.data(mutation)
    return api


def queries(api) -> list[str]:
    """The statements of the last request, without SQLite's explicit ``BEGIN``."""
    statements = [s.strip() for s in api.statements if s.strip().upper() != "BEGIN"]
    assert all(s.upper().startswith("SELECT") for s in statements), statements
    return statements


def on_table(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if table in s]


def create_account(api, name: str) -> str:
    return api.data('mutation($n: String) { createAccount(input: {name: $n}) { id } }', {"n": name})["createAccount"]["id"]


def create_deals(api, names: list[str], account_id: str | None = None) -> list[str]:
    inputs = [{"name": n, "accountId": account_id} for n in names]
    created = api.data('mutation($i: [DealCreateInput!]!) { createDeals(inputs: $i) { id } }', {"i": inputs})["createDeals"]
    return [r["id"] for r in created]


def create_lines(api, deal_id: str, quantities: list[int]) -> list[str]:
    if not quantities:
        return []
    inputs = [{"qty": q, "dealId": deal_id} for q in quantities]
    created = api.data('mutation($i: [LineCreateInput!]!) { createLines(inputs: $i) { id } }', {"i": inputs})["createLines"]
    return [r["id"] for r in created]


# -- statement counts ------------------------------------------------------------------------
def test_statement_count_does_not_grow_with_the_rows(crm):
    api = crm
    account = create_account(api, "Acme")
    counts = {}
    total = 0
    for target in (1, 50, 500):
        names = [f"deal {i:03d}" for i in range(total, target)]
        ids = create_deals(api, names, account)
        lines = [{"qty": q, "dealId": d} for d in ids for q in (1, 2, 3)]
        for start in range(0, len(lines), 900):
            api.data('mutation($i: [LineCreateInput!]!) { createLines(inputs: $i) { id } }', {"i": lines[start:start + 900]})
        total = target

        data = api.data(BIG_QUERY)
        statements = queries(api)
        counts[target] = len(statements)

        deals = data["deals"]
        assert deals["totalCount"] == target
        assert len(deals["edges"]) == target
        for edge in deals["edges"]:
            node = edge["node"]
            assert node["account"] == {"name": "Acme"}
            assert node["lines"]["totalCount"] == 3
            assert [n["qty"] for n in node["lines"]["nodes"]] == [1, 2]
            assert all(n["deal"] == {"name": node["name"], "account": {"name": "Acme"}} for n in node["lines"]["nodes"])

        # version read; deals page (account joined); deals count; lines page of all deals at once
        # (deal and its account joined); lines count grouped by deal -- 5, whatever the row count.
        assert len(on_table(statements, "lc_meta_version")) == 1
        assert len(on_table(statements, "obj_deal")) == 3  # page, count, and the join from lines
        assert len([s for s in statements if "count(" in s.lower()]) == 2
        assert len(statements) == 5, statements
    assert counts == {1: 5, 50: 5, 500: 5}


def test_get_by_id_with_relations_runs_a_constant_number_of_statements(crm):
    api = crm
    account = create_account(api, "Acme")
    few, many = create_deals(api, ["few", "many"], account)
    create_lines(api, few, [1])
    create_lines(api, many, list(range(1, 41)))
    query = """query($id: ID!) { deal(id: $id) { name account { name }
      lines(first: 30) { totalCount nodes { qty deal { name account { name } } } } } }"""
    seen = []
    for deal_id, expected in ((few, 1), (many, 40)):
        data = api.data(query, {"id": deal_id})["deal"]
        assert data["account"] == {"name": "Acme"}
        assert data["lines"]["totalCount"] == expected
        assert len(data["lines"]["nodes"]) == min(expected, 30)
        assert all(n["deal"]["account"] == {"name": "Acme"} for n in data["lines"]["nodes"])
        # version read; the deal with its account joined; its lines (deal, account joined); lines count
        seen.append(len(queries(api)))
    assert seen == [4, 4]


def test_aliases_of_scalar_fields_add_no_statements(crm):
    api = crm
    deal = create_deals(api, ["solo"])[0]
    plain = api.data('query($id: ID!) { deal(id: $id) { name } }', {"id": deal})
    count = len(queries(api))
    aliased = api.data('query($id: ID!) { deal(id: $id) { name a: name b: name c: amount d: id } }', {"id": deal})
    assert len(queries(api)) == count == 2
    assert plain == {"deal": {"name": "solo"}}
    assert aliased == {"deal": {"name": "solo", "a": "solo", "b": "solo", "c": None, "d": deal}}

    api.data('{ deals { nodes { name } } }')
    count = len(queries(api))
    api.data('{ deals { nodes { name x: name y: name z: closeDate } } }')
    assert len(queries(api)) == count == 2


# -- nested connections ----------------------------------------------------------------------
def seed_children(api) -> dict[str, str]:
    """Deals d0..d3 with 0, 1, 2 and 3 lines (qty 1..n)."""
    deals = dict(zip(["d0", "d1", "d2", "d3"], create_deals(api, ["d0", "d1", "d2", "d3"])))
    for index, name in enumerate(["d0", "d1", "d2", "d3"]):
        create_lines(api, deals[name], list(range(1, index + 1)))
    return deals


def test_nested_first_applies_per_parent_with_truthful_has_next_page(crm):
    api = crm
    seed_children(api)
    data = api.data("""{ deals(orderBy: [NAME_ASC]) { nodes { name
        lines(first: 2, orderBy: [QTY_ASC]) { totalCount pageInfo { hasNextPage hasPreviousPage } nodes { qty } } } } }""")
    got = {n["name"]: n["lines"] for n in data["deals"]["nodes"]}
    assert {k: [x["qty"] for x in v["nodes"]] for k, v in got.items()} == {"d0": [], "d1": [1], "d2": [1, 2], "d3": [1, 2]}
    assert {k: v["pageInfo"]["hasNextPage"] for k, v in got.items()} == {"d0": False, "d1": False, "d2": False, "d3": True}
    assert {k: v["totalCount"] for k, v in got.items()} == {"d0": 0, "d1": 1, "d2": 2, "d3": 3}
    assert not any(v["pageInfo"]["hasPreviousPage"] for v in got.values())


def test_nested_first_zero_still_reports_whether_children_exist(crm):
    api = crm
    seed_children(api)
    top = api.data('{ deals(first: 0) { totalCount pageInfo { hasNextPage } nodes { name } } }')["deals"]
    assert top == {"totalCount": 4, "pageInfo": {"hasNextPage": True}, "nodes": []}
    data = api.data('{ deals(orderBy: [NAME_ASC]) { nodes { name lines(first: 0) { totalCount pageInfo { hasNextPage } nodes { qty } } } } }')
    got = {n["name"]: n["lines"] for n in data["deals"]["nodes"]}
    assert {k: v["nodes"] for k, v in got.items()} == {"d0": [], "d1": [], "d2": [], "d3": []}
    assert {k: v["totalCount"] for k, v in got.items()} == {"d0": 0, "d1": 1, "d2": 2, "d3": 3}
    # Like the top-level list: an empty page with records after it has a next page.
    assert {k: v["pageInfo"]["hasNextPage"] for k, v in got.items()} == {"d0": False, "d1": True, "d2": True, "d3": True}


def test_nested_filter_and_order_apply_per_connection(crm):
    api = crm
    seed_children(api)
    data = api.data("""{ deals(orderBy: [NAME_DESC], filter: {name: {in: ["d3", "d2", "d1"]}}) { nodes { name
        big: lines(orderBy: [QTY_DESC], filter: {qty: {gte: 2}}) { totalCount nodes { qty } }
        small: lines(first: 1, orderBy: [QTY_ASC], filter: {qty: {lte: 2}}) { totalCount pageInfo { hasNextPage } nodes { qty } }
      } } }""")
    nodes = data["deals"]["nodes"]
    assert [n["name"] for n in nodes] == ["d3", "d2", "d1"]
    assert [[x["qty"] for x in n["big"]["nodes"]] for n in nodes] == [[3, 2], [2], []]
    assert [n["big"]["totalCount"] for n in nodes] == [2, 1, 0]
    assert [[x["qty"] for x in n["small"]["nodes"]] for n in nodes] == [[1], [1], [1]]
    assert [n["small"]["totalCount"] for n in nodes] == [2, 2, 1]
    assert [n["small"]["pageInfo"]["hasNextPage"] for n in nodes] == [True, True, False]


def test_nested_after_pages_through_the_children_of_a_parent(crm):
    api = crm
    deals = seed_children(api)
    query = """query($id: ID!, $after: String) { deal(id: $id) { lines(first: 2, orderBy: [QTY_DESC], after: $after) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { qty } } } } }"""
    first = api.data(query, {"id": deals["d3"]})["deal"]["lines"]
    assert [e["node"]["qty"] for e in first["edges"]] == [3, 2]
    assert first["pageInfo"]["hasNextPage"] is True and first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    second = api.data(query, {"id": deals["d3"], "after": first["pageInfo"]["endCursor"]})["deal"]["lines"]
    assert [e["node"]["qty"] for e in second["edges"]] == [1]
    assert second["pageInfo"]["hasNextPage"] is False and second["pageInfo"]["hasPreviousPage"] is True
    assert second["totalCount"] == 3  # the total ignores the cursor

    # the same through a list of parents
    listed = api.data("""query($after: String) { deals(filter: {name: {eq: "d3"}}) { nodes {
        lines(first: 2, orderBy: [QTY_DESC], after: $after) { nodes { qty } } } } }""",
                      {"after": first["pageInfo"]["endCursor"]})
    assert listed["deals"]["nodes"] == [{"lines": {"nodes": [{"qty": 1}]}}]


# -- selections ------------------------------------------------------------------------------
def test_named_and_inline_fragments(crm):
    api = crm
    account = create_account(api, "Acme")
    deal = create_deals(api, ["frag"], account)[0]
    create_lines(api, deal, [5, 6])
    query = """query($id: ID!) { deal(id: $id) { ...DealParts ... on Deal { amount account { ...AccountParts } } } }
      fragment DealParts on Deal { name account { id } lines(orderBy: [QTY_ASC]) { ...LinePage } }
      fragment LinePage on LineConnection { totalCount nodes { ... on Line { qty } } }
      fragment AccountParts on Account { name }"""
    data = api.data(query, {"id": deal})
    assert data == {"deal": {"name": "frag", "amount": None, "account": {"id": account, "name": "Acme"},
                             "lines": {"totalCount": 2, "nodes": [{"qty": 5}, {"qty": 6}]}}}
    # the fragments merge into one plan: version, deal (account joined once), lines, lines count
    assert len(queries(api)) == 4
    assert len([s for s in queries(api) if "obj_account" in s]) == 1


def test_same_relation_twice_under_different_aliases(crm):
    api = crm
    account = create_account(api, "Acme")
    deal = create_deals(api, ["twice"], account)[0]
    data = api.data('query($id: ID!) { deal(id: $id) { a: account { name } b: account { id nm: name } } }', {"id": deal})
    assert data == {"deal": {"a": {"name": "Acme"}, "b": {"id": account, "nm": "Acme"}}}
    # both relations joined into the deal's statement
    assert len(queries(api)) == 2

    listed = api.data('{ deals { nodes { x: account { name } y: account { id } z: name } } }')
    assert listed == {"deals": {"nodes": [{"x": {"name": "Acme"}, "y": {"id": account}, "z": "twice"}]}}


def test_same_connection_twice_with_different_first(crm):
    api = crm
    deals = seed_children(api)
    data = api.data("""query($id: ID!) { deal(id: $id) {
        one: lines(first: 1, orderBy: [QTY_ASC]) { totalCount pageInfo { hasNextPage } nodes { qty } }
        all: lines(first: 5, orderBy: [QTY_DESC]) { pageInfo { hasNextPage } nodes { q: qty id } } } }""", {"id": deals["d3"]})
    one, every = data["deal"]["one"], data["deal"]["all"]
    assert one == {"totalCount": 3, "pageInfo": {"hasNextPage": True}, "nodes": [{"qty": 1}]}
    assert [n["q"] for n in every["nodes"]] == [3, 2, 1]
    assert every["pageInfo"]["hasNextPage"] is False
    assert all(set(n) == {"q", "id"} for n in every["nodes"])
    # version, deal, 'one' page, 'one' count, 'all' page
    assert len(queries(api)) == 5

    listed = api.data('{ a: deals(first: 1, orderBy: [NAME_ASC]) { nodes { name } } b: deals(first: 3, orderBy: [NAME_DESC]) { nodes { name } } }')
    assert listed == {"a": {"nodes": [{"name": "d0"}]}, "b": {"nodes": [{"name": "d3"}, {"name": "d2"}, {"name": "d1"}]}}


def test_variables_for_first_filter_and_order(crm):
    api = crm
    deals = seed_children(api)
    query = """query($n: Int, $f: DealFilter, $o: [DealOrderBy!], $ln: Int, $lf: LineFilter, $lo: [LineOrderBy!]) {
      deals(first: $n, filter: $f, orderBy: $o) { pageInfo { hasNextPage } nodes { name
        lines(first: $ln, filter: $lf, orderBy: $lo) { nodes { qty } } } } }"""
    data = api.data(query, {"n": 2, "f": {"name": {"in": ["d1", "d2", "d3"]}}, "o": ["NAME_DESC"],
                            "ln": 2, "lf": {"qty": {"ne": 2}}, "lo": ["QTY_DESC"]})
    assert data == {"deals": {"pageInfo": {"hasNextPage": True}, "nodes": [
        {"name": "d3", "lines": {"nodes": [{"qty": 3}, {"qty": 1}]}},
        {"name": "d2", "lines": {"nodes": [{"qty": 1}]}}]}}
    single = api.data('query($id: ID!, $lo: [LineOrderBy!]) { deal(id: $id) { lines(orderBy: $lo) { nodes { qty } } } }',
                      {"id": deals["d2"], "lo": ["QTY_DESC"]})
    assert single == {"deal": {"lines": {"nodes": [{"qty": 2}, {"qty": 1}]}}}


def test_skip_and_include_with_variables(crm):
    api = crm
    account = create_account(api, "Acme")
    deal = create_deals(api, ["dir"], account)[0]
    create_lines(api, deal, [1, 2])
    query = """query($id: ID!, $with: Boolean!) { deal(id: $id) { name
        account @include(if: $with) { name }
        lines @skip(if: $with) { totalCount }
        ... on Deal @include(if: $with) { amount }
        ...Extra @skip(if: $with) }
      } fragment Extra on Deal { closeDate }"""
    included = api.data(query, {"id": deal, "with": True})
    assert included == {"deal": {"name": "dir", "account": {"name": "Acme"}, "amount": None}}
    with_statements = queries(api)
    assert len(with_statements) == 2  # version, deal with account joined: no lines read
    assert not on_table(with_statements, "obj_line")

    skipped = api.data(query, {"id": deal, "with": False})
    assert skipped == {"deal": {"name": "dir", "lines": {"totalCount": 2}, "closeDate": None}}
    without = queries(api)
    assert not on_table(without, "obj_account")
    assert on_table(without, "obj_line")


def test_typename_everywhere(crm):
    api = crm
    account = create_account(api, "Acme")
    deal = create_deals(api, ["tn"], account)[0]
    create_lines(api, deal, [1])
    data = api.data("""{ __typename deals { __typename pageInfo { __typename } edges { __typename node { __typename name
        account { __typename name } lines { __typename nodes { __typename qty } } } } } }""")
    assert data == {"__typename": "Query", "deals": {"__typename": "DealConnection", "pageInfo": {"__typename": "PageInfo"},
                    "edges": [{"__typename": "DealEdge", "node": {"__typename": "Deal", "name": "tn",
                               "account": {"__typename": "Account", "name": "Acme"},
                               "lines": {"__typename": "LineConnection", "nodes": [{"__typename": "Line", "qty": 1}]}}}]}}
    mutated = api.data('mutation { createAccount(input: {name: "B"}) { __typename name } }')
    assert mutated == {"createAccount": {"__typename": "Account", "name": "B"}}


# -- document and schema caches --------------------------------------------------------------
def endpoint_of(api):
    return api.app.extensions["lowcode"]["endpoint"]


def test_same_query_text_is_parsed_and_validated_once(crm, monkeypatch):
    api = crm
    create_deals(api, ["cached"])
    calls = {"parse": 0, "validate": 0}
    real_parse, real_validate = endpoint_module.parse, endpoint_module.validate

    def parse(*args, **kwargs):
        calls["parse"] += 1
        return real_parse(*args, **kwargs)

    def validate(*args, **kwargs):
        calls["validate"] += 1
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(endpoint_module, "parse", parse)
    monkeypatch.setattr(endpoint_module, "validate", validate)
    endpoint = endpoint_of(api)
    builds = endpoint.builds
    query = '{ deals { nodes { name } } }'
    for _ in range(3):
        assert api.data(query) == {"deals": {"nodes": [{"name": "cached"}]}}
    assert calls == {"parse": 1, "validate": 1}
    documents = endpoint.documents(api.runtime.catalogs.current())
    assert query in documents._cache

    # another text (even one differing only in spacing) is another document
    assert api.data('{ deals { nodes {  name } } }') == {"deals": {"nodes": [{"name": "cached"}]}}
    assert calls == {"parse": 2, "validate": 2}
    # an invalid document is remembered with its errors, too
    for _ in range(2):
        status, errors = api.errors('{ deals { nodes { nope } } }')
        assert status == 400 and errors[0]["extensions"]["code"] == "BAD_QUERY"
    assert calls == {"parse": 3, "validate": 3}
    assert endpoint.builds == builds


def test_metadata_change_builds_a_new_schema_once(crm):
    api = crm
    create_deals(api, ["m"])
    endpoint = endpoint_of(api)
    api.data('{ deals { nodes { name } } }')
    before = endpoint.builds
    old_documents = endpoint.documents(api.runtime.catalogs.current())
    api.data('mutation { createField(object: "deal", input: {apiName: "region", label: "Region", type: TEXT}) { apiName } }')
    assert endpoint.builds == before  # the change itself ran on the old schema

    for _ in range(5):
        assert api.data('{ deals { nodes { name region } } }') == {"deals": {"nodes": [{"name": "m", "region": None}]}}
    assert endpoint.builds == before + 1
    new_documents = endpoint.documents(api.runtime.catalogs.current())
    assert new_documents is not old_documents
    assert new_documents.generated.version > old_documents.generated.version
    assert endpoint.builds == before + 1


def test_concurrent_requests_after_a_metadata_change_build_the_schema_once(crm):
    api = crm
    create_deals(api, ["c"])
    endpoint = endpoint_of(api)
    api.data('{ deals { nodes { name } } }')
    api.data('mutation { createField(object: "deal", input: {apiName: "region", label: "Region", type: TEXT}) { apiName } }')
    before = endpoint.builds

    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list = [None] * threads_count

    def request(index: int) -> None:
        client = api.app.test_client()
        try:
            barrier.wait(timeout=30)
            response = client.post("/graphql", json={"query": "{ deals { nodes { name region } } }"},
                                   headers={"Authorization": "Bearer test-token"})
            results[index] = (response.status_code, response.get_json())
        except Exception as error:  # reported below
            results[index] = error

    threads = [threading.Thread(target=request, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == [(200, {"data": {"deals": {"nodes": [{"name": "c", "region": None}]}}})] * threads_count
    assert endpoint.builds == before + 1


# -- relations that resolve to null ----------------------------------------------------------
def test_lookups_to_records_in_the_recycle_bin_resolve_to_null(crm):
    api = crm
    account = create_account(api, "Gone")
    deal = create_deals(api, ["orphan"], account)[0]
    create_lines(api, deal, [1])
    api.data('mutation($id: ID!) { deleteAccount(id: $id) }', {"id": account})

    got = api.data('query($id: ID!) { deal(id: $id) { name account { name } } }', {"id": deal})
    assert got == {"deal": {"name": "orphan", "account": None}}
    listed = api.data('{ deals { nodes { name account { name } lines { nodes { qty deal { account { id } } } } } } }')
    assert listed == {"deals": {"nodes": [{"name": "orphan", "account": None,
                                           "lines": {"nodes": [{"qty": 1, "deal": {"account": None}}]}}]}}

    # the deal (and its line, master-detail) go to the bin: read from the bin, the line's deal is gone
    api.data('mutation($id: ID!) { deleteDeal(id: $id) }', {"id": deal})
    binned = api.data('{ lines(inRecycleBin: true) { nodes { qty dealId deal { name } } } }')
    assert binned == {"lines": {"nodes": [{"qty": 1, "dealId": deal, "deal": None}]}}

    # restored, the relation resolves again
    api.data('mutation($id: ID!) { restoreAccount(id: $id) { id } }', {"id": account})
    api.data('mutation($id: ID!) { restoreDeal(id: $id) { id } }', {"id": deal})
    again = api.data('{ lines { nodes { deal { name account { name } } } } }')
    assert again == {"lines": {"nodes": [{"deal": {"name": "orphan", "account": {"name": "Gone"}}}]}}


def test_a_relation_with_a_null_raw_id_resolves_to_null(crm):
    api = crm
    create_account(api, "Unrelated")
    created = api.data('mutation { createDeal(input: {name: "lonely"}) { id accountId account { name } } }')["createDeal"]
    assert created["accountId"] is None and created["account"] is None
    got = api.data('query($id: ID!) { deal(id: $id) { accountId account { id name } } }', {"id": created["id"]})
    assert got == {"deal": {"accountId": None, "account": None}}
    listed = api.data('{ deals { nodes { name account { name } } } }')
    assert listed == {"deals": {"nodes": [{"name": "lonely", "account": None}]}}
