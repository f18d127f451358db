"""The names the metadata service reserves are exactly the names the fixed schema uses: the
metadata and security admin APIs, whether built once (graphene) or with each schema (the admin
fields returning the generated ``User`` and ``OrgUnit`` types), and the types of business types
and stages (``StageHistoryEntry``, ``FunnelPeriod``, ``StageConversion``: there while some object has stages),
and the queries of maps and bookings."""
from __future__ import annotations

from lowcode.graphql.schema import build_schema, platform_schema
from lowcode.metadata import graphql_names
from lowcode.metadata.catalog import Catalog
from lowcode.metadata.definitions import (
    BookingRuleDef,
    BusinessTypeDef,
    FieldDef,
    ObjectDef,
    StageDef,
    freeze,
)


def _with_stages(catalog):
    """The catalog with one more object whose business types have stages."""
    fields = (FieldDef("amount", "Amount", "currency"), FieldDef("close_date", "Close date", "date"))
    deal = ObjectDef("deal", "Deal", "deals", "Deals", fields=fields, business_types=(
        BusinessTypeDef("standard", "Standard", default=True, stages=(
            StageDef("open_deal", "Open", 10, expected_days=3), StageDef("closed_deal", "Closed", 100, "won", position=1))),
        BusinessTypeDef("other", "Other", position=1)))
    assert graphql_names.collisions({**catalog.objects, "deal": deal}) == []
    return Catalog(catalog.version, {**catalog.objects, "deal": deal})


def _with_maps_and_bookings(catalog):
    """The catalog with screens on a map and slots booking them."""
    screen = ObjectDef("screen", "Screen", "screens", "Screens", fields=(FieldDef("location", "Location", "geolocation"),))
    slot = ObjectDef("slot", "Slot", "slots", "Slots", fields=(
        FieldDef("screen", "Screen", "lookup", options=freeze({"target": "screen"})), FieldDef("first_day", "First", "date"),
        FieldDef("last_day", "Last", "date")), booking_rules=(BookingRuleDef("slots", "Slots", "screen", "first_day", "last_day"),))
    objects = {**catalog.objects, "screen": screen, "slot": slot}
    assert graphql_names.collisions(objects) == []
    return Catalog(catalog.version, objects)


def _platform_names(catalog):
    """Type, query and mutation names of the schema of ``catalog`` that no object generates."""
    schema = build_schema(catalog).schema
    types, queries, mutations = set(), set(), set()
    for obj in catalog.objects.values():
        types.update(graphql_names.type_name(obj, suffix) for suffix in graphql_names.TYPE_SUFFIXES)
        types.update(graphql_names.choice_filter_type_name(obj, f) for f in obj.fields if graphql_names.is_choice(f))
        types.update(graphql_names.enum_type_name(obj, f) for f in obj.fields if graphql_names.is_enum(f))
        types.update(graphql_names.process_type_names(obj))
        types.update(graphql_names.funnel_type_names(obj))
        types.update(graphql_names.map_type_names(obj))
        queries.update((graphql_names.get_field(obj), graphql_names.list_field(obj), graphql_names.aggregate_field(obj)))
        if graphql_names.geolocation_fields(obj):
            queries.add(graphql_names.map_grid_field(obj))
        if obj.booking_rules:
            types.add(graphql_names.occupancy_type_name(obj))
            queries.update((graphql_names.availability_field(obj), graphql_names.occupancy_field(obj)))
        if obj.has_stages:
            queries.update((graphql_names.due_field(obj), graphql_names.funnel_field(obj), graphql_names.conversions_field(obj)))
        mutations.update(graphql_names.mutation_fields(obj).values())
    used = {name for name in schema.type_map if not name.startswith("__")} - types
    return used, set(schema.query_type.fields) - queries, set(schema.mutation_type.fields) - mutations


def test_reserved_type_names_cover_every_platform_type(runtime):
    used, _, _ = _platform_names(runtime.catalog())
    assert used <= graphql_names.PLATFORM_TYPE_NAMES, used - graphql_names.PLATFORM_TYPE_NAMES
    assert graphql_names.PLATFORM_TYPE_NAMES - used == {"StageHistoryEntry", "FunnelPeriod", "StageConversion"}
    staged, _, _ = _platform_names(_with_stages(runtime.catalog()))
    assert staged == graphql_names.PLATFORM_TYPE_NAMES
    fixed = platform_schema()
    roots = {fixed.query_type.name, fixed.mutation_type.name}
    assert {name for name in fixed.type_map if not name.startswith("__")} - roots <= graphql_names.PLATFORM_TYPE_NAMES


def test_reserved_root_fields_are_the_metadata_and_admin_apis(runtime):
    for catalog in (runtime.catalog(), _with_stages(runtime.catalog()), _with_maps_and_bookings(runtime.catalog())):
        _, queries, mutations = _platform_names(catalog)
        assert queries == graphql_names.PLATFORM_QUERY_FIELDS
        assert mutations == graphql_names.PLATFORM_MUTATION_FIELDS
    fixed = platform_schema()
    assert set(fixed.query_type.fields) <= graphql_names.PLATFORM_QUERY_FIELDS
    assert set(fixed.mutation_type.fields) <= graphql_names.PLATFORM_MUTATION_FIELDS


def test_every_generated_type_is_named_by_graphql_names(runtime):
    for catalog in (runtime.catalog(), _with_stages(runtime.catalog()), _with_maps_and_bookings(runtime.catalog())):
        generated = build_schema(catalog).schema
        expected = set(graphql_names.PLATFORM_TYPE_NAMES)
        for obj in catalog.objects.values():
            expected.update(graphql_names.type_name(obj, suffix) for suffix in graphql_names.TYPE_SUFFIXES)
            expected.update(graphql_names.choice_filter_type_name(obj, f) for f in obj.fields if graphql_names.is_choice(f))
            expected.update(graphql_names.enum_type_name(obj, f) for f in obj.fields if graphql_names.is_enum(f))
            expected.update(graphql_names.process_type_names(obj))
            expected.update(graphql_names.funnel_type_names(obj))
            expected.update(graphql_names.map_type_names(obj))
            expected.update([graphql_names.occupancy_type_name(obj)] if obj.booking_rules else [])
        actual = {name for name in generated.type_map if not name.startswith("__")}
        assert actual <= expected, actual - expected
