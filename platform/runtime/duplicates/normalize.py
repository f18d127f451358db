"""How values are compared by a duplicate rule: the key each method reduces a value to, and the
similarity of fuzzy matching.

- ``exact``: the value as stored.
- ``normalized``: Unicode NFKC (full-width letters, digits and spaces become half-width:
  ``ＡＢＣ　有限公司`` is ``ABC 有限公司``), case folded, and only letters, digits and combining
  marks kept: whitespace, punctuation (CJK punctuation such as 「」（）、，。 included) and symbols
  are dropped.
- ``phone``: NFKC, then the decimal digits only. A Chinese country code is dropped: ``0086``
  always, ``86`` after a ``+`` or when eleven digits follow it (a mobile number). Then a leading
  trunk ``0`` is dropped from a number of ten digits or more (a landline with its area code), so
  ``+86 10 1234 5678``, ``010-1234-5678`` and ``(0086)010 12345678`` are one number. Other
  country codes are kept as dialled.
- ``fuzzy``: the normalized value compared by the Sørensen–Dice coefficient of its sets of
  character bigrams, the value padded with a start and an end mark (``^ab$``: ``^a``, ``ab``,
  ``b$``): ``2·|A∩B| / (|A|+|B|)``, from 0 (nothing shared) to 1 (same bigrams). Bigrams are what
  the match keys index, so the similarity is computed from how many keys two records share.
"""
from __future__ import annotations

import hashlib
import unicodedata

MAX_KEY_LENGTH = 200
"""A longer key is stored as its SHA-256 (an index entry stays small; equality is kept)."""
MAX_FUZZY_LENGTH = 200
"""Fuzzy matching compares the first characters of a normalized value, at most this many."""
KEPT_CATEGORIES = ("L", "N", "M")
"""Letters, numbers and marks: what a normalized value keeps."""


def normalized(value: str) -> str:
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "".join(c for c in folded if unicodedata.category(c)[0] in KEPT_CATEGORIES)


def phone_number(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    digits = "".join(c for c in text if c.isdecimal() and c.isascii())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and (text.startswith("+") or len(digits) == 13):
        digits = digits[2:]
    if digits.startswith("0") and len(digits) >= 10:
        digits = digits[1:]
    return digits


def comparable(method: str, value: str) -> str:
    """``value`` as ``method`` compares it (empty: nothing to compare)."""
    if method == "exact":
        return value
    if method == "phone":
        return phone_number(value)
    if method == "fuzzy":
        return normalized(value)[:MAX_FUZZY_LENGTH]
    return normalized(value)


def key(text: str) -> str:
    """The stored key of a compared value (its hash when long)."""
    if len(text) <= MAX_KEY_LENGTH:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def bigrams(text: str) -> frozenset[str]:
    padded = f"^{text}$"
    return frozenset(padded[i:i + 2] for i in range(len(padded) - 1))


def keys(method: str, value: str) -> frozenset[str]:
    """The match keys of a value: one key, or its bigrams for fuzzy matching (none when empty)."""
    text = comparable(method, value)
    if not text:
        return frozenset()
    return bigrams(text) if method == "fuzzy" else frozenset({key(text)})


def dice(shared: int, size: int, other_size: int) -> float:
    """The Sørensen–Dice coefficient of two sets of ``size`` and ``other_size`` sharing ``shared``."""
    total = size + other_size
    return 2 * shared / total if total else 0.0


def similarity(first: str, second: str) -> float:
    """How alike two values are for fuzzy matching, from 0 to 1."""
    a, b = bigrams(normalized(first)[:MAX_FUZZY_LENGTH]), bigrams(normalized(second)[:MAX_FUZZY_LENGTH])
    return dice(len(a & b), len(a), len(b))
