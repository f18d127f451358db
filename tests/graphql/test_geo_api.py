"""Map queries in the generated GraphQL API, over HTTP, on SQLite and PostgreSQL: ``withinBox`` and
``withinRadius`` filters on geolocation fields and the ``<plural>MapGrid`` query, checked against an
independent haversine and cell computation in this module; the caller's read scope, hidden fields,
every error with its GraphQL path, and the names the metadata service reserves for them.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.metadata.errors import InvalidDefinition
from lowcode.runtime import geo

EARTH_RADIUS = 6_371_008.8
PASSWORD = "a long password 1"

MACHINE = {"apiName": "machine", "label": "Machine", "pluralLabel": "Machines", "fields": [
    {"apiName": "name", "label": "Name", "type": "TEXT"},
    {"apiName": "kind", "label": "Kind", "type": "PICKLIST",
     "options": {"values": [{"apiName": "pump", "label": "Pump"}, {"apiName": "mill", "label": "Mill"}]}},
    {"apiName": "location", "label": "Location", "type": "GEOLOCATION"},
    {"apiName": "depot", "label": "Depot", "type": "GEOLOCATION"},
]}
PART = {"apiName": "part", "label": "Part", "pluralLabel": "Parts", "fields": [
    {"apiName": "name", "label": "Name", "type": "TEXT"},
    {"apiName": "machine", "label": "Machine", "type": "LOOKUP", "options": {"target": "machine"}},
]}
CREATE_OBJECT = "mutation ($input: ObjectInput!) { createObject(input: $input) { apiName } }"
CREATE_FIELD = "mutation ($o: String!, $i: FieldInput!) { createField(object: $o, input: $i) { apiName } }"
LIST = "query ($filter: MachineFilter) { machines(filter: $filter, first: 500) { nodes { name } pageInfo { hasNextPage } } }"
GRID = """query ($field: MachineGeoField!, $cell: Float!, $filter: MachineFilter, $box: GeoBoxInput) {
  machinesMapGrid(field: $field, cellDegrees: $cell, filter: $filter, box: $box) { south west north east count latitude longitude } }"""

WORLD = {
    "berlin": (52.52, 13.405), "sydney": (-33.8688, 151.2093), "origin": (0.0, 0.0),
    "fiji": (-17.7, 179.9), "samoa": (-13.8, -171.8), "chukotka": (65.0, 179.5), "alaska": (65.0, -179.5),
    "date_line_east": (10.0, 180.0), "date_line_west": (10.0, -180.0),
    "north_pole": (90.0, 0.0), "near_north": (89.99, 120.0), "south_pole": (-90.0, 45.0), "near_south": (-89.99, -150.0),
}


# -- independent geometry ---------------------------------------------------------------------------
def haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))


def destination(lat: float, lng: float, bearing: float, meters: float) -> tuple[float, float]:
    d, theta, p1 = meters / EARTH_RADIUS, math.radians(bearing), math.radians(lat)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(theta))))
    l2 = math.radians(lng) + math.atan2(math.sin(theta) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def in_box(lat, lng, south, west, north, east) -> bool:
    return south <= lat <= north and (west <= lng <= east if west <= east else (lng >= west or lng <= east))


def expected_grid(points, cell: float) -> list[dict]:
    """The cells of ``points`` in the response's order: a cell holds its south and west edges, and the
    world's north and east edges (latitude 90, longitude 180) belong to the cells below and west of them."""
    cells = defaultdict(list)
    for lat, lng in points:
        row, col = math.floor(lat / cell), math.floor(lng / cell)
        row -= row * cell >= 90
        col -= col * cell >= 180
        cells[(row, col)].append((lat, lng))
    return [{"south": row * cell, "west": col * cell, "north": min((row + 1) * cell, 90), "east": min((col + 1) * cell, 180),
             "count": len(inside), "latitude": sum(p[0] for p in inside) / len(inside),
             "longitude": sum(p[1] for p in inside) / len(inside)} for (row, col), inside in sorted(cells.items())]


def assert_same_grid(found: list[dict], expected: list[dict]) -> None:
    assert [c["count"] for c in found] == [c["count"] for c in expected]
    for got, want in zip(found, expected):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9)


# -- helpers ------------------------------------------------------------------------------------------
@pytest.fixture
def maps(api):
    api.data(CREATE_OBJECT, {"input": MACHINE})
    api.data(CREATE_OBJECT, {"input": PART})
    return api


def add_machines(api, points: dict, **values) -> dict[str, str]:
    rows = [{"name": name, "location": None if p is None else {"latitude": p[0], "longitude": p[1]}, **values}
            for name, p in points.items()]
    return {r["name"]: r["id"] for r in api.runtime.records.bulk_create(S, "machine", rows)}


def listed(api, filter, token=None) -> set[str]:
    kwargs = {"token": token} if token else {}
    page = api.data(LIST, {"filter": filter}, **kwargs)["machines"]
    assert not page["pageInfo"]["hasNextPage"]
    return {n["name"] for n in page["nodes"]}


def grid(api, field, cell, token=None, **arguments) -> list[dict]:
    kwargs = {"token": token} if token else {}
    return api.data(GRID, {"field": field, "cell": cell, **arguments}, **kwargs)["machinesMapGrid"]


def failure(api, query, variables, token=None) -> tuple[str, list[tuple[str, str]]]:
    """The code and (code, field) problems of a request refused while it ran (HTTP 200)."""
    kwargs = {"token": token} if token else {}
    status, errors = api.errors(query, variables, **kwargs)
    assert status == 200 and len(errors) == 1, errors
    extensions = errors[0]["extensions"]
    return extensions["code"], [(e["code"], e["field"]) for e in extensions.get("errors", [])]


def world_sample(count: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    points = [(math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)) for _ in range(count)]
    return points + list(WORLD.values()) + [(10.0, 20.0), (-0.5, -0.5), (89.999, 179.999)]


# -- the schema ----------------------------------------------------------------------------------------
def test_the_schema_types_the_map_inputs_and_the_grid(maps):
    def described(name):
        return maps.data("query ($n: String!) { __type(name: $n) { kind inputFields { name type { kind name ofType { name } } } "
                         "fields { name type { kind ofType { name } } } enumValues { name } } }", {"n": name})["__type"]

    def shape(fields):
        return {f["name"]: (f["type"]["kind"], f["type"].get("name") or f["type"]["ofType"]["name"]) for f in fields}

    machine_filter = shape(described("MachineFilter")["inputFields"])
    assert machine_filter["location"] == machine_filter["depot"] == ("INPUT_OBJECT", "GeolocationFilter")
    assert shape(described("GeolocationFilter")["inputFields"]) == {
        "isNull": ("SCALAR", "Boolean"), "withinBox": ("INPUT_OBJECT", "GeoBoxInput"), "withinRadius": ("INPUT_OBJECT", "GeoRadiusInput")}
    assert shape(described("GeoBoxInput")["inputFields"]) == {k: ("NON_NULL", "Float") for k in ("south", "west", "north", "east")}
    assert shape(described("GeoRadiusInput")["inputFields"]) == {k: ("NON_NULL", "Float") for k in ("latitude", "longitude", "meters")}
    assert {v["name"] for v in described("MachineGeoField")["enumValues"]} == {"LOCATION", "DEPOT"}
    cell = {f["name"]: f["type"]["ofType"]["name"] for f in described("MapCell")["fields"]}
    assert cell == {"south": "Float", "west": "Float", "north": "Float", "east": "Float", "count": "Int",
                    "latitude": "Float", "longitude": "Float"}

    roots = maps.data("{ __schema { queryType { fields { name args { name type { kind name ofType { name } } } } } } }")
    fields = {f["name"]: f for f in roots["__schema"]["queryType"]["fields"]}
    assert shape(fields["machinesMapGrid"]["args"]) == {
        "field": ("NON_NULL", "MachineGeoField"), "cellDegrees": ("NON_NULL", "Float"),
        "filter": ("INPUT_OBJECT", "MachineFilter"), "box": ("INPUT_OBJECT", "GeoBoxInput")}
    assert "partsMapGrid" not in fields and described("PartGeoField") is None  # no geolocation field, no map


# -- filters -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("box", [(-20, 170, 70, -170), (89, -180, 90, 180), (-90, -180, 90, 180), (40, -10, 60, 20),
                                 (-10, 179.95, 70, -179.95)])
def test_within_box_lists_the_points_inside_even_across_the_antimeridian(maps, box):
    add_machines(maps, {**WORLD, "nowhere": None})
    south, west, north, east = box

    found = listed(maps, {"location": {"withinBox": {"south": south, "west": west, "north": north, "east": east}}})

    assert found == {n for n, p in WORLD.items() if in_box(*p, *box)}
    assert found  # every box holds some point


def test_within_radius_agrees_with_the_haversine_just_inside_and_just_outside(maps):
    centres = [(52.52, 13.405), (-17.0, -179.95), (89.95, -60.0), (-90.0, 0.0)]
    radii = [1_000, 80_000]
    points = dict(WORLD)
    for c, (lat, lng) in enumerate(centres):
        for meters in radii:
            for bearing in (10, 100, 190, 280):
                points[f"c{c}-{meters}-{bearing}-in"] = destination(lat, lng, bearing, meters * (1 - 1e-6))
                points[f"c{c}-{meters}-{bearing}-out"] = destination(lat, lng, bearing, meters * (1 + 1e-6))
    add_machines(maps, {**points, "nowhere": None})

    for c, (lat, lng) in enumerate(centres):
        for meters in radii:
            expected = {n for n, p in points.items() if haversine(lat, lng, *p) <= meters}
            assert {n for n in expected if n.startswith(f"c{c}-{meters}-")} == {
                n for n in points if n.startswith(f"c{c}-{meters}-") and n.endswith("-in")}
            found = listed(maps, {"location": {"withinRadius": {"latitude": lat, "longitude": lng, "meters": meters}}})
            assert found == expected, (lat, lng, meters)
    assert "nowhere" in listed(maps, {"not": {"location": {"withinRadius": {"latitude": 0, "longitude": 0, "meters": 1}}}})


def test_spatial_filters_combine_with_other_conditions_related_records_and_literals(maps):
    ids = add_machines(maps, {"pump_berlin": (52.5, 13.4), "mill_berlin": (52.51, 13.41), "pump_fiji": (-17.7, 179.9)})
    for name in ("pump_berlin", "pump_fiji"):
        maps.runtime.records.update(S, "machine", ids[name], {"kind": "pump"})
    maps.runtime.records.bulk_create(S, "part", [{"name": "p1", "machine": ids["pump_berlin"]}, {"name": "p2", "machine": ids["pump_fiji"]}])
    near_berlin = {"withinRadius": {"latitude": 52.5, "longitude": 13.4, "meters": 2000}}

    assert listed(maps, {"location": near_berlin, "kind": {"eq": "PUMP"}}) == {"pump_berlin"}
    assert listed(maps, {"location": {**near_berlin, "isNull": False}}) == {"pump_berlin", "mill_berlin"}
    parts = maps.data("{ parts(filter: {machine: {location: {withinBox: {south: -18, west: 179, north: -17, east: -179}}}}) "
                      "{ nodes { name } } }")["parts"]["nodes"]
    assert [p["name"] for p in parts] == ["p2"]
    inline = maps.data("{ machines(filter: {location: {withinRadius: {latitude: 52.5, longitude: 13.4, meters: 2000}}}) "
                       "{ totalCount } }")
    assert inline["machines"]["totalCount"] == 2


# -- the grid ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", [45, 7, 1])
def test_map_grid_counts_equal_an_independent_computation(maps, cell):
    points = world_sample(250, seed=3)
    add_machines(maps, {**{f"p{i}": p for i, p in enumerate(points)}, "nowhere": None})

    found = grid(maps, "LOCATION", cell)

    assert_same_grid(found, expected_grid(points, cell))
    assert len([s for s in maps.statements if "machine" in s]) == 1  # one statement reads the records


def test_map_grid_within_a_box_and_a_filter(maps):
    points = world_sample(200, seed=8)
    named = {f"p{i}": p for i, p in enumerate(points)}
    ids = add_machines(maps, named)
    mills = [n for i, n in enumerate(named) if i % 4 == 0]
    maps.runtime.records.bulk_update(S, "machine", [{"id": ids[n], "values": {"kind": "mill"}} for n in mills])
    box = {"south": -70, "west": 120, "north": 80, "east": -120}
    inside = [p for p in points if in_box(*p, -70, 120, 80, -120)]

    assert_same_grid(grid(maps, "LOCATION", 5, box=box), expected_grid(inside, 5))
    assert_same_grid(grid(maps, "LOCATION", 5, box=box, filter={"kind": {"eq": "MILL"}}),
                     expected_grid([named[n] for n in mills if in_box(*named[n], -70, 120, 80, -120)], 5))
    assert grid(maps, "DEPOT", 5) == []


def test_map_grid_cells_read_as_their_multiples(maps):
    add_machines(maps, {"a": (52.52, 13.405), "b": (52.58, 13.49), "pole": (90.0, 180.0), "c": (0.35, 0.75)})
    assert (3 * 0.1, 7 * 0.1) != (0.3, 0.7)  # what the edges would read unrounded

    found = maps.data("{ machinesMapGrid(field: LOCATION, cellDegrees: 0.1) { south west north east count } }")["machinesMapGrid"]

    assert found == [{"south": 0.3, "west": 0.7, "north": 0.4, "east": 0.8, "count": 1},
                     {"south": 52.5, "west": 13.4, "north": 52.6, "east": 13.5, "count": 2},
                     {"south": 89.9, "west": 179.9, "north": 90.0, "east": 180.0, "count": 1}]


# -- errors --------------------------------------------------------------------------------------------
def test_invalid_areas_are_refused_with_their_graphql_paths(maps):
    circle = {"latitude": 10, "longitude": 20, "meters": 100}
    box = {"south": -10, "west": 170, "north": 10, "east": -170}

    assert failure(maps, LIST, {"filter": {"location": {"withinRadius": {**circle, "meters": -1}}}}) == (
        "VALIDATION_FAILED", [("OUT_OF_RANGE", "filter.location.withinRadius.meters")])
    assert failure(maps, LIST, {"filter": {"location": {"withinRadius": {**circle, "latitude": 90.5, "longitude": 181}}}}) == (
        "VALIDATION_FAILED", [("OUT_OF_RANGE", "filter.location.withinRadius.latitude"),
                              ("OUT_OF_RANGE", "filter.location.withinRadius.longitude")])
    assert failure(maps, LIST, {"filter": {"and": [{"name": {"eq": "x"}}, {"depot": {"withinBox": {**box, "south": 11}}}]}}) == (
        "VALIDATION_FAILED", [("OUT_OF_RANGE", "filter.and.1.depot.withinBox.north")])
    assert failure(maps, GRID, {"field": "LOCATION", "cell": 0.0005, "box": {**box, "east": 180.5},
                                "filter": {"not": {"location": {"withinBox": {**box, "west": -181}}}}}) == (
        "VALIDATION_FAILED", [("OUT_OF_RANGE", "cellDegrees"), ("OUT_OF_RANGE", "box.east"),
                              ("OUT_OF_RANGE", "filter.not.location.withinBox.west")])
    assert failure(maps, GRID, {"field": "DEPOT", "cell": 91}) == ("VALIDATION_FAILED", [("OUT_OF_RANGE", "cellDegrees")])


@pytest.mark.parametrize("query,variables", [
    ("{ machines(filter: {location: {withinRadius: {latitude: 1, longitude: 2}}}) { totalCount } }", None),
    ("{ machines(filter: {location: {withinBox: {south: 1, west: 2, north: 3}}}) { totalCount } }", None),
    ("{ machines(filter: {location: {withinBox: {south: 1, west: 2, north: 3, east: 4, up: 5}}}) { totalCount } }", None),
    ("{ machinesMapGrid(field: NAME, cellDegrees: 1) { count } }", None),
    ("{ machinesMapGrid(field: LOCATION) { count } }", None),
    ("{ machinesMapGrid(field: LOCATION, cellDegrees: \"1\") { count } }", None),
    (GRID, {"field": "LOCATION", "cell": 1, "box": {"south": 0, "west": 0, "north": None, "east": 1}}),
    (LIST, {"filter": {"location": {"withinRadius": {"latitude": "north", "longitude": 0, "meters": 1}}}}),
])
def test_malformed_map_arguments_are_bad_queries(maps, query, variables):
    status, errors = maps.errors(query, variables)
    assert status == 400 and {e["extensions"]["code"] for e in errors} == {"BAD_QUERY"}


def test_too_many_cells_are_refused(maps, monkeypatch):
    add_machines(maps, {"a": (0.5, 0.5), "b": (1.5, 1.5), "c": (2.5, 2.5)})
    monkeypatch.setattr(geo, "MAX_CELLS", 2)

    assert failure(maps, GRID, {"field": "LOCATION", "cell": 1}) == ("VALIDATION_FAILED", [("TOO_MANY_GROUPS", "cellDegrees")])
    assert len(grid(maps, "LOCATION", 10)) == 1


# -- permissions -----------------------------------------------------------------------------------------
def org(api) -> dict[str, tuple[str, str]]:
    """ann and bob read their own machines; cy reads every machine and part but not ``machine.location``.
    A token and a user id per name."""
    sec = api.runtime.security
    unit = sec.create_unit(S, "Plant")["id"]
    sec.create_role(S, "mapper", "Mapper")
    sec.set_object_grant(S, "mapper", "machine", ["read"], "own", "own")
    sec.create_role(S, "blind", "Blind")
    for obj in ("machine", "part"):
        sec.set_object_grant(S, "blind", obj, ["read"], "all", "all")
    sec.set_field_grant(S, "blind", "machine", "location", "hidden")
    people = {}
    for username, role in (("ann", "mapper"), ("bob", "mapper"), ("cy", "blind")):
        user = sec.create_user(S, {"username": username}, PASSWORD)
        sec.add_membership(S, user["id"], unit, role)
        people[username] = (sec.issue_token(S, "test", user_id=user["id"])["token"], user["id"])
    return people


def test_grid_and_filters_answer_only_with_the_callers_records(maps):
    people = org(maps)
    mine = {"ann": {"ann_berlin": (52.52, 13.405), "ann_fiji": (-17.7, 179.9)},
            "bob": {"bob_berlin": (52.51, 13.41), "bob_samoa": (-13.8, -171.8), "bob_pole": (-90.0, 0.0)}}
    for owner, points in mine.items():
        add_machines(maps, points, owner_id=people[owner][1])

    for owner, points in mine.items():
        token = people[owner][0]
        assert_same_grid(grid(maps, "LOCATION", 10, token=token), expected_grid(points.values(), 10))
        assert listed(maps, {"location": {"withinBox": {"south": -20, "west": 170, "north": 0, "east": -170}}}, token) == {
            n for n, p in points.items() if in_box(*p, -20, 170, 0, -170)}
        assert listed(maps, {"location": {"withinRadius": {"latitude": 52.52, "longitude": 13.405, "meters": 5000}}}, token) == {
            f"{owner}_berlin"}
    everyone = grid(maps, "LOCATION", 10)
    assert_same_grid(everyone, expected_grid([*mine["ann"].values(), *mine["bob"].values()], 10))


def test_hidden_geolocation_fields_are_refused(maps):
    people = org(maps)
    ids = add_machines(maps, {"a": (1.0, 1.0)})
    maps.runtime.records.update(S, "machine", ids["a"], {"depot": {"latitude": 3.5, "longitude": 3.5}})
    token = people["cy"][0]
    box = {"south": 0, "west": 0, "north": 5, "east": 5}

    assert failure(maps, GRID, {"field": "LOCATION", "cell": 1}, token) == ("FORBIDDEN", [("FORBIDDEN", "field")])
    assert failure(maps, LIST, {"filter": {"location": {"withinBox": box}}}, token) == ("FORBIDDEN", [("FORBIDDEN", "filter.location")])
    assert failure(maps, GRID, {"field": "DEPOT", "cell": 1, "filter": {"or": [{"location": {"withinRadius": {
        "latitude": 1, "longitude": 1, "meters": 5}}}]}}, token) == ("FORBIDDEN", [("FORBIDDEN", "filter.or.0.location")])
    status, errors = maps.errors("{ parts(filter: {machine: {location: {isNull: false}}}) { totalCount } }", token=token)
    assert [(e["code"], e["field"]) for e in errors[0]["extensions"]["errors"]] == [("FORBIDDEN", "filter.machine.location")]
    # what cy may read still maps
    assert grid(maps, "DEPOT", 1, token=token) == [
        {"south": 3.0, "west": 3.0, "north": 4.0, "east": 4.0, "count": 1, "latitude": 3.5, "longitude": 3.5}]
    assert listed(maps, {"depot": {"withinBox": box}}, token) == {"a"}


# -- reserved names ------------------------------------------------------------------------------------
def test_the_map_names_are_reserved(maps):
    metadata = maps.runtime.metadata

    def refused(call, *args) -> dict[str | None, str]:
        before = maps.runtime.catalog().version
        with pytest.raises(InvalidDefinition) as caught:
            call(S, *args)
        assert maps.runtime.catalog().version == before
        assert {e.code for e in caught.value.errors} == {"NAME_COLLISION"}
        return {e.field: e.message for e in caught.value.errors}

    assert "'machinesMapGrid'" in refused(metadata.create_object, {"api_name": "machines_map_grid", "label": "X"})["api_name"]
    assert "'MachineGeoField'" in refused(metadata.create_object, {"api_name": "machine_geo_field", "label": "X"})["api_name"]
    for platform_type in ("map_cell", "geo_box_input", "geo_radius_input", "geolocation_filter"):
        assert "platform" in refused(metadata.create_object, {"api_name": platform_type, "label": "X"})["api_name"]

    # without a geolocation field an object has no map: the names are free until one is added
    metadata.create_object(S, {"api_name": "gadget", "label": "Gadget"})
    metadata.create_object(S, {"api_name": "gadgets_map_grid", "label": "Gadget grid"})
    errors = refused(metadata.create_field, "gadget", {"api_name": "spot", "label": "Spot", "type": "geolocation"})
    assert set(errors) == {"type"} and "'gadgetsMapGrid'" in errors["type"]
    assert maps.runtime.catalog().object("gadget").field("spot") is None
    errors = refused(metadata.create_objects, [
        {"api_name": "widget", "label": "Widget", "fields": [{"api_name": "name", "label": "Name", "type": "text"},
                                                             {"api_name": "spot", "label": "Spot", "type": "geolocation"}]},
        {"api_name": "widget_geo_field", "label": "X"}])
    assert set(errors) == {"0.fields.1.type", "1.api_name"}

    status, body = maps.post(CREATE_FIELD, {"o": "gadget", "i": {"apiName": "spot", "label": "Spot", "type": "GEOLOCATION"}})
    problems = body["errors"][0]["extensions"]["errors"]
    assert [p["code"] for p in problems] == ["NAME_COLLISION"] and "gadgetsMapGrid" in problems[0]["message"]
    # a second geolocation field adds no name: no collision
    metadata.create_field(S, "machine", {"api_name": "home", "label": "Home", "type": "geolocation"})
    assert {v["name"] for v in maps.data('{ __type(name: "MachineGeoField") { enumValues { name } } }')["__type"]["enumValues"]} == {
        "LOCATION", "DEPOT", "HOME"}
