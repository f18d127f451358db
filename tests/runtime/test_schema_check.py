"""The compiled schema check never accepts what jsonschema rejects (it may only defer to it)."""
import math

import pytest
from jsonschema import Draft202012Validator
from lowcode.metadata.definitions import FieldDef, ObjectDef, freeze
from lowcode.metadata.fieldtypes import registry
from lowcode.metadata.schemas import FieldSchema
from lowcode.runtime.schema_check import compile_check
from lowcode.runtime.validation import record_schema

OPTIONS = {
    "picklist": {"values": [{"api_name": "a", "label": "A"}, {"api_name": "b", "label": "B", "active": False}]},
    "multi_picklist": {"values": [{"api_name": "a", "label": "A"}, {"api_name": "b", "label": "B"}]},
    "lookup": {"target": "thing"},
    "master_detail": {"target": "thing"},
    "text": {"max_length": 5, "pattern": "^[a-z]*$"},
    "integer": {"min": -3, "max": 3},
    "decimal": {"precision": 6, "scale": 2},
}
CORPUS = [
    None, True, False, 0, 1, -1, 3, 4, -4, 1.0, 1.5, 2**40, math.nan, math.inf, -math.inf, "", "a", "abc",
    "abcdef", "ABC", "12.50", "1e3", "2026-02-30", "2026-01-02", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05",
    "x@y.zz", "x@y", "+86 138 0000 0000", "https://example.com", "ftp://x", "0e8d5b8c-9f0e-4d6b-8a57-1b2c3d4e5f60",
    "not-a-uuid", [], ["a"], ["a", "a"], ["a", "b"], ["b"], ["zzz"], [1], [None], {}, {"latitude": 1, "longitude": 2},
    {"latitude": 91, "longitude": 0}, {"latitude": 1}, {"latitude": 1, "longitude": 2, "x": 3}, {"latitude": True, "longitude": 0},
    {"a": [1, {"b": None}]},
]


def schemas():
    for type_name in registry.names():
        if not registry.get(type_name).writable:
            continue
        data = FieldSchema().load({"api_name": "f", "label": "F", "type": type_name, "options": OPTIONS.get(type_name, {})})
        for required in (False, True):
            field = FieldDef("f", "F", type_name, required=required, options=freeze(data["options"]))
            obj = ObjectDef("thing", "Thing", "things", "Things", fields=(field,))
            yield pytest.param(record_schema(obj, creating=True), id=f"{type_name}-{'required' if required else 'optional'}")


@pytest.mark.parametrize("schema", schemas())
def test_compiled_check_is_sound_for_every_field_type(schema):
    fast = compile_check(schema)
    reference = Draft202012Validator(schema)
    assert fast is not None, "every schema the platform generates compiles"
    accepted_by_both = 0
    for value in CORPUS:
        for record in ({"f": value}, {"f": value, "unknown": 1}, {}, {"owner_id": value}):
            if fast(record):
                assert reference.is_valid(record), f"compiled check accepted {record!r}, jsonschema rejects it"
                accepted_by_both += 1
    assert accepted_by_both > 0


def test_unknown_keywords_are_left_to_jsonschema():
    assert compile_check({"type": "object", "dependentRequired": {"a": ["b"]}}) is None
    assert compile_check({"type": "string", "maxLength": 2}) is not None
