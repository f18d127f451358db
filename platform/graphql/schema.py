"""The whole schema of one Catalog version: the fixed metadata and security admin APIs (graphene),
the admin fields returning user and org unit records and the record API, both generated from the
Catalog (graphql-core), under one ``Query`` and one ``Mutation``."""
from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import lru_cache

import graphene

from graphql import GraphQLObjectType, GraphQLSchema, validate_schema

from ..metadata.catalog import Catalog
from .approvals_api import ApprovalsMutation, ApprovalsQuery
from .apps_api import AppsMutation, AppsQuery
from .assignment_api import AssignmentMutation
from .common import SHARED_TYPES
from .duplicates_api import DuplicatesQuery
from .jobs_api import JobsMutation, JobsQuery
from .metadata_api import MetadataMutation, MetadataQuery
from .notifications_api import InboxMutation, InboxQuery
from .pools_api import PoolsMutation, PoolsQuery
from .record_types import RecordTypes
from .resolvers import Resolvers
from .security_api import (
    INPUT_TYPES,
    RecordLinkedFields,
    SecurityMutation,
    SecurityQuery,
)


class PlatformQuery(MetadataQuery, SecurityQuery, AppsQuery, JobsQuery, InboxQuery, PoolsQuery, DuplicatesQuery, ApprovalsQuery):
    pass


class PlatformMutation(MetadataMutation, SecurityMutation, AppsMutation, JobsMutation, InboxMutation, PoolsMutation,
                       AssignmentMutation, ApprovalsMutation):
    pass


@lru_cache(maxsize=1)
def platform_schema() -> GraphQLSchema:
    """The part every schema shares, built once per process."""
    return graphene.Schema(query=PlatformQuery, mutation=PlatformMutation, types=[*SHARED_TYPES, *INPUT_TYPES]).graphql_schema


@dataclass(frozen=True)
class GeneratedSchema:
    version: int
    schema: GraphQLSchema
    types: RecordTypes
    read_roots: frozenset[str]


def build_schema(catalog: Catalog) -> GeneratedSchema:
    """The schema of ``catalog``. The build allocates thousands of linked objects; Python's cyclic
    collector would walk them (and every live schema) again and again meanwhile, more than doubling
    the time, so it pauses for the build and catches up afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(catalog)
    finally:
        if collecting:
            gc.enable()


def _build(catalog: Catalog) -> GeneratedSchema:
    platform = platform_schema()
    resolvers = Resolvers()
    types = RecordTypes(catalog, platform.type_map, resolvers)
    resolvers.types = types
    linked = RecordLinkedFields(types, platform.type_map)
    query = GraphQLObjectType("Query", {**platform.query_type.fields, **linked.query_fields(), **types.query_fields()})
    mutation = GraphQLObjectType("Mutation", {**platform.mutation_type.fields, **linked.mutation_fields(), **types.mutation_fields()})
    shared = [platform.type_map[t._meta.name] for t in SHARED_TYPES]
    schema = GraphQLSchema(query, mutation, types=shared)
    problems = validate_schema(schema)
    if problems:
        raise RuntimeError(f"The generated schema of Catalog v{catalog.version} is invalid: {problems[0].message}")
    return GeneratedSchema(catalog.version, schema, types, frozenset(types.read_roots))
