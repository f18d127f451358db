"""The likely duplicates of a record, or of values about to be saved, by every active duplicate
rule of its object: what a form shows before saving, or a list of look-alikes of a record.

The caller must be able to read the record asked about (else NOT_FOUND). Each match names its rule,
score, the fields compared and its owner; the record itself (the fields the caller may read) only
when the caller may read it. Matches are ranked best score first (then by rule and id); a record
matched by two rules appears once per rule.
"""
from __future__ import annotations

from typing import Any

from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.catalog import Catalog
from ...metadata.errors import FieldError, ValidationFailed
from ..reading import Selection
from ..rules import condition_holds
from . import matching
from .definitions import KIND, rule_of

MAX_FIRST = 100


def duplicate_matches(records, catalog: Catalog, actor: Actor, object_api_name: str, record_id: str | None,
                      values: dict[str, Any] | None, first: int) -> list[dict[str, Any]]:
    """See the module: ``records`` is the record service the request reads through."""
    obj = catalog.object(object_api_name)
    records.policy.authorize(actor, obj, "read")
    errors = _request_problems(obj, record_id, values, first)
    if errors:
        raise ValidationFailed("The duplicates request has problems; fix the listed parts.", errors=errors)
    subject: dict[str, Any] = {name: None for name in obj.fields_by_name}
    if record_id is not None:
        records.get(actor, obj.api_name, record_id, fields=["id"])
        subject.update(records.get(SYSTEM_ACTOR, obj.api_name, record_id))
    subject.update(values or {})
    rules = [rule_of(a.api_name, a.settings) for a in obj.automations_of(KIND)]
    table = catalog.table(obj.api_name)
    predicate = records.policy.row_filter(actor, obj, table, "read")
    now = records.clock.now()
    with records.engine.connect() as conn:
        found = [match for rule in rules if condition_holds(catalog, obj, rule.condition, actor, subject, None, now)
                 for match in matching.find(conn, obj, table, predicate, rule, subject, subject.get("id"))]
        found = sorted(found, key=lambda m: (-m.score, m.rule, m.record_id))[:first]
        names = matching.owner_names(conn, catalog, {m.owner_id for m in found if m.owner_id})
    visible = list(dict.fromkeys(m.record_id for m in found if m.visible))
    read = dict(zip(visible, records.read_records(actor, obj.api_name, visible, Selection(list(obj.fields_by_name))))) if visible else {}
    return [{"record_id": m.record_id if m.visible else None, "visible": m.visible, "record": read.get(m.record_id) if m.visible else None,
             "owner": {"id": m.owner_id, "name": names.get(m.owner_id) if m.owner_id else None},
             "rule": m.rule, "score": m.score, "fields": list(m.fields)} for m in found]


def _request_problems(obj, record_id: Any, values: Any, first: Any) -> list[FieldError]:
    errors = []
    if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= MAX_FIRST:
        errors.append(FieldError("OUT_OF_RANGE", "first", f"must be a whole number from 1 to {MAX_FIRST}"))
    if record_id is None and values is None:
        errors.append(FieldError("REQUIRED", "id", "give the id of a record, or the values of one about to be saved"))
    if values is not None and not isinstance(values, dict):
        errors.append(FieldError("INVALID_TYPE", "values", "must be an object of field names and values"))
    elif values:
        errors += [FieldError("UNKNOWN_FIELD", f"values.{name}", f"'{obj.api_name}' has no field named {name!r}")
                   for name in values if obj.field(name) is None]
    return errors
