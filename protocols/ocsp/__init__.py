"""OCSP responder front end (RFC 6960, RFC 5019 GET profile)."""

__all__ = ["routes"]
