from __future__ import annotations

from abc import abstractmethod

from .base import FieldType

DECIMAL_RESULTS = ("decimal", "currency", "percent")


class DerivedField(FieldType):
    """A value the platform computes (formulas, roll-ups): typed, filtered and shown as its result
    type, named by ``result_name``."""

    writable = False

    @abstractmethod
    def result_name(self, field) -> str:
        """The field type of the values (``integer`` for a count...)."""

    def result(self, field) -> FieldType:
        from . import registry

        return registry.get(self.result_name(field))

    def value_field(self, field):
        from ..definitions import FieldDef, freeze

        result = self.result_name(field)
        scale = field.options.get("scale")
        options = {"scale": scale, "precision": 18} if result in DECIMAL_RESULTS and scale is not None else {}
        loaded = self.result(field).options_schema().load(options)
        return FieldDef(field.api_name, field.label, result, options=freeze(loaded))

    def sql_type(self, field):
        return self.result(field).sql_type(field.value)

    def json_schema(self, field):
        return self.result(field).json_schema(field.value)

    def coercer(self, field):
        return self.result(field).coercer(field.value)

    def dump(self, field, value):
        return self.result(field).dump(field.value, value)

    def operators_for(self, field):
        return self.result(field).operators

    def scalar_for(self, field):
        return self.result(field).graphql_scalar

    def filter_clause(self, field, column, op, value):
        return self.result(field).filter_clause(field.value, column, op, value)

    def filter_value_schema(self, field, op):
        return self.result(field).filter_value_schema(field.value, op)
