"""Where permission decisions plug into the record service.

Every read and write asks the policy two things: may this actor perform this action on this object
at all (:meth:`AccessPolicy.authorize`), and which rows may it touch (:meth:`AccessPolicy.row_filter`),
an SQL predicate added to the statement itself. Rows are never filtered in Python.
"""
from __future__ import annotations

from typing import Protocol

from sqlalchemy import Table, true
from sqlalchemy.sql.elements import ColumnElement

from ..metadata.actors import Actor
from ..metadata.definitions import ObjectDef

ACTIONS = ("read", "create", "update", "delete", "restore")


class AccessPolicy(Protocol):
    def authorize(self, actor: Actor, obj: ObjectDef, action: str) -> None:
        """Raise :class:`~lowcode.metadata.errors.Forbidden` when ``actor`` may not ``action`` ``obj``."""

    def row_filter(self, actor: Actor, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        """The SQL predicate selecting the rows of ``obj`` that ``actor`` may ``action``."""


class OpenAccess:
    """Everyone may do everything: the policy until users, roles and scopes exist."""

    def authorize(self, actor: Actor, obj: ObjectDef, action: str) -> None:
        return None

    def row_filter(self, actor: Actor, obj: ObjectDef, table: Table, action: str) -> ColumnElement[bool]:
        return true()
