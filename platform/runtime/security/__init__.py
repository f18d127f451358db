"""Users, the org tree, roles and their grants, and the SQL predicate that enforces them."""
