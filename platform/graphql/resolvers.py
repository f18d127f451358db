"""Root resolvers of the record API: each plans its selection and makes one record service call.

Field resolvers below the root only read what these prepared (see ``record_types``). Fields the
caller may not read are missing from what they prepared (never planned, stripped from written
records), which the field resolvers report as FORBIDDEN at each path.
"""
from __future__ import annotations

from typing import Any, Callable

from graphql import GraphQLResolveInfo, get_named_type

from ..metadata.definitions import FieldDef, ObjectDef
from ..metadata.errors import FieldError, Forbidden, LowcodeError, ValidationFailed
from ..metadata.graphql_names import enum_value_name, value_field
from ..runtime.reading import Branch, Selection
from .errors import QueryRejected, unreadable
from .inputs import filter_spec, graphql_path, in_graphql_names, record_values
from .planning import Planner
from .record_types import RELATED, Connection


class Resolvers:
    """Makes the resolver of each root field of one object."""

    def __init__(self) -> None:
        self.types: Any = None

    # -- helpers ---------------------------------------------------------------------------
    def _planner(self, info: GraphQLResolveInfo, single: bool = False) -> Planner:
        return Planner(info, self.types, info.context.limits, single=single)

    def _record_selection(self, info: GraphQLResolveInfo, obj: ObjectDef, rows: int = 1, single: bool = True) -> Selection:
        """What to read of each record returned; planned before any write, so a bad selection writes
        nothing. ``single``: the root field returns one record (its stage history may be selected)."""
        return self._planner(info, single).record(obj, get_named_type(info.return_type), info.field_nodes, rows)[0]

    def _guard(self, info: GraphQLResolveInfo, obj: ObjectDef, call: Callable[[], Any], prefix: str | None = None,
               filter_value: Any = None) -> Any:
        try:
            return call()
        except LowcodeError as error:
            raise in_graphql_names(error, info.context.catalog, obj, prefix, filter_value) from None

    @staticmethod
    def _needs_reading(selection: Selection) -> bool:
        return bool(selection.relations or selection.children)

    def _bulk_cap(self, info: GraphQLResolveInfo, items: list, argument: str) -> None:
        cap = info.context.limits.max_bulk
        if len(items) > cap:
            raise QueryRejected(f"At most {cap} records per call; split the batch.", field=argument, limit=cap)

    def _written(self, info, obj: ObjectDef, selection: Selection, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the mutation returns: the written records, re-read only when relations are asked
        for, without the fields the caller may not read (their resolvers report them)."""
        context = info.context
        if self._needs_reading(selection):
            found = context.records.read_records(context.actor, obj.api_name, [r["id"] for r in records], selection)
            records = [f if f is not None else r for f, r in zip(found, records)]
        hidden = context.records.field_access(context.actor, obj.api_name).hidden
        if hidden:
            records = [{k: v for k, v in r.items() if k not in hidden} for r in records]
        return records

    # -- queries ---------------------------------------------------------------------------
    def get(self, obj: ObjectDef):
        def resolve(_root, info, id, inRecycleBin=False):
            context = info.context
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj))
            return self._guard(info, obj, lambda: context.records.read_record(
                context.actor, obj.api_name, id, selection, deleted=bool(inRecycleBin)))
        return resolve

    def list(self, obj: ObjectDef):
        def resolve(_root, info, inRecycleBin=False, **args):
            context = info.context
            planner = self._planner(info)
            window, selection, _cost = self._guard(info, obj, lambda: planner.connection(
                obj, get_named_type(info.return_type), info.field_nodes, args, bool(inRecycleBin)))
            branch = self._guard(info, obj, lambda: context.records.read_page(context.actor, obj.api_name, window, selection),
                                 filter_value=args.get("filter"))
            return Connection(branch, window.after)
        return resolve

    def due(self, obj: ObjectDef):
        """Records whose time in their (open) stage has run out, or runs out within ``withinDays``
        days, as of now: a page like the list query's."""
        def resolve(_root, info, withinDays=0, **args):
            context = info.context
            planner = self._planner(info)
            window, selection, _cost = self._guard(info, obj, lambda: planner.connection(
                obj, get_named_type(info.return_type), info.field_nodes, args))
            within = 0 if withinDays is None else withinDays
            try:
                branch = context.records.read_page(context.actor, obj.api_name, window, selection, stage_due_within=within)
            except LowcodeError as error:
                error.errors = [FieldError(e.code, "withinDays", e.message, e.ctx) if e.field == "stage_due_within" else e
                                for e in error.errors]
                raise in_graphql_names(error, context.catalog, obj, None, args.get("filter")) from None
            return Connection(branch, window.after)
        return resolve

    def children(self, child: ObjectDef, link: FieldDef):
        """The related list of ``child`` records whose ``link`` points at the record: read with the
        record, absent when the caller may not read ``link`` (then FORBIDDEN)."""
        def resolve(record, info, **args):
            branch: Branch | None = record.get(RELATED + info.path.key)
            if branch is None:
                context = info.context
                if link.api_name in context.records.field_access(context.actor, child.api_name).hidden:
                    raise unreadable(child.label, child.api_name, link.api_name)
                return None
            return Connection(branch, args.get("after"))
        return resolve

    def aggregate(self, obj: ObjectDef):
        def resolve(_root, info, filter=None, groupBy=None):
            context = info.context
            measures = self._measures(info, obj)
            group_by = [{"field": name, "granularity": granularity} for name, granularity in groupBy or []]
            try:
                return context.records.aggregate(
                    context.actor, obj.api_name, filter=filter_spec(self.types, obj, filter), group_by=group_by, measures=measures)
            except LowcodeError as error:
                raise _aggregate_paths(in_graphql_names(error, context.catalog, obj, filter_value=filter), obj, measures) from None
        return resolve

    def funnel(self, obj: ObjectDef):
        """The funnel rows (one record service call), then the owners asked for (one more)."""
        def resolve(_root, info, amountField, dateField=None, period=None, byOwner=False, filter=None, unit=None):
            context = info.context
            try:
                rows = context.records.funnel(
                    context.actor, obj.api_name, amount_field=amountField, date_field=dateField, period=period,
                    by_owner=bool(byOwner), filter=filter_spec(self.types, obj, filter), unit=unit)
            except LowcodeError as error:
                raise in_graphql_names(_argument_paths(error), context.catalog, obj, filter_value=filter) from None
            self._attach(info, rows, "owner", context.catalog.objects.get("user"), "owner_id")
            return rows
        return resolve

    def _attach(self, info: GraphQLResolveInfo, rows: list[dict[str, Any]], relation: str, target: ObjectDef | None,
                id_key: str) -> None:
        """Each row's ``relation`` record (``target``'s, by the id in ``id_key``) under ``@<response
        key>``, for every selection of it, all read at once."""
        context = info.context
        row_type = get_named_type(info.return_type)
        planner = self._planner(info)
        for key, nodes in planner.sub_fields(row_type, info.field_nodes).items():
            if nodes[0].name.value != relation or target is None:
                continue
            ids = list(dict.fromkeys(row[id_key] for row in rows if row.get(id_key)))
            found: dict[str, Any] = {}
            if ids:
                selection = self._guard(info, target, lambda: planner.record(
                    target, get_named_type(row_type.fields[relation].type), nodes, len(ids))[0])
                records = self._guard(info, target, lambda: context.records.read_records(context.actor, target.api_name, ids, selection))
                found = dict(zip(ids, records))
            for row in rows:
                row[RELATED + key] = found.get(row.get(id_key))

    def availability(self, obj: ObjectDef, resource: ObjectDef):
        """The resources no active booking holds in the period: a page like the list query's."""
        def resolve(_root, info, **args):
            context = info.context
            start, end = args.pop("from"), args.pop("to")
            planner = self._planner(info)
            window, selection, _cost = self._guard(info, resource, lambda: planner.connection(
                resource, get_named_type(info.return_type), info.field_nodes, args))
            branch = self._guard(info, resource, lambda: context.records.available(
                context.actor, obj.api_name, start, end, window, selection), filter_value=args.get("filter"))
            return Connection(branch, window.after)
        return resolve

    def occupancy(self, obj: ObjectDef, resource: ObjectDef):
        """Booked days per resource and month (one record service call), then the resources asked for."""
        def resolve(_root, info, filter=None, statuses=None, **args):
            context = info.context
            rows = self._guard(info, resource, lambda: context.records.occupancy(
                context.actor, obj.api_name, args["from"], args["to"], filter=filter_spec(self.types, resource, filter),
                statuses=statuses), filter_value=filter)
            self._attach(info, rows, "resource", resource, "resource_id")
            return rows
        return resolve

    def conversions(self, obj: ObjectDef):
        """Stage to stage conversion rates; stages and types named as in their enums."""
        def resolve(_root, info, filter=None, unit=None):
            context = info.context
            try:
                steps = context.records.stage_conversions(context.actor, obj.api_name, filter=filter_spec(self.types, obj, filter),
                                                          unit=unit)
            except LowcodeError as error:
                raise in_graphql_names(_argument_paths(error), context.catalog, obj, filter_value=filter) from None
            return [{**step, "business_type": enum_value_name(step["business_type"]), "from_stage": enum_value_name(step["from_stage"]),
                     "to_stage": enum_value_name(step["to_stage"])} for step in steps]
        return resolve

    def map_grid(self, obj: ObjectDef):
        """Record counts per grid cell of a geolocation field (one record service call)."""
        def resolve(_root, info, field, cellDegrees, filter=None, box=None):
            context = info.context
            try:
                return context.records.geo_grid(context.actor, obj.api_name, field, cellDegrees,
                                                filter=filter_spec(self.types, obj, filter), box=box)
            except LowcodeError as error:
                raise _grid_paths(error, context.catalog, obj, filter) from None
        return resolve

    def _measures(self, info: GraphQLResolveInfo, obj: ObjectDef) -> list[tuple[str, str]]:
        planner = self._planner(info)
        group_type = get_named_type(info.return_type)
        measures: list[tuple[str, str]] = []
        for _key, nodes in planner.sub_fields(group_type, info.field_nodes).items():
            function = nodes[0].name.value
            if function not in ("sum", "avg", "min", "max"):
                continue
            measure_type = get_named_type(group_type.fields[function].type)
            for _inner, measure_nodes in planner.sub_fields(measure_type, nodes).items():
                graphql_name = measure_nodes[0].name.value
                field = next((f for f in obj.fields_by_name.values() if value_field(f) == graphql_name), None)
                if field is not None and (function, field.api_name) not in measures:
                    measures.append((function, field.api_name))
        return measures

    # -- mutations -------------------------------------------------------------------------
    def create(self, obj: ObjectDef):
        def resolve(_root, info, input, acknowledge=None):
            context = info.context
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj))
            values = record_values(self.types, obj, input)
            record = self._guard(info, obj, lambda: context.records.create(context.actor, obj.api_name, values,
                                                                           acknowledge=acknowledge or ()), "input")
            return self._written(info, obj, selection, [record])[0]
        return resolve

    def create_many(self, obj: ObjectDef):
        def resolve(_root, info, inputs, acknowledge=None):
            context = info.context
            self._bulk_cap(info, inputs, "inputs")
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj, len(inputs), single=False))
            values = [record_values(self.types, obj, item) for item in inputs]
            records = self._guard(info, obj, lambda: context.records.bulk_create(context.actor, obj.api_name, values,
                                                                                 acknowledge=acknowledge or ()), "inputs")
            return self._written(info, obj, selection, records)
        return resolve

    def update(self, obj: ObjectDef):
        def resolve(_root, info, id, input, expectedVersion=None, acknowledge=None):
            context = info.context
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj))
            values = record_values(self.types, obj, input)
            record = self._guard(info, obj, lambda: context.records.update(
                context.actor, obj.api_name, id, values, expected_version=expectedVersion, acknowledge=acknowledge or ()), "input")
            return self._written(info, obj, selection, [record])[0]
        return resolve

    def update_many(self, obj: ObjectDef):
        def resolve(_root, info, items, acknowledge=None):
            context = info.context
            self._bulk_cap(info, items, "items")
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj, len(items), single=False))
            changes = [{"id": item["id"], "values": record_values(self.types, obj, item["input"]),
                        "expected_version": item.get("expectedVersion")} for item in items]
            try:
                records = context.records.bulk_update(context.actor, obj.api_name, changes, acknowledge=acknowledge or ())
            except (ValidationFailed, Forbidden) as error:
                raise _item_paths(in_graphql_names(error, context.catalog, obj)) from None
            except LowcodeError as error:
                raise in_graphql_names(error, context.catalog, obj) from None
            return self._written(info, obj, selection, records)
        return resolve

    def delete(self, obj: ObjectDef):
        def resolve(_root, info, id):
            context = info.context
            self._guard(info, obj, lambda: context.records.delete(context.actor, obj.api_name, id))
            return id
        return resolve

    def transfer(self, obj: ObjectDef):
        def resolve(_root, info, id, ownerId, orgUnitId=None):
            context = info.context
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj))
            record = self._guard(info, obj, lambda: context.records.transfer(
                context.actor, obj.api_name, id, ownerId, org_unit_id=orgUnitId))
            return self._written(info, obj, selection, [record])[0]
        return resolve

    def restore(self, obj: ObjectDef):
        def resolve(_root, info, id):
            context = info.context
            selection = self._guard(info, obj, lambda: self._record_selection(info, obj))
            record = self._guard(info, obj, lambda: context.records.restore(context.actor, obj.api_name, id))
            return self._written(info, obj, selection, [record])[0]
        return resolve


def _item_paths(error: LowcodeError) -> LowcodeError:
    """Bulk update paths ``3.closeDate`` become ``items.3.input.closeDate``."""
    fixed = []
    for e in error.errors:
        head, _, rest = (e.field or "").partition(".")
        if head.isdigit():
            path = f"items.{head}.input.{rest}" if rest and rest not in ("expectedVersion",) else f"items.{head}" + (f".{rest}" if rest else "")
        else:
            path = f"items.{e.field}" if e.field else "items"
        fixed.append(FieldError(e.code, path, e.message, e.ctx))
    error.errors = fixed
    return error


FUNNEL_ARGUMENTS = {"amount_field": "amountField", "date_field": "dateField", "by_owner": "byOwner"}
"""The record service's names of funnel arguments, by their GraphQL names."""


def _argument_paths(error: LowcodeError) -> LowcodeError:
    """Funnel errors on its arguments (``amount_field``) name the GraphQL argument (``amountField``)."""
    error.errors = [FieldError(e.code, FUNNEL_ARGUMENTS[e.field], e.message, e.ctx) if e.field in FUNNEL_ARGUMENTS else e
                    for e in error.errors]
    if error.field in FUNNEL_ARGUMENTS:
        error.field = FUNNEL_ARGUMENTS[error.field]
    return error


def _grid_paths(error: LowcodeError, catalog, obj: ObjectDef, filter_value: Any) -> LowcodeError:
    """Map grid errors in GraphQL names: the filter's paths translated, ``cell_degrees`` as ``cellDegrees``
    (``field`` and ``box.south`` read alike)."""
    fixed = []
    for e in error.errors:
        in_filter = (e.field or "").split(".")[0] == "filter"
        path = graphql_path(catalog, obj, e.field, None, filter_value) if in_filter else _GRID_ARGUMENTS.get(e.field, e.field)
        fixed.append(FieldError(e.code, path, e.message, e.ctx))
    error.errors = fixed
    return error


_GRID_ARGUMENTS = {"cell_degrees": "cellDegrees"}


def _aggregate_paths(error: LowcodeError, obj: ObjectDef, measures: list[tuple[str, str]]) -> LowcodeError:
    """Aggregate paths as the request names them: ``groupBy.0.field`` is the group value
    ``groupBy.0``, the service's ``measures.2`` the selected measure (``sum.amount``)."""
    fixed = []
    for e in error.errors:
        parts = (e.field or "").split(".")
        path = e.field
        if parts[0] == "groupBy" and len(parts) > 1:
            path = ".".join(parts[:2])
        elif parts[0] == "measures" and len(parts) == 2 and parts[1].isdigit() and int(parts[1]) < len(measures):
            function, name = measures[int(parts[1])]
            path = f"{function}.{value_field(obj.field(name))}"
        fixed.append(FieldError(e.code, path, e.message, e.ctx))
    error.errors = fixed
    return error
