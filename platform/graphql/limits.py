"""Bounds on what one request may ask for, and the validation rule enforcing query depth."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

from graphql import GraphQLError, ValidationRule
from graphql.language import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10
    """Nesting of fields in one operation (introspection excluded)."""
    default_page_size: int = 100
    max_page_size: int = 500
    max_bulk: int = 1000
    """Records per bulk mutation."""
    max_cost: int = 20_000
    """Records one request may read: page sizes multiplied through nested lists."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "Limits":
        """``LOWCODE_MAX_DEPTH``, ``LOWCODE_DEFAULT_PAGE_SIZE``, ... override the defaults."""
        values = {}
        for item in fields(cls):
            raw = environ.get(f"LOWCODE_{item.name.upper()}")
            if raw is not None:
                try:
                    values[item.name] = int(raw)
                except ValueError:
                    raise ValueError(f"LOWCODE_{item.name.upper()} must be a whole number, not {raw!r}") from None
                if values[item.name] < 1:
                    raise ValueError(f"LOWCODE_{item.name.upper()} must be at least 1")
        limits = cls(**values)
        if limits.default_page_size > limits.max_page_size:
            raise ValueError("LOWCODE_DEFAULT_PAGE_SIZE must not exceed LOWCODE_MAX_PAGE_SIZE")
        return limits


def depth_rule(max_depth: int) -> type[ValidationRule]:
    """A rule refusing operations nested deeper than ``max_depth`` fields.

    Unknown fragments and fragment cycles are left to the standard rules (which report them);
    this rule only stops following them.
    """

    class DepthLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args):
            fragments = {f.name.value: f for f in self.context.document.definitions if hasattr(f, "type_condition")}
            depth = _depth(node.selection_set, fragments, set())
            if depth > max_depth:
                name = node.name.value if node.name else "the operation"
                self.report_error(GraphQLError(
                    f"'{name}' nests fields {depth} deep; the limit is {max_depth}.", node,
                    extensions={"code": "BAD_QUERY", "limit": max_depth}))

    return DepthLimit


def _depth(selection_set: SelectionSetNode | None, fragments: dict, visiting: set[str]) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, visiting) if selection.selection_set else 1)
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue
            deepest = max(deepest, _depth(fragment.selection_set, fragments, visiting | {name}))
    return deepest

