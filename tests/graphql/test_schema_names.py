"""The names the metadata service reserves are exactly the names the fixed schema uses."""
from __future__ import annotations

from lowcode.graphql.schema import build_schema, platform_schema
from lowcode.metadata import graphql_names


def test_reserved_type_names_cover_every_platform_type():
    schema = platform_schema()
    roots = {schema.query_type.name, schema.mutation_type.name}
    used = {name for name in schema.type_map if not name.startswith("__") and name not in roots} | {"Query", "Mutation"}
    assert used <= graphql_names.PLATFORM_TYPE_NAMES, used - graphql_names.PLATFORM_TYPE_NAMES
    assert graphql_names.PLATFORM_TYPE_NAMES - used == set()


def test_reserved_root_fields_are_the_metadata_api():
    schema = platform_schema()
    assert set(schema.query_type.fields) == graphql_names.PLATFORM_QUERY_FIELDS
    assert set(schema.mutation_type.fields) == graphql_names.PLATFORM_MUTATION_FIELDS


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
