"""The whole schema of one Catalog version: the fixed metadata API (graphene) and the record API
generated from the Catalog (graphql-core), under one ``Query`` and one ``Mutation``."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import graphene

from graphql import GraphQLObjectType, GraphQLSchema

from ..metadata.catalog import Catalog
from .common import SHARED_TYPES
from .metadata_api import MetadataMutation, MetadataQuery
from .record_types import RecordTypes
from .resolvers import Resolvers


@lru_cache(maxsize=1)
def platform_schema() -> GraphQLSchema:
    """The part every schema shares, built once per process."""
    return graphene.Schema(query=MetadataQuery, mutation=MetadataMutation, types=SHARED_TYPES).graphql_schema


@dataclass(frozen=True)
class GeneratedSchema:
    version: int
    schema: GraphQLSchema
    types: RecordTypes
    read_roots: frozenset[str]


def build_schema(catalog: Catalog) -> GeneratedSchema:
    platform = platform_schema()
    resolvers = Resolvers()
    types = RecordTypes(catalog, platform.type_map, resolvers)
    resolvers.types = types
    query = GraphQLObjectType("Query", {**platform.query_type.fields, **types.query_fields()})
    mutation = GraphQLObjectType("Mutation", {**platform.mutation_type.fields, **types.mutation_fields()})
    shared = [platform.type_map[t._meta.name] for t in SHARED_TYPES]
    return GeneratedSchema(catalog.version, GraphQLSchema(query, mutation, types=shared), types, frozenset(types.read_roots))
