"""The generated GraphQL API (see README.md in this folder)."""
