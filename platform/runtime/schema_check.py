"""A fast yes/no check of a value against the JSON Schemas this platform generates.

jsonschema walks a schema keyword by keyword and costs about 17 µs per property; a bulk insert
would spend most of its time there. This module compiles the same schema, once per Catalog version,
into plain Python closures that answer only "valid or not". Valid input (the common case) is done;
invalid input is handed to jsonschema, which remains the reference and words every error. Only the
keywords the platform generates are compiled; any other keyword makes :func:`compile_check`
return ``None`` and jsonschema checks every value. Where an answer is not certain, the check says "invalid" so that jsonschema decides.
"""
from __future__ import annotations

import re
from typing import Any, Callable

Check = Callable[[Any], bool]

_ANNOTATIONS = {"$schema", "title", "description", "format", "$comment", "examples", "default"}
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_NUMBER = _TYPES["number"]


class Unsupported(Exception):
    pass


def compile_check(schema: dict[str, Any]) -> Check | None:
    """A predicate equivalent to ``jsonschema`` validity for ``schema``, or ``None`` if not compilable."""
    try:
        return _compile(schema)
    except Unsupported:
        return None


def _compile(schema: dict[str, Any]) -> Check:
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "enum", "anyOf", "maxLength", "minLength", "pattern", "minimum", "maximum",
        "items", "uniqueItems", "maxItems", "properties", "required", "additionalProperties",
    }
    if unknown:
        raise Unsupported(", ".join(sorted(unknown)))
    checks: list[Check] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        tests = [_TYPES[k] for k in kinds]
        checks.append(lambda v: any(t(v) for t in tests))
    if "enum" in schema:
        allowed = [(type(e), e) for e in schema["enum"]]
        checks.append(lambda v: any(type(v) is t and v == e for t, e in allowed))
    if "anyOf" in schema:
        options = [_compile(s) for s in schema["anyOf"]]
        checks.append(lambda v: any(o(v) for o in options))
    if "maxLength" in schema:
        most = schema["maxLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) <= most)
    if "minLength" in schema:
        least = schema["minLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) >= least)
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    if "minimum" in schema:
        low = schema["minimum"]
        checks.append(lambda v: not _NUMBER(v) or v >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        checks.append(lambda v: not _NUMBER(v) or v <= high)
    if "items" in schema:
        item = _compile(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(i) for i in v))
    if schema.get("uniqueItems"):
        checks.append(_unique_items)
    if "maxItems" in schema:
        most_items = schema["maxItems"]
        checks.append(lambda v: not isinstance(v, list) or len(v) <= most_items)
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        checks.append(_object_check(schema))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


def _unique_items(value: Any) -> bool:
    """Strings only; anything else answers "not sure" (False) and jsonschema decides."""
    if not isinstance(value, list):
        return True
    return all(isinstance(i, str) for i in value) and len(set(value)) == len(value)


def _object_check(schema: dict[str, Any]) -> Check:
    properties = {name: _compile(sub) for name, sub in schema.get("properties", {}).items()}
    required = list(schema.get("required", []))
    additional = schema.get("additionalProperties", True)
    if additional not in (True, False):
        raise Unsupported("additionalProperties schema")
    closed = additional is False

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            test = properties.get(name)
            if test is None:
                if closed:
                    return False
            elif not test(item):
                return False
        return True

    return check
