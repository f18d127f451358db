"""Record queries answered without the general executor.

graphql-core resolves every field of every row through its executor (a resolve-info object, a
path and a completion step each), which costs more than reading the rows. A query whose root
fields are all record reads (``deal``, ``deals``, ``dealAggregate``) is already planned into one
tree read by its root resolver; here the rows it returns are shaped straight into the response,
following the selection as the executor would (fragments, ``@skip``/``@include``, aliases,
``__typename``, each value serialised by its field's GraphQL type). Any other operation, and any
request that meets an error, goes through the executor, so errors are reported the standard way.

Field-level security: a request selecting any field the caller may not read (a hidden value, the
relation or raw id of a hidden lookup, a related list whose link is hidden) is handed to the
executor. When planning for this path (``PlanningInfo.fast``) the planner stops at the first
hidden field it meets, before that root field reads anything (only root fields before it in the
same request have been read, and are read again by the executor). The executor answers null with
a FORBIDDEN error at each such path, so the response is always exactly the executor's; requests
selecting only readable fields keep the fast path.
"""
from __future__ import annotations

from typing import Any, Callable

from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    OperationType,
    default_field_resolver,
    get_operation_ast,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.language import FragmentDefinitionNode

from ..metadata.errors import LowcodeError
from .planning import PlanningInfo
from .record_types import RELATED


class FastPath:
    """Shapes the response of one request; :meth:`run` returns ``None`` to mean "use the executor"."""

    def __init__(self, schema, root_fields: frozenset[str], document, context, variables: dict, operation_name: str | None):
        self.schema = schema
        self.root_fields = root_fields
        self.document = document
        self.context = context
        self.raw_variables = variables
        self.operation_name = operation_name
        self.fragments: dict[str, FragmentDefinitionNode] = {}
        self.variable_values: dict[str, Any] = {}
        self._shapers: dict[tuple, Callable[[Any], dict]] = {}
        self._arguments: dict[int, dict] = {}

    def run(self) -> dict[str, Any] | None:
        operation = get_operation_ast(self.document, self.operation_name)
        if operation is None or operation.operation != OperationType.QUERY:
            return None
        variables = get_variable_values(self.schema, operation.variable_definitions or [], self.raw_variables)
        if isinstance(variables, list):
            return None
        self.variable_values = variables
        self.fragments = {d.name.value: d for d in self.document.definitions if isinstance(d, FragmentDefinitionNode)}
        query_type = self.schema.query_type
        roots = collect_fields(self.schema, self.fragments, variables, query_type, operation.selection_set)
        names = {nodes[0].name.value for nodes in roots.values()} - {"__typename"}
        if not names <= self.root_fields:
            return None
        data: dict[str, Any] = {}
        try:
            for key, nodes in roots.items():
                name = nodes[0].name.value
                if name == "__typename":
                    data[key] = query_type.name
                    continue
                field = query_type.fields[name]
                info = PlanningInfo(self.schema, self.fragments, self.variable_values, self.context, field, nodes, key)
                info.fast = True
                value = field.resolve(None, info, **self._args(field, nodes))
                data[key] = None if value is None else self._shaper(field.type, nodes)(value)
        except LowcodeError:
            return None
        return data

    def _args(self, field, nodes) -> dict[str, Any]:
        found = self._arguments.get(id(nodes[0]))
        if found is None:
            found = self._arguments[id(nodes[0])] = get_argument_values(field, nodes[0], self.variable_values) if field.args else {}
        return found

    def _shaper(self, type_, nodes) -> Callable[[Any], Any]:
        """A function turning a resolved value of ``type_`` into its response value (not null)."""
        if isinstance(type_, GraphQLNonNull):
            return self._shaper(type_.of_type, nodes)
        if isinstance(type_, GraphQLList):
            item = self._shaper(type_.of_type, nodes)
            return lambda values: [None if v is None else item(v) for v in values]
        if isinstance(type_, (GraphQLScalarType, GraphQLEnumType)):
            return type_.serialize
        return self._object_shaper(type_, nodes)

    def _object_shaper(self, type_: GraphQLObjectType, nodes: list) -> Callable[[Any], dict]:
        key = (type_.name, *map(id, nodes))
        found = self._shapers.get(key)
        if found is not None:
            return found
        entries: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any] | None]] = []
        collected = collect_sub_fields(self.schema, self.fragments, self.variable_values, type_, nodes)
        for response, field_nodes in collected.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                entries.append((response, _constant(type_.name), None))
                continue
            field = type_.fields[name]
            entries.append((response, self._getter(field, name, response, field_nodes), self._shaper(field.type, field_nodes)))

        def shape(value) -> dict:
            result = {}
            for response, get, complete in entries:
                item = get(value)
                result[response] = item if item is None or complete is None else complete(item)
            return result

        self._shapers[key] = shape
        return shape

    def _getter(self, field, name: str, response: str, nodes) -> Callable[[Any], Any]:
        """How to read the field from its parent's value, as its resolver would."""
        resolve = field.resolve
        reads = getattr(resolve, "reads", None)
        if reads is not None:
            return lambda source: source.get(reads)
        if getattr(resolve, "reads_response_key", False):
            stored = RELATED + response
            return lambda source: source.get(stored)
        resolve = resolve or default_field_resolver
        info = _Key(response, name, self.context)
        args = self._args(field, nodes) if field.args else None
        if args:
            return lambda source: resolve(source, info, **args)
        return lambda source: resolve(source, info)


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _source: value


class _Key:
    """The part of a resolve-info that field resolvers below the root read: the response key
    (and the request's context)."""

    __slots__ = ("key", "field_name", "context")

    def __init__(self, response: str, field_name: str, context: Any = None):
        self.key = response
        self.field_name = field_name
        self.context = context

    @property
    def path(self) -> "_Key":
        return self
