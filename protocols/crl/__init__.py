"""CRL distribution point front end (RFC 5280 §4.2.1.13)."""

__all__ = ["routes"]
