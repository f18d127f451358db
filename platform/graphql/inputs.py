"""GraphQL arguments as the record service's inputs, and its error paths back in GraphQL names.

Record inputs and filters arrive with GraphQL names (``closeDate``, ``accountId``, ``notIn``);
the service speaks api names (``close_date``, ``account``, ``not_in``). Both directions are here.
"""
from __future__ import annotations

from typing import Any

from ..metadata import graphql_names as names
from ..metadata.catalog import Catalog
from ..metadata.definitions import ObjectDef
from ..metadata.errors import FieldError, LowcodeError
from ..metadata.names import camel_case

BOOLEAN_KEYS = ("and", "or", "not")
OPERATOR_NAMES = {"in_": "in"}


def filter_spec(types: Any, obj: ObjectDef, value: dict | None) -> dict | None:
    """A filter input as the service's filter tree."""
    if not value:
        return None
    bindings = types.filter_bindings[names.type_name(obj, "Filter")]
    parts: list[dict] = []
    spec: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("and", "or"):
            spec[key] = [filter_spec(types, obj, part) or {} for part in item or []]
        elif key == "not":
            if item is not None:
                spec["not"] = filter_spec(types, obj, item) or {}
        else:
            binding = bindings[key]
            if binding.related is not None:
                inner = filter_spec(types, binding.related, item) if item is not None else None
                condition = inner or {}
            else:
                condition = {OPERATOR_NAMES.get(op, op): operand for op, operand in (item or {}).items()}
            if not condition:
                continue
            if binding.api_name in spec:
                parts.append({binding.api_name: condition})
            else:
                spec[binding.api_name] = condition
    if parts:
        return {"and": [spec, *parts]}
    return spec or None


def record_values(types: Any, obj: ObjectDef, value: dict) -> dict[str, Any]:
    """A create or update input as the service's values (only the fields given)."""
    bindings = types.input_bindings[names.type_name(obj)]
    return {bindings[key]: item for key, item in value.items()}


def graphql_path(catalog: Catalog, obj: ObjectDef, path: str | None, prefix: str | None = None,
                 filter_value: Any = None) -> str | None:
    """A service error path (``3.close_date``, ``filter.account.industry.not_in``) in GraphQL names.

    In a filter a lookup has two keys (``accountId`` for its value, ``account`` for conditions on
    the record); a path ending at the lookup names the one the caller's ``filter_value`` (the
    GraphQL argument) used."""
    segments = path.split(".") if path else []
    translated: list[str] = []
    current: ObjectDef | None = obj
    in_filter = bool(segments) and segments[0] == "filter"
    node = filter_value if in_filter else None
    for index, segment in enumerate(segments):
        field = current.field(segment) if current is not None else None
        if field is None:
            translated.append(segment if segment.isdigit() else camel_case(segment))
            if index or not in_filter:
                node = _filter_step(node, segment)
            continue
        following = segments[index + 1] if index + 1 < len(segments) else None
        target = catalog.objects.get(field.target) if field.target else None
        relation = names.relation_field(field) if target is not None else None
        value_name = names.value_field(field)
        if in_filter and relation and (
                (following is not None and target.field(following) is not None)
                or (following is None and isinstance(node, dict) and relation in node and value_name not in node)):
            translated.append(relation)
            current = target
            node = node.get(relation) if isinstance(node, dict) else None
        else:
            translated.append(value_name)
            current = None
            node = None
    if prefix:
        translated.insert(0, prefix)
    return ".".join(translated) or None


def _filter_step(node: Any, segment: str) -> Any:
    """The part of a GraphQL filter input that a path segment (``and``, ``0``, ``not``) leads to."""
    if segment.isdigit():
        return node[int(segment)] if isinstance(node, list) and int(segment) < len(node) else None
    return node.get(segment) if isinstance(node, dict) else None


def in_graphql_names(error: LowcodeError, catalog: Catalog, obj: ObjectDef, prefix: str | None = None,
                     filter_value: Any = None) -> LowcodeError:
    """``error`` with its field paths in GraphQL names; the paths of its list of problems lie under
    ``prefix`` (the input argument), its own field names an argument. ``filter_value`` is the
    GraphQL filter argument, if any (see :func:`graphql_path`). Errors made with GraphQL paths
    already (``in_graphql_names = True``) are returned as they are."""
    if getattr(error, "in_graphql_names", False):
        return error
    error.errors = [
        FieldError(e.code, graphql_path(catalog, obj, e.field, prefix, filter_value), e.message, e.ctx) for e in error.errors
    ]
    if error.field:
        error.field = graphql_path(catalog, obj, error.field)
    return error
