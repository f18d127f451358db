from __future__ import annotations

import math

from sqlalchemy import Column, Float, and_, or_

from .base import FieldType, ValueProblem

SPATIAL_OPERATORS = frozenset({"within_box", "within_radius"})
"""Filters keeping the points within an area: ``{south, west, north, east}`` or ``{latitude, longitude, meters}``."""


class Geolocation(FieldType):
    """A point on the earth, ``{latitude, longitude}``, stored as two columns ``<name>__lat/__lng``."""

    name = "geolocation"
    graphql_scalar = "Geolocation"
    operators = frozenset({"is_null"}) | SPATIAL_OPERATORS
    sortable = False

    def sql_type(self, field):
        return Float()

    def columns(self, field):
        return [Column(f"{field.api_name}__lat", Float(), nullable=True), Column(f"{field.api_name}__lng", Float(), nullable=True)]

    def column_names(self, field):
        return [f"{field.api_name}__lat", f"{field.api_name}__lng"]

    def json_schema(self, field):
        return {
            "type": "object",
            "properties": {
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            },
            "required": ["latitude", "longitude"],
            "additionalProperties": False,
        }

    def coercer(self, field):
        def coerce(value):
            point = {"latitude": float(value["latitude"]), "longitude": float(value["longitude"])}
            for key, limit in (("latitude", 90), ("longitude", 180)):
                if not math.isfinite(point[key]):
                    raise ValueProblem("OUT_OF_RANGE", f"must be a number from -{limit} to {limit}", path=key)
            return point

        return coerce

    def to_row(self, field, value):
        if value is None:
            return {f"{field.api_name}__lat": None, f"{field.api_name}__lng": None}
        return {f"{field.api_name}__lat": value["latitude"], f"{field.api_name}__lng": value["longitude"]}

    def from_row(self, field, row):
        lat, lng = row[f"{field.api_name}__lat"], row[f"{field.api_name}__lng"]
        return None if lat is None else {"latitude": lat, "longitude": lng}

    def filter_clause(self, field, column, op, value):
        """``value`` of a spatial operator is the area the filter compiler parsed (its ``predicate``
        is the SQL keeping the points within it: :mod:`lowcode.runtime.geo`)."""
        lat, lng = column
        if op in SPATIAL_OPERATORS:
            return value.predicate(lat, lng)
        return and_(lat.is_(None), lng.is_(None)) if value else or_(lat.is_not(None), lng.is_not(None))
