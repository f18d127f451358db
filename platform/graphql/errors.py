"""GraphQL errors as the spec shapes them, with the platform's codes in ``extensions``.

Platform errors keep their code (``VALIDATION_FAILED`` with a path per problem, ``NOT_FOUND``,
``CONFLICT``, ...); problems with the request itself are ``BAD_QUERY``; anything unexpected is
``INTERNAL``, logged here and never shown to the client beyond that.
"""
from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from ..metadata.errors import FieldError, Forbidden, LowcodeError

log = logging.getLogger("lowcode.graphql")

FORBIDDEN_USES = "The request uses fields you may not read; remove the listed parts."
"""The message of a refused filter, sort, grouping or measure (the record service's words too)."""


class QueryRejected(LowcodeError):
    """The request breaks a rule of the API (a limit, a malformed body) rather than of the data."""

    code = "BAD_QUERY"
    http_status = 400


class ForbiddenUse(Forbidden):
    """Filters or sorts on fields the caller may not read, found by the planner below the root
    field (``lines.filter.amount``): its paths are GraphQL names already."""

    in_graphql_names = True


def forbidden_uses(errors: list[FieldError]) -> ForbiddenUse:
    return ForbiddenUse(FORBIDDEN_USES, errors=errors)


def unreadable(label: str, object_name: str, field_name: str) -> Forbidden:
    """The error of one selected field the caller may not read (the field resolves to null)."""
    return Forbidden(f"You may not read the field '{field_name}' of {label} records.", field=field_name, object=object_name)


def bad_query(message: str, **extensions: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": "BAD_QUERY", **extensions}}


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One error of a response; the original exception decides the code."""
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        formatted["path"] = list(error.path)
    original = error.original_error
    if isinstance(original, LowcodeError):
        body = original.as_dict()
        formatted["message"] = body.pop("message")
        formatted["extensions"] = body
    elif isinstance(original, GraphQLError) or (original is None and not error.path):
        formatted["extensions"] = {"code": "BAD_QUERY"}
    else:
        if original is not None:
            log.error("Unexpected error at %s", error.path, exc_info=original)
        formatted["message"] = "An internal error occurred; it was logged for the operators."
        formatted["extensions"] = {"code": "INTERNAL"}
    return formatted
