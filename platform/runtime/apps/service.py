"""Installing, upgrading and uninstalling apps, each all or nothing.

Every step goes through the metadata, security and record services (the same checks an
administrator meets), joined into one transaction: a problem anywhere rolls back everything, and
is reported at its path in the manifest. The platform records what each app owns (``lc_app_item``,
``lc_app_record``). An upgrade applies the difference between the installed manifest and the new
one, setting by setting, so what administrators changed and the manifest did not survives;
uninstalling removes what the app owns and refuses while another app depends on it.
"""
from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, delete, insert, inspect, select, update

from ...metadata import store as meta_store
from ...metadata.actors import SYSTEM_ACTOR, Actor
from ...metadata.database import WRITE
from ...metadata.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InUse,
    InvalidDefinition,
    LowcodeError,
    NotFound,
)
from ...metadata.service import MetadataService
from ..records import RecordService
from ..security.service import SecurityService
from . import manifests, store
from .manifests import KINDS, Manifest

LATE_KINDS = ("automations",)
"""Settings that may name the app's roles and seed records: put after those, removed before them."""

ITEM_KINDS = {"business_types": "business_type", "validation_rules": "validation_rule", "booking_rules": "booking_rule",
              "layouts": "layout", "automations": "automation"}


class AppService:
    def __init__(self, metadata: MetadataService, security: SecurityService, records: RecordService, apps_root: Path):
        self.metadata = metadata
        self.security = security
        self.records = records
        self.apps_root = apps_root
        self.engine = metadata.engine

    def install(self) -> None:
        """Create the app tables when missing."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            store.apps_metadata.create_all(conn)

    # -- reading ------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """Every app found under the apps folder or installed, with its installed and available versions."""
        with self.engine.connect() as conn:
            installed = {row.name: row for row in conn.execute(select(store.apps))} if inspect(conn).has_table(store.apps.name) else {}
        names = sorted(set(manifests.available(self.apps_root)) | set(installed))
        found = []
        for name in names:
            row = installed.get(name)
            try:
                manifest = manifests.load(self.apps_root / name).data
            except (LowcodeError, StopIteration):
                manifest = None
            described = row.manifest if row else manifest or {}
            found.append({"name": name, "title": described.get("title", name), "installed_version": row.version if row else None,
                          "available_version": manifest["version"] if manifest else None,
                          "installed_at": row.installed_at if row else None,
                          "depends": [d["app"] for d in described.get("depends") or []]})
        return found

    # -- changing -----------------------------------------------------------------------------
    def install_app(self, actor: Actor, name_or_folder: str) -> dict[str, Any]:
        _require_admin(actor)
        manifest = manifests.load(manifests.find(self.apps_root, name_or_folder))
        with self._transaction(actor) as step:
            if step.installed(manifest.name) is not None:
                raise Conflict(f"'{manifest.name}' is already installed; upgrade it instead.", field="app")
            step.check_depends(manifest)
            now = _now()
            step.conn.execute(insert(store.apps).values(name=manifest.name, version=manifest.version, title=manifest.data["title"],
                                                        folder=str(manifest.folder), manifest=manifest.data, installed_at=now, updated_at=now))
            step.apply(None, manifest)
            step.run_on_install(manifest, upgrading_from=None)
        self.activate(manifest)
        return self._summary(manifest.name)

    def upgrade_app(self, actor: Actor, name_or_folder: str) -> dict[str, Any]:
        _require_admin(actor)
        manifest = manifests.load(manifests.find(self.apps_root, name_or_folder))
        with self._transaction(actor) as step:
            row = step.installed(manifest.name)
            if row is None:
                raise NotFound(f"'{manifest.name}' is not installed; install it first.", field="app")
            step.check_depends(manifest)
            step.apply(Manifest(Path(row.folder), row.manifest), manifest)
            step.conn.execute(update(store.apps).where(store.apps.c.name == manifest.name).values(
                version=manifest.version, title=manifest.data["title"], folder=str(manifest.folder), manifest=manifest.data,
                updated_at=_now()))
            step.run_on_install(manifest, upgrading_from=row.version)
        self.activate(manifest)
        return self._summary(manifest.name)

    def uninstall_app(self, actor: Actor, name: str, *, export: bool = False) -> dict[str, Any]:
        """Remove what the app owns; with ``export``, the answer holds its records as they were
        (``exported``: per object, and the values of the fields it added elsewhere)."""
        _require_admin(actor)
        with self._transaction(actor) as step:
            row = step.installed(name)
            if row is None:
                raise NotFound(f"'{name}' is not installed.", field="app")
            dependents = [r.name for r in step.conn.execute(select(store.apps))
                          if any(d["app"] == name for d in r.manifest.get("depends") or [])]
            if dependents:
                raise InUse(f"'{name}' is needed by {', '.join(sorted(dependents))}; uninstall those first.", field="app", dependents=sorted(dependents))
            installed = Manifest(Path(row.folder), row.manifest)
            exported = step.export(installed) if export else None
            step.apply(installed, None)
            for owned in (store.app_records, store.app_items):
                step.conn.execute(delete(owned).where(owned.c.app_name == name))
            step.conn.execute(delete(store.apps).where(store.apps.c.name == name))
        self.records.hooks.forget(name)
        return {"name": name, "version": row.version, "exported": exported}

    # -- hooks --------------------------------------------------------------------------------
    def activate_installed(self) -> None:
        """Register the hooks of every installed app (at start-up)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(store.apps.name):
                return
            rows = conn.execute(select(store.apps)).all()
        for row in rows:
            self.activate(Manifest(Path(row.folder), row.manifest))

    def activate(self, manifest: Manifest) -> None:
        module = hooks_module(manifest)
        if module is not None and hasattr(module, "register"):
            self.records.hooks.forget(manifest.name)
            module.register(self.records.hooks.of(manifest.name))

    def _summary(self, name: str) -> dict[str, Any]:
        return next(app for app in self.list() if app["name"] == name)

    @contextmanager
    def _transaction(self, actor: Actor) -> Iterator["_Step"]:
        """One transaction for the whole change, queued behind (and ahead of) every other metadata
        change by the version row's lock, so two installs of one app cannot both find it missing."""
        with self.metadata.transaction() as conn:
            conn.execute(select(meta_store.meta_version.c.version).with_for_update())
            yield _Step(conn, actor, self.metadata.joined(conn), self.security.joined(conn), self.records.joined(conn))
        self.security.policies.announce()


def hooks_module(manifest: Manifest):
    """The app's hooks module, loaded from its folder (``None`` without one)."""
    name = manifest.data.get("hooks")
    if not name:
        return None
    module_name = f"lowcode_app_{manifest.name}_{Path(name).stem}"
    spec = importlib.util.spec_from_file_location(module_name, manifest.folder / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class _Step:
    """One install, upgrade or uninstall inside its transaction."""

    def __init__(self, conn: Connection, actor: Actor, metadata: MetadataService, security: SecurityService, records: RecordService):
        self.conn, self.actor, self.metadata, self.security, self.records = conn, actor, metadata, security, records

    def installed(self, name: str):
        return self.conn.execute(select(store.apps).where(store.apps.c.name == name).with_for_update()).first()

    def check_depends(self, manifest: Manifest) -> None:
        errors = []
        for i, depend in enumerate(manifest.section("depends")):
            row = self.installed(depend["app"])
            if row is None:
                errors.append(FieldError("MISSING_DEPENDENCY", f"depends.{i}", f"needs the app '{depend['app']}'; install it first"))
            elif not manifests.satisfies(row.version, depend.get("version")):
                errors.append(FieldError("MISSING_DEPENDENCY", f"depends.{i}.version",
                                         f"needs '{depend['app']}' {depend['version']}, but {row.version} is installed"))
        if errors:
            raise InvalidDefinition(f"'{manifest.name}' needs other apps first.", errors=errors)

    # -- the difference between two manifests (None: nothing installed / nothing left) --------
    def apply(self, old: Manifest | None, new: Manifest | None) -> None:
        app = (new or old).name
        before, after = (old.data if old else {}), (new.data if new else {})
        objects_before, objects_after = _by(before, "objects", _object_key), _by(after, "objects", _object_key)
        fields_before, fields_after = _all_fields(before), _all_fields(after)
        settings = {kind: (_by(before, kind, _setting_key), _by(after, kind, _setting_key)) for kind in (*KINDS, *LATE_KINDS)}
        roles_before, roles_after = _by(before, "roles", _role_key), _by(after, "roles", _role_key)

        added_objects = [key for key in objects_after if key not in objects_before]
        if added_objects:
            definitions = [objects_after[key][1] for key in added_objects]
            positions = [objects_after[key][0] for key in added_objects]
            with _at("objects", positions=positions, several=len(definitions) > 1):
                self.metadata.create_objects(self.actor, definitions)
            for key in added_objects:
                self._own(app, "object", "", key)
        for key in objects_after.keys() & objects_before.keys():
            changes = _changed(_header(objects_before[key][1]), _header(objects_after[key][1]))
            if changes:
                with _at(f"objects.{objects_after[key][0]}"):
                    self.metadata.update_object(self.actor, key, changes)
        for key, (path, definition) in fields_after.items():
            obj, name = key
            if key not in fields_before:
                if obj in objects_after and obj not in objects_before or obj in added_objects:
                    continue
                with _at(path):
                    self.metadata.create_field(self.actor, obj, _without(definition, "object"))
                if obj not in objects_after:
                    self._own(app, "field", obj, name)
            else:
                changes = _changed(_without(fields_before[key][1], "object"), _without(definition, "object"))
                if changes:
                    with _at(path):
                        self.metadata.update_field(self.actor, obj, name, changes)
        self._put_settings(app, settings, KINDS)
        for key, (position, role) in roles_after.items():
            self._put_role(app, position, role, roles_before.get(key, (None, None))[1])
        self._seed(app, before, after)
        self._put_settings(app, settings, LATE_KINDS)

        self._remove_settings(app, settings, LATE_KINDS, objects_before, objects_after)
        for key in roles_before.keys() - roles_after.keys():
            self._remove_role(key)
        self._remove_settings(app, settings, KINDS, objects_before, objects_after)
        for key in fields_before.keys() - fields_after.keys():
            obj, name = key
            if obj in objects_before and obj not in objects_after:
                continue
            with _at(fields_before[key][0], code="CANNOT_REMOVE"):
                self.metadata.delete_field(self.actor, obj, name)
            self._disown(app, "field", obj, name)
        removed = sorted(objects_before.keys() - objects_after.keys(), key=lambda name: objects_before[name][0])
        if removed:
            with _at(f"objects.{objects_before[removed[0]][0]}" if len(removed) == 1 else "objects", code="CANNOT_REMOVE"):
                self.metadata.delete_objects(self.actor, removed)
            for key in removed:
                self._disown(app, "object", "", key)

    def _put_settings(self, app: str, settings: dict, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            old_items, new_items = settings[kind]
            for key, (position, definition) in new_items.items():
                path = f"{kind}.{position}"
                if key not in old_items:
                    with _at(path):
                        getattr(self.metadata, f"create_{ITEM_KINDS[kind]}")(self.actor, key[0], _without(definition, "object"))
                    self._own(app, ITEM_KINDS[kind], *key)
                else:
                    changes = _changed(_without(old_items[key][1], "object"), _without(definition, "object"))
                    changes.pop("api_name", None)
                    if changes:
                        with _at(path):
                            getattr(self.metadata, f"update_{ITEM_KINDS[kind]}")(self.actor, key[0], key[1], changes)

    def _remove_settings(self, app: str, settings: dict, kinds: tuple[str, ...], objects_before, objects_after) -> None:
        for kind in reversed(kinds):
            old_items, new_items = settings[kind]
            for key in old_items.keys() - new_items.keys():
                if key[0] in objects_after or key[0] not in objects_before:
                    with _at(f"{kind}.{old_items[key][0]}", code="CANNOT_REMOVE"):
                        getattr(self.metadata, f"delete_{ITEM_KINDS[kind]}")(self.actor, *key)
                self._disown(app, ITEM_KINDS[kind], *key)

    def _put_role(self, app: str, position: int, role: dict[str, Any], old: dict[str, Any] | None) -> None:
        name, path = role["name"], f"roles.{position}"
        if old is None:
            with _at(path):
                self.security.create_role(self.actor, name, role["label"], role.get("description", ""), role.get("administrator", False))
            self._own(app, "role", "", name)
        else:
            changes = {k: role.get(k) for k in ("label", "description", "administrator") if role.get(k) != old.get(k)}
            if changes:
                with _at(path):
                    self.security.update_role(self.actor, name, **changes)
        old_grants = {g["object"]: g for g in (old or {}).get("objects") or []}
        for j, grant in enumerate(role.get("objects") or []):
            if old_grants.get(grant["object"]) != grant:
                with _at(f"{path}.objects.{j}"):
                    self.security.set_object_grant(self.actor, name, grant["object"], grant["actions"], grant.get("read_scope", "own"),
                                                   grant.get("write_scope", "own"), grant.get("business_types"))
        for gone in old_grants.keys() - {g["object"] for g in role.get("objects") or []}:
            self.security.set_object_grant(self.actor, name, gone, [], "own", "own")
        old_fields = {(g["object"], g["field"]): g for g in (old or {}).get("fields") or []}
        for j, grant in enumerate(role.get("fields") or []):
            if old_fields.get((grant["object"], grant["field"])) != grant:
                with _at(f"{path}.fields.{j}"):
                    self.security.set_field_grant(self.actor, name, grant["object"], grant["field"], grant["access"])
        for gone in old_fields.keys() - {(g["object"], g["field"]) for g in role.get("fields") or []}:
            self.security.set_field_grant(self.actor, name, gone[0], gone[1], "edit")

    def _remove_role(self, name: str) -> None:
        for membership in self.security.memberships(self.actor):
            if membership["role"] == name:
                self.security.remove_membership(self.actor, membership["user_id"], membership["unit_id"], name)
        with _at("roles", code="CANNOT_REMOVE"):
            self.security.delete_role(self.actor, name)
        self.conn.execute(delete(store.app_items).where(store.app_items.c.kind == "role", store.app_items.c.api_name == name))

    def _seed(self, app: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        """New seed records are created; changed ones get the values the manifest changed, where
        nobody changed them since; records of removed keys stay (they are data)."""
        owned = {row.key: row for row in self.conn.execute(select(store.app_records).where(store.app_records.c.app_name == app))}
        ids = {key: row.record_id for key, row in owned.items()}
        old_items = {item["key"]: item for item in before.get("seed") or []}
        for i, item in enumerate(after.get("seed") or []):
            key, path = item["key"], f"seed.{i}"
            values = {name: ids[value["$ref"]] if _is_ref(value) else value for name, value in item["values"].items()}
            if key not in ids:
                with _at(f"{path}.values"):
                    record = self.records.create(SYSTEM_ACTOR, item["object"], values)
                ids[key] = record["id"]
                self.conn.execute(insert(store.app_records).values(app_name=app, key=key, object_api_name=item["object"], record_id=record["id"]))
                continue
            old = old_items.get(key)
            if old is None or old["values"] == item["values"]:
                continue
            with _at(f"{path}.values"):
                current = self.records.get(SYSTEM_ACTOR, item["object"], ids[key])
                untouched = {name: value for name, value in values.items()
                             if name not in old["values"] or _same(current.get(name), old["values"][name], ids)}
                changes = {name: value for name, value in untouched.items() if old["values"].get(name) != item["values"][name]}
                if changes:
                    self.records.update(SYSTEM_ACTOR, item["object"], ids[key], changes)
        if not after:
            for key, row in owned.items():
                if row.object_api_name not in {o["api_name"] for o in before.get("objects") or []}:
                    try:
                        self.records.hard_delete(SYSTEM_ACTOR, row.object_api_name, row.record_id)
                    except NotFound:
                        pass

    def export(self, manifest: Manifest) -> dict[str, Any]:
        """Every record of the app's objects, and the values of the fields it added elsewhere."""
        exported: dict[str, Any] = {"app": manifest.name, "version": manifest.version, "exported_at": _now().isoformat(), "objects": {}}
        for obj in manifest.section("objects"):
            exported["objects"][obj["api_name"]] = self.records.every(SYSTEM_ACTOR, obj["api_name"])
        for field in manifest.section("fields"):
            rows = self.records.every(SYSTEM_ACTOR, field["object"], fields=["id", field["api_name"]])
            exported.setdefault("fields", {}).setdefault(field["object"], {})[field["api_name"]] = {r["id"]: r[field["api_name"]] for r in rows}
        return exported

    def run_on_install(self, manifest: Manifest, upgrading_from: str | None) -> None:
        module = hooks_module(manifest)
        if module is not None and hasattr(module, "on_install"):
            with _at("hooks", code="HOOK_FAILED"):
                try:
                    module.on_install(InstallContext(self.conn, self.actor, self.records, self.security, manifest.version,
                                                     upgrading_from))
                except LowcodeError:
                    raise
                except Exception as exc:  # an app's code failing must undo the install, and say why
                    raise InvalidDefinition(f"The app's on_install hook failed: {exc}") from exc

    def _own(self, app: str, kind: str, obj: str, name: str) -> None:
        self.conn.execute(insert(store.app_items).values(app_name=app, kind=kind, object_api_name=obj, api_name=name))

    def _disown(self, app: str, kind: str, obj: str, name: str) -> None:
        items = store.app_items
        self.conn.execute(delete(items).where(items.c.app_name == app, items.c.kind == kind, items.c.object_api_name == obj,
                                              items.c.api_name == name))


class InstallContext:
    """What an app's ``on_install(context)`` gets: the transaction's record and security services, and versions."""

    def __init__(self, conn: Connection, actor: Actor, records: RecordService, security: SecurityService, version: str,
                 upgrading_from: str | None):
        self.conn, self.actor, self.records, self.security = conn, actor, records, security
        self.version, self.upgrading_from = version, upgrading_from


@contextmanager
def _at(path: str, *, positions: list[int] | None = None, several: bool = False, code: str | None = None) -> Iterator[None]:
    """Report a service's refusal at ``path`` in the manifest (its own paths below it)."""
    try:
        yield
    except LowcodeError as error:
        errors = [FieldError(e.code, _placed(path, e.field, positions, several), e.message, e.ctx) for e in error.errors]
        if not errors:
            errors = [FieldError(code or error.code, path, error.message, error.ctx)]
        raise InvalidDefinition(f"The app cannot be applied: {error.message}", errors=errors) from None


def _placed(path: str, field: str | None, positions: list[int] | None, several: bool) -> str:
    if positions is None:
        return f"{path}.{field}" if field else path
    if not several:
        return f"{path}.{positions[0]}" + (f".{field}" if field else "")
    index, _, rest = (field or "").partition(".")
    if index.isdigit():
        return f"{path}.{positions[int(index)]}" + (f".{rest}" if rest else "")
    return f"{path}.{field}" if field else path


def _by(data: dict[str, Any], key: str, identity: Callable[[dict[str, Any]], Any]) -> dict[Any, tuple[int, dict[str, Any]]]:
    return {identity(item): (i, item) for i, item in enumerate(data.get(key) or [])}


def _object_key(item):
    return item["api_name"]


def _setting_key(item):
    return item["object"], item["api_name"]


def _role_key(item):
    return item["name"]


def _all_fields(data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """Every field the manifest defines (on its objects and on others'), by (object, field): its path and definition."""
    found = {}
    for i, obj in enumerate(data.get("objects") or []):
        for j, field in enumerate(obj.get("fields") or []):
            found[(obj["api_name"], field["api_name"])] = (f"objects.{i}.fields.{j}", field)
    for i, field in enumerate(data.get("fields") or []):
        found[(field["object"], field["api_name"])] = (f"fields.{i}", field)
    return found


def _header(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj.get(k) for k in ("label", "plural_label", "description") if k in obj}


def _changed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The settings ``new`` gives a value other than ``old``'s (only those are applied)."""
    return {k: v for k, v in new.items() if old.get(k) != v}


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"$ref"}


def _same(current: Any, seeded: Any, ids: dict[str, str]) -> bool:
    if _is_ref(seeded):
        return current == ids.get(seeded["$ref"])
    if isinstance(current, (datetime,)) or hasattr(current, "isoformat"):
        return current.isoformat() == seeded
    if current is not None and not isinstance(current, (str, bool, int, float, list, dict)):
        return str(current) == str(seeded)
    return current == seeded


def _require_admin(actor: Actor) -> None:
    if actor.is_system or (actor.access is not None and actor.access.administrator):
        return
    raise Forbidden("Only administrators install, upgrade and uninstall apps.")


def _now() -> datetime:
    return datetime.now(timezone.utc)
