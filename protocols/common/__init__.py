"""Pieces every front end shares: the problem table and request logging helpers."""

__all__: list[str] = []
