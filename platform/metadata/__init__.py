"""Definitions and their storage: objects, fields, field types, the Catalog and the metadata service."""
from .actors import SYSTEM_ACTOR, Actor
from .catalog import Catalog, CatalogCache
from .definitions import FieldDef, ObjectDef
from .service import MetadataService

__all__ = ["SYSTEM_ACTOR", "Actor", "Catalog", "CatalogCache", "FieldDef", "ObjectDef", "MetadataService"]
