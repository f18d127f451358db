"""The Catalog: an immutable snapshot of all metadata at one version.

Derived artefacts (tables, validators, schemas) are memoised on the Catalog, so they are built once
per version per process and dropped with it. :class:`CatalogCache` hands out the current Catalog,
comparing the stored version on every call and reloading when it moved.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from sqlalchemy import Connection, Engine, MetaData, Table, select

from . import automations, store
from .definitions import (
    BookingRuleDef,
    BusinessTypeDef,
    FieldDef,
    LayoutDef,
    ObjectDef,
    StageDef,
    ValidationRuleDef,
    freeze,
)
from .errors import NotFound
from .tables import new_metadata, query_table
from .versions import VersionSource

T = TypeVar("T")


class Catalog:
    """Every object and field at ``version``; never changes once built."""

    def __init__(self, version: int, objects: Mapping[str, ObjectDef]):
        self.version = version
        self.objects: Mapping[str, ObjectDef] = MappingProxyType(dict(objects))
        self._memo: dict[Any, Any] = {}
        self._lock = threading.RLock()
        self._metadata: MetaData = new_metadata()

    def __repr__(self) -> str:
        return f"<Catalog v{self.version}: {len(self.objects)} objects>"

    def object(self, api_name: str) -> ObjectDef:
        obj = self.objects.get(api_name)
        if obj is None:
            raise NotFound(f"There is no object named '{api_name}'.", field="object", object=api_name)
        return obj

    def by_plural(self, plural_api_name: str) -> ObjectDef | None:
        return next((o for o in self.objects.values() if o.plural_api_name == plural_api_name), None)

    def referrers(self, object_api_name: str) -> list[tuple[ObjectDef, FieldDef]]:
        """Custom fields of other objects (or this one) that reference ``object_api_name``."""
        return self.memo(("referrers",), self._index_referrers).get(object_api_name, [])

    def _index_referrers(self) -> dict[str, list[tuple[ObjectDef, FieldDef]]]:
        index: dict[str, list] = defaultdict(list)
        for obj in self.objects.values():
            for field in obj.fields:
                if field.target:
                    index[field.target].append((obj, field))
        return dict(index)

    def memo(self, key: Any, build: Callable[[], T]) -> T:
        """The artefact stored under ``key``, built once (under a lock) on first use."""
        try:
            return self._memo[key]
        except KeyError:
            with self._lock:
                if key not in self._memo:
                    self._memo[key] = build()
                return self._memo[key]

    def table(self, api_name: str) -> Table:
        obj = self.object(api_name)
        return self.memo(("table", api_name), lambda: query_table(obj, self._metadata))


def load_catalog(conn: Connection) -> Catalog:
    """Read the metadata tables into a Catalog: version first, so a racing change only makes it stale."""
    version = conn.execute(select(store.meta_version.c.version).where(store.meta_version.c.id == 1)).scalar_one()
    field_rows: dict[str, list[FieldDef]] = defaultdict(list)
    for row in conn.execute(select(store.fields).order_by(store.fields.c.object_api_name, store.fields.c.position)).mappings():
        field_rows[row["object_api_name"]].append(field_from_row(row))
    kinds = business_types_by_object(conn)
    rules = validation_rules_by_object(conn)
    layouts = layouts_by_object(conn)
    bookings = booking_rules_by_object(conn)
    automated = automations.by_object(conn)
    objects = {}
    for row in conn.execute(select(store.objects)).mappings():
        objects[row["api_name"]] = ObjectDef(
            api_name=row["api_name"], label=row["label"], plural_api_name=row["plural_api_name"],
            plural_label=row["plural_label"], description=row["description"], system=row["system"],
            fields=tuple(field_rows.get(row["api_name"], ())), business_types=kinds.get(row["api_name"], ()),
            validation_rules=rules.get(row["api_name"], ()), layouts=layouts.get(row["api_name"], ()),
            booking_rules=bookings.get(row["api_name"], ()), automations=automated.get(row["api_name"], ()),
        )
    return Catalog(version, objects)


def layouts_by_object(conn: Connection) -> dict[str, tuple[LayoutDef, ...]]:
    found: dict[str, list[LayoutDef]] = defaultdict(list)
    table = store.layouts
    for row in conn.execute(select(table).order_by(table.c.object_api_name, table.c.api_name)).mappings():
        found[row["object_api_name"]].append(LayoutDef(
            api_name=row["api_name"], label=row["label"], business_type=row["business_type"], role=row["role"],
            sections=freeze(row["sections"] or []), related_lists=freeze(row["related_lists"] or [])))
    return {name: tuple(items) for name, items in found.items()}


def booking_rules_by_object(conn: Connection) -> dict[str, tuple[BookingRuleDef, ...]]:
    found: dict[str, list[BookingRuleDef]] = defaultdict(list)
    table = store.booking_rules
    for row in conn.execute(select(table).order_by(table.c.object_api_name, table.c.api_name)).mappings():
        found[row["object_api_name"]].append(BookingRuleDef(
            api_name=row["api_name"], label=row["label"], resource_field=row["resource_field"], start_field=row["start_field"],
            end_field=row["end_field"], status_field=row["status_field"], active_values=tuple(row["active_values"] or ()),
            message=row["message"]))
    return {name: tuple(items) for name, items in found.items()}


def validation_rules_by_object(conn: Connection) -> dict[str, tuple[ValidationRuleDef, ...]]:
    rules: dict[str, list[ValidationRuleDef]] = defaultdict(list)
    table = store.validation_rules
    for row in conn.execute(select(table).order_by(table.c.object_api_name, table.c.position)).mappings():
        rules[row["object_api_name"]].append(ValidationRuleDef(
            api_name=row["api_name"], expression=row["expression"], message=row["message"], field=row["field"],
            business_type=row["business_type"], active=row["active"], position=row["position"]))
    return {name: tuple(found) for name, found in rules.items()}


def business_types_by_object(conn: Connection) -> dict[str, tuple[BusinessTypeDef, ...]]:
    stage_rows: dict[tuple[str, str], list[StageDef]] = defaultdict(list)
    for row in conn.execute(select(store.stages).order_by(store.stages.c.object_api_name, store.stages.c.position)).mappings():
        stage_rows[(row["object_api_name"], row["business_type"])].append(StageDef(
            api_name=row["api_name"], label=row["label"], probability=row["probability"], category=row["category"],
            expected_days=row["expected_days"], required_fields=tuple(row["required_fields"] or ()), position=row["position"],
        ))
    kinds: dict[str, list[BusinessTypeDef]] = defaultdict(list)
    for row in conn.execute(select(store.business_types).order_by(store.business_types.c.object_api_name,
                                                                  store.business_types.c.position)).mappings():
        kinds[row["object_api_name"]].append(BusinessTypeDef(
            api_name=row["api_name"], label=row["label"], description=row["description"], active=row["active"],
            default=row["is_default"], picklists=freeze(row["picklists"] or {}),
            stages=tuple(stage_rows.get((row["object_api_name"], row["api_name"]), ())), position=row["position"],
        ))
    return {name: tuple(found) for name, found in kinds.items()}


def field_from_row(row: Mapping[str, Any]) -> FieldDef:
    return FieldDef(
        api_name=row["api_name"], label=row["label"], type=row["type"], required=row["required"],
        unique=row["unique"], indexed=row["indexed"], tracked=row["tracked"], default=freeze(row["default"]),
        help_text=row["help_text"], description=row["description"], options=freeze(row["options"] or {}),
        position=row["position"],
    )


class CatalogCache:
    """The current Catalog for this process, reloaded when the stored version moves."""

    def __init__(self, engine: Engine, versions: VersionSource):
        self.engine = engine
        self.versions = versions
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()
        self.loads = 0
        """How many times the Catalog was read from the database (tests count rebuilds)."""

    def current(self, conn: Connection | None = None) -> Catalog:
        """The Catalog at the stored version; one cheap version read when nothing changed."""
        if conn is None:
            with self.engine.connect() as own:
                return self.current(own)
        version = self.versions.read(conn)
        catalog = self._catalog
        if catalog is not None and catalog.version == version:
            return catalog
        with self._lock:
            catalog = self._catalog
            if catalog is not None and catalog.version >= version:
                return catalog
            catalog = load_catalog(conn)
            self.loads += 1
            self._catalog = catalog
            if catalog.version < version:
                self.versions.correct(catalog.version)
            return catalog

    def at_version(self, conn: Connection, version: int) -> Catalog:
        """The Catalog inside a metadata change, after the version row is locked."""
        catalog = self._catalog
        if catalog is not None and catalog.version == version:
            return catalog
        return load_catalog(conn)

    def peek(self) -> Catalog | None:
        return self._catalog
