"""The scalars of the API beyond GraphQL's own.

Parsing is lenient on purpose: a wrong date or number reaches the record service, which answers
with a ``VALIDATION_FAILED`` error naming the field, instead of a generic variable error.
"""
from __future__ import annotations

import datetime as dt
import decimal

import graphene

from graphql import GraphQLError
from graphql.language import ast
from graphql.utilities import value_from_ast_untyped


class Decimal(graphene.Scalar):
    """An exact number, written as a string ("1234.50"); inputs also accept JSON numbers."""

    @staticmethod
    def serialize(value):
        return str(value)

    @staticmethod
    def parse_value(value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float, decimal.Decimal)):
            raise GraphQLError("Decimal must be a number or a numeric string such as \"12.50\".")
        return repr(value) if isinstance(value, float) else str(value)

    @staticmethod
    def parse_literal(node, _variables=None):
        if isinstance(node, (ast.StringValueNode, ast.IntValueNode, ast.FloatValueNode)):
            return node.value
        raise GraphQLError("Decimal must be a number or a numeric string such as \"12.50\".")


def _iso_text(name: str, description: str, example: str):
    """A scalar written as ISO 8601 text; checking the text itself is the record service's job."""
    message = f"{name} must be a string such as {example}."

    def serialize(value):
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)

    def parse_value(value):
        if not isinstance(value, str):
            raise GraphQLError(message)
        return value

    def parse_literal(node, _variables=None):
        if isinstance(node, ast.StringValueNode):
            return node.value
        raise GraphQLError(message)

    return type(name, (graphene.Scalar,), {
        "__doc__": description, "serialize": staticmethod(serialize),
        "parse_value": staticmethod(parse_value), "parse_literal": staticmethod(parse_literal),
    })


Date = _iso_text("Date", "A calendar day, written YYYY-MM-DD.", "2026-03-01")
DateTime = _iso_text("DateTime", "An instant in ISO 8601 with an offset; returned in UTC.", "2026-03-01T09:30:00+08:00")


class JSON(graphene.Scalar):
    """Any JSON value."""

    @staticmethod
    def serialize(value):
        return value

    @staticmethod
    def parse_value(value):
        return value

    @staticmethod
    def parse_literal(node, variables=None):
        return value_from_ast_untyped(node, variables)
