from __future__ import annotations

from .decimal_ import Decimal, decimal_options


class Currency(Decimal):
    """An amount of money: a decimal with two places by default."""

    name = "currency"
    options_schema = decimal_options(18, 2)
