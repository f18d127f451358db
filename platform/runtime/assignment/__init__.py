"""Assignment rules: who a record goes to, on create and on demand (see README.md)."""
from .kind import AssignmentRules
from .service import Outcome

__all__ = ["AssignmentRules", "Outcome"]
