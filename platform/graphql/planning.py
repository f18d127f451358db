"""From a GraphQL selection to one read plan for the record service.

The root resolver of a record query calls :func:`plan_record` or :func:`plan_connection` with its
``info``: fragments, directives (``@skip``/``@include``) and variables are resolved the way the
executor will resolve them, every relation below becomes part of one
:class:`~lowcode.runtime.reading.Selection`, and the rows the plan may return are counted
against the request's cost budget (:func:`operation_cost`) before anything runs.

Fields the caller may not read (``RecordService.field_access(...).hidden``) are never planned:
their values, the relations of hidden lookups and the related lists whose link is hidden are
left out of the selection, so no statement reads them, and their resolvers report them FORBIDDEN
at their paths. Filters and sorts on hidden fields of related lists are refused here, with their
GraphQL path (``lines.filter.amount``); those of the root field by the record service.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationType,
    get_named_type,
    get_operation_ast,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.language import FieldNode, FragmentDefinitionNode

from ..metadata import graphql_names as names
from ..metadata.definitions import ObjectDef
from ..metadata.errors import FieldError, LowcodeError
from ..metadata.graphql_names import type_name
from ..runtime.reading import Children, Selection, Window
from .errors import QueryRejected, forbidden_uses
from .inputs import filter_spec
from .record_types import RELATED


@dataclass
class Planner:
    info: GraphQLResolveInfo
    types: Any
    """The schema's :class:`~lowcode.graphql.record_types.RecordTypes`."""
    limits: Any
    single: bool = False
    """The root field returns one record (by id, or one written): its stage history may be selected."""
    _hidden: dict[str, frozenset[str]] = dc_field(default_factory=dict, repr=False)

    def hidden(self, obj: ObjectDef) -> frozenset[str]:
        """The fields of ``obj`` the request's actor may not read."""
        found = self._hidden.get(obj.api_name)
        if found is None:
            context = self.info.context
            found = self._hidden[obj.api_name] = context.records.field_access(context.actor, obj.api_name).hidden
        return found

    def _unreadable(self) -> None:
        """A hidden field is selected: it is left out of the plan (its resolver reports it), unless
        this plan is for the fast path, which hands such requests to the executor."""
        if getattr(self.info, "fast", False):
            raise HiddenSelected("A field the caller may not read is selected.")

    def sub_fields(self, type_: GraphQLObjectType, nodes: list[FieldNode]) -> dict[str, list[FieldNode]]:
        info = self.info
        return collect_sub_fields(info.schema, info.fragments, info.variable_values, type_, nodes)

    def record(self, obj: ObjectDef, type_: GraphQLObjectType, nodes: list[FieldNode], rows: int, at: str = "") -> tuple[Selection, int]:
        """What to read of each record, and how many records (``rows`` of these included) it reaches;
        ``at`` is the path of these records below the root field (``lines.``), for errors."""
        selection = Selection()
        cost = rows
        bindings = self.types.bindings[type_.name]
        hidden = self.hidden(obj)
        for key, field_nodes in self.sub_fields(type_, nodes).items():
            named = {n.name.value for n in field_nodes}
            if len(named) > 1:
                if any(bindings.get(n) is None or bindings[n].kind != "value" for n in named):
                    raise QueryRejected(f"The alias '{key}' names different relations ({', '.join(sorted(named))}) in one list; use distinct aliases.")
                for n in sorted(named):
                    api_name = bindings[n].field.api_name
                    if api_name in hidden:
                        self._unreadable()
                    elif api_name not in selection.fields:
                        selection.fields.append(api_name)
                continue
            name = field_nodes[0].name.value
            binding = bindings.get(name)
            if binding is None:
                continue
            if binding.field.api_name in (hidden if binding.kind != "children" else self.hidden(binding.obj)):
                self._unreadable()
                continue
            if binding.kind == "value":
                if binding.field.api_name not in selection.fields:
                    selection.fields.append(binding.field.api_name)
            elif binding.kind in ("computed", "history"):
                if any(n in hidden for n in binding.needs):
                    self._unreadable()
                    continue
                if binding.kind == "history" and not (self.single and not at):
                    raise QueryRejected(
                        f"'{at}{key}' reads one statement per record, so it is only read on a single record: the "
                        f"{names.get_field(obj)}(id) query or a mutation returning one {names.type_name(obj)}.", field=f"{at}{key}")
                selection.fields.extend(n for n in binding.needs if n not in selection.fields)
            elif binding.kind == "relation":
                target = self.types.catalog.objects[binding.field.target]
                sub, sub_cost = self.record(target, get_named_type(type_.fields[name].type), field_nodes, 0, f"{at}{key}.")
                selection.relations[RELATED + key] = (binding.field.api_name, sub)
                cost += sub_cost * max(rows, 1) if sub_cost else 0
            else:
                field_def = type_.fields[name]
                args = get_argument_values(field_def, field_nodes[0], self.info.variable_values)
                window, node_selection, per_parent = self.connection(
                    binding.obj, get_named_type(field_def.type), field_nodes, args, at=f"{at}{key}.")
                selection.children[RELATED + key] = Children(binding.obj.api_name, binding.field.api_name, window, node_selection)
                cost += per_parent * max(rows, 1)
        return selection, cost

    def connection(self, obj: ObjectDef, connection_type: GraphQLObjectType, nodes: list[FieldNode],
                   args: dict[str, Any], recycle_bin: bool = False, at: str = "") -> tuple[Window, Selection, int]:
        """The window (filter, order, page) and what to read of each record of a connection."""
        first = args.get("first")
        limits = self.limits
        if first is None:
            first = limits.default_page_size
        if not isinstance(first, int) or not 0 <= first <= limits.max_page_size:
            raise QueryRejected(f"'{at}first' must be from 0 to {limits.max_page_size}.", field=f"{at}first", limit=limits.max_page_size)
        if at:
            self._refuse_hidden_uses(obj, args, at)
        window = Window(
            filter=filter_spec(self.types, obj, args.get("filter")), order_by=args.get("orderBy"), first=first,
            after=args.get("after"), deleted=recycle_bin,
        )
        record_type = self.types.record_type(obj)
        node_fields: list[FieldNode] = []
        for key, field_nodes in self.sub_fields(connection_type, nodes).items():
            name = field_nodes[0].name.value
            if name == "totalCount":
                window.total = True
            elif name == "nodes":
                node_fields.extend(field_nodes)
            elif name == "edges":
                edge_type = get_named_type(connection_type.fields["edges"].type)
                for edge_key, edge_nodes in self.sub_fields(edge_type, field_nodes).items():
                    if edge_nodes[0].name.value == "node":
                        node_fields.extend(edge_nodes)
        if not node_fields:
            return window, Selection(), first
        selection, cost = self.record(obj, record_type, node_fields, first, at)
        return window, selection, cost

    def _refuse_hidden_uses(self, obj: ObjectDef, args: dict[str, Any], at: str) -> None:
        """Refuse (FORBIDDEN) filters and sorts of a related list on fields the caller may not read,
        naming them by their GraphQL path from the root field (``lines.orderBy.0``)."""
        errors: list[FieldError] = []

        def visit(target: ObjectDef, value: Any, path: str) -> None:
            if not isinstance(value, dict):
                return
            bindings = self.types.filter_bindings[type_name(target, "Filter")]
            for key, item in value.items():
                if key in ("and", "or"):
                    for i, part in enumerate(item or []):
                        visit(target, part, f"{path}.{key}.{i}")
                elif key == "not":
                    visit(target, item, f"{path}.not")
                elif bindings[key].api_name in self.hidden(target):
                    errors.append(FieldError("FORBIDDEN", f"{path}.{key}",
                                             f"you may not read '{target.api_name}.{bindings[key].api_name}', so you may not filter on it"))
                elif bindings[key].related is not None:
                    visit(bindings[key].related, item, f"{path}.{key}")

        visit(obj, args.get("filter"), f"{at}filter")
        hidden = self.hidden(obj)
        for i, value in enumerate(args.get("orderBy") or []):
            if value.lstrip("-") in hidden:
                errors.append(FieldError("FORBIDDEN", f"{at}orderBy.{i}",
                                         f"you may not read '{obj.api_name}.{value.lstrip('-')}', so you may not sort on it"))
        if errors:
            raise forbidden_uses(errors)


class HiddenSelected(LowcodeError):
    """Planning for the fast path met a field the caller may not read (the executor reports those)."""

    code = "FORBIDDEN"


class PlanningInfo:
    """The part of a resolve-info the planner and the root resolvers read, for planning outside
    the executor (the request's cost, the fast path)."""

    def __init__(self, schema, fragments, variables: dict, context, field, nodes: list[FieldNode], key: str):
        self.field_name = nodes[0].name.value
        self.field_nodes = nodes
        self.return_type = field.type
        self.schema = schema
        self.fragments = fragments
        self.variable_values = variables
        self.context = context
        self.path = _Path(key)
        self.fast = False
        """Planning for the fast path: a hidden field selected stops it (:class:`HiddenSelected`)."""


class _Path:
    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key


def operation_cost(schema, types, document, operation_name: str | None, variables: dict, context) -> int | None:
    """The records the whole operation may read or return, summed over its root fields before any
    of them runs; ``None`` when the request is malformed (the executor then reports why)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    values = get_variable_values(schema, operation.variable_definitions or [], variables)
    if isinstance(values, list):
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    total = 0
    for key, nodes in collect_fields(schema, fragments, values, root, operation.selection_set).items():
        name = nodes[0].name.value
        kind, obj = types.root_kinds.get(name, (None, None))
        if kind is None or kind == "delete":
            continue
        field = root.fields[name]
        planner = Planner(PlanningInfo(schema, fragments, values, context, field, nodes, key), types, context.limits)
        try:
            args = get_argument_values(field, nodes[0], values)
            named = get_named_type(field.type)
            if kind in ("list", "due", "availability"):
                total += planner.connection(obj, named, nodes, args)[2]
            elif kind in ("aggregate", "funnel", "conversions", "map_grid", "occupancy"):
                total += 1
            else:
                rows = len(args.get("inputs") or args.get("items") or []) if kind.endswith("_many") else 1
                planner.single = not kind.endswith("_many")
                total += planner.record(obj, named, nodes, rows)[1]
        except (LowcodeError, GraphQLError):
            continue
    return total
