"""Executing a GraphQL request: the schema of the current Catalog, cached documents, one context.

The schema is built once per Catalog version per process (under a lock, so concurrent requests
never build it twice) and swapped atomically; parsed and validated documents are cached per
schema and query text. Every request reads under one Catalog snapshot: the schema, the record
service and the metadata queries all see the same version.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, execute, parse, specified_rules, validate
from graphql.error import GraphQLSyntaxError

from ..metadata.actors import Actor
from ..metadata.catalog import Catalog
from ..metadata.service import MetadataService
from ..runtime.apps import AppService
from ..runtime.jobs import JobService
from ..runtime.notifications import NotificationService
from ..runtime.pools import PoolService
from ..runtime.records import RecordService
from ..runtime.runtime import Runtime
from ..runtime.security.service import SecurityService
from .errors import bad_query, format_error
from .fast_path import FastPath
from .limits import Limits, depth_rule
from .planning import operation_cost
from .schema import GeneratedSchema, build_schema

DOCUMENT_CACHE_SIZE = 500
MAX_QUERY_LENGTH = 100_000


@dataclass
class RequestContext:
    """What every resolver of one request works with (``info.context``)."""

    actor: Actor
    catalog: Catalog
    records: RecordService
    metadata: MetadataService
    limits: Limits
    security: SecurityService
    apps: AppService | None = None
    jobs: JobService | None = None
    notifications: NotificationService | None = None
    pools: PoolService | None = None


class Documents:
    """Parsed and validated documents of one schema, least recently used dropped first."""

    def __init__(self, generated: GeneratedSchema, rules: tuple):
        self.generated = generated
        self.rules = rules
        self._cache: OrderedDict[str, tuple[Any, list[GraphQLError]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query: str) -> tuple[Any, list[GraphQLError]]:
        with self._lock:
            found = self._cache.get(query)
            if found is not None:
                self._cache.move_to_end(query)
                return found
        try:
            document = parse(query)
        except GraphQLSyntaxError as error:
            return None, [error]
        errors = validate(self.generated.schema, document, self.rules)
        found = (None, errors) if errors else (document, [])
        with self._lock:
            self._cache[query] = found
            while len(self._cache) > DOCUMENT_CACHE_SIZE:
                self._cache.popitem(last=False)
        return found


class GraphQLEndpoint:
    """Answers GraphQL requests for one :class:`Runtime`."""

    def __init__(self, runtime: Runtime, limits: Limits | None = None, *, fast_path: bool = True):
        self.runtime = runtime
        self.limits = limits or Limits()
        self.fast_path = fast_path
        """Shape record queries without the general executor (see ``fast_path``); off only to compare."""
        self.rules = (*specified_rules, depth_rule(self.limits.max_depth))
        self._current: Documents | None = None
        self._lock = threading.Lock()
        self.builds = 0
        """How many schemas this endpoint built (tests count rebuilds)."""
        self.fast_answers = 0
        """How many requests the fast path answered (tests check it is taken)."""

    def documents(self, catalog: Catalog) -> Documents:
        """The schema (with its document cache) of ``catalog``, built once per version."""
        current = self._current
        if current is not None and current.generated.version == catalog.version:
            return current
        with self._lock:
            current = self._current
            if current is not None and current.generated.version == catalog.version:
                return current
            documents = Documents(build_schema(catalog), self.rules)
            self.builds += 1
            if current is None or current.generated.version < catalog.version:
                self._current = documents
            return documents

    def run(self, actor: Actor, body: Any) -> tuple[int, dict[str, Any]]:
        """HTTP status and response body for one request body (already decoded from JSON)."""
        problem = _body_problem(body)
        if problem:
            return 400, {"errors": [bad_query(problem)]}
        query, variables, operation_name = body["query"], body.get("variables") or {}, body.get("operationName")
        with self.runtime.reading() as (conn, catalog):
            return self._run(actor, catalog, conn, query, variables, operation_name)

    def _run(self, actor: Actor, catalog: Catalog, conn, query: str, variables: dict, operation_name: str | None) -> tuple[int, dict[str, Any]]:
        documents = self.documents(catalog)
        document, errors = documents.get(query)
        if errors:
            return 400, {"errors": [format_error(e) for e in errors]}
        context = RequestContext(actor, catalog, self.runtime.records.at(catalog, conn), self.runtime.metadata, self.limits,
                                 self.runtime.security, self.runtime.apps, self.runtime.jobs, self.runtime.notifications,
                                 self.runtime.pools)
        generated = documents.generated
        cost = operation_cost(generated.schema, generated.types, document, operation_name, variables, context)
        if cost is not None and cost > self.limits.max_cost:
            return 400, {"errors": [bad_query(
                f"The request could return up to {cost} records, more than the limit of {self.limits.max_cost}; "
                "ask for smaller pages or fewer nested lists.", cost=cost, limit=self.limits.max_cost)]}
        if self.fast_path:
            data = FastPath(generated.schema, generated.read_roots, document, context, variables, operation_name).run()
            if data is not None:
                self.fast_answers += 1
                return 200, {"data": data}
        result = execute(generated.schema, document, context_value=context, variable_values=variables,
                         operation_name=operation_name)
        response: dict[str, Any] = {}
        if result.errors:
            response["errors"] = [format_error(e) for e in result.errors]
        if result.data is None and result.errors and all(not e.path for e in result.errors):
            return 400, response
        response["data"] = result.data
        return 200, response

    def schema(self) -> GeneratedSchema:
        return self.documents(self.runtime.catalogs.current()).generated


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object with 'query' and optionally 'variables' and 'operationName'."
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        return "'query' must be a non-empty string holding the GraphQL document."
    if len(query) > MAX_QUERY_LENGTH:
        return f"'query' is longer than {MAX_QUERY_LENGTH} characters."
    if body.get("variables") is not None and not isinstance(body["variables"], dict):
        return "'variables' must be a JSON object mapping variable names to values."
    if body.get("operationName") is not None and not isinstance(body["operationName"], str):
        return "'operationName' must be a string."
    unknown = set(body) - {"query", "variables", "operationName", "extensions"}
    if unknown:
        return f"Unknown keys in the request body: {', '.join(sorted(unknown))}."
    return None
