"""Storage: SQLAlchemy 2 async repository (SQLite, PostgreSQL) and an in-memory fake.

ORM rows never leave this package; repositories speak engine types.
"""

__all__: list[str] = []
