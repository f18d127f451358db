"""Duplicate rules: the ``duplicate_rule`` automation kind and the query of likely duplicates."""
from .kind import DuplicateRules

__all__ = ["DuplicateRules"]
