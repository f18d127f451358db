from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..names import API_NAME
from .lookup import Lookup


class MasterDetailOptions(Schema):
    target = fields.String(required=True, validate=validate.Regexp(API_NAME, error="must name an object"))
    relationship_name = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(API_NAME))


class MasterDetail(Lookup):
    """A detail's required link to its master: deleting the master deletes (and restores) its details."""

    name = "master_detail"
    options_schema = MasterDetailOptions
    safe_changes_from = frozenset({"master_detail"})

    def on_delete_sql(self, field) -> str:
        return "CASCADE"
