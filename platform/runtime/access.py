"""Where permission decisions plug into the record service.

Every read and write asks the policy two things: may this actor perform this action on this object
at all (:meth:`AccessPolicy.authorize`), and which rows may it touch (:meth:`AccessPolicy.row_filter`),
an SQL predicate added to the statement itself. Rows are never filtered in Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Table, true
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.actors import Actor
from ..metadata.definitions import ObjectDef

ACTIONS = ("read", "create", "update", "delete", "export", "transfer", "restore", "reopen")


@dataclass(frozen=True)
class FieldAccess:
    """Fields of one object the caller may not read (``hidden``) or not write (``read_only``,
    which includes the hidden ones)."""

    hidden: frozenset[str] = frozenset()
    read_only: frozenset[str] = frozenset()


class AccessPolicy(Protocol):
    def authorize(self, actor: Actor, obj: ObjectDef, action: str) -> None:
        """Raise :class:`~lowcode.metadata.errors.Forbidden` when ``actor`` may not ``action`` ``obj``."""

    def row_filter(self, actor: Actor, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        """The SQL predicate selecting the rows of ``obj`` that ``actor`` may ``action``."""

    def field_access(self, actor: Actor, obj: ObjectDef) -> FieldAccess:
        """The fields of ``obj`` that ``actor`` may not read or not write."""

    def owning_unit(self, actor: Actor, obj: ObjectDef, business_type: str | None = None) -> str | None:
        """The org unit a record of ``obj`` (of ``business_type``) created by ``actor`` belongs to unless one is given."""

    def home_unit(self, user_id: str, obj: ObjectDef, business_type: str | None = None) -> str | None:
        """The org unit a record of ``obj`` (of ``business_type``) moves to when it is transferred to ``user_id``."""


class OpenAccess:
    """Everyone may do everything: for embedding the record service without users (and in tests of it)."""

    def authorize(self, actor: Actor, obj: ObjectDef, action: str) -> None:
        return None

    def row_filter(self, actor: Actor, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        return true()

    def field_access(self, actor: Actor, obj: ObjectDef) -> FieldAccess:
        return FieldAccess()

    def owning_unit(self, actor: Actor, obj: ObjectDef, business_type: str | None = None) -> str | None:
        return None

    def home_unit(self, user_id: str, obj: ObjectDef, business_type: str | None = None) -> str | None:
        return None
