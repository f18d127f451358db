"""Map queries over geolocation fields: points within a box or a radius, and counts per grid cell.

A geolocation field is stored as two float columns, ``<name>__lat`` and ``<name>__lng`` (degrees).
Every predicate is plain SQL over them, alike on SQLite and PostgreSQL:

* a box ``{south, west, north, east}`` keeps latitudes from south to north and longitudes from west
  to east; when west > east the box crosses the antimeridian and keeps west to 180 and -180 to east.
* a radius ``{latitude, longitude, meters}`` keeps points whose great-circle distance from the
  centre is at most ``meters`` on a sphere of radius :data:`EARTH_RADIUS_METERS`. The statement first
  keeps the box around the circle (a latitude range, which an index on the ``__lat`` column serves,
  and a longitude range split at the antimeridian, every longitude when the circle holds a pole),
  then compares the haversine term ``a = sin²(Δφ/2) + cos φ cos φ₀ sin²(Δλ/2)`` of each point with
  that of the radius, ``sin²(meters / 2R)``: distance = 2R·asin(√a), so this is the test
  distance <= meters, with neither arcsine nor square root in SQL.
* a grid groups points by ``floor(latitude / cell)`` and ``floor(longitude / cell)`` in one
  ``GROUP BY``: cells are aligned on multiples of the cell size and hold their south and west edges;
  the northmost row also holds latitude 90 and the eastmost column longitude 180.

SQLite computes ``sin``, ``cos``, ``power`` and ``floor`` with its math functions, which
:mod:`lowcode.metadata.database` supplies when the linked SQLite lacks them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Float, and_, case, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.errors import FieldError, ValidationFailed

EARTH_RADIUS_METERS = 6_371_008.8
"""The mean earth radius (IUGG)."""
MIN_CELL_DEGREES = 0.001
MAX_CELL_DEGREES = 90
MAX_CELLS = 10_000
BOUND_PLACES = 9
"""Cell edges are rounded to 10⁻⁹ degrees (under a millimetre), so 3 × 0.1 reads 0.3."""

_SLACK = 1e-9
"""Radians the box around a circle is widened by, so rounding never drops a point the exact test keeps."""
_RADIANS = math.pi / 180
_LIMITS = {"south": 90, "north": 90, "latitude": 90, "west": 180, "east": 180, "longitude": 180}


def _degrees(value: float) -> ColumnElement:
    return literal(value, Float)


def _longitudes(lng, west: float, east: float) -> ColumnElement[bool]:
    """Longitudes from west to east, eastwards across the antimeridian when west > east."""
    if west <= east:
        return lng.between(_degrees(west), _degrees(east))
    return or_(lng >= _degrees(west), lng <= _degrees(east))


@dataclass(frozen=True)
class GeoBox:
    south: float
    west: float
    north: float
    east: float

    def predicate(self, lat, lng) -> ColumnElement[bool]:
        return and_(lat.between(_degrees(self.south), _degrees(self.north)), _longitudes(lng, self.west, self.east))


@dataclass(frozen=True)
class GeoCircle:
    latitude: float
    longitude: float
    meters: float

    def predicate(self, lat, lng) -> ColumnElement[bool]:
        angle = self.meters / EARTH_RADIUS_METERS
        if angle >= math.pi:
            return and_(lat.is_not(None), lng.is_not(None))
        return and_(self._around(lat, lng, angle + _SLACK), self._haversine(lat, lng) <= literal(math.sin(angle / 2) ** 2, Float))

    def _around(self, lat, lng, angle: float) -> ColumnElement[bool]:
        """The box holding every point within ``angle`` radians of the centre."""
        reach = math.degrees(angle)
        south, north = self.latitude - reach, self.latitude + reach
        if south <= -90 or north >= 90:
            return lat.between(_degrees(max(south, -90.0)), _degrees(min(north, 90.0)))
        ratio = math.sin(angle) / math.cos(self.latitude * _RADIANS)
        if ratio >= 1:
            return lat.between(_degrees(south), _degrees(north))
        spread = math.degrees(math.asin(ratio))
        west, east = self.longitude - spread, self.longitude + spread
        if west < -180:
            west += 360
        elif east > 180:
            east -= 360
        return and_(lat.between(_degrees(south), _degrees(north)), _longitudes(lng, west, east))

    def _haversine(self, lat, lng) -> ColumnElement:
        half = _degrees(0.5)
        phi = lat * _degrees(_RADIANS)
        half_dlat = func.sin((phi - _degrees(self.latitude * _RADIANS)) * half, type_=Float)
        half_dlng = func.sin((lng * _degrees(_RADIANS) - _degrees(self.longitude * _RADIANS)) * half, type_=Float)
        return (func.power(half_dlat, _degrees(2.0), type_=Float)
                + func.cos(phi, type_=Float) * _degrees(math.cos(self.latitude * _RADIANS))
                * func.power(half_dlng, _degrees(2.0), type_=Float))


BOX_KEYS = ("south", "west", "north", "east")
CIRCLE_KEYS = ("latitude", "longitude", "meters")


def parse_box(value: Any, path: str) -> tuple[GeoBox | None, list[FieldError]]:
    errors: list[FieldError] = []
    numbers = _numbers(value, BOX_KEYS, path, errors)
    if numbers is None:
        return None, errors
    if numbers["south"] > numbers["north"]:
        return None, [FieldError("OUT_OF_RANGE", f"{path}.north", "must be at least south (a box runs from south to north)")]
    return GeoBox(**numbers), []


def parse_circle(value: Any, path: str) -> tuple[GeoCircle | None, list[FieldError]]:
    errors: list[FieldError] = []
    numbers = _numbers(value, CIRCLE_KEYS, path, errors)
    return (GeoCircle(**numbers) if numbers is not None else None), errors


AREAS = {"within_box": parse_box, "within_radius": parse_circle}
"""The area each spatial filter operator takes, by operator."""


def _numbers(value: Any, keys: tuple[str, ...], path: str, errors: list[FieldError]) -> dict[str, float] | None:
    """``keys`` of ``value`` as floats within their ranges, or ``None`` with every problem in ``errors``."""
    if not isinstance(value, dict):
        errors.append(FieldError("INVALID_TYPE", path, f"must be an object of {', '.join(keys)}"))
        return None
    for key in sorted(set(value) - set(keys), key=str):
        errors.append(FieldError("UNKNOWN_FIELD", f"{path}.{key}", f"is not one of {', '.join(keys)}"))
    found: dict[str, float] = {}
    for key in keys:
        at, item = f"{path}.{key}", value.get(key)
        if item is None:
            errors.append(FieldError("REQUIRED", at, "is required"))
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float, Decimal)):
            errors.append(FieldError("INVALID_TYPE", at, "must be a number"))
            continue
        number = _float(item)
        limit = _LIMITS.get(key)
        if not math.isfinite(number):
            errors.append(FieldError("INVALID_VALUE", at, "must be a finite number"))
        elif limit is not None and not -limit <= number <= limit:
            errors.append(FieldError("OUT_OF_RANGE", at, f"must be from -{limit} to {limit}", {"min": -limit, "max": limit}))
        elif limit is None and number < 0:
            errors.append(FieldError("OUT_OF_RANGE", at, "must be at least 0", {"min": 0}))
        else:
            found[key] = number
    return found if len(found) == len(keys) and not errors else None


def _float(number: int | float | Decimal) -> float:
    """The number as a float; NaN for what no float holds (huge integers, signalling NaNs)."""
    try:
        return float(number)
    except (OverflowError, ValueError):
        return math.nan


# -- grids --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridRequest:
    field: FieldDef
    cell: float
    box: GeoBox | None


def grid_request(obj: ObjectDef, field: Any, cell_degrees: Any, box: Any, hidden: frozenset[str]) -> tuple[GridRequest | None, list[FieldError]]:
    """The checked request of :func:`grid_cells`, or every problem of its arguments."""
    errors: list[FieldError] = []
    found = obj.field(field) if isinstance(field, str) else None
    if found is None:
        errors.append(FieldError("UNKNOWN_FIELD", "field", f"'{obj.api_name}' has no field named '{field}'"))
    elif found.api_name in hidden:
        errors.append(FieldError("FORBIDDEN", "field", f"you may not read '{obj.api_name}.{found.api_name}', so you may not map it"))
    elif found.type != "geolocation":
        errors.append(FieldError("INVALID_VALUE", "field", f"must be a geolocation field, not a {found.type} field"))
    cell = None
    if isinstance(cell_degrees, bool) or not isinstance(cell_degrees, (int, float, Decimal)):
        errors.append(FieldError("INVALID_TYPE", "cell_degrees", "must be a number"))
    elif not MIN_CELL_DEGREES <= _float(cell_degrees) <= MAX_CELL_DEGREES:
        errors.append(FieldError("OUT_OF_RANGE", "cell_degrees", f"must be from {MIN_CELL_DEGREES} to {MAX_CELL_DEGREES}",
                                 {"min": MIN_CELL_DEGREES, "max": MAX_CELL_DEGREES}))
    else:
        cell = _float(cell_degrees)
    area = None
    if box is not None:
        area, problems = parse_box(box, "box")
        errors.extend(problems)
    if errors:
        return None, errors
    return GridRequest(found, cell, area), []


def grid_cells(conn: Connection, table, request: GridRequest, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """``[{south, west, north, east, count, latitude, longitude}]`` per cell holding points that
    ``where`` keeps (and the box, if any), south to north then west to east; ``latitude`` and
    ``longitude`` are the mean of the cell's points."""
    field, cell = request.field, request.cell
    lat, lng = field.field_type.selectable(field, table)
    top_row, last_column = math.ceil(90 / cell) - 1, math.ceil(180 / cell) - 1
    kept = [where, lat.is_not(None), lng.is_not(None)]
    if request.box is not None:
        kept.append(request.box.predicate(lat, lng))
    inner = select(
        _capped(func.floor(lat / _degrees(cell), type_=Float), top_row).label("row"),
        _capped(func.floor(lng / _degrees(cell), type_=Float), last_column).label("col"),
        lat.label("lat"), lng.label("lng"),
    ).where(*kept).subquery()
    statement = (
        select(inner.c.row, inner.c.col, func.count().label("count"),
               func.avg(inner.c.lat, type_=Float).label("latitude"), func.avg(inner.c.lng, type_=Float).label("longitude"))
        .select_from(inner).group_by(inner.c.row, inner.c.col).order_by(inner.c.row, inner.c.col).limit(MAX_CELLS + 1)
    )
    rows = conn.execute(statement).mappings().all()
    if len(rows) > MAX_CELLS:
        raise ValidationFailed.of([FieldError("TOO_MANY_GROUPS", "cell_degrees",
                                              f"more than {MAX_CELLS} cells hold points; use larger cells, a box or a filter",
                                              {"limit": MAX_CELLS})])
    cells = []
    for row in rows:
        south, west = int(row["row"]) * cell, int(row["col"]) * cell
        cells.append({
            "south": round(south, BOUND_PLACES), "west": round(west, BOUND_PLACES),
            "north": round(min(south + cell, 90.0), BOUND_PLACES), "east": round(min(west + cell, 180.0), BOUND_PLACES),
            "count": row["count"], "latitude": row["latitude"], "longitude": row["longitude"],
        })
    return cells


def _capped(index, cap: int) -> ColumnElement:
    """The cell index, the last one for the edge at 90° (180°) that begins no cell of its own."""
    return case((index > literal(cap, Float), literal(cap, Float)), else_=index)
