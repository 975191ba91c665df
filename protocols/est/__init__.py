"""EST (RFC 7030 with the RFC 8951 clarifications) front end over the CA engine."""

__all__ = ["auth", "handlers", "links", "messages", "routes"]
