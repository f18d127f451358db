"""Reminders and alerts (automations of kind ``reminder``): visit cycles, stage overdue alerts and
dates coming due, delivered to the inbox once per occasion by an hourly scan."""
from . import jobs  # noqa: F401  (registers the reminders' job handler)
from .kind import Reminders

__all__ = ["Reminders"]
