"""The registry of field types: one class per type, one instance per name."""
from __future__ import annotations

from .auto_number import AutoNumber
from .base import FieldType, ValueProblem
from .boolean import Boolean
from .currency import Currency
from .date import Date
from .datetime_ import DateTime
from .decimal_ import Decimal
from .email import Email
from .formula import Formula
from .geolocation import Geolocation
from .integer import Integer
from .json_ import Json
from .lookup import Lookup
from .master_detail import MasterDetail
from .multi_picklist import MultiPicklist
from .percent import Percent
from .phone import Phone
from .picklist import Picklist
from .rollup import Rollup
from .text import Text
from .textarea import TextArea
from .url import Url


class FieldTypeRegistry:
    """Field types by name. Registering a second type under a taken name is refused."""

    def __init__(self) -> None:
        self._types: dict[str, FieldType] = {}

    def register(self, field_type: type[FieldType]) -> type[FieldType]:
        if field_type.name in self._types:
            raise ValueError(f"a field type named {field_type.name!r} is already registered ({type(self._types[field_type.name]).__name__})")
        self._types[field_type.name] = field_type()
        return field_type

    def get(self, name: str) -> FieldType:
        return self._types[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return list(self._types)


registry = FieldTypeRegistry()
for _type in (Text, TextArea, Integer, Decimal, Currency, Percent, Boolean, Date, DateTime, Email, Phone, Url,
              Picklist, MultiPicklist, Lookup, MasterDetail, AutoNumber, Geolocation, Json, Formula, Rollup):
    registry.register(_type)

__all__ = ["FieldType", "FieldTypeRegistry", "ValueProblem", "registry"]
