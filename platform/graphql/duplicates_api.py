"""The duplicates API: the likely duplicates of a record, or of values about to be saved, by the
object's active duplicate rules (``lowcode.runtime.duplicates``), best first.

A match the caller may not read comes back without its id and values (``recordId`` and
``record`` null, ``visible`` false), but with its owner: "a duplicate exists and is owned by ann".
Duplicate rules themselves are automations (``createAutomation`` with kind ``duplicate_rule``);
a write they refuse answers ``VALIDATION_FAILED`` with a ``DUPLICATE`` or ``POSSIBLE_DUPLICATE``
problem, the latter passed by the ``acknowledge`` argument of the record mutations.
"""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import graphene

from ..runtime.duplicates.service import duplicate_matches
from .scalars import JSON


class DuplicateMatch(graphene.ObjectType):
    record_id = graphene.ID(description="The matching record; null when you may not read it.")
    visible = graphene.Boolean(required=True, description="Whether you may read the matching record.")
    owner_id = graphene.ID(description="Who owns the matching record; null: nobody (a pooled record).")
    owner_name = graphene.String(description="The owner's full name, or username.")
    rule = graphene.String(required=True, description="The duplicate rule that matched.")
    score = graphene.Float(required=True, description="1 for equal values; fuzzy fields count their similarity.")
    fields = graphene.List(graphene.NonNull(graphene.String), required=True, description="The fields compared.")
    record = JSON(description="The fields of the matching record you may read; null when you may not read it.")

    @staticmethod
    def resolve_owner_id(match, _info):
        return match["owner"]["id"]

    @staticmethod
    def resolve_owner_name(match, _info):
        return match["owner"]["name"]

    @staticmethod
    def resolve_record(match, _info):
        return _plain(match["record"])


def _plain(value: Any) -> Any:
    """A record's values as JSON: instants and days in ISO 8601, exact numbers as text."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


class DuplicatesQuery(graphene.ObjectType):
    duplicates = graphene.List(
        graphene.NonNull(DuplicateMatch), required=True, object=graphene.String(required=True),
        id=graphene.ID(description="A record you may read."),
        values=JSON(description="Values over the record's, or of a record about to be created (without id)."),
        first=graphene.Int(default_value=20, description="1 to 100."),
        description="The likely duplicates of a record or of values, by the object's active duplicate rules, best first.")

    @staticmethod
    def resolve_duplicates(_root, info, object, id=None, values=None, first=20):
        context = info.context
        return duplicate_matches(context.records, context.catalog, context.actor, object, id, values, first)
