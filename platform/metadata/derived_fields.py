"""Formula and roll-up fields: checked when saved, and the SQL that computes a roll-up.

A formula is checked as CEL over the record (``record`` and ``now``), must not read other
formulas, and is marked ``in_sql`` when it translates into SQL (its kind must then fit the result
type). A roll-up names a child object linked to this one by a master-detail field, a function and
the child field it aggregates; its result type is derived from them. Both are read-only values:
never required, unique, indexed, tracked or defaulted.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import cel
from sqlalchemy import Table, func, select, true, update

from .definitions import FieldDef, ObjectDef, freeze, thaw
from .errors import FieldError
from .expressions import expression_problems, referenced_fields
from .fieldtypes.formula import RESULT_KINDS, translate
from .formulas import (
    ExpressionTypeError,
    NotTranslatable,
    column_resolver,
    parse,
    sql_expression,
)
from .tables import new_metadata, query_table

FORMULA_VARIABLES = ("record", "now")
SUMMABLE = ("integer", "decimal", "currency", "percent")
EXTREMES = (*SUMMABLE, "date", "datetime")


def settle_derived(objects: Mapping[str, ObjectDef], obj: ObjectDef, field: FieldDef) -> tuple[FieldDef, list[FieldError]]:
    """``field`` with its derived options filled in, and what is wrong with it (``obj`` holds it)."""
    if field.type not in ("formula", "rollup"):
        return field, []
    errors = [FieldError("NOT_ALLOWED", flag, f"a {field.type} field is computed, so it cannot be {word}")
              for flag, word in (("required", "required"), ("unique", "unique"), ("indexed", "indexed"), ("tracked", "tracked"))
              if getattr(field, flag)]
    if field.default is not None:
        errors.append(FieldError("NOT_ALLOWED", "default", f"a {field.type} field is computed, so it takes no default"))
    settle = _settle_formula if field.type == "formula" else _settle_rollup
    settled, problems = settle(objects, obj, field)
    return settled, errors + problems


def _with_options(field: FieldDef, **options: Any) -> FieldDef:
    return replace(field, options=freeze({**thaw(field.options), **options}))


def _settle_formula(objects, obj: ObjectDef, field: FieldDef) -> tuple[FieldDef, list[FieldError]]:
    source = field.options["expression"]
    path = "options.expression"
    errors = expression_problems(obj, source, path)
    if errors:
        return field, errors
    for name in cel.compile(source).variables():
        if name not in FORMULA_VARIABLES and name in ("old", "user"):
            errors.append(FieldError("UNKNOWN_VARIABLE", path, f"'{name}' is not known in a formula; use {', '.join(FORMULA_VARIABLES)}"))
    for name in sorted(referenced_fields(source)):
        if obj.fields_by_name[name].type == "formula":
            errors.append(FieldError("FORMULA_REFERENCE", path, f"reads the formula '{name}'; a formula reads stored fields only"))
    if errors:
        return field, errors
    try:
        _, kind = translate(field, query_table(obj, new_metadata()))
    except ExpressionTypeError as wrong:
        return field, [_type_error(source, path, wrong)]
    except NotTranslatable as reason:
        return _with_options(field, in_sql=False, not_in_sql_because=f"{reason.reason} at offset {reason.offset}"), []
    result = field.options["result_type"]
    if kind != "null" and kind not in RESULT_KINDS[result]:
        return field, [FieldError("RESULT_TYPE_MISMATCH", path, f"gives a {kind} value, which a {result} result cannot hold")]
    return _with_options(field, in_sql=True, not_in_sql_because=None), []


def _settle_rollup(objects, obj: ObjectDef, field: FieldDef) -> tuple[FieldDef, list[FieldError]]:
    options = field.options
    child = objects.get(options["child_object"])
    if child is None:
        return field, [FieldError("UNKNOWN_OBJECT", "options.child_object", f"there is no object named '{options['child_object']}'")]
    links = [f for f in child.fields if f.type == "master_detail" and f.target == obj.api_name]
    name = options.get("relationship_field")
    if name is None and len(links) != 1:
        problem = "has no master-detail field pointing to" if not links else "has several master-detail fields pointing to"
        return field, [FieldError("INVALID_VALUE", "options.relationship_field" if links else "options.child_object",
                                  f"'{child.api_name}' {problem} '{obj.api_name}'" + ("; name one" if links else ""))]
    link = links[0] if name is None else next((f for f in links if f.api_name == name), None)
    if link is None:
        return field, [FieldError("INVALID_VALUE", "options.relationship_field",
                                  f"'{child.api_name}.{name}' is not a master-detail field pointing to '{obj.api_name}'")]
    function, errors = options["function"], []
    result_type, scale = "integer", None
    if function != "count":
        aggregated = child.field(options["aggregate_field"])
        allowed = SUMMABLE if function == "sum" else EXTREMES
        if aggregated is None:
            errors.append(FieldError("UNKNOWN_FIELD", "options.aggregate_field", f"'{child.api_name}' has no field named '{options['aggregate_field']}'"))
        elif aggregated.type == "formula":
            errors.append(FieldError("INVALID_VALUE", "options.aggregate_field", "a formula is computed on read, so it cannot be rolled up"))
        elif aggregated.value_type not in allowed:
            errors.append(FieldError("INVALID_VALUE", "options.aggregate_field", f"{function} does not apply to a {aggregated.value_type} field; use one of {', '.join(allowed)}"))
        else:
            result_type = aggregated.value_type
            scale = aggregated.value.options.get("scale")
            if function == "sum" and result_type == "integer":
                result_type, scale = "decimal", 0
    if options.get("filter"):
        errors.extend(_filter_problems(child, options["filter"]))
    if errors:
        return field, errors
    return _with_options(field, relationship_field=link.api_name, result_type=result_type, scale=scale), []


def _filter_problems(child: ObjectDef, source: str) -> list[FieldError]:
    path = "options.filter"
    errors = expression_problems(child, source, path)
    if errors:
        return errors
    try:
        _, kind = filter_sql(source, query_table(child, new_metadata()))
    except ExpressionTypeError as wrong:
        return [_type_error(source, path, wrong)]
    except NotTranslatable as reason:
        return [FieldError("NOT_TRANSLATABLE", path, f"must translate into SQL: {reason.reason}", {"offset": reason.offset})]
    if kind != "bool":
        return [FieldError("INVALID_VALUE", path, f"must be a condition (true or false), not {'an' if kind == 'int' else 'a'} {kind} value")]
    return []


def _type_error(source: str, path: str, error: ExpressionTypeError) -> FieldError:
    line = source.count("\n", 0, error.offset) + 1
    column = error.offset - (source.rfind("\n", 0, error.offset) + 1) + 1
    return FieldError("TYPE_MISMATCH", path, error.reason, {"line": line, "column": column, "offset": error.offset})


def filter_sql(source: str, table: Table):
    from .fieldtypes.formula import stored_kind

    kinds = {c.key: k for c in table.c if (k := stored_kind(c)) is not None}
    scales = {c.key: c.type.scale for c in table.c if kinds.get(c.key) == "double"}
    return sql_expression(parse(source), column_resolver(table, kinds, decimal_scales=scales))


def fields_reading(objects: Mapping[str, ObjectDef], obj: ObjectDef, field_api_name: str) -> list[str]:
    """Formulas of ``obj`` and roll-ups of other objects that read ``obj.<field_api_name>``."""
    users = [f"formula '{f.api_name}'" for f in obj.fields
             if f.type == "formula" and field_api_name in referenced_fields(f.options["expression"])]
    for parent, rollup in rollups_over(objects, obj.api_name):
        options = rollup.options
        if field_api_name in (options["relationship_field"], options.get("aggregate_field")) or (
                options.get("filter") and field_api_name in referenced_fields(options["filter"])):
            users.append(f"roll-up '{parent.api_name}.{rollup.api_name}'")
    return users


def rollups_over(objects: Mapping[str, ObjectDef], child_api_name: str) -> list[tuple[ObjectDef, FieldDef]]:
    """The roll-up fields (with their objects) that summarize ``child_api_name``."""
    return [(parent, f) for parent in objects.values() for f in parent.fields
            if f.type == "rollup" and f.options["child_object"] == child_api_name]


def summary_update(parent: Table, child: Table, rollups: list[FieldDef], parent_ids: list[str] | None):
    """``UPDATE parent SET <rollup> = (<summary of its live children>)`` for ``parent_ids`` (all when ``None``)."""
    values = {}
    for rollup in rollups:
        options = rollup.options
        conditions = [child.c[options["relationship_field"]] == parent.c.id, child.c.deleted_at.is_(None)]
        if options.get("filter"):
            conditions.append(filter_sql(options["filter"], child)[0])
        function = options["function"]
        measured = func.count() if function == "count" else getattr(func, function)(child.c[options["aggregate_field"]])
        summary = select(measured).where(*conditions).scalar_subquery()
        values[rollup.api_name] = func.coalesce(summary, 0) if function in ("count", "sum") else summary
    where = true() if parent_ids is None else parent.c.id.in_(parent_ids)
    return update(parent).where(where).values(values)
