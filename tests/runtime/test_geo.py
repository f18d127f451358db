"""Map queries over geolocation fields through the public RecordService: ``within_box`` and
``within_radius`` filters and ``geo_grid`` counts, checked against an independent haversine and an
independent cell computation in this module, over points around the world (the poles, both sides of
the antimeridian, points just inside and just outside each radius); the caller's read scope and
field security; every error. Every test runs on SQLite and PostgreSQL (``runtime`` fixture), but the
one for SQLite builds without math functions.
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import pytest
from lowcode.metadata import database
from lowcode.metadata.actors import SYSTEM_ACTOR as S
from lowcode.metadata.errors import Forbidden, NotFound, ValidationFailed
from lowcode.runtime import Runtime, geo
from sqlalchemy import event

EARTH_RADIUS = 6_371_008.8
PASSWORD = "a long password 1"

SITE = {
    "api_name": "site", "label": "Site", "plural_api_name": "sites", "plural_label": "Sites",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "kind", "label": "Kind", "type": "picklist",
         "options": {"values": [{"api_name": "pump", "label": "Pump"}, {"api_name": "mill", "label": "Mill"}]}},
        {"api_name": "location", "label": "Location", "type": "geolocation", "indexed": True},
        {"api_name": "depot", "label": "Depot", "type": "geolocation"},
    ],
}
MACHINE = {
    "api_name": "machine", "label": "Machine", "plural_api_name": "machines", "plural_label": "Machines",
    "fields": [
        {"api_name": "name", "label": "Name", "type": "text"},
        {"api_name": "site", "label": "Site", "type": "lookup", "options": {"target": "site"}},
    ],
}

WORLD = {
    "berlin": (52.52, 13.405), "sydney": (-33.8688, 151.2093), "origin": (0.0, 0.0),
    "fiji": (-17.7, 179.9), "samoa": (-13.8, -171.8), "chukotka": (65.0, 179.5), "alaska": (65.0, -179.5),
    "date_line_east": (10.0, 180.0), "date_line_west": (10.0, -180.0),
    "north_pole": (90.0, 0.0), "near_north": (89.99, 120.0), "arctic": (89.5, -60.0),
    "south_pole": (-90.0, 45.0), "near_south": (-89.99, -150.0), "antarctic": (-85.0, 170.0),
}


# -- independent geometry ---------------------------------------------------------------------------
def haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle metres between two points (R = 6,371,008.8 m)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))


def destination(lat: float, lng: float, bearing: float, meters: float) -> tuple[float, float]:
    """The point ``meters`` from (lat, lng) along the great circle leaving at ``bearing`` degrees."""
    d, theta, p1, l1 = meters / EARTH_RADIUS, math.radians(bearing), math.radians(lat), math.radians(lng)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(theta))))
    l2 = l1 + math.atan2(math.sin(theta) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    lng2 = (math.degrees(l2) + 540) % 360 - 180
    return math.degrees(p2), lng2


def in_box(lat: float, lng: float, south: float, west: float, north: float, east: float) -> bool:
    if not south <= lat <= north:
        return False
    return west <= lng <= east if west <= east else (lng >= west or lng <= east)


def expected_cells(points, cell: float) -> dict[tuple[int, int], list[tuple[float, float]]]:
    """Points by (row, column): a cell holds its south and west edges; latitude 90 and longitude 180,
    the north and east edges of the world, belong to the cells below and west of them."""
    cells: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for lat, lng in points:
        row, col = math.floor(lat / cell), math.floor(lng / cell)
        if row * cell >= 90:
            row -= 1
        if col * cell >= 180:
            col -= 1
        cells[(row, col)].append((lat, lng))
    return cells


# -- helpers ------------------------------------------------------------------------------------------
@pytest.fixture
def rt(runtime):
    runtime.metadata.create_objects(S, [SITE, MACHINE])
    return runtime


def add_sites(rt, points: dict[str, tuple[float, float] | None], **values) -> dict[str, str]:
    """Sites named by the keys, at the points (``None``: no location); their ids by name."""
    rows = [{"name": name, "location": None if p is None else {"latitude": p[0], "longitude": p[1]}, **values}
            for name, p in points.items()]
    created = []
    for start in range(0, len(rows), 5000):
        created.extend(rt.records.bulk_create(S, "site", rows[start:start + 5000]))
    return {r["name"]: r["id"] for r in created}


def names(rt, filter, actor=S, obj="site") -> set[str]:
    page = rt.records.query(actor, obj, filter=filter, first=1000, fields=["name"])
    assert not page.has_next_page
    return {r["name"] for r in page.records}


def problems(exc) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.value.errors]


def grid_of(cells) -> dict[tuple[float, float], int]:
    return {(c["south"], c["west"]): c["count"] for c in cells}


def check_grid(cells, points, cell: float) -> None:
    """``cells`` are exactly the independent cells of ``points``: edges, counts, mean points and order."""
    wanted = expected_cells(points, cell)
    assert [(round(c["south"] / cell), round(c["west"] / cell)) for c in cells] == sorted(wanted)
    for found, key in zip(cells, sorted(wanted)):
        row, col = key
        inside = wanted[key]
        assert found["count"] == len(inside)
        assert found["south"] == pytest.approx(row * cell, abs=1e-9) and found["west"] == pytest.approx(col * cell, abs=1e-9)
        assert found["north"] == pytest.approx(min((row + 1) * cell, 90), abs=1e-9)
        assert found["east"] == pytest.approx(min((col + 1) * cell, 180), abs=1e-9)
        assert found["south"] <= min(p[0] for p in inside) and max(p[0] for p in inside) <= found["north"]
        assert found["west"] <= min(p[1] for p in inside) and max(p[1] for p in inside) <= found["east"]
        assert found["latitude"] == pytest.approx(sum(p[0] for p in inside) / len(inside), rel=1e-12, abs=1e-12)
        assert found["longitude"] == pytest.approx(sum(p[1] for p in inside) / len(inside), rel=1e-12, abs=1e-12)


def rim_points(centres, radii, bearings=(0, 45, 90, 135, 180, 225, 270, 315)) -> dict[str, tuple[float, float]]:
    """For every centre, radius and bearing a point a millionth of the radius inside it and one outside it."""
    points = {}
    for c, (lat, lng) in enumerate(centres):
        for meters in radii:
            for bearing in bearings:
                for side, factor in (("in", 1 - 1e-6), ("out", 1 + 1e-6)):
                    points[f"c{c}-{meters}-{bearing}-{side}"] = destination(lat, lng, bearing, meters * factor)
    return points


# -- within_box ---------------------------------------------------------------------------------------
BOXES = [
    ((-20, 170, 70, -170), {"fiji", "samoa", "chukotka", "alaska", "date_line_east", "date_line_west"}),
    ((40, -10, 60, 20), {"berlin"}),
    ((89, -180, 90, 180), {"north_pole", "near_north", "arctic"}),
    ((-90, 0, -80, 179), {"south_pole", "antarctic"}),
    ((-90, -180, 90, 180), set(WORLD)),
    ((0, 0, 0, 0), {"origin"}),
    ((-10, 179.95, 70, -179.95), {"date_line_east", "date_line_west"}),
    ((60, 179, 70, 180), {"chukotka"}),
]


@pytest.mark.parametrize("box,expected", BOXES)
def test_within_box_keeps_the_points_inside_even_across_the_antimeridian(rt, box, expected):
    add_sites(rt, {**WORLD, "nowhere": None})
    south, west, north, east = box

    found = names(rt, {"location": {"within_box": {"south": south, "west": west, "north": north, "east": east}}})

    assert found == expected
    assert found == {n for n, (lat, lng) in WORLD.items() if in_box(lat, lng, *box)}


def test_the_complement_of_a_box_holds_the_records_without_a_point(rt):
    add_sites(rt, {**WORLD, "nowhere": None})
    box = {"south": -20, "west": 170, "north": 70, "east": -170}

    outside = names(rt, {"not": {"location": {"within_box": box}}})

    assert outside == set(WORLD) - names(rt, {"location": {"within_box": box}}) | {"nowhere"}
    assert "nowhere" not in names(rt, {"location": {"within_box": {"south": -90, "west": -180, "north": 90, "east": 180}}})


# -- within_radius ------------------------------------------------------------------------------------
RADIUS_CENTRES = [(52.52, 13.405), (0.0, 179.99), (-17.0, -179.9), (89.9, 45.0), (-89.95, -120.0), (80.0, -179.9), (90.0, 0.0)]
RADII = [100, 5_000, 50_000, 500_000]


def test_within_radius_agrees_with_the_haversine_just_inside_and_just_outside(rt):
    points = {**WORLD, **rim_points(RADIUS_CENTRES, RADII)}
    add_sites(rt, {**points, "nowhere": None})
    wrong = []
    for c, (lat, lng) in enumerate(RADIUS_CENTRES):
        for meters in RADII:
            expected = {n for n, p in points.items() if haversine(lat, lng, *p) <= meters}
            rim = {n for n in points if n.startswith(f"c{c}-{meters}-")}
            assert {n for n in rim if n.endswith("-in")} == expected & rim  # the test's points lie where meant
            found = names(rt, {"location": {"within_radius": {"latitude": lat, "longitude": lng, "meters": meters}}})
            if found != expected:
                wrong.append(((lat, lng, meters), sorted(found ^ expected)))
    assert not wrong


def test_circles_holding_a_pole_or_crossing_the_antimeridian(rt):
    points = {**WORLD, "across": (-17.0, 179.95), "arctic_far": (89.4, 180.0), "arctic_near": (89.95, 180.0)}
    add_sites(rt, points)

    def within(lat, lng, meters):
        found = names(rt, {"location": {"within_radius": {"latitude": lat, "longitude": lng, "meters": meters}}})
        assert found == {n for n, p in points.items() if haversine(lat, lng, *p) <= meters}
        return found

    assert within(-17.0, -179.9, 100_000) == {"fiji", "across"}
    assert within(89.9, 0.0, 50_000) == {"north_pole", "near_north", "arctic_near"}  # over the pole to longitude 180
    assert within(90.0, 0.0, 100_000) == {"north_pole", "near_north", "arctic", "arctic_near", "arctic_far"}
    assert within(-90.0, 0.0, 1_200_000) == {"south_pole", "near_south", "antarctic"}
    assert within(65.0, 179.5, 50_000) == {"chukotka", "alaska"}


def test_radius_zero_keeps_the_centre_and_half_the_earth_keeps_every_point(rt):
    add_sites(rt, {**WORLD, "nowhere": None})
    everything = {"latitude": 0, "longitude": 0, "meters": math.pi * EARTH_RADIUS}

    assert names(rt, {"location": {"within_radius": {"latitude": 52.52, "longitude": 13.405, "meters": 0}}}) == {"berlin"}
    assert names(rt, {"location": {"within_radius": everything}}) == set(WORLD)
    assert names(rt, {"location": {"within_radius": {**everything, "meters": 1e12}}}) == set(WORLD)
    antipode = {"latitude": 0, "longitude": 0, "meters": 20_000_000}
    assert names(rt, {"location": {"within_radius": antipode}}) == {
        n for n, p in WORLD.items() if haversine(0, 0, *p) <= 20_000_000}
    assert names(rt, {"not": {"location": {"within_radius": {**antipode, "meters": 1_000_000}}}}) == set(WORLD) - {"origin"} | {"nowhere"}


def test_spatial_filters_combine_with_other_filters_and_related_records(rt):
    ids = add_sites(rt, {"pump_berlin": (52.5, 13.4), "mill_berlin": (52.51, 13.41), "pump_fiji": (-17.7, 179.9)})
    rt.records.update(S, "site", ids["pump_berlin"], {"kind": "pump", "depot": {"latitude": -17.7, "longitude": 179.9}})
    rt.records.update(S, "site", ids["pump_fiji"], {"kind": "pump"})
    rt.records.bulk_create(S, "machine", [{"name": "m1", "site": ids["pump_berlin"]}, {"name": "m2", "site": ids["mill_berlin"]},
                                          {"name": "m3", "site": ids["pump_fiji"]}, {"name": "m4"}])
    near_berlin = {"within_radius": {"latitude": 52.5, "longitude": 13.4, "meters": 2_000}}

    assert names(rt, {"location": near_berlin, "kind": {"eq": "pump"}}) == {"pump_berlin"}
    assert names(rt, {"or": [{"location": near_berlin}, {"depot": {"within_box": {"south": -18, "west": 179, "north": -17, "east": -179}}}]}) == {
        "pump_berlin", "mill_berlin"}
    assert names(rt, {"location": {**near_berlin, "is_null": False}}) == {"pump_berlin", "mill_berlin"}
    assert names(rt, {"site": {"location": near_berlin}}, obj="machine") == {"m1", "m2"}


def test_the_radius_statement_prefilters_on_the_latitude_column_so_its_index_serves(rt):
    add_sites(rt, WORLD)
    captured = []

    def capture(_conn, _cursor, statement, parameters, *_args):
        if "location__lat" in statement and "sin(" in statement:
            captured.append((statement, parameters))

    event.listen(rt.engine, "before_cursor_execute", capture)
    try:
        assert names(rt, {"location": {"within_radius": {"latitude": 52.52, "longitude": 13.405, "meters": 1000}}}) == {"berlin"}
    finally:
        event.remove(rt.engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    assert "location__lat BETWEEN" in statement
    with rt.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(str(row) for row in conn.exec_driver_sql(
            ("EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN ") + statement, parameters))
    assert "ix_" in plan and "location__lat" in plan, plan


# -- grids ----------------------------------------------------------------------------------------------
def world_sample(count: int, seed: int) -> list[tuple[float, float]]:
    """Random points over the sphere, and the edges cells meet at (poles, antimeridian, multiples of 10)."""
    rng = random.Random(seed)
    points = [(math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)) for _ in range(count)]
    return points + list(WORLD.values()) + [(10.0, 20.0), (-10.0, -20.0), (-0.5, -0.5), (45.0, 90.0), (89.999, 179.999)]


@pytest.mark.parametrize("cell", [90, 45, 10, 7, 1, 0.5])
def test_grid_counts_equal_an_independent_computation(rt, cell):
    points = world_sample(300, seed=11)
    add_sites(rt, {**{f"p{i}": p for i, p in enumerate(points)}, "nowhere": None})

    cells = rt.records.geo_grid(S, "site", "location", cell)

    check_grid(cells, points, cell)
    assert sum(c["count"] for c in cells) == len(points)


def test_grid_cells_are_aligned_on_multiples_and_hold_the_world_edges(rt):
    add_sites(rt, WORLD)

    cells = {(c["south"], c["west"]): c for c in rt.records.geo_grid(S, "site", "location", 10)}

    assert cells[(80.0, 0.0)]["count"] == 1 and cells[(80.0, 0.0)]["north"] == 90.0  # the north pole, on the top edge
    assert cells[(80.0, 120.0)]["count"] == 1 and cells[(60.0, 170.0)]["east"] == 180.0
    assert cells[(10.0, 170.0)]["count"] == 1 and cells[(10.0, -180.0)]["count"] == 1  # longitude 180 and -180
    assert cells[(-90.0, 40.0)]["count"] == 1  # the south pole holds the south edge
    assert len(cells) == len(WORLD) and all(c["count"] == 1 for c in cells.values())

    assert cells[(0.0, 0.0)] == {"south": 0.0, "west": 0.0, "north": 10.0, "east": 10.0, "count": 1, "latitude": 0.0, "longitude": 0.0}
    thirds = rt.records.geo_grid(S, "site", "location", 0.1, box={"south": 52, "west": 13, "north": 53, "east": 14})
    assert thirds == [{"south": 52.5, "west": 13.4, "north": 52.6, "east": 13.5, "count": 1, "latitude": 52.52, "longitude": 13.405}]


def test_grid_within_a_box_and_a_filter(rt):
    points = world_sample(200, seed=5)
    named = {f"p{i}": p for i, p in enumerate(points)}
    ids = add_sites(rt, named)
    pumps = [n for i, n in enumerate(named) if i % 3 == 0]
    rt.records.bulk_update(S, "site", [{"id": ids[n], "values": {"kind": "pump"}} for n in pumps])
    box = {"south": -60, "west": 150, "north": 70, "east": -150}

    boxed = rt.records.geo_grid(S, "site", "location", 5, box=box)
    check_grid(boxed, [p for p in points if in_box(*p, -60, 150, 70, -150)], 5)
    assert boxed  # the sample reaches the box

    filtered = rt.records.geo_grid(S, "site", "location", 5, box=box, filter={"kind": {"eq": "pump"}})
    check_grid(filtered, [named[n] for n in pumps if in_box(*named[n], -60, 150, 70, -150)], 5)

    around = {"within_radius": {"latitude": 0, "longitude": 180, "meters": 3_000_000}}
    check_grid(rt.records.geo_grid(S, "site", "location", 2, filter={"location": around}),
               [p for p in points if haversine(0, 180, *p) <= 3_000_000], 2)


def test_grid_counts_one_field_and_leaves_out_deleted_records_and_records_without_a_point(rt):
    ids = add_sites(rt, {"a": (1.5, 1.5), "b": (1.6, 1.4), "c": (-1.5, -1.5), "gone": (1.7, 1.7), "nowhere": None})
    rt.records.update(S, "site", ids["nowhere"], {"depot": {"latitude": 30.5, "longitude": 30.5}})
    rt.records.delete(S, "site", ids["gone"])

    assert grid_of(rt.records.geo_grid(S, "site", "location", 1)) == {(1.0, 1.0): 2, (-2.0, -2.0): 1}
    assert grid_of(rt.records.geo_grid(S, "site", "depot", 1)) == {(30.0, 30.0): 1}
    assert rt.records.geo_grid(S, "site", "depot", 1, filter={"name": {"eq": "a"}}) == []


def test_grid_is_one_statement(rt):
    add_sites(rt, WORLD)
    statements = []
    event.listen(rt.engine, "before_cursor_execute", lambda _c, _cu, statement, *_a: statements.append(statement))
    rt.records.geo_grid(S, "site", "location", 10, box={"south": -90, "west": 170, "north": 90, "east": -170},
                        filter={"kind": {"is_null": True}})
    reading = [s for s in statements if "site" in s]
    assert len(reading) == 1 and "GROUP BY" in reading[0]


def test_too_many_cells_are_refused(rt, monkeypatch):
    add_sites(rt, {"a": (0.5, 0.5), "b": (1.5, 1.5), "c": (2.5, 2.5), "d": (2.6, 2.6)})
    monkeypatch.setattr(geo, "MAX_CELLS", 3)

    assert len(rt.records.geo_grid(S, "site", "location", 1)) == 3
    with pytest.raises(ValidationFailed) as exc:
        rt.records.geo_grid(S, "site", "location", 0.1)
    assert problems(exc) == [("TOO_MANY_GROUPS", "cell_degrees")]
    assert len(rt.records.geo_grid(S, "site", "location", 0.1, box={"south": 0, "west": 0, "north": 2, "east": 2})) == 2
    assert len(rt.records.geo_grid(S, "site", "location", 0.1, filter={"name": {"ne": "d"}})) == 3


def test_the_cell_limit_is_ten_thousand():
    assert (geo.MAX_CELLS, geo.MIN_CELL_DEGREES, geo.MAX_CELL_DEGREES) == (10_000, 0.001, 90)


def test_cell_size_bounds(rt):
    add_sites(rt, {"a": (0.0005, 0.0005), "b": (45.0, 45.0)})

    assert grid_of(rt.records.geo_grid(S, "site", "location", 0.001)) == {(0.0, 0.0): 1, (45.0, 45.0): 1}
    assert grid_of(rt.records.geo_grid(S, "site", "location", 90)) == {(0.0, 0.0): 2}
    for bad in (0.0009, 90.001, 0, -1, math.nan, math.inf):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.geo_grid(S, "site", "location", bad)
        assert problems(exc) == [("OUT_OF_RANGE", "cell_degrees")], bad
    for bad in ("1", True, None, [1]):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.geo_grid(S, "site", "location", bad)
        assert problems(exc) == [("INVALID_TYPE", "cell_degrees")], bad


# -- errors ------------------------------------------------------------------------------------------
def refused_filter(rt, spec) -> list[tuple[str, str | None]]:
    with pytest.raises(ValidationFailed) as exc:
        rt.records.query(S, "site", filter=spec)
    return problems(exc)


def test_invalid_boxes_are_refused_with_exact_paths(rt):
    box = {"south": -10, "west": 170, "north": 10, "east": -170}
    at = "filter.location.within_box"

    def refused(value):
        return refused_filter(rt, {"location": {"within_box": value}})

    assert refused({**box, "south": -90.5}) == [("OUT_OF_RANGE", f"{at}.south")]
    assert refused({**box, "north": 91}) == [("OUT_OF_RANGE", f"{at}.north")]
    assert refused({**box, "west": -180.1, "east": 181}) == [("OUT_OF_RANGE", f"{at}.west"), ("OUT_OF_RANGE", f"{at}.east")]
    assert refused({**box, "south": 20}) == [("OUT_OF_RANGE", f"{at}.north")]
    assert refused({"south": 1, "north": 2}) == [("REQUIRED", f"{at}.west"), ("REQUIRED", f"{at}.east")]
    assert refused({**box, "east": None}) == [("REQUIRED", f"{at}.east")]
    assert refused({**box, "west": "170", "north": True}) == [("INVALID_TYPE", f"{at}.west"), ("INVALID_TYPE", f"{at}.north")]
    assert refused({**box, "south": math.nan}) == [("INVALID_VALUE", f"{at}.south")]
    assert refused({**box, "up": 1}) == [("UNKNOWN_FIELD", f"{at}.up")]
    assert refused([0, 0, 1, 1]) == [("INVALID_TYPE", at)]
    assert refused(None) == [("INVALID_TYPE", at)]


def test_invalid_radii_are_refused_with_exact_paths(rt):
    circle = {"latitude": 10, "longitude": 20, "meters": 100}
    at = "filter.location.within_radius"

    def refused(value):
        return refused_filter(rt, {"location": {"within_radius": value}})

    assert refused({**circle, "meters": -1}) == [("OUT_OF_RANGE", f"{at}.meters")]
    assert refused({**circle, "latitude": 90.0001}) == [("OUT_OF_RANGE", f"{at}.latitude")]
    assert refused({**circle, "latitude": -91}) == [("OUT_OF_RANGE", f"{at}.latitude")]
    assert refused({**circle, "longitude": -180.5}) == [("OUT_OF_RANGE", f"{at}.longitude")]
    assert refused({"latitude": 1}) == [("REQUIRED", f"{at}.longitude"), ("REQUIRED", f"{at}.meters")]
    assert refused({**circle, "meters": math.inf}) == [("INVALID_VALUE", f"{at}.meters")]
    assert refused({**circle, "meters": 10**400}) == [("INVALID_VALUE", f"{at}.meters")]
    assert refused({**circle, "meters": "far"}) == [("INVALID_TYPE", f"{at}.meters")]
    assert refused("near") == [("INVALID_TYPE", at)]
    # every problem of a filter at once, nested ones included
    assert refused_filter(rt, {"and": [{"location": {"within_radius": {**circle, "meters": -5}}},
                                       {"not": {"depot": {"within_box": {"south": 0}}}}]}) == [
        ("OUT_OF_RANGE", "filter.and.0.location.within_radius.meters"),
        ("REQUIRED", "filter.and.1.not.depot.within_box.west"), ("REQUIRED", "filter.and.1.not.depot.within_box.north"),
        ("REQUIRED", "filter.and.1.not.depot.within_box.east")]
    assert refused_filter(rt, {"name": {"within_radius": circle}}) == [("UNSUPPORTED_OPERATOR", "filter.name.within_radius")]
    with pytest.raises(ValidationFailed) as exc:  # an area is no field of the lookup's target
        rt.records.query(S, "machine", filter={"site": {"within_box": {"south": 0, "west": 0, "north": 1, "east": 1}}})
    assert problems(exc) == [("UNSUPPORTED_OPERATOR", "filter.site.within_box")]


def test_invalid_grid_requests_report_every_problem(rt):
    def refused(*args, **kwargs):
        with pytest.raises(ValidationFailed) as exc:
            rt.records.geo_grid(S, "site", *args, **kwargs)
        return problems(exc)

    assert refused("name", 1) == [("INVALID_VALUE", "field")]
    assert refused("nothing", 1) == [("UNKNOWN_FIELD", "field")]
    assert refused(None, 1) == [("UNKNOWN_FIELD", "field")]
    assert refused("location", 1, box={"south": 5, "west": 0, "north": 1, "east": 1}) == [("OUT_OF_RANGE", "box.north")]
    assert refused("location", 1, box={"south": 0, "west": 0, "north": 1}) == [("REQUIRED", "box.east")]
    assert refused("location", 1, box="world") == [("INVALID_TYPE", "box")]
    assert refused("depot", 100, box={"south": 0, "west": 0, "north": 1, "east": 200},
                   filter={"location": {"within_radius": {"latitude": 0, "longitude": 0, "meters": -1}}, "ghost": {"eq": 1}}) == [
        ("OUT_OF_RANGE", "cell_degrees"), ("OUT_OF_RANGE", "box.east"),
        ("OUT_OF_RANGE", "filter.location.within_radius.meters"), ("UNKNOWN_FIELD", "filter.ghost")]
    with pytest.raises(NotFound):
        rt.records.geo_grid(S, "nothing", "location", 1)


# -- permissions and field security -------------------------------------------------------------------
class Org:
    """ann and bob (role ``mapper``: read and create their own sites); cy (role ``blind``: every
    site, but not the field ``location``)."""

    def __init__(self, rt):
        sec = rt.security
        unit = sec.create_unit(S, "Plant")["id"]
        sec.create_role(S, "mapper", "Mapper")
        sec.set_object_grant(S, "mapper", "site", ["read", "create"], "own", "own")
        sec.create_role(S, "blind", "Blind")
        sec.set_object_grant(S, "blind", "site", ["read"], "all", "all")
        sec.set_field_grant(S, "blind", "site", "location", "hidden")
        self.actors = {}
        for username, role in (("ann", "mapper"), ("bob", "mapper"), ("cy", "blind")):
            user = sec.create_user(S, {"username": username}, PASSWORD)
            sec.add_membership(S, user["id"], unit, role)
            self.actors[username] = sec.authenticate(sec.issue_token(S, "test", user_id=user["id"])["token"])


def test_grid_and_spatial_filters_count_only_the_callers_records(rt):
    org = Org(rt)
    ann_points = {"ann_berlin": (52.52, 13.405), "ann_fiji": (-17.7, 179.9), "ann_pole": (90.0, 0.0)}
    bob_points = {"bob_berlin": (52.51, 13.41), "bob_samoa": (-13.8, -171.8), "bob_sydney": (-33.87, 151.21)}
    for owner, points in (("ann", ann_points), ("bob", bob_points)):
        add_sites(rt, points, owner_id=org.actors[owner].id)
    ann, bob = org.actors["ann"], org.actors["bob"]

    for actor, points in ((ann, ann_points), (bob, bob_points)):
        check_grid(rt.records.geo_grid(actor, "site", "location", 10), list(points.values()), 10)
    everyone = rt.records.geo_grid(S, "site", "location", 10)
    check_grid(everyone, [*ann_points.values(), *bob_points.values()], 10)
    assert grid_of(rt.records.geo_grid(ann, "site", "location", 10))[(50.0, 10.0)] == 1
    assert grid_of(everyone)[(50.0, 10.0)] == 2

    box = {"within_box": {"south": -20, "west": 170, "north": 0, "east": -170}}
    assert names(rt, {"location": box}, actor=ann) == {"ann_fiji"}
    assert names(rt, {"location": box}, actor=bob) == {"bob_samoa"}
    near_berlin = {"within_radius": {"latitude": 52.52, "longitude": 13.405, "meters": 5_000}}
    assert names(rt, {"location": near_berlin}, actor=bob) == {"bob_berlin"}
    assert names(rt, {"location": near_berlin}) == {"ann_berlin", "bob_berlin"}


def test_hidden_geolocation_fields_are_refused_in_grids_and_filters(rt):
    org = Org(rt)
    ids = add_sites(rt, {"a": (1.0, 1.0), "b": (2.0, 2.0)})
    rt.records.update(S, "site", ids["b"], {"depot": {"latitude": 3, "longitude": 3}})
    cy = org.actors["cy"]

    with pytest.raises(Forbidden) as exc:
        rt.records.geo_grid(cy, "site", "location", 1)
    assert problems(exc) == [("FORBIDDEN", "field")]
    with pytest.raises(Forbidden) as exc:
        rt.records.geo_grid(cy, "site", "depot", 1, filter={"location": {"is_null": False}})
    assert problems(exc) == [("FORBIDDEN", "filter.location")]
    for op, value in (("within_box", {"south": 0, "west": 0, "north": 5, "east": 5}),
                      ("within_radius", {"latitude": 1, "longitude": 1, "meters": 10})):
        with pytest.raises(Forbidden) as exc:
            rt.records.query(cy, "site", filter={"or": [{"name": {"eq": "a"}}, {"location": {op: value}}]})
        assert problems(exc) == [("FORBIDDEN", "filter.or.1.location")]
    # the fields cy may read still map
    assert grid_of(rt.records.geo_grid(cy, "site", "depot", 1)) == {(3.0, 3.0): 1}
    assert names(rt, {"depot": {"within_box": {"south": 2, "west": 2, "north": 4, "east": 4}}}, actor=cy) == {"b"}


def test_a_caller_without_read_access_is_refused(rt):
    sec = rt.security
    unit = sec.create_unit(S, "Elsewhere")["id"]
    sec.create_role(S, "machines_only", "Machines only")
    sec.set_object_grant(S, "machines_only", "machine", ["read"], "all", "all")
    user = sec.create_user(S, {"username": "dan"}, PASSWORD)
    sec.add_membership(S, user["id"], unit, "machines_only")
    dan = sec.authenticate(sec.issue_token(S, "test", user_id=user["id"])["token"])
    ids = add_sites(rt, {"a": (1.0, 1.0)})
    rt.records.create(S, "machine", {"name": "m1", "site": ids["a"]})

    with pytest.raises(Forbidden):
        rt.records.geo_grid(dan, "site", "location", 1)
    # through a lookup, a filter reaches only the sites the caller may read: none
    around = {"site": {"location": {"within_box": {"south": 0, "west": 0, "north": 5, "east": 5}}}}
    assert names(rt, around, obj="machine") == {"m1"}
    assert names(rt, {}, actor=dan, obj="machine") == {"m1"}
    assert names(rt, around, actor=dan, obj="machine") == set()


# -- SQLite without math functions --------------------------------------------------------------------
def test_sqlite_without_math_functions_gets_them_from_python(tmp_path, monkeypatch):
    calls = Counter()

    def counted(name, function):
        def call(*arguments):
            calls[name] += 1
            return function(*arguments)
        return call

    monkeypatch.setattr(database, "sqlite_has_math_functions", lambda: False)
    monkeypatch.setattr(database, "MATH_FUNCTIONS", {name: (n, counted(name, f)) for name, (n, f) in database.MATH_FUNCTIONS.items()})
    rt = Runtime.connect(f"sqlite:///{tmp_path}/plain.db").install()
    try:
        rt.metadata.create_objects(S, [SITE, MACHINE])
        points = {**WORLD, **rim_points(RADIUS_CENTRES[:3], [5_000], bearings=(0, 90, 200))}
        add_sites(rt, {**points, "nowhere": None})

        for lat, lng in RADIUS_CENTRES[:3]:
            found = names(rt, {"location": {"within_radius": {"latitude": lat, "longitude": lng, "meters": 5_000}}})
            assert found == {n for n, p in points.items() if haversine(lat, lng, *p) <= 5_000}
        check_grid(rt.records.geo_grid(S, "site", "location", 7), list(points.values()), 7)
        assert {"sin", "cos", "power", "floor"} <= set(calls)
    finally:
        rt.close()


def test_the_python_math_functions_answer_like_sqlites():
    import sqlite3

    connection = sqlite3.connect(":memory:")
    database._add_math_functions(connection)
    row = connection.execute("SELECT sin(1.0), cos(NULL), power(2, 10), power(-8, 0.5), floor(2.5), floor(-0.5), floor(3), "
                             "power(10.0, 400)").fetchone()
    assert row == (math.sin(1.0), None, 1024.0, None, 2.0, -1.0, 3, None)
