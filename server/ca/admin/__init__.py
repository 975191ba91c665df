"""Admin API engine: roles and scopes, admin tokens and certificates, the ``AdminService``.

``api`` is the facade the admin front end (``protocols/admin``) and the CLI import.
Must not import aiohttp, josepy or sqlalchemy.
"""

__all__: list[str] = []
