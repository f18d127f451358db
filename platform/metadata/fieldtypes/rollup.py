from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .derived import DerivedField

FUNCTIONS = ("count", "sum", "min", "max")


class RollupOptions(Schema):
    child_object = fields.String(required=True)
    relationship_field = fields.String(load_default=None, allow_none=True)
    """The child's master-detail field pointing here; may be left out when the child has one."""
    function = fields.String(required=True, validate=validate.OneOf(FUNCTIONS, error="must be one of: {choices}"))
    aggregate_field = fields.String(load_default=None, allow_none=True)
    filter = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 4000))
    """A CEL condition over the child record (``record.stage == 'won'``); only children meeting it count."""
    result_type = fields.String(load_default=None, allow_none=True)
    """Derived when the field is saved: the type of the summary (count: integer; sum, min, max: the field's)."""
    scale = fields.Integer(load_default=None, allow_none=True)

    @validates_schema
    def _field_fits_function(self, data, **kwargs):
        if data.get("function") == "count" and data.get("aggregate_field"):
            raise ValidationError("count counts children; leave aggregate_field out", "aggregate_field")
        if data.get("function") in ("sum", "min", "max") and not data.get("aggregate_field"):
            raise ValidationError(f"{data['function']} needs the child field to aggregate", "aggregate_field")


class Rollup(DerivedField):
    """A summary of a master's detail records (count, sum, min or max, optionally of those meeting a
    filter), stored on the master and recomputed in the transaction of every child write."""

    name = "rollup"
    options_schema = RollupOptions
    safe_changes_from = frozenset({"rollup"})

    def result_name(self, field) -> str:
        return field.options.get("result_type") or "integer"

    def change_problem(self, old, new):
        if old.type != new.type:
            return "a field cannot become a roll-up (or stop being one); add a new field instead"
        settled = new.options.get("result_type") is not None
        if settled and (old.options.get("result_type"), old.options.get("scale")) != (new.options.get("result_type"), new.options.get("scale")):
            return "this change would change the type of the summary; add a new roll-up field instead"
        return None
