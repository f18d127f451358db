"""The names the metadata service reserves are exactly the names the fixed schema uses: the
metadata and security admin APIs, whether built once (graphene) or with each schema (the admin
fields returning the generated ``User`` and ``OrgUnit`` types)."""
from __future__ import annotations

from lowcode.graphql.schema import build_schema, platform_schema
from lowcode.metadata import graphql_names


def _platform_names(catalog):
    """Type, query and mutation names of the schema of ``catalog`` that no object generates."""
    schema = build_schema(catalog).schema
    types, queries, mutations = set(), set(), set()
    for obj in catalog.objects.values():
        types.update(graphql_names.type_name(obj, suffix) for suffix in graphql_names.TYPE_SUFFIXES)
        types.update(graphql_names.choice_filter_type_name(obj, f) for f in obj.fields if graphql_names.is_choice(f))
        types.update(graphql_names.enum_type_name(obj, f) for f in obj.fields if graphql_names.is_enum(f))
        queries.update((graphql_names.get_field(obj), graphql_names.list_field(obj), graphql_names.aggregate_field(obj)))
        mutations.update(graphql_names.mutation_fields(obj).values())
    used = {name for name in schema.type_map if not name.startswith("__")} - types
    return used, set(schema.query_type.fields) - queries, set(schema.mutation_type.fields) - mutations


def test_reserved_type_names_cover_every_platform_type(runtime):
    used, _, _ = _platform_names(runtime.catalog())
    assert used <= graphql_names.PLATFORM_TYPE_NAMES, used - graphql_names.PLATFORM_TYPE_NAMES
    assert graphql_names.PLATFORM_TYPE_NAMES - used == set()
    fixed = platform_schema()
    roots = {fixed.query_type.name, fixed.mutation_type.name}
    assert {name for name in fixed.type_map if not name.startswith("__")} - roots <= graphql_names.PLATFORM_TYPE_NAMES


def test_reserved_root_fields_are_the_metadata_and_admin_apis(runtime):
    _, queries, mutations = _platform_names(runtime.catalog())
    assert queries == graphql_names.PLATFORM_QUERY_FIELDS
    assert mutations == graphql_names.PLATFORM_MUTATION_FIELDS
    fixed = platform_schema()
    assert set(fixed.query_type.fields) <= graphql_names.PLATFORM_QUERY_FIELDS
    assert set(fixed.mutation_type.fields) <= graphql_names.PLATFORM_MUTATION_FIELDS


def test_every_generated_type_is_named_by_graphql_names(runtime):
    catalog = runtime.catalog()
    generated = build_schema(catalog).schema
    expected = set(graphql_names.PLATFORM_TYPE_NAMES)
    for obj in catalog.objects.values():
        expected.update(graphql_names.type_name(obj, suffix) for suffix in graphql_names.TYPE_SUFFIXES)
        expected.update(graphql_names.choice_filter_type_name(obj, f) for f in obj.fields if graphql_names.is_choice(f))
        expected.update(graphql_names.enum_type_name(obj, f) for f in obj.fields if graphql_names.is_enum(f))
    actual = {name for name in generated.type_map if not name.startswith("__")}
    assert actual <= expected, actual - expected
