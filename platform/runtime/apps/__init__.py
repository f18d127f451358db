"""Apps: folders under ``apps/`` with a manifest, installed, upgraded and uninstalled as a whole."""
from .manifests import Manifest, schema
from .service import AppService

__all__ = ["AppService", "Manifest", "schema"]
