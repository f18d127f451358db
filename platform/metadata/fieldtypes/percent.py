from __future__ import annotations

from .decimal_ import Decimal, decimal_options


class Percent(Decimal):
    """A percentage such as 12.5 (meaning 12.5 %)."""

    name = "percent"
    options_schema = decimal_options(5, 2)
