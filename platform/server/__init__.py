"""Transports and entry points: the ``lowcode`` command."""
