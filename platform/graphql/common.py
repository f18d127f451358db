"""Types every schema shares: paging, points on the map and the filters of each kind of value."""
from __future__ import annotations

import graphene

from .scalars import Date, DateTime, Decimal


class PageInfo(graphene.ObjectType):
    has_next_page = graphene.Boolean(required=True)
    has_previous_page = graphene.Boolean(required=True, description="True when the page starts after a cursor.")
    start_cursor = graphene.String()
    end_cursor = graphene.String()


class Geolocation(graphene.ObjectType):
    latitude = graphene.Float(required=True)
    longitude = graphene.Float(required=True)


class GeolocationInput(graphene.InputObjectType):
    latitude = graphene.Float(required=True)
    longitude = graphene.Float(required=True)


class GeoBoxInput(graphene.InputObjectType):
    class Meta:
        description = "An area between two parallels and two meridians, in degrees; west > east crosses the antimeridian."

    south = graphene.Float(required=True, description="-90 to 90, at most north.")
    west = graphene.Float(required=True, description="-180 to 180.")
    north = graphene.Float(required=True, description="-90 to 90.")
    east = graphene.Float(required=True, description="-180 to 180.")


class GeoRadiusInput(graphene.InputObjectType):
    class Meta:
        description = "The points within a great-circle distance of a centre (a sphere of radius 6,371,008.8 m)."

    latitude = graphene.Float(required=True, description="-90 to 90.")
    longitude = graphene.Float(required=True, description="-180 to 180.")
    meters = graphene.Float(required=True, description="At least 0.")


class GeolocationFilter(graphene.InputObjectType):
    class Meta:
        description = "Points: present or not, within a box, within a radius."

    is_null = graphene.Boolean()
    within_box = graphene.InputField(GeoBoxInput)
    within_radius = graphene.InputField(GeoRadiusInput)


class MapCell(graphene.ObjectType):
    class Meta:
        description = ("The records of one grid cell: its edges (multiples of the cell size, in degrees), their count and "
                       "mean point.")

    south = graphene.Float(required=True)
    west = graphene.Float(required=True)
    north = graphene.Float(required=True)
    east = graphene.Float(required=True)
    count = graphene.Int(required=True)
    latitude = graphene.Float(required=True, description="The mean latitude of the cell's records.")
    longitude = graphene.Float(required=True, description="The mean longitude of the cell's records.")


def _filter(name: str, scalar, operators: str, description: str):
    """An input type with one field per operator, each taking ``scalar`` (lists for in/notIn)."""
    fields = {}
    for op in operators.split():
        if op in ("in_", "not_in"):
            fields[op] = graphene.List(graphene.NonNull(scalar), name="in" if op == "in_" else None)
        elif op == "is_null":
            fields[op] = graphene.Boolean()
        elif op in ("contains", "starts_with") and scalar is not graphene.String:
            fields[op] = graphene.String()
        else:
            fields[op] = scalar()
    return type(name, (graphene.InputObjectType,), {**fields, "Meta": type("Meta", (), {"description": description})})


_ORDERED = "eq ne in_ not_in lt lte gt gte is_null"
StringFilter = _filter("StringFilter", graphene.String, _ORDERED + " contains starts_with",
                       "Text: contains and startsWith ignore case.")
LongTextFilter = _filter("LongTextFilter", graphene.String, "eq ne in_ not_in contains starts_with is_null", "Long text.")
IntFilter = _filter("IntFilter", graphene.Int, _ORDERED, "Whole numbers.")
DecimalFilter = _filter("DecimalFilter", Decimal, _ORDERED, "Exact numbers.")
DateFilter = _filter("DateFilter", Date, _ORDERED, "Calendar days.")
DateTimeFilter = _filter("DateTimeFilter", DateTime, _ORDERED, "Instants.")
BooleanFilter = _filter("BooleanFilter", graphene.Boolean, "eq ne is_null", "True or false.")
IDFilter = _filter("IDFilter", graphene.ID, "eq ne in_ not_in is_null", "Record ids.")
NullFilter = _filter("NullFilter", graphene.Boolean, "is_null", "Values that can only be tested for presence.")

SHARED_TYPES = [PageInfo, Geolocation, GeolocationInput, StringFilter, LongTextFilter, IntFilter, DecimalFilter,
                DateFilter, DateTimeFilter, BooleanFilter, IDFilter, NullFilter, GeoBoxInput, GeoRadiusInput,
                GeolocationFilter, MapCell]
