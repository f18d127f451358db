"""Behaviour over records: the record service, access policies and the running platform."""
from .access import AccessPolicy, OpenAccess
from .records import Page, RecordService
from .runtime import Runtime

__all__ = ["AccessPolicy", "OpenAccess", "Page", "RecordService", "Runtime"]
