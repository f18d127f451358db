"""The metadata service: the only writer of objects and fields.

Each change is one transaction holding the version row lock: meta rows, DDL, the version bump and a
change-log entry commit together or not at all. Definitions are loaded with marshmallow, then
checked against the Catalog, and every problem is reported at once.
"""
from __future__ import annotations

import copy
import functools
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    column,
    delete,
    func,
    insert,
    inspect,
    select,
    table,
    update,
)
from sqlalchemy.exc import DBAPIError

from . import automations, booking_rules, business_types, layouts, store, validation_rules
from .actors import SYSTEM_ACTOR, Actor
from .catalog import Catalog, CatalogCache
from .database import WRITE, is_sqlite
from .ddl import SchemaEditor
from .definitions import (
    AutomationDef,
    BookingRuleDef,
    BusinessTypeDef,
    FieldDef,
    LayoutDef,
    ObjectDef,
    ValidationRuleDef,
    freeze,
    thaw,
)
from .derived_fields import fields_reading, rollups_over, settle_derived, summary_update
from .errors import (
    FieldError,
    Forbidden,
    InUse,
    InvalidDefinition,
    NotFound,
    SchemaChangeFailed,
    UnsafeChange,
)
from .expressions import referenced_fields
from .fieldtypes.auto_number import render
from .graphql_names import Collision, Source, find_collisions
from .names import SYSTEM_FIELD_NAMES, plural
from .schemas import FieldSchema, ObjectSchema, ObjectUpdateSchema, load
from .tables import new_metadata, query_table
from .upgrades import upgrade
from .versions import VersionSource, lock_and_bump, read_stored_version

SYSTEM_OBJECTS = (
    {
        "api_name": "user", "label": "User", "plural_api_name": "users", "plural_label": "Users",
        "description": "People who sign in; administrators may add fields.",
        "fields": [
            {"api_name": "username", "label": "Username", "type": "text", "required": True, "unique": True, "options": {"max_length": 150}},
            {"api_name": "email", "label": "Email", "type": "email", "unique": True},
            {"api_name": "full_name", "label": "Full name", "type": "text", "options": {"max_length": 255}},
            {"api_name": "active", "label": "Active", "type": "boolean", "default": True},
        ],
    },
    {
        "api_name": "org_unit", "label": "Org unit", "plural_api_name": "org_units", "plural_label": "Org units",
        "description": "A unit of the organisation tree (company, subsidiary, region, department).",
        "fields": [
            {"api_name": "name", "label": "Name", "type": "text", "required": True, "options": {"max_length": 255}},
            {"api_name": "parent", "label": "Parent unit", "type": "lookup", "options": {"target": "org_unit", "on_delete": "restrict"}},
            {"api_name": "path", "label": "Path", "type": "text", "indexed": True, "options": {"max_length": 2000}},
        ],
    },
)
"""Objects every installation has; they cannot be deleted (later issues give them behaviour)."""


INSTALL_LOCK = 0x6C6F77636F6465
"""PostgreSQL advisory lock key serialising installs ("lowcode")."""

LOCK_TIMEOUT = "10s"
"""How long a metadata change waits for a busy table before giving up (PostgreSQL), so that a
change queued behind a long transaction never stalls every other query on that table."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class MetaChange:
    conn: Connection
    catalog: Catalog
    version: int
    actor: Actor
    schema: SchemaEditor

    def log(self, action: str, object_api_name: str, field_api_name: str | None, before: Any, after: Any) -> None:
        self.conn.execute(insert(store.meta_changes).values(
            version=self.version, actor_id=self.actor.id, at=_now(), action=action,
            object_api_name=object_api_name, field_api_name=field_api_name, before=before, after=after,
        ))


def _administrators_only(method):
    """Refuse (FORBIDDEN) a caller who is neither an administrator nor the platform, before anything
    else is looked at."""
    @functools.wraps(method)
    def checked(self, actor: Actor, *args, **kwargs):
        if not actor.is_system and not getattr(actor.access, "administrator", False):
            raise Forbidden("Only administrators change objects and fields.")
        return method(self, actor, *args, **kwargs)
    return checked


class MetadataService:
    def __init__(self, engine: Engine, cache: CatalogCache, versions: VersionSource):
        self.engine = engine
        self.cache = cache
        self.versions = versions
        self.on_delete: list[Callable[[Connection, str, str | None], None]] = []
        """Called as ``(conn, object, field or None)`` inside the transaction deleting an object or
        a field, so that what other layers keep about it (grants, shares) goes with it."""
        self.automation_kinds = automations.AutomationKinds()
        """The kinds of automation the runtime registered; each checks its settings when saved."""
        self._outer: Connection | None = None

    def joined(self, conn: Connection) -> "MetadataService":
        """This service making its changes inside ``conn``, a transaction opened by
        :meth:`transaction`: part of a larger change (an app's install), all or nothing."""
        joined = copy.copy(self)
        joined._outer = conn
        return joined

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for any number of metadata changes (and record writes, joined to
        it): committed together, the new version announced after the commit."""
        conn = self.engine.connect().execution_options(**WRITE)
        sqlite = is_sqlite(conn)
        try:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaChangeFailed(f"The change would break {len(broken)} references between records; nothing was changed.")
                version = read_stored_version(conn)
        finally:
            if sqlite and not conn.closed:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
            conn.close()
        self.versions.announce(version)

    # -- installation -----------------------------------------------------------------------
    def install(self) -> None:
        """Create the platform tables and system objects when missing; safe to run again, also by
        several processes at once (workers starting on a new database)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            if not is_sqlite(conn):
                conn.execute(select(func.pg_advisory_xact_lock(INSTALL_LOCK)))
            existed = inspect(conn).has_table(store.meta_version.name)
            store.platform_metadata.create_all(conn)
            if conn.execute(select(store.meta_version.c.version)).first() is None:
                conn.execute(insert(store.meta_version).values(id=1, version=0))
            upgrade(conn, existed)
        catalog = self.cache.current()
        missing = [o for o in SYSTEM_OBJECTS if o["api_name"] not in catalog.objects]
        if missing:
            try:
                self._create_objects(SYSTEM_ACTOR, [dict(o) for o in missing], system=True)
            except InvalidDefinition:
                if any(o["api_name"] not in self.cache.current().objects for o in SYSTEM_OBJECTS):
                    raise

    # -- reading ----------------------------------------------------------------------------
    def catalog(self) -> Catalog:
        return self.cache.current()

    def changes(self, object_api_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(store.meta_changes).order_by(store.meta_changes.c.id.desc()).limit(limit)
        if object_api_name:
            query = query.where(store.meta_changes.c.object_api_name == object_api_name)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- objects ----------------------------------------------------------------------------
    @_administrators_only
    def create_object(self, actor: Actor, definition: dict[str, Any]) -> ObjectDef:
        """Create an object (with any fields given) and its table."""
        return self._create_objects(actor, [definition])[0]

    @_administrators_only
    def create_objects(self, actor: Actor, definitions: list[dict[str, Any]]) -> list[ObjectDef]:
        """Create several objects in one change; they may reference each other."""
        return self._create_objects(actor, definitions)

    def _create_objects(self, actor: Actor, definitions: list[dict[str, Any]], system: bool = False) -> list[ObjectDef]:
        several = len(definitions) > 1
        drafts = [_draft_object(definition, system) for definition in definitions]
        with self._change(actor) as change:
            drafts = _settle_together(change.catalog.objects, drafts)
            valid = [obj for obj, _, header_ok in drafts if header_ok]
            names = {**change.catalog.objects, **{o.api_name: o for o in valid}}
            errors: list[FieldError] = []
            for i, (obj, problems, header_ok) in enumerate(drafts):
                problems = problems + _object_problems(change.catalog, obj, names, valid, check_object=header_ok)
                errors.extend(e.at(i) if several else e for e in problems)
            created = _new_drafts(change.catalog, drafts, definitions)
            after = {**change.catalog.objects, **{name: obj for name, (_, obj, _) in created.items()}}
            errors.extend(_collision_errors(change.catalog, after, _path_in_definitions(created, several), errors))
            if errors:
                raise InvalidDefinition("The object definition has problems; fix the listed fields.", errors=errors)
            new_objects = valid
            now = _now()
            for obj in new_objects:
                change.conn.execute(insert(store.objects).values(
                    api_name=obj.api_name, label=obj.label, plural_api_name=obj.plural_api_name,
                    plural_label=obj.plural_label, description=obj.description, system=system, created_at=now, updated_at=now,
                ))
                for field in obj.fields:
                    _insert_field(change.conn, obj.api_name, field)
            created = frozenset(o.api_name for o in new_objects)
            for obj in new_objects:
                self._ddl(change, lambda o=obj: change.schema.create_table(o, created))
            for obj in new_objects:
                self._ddl(change, lambda o=obj: change.schema.add_foreign_keys(o, created))
                change.log("create_object", obj.api_name, None, None, obj.as_dict())
        return new_objects

    @_administrators_only
    def update_object(self, actor: Actor, api_name: str, changes: dict[str, Any]) -> ObjectDef:
        """Change an object's label, plural label or description; api names never change."""
        data, errors = load(ObjectUpdateSchema(), changes)
        if errors:
            raise InvalidDefinition("The object change has problems; fix the listed fields.", errors=errors)
        with self._change(actor) as change:
            old = change.catalog.object(api_name)
            new = replace(old, **data)
            change.conn.execute(update(store.objects).where(store.objects.c.api_name == api_name).values(**data, updated_at=_now()))
            change.log("update_object", api_name, None, _object_header(old), _object_header(new))
        return new

    def delete_object(self, actor: Actor, api_name: str) -> None:
        """Drop an object, its table and its records; refused while other objects reference it."""
        self.delete_objects(actor, [api_name])

    @_administrators_only
    def delete_objects(self, actor: Actor, api_names: list[str]) -> None:
        """Drop objects together (one change): references among them do not count, references from
        other objects (lookups, master-detail fields, roll-ups) refuse the whole change."""
        with self._change(actor) as change:
            doomed = {name: change.catalog.object(name) for name in dict.fromkeys(api_names)}
            for api_name, obj in doomed.items():
                if obj.system:
                    raise InUse(f"'{api_name}' is a system object and cannot be deleted.", field="object")
                pointing = [*change.catalog.referrers(api_name), *rollups_over(change.catalog.objects, api_name)]
                referrers = [f"{o.api_name}.{f.api_name}" for o, f in pointing if o.api_name not in doomed]
                if referrers:
                    raise InUse(
                        f"'{api_name}' is referenced by {', '.join(referrers)}; delete or change those fields first.",
                        field="object", referrers=referrers,
                    )
            conn = change.conn
            for api_name in _referrers_first(change.catalog, list(doomed)):
                obj = doomed[api_name]
                self._ddl(change, lambda obj=obj: change.schema.drop_table(obj))
                conn.execute(delete(store.fields).where(store.fields.c.object_api_name == api_name))
                conn.execute(delete(store.objects).where(store.objects.c.api_name == api_name))
                conn.execute(delete(store.auto_numbers).where(store.auto_numbers.c.object_api_name == api_name))
                conn.execute(delete(store.field_history).where(store.field_history.c.object_api_name == api_name))
                for owned in (store.stages, store.business_types, store.stage_history, store.validation_rules, store.layouts,
                              store.booking_rules, store.automations):
                    conn.execute(delete(owned).where(owned.c.object_api_name == api_name))
                for forget in self.on_delete:
                    forget(conn, api_name, None)
                change.log("delete_object", api_name, None, obj.as_dict(), None)
            automations.tell_removed(self.automation_kinds, conn, [a for obj in doomed.values() for a in obj.automations],
                                     [o for name, o in change.catalog.objects.items() if name not in doomed])

    # -- fields -----------------------------------------------------------------------------
    @_administrators_only
    def create_field(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> FieldDef:
        data, errors = load(FieldSchema(), definition)
        if errors:
            raise InvalidDefinition("The field definition has problems; fix the listed fields.", errors=errors)
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            field = _field_def(data, max((f.position for f in obj.fields), default=-1) + 1)
            grown = replace(obj, fields=(*obj.fields, field))
            field, problems = settle_derived({**change.catalog.objects, obj.api_name: grown}, grown, field)
            grown = replace(obj, fields=(*obj.fields, field))
            problems += _object_problems(change.catalog, grown, change.catalog.objects, [grown], only=field)
            problems += _collision_errors(change.catalog, {**change.catalog.objects, obj.api_name: grown},
                                          _path_in_field(obj, field), problems)
            if problems:
                raise InvalidDefinition("The field definition has problems; fix the listed fields.", errors=problems)
            if field.type == "master_detail" and _has_rows(change.conn, obj):
                raise UnsafeChange(
                    f"'{object_api_name}' already has records, which would have no master; a master-detail field can only be added to an empty object (add a lookup instead).",
                    field="type",
                )
            _insert_field(change.conn, object_api_name, field)
            self._ddl(change, lambda: change.schema.add_field(obj, field))
            if field.type == "auto_number":
                _number_existing_records(change.conn, obj, field)
            if field.type == "rollup":
                _summarize(change.conn, {**change.catalog.objects, obj.api_name: grown}, grown, field)
            change.log("create_field", object_api_name, field.api_name, None, field.as_dict())
        return field

    @_administrators_only
    def update_field(self, actor: Actor, object_api_name: str, field_api_name: str, changes: dict[str, Any]) -> FieldDef:
        """Change a field; a type or option change must keep every existing value intact."""
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            old = _custom_field(obj, field_api_name)
            if not isinstance(changes, dict):
                raise InvalidDefinition("The field change must be an object of settings.", errors=[FieldError("INVALID_TYPE", None, "must be an object")])
            if "api_name" in changes and changes["api_name"] != field_api_name:
                raise InvalidDefinition("api names never change; change the label instead.", errors=[FieldError("IMMUTABLE", "api_name", "cannot be changed")])
            merged = {**old.as_dict(), **changes}
            if "type" in changes and changes["type"] != old.type and "options" not in changes:
                merged["options"] = {}
            data, errors = load(FieldSchema(), merged)
            if errors:
                raise InvalidDefinition("The field change has problems; fix the listed fields.", errors=errors)
            new = _field_def(data, old.position)
            problem = new.field_type.change_problem(old, new)
            if problem:
                raise UnsafeChange(problem, field="type" if old.type != new.type else "options", old_type=old.type, new_type=new.type)
            changed = replace(obj, fields=tuple(new if f.api_name == field_api_name else f for f in obj.fields))
            new, problems = settle_derived({**change.catalog.objects, obj.api_name: changed}, changed, new)
            changed = replace(obj, fields=tuple(new if f.api_name == field_api_name else f for f in obj.fields))
            problem = new.field_type.change_problem(old, new)
            if problem:
                raise UnsafeChange(problem, field="options", old_type=old.type, new_type=new.type)
            readers = (fields_reading(change.catalog.objects, obj, field_api_name) + booking_rules.rules_using(obj, field_api_name)
                       + automations.using_field(self.automation_kinds, change.catalog.objects.values(), obj, field_api_name))
            if readers and (old.type, old.options.get("scale")) != (new.type, new.options.get("scale")):
                raise InUse(f"'{object_api_name}.{field_api_name}' is read by {', '.join(readers)}; its type cannot change while they do.",
                            field="type", used_by=readers)
            problems += _object_problems(change.catalog, changed, change.catalog.objects, [changed], only=new)
            problems += _collision_errors(change.catalog, {**change.catalog.objects, obj.api_name: changed},
                                          _path_in_field(obj, new), problems)
            if problems:
                raise InvalidDefinition("The field change has problems; fix the listed fields.", errors=problems)
            if new.unique and not old.unique:
                _refuse_duplicates(change.conn, obj, old)
            change.conn.execute(update(store.fields).where(
                store.fields.c.object_api_name == object_api_name, store.fields.c.api_name == field_api_name,
            ).values(**_field_row(new)))
            self._ddl(change, lambda: change.schema.alter_field(obj, old, new))
            if new.type == "rollup" and new.options != old.options:
                _summarize(change.conn, {**change.catalog.objects, obj.api_name: changed}, changed, new)
            change.log("update_field", object_api_name, field_api_name, old.as_dict(), new.as_dict())
        return new

    @_administrators_only
    def delete_field(self, actor: Actor, object_api_name: str, field_api_name: str) -> None:
        """Drop a field and its column; the rest of every record stays."""
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            field = _custom_field(obj, field_api_name)
            if obj.system and any(field_api_name == f["api_name"] for o in SYSTEM_OBJECTS if o["api_name"] == obj.api_name for f in o["fields"]):
                raise InUse(f"'{object_api_name}.{field_api_name}' is a system field and cannot be deleted.", field="field")
            users = (_configuration_using(obj, field_api_name)
                     + automations.using_field(self.automation_kinds, change.catalog.objects.values(), obj, field_api_name)
                     + fields_reading(change.catalog.objects, obj, field_api_name))
            if users:
                raise InUse(f"'{object_api_name}.{field_api_name}' is used by {', '.join(users)}; change those first.",
                            field="field", used_by=users)
            self._ddl(change, lambda: change.schema.drop_field(obj, field))
            change.conn.execute(delete(store.fields).where(
                store.fields.c.object_api_name == object_api_name, store.fields.c.api_name == field_api_name))
            change.conn.execute(delete(store.auto_numbers).where(
                store.auto_numbers.c.object_api_name == object_api_name, store.auto_numbers.c.field_api_name == field_api_name))
            for forget in self.on_delete:
                forget(change.conn, object_api_name, field_api_name)
            change.log("delete_field", object_api_name, field_api_name, field.as_dict(), None)

    # -- business types and stages ----------------------------------------------------------
    @_administrators_only
    def create_business_type(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> BusinessTypeDef:
        """A new business type of an object, with its picklist subsets and ordered stages. The
        first one is the default."""
        data = _loaded(business_types.BusinessTypeSchema(), definition, "business type")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            _refuse_taken(obj, obj.business_types, data["api_name"], "business type")
            kind = business_types.business_type_def({**data, "default": data["default"] or not obj.business_types},
                                                    len(obj.business_types))
            kinds = self._save_business_types(change, obj, kind, [k for k in obj.business_types])
            change.log("create_business_type", object_api_name, None, None, kind.as_dict())
            return next(k for k in kinds if k.api_name == kind.api_name)

    @_administrators_only
    def update_business_type(self, actor: Actor, object_api_name: str, api_name: str, changes: dict[str, Any]) -> BusinessTypeDef:
        """Change a business type; ``stages`` replaces its ordered list (stages records are in may
        not go)."""
        data = _loaded(business_types.BusinessTypeUpdateSchema(), changes, "business type")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._business_type(obj, api_name)
            merged = {**current.as_dict(), **data}
            kind = business_types.business_type_def(merged, current.position)
            if current.default and not kind.default:
                raise InvalidDefinition("The business type has problems; fix the listed fields.", errors=[
                    FieldError("INVALID_VALUE", "default", "make another business type the default instead")])
            gone = [s.api_name for s in current.stages if kind.stage(s.api_name) is None]
            used = business_types.records_using(change.conn, obj, "stage", gone)
            if used:
                raise InUse(f"{used} record(s) are in the stage(s) {', '.join(gone)}; move them to other stages first.",
                            field="stages", records=used)
            kinds = self._save_business_types(change, obj, kind, [k for k in obj.business_types if k.api_name != api_name])
            change.log("update_business_type", object_api_name, None, current.as_dict(), kind.as_dict())
            return next(k for k in kinds if k.api_name == api_name)

    @_administrators_only
    def delete_business_type(self, actor: Actor, object_api_name: str, api_name: str) -> None:
        """Remove a business type no record has; the default goes last."""
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._business_type(obj, api_name)
            others = tuple(k for k in obj.business_types if k.api_name != api_name)
            if current.default and others:
                raise InUse("This is the default business type; make another one the default first.", field="api_name")
            used = business_types.records_using(change.conn, obj, "business_type", [api_name])
            if used:
                raise InUse(f"{used} record(s) are of this business type; change or delete them first.", field="api_name", records=used)
            naming = [f"validation rule '{r.api_name}'" for r in obj.validation_rules if r.business_type == api_name]
            naming += [f"layout '{layout.api_name}'" for layout in obj.layouts if layout.business_type == api_name]
            if naming:
                raise InUse(f"{', '.join(naming)} apply to this business type; change or delete them first.", field="api_name",
                            used_by=naming)
            business_types.write(change.conn, object_api_name, others)
            change.log("delete_business_type", object_api_name, None, current.as_dict(), None)

    @staticmethod
    def _business_type(obj: ObjectDef, api_name: str) -> BusinessTypeDef:
        return _named(obj, obj.business_types, api_name, "business type")

    def _save_business_types(self, change: MetaChange, obj: ObjectDef, kind: BusinessTypeDef,
                             others: list[BusinessTypeDef]) -> tuple[BusinessTypeDef, ...]:
        problems = business_types.problems(obj, kind, tuple(others))
        if kind.default:
            others = [replace(k, default=False) for k in others]
        kinds = tuple(sorted([*others, kind], key=lambda k: k.position))
        after = {**change.catalog.objects, obj.api_name: replace(obj, business_types=kinds)}
        problems += _collision_errors(change.catalog, after, lambda source: "api_name" if source.object == obj.api_name else None,
                                      problems)
        if problems:
            raise InvalidDefinition("The business type has problems; fix the listed fields.", errors=problems)
        business_types.write(change.conn, obj.api_name, kinds)
        return kinds

    # -- validation rules -------------------------------------------------------------------
    @_administrators_only
    def create_validation_rule(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> ValidationRuleDef:
        """A CEL rule every write of the object's records (of one business type, if named) must pass."""
        data = _loaded(validation_rules.ValidationRuleSchema(), definition, "validation rule")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            _refuse_taken(obj, obj.validation_rules, data["api_name"], "validation rule")
            rule = validation_rules.rule_def(data, len(obj.validation_rules))
            self._save_rules(change, obj, rule, (*obj.validation_rules, rule))
            change.log("create_validation_rule", object_api_name, rule.field, None, rule.as_dict())
            return rule

    @_administrators_only
    def update_validation_rule(self, actor: Actor, object_api_name: str, api_name: str, changes: dict[str, Any]) -> ValidationRuleDef:
        data = _loaded(validation_rules.ValidationRuleUpdateSchema(), changes, "validation rule")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._rule(obj, api_name)
            rule = validation_rules.rule_def({**current.as_dict(), **data}, current.position)
            self._save_rules(change, obj, rule, tuple(rule if r.api_name == api_name else r for r in obj.validation_rules))
            change.log("update_validation_rule", object_api_name, rule.field, current.as_dict(), rule.as_dict())
            return rule

    @_administrators_only
    def delete_validation_rule(self, actor: Actor, object_api_name: str, api_name: str) -> None:
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._rule(obj, api_name)
            validation_rules.write(change.conn, object_api_name, tuple(r for r in obj.validation_rules if r.api_name != api_name))
            change.log("delete_validation_rule", object_api_name, current.field, current.as_dict(), None)

    @staticmethod
    def _rule(obj: ObjectDef, api_name: str) -> ValidationRuleDef:
        return _named(obj, obj.validation_rules, api_name, "validation rule")

    @staticmethod
    def _save_rules(change: MetaChange, obj: ObjectDef, rule: ValidationRuleDef, rules: tuple[ValidationRuleDef, ...]) -> None:
        problems = validation_rules.problems(obj, rule)
        if problems:
            raise InvalidDefinition("The validation rule has problems; fix the listed fields.", errors=problems)
        validation_rules.write(change.conn, obj.api_name, rules)

    # -- automations ------------------------------------------------------------------------
    @_administrators_only
    def create_automation(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> AutomationDef:
        """An assignment or duplicate rule, approval process, trigger or reminder on the object;
        its kind checks the settings, and nothing is saved while any problem remains."""
        data = _loaded(automations.AutomationSchema(), definition, "automation")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            _refuse_taken(obj, obj.automations, data["api_name"], "automation")
            same_kind = obj.automations_of(data["kind"])
            position = data["position"] if data.get("position") is not None else (max((a.position for a in same_kind), default=-1) + 1)
            automation = automations.automation_def(data, position)
            self._save_automation(change, obj, automation, (*obj.automations, automation))
            change.log("create_automation", object_api_name, None, None, automation.as_dict())
            return automation

    @_administrators_only
    def update_automation(self, actor: Actor, object_api_name: str, api_name: str, changes: dict[str, Any]) -> AutomationDef:
        """Change an automation's label, settings (replaced whole), activity or position; not its kind."""
        data = _loaded(automations.AutomationUpdateSchema(), changes, "automation")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = _named(obj, obj.automations, api_name, "automation")
            automation = automations.automation_def({**current.as_dict(), **data}, data.get("position", current.position))
            self._save_automation(change, obj, automation, tuple(automation if a.api_name == api_name else a for a in obj.automations))
            change.log("update_automation", object_api_name, None, current.as_dict(), automation.as_dict())
            return automation

    @_administrators_only
    def delete_automation(self, actor: Actor, object_api_name: str, api_name: str) -> None:
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = _named(obj, obj.automations, api_name, "automation")
            left = tuple(a for a in obj.automations if a.api_name != api_name)
            automations.write(change.conn, object_api_name, left)
            automations.tell_removed(self.automation_kinds, change.conn, [current], [
                replace(obj, automations=left) if o.api_name == object_api_name else o for o in change.catalog.objects.values()])
            change.log("delete_automation", object_api_name, None, current.as_dict(), None)

    def _save_automation(self, change: MetaChange, obj: ObjectDef, automation: AutomationDef, all_of_object: tuple[AutomationDef, ...]) -> None:
        problems = automations.problems(self.automation_kinds, change.conn, change.catalog, obj, automation)
        if problems:
            raise InvalidDefinition("The automation has problems; fix the listed fields.", errors=problems)
        automations.write(change.conn, obj.api_name, automations.ordered(list(all_of_object)))

    # -- booking rules ----------------------------------------------------------------------
    @_administrators_only
    def create_booking_rule(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> BookingRuleDef:
        """Make the object's records bookings of a resource over dates: two active bookings of one
        resource never overlap, guarded by the database. Refused while existing records overlap."""
        data = _loaded(booking_rules.BookingRuleSchema(), definition, "booking rule")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            _refuse_taken(obj, obj.booking_rules, data["api_name"], "booking rule")
            rule = booking_rules.rule_def(data)
            self._save_booking_rule(change, obj, None, rule)
            change.log("create_booking_rule", object_api_name, None, None, rule.as_dict())
            return rule

    @_administrators_only
    def update_booking_rule(self, actor: Actor, object_api_name: str, api_name: str, changes: dict[str, Any]) -> BookingRuleDef:
        data = _loaded(booking_rules.BookingRuleUpdateSchema(), changes, "booking rule")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = _named(obj, obj.booking_rules, api_name, "booking rule")
            rule = booking_rules.rule_def({**current.as_dict(), **data})
            self._save_booking_rule(change, obj, current, rule)
            change.log("update_booking_rule", object_api_name, None, current.as_dict(), rule.as_dict())
            return rule

    @_administrators_only
    def delete_booking_rule(self, actor: Actor, object_api_name: str, api_name: str) -> None:
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = _named(obj, obj.booking_rules, api_name, "booking rule")
            self._ddl(change, lambda: change.schema.drop_booking_guard(obj, current))
            booking_rules.write(change.conn, object_api_name, tuple(r for r in obj.booking_rules if r.api_name != current.api_name))
            change.log("delete_booking_rule", object_api_name, None, current.as_dict(), None)

    def _save_booking_rule(self, change: MetaChange, obj: ObjectDef, current: BookingRuleDef | None, rule: BookingRuleDef) -> None:
        problems = booking_rules.problems(obj, rule)
        if problems:
            raise InvalidDefinition("The booking rule has problems; fix the listed fields.", errors=problems)
        records = query_table(obj, new_metadata())
        backwards = booking_rules.backwards_in_data(change.conn, rule, records)
        if backwards:
            raise UnsafeChange(f"{backwards} active record(s) end before they start; correct them first.",
                               field="end_field", records=backwards)
        overlaps = booking_rules.overlaps_in_data(change.conn, obj, rule, records)
        if overlaps:
            raise UnsafeChange(f"{overlaps} pair(s) of active records already overlap on one resource; cancel or move them first.",
                               field="api_name", overlapping_pairs=overlaps)
        if current is not None:
            self._ddl(change, lambda: change.schema.drop_booking_guard(obj, current))
        self._ddl(change, lambda: change.schema.add_booking_guard(obj, rule))
        booking_rules.write(change.conn, obj.api_name, tuple(rule if r.api_name == rule.api_name else r for r in obj.booking_rules)
                            if current is not None else (*obj.booking_rules, rule))

    # -- layouts ----------------------------------------------------------------------------
    @_administrators_only
    def create_layout(self, actor: Actor, object_api_name: str, definition: dict[str, Any]) -> LayoutDef:
        """A form layout for the object (for one business type and/or role, or the default)."""
        data = _loaded(layouts.LayoutSchema(), definition, "layout")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            _refuse_taken(obj, obj.layouts, data["api_name"], "layout")
            layout = layouts.layout_def(data)
            self._save_layouts(change, obj, layout, (*obj.layouts, layout))
            change.log("create_layout", object_api_name, None, None, layout.as_dict())
            return layout

    @_administrators_only
    def update_layout(self, actor: Actor, object_api_name: str, api_name: str, changes: dict[str, Any]) -> LayoutDef:
        data = _loaded(layouts.LayoutUpdateSchema(), changes, "layout")
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._layout(obj, api_name)
            layout = layouts.layout_def({**current.as_dict(), **data})
            self._save_layouts(change, obj, layout, tuple(layout if existing.api_name == api_name else existing for existing in obj.layouts))
            change.log("update_layout", object_api_name, None, current.as_dict(), layout.as_dict())
            return layout

    @_administrators_only
    def delete_layout(self, actor: Actor, object_api_name: str, api_name: str) -> None:
        with self._change(actor) as change:
            obj = change.catalog.object(object_api_name)
            current = self._layout(obj, api_name)
            layouts.write(change.conn, object_api_name, tuple(existing for existing in obj.layouts if existing.api_name != api_name))
            change.log("delete_layout", object_api_name, None, current.as_dict(), None)

    @staticmethod
    def _layout(obj: ObjectDef, api_name: str) -> LayoutDef:
        return _named(obj, obj.layouts, api_name, "layout")

    @staticmethod
    def _save_layouts(change: MetaChange, obj: ObjectDef, layout: LayoutDef, all_layouts: tuple[LayoutDef, ...]) -> None:
        problems = layouts.problems(dict(change.catalog.objects), obj, layout) + layouts.role_problems(change.conn, layout)
        clash = next((other for other in all_layouts if other.api_name != layout.api_name
                      and (other.business_type, other.role) == (layout.business_type, layout.role)), None)
        if clash is not None:
            problems.append(FieldError("DUPLICATE", "business_type",
                                       f"layout '{clash.api_name}' already serves this business type and role"))
        if problems:
            raise InvalidDefinition("The layout has problems; fix the listed fields.", errors=problems)
        layouts.write(change.conn, obj.api_name, all_layouts)

    # -- the transaction --------------------------------------------------------------------
    @contextmanager
    def _change(self, actor: Actor) -> Iterator[MetaChange]:
        if self._outer is not None:
            yield self._begun(self._outer, actor)
            return
        with self.transaction() as conn:
            yield self._begun(conn, actor)

    def _begun(self, conn: Connection, actor: Actor) -> MetaChange:
        version = lock_and_bump(conn)
        return MetaChange(conn, self.cache.at_version(conn, version - 1), version, actor, SchemaEditor(conn))

    def _ddl(self, change: MetaChange, step) -> None:
        try:
            step()
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise SchemaChangeFailed(f"The database refused the schema change ({reason}); nothing was changed.") from None


def _draft_object(definition: Any, system: bool) -> tuple[ObjectDef, list[FieldError], bool]:
    """The object as far as it loads, with every format problem (of the header and each field).

    Fields that load keep their index as ``position``, so later checks report ``fields.<index>``.
    """
    if not isinstance(definition, dict):
        return ObjectDef("", "", "", ""), [FieldError("INVALID_TYPE", None, "must be an object definition")], False
    header, errors = load(ObjectSchema(), {k: v for k, v in definition.items() if k != "fields"})
    raw_fields = definition.get("fields", [])
    fields: list[FieldDef] = []
    if not isinstance(raw_fields, list):
        errors.append(FieldError("INVALID_TYPE", "fields", "must be a list of field definitions"))
        raw_fields = []
    for index, raw in enumerate(raw_fields):
        data, problems = load(FieldSchema(), raw)
        errors.extend(e.at(f"fields.{index}") for e in problems)
        if not problems:
            fields.append(_field_def(data, index))
    header_ok = bool(header)
    api_name = header.get("api_name") or ""
    return ObjectDef(
        api_name=api_name, label=header.get("label", ""),
        plural_api_name=header.get("plural_api_name") or (plural(api_name) if api_name else ""),
        plural_label=header.get("plural_label") or header.get("label", ""), description=header.get("description", ""),
        system=system, fields=tuple(fields),
    ), errors, header_ok


def _field_def(data: dict[str, Any], position: int) -> FieldDef:
    return FieldDef(
        api_name=data["api_name"], label=data["label"], type=data["type"], required=data["required"],
        unique=data["unique"], indexed=data["indexed"], tracked=data["tracked"], default=freeze(data["default"]),
        help_text=data["help_text"], description=data["description"], options=freeze(data["options"]), position=position,
    )


def _field_row(field: FieldDef) -> dict[str, Any]:
    return {
        "label": field.label, "type": field.type, "required": field.required, "unique": field.unique,
        "indexed": field.indexed, "tracked": field.tracked, "default": thaw(field.default),
        "help_text": field.help_text, "description": field.description, "options": thaw(field.options),
        "position": field.position,
    }


def _insert_field(conn: Connection, object_api_name: str, field: FieldDef) -> None:
    conn.execute(insert(store.fields).values(object_api_name=object_api_name, api_name=field.api_name, **_field_row(field)))
    if field.type == "auto_number":
        conn.execute(insert(store.auto_numbers).values(
            object_api_name=object_api_name, field_api_name=field.api_name, next_value=field.options["start"]))


def _number_existing_records(conn: Connection, obj: ObjectDef, field: FieldDef) -> None:
    """Records that exist when an auto-number field is added get numbers in creation order."""
    records = table(obj.table_name, column("id"), column("created_at"), column(field.api_name))
    ids = conn.execute(select(records.c.id).order_by(records.c.created_at, records.c.id)).scalars().all()
    if not ids:
        return
    start = field.options["start"]
    conn.execute(
        update(records).where(records.c.id == bindparam("record_id")).values({field.api_name: bindparam("number")}),
        [{"record_id": record_id, "number": render(field.options["format"], start + i)} for i, record_id in enumerate(ids)],
    )
    conn.execute(update(store.auto_numbers).where(
        store.auto_numbers.c.object_api_name == obj.api_name, store.auto_numbers.c.field_api_name == field.api_name,
    ).values(next_value=start + len(ids)))


def _custom_field(obj: ObjectDef, api_name: str) -> FieldDef:
    field = obj.field(api_name)
    if field is None:
        raise NotFound(f"'{obj.api_name}' has no field named '{api_name}'.", field="field")
    if field.system:
        raise InUse(f"'{api_name}' is a system field and cannot be changed.", field="field")
    return field


def _object_header(obj: ObjectDef) -> dict[str, Any]:
    return {k: v for k, v in obj.as_dict().items() if k != "fields"}


def _loaded(schema, data: Any, what: str) -> dict[str, Any]:
    """``data`` loaded by ``schema``, or every problem with it as INVALID_DEFINITION."""
    loaded, errors = load(schema, data)
    if errors:
        raise InvalidDefinition(f"The {what} has problems; fix the listed fields.", errors=errors)
    return loaded


def _refuse_taken(obj: ObjectDef, settings, api_name: str, what: str) -> None:
    """A new business type, rule or layout must not take the api name of another of the object's."""
    if any(setting.api_name == api_name for setting in settings):
        raise InvalidDefinition(f"The {what} has problems; fix the listed fields.", errors=[
            FieldError("DUPLICATE", "api_name", f"'{obj.api_name}' already has a {what} '{api_name}'")])


def _named(obj: ObjectDef, settings, api_name: str, what: str):
    """The setting of ``obj`` (a business type, rule, layout) with this api name, or NOT_FOUND."""
    found = next((setting for setting in settings if setting.api_name == api_name), None)
    if found is None:
        raise NotFound(f"'{obj.api_name}' has no {what} '{api_name}'.", field="api_name")
    return found


def _configuration_using(obj: ObjectDef, field_api_name: str) -> list[str]:
    """The business types, validation rules and layouts of ``obj`` that name a field."""
    users = []
    for kind in obj.business_types:
        if field_api_name in kind.picklists or any(field_api_name in s.required_fields for s in kind.stages):
            users.append(f"business type '{kind.api_name}'")
    users.extend(f"validation rule '{r.api_name}'" for r in obj.validation_rules
                 if r.field == field_api_name or field_api_name in referenced_fields(r.expression))
    users.extend(booking_rules.rules_using(obj, field_api_name))
    users.extend(f"layout '{layout.api_name}'" for layout in obj.layouts
                 if any(item["field"] == field_api_name for section in layout.sections for item in section["fields"]))
    return users


def _settle_together(existing: Mapping[str, ObjectDef], drafts: list[tuple[ObjectDef, list[FieldError], bool]]):
    """The drafts with their formulas and roll-ups settled against each other: a roll-up of a
    roll-up takes its type from the settled one, so this repeats until nothing changes."""
    settled = [(obj, []) for obj, _, _ in drafts]
    for _ in range(len(drafts) + 1):
        names = {**existing, **{obj.api_name: obj for (obj, _), (_, _, ok) in zip(settled, drafts) if ok}}
        again = [_settled_fields(names, draft) for draft, _, _ in drafts]
        if [obj for obj, _ in again] == [obj for obj, _ in settled]:
            break
        settled = again
    return [(obj, problems + more, ok) for (obj, more), (_, problems, ok) in zip(again, drafts)]


def _settled_fields(objects: Mapping[str, ObjectDef], obj: ObjectDef) -> tuple[ObjectDef, list[FieldError]]:
    """``obj`` with its formulas and roll-ups settled, and their problems (at ``fields.N``)."""
    fields, problems = [], []
    for field in obj.fields:
        settled, found = settle_derived(objects, obj, field)
        fields.append(settled)
        problems.extend(e.at(f"fields.{field.position}") for e in found)
    return replace(obj, fields=tuple(fields)), problems


def _referrers_first(catalog: Catalog, names: list[str]) -> list[str]:
    """``names`` in an order that drops each table before those it points at (a cycle: as listed)."""
    pending, ordered = list(names), []
    while pending:
        free = [n for n in pending if not any(o.api_name in pending and o.api_name != n for o, _ in catalog.referrers(n))]
        free = free or pending[:1]
        ordered.extend(free)
        pending = [n for n in pending if n not in free]
    return ordered


def _summarize(conn: Connection, objects: Mapping[str, ObjectDef], parent: ObjectDef, rollup: FieldDef) -> None:
    """Fill a new or changed roll-up on every record of ``parent``."""
    metadata = new_metadata()
    child = objects[rollup.options["child_object"]]
    conn.execute(summary_update(query_table(parent, metadata), query_table(child, metadata), [rollup], None))


def _has_rows(conn: Connection, obj: ObjectDef) -> bool:
    return conn.exec_driver_sql(f'SELECT 1 FROM "{obj.table_name}" LIMIT 1').first() is not None


def _refuse_duplicates(conn: Connection, obj: ObjectDef, field: FieldDef) -> None:
    records = table(obj.table_name, *(column(c) for c in field.field_type.column_names(field)))
    columns = [records.c[c] for c in field.field_type.column_names(field)]
    duplicated = conn.execute(
        select(func.count()).select_from(
            select(*columns).where(columns[0].is_not(None)).group_by(*columns).having(func.count() > 1).subquery()
        )
    ).scalar_one()
    if duplicated:
        raise UnsafeChange(
            f"'{field.api_name}' cannot become unique: {duplicated} value(s) appear on more than one record; make them distinct first.",
            field="unique", duplicated_values=duplicated,
        )


def _object_problems(catalog: Catalog, obj: ObjectDef, names: dict[str, Any], new_objects: list[ObjectDef],
                     only: FieldDef | None = None, check_object: bool = True) -> list[FieldError]:
    """Checks that need the Catalog: names taken or reserved, lookup targets (GraphQL names: :func:`_collision_errors`)."""
    problems: list[FieldError] = []
    creating = only is None
    if creating and check_object:
        if obj.api_name in catalog.objects:
            problems.append(FieldError("DUPLICATE", "api_name", f"an object named '{obj.api_name}' already exists"))
        others = [o for o in catalog.objects.values()] + [o for o in new_objects if o is not obj]
        taken = {}
        for other in others:
            for name in (other.api_name, other.plural_api_name):
                taken[name] = other.api_name
        if obj.plural_api_name == obj.api_name:
            problems.append(FieldError("DUPLICATE", "plural_api_name", "must differ from api_name"))
        for key in ("api_name", "plural_api_name"):
            name = getattr(obj, key)
            clash = taken.get(name)
            if clash and not (key == "api_name" and name in catalog.objects):
                problems.append(FieldError("DUPLICATE", key, f"'{name}' is already used by object '{clash}'"))
    seen: set[str] = set()
    for field in obj.fields:
        path = f"fields.{field.position}" if creating else None
        at = (lambda e, p=path: e.at(p) if p else e)
        checking = creating or field is only
        if checking and field.api_name in SYSTEM_FIELD_NAMES:
            problems.append(at(FieldError("RESERVED_NAME", "api_name", f"'{field.api_name}' is a system field name")))
        elif checking and field.api_name in seen:
            problems.append(at(FieldError("DUPLICATE", "api_name", f"a field named '{field.api_name}' already exists")))
        seen.add(field.api_name)
        if checking and field.target and field.target not in names:
            problems.append(at(FieldError("UNKNOWN_TARGET", "options.target", f"there is no object named '{field.target}'")))
    return problems


def _new_drafts(catalog: Catalog, drafts: list[tuple[ObjectDef, list[FieldError], bool]],
                definitions: list[Any]) -> dict[str, tuple[int, ObjectDef, bool]]:
    """The objects a creation adds, by name: their index, draft and whether a plural was given."""
    return {
        obj.api_name: (i, obj, isinstance(definition, dict) and bool(definition.get("plural_api_name")))
        for i, ((obj, _, header_ok), definition) in enumerate(zip(drafts, definitions))
        if header_ok and obj.api_name not in catalog.objects
    }


def _path_in_definitions(created: Mapping[str, tuple[int, ObjectDef, bool]], several: bool) -> Callable[[Source], str | None]:
    """Where a GraphQL name's source sits in the definitions being created (``1.fields.2.api_name``);
    a defaulted plural is blamed on the ``api_name`` it comes from."""
    def path_of(source: Source) -> str | None:
        if source.object not in created:
            return None
        index, obj, plural_given = created[source.object]
        path = "api_name" if source.setting == "plural_api_name" and not plural_given else source.setting
        if source.field is not None:
            field = obj.fields_by_name[source.field]
            if field.system:
                return None
            path = f"fields.{field.position}.{path}"
        return f"{index}.{path}" if several else path
    return path_of


def _path_in_field(obj: ObjectDef, field: FieldDef) -> Callable[[Source], str | None]:
    """The setting of the field being created or changed that gives a GraphQL name, if it is the source."""
    return lambda source: source.setting if (source.object, source.field) == (obj.api_name, field.api_name) else None


def _collision_errors(catalog: Catalog, after: Mapping[str, ObjectDef], path_of: Callable[[Source], str | None],
                      known: list[FieldError]) -> list[FieldError]:
    """NAME_COLLISION for the GraphQL names a change would make collide, one per setting to fix and party
    it collides with. Only collisions the change takes part in (``path_of`` names one of its settings)
    and that did not exist before are its doing; those touching a setting already reported follow from
    that problem."""
    involved: list[tuple[Collision, list[str | None]]] = []
    for collision in find_collisions(after):
        paths = [path_of(s) for s in collision.sources]
        if any(paths):
            involved.append((collision, paths))
    if not involved:
        return []
    existing = set(catalog.memo(("graphql_collisions",), lambda: find_collisions(catalog.objects)))
    reported = {e.field for e in known}
    groups: dict[tuple[str, frozenset[str], bool], list[Collision]] = defaultdict(list)
    for collision, paths in involved:
        blamed = [p for p in dict.fromkeys(paths) if p]
        if collision in existing or reported.intersection(blamed):
            continue
        for path in blamed:
            others = frozenset(s.what for s, p in zip(collision.sources, paths) if p != path)
            groups[(path, others, collision.reserved)].append(collision)
    return [_collision_error(path, group) for (path, _, _), group in groups.items()]


def _collision_error(path: str, group: list[Collision]) -> FieldError:
    more = len(group) - 1
    message = group[0].message + (f" (and {more} more GraphQL name{'s' if more > 1 else ''})" if more else "")
    return FieldError("NAME_COLLISION", path, message, {"graphql_names": [c.name for c in group]})
