"""The intake store: one interface over SQLite (embedded default) and PostgreSQL.

``open_store(url)`` picks the back end from the URL scheme; ``store.migrate()`` creates
or upgrades the tables (recorded in ``schema_migrations``).
"""

from ..errors import StoreError
from .base import Store
from .migrations import BUILTIN


def open_store(url):
    """A store for ``sqlite:///path/to/db.sqlite`` or ``postgresql://user@host/db[?schema=s]``."""
    if not isinstance(url, str):
        raise StoreError(f"store URL must be a string, got {type(url).__name__}")
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unknown store URL {url!r}: use sqlite:///path or postgresql://…")


__all__ = ["BUILTIN", "Store", "StoreError", "open_store"]
