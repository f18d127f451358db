"""The field type contract: one shared suite that every registered field type runs.

Like SQLAlchemy's dialect suite, the tests below are written once and parametrized over
``registry.names()`` x {SQLite, PostgreSQL}; what differs per type lives in the ``CONTRACTS`` table:

* ``options`` / ``extra``: the field definition used (``extra`` adds unique / indexed flags);
* ``records``: exactly four sample records as (input, value expected back); record ``i`` of every
  type is record ``i`` of the all-types object, so filter expectations are shared;
* ``more``: further valid (input, expected) pairs, round trip and JSON Schema only;
* ``invalid``: (input, error code, sub-path after the field name, the published JSON Schema
  rejects it too) -- e.g. ``("2023-02-29", "INVALID_FORMAT", "", False)``: only the server sees it;
* ``filters``: ({operator: value}, indices of the sample records that match);
* ``safe``: (``update_field`` changes, a probe input valid afterwards or NO_PROBE, its value back);
* ``unsafe``: ``update_field`` changes that must be refused with ``UnsafeChange``.

``Ref(i)`` stands for the id of sample ``peer`` record ``i`` (lookup targets), ``OMIT`` for "field
not given" (auto numbers). Registering a new type without adding a contract entry fails
``test_every_registered_type_has_a_contract`` (computed types, ``DERIVED``, have suites of their own); column types expected in the database are listed in
``expected_columns``. Python orders the expected values the way the databases must (values are
chosen so that byte order and linguistic collations agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator
from lowcode.metadata.actors import SYSTEM_ACTOR as A
from lowcode.metadata.errors import UnsafeChange, ValidationFailed
from lowcode.metadata.fieldtypes import registry

OBJ, PEER = "thing", "peer"
ALL_OPERATORS = {"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "contains", "starts_with", "is_null", "within_box", "within_radius"}
ALWAYS_INDEXED, ALWAYS_UNIQUE = {"lookup", "master_detail", "auto_number"}, {"auto_number"}
OMIT = type("Omit", (), {"__repr__": lambda self: "OMIT"})()
NO_PROBE = (None, None)
MISSING_ID = "00000000-0000-4000-8000-000000000000"
UTC = timezone.utc


@dataclass(frozen=True)
class Ref:
    """The id of sample peer ``index``; ``raw``: spelled upper case without hyphens."""

    index: int
    raw: bool = False


@dataclass
class Contract:
    options: dict
    records: list[tuple[Any, Any]]
    invalid: list[tuple[Any, str, str, bool]]
    filters: list[tuple[dict, set[int]]]
    safe: list[tuple[dict, Any, Any]]
    unsafe: list[dict]
    more: list[tuple[Any, Any]] = dc_field(default_factory=list)
    extra: dict = dc_field(default_factory=dict)


def ordered_filters(pivot, below, at, above, null: set[int], listed: list, listed_idx: set[int]) -> list[tuple[dict, set[int]]]:
    """eq/ne/in/not_in/lt/lte/gt/gte/is_null around ``pivot`` (the value of record ``at``)."""
    everyone = below | {at} | above | null
    return [
        ({"eq": pivot}, {at}), ({"ne": pivot}, everyone - {at}), ({"in": listed}, listed_idx),
        ({"not_in": [pivot]}, everyone - {at}), ({"lt": pivot}, below), ({"lte": pivot}, below | {at}),
        ({"gt": pivot}, above), ({"gte": pivot}, above | {at}), ({"is_null": True}, null), ({"is_null": False}, everyone - null),
    ]


LEVELS = [{"api_name": "low", "label": "Low"}, {"api_name": "mid", "label": "Mid"}, {"api_name": "top", "label": "Top"},
          {"api_name": "old", "label": "Old", "active": False}]
COLORS = [{"api_name": "red", "label": "Red"}, {"api_name": "green", "label": "Green"}, {"api_name": "blue", "label": "Blue"},
          {"api_name": "grey", "label": "Grey", "active": False}]
PIVOT_AT = "2026-03-01T01:30:00Z"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


CONTRACTS: dict[str, Contract] = {
    "text": Contract(
        options={"max_length": 10}, extra={"unique": True},
        records=[("alpha", "alpha"), ("beta", "beta"), ("gam_ma", "gam_ma"), (None, None)],
        more=[("ünïcode ✓", "ünïcode ✓"), ("x" * 10, "x" * 10)],
        invalid=[("x" * 11, "TOO_LONG", "", True), (42, "INVALID_TYPE", "", True), ("alpha", "DUPLICATE_VALUE", "", False)],
        filters=ordered_filters("beta", {0}, 1, {2}, {3}, ["alpha", "gam_ma"], {0, 2})
        + [({"contains": "ALP"}, {0}), ({"contains": "_"}, {2}), ({"starts_with": "Be"}, {1})],
        safe=[({"options": {"max_length": 20}}, "x" * 20, "x" * 20), ({"type": "textarea", "options": {"max_length": 30}}, "y" * 25, "y" * 25)],
        unsafe=[{"options": {"max_length": 5}}, {"type": "integer"}],
    ),
    "textarea": Contract(
        options={"max_length": 20},
        records=[("alpha\nbeta", "alpha\nbeta"), ("gamma", "gamma"), ("delta 50%", "delta 50%"), (None, None)],
        more=[("line\r\n\ttab", "line\r\n\ttab"), ("z" * 20, "z" * 20)],
        invalid=[("z" * 21, "TOO_LONG", "", True), (["a"], "INVALID_TYPE", "", True)],
        filters=[({"eq": "gamma"}, {1}), ({"ne": "gamma"}, {0, 2, 3}), ({"in": ["gamma", "delta 50%"]}, {1, 2}),
                 ({"not_in": ["gamma"]}, {0, 2, 3}), ({"contains": "BETA"}, {0}), ({"contains": "%"}, {2}),
                 ({"starts_with": "DEL"}, {2}), ({"is_null": True}, {3}), ({"is_null": False}, {0, 1, 2})],
        safe=[({"options": {"max_length": 100}}, "q" * 50, "q" * 50)],
        unsafe=[{"options": {"max_length": 5}}, {"type": "text"}],
    ),
    "integer": Contract(
        options={"min": -100, "max": 1000}, extra={"indexed": True},
        records=[(42, 42), (-5, -5), (0, 0), (None, None)],
        more=[(1000, 1000), (-100, -100), (7.0, 7)],
        invalid=[(1001, "OUT_OF_RANGE", "", True), (-101, "OUT_OF_RANGE", "", True), (1.5, "INVALID_TYPE", "", True),
                 ("12", "INVALID_TYPE", "", True), (True, "INVALID_TYPE", "", True)],
        filters=ordered_filters(0, {1}, 2, {0}, {3}, [42, -5], {0, 1}),
        safe=[({"options": {"min": -100, "max": 5000}}, 4000, 4000),
              ({"type": "decimal", "options": {"precision": 12, "scale": 2}}, "0.25", D("0.25"))],
        unsafe=[{"type": "text"}, {"type": "decimal", "options": {"precision": 8, "scale": 2}}],
    ),
    "decimal": Contract(
        options={"precision": 8, "scale": 2},
        records=[("12.50", D("12.50")), (3, D("3.00")), (-0.5, D("-0.50")), (None, None)],
        more=[("999999.99", D("999999.99")), ("-999999.99", D("-999999.99")), (".5", D("0.50")), ("+7.", D("7.00")), (100.0, D("100.00"))],
        invalid=[("1.234", "TOO_PRECISE", "", False), ("1000000", "OUT_OF_RANGE", "", False), ("abc", "INVALID_FORMAT", "", True),
                 (True, "INVALID_TYPE", "", True), (float("inf"), "INVALID_TYPE", "", False)],
        filters=ordered_filters("3", {2}, 1, {0}, {3}, ["12.5", -0.5], {0, 2}),
        safe=[({"options": {"precision": 10, "scale": 3}}, "1234567.125", D("1234567.125"))],
        unsafe=[{"options": {"precision": 8, "scale": 1}}, {"options": {"precision": 6, "scale": 2}}, {"type": "integer"}],
    ),
    "currency": Contract(
        options={},
        records=[("1999.99", D("1999.99")), (0, D("0.00")), ("-10.5", D("-10.50")), (None, None)],
        more=[("9999999999999999.99", D("9999999999999999.99"))],  # the largest 18,2 amount
        invalid=[("0.001", "TOO_PRECISE", "", False), ("10000000000000000", "OUT_OF_RANGE", "", False), ("12,50", "INVALID_FORMAT", "", True)],
        filters=ordered_filters(0, {2}, 1, {0}, {3}, ["-10.50", 1999.99], {0, 2}),
        safe=[({"type": "decimal", "options": {"precision": 18, "scale": 2}}, "5.55", D("5.55"))],
        unsafe=[{"options": {"precision": 18, "scale": 0}}, {"type": "integer"}],
    ),
    "percent": Contract(
        options={},
        records=[(12.5, D("12.50")), ("100", D("100.00")), ("-3.25", D("-3.25")), (None, None)],
        more=[("999.99", D("999.99"))],
        invalid=[("1000", "OUT_OF_RANGE", "", False), ("0.125", "TOO_PRECISE", "", False), ([], "INVALID_TYPE", "", True)],
        filters=ordered_filters(12.5, {2}, 0, {1}, {3}, ["100", "-3.25"], {1, 2}),
        safe=[({"options": {"precision": 7, "scale": 3}}, "1234.125", D("1234.125"))],
        unsafe=[{"options": {"precision": 4, "scale": 2}}, {"type": "text"}],
    ),
    "boolean": Contract(
        options={},
        records=[(True, True), (False, False), (None, None), (True, True)],
        invalid=[("true", "INVALID_TYPE", "", True), (1, "INVALID_TYPE", "", True)],
        filters=[({"eq": True}, {0, 3}), ({"eq": False}, {1}), ({"eq": None}, {2}), ({"ne": True}, {1, 2}),
                 ({"ne": False}, {0, 2, 3}), ({"is_null": True}, {2}), ({"is_null": False}, {0, 1, 3})],
        safe=[({"indexed": True}, *NO_PROBE)],
        unsafe=[{"type": "integer"}, {"type": "text"}],
    ),
    "date": Contract(
        options={}, extra={"indexed": True},
        records=[("2024-02-29", date(2024, 2, 29)), ("1999-12-31", date(1999, 12, 31)), ("2026-01-01", date(2026, 1, 1)), (None, None)],
        more=[("0001-01-01", date(1, 1, 1)), ("9999-12-31", date(9999, 12, 31))],
        invalid=[("2023-02-29", "INVALID_FORMAT", "", False), ("31/12/1999", "INVALID_FORMAT", "", True),
                 ("2024-02-29T10:00:00Z", "INVALID_FORMAT", "", True), (20240229, "INVALID_TYPE", "", True)],
        filters=ordered_filters("2024-02-29", {1}, 0, {2}, {3}, ["1999-12-31", "2026-01-01"], {1, 2}),
        safe=[({"indexed": False, "label": "Day"}, *NO_PROBE)],
        unsafe=[{"type": "datetime"}, {"type": "text"}],
    ),
    "datetime": Contract(
        options={},
        records=[("2026-03-01T09:30:00+08:00", utc(2026, 3, 1, 1, 30)), ("1999-12-31T23:59:59.5Z", utc(1999, 12, 31, 23, 59, 59, 500000)),
                 ("2026-03-01t01:30:01-00:30", utc(2026, 3, 1, 2, 0, 1)), (None, None)],
        more=[("2024-02-29T23:59:59+14:00", utc(2024, 2, 29, 9, 59, 59)), ("2026-03-01 01:30:01+0000", utc(2026, 3, 1, 1, 30, 1))],
        invalid=[("2026-03-01T09:30:00", "INVALID_FORMAT", "", True), ("2026-13-01T00:00:00Z", "INVALID_FORMAT", "", False),
                 ("2026-03-01", "INVALID_FORMAT", "", True), (1700000000, "INVALID_TYPE", "", True)],
        filters=ordered_filters(PIVOT_AT, {1}, 0, {2}, {3}, ["1999-12-31T23:59:59.500Z", "2026-03-01T02:00:01+00:00"], {1, 2}),
        safe=[({"tracked": True, "help_text": "when"}, *NO_PROBE)],
        unsafe=[{"type": "date"}, {"type": "text"}],
    ),
    "email": Contract(
        options={}, extra={"unique": True},
        records=[("Ann@Example.COM", "Ann@example.com"), ("bob@x.org", "bob@x.org"), ("carl.d@mail.example.net", "carl.d@mail.example.net"), (None, None)],
        invalid=[("not-an-email", "INVALID_FORMAT", "", True), ("a@b", "INVALID_FORMAT", "", True), ("a b@c.de", "INVALID_FORMAT", "", True),
                 ("x" * 250 + "@a.bc", "TOO_LONG", "", True), ("Ann@EXAMPLE.com", "DUPLICATE_VALUE", "", False)],
        filters=ordered_filters("bob@x.org", {0}, 1, {2}, {3}, ["Ann@EXAMPLE.COM", "bob@X.ORG"], {0, 1})
        + [({"contains": "EXAMPLE"}, {0, 2}), ({"starts_with": "ann@"}, {0})],
        safe=[({"type": "text", "options": {"max_length": 254}}, "plain text", "plain text")],
        unsafe=[{"type": "text", "options": {"max_length": 100}}, {"type": "url"}],
    ),
    "phone": Contract(
        options={},
        records=[("+1 (555) 123-4567", "+1 (555) 123-4567"), ("+44 20 7946 0958", "+44 20 7946 0958"), ("555.0100", "555.0100"), (None, None)],
        invalid=[("abc", "INVALID_FORMAT", "", True), ("+", "INVALID_FORMAT", "", True), ("1" * 41, "TOO_LONG", "", True),
                 (5551234, "INVALID_TYPE", "", True)],
        filters=ordered_filters("+44 20 7946 0958", {0}, 1, {2}, {3}, ["+1 (555) 123-4567", "555.0100"], {0, 2})
        + [({"contains": "(555)"}, {0}), ({"starts_with": "+4"}, {1})],
        safe=[({"type": "text", "options": {"max_length": 40}}, "call me", "call me")],
        unsafe=[{"type": "text", "options": {"max_length": 12}}, {"type": "integer"}],
    ),
    "url": Contract(
        options={},
        records=[("https://example.com/a?b=1", "https://example.com/a?b=1"), ("http://localhost:8080", "http://localhost:8080"),
                 ("https://example.org/path", "https://example.org/path"), (None, None)],
        invalid=[("ftp://example.com", "INVALID_FORMAT", "", True), ("example.com", "INVALID_FORMAT", "", True),
                 ("https://" + "a" * 2041, "TOO_LONG", "", True), (["https://x.org"], "INVALID_TYPE", "", True)],
        filters=ordered_filters("https://example.com/a?b=1", {1}, 0, {2}, {3}, ["http://localhost:8080"], {1})
        + [({"contains": "EXAMPLE"}, {0, 2}), ({"starts_with": "https://"}, {0, 2})],
        safe=[({"type": "text", "options": {"max_length": 2048}}, "not a url", "not a url")],
        unsafe=[{"type": "text", "options": {"max_length": 255}}, {"type": "email"}],
    ),
    "picklist": Contract(
        options={"values": LEVELS},
        records=[("mid", "mid"), ("low", "low"), ("top", "top"), (None, None)],
        invalid=[("old", "INVALID_CHOICE", "", True), ("huge", "INVALID_CHOICE", "", True), ("LOW", "INVALID_CHOICE", "", True),
                 (3, "INVALID_TYPE", "", True)],
        filters=[({"eq": "mid"}, {0}), ({"eq": "old"}, set()), ({"ne": "mid"}, {1, 2, 3}), ({"in": ["low", "top"]}, {1, 2}),
                 ({"not_in": ["low"]}, {0, 2, 3}), ({"is_null": True}, {3}), ({"is_null": False}, {0, 1, 2})],
        safe=[({"options": {"values": [*LEVELS, {"api_name": "max", "label": "Max"}]}}, "max", "max"),
              ({"type": "text", "options": {"max_length": 255}}, "free text", "free text")],
        unsafe=[{"options": {"values": [v for v in LEVELS if v["api_name"] != "top"]}}, {"type": "multi_picklist", "options": {"values": LEVELS}}],
    ),
    "multi_picklist": Contract(
        options={"values": COLORS},
        records=[(["red"], ["red"]), (["blue", "red"], ["red", "blue"]), (["green", "blue", "red"], ["red", "green", "blue"]), (None, None)],
        more=[([], None)],  # an empty selection is stored as null
        invalid=[(["red", "purple"], "INVALID_CHOICE", ".1", True), (["grey"], "INVALID_CHOICE", ".0", True),
                 (["red", "red"], "DUPLICATE_VALUES", "", True), ("red", "INVALID_TYPE", "", True), ([1], "INVALID_TYPE", ".0", True)],
        filters=[({"contains": "red"}, {0, 1, 2}), ({"contains": "green"}, {2}), ({"contains": "grey"}, set()), ({"eq": ["red"]}, {0}),
                 ({"eq": ["blue", "red"]}, {1}), ({"eq": ["red", "blue"]}, {1}), ({"eq": []}, {3}), ({"is_null": True}, {3}),
                 ({"is_null": False}, {0, 1, 2})],
        safe=[({"options": {"values": [*COLORS, {"api_name": "pink", "label": "Pink"}]}}, ["pink", "red"], ["red", "pink"])],
        unsafe=[{"options": {"values": COLORS[1:]}}, {"type": "picklist", "options": {"values": COLORS}}],
    ),
    "lookup": Contract(
        options={"target": PEER, "on_delete": "restrict"},
        records=[(Ref(2), Ref(2)), (Ref(0), Ref(0)), (None, None), (Ref(1), Ref(1))],
        more=[(Ref(1, raw=True), Ref(1))],
        invalid=[("not-a-uuid", "INVALID_FORMAT", "", True), (MISSING_ID, "INVALID_REFERENCE", "", False), (5, "INVALID_TYPE", "", True)],
        filters=[({"eq": Ref(0)}, {1}), ({"eq": Ref(1, raw=True)}, {3}), ({"ne": Ref(0)}, {0, 2, 3}), ({"in": [Ref(2), Ref(1)]}, {0, 3}),
                 ({"not_in": [Ref(2)]}, {1, 2, 3}), ({"is_null": True}, {2}), ({"is_null": False}, {0, 1, 3}),
                 ({"name": {"eq": "p1"}}, {3})],
        safe=[({"options": {"target": PEER, "on_delete": "set_null"}}, *NO_PROBE)],
        unsafe=[{"options": {"target": "user"}}, {"type": "text"}],
    ),
    "master_detail": Contract(
        options={"target": PEER},
        records=[(Ref(1), Ref(1)), (Ref(0), Ref(0)), (Ref(1), Ref(1)), (Ref(3), Ref(3))],
        invalid=[(None, "REQUIRED", "", True), (OMIT, "REQUIRED", "", True), (MISSING_ID, "INVALID_REFERENCE", "", False),
                 ("x", "INVALID_FORMAT", "", True)],
        filters=[({"eq": Ref(1)}, {0, 2}), ({"ne": Ref(1)}, {1, 3}), ({"in": [Ref(0), Ref(3)]}, {1, 3}), ({"not_in": [Ref(1)]}, {1, 3}),
                 ({"is_null": True}, set()), ({"is_null": False}, {0, 1, 2, 3}), ({"name": {"in": ["p0", "p3"]}}, {1, 3})],
        safe=[({"options": {"target": PEER, "relationship_name": "things"}}, *NO_PROBE)],
        unsafe=[{"type": "lookup", "options": {"target": PEER}}, {"options": {"target": "user"}}],
    ),
    "auto_number": Contract(
        options={"format": "N-{0000}", "start": 7},
        records=[(OMIT, "N-0007"), (OMIT, "N-0008"), (OMIT, "N-0009"), (OMIT, "N-0010")],
        invalid=[("N-0001", "READ_ONLY", "", True), (None, "READ_ONLY", "", True)],
        filters=ordered_filters("N-0008", {0}, 1, {2, 3}, set(), ["N-0007", "N-0010"], {0, 3})
        + [({"contains": "10"}, {3}), ({"starts_with": "n-000"}, {0, 1, 2})],
        safe=[({"options": {"format": "M-{00000}", "start": 7}}, OMIT, "M-00011"),
              ({"type": "text", "options": {"max_length": 64}}, "typed", "typed")],
        unsafe=[{"type": "integer"}, {"type": "text", "options": {"max_length": 5}}],
    ),
    "geolocation": Contract(
        options={},
        records=[({"latitude": 52.52, "longitude": 13.405}, {"latitude": 52.52, "longitude": 13.405}),
                 ({"latitude": -33.8688, "longitude": 151.2093}, {"latitude": -33.8688, "longitude": 151.2093}),
                 (None, None), ({"latitude": 0, "longitude": 0}, {"latitude": 0.0, "longitude": 0.0})],
        more=[({"latitude": 90, "longitude": -180}, {"latitude": 90.0, "longitude": -180.0})],
        invalid=[({"latitude": 91, "longitude": 0}, "OUT_OF_RANGE", ".latitude", True),
                 ({"latitude": 0, "longitude": 180.5}, "OUT_OF_RANGE", ".longitude", True),
                 ({"latitude": 1, "longitude": "east"}, "INVALID_TYPE", ".longitude", True),
                 ({"latitude": 1}, "REQUIRED", "", True), ({"latitude": 1, "longitude": 2, "alt": 3}, "UNKNOWN_FIELD", "", True),
                 ([52.5, 13.4], "INVALID_TYPE", "", True), ({"latitude": float("nan"), "longitude": 0}, "OUT_OF_RANGE", ".latitude", False)],
        filters=[({"is_null": True}, {2}), ({"is_null": False}, {0, 1, 3}),
                 ({"within_box": {"south": 50, "west": 10, "north": 55, "east": 15}}, {0}),
                 ({"within_box": {"south": -40, "west": 150, "north": 1, "east": 10}}, {1, 3}),  # across the antimeridian
                 ({"within_radius": {"latitude": 52.5, "longitude": 13.4, "meters": 5000}}, {0}),
                 ({"within_radius": {"latitude": 0, "longitude": 0, "meters": 0}}, {3})],
        safe=[({"indexed": True}, *NO_PROBE)],
        unsafe=[{"type": "json"}, {"type": "text"}],
    ),
    "json": Contract(
        options={},
        records=[({"a": [1, {"b": None}], "ü": "✓"}, {"a": [1, {"b": None}], "ü": "✓"}), ([1, "two", 3.5, False], [1, "two", 3.5, False]),
                 (None, None), (0, 0)],
        more=[("plain", "plain"), (False, False), ({}, {}), ([], []), (1.5, 1.5), (12345678901234567890, 12345678901234567890)],
        invalid=[(float("nan"), "INVALID_TYPE", "", False), ({"x": [float("inf")]}, "INVALID_TYPE", ".x.0", False)],
        filters=[({"is_null": True}, {2}), ({"is_null": False}, {0, 1, 3})],
        safe=[({"label": "Document", "help_text": "any JSON"}, *NO_PROBE)],
        unsafe=[{"type": "text"}, {"type": "textarea"}],
    ),
}


def expected_columns(field, pg: bool) -> dict[str, str]:
    """The column(s) a field must have, as the dialect compiles their reflected types."""
    name, options = field.api_name, field.options
    if field.type == "geolocation":
        kind = "DOUBLE PRECISION" if pg else "FLOAT"
        return {f"{name}__lat": kind, f"{name}__lng": kind}
    # SQLite has no exact decimal: the platform stores integer units of the scale there.
    numeric = f"NUMERIC({options.get('precision')}, {options.get('scale')})" if pg else "BIGINT"
    return {name: {
        "text": f"VARCHAR({options.get('max_length')})", "textarea": "TEXT", "integer": "INTEGER", "decimal": numeric,
        "currency": numeric, "percent": numeric, "boolean": "BOOLEAN", "date": "DATE",
        "datetime": "TIMESTAMP WITH TIME ZONE" if pg else "DATETIME", "email": "VARCHAR(254)", "phone": "VARCHAR(40)",
        "url": "VARCHAR(2048)", "picklist": "VARCHAR(255)", "multi_picklist": "TEXT", "lookup": "UUID" if pg else "CHAR(32)",
        "master_detail": "UUID" if pg else "CHAR(32)", "auto_number": "VARCHAR(64)", "json": "JSONB" if pg else "TEXT",
    }[field.type]}


# -- helpers -------------------------------------------------------------------------------------
def fname(type_name: str) -> str:
    return f"f_{type_name}"


def field_definition(type_name: str) -> dict:
    spec = CONTRACTS[type_name]
    return {"api_name": fname(type_name), "label": type_name.replace("_", " ").title(), "type": type_name,
            "options": spec.options, **spec.extra}


def install(rt, types: list[str], obj: str = OBJ) -> list[str]:
    """The ``peer`` object with records p0..p3 (lookup targets), and ``obj`` with one field per type."""
    rt.metadata.create_object(A, {"api_name": PEER, "label": "Peer", "fields": [{"api_name": "name", "label": "Name", "type": "text"}]})
    peers = [rt.records.create(A, PEER, {"name": f"p{i}"})["id"] for i in range(4)]
    rt.metadata.create_object(A, {"api_name": obj, "label": "Thing", "fields": [field_definition(t) for t in types]})
    return peers


def resolve(value, peers):
    if isinstance(value, Ref):
        return peers[value.index].replace("-", "").upper() if value.raw else peers[value.index]
    if isinstance(value, dict):
        return {k: resolve(v, peers) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, peers) for v in value]
    return value


def values_for(name: str, value) -> dict:
    return {} if value is OMIT else {name: value}


def same(expected, actual) -> bool:
    """Equal in value and Python type (Decimal places, aware UTC datetimes, int vs float vs bool)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and expected.keys() == actual.keys() and all(same(expected[k], actual[k]) for k in expected)
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(same, expected, actual))
    if isinstance(expected, datetime):
        return isinstance(actual, datetime) and actual.utcoffset() == timedelta(0) and actual == expected
    if isinstance(expected, D):
        return isinstance(actual, D) and str(actual) == str(expected)
    return type(actual) is type(expected) and actual == expected


def create_samples(rt, type_name: str, peers: list[str]) -> list[dict]:
    name = fname(type_name)
    return [rt.records.create(A, OBJ, values_for(name, resolve(inp, peers))) for inp, _ in CONTRACTS[type_name].records]


def count(rt, obj: str = OBJ) -> int:
    return rt.records.query(A, obj, first=0, total=True).total_count


def matching(rt, obj: str, flt: dict) -> set[str]:
    return {r["id"] for r in rt.records.query(A, obj, filter=flt, first=1000).records}


def read_all(rt, name: str, obj: str = OBJ) -> dict[str, Any]:
    return {r["id"]: r[name] for r in rt.records.query(A, obj, first=1000).records}


def expected_order(rows: list[tuple[str, dict]], keys: list[str]) -> list[str]:
    """Ids in ``keys`` order: ascending puts nulls last, descending first, ties by ascending id."""
    ordered = sorted(rows, key=lambda row: row[0])
    for key in reversed(keys):
        name = key.lstrip("-")
        ordered.sort(key=lambda row: (1, 0) if row[1][name] is None else (0, row[1][name]), reverse=key.startswith("-"))
    return [row[0] for row in ordered]


def walk(rt, obj: str, order_by: list[str]) -> list[str]:
    """Every id, one record per page, following end cursors."""
    ids, after = [], None
    while True:
        page = rt.records.query(A, obj, order_by=order_by, first=1, after=after)
        ids += [r["id"] for r in page.records]
        if not page.has_next_page:
            return ids
        assert page.end_cursor and len(ids) < 50, "paging does not terminate"
        after = page.end_cursor


def problems(exc: ValidationFailed) -> list[tuple[str, str | None]]:
    return [(e.code, e.field) for e in exc.errors]


def refusal_problem(exc: ValidationFailed, code: str, path: str) -> str | None:
    """Why the errors do not say ``code`` at ``path`` (and only at ``path``), or None."""
    found = problems(exc)
    if not found or any(p != path for _, p in found) or code not in {c for c, _ in found}:
        return f"expected {code} at {path!r}, got {found}"
    return None


def field_def(rt, name: str, obj: str = OBJ):
    return rt.catalog().object(obj).field(name)


def schema_shape(rt, name: str, obj: str = OBJ) -> dict:
    """Columns (compiled types), indexes and foreign keys of one field, as the database reports them."""
    inspector = sa.inspect(rt.engine)
    table = f"obj_{obj}"
    columns = {c["name"]: c["type"].compile(dialect=rt.engine.dialect) for c in inspector.get_columns(table)
               if c["name"] == name or c["name"].startswith(name + "__")}
    indexes = sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)
                     if set(ix["column_names"]) & set(columns))
    fks = [(fk["referred_table"], fk["referred_columns"], (fk.get("options") or {}).get("ondelete"))
           for fk in inspector.get_foreign_keys(table) if set(fk["constrained_columns"]) & set(columns)]
    return {"columns": columns, "indexes": indexes, "foreign_keys": fks}


def assert_schema_matches(rt, name: str, obj: str = OBJ) -> None:
    """The database has exactly the columns, index and foreign key the field's definition calls for."""
    field = field_def(rt, name, obj)
    pg = rt.engine.dialect.name == "postgresql"
    shape = schema_shape(rt, name, obj)
    columns = expected_columns(field, pg)
    assert shape["columns"] == columns
    unique = field.unique or field.type in ALWAYS_UNIQUE
    indexed = field.indexed or unique or field.type in ALWAYS_INDEXED
    expected_index = [(f"{'uq' if unique else 'ix'}_obj_{obj}_{name}", tuple(columns), unique)] if indexed else []
    assert shape["indexes"] == expected_index
    if field.type in ("lookup", "master_detail"):
        ondelete = "CASCADE" if field.type == "master_detail" else {"restrict": "RESTRICT", "set_null": "SET NULL"}[field.options["on_delete"]]
        assert shape["foreign_keys"] == [(f"obj_{field.options['target']}", ["id"], ondelete)]
    else:
        assert shape["foreign_keys"] == []


DERIVED = {"formula": "tests/runtime/test_formulas.py", "rollup": "tests/runtime/test_rollups.py"}
"""Types whose values the platform computes from other records or fields: no input to round-trip, so
their own suites run these checks (values back, every operator of the result type, order and paging,
columns, safe and unsafe changes) over records they set up."""
TYPES = [name for name in registry.names() if name not in DERIVED]


# -- the contract ----------------------------------------------------------------------------------
def test_every_registered_type_has_a_contract():
    assert set(registry.names()) == set(CONTRACTS) | set(DERIVED), "add a CONTRACTS entry (and an expected_columns entry) for every field type"
    for type_name, spec in CONTRACTS.items():
        assert len(spec.records) == 4, type_name
        assert spec.unsafe, f"{type_name}: name at least one unsafe change"
        assert spec.safe, f"{type_name}: name at least one safe change"


@pytest.mark.parametrize("type_name", TYPES)
def test_json_schema_is_valid_and_agrees_with_the_server(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    field = field_def(runtime, name)
    fragment = field.field_type.json_schema(field)
    Draft202012Validator.check_schema(fragment)
    schema = runtime.records.json_schema(OBJ)
    Draft202012Validator.check_schema(schema)
    validator, fragment_validator = Draft202012Validator(schema), Draft202012Validator(fragment)
    disagreements = []
    for inp, _ in [*spec.records, *spec.more]:
        value = resolve(inp, peers)
        if inp is not None and not validator.is_valid(values_for(name, value)):
            disagreements.append(f"object schema refuses valid {value!r}")
        if inp is not None and inp is not OMIT and not fragment_validator.is_valid(value):
            disagreements.append(f"field schema refuses valid {value!r}")
    nullable = field.writable and not field.required
    if validator.is_valid({name: None}) != nullable:
        disagreements.append(f"object schema {'refuses' if nullable else 'accepts'} null")
    for inp, code, _, schema_rejects in spec.invalid:
        value = resolve(inp, peers)
        if validator.is_valid(values_for(name, value)) == schema_rejects:
            disagreements.append(f"object schema {'accepts' if schema_rejects else 'refuses'} {value!r} ({code})")
    assert not disagreements


@pytest.mark.parametrize("type_name", TYPES)
def test_round_trip(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    mismatches, expected_by_id = [], {}
    for inp, expected in [*spec.records, *spec.more]:
        expected = resolve(expected, peers)
        created = runtime.records.create(A, OBJ, values_for(name, resolve(inp, peers)))
        fetched = runtime.records.get(A, OBJ, created["id"])[name]
        expected_by_id[created["id"]] = expected
        if not same(expected, created[name]) or not same(expected, fetched):
            mismatches.append(f"{inp!r}: expected {expected!r}, create returned {created[name]!r}, get returned {fetched!r}")
    listed = read_all(runtime, name)
    mismatches += [f"query returned {listed[i]!r}, expected {e!r}" for i, e in expected_by_id.items() if not same(e, listed[i])]
    assert not mismatches
    field = field_def(runtime, name)
    if field.writable and not field.required:
        record = runtime.records.create(A, OBJ, {name: None})
        assert runtime.records.get(A, OBJ, record["id"])[name] is None


@pytest.mark.parametrize("type_name", TYPES)
def test_invalid_values_are_refused_and_nothing_is_written(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    samples = create_samples(runtime, type_name, peers)
    last, harmless = samples[-1], values_for(name, resolve(spec.records[-1][0], peers))
    failures = []
    for inp, code, sub_path, _ in spec.invalid:
        value, path = resolve(inp, peers), name + sub_path
        attempts = [("create", lambda: runtime.records.create(A, OBJ, values_for(name, value)), path),
                    ("bulk_create", lambda: runtime.records.bulk_create(A, OBJ, [harmless, values_for(name, value)]), f"1.{path}")]
        if inp is not OMIT:
            attempts.append(("update", lambda: runtime.records.update(A, OBJ, last["id"], {name: value}), path))
        for what, attempt, at in attempts:
            before = count(runtime)
            try:
                attempt()
                failures.append(f"{what} {value!r}: accepted, expected {code}")
            except ValidationFailed as exc:
                if (problem := refusal_problem(exc, code, at)) is not None:
                    failures.append(f"{what} {value!r}: {problem}")
            except Exception as exc:  # noqa: BLE001 -- a crash is a contract failure too; keep checking the rest
                failures.append(f"{what} {value!r}: raised {type(exc).__name__}: {str(exc).splitlines()[0]}")
            if count(runtime) != before:
                failures.append(f"{what} {value!r}: the record count changed from {before} to {count(runtime)}")
        current = runtime.records.get(A, OBJ, last["id"])
        if current["version"] != 1 or not same(last[name], current[name]):
            failures.append(f"update {value!r}: the record changed to {current[name]!r}")
    assert not failures


@pytest.mark.parametrize("type_name", TYPES)
def test_every_operator_filters_exactly(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    field_type = registry.get(type_name)
    peers = install(runtime, [type_name])
    ids = [r["id"] for r in create_samples(runtime, type_name, peers)]
    wrong, used = [], set()
    for condition, expected in spec.filters:
        used |= set(condition) & ALL_OPERATORS
        found = matching(runtime, OBJ, {name: resolve(condition, peers)})
        if found != {ids[i] for i in expected}:
            wrong.append(f"{condition}: expected records {sorted(expected)}, got {sorted(ids.index(i) for i in found)}")
    assert not wrong
    assert used == set(field_type.operators), "the contract must exercise exactly the type's operators"
    for op in sorted(ALL_OPERATORS - set(field_type.operators)) or ["matches"]:
        with pytest.raises(ValidationFailed) as exc:
            runtime.records.query(A, OBJ, filter={name: {op: "x"}})
        assert problems(exc.value) == [("UNSUPPORTED_OPERATOR", f"filter.{name}.{op}")]


@pytest.mark.parametrize("type_name", TYPES)
def test_sorting_and_paging(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    samples = create_samples(runtime, type_name, peers)
    if not registry.get(type_name).sortable:
        for key in (name, f"-{name}"):
            with pytest.raises(ValidationFailed) as exc:
                runtime.records.query(A, OBJ, order_by=[key])
            assert problems(exc.value) == [("NOT_SORTABLE", "order_by.0")]
        return
    rows = [(r["id"], {name: resolve(expected, peers)}) for r, (_, expected) in zip(samples, spec.records)]
    for key in (name, f"-{name}"):
        expected = expected_order(rows, [key])
        page = runtime.records.query(A, OBJ, order_by=[key], first=100)
        assert [r["id"] for r in page.records] == expected, key
        assert walk(runtime, OBJ, [key]) == expected, key


@pytest.mark.parametrize("type_name", TYPES)
def test_columns_indexes_and_foreign_keys(runtime, type_name):
    install(runtime, [type_name])
    assert_schema_matches(runtime, fname(type_name))


@pytest.mark.parametrize("type_name", TYPES)
def test_safe_changes_keep_the_data(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    create_samples(runtime, type_name, peers)
    for changes, probe, probe_expected in spec.safe:
        before = read_all(runtime, name)
        runtime.metadata.update_field(A, OBJ, name, changes)
        field = field_def(runtime, name)
        assert field.type == changes.get("type", field.type)
        settings = {k: v for k, v in changes.items() if k not in ("type", "options")}
        assert {k: field.as_dict()[k] for k in settings} == settings
        assert read_all(runtime, name) == before, f"{changes} changed the data"
        if probe is not None:
            record = runtime.records.create(A, OBJ, values_for(name, probe))
            assert same(probe_expected, runtime.records.get(A, OBJ, record["id"])[name]), changes
        assert_schema_matches(runtime, name)


@pytest.mark.parametrize("type_name", TYPES)
def test_unsafe_changes_are_refused_and_change_nothing(runtime, type_name):
    spec, name = CONTRACTS[type_name], fname(type_name)
    peers = install(runtime, [type_name])
    create_samples(runtime, type_name, peers)

    def state():
        return runtime.catalog().version, field_def(runtime, name).as_dict(), schema_shape(runtime, name), read_all(runtime, name)

    before = state()
    for changes in spec.unsafe:
        with pytest.raises(UnsafeChange):
            runtime.metadata.update_field(A, OBJ, name, changes)
        assert state() == before, changes


def test_one_object_with_every_type(runtime):
    """The headline: one object holding a field of every type, filled, filtered, sorted and paged."""
    obj = "everything"
    peers = install(runtime, TYPES, obj=obj)
    rows = [{fname(t): resolve(CONTRACTS[t].records[i][0], peers) for t in TYPES if CONTRACTS[t].records[i][0] is not OMIT} for i in range(4)]
    created = runtime.records.bulk_create(A, obj, rows)
    ids = [r["id"] for r in created]
    expected = [{fname(t): resolve(CONTRACTS[t].records[i][1], peers) for t in TYPES} for i in range(4)]
    for record_id, values in zip(ids, expected):
        stored = runtime.records.get(A, obj, record_id)
        assert {k: v for k, v in values.items() if not same(v, stored[k])} == {}

    wrong, used = [], {t: set() for t in TYPES}
    for t in TYPES:
        for condition, want in CONTRACTS[t].filters:
            used[t] |= set(condition) & ALL_OPERATORS
            found = matching(runtime, obj, {fname(t): resolve(condition, peers)})
            if found != {ids[i] for i in want}:
                wrong.append(f"{t} {condition}: expected {sorted(want)}, got {sorted(ids.index(i) for i in found)}")
    assert not wrong
    assert used == {t: set(registry.get(t).operators) for t in TYPES}

    firsts = [({fname(t): resolve(CONTRACTS[t].filters[0][0], peers)}, CONTRACTS[t].filters[0][1]) for t in TYPES]
    present = [({fname(t): c}, m) for t in TYPES for c, m in CONTRACTS[t].filters if c == {"is_null": False}]
    every = set(range(4))
    for combined, want in (
        ({"and": [f for f, _ in present]}, set.intersection(*(m for _, m in present))),
        ({"or": [f for f, _ in firsts]}, set.union(*(m for _, m in firsts))),
        ({"not": {"or": [f for f, _ in firsts]}}, every - set.union(*(m for _, m in firsts))),
        (dict(f for cond, _ in firsts for f in cond.items()), set.intersection(*(m for _, m in firsts))),
    ):
        assert matching(runtime, obj, combined) == {ids[i] for i in want}, combined

    sortable = [t for t in TYPES if registry.get(t).sortable]
    table = list(zip(ids, expected))
    orders = [[fname(t)] for t in sortable] + [[f"-{fname(t)}"] for t in sortable]
    orders += [["f_boolean", "-f_date"], ["-f_master_detail", "f_boolean", "-f_text"], [f"-{fname(t)}" for t in sortable]]
    misordered = []
    for order in orders:
        want = expected_order(table, order)
        if [r["id"] for r in runtime.records.query(A, obj, order_by=order, first=10).records] != want:
            misordered.append(f"{order}: wrong order")
        try:
            if walk(runtime, obj, order) != want:
                misordered.append(f"{order}: paging one by one gives another order")
        except Exception as exc:  # noqa: BLE001 -- report every order, not just the first that crashes
            misordered.append(f"{order}: paging raised {type(exc).__name__}: {str(exc).splitlines()[0]}")
    for t in set(TYPES) - set(sortable):
        with pytest.raises(ValidationFailed) as exc:
            runtime.records.query(A, obj, order_by=["f_date", f"-{fname(t)}"])
        assert problems(exc.value) == [("NOT_SORTABLE", "order_by.1")]
    wrong_schema = []
    for t in TYPES:
        try:
            assert_schema_matches(runtime, fname(t), obj)
        except AssertionError as exc:
            wrong_schema.append(f"{t}: {str(exc).splitlines()[0]}")
    assert not misordered and not wrong_schema, (misordered, wrong_schema)
