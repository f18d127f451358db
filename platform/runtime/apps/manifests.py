"""App manifests: found in an app's folder, checked against the JSON Schema the platform ships and
against themselves, every problem reported at once with its path in the manifest."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml
from jsonschema import Draft202012Validator
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ...metadata.errors import FieldError, InvalidDefinition, NotFound

MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")
KINDS = ("business_types", "validation_rules", "booking_rules", "layouts")
"""Settings an app makes on an object (its own or another's), keyed by object and api name."""


@dataclass(frozen=True)
class Manifest:
    folder: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def version(self) -> str:
        return self.data["version"]

    def section(self, key: str) -> list[dict[str, Any]]:
        return self.data.get(key) or []


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("manifest.schema.json").read_text(encoding="utf-8"))


def find(apps_root: Path, name_or_folder: str) -> Path:
    """The folder of an app: ``name`` under ``apps_root``, or a folder holding a manifest."""
    candidates = [Path(name_or_folder)] if ("/" in name_or_folder or "\\" in name_or_folder) else []
    candidates.append(apps_root / name_or_folder)
    for folder in candidates:
        if any((folder / name).is_file() for name in MANIFEST_NAMES):
            return folder.resolve()
    raise NotFound(f"There is no app '{name_or_folder}' (a folder with {' or '.join(MANIFEST_NAMES)}) in {apps_root.name}/.", field="app")


def available(apps_root: Path) -> list[str]:
    """The names of the app folders under ``apps_root``."""
    if not apps_root.is_dir():
        return []
    return sorted(p.name for p in apps_root.iterdir() if any((p / name).is_file() for name in MANIFEST_NAMES))


def load(folder: Path) -> Manifest:
    """The app's manifest, or INVALID_DEFINITION listing every problem (``objects.1.fields.0.type``)."""
    path = next(folder / name for name in MANIFEST_NAMES if (folder / name).is_file())
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidDefinition(f"The manifest {path.name} cannot be read.", errors=[FieldError("UNREADABLE", None, problem)]) from None
    errors = [FieldError("SCHEMA", ".".join(str(p) for p in error.absolute_path) or None, error.message)
              for error in sorted(Draft202012Validator(schema()).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]
    if not errors:
        errors = list(_consistency_problems(data, folder))
    if errors:
        raise InvalidDefinition(f"The manifest of '{folder.name}' has problems; fix the listed parts.", errors=errors)
    return Manifest(folder, data)


def _consistency_problems(data: dict[str, Any], folder: Path) -> Iterator[FieldError]:
    if data["name"] != folder.name:
        yield FieldError("INVALID_VALUE", "name", f"must be the app's folder name '{folder.name}'")
    for i, depend in enumerate(data.get("depends") or []):
        try:
            SpecifierSet(depend.get("version", ""))
        except InvalidSpecifier:
            yield FieldError("INVALID_VALUE", f"depends.{i}.version", "is not a version range such as \">=1.0.0,<2\"")
    yield from _duplicates(data, "objects", lambda item: item["api_name"])
    for i, obj in enumerate(data.get("objects") or []):
        yield from _duplicates(obj, "fields", lambda item: item["api_name"], f"objects.{i}.")
    yield from _duplicates(data, "fields", lambda item: (item["object"], item["api_name"]))
    for kind in (*KINDS, "automations"):
        yield from _duplicates(data, kind, lambda item: (item["object"], item["api_name"]))
    yield from _duplicates(data, "roles", lambda item: item["name"])
    yield from _duplicates(data, "seed", lambda item: item["key"])
    keys = [item["key"] for item in data.get("seed") or []]
    for i, item in enumerate(data.get("seed") or []):
        for name, value in item["values"].items():
            if isinstance(value, dict) and set(value) == {"$ref"} and value["$ref"] not in keys[:i]:
                later = " comes later: a record may refer only to records before it" if value["$ref"] in keys else ""
                yield FieldError("UNKNOWN_KEY", f"seed.{i}.values.{name}", f"no seed record has the key '{value['$ref']}'" + (later and f"; '{value['$ref']}'{later}"))
    hooks = data.get("hooks")
    if hooks and not (folder / hooks).is_file():
        yield FieldError("NOT_FOUND", "hooks", f"there is no {hooks} in the app's folder")


def _duplicates(data: dict[str, Any], key: str, identity, prefix: str = "") -> Iterator[FieldError]:
    seen: dict[Any, int] = {}
    for i, item in enumerate(data.get(key) or []):
        found = identity(item)
        if found in seen:
            yield FieldError("DUPLICATE", f"{prefix}{key}.{i}", f"repeats {key}.{seen[found]}")
        else:
            seen[found] = i


def satisfies(version: str, wanted: str | None) -> bool:
    return not wanted or SpecifierSet(wanted).contains(version, prereleases=True)
