"""caIssuers front end: CA certificates named in AIA (RFC 5280 §4.2.2.1)."""

__all__ = ["routes"]
