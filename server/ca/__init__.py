"""The CA engine: hierarchy, profiles, issuance, revocation and key backends.

Must not import aiohttp, josepy, sqlalchemy or anything under ``protocols``; the
``import-linter`` contracts in pyproject.toml enforce it.
"""

__all__: list[str] = []
