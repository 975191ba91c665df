"""Admin REST API (JSON, RFC 9457 problem documents) at /admin/v1 over the admin facade."""

__all__ = ["auth", "handlers", "links", "messages", "openapi", "routes"]
