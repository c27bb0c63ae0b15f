"""The store interface shared by the SQLite and PostgreSQL back ends.

A store hands out DB-API connections, one transaction per ``with store.connect()``
block (committed on a clean exit, rolled back on an exception), from a small pool so
that any thread — the ingest writer, uvicorn's worker threads — may call it.  SQL is
written once with ``?`` placeholders; ``store.sql(text)`` turns it into the dialect's, and
``gridlink.gateway.store.sql`` runs it and returns its rows as dicts.
"""

import threading
from contextlib import contextmanager, suppress

from ..errors import StoreError
from .migrations import BUILTIN
from .sql import rows, run


class Store:
    """One intake database.  Subclasses supply ``_open()`` and the dialect bits."""

    dialect = ""
    placeholder = "?"
    pool_size = 8

    def __init__(self, url):
        self.url = url
        self._idle = []
        self._lock = threading.Lock()
        self._closed = False

    # -- connections -------------------------------------------------------------------

    def _open(self):
        raise StoreError(f"{type(self).__name__} cannot open connections")

    def _begin(self, conn, readonly):
        """Start the block's transaction (the DB-API default for the back end)."""

    def _commit(self, conn):
        conn.commit()

    def _rollback(self, conn):
        conn.rollback()

    def _usable(self, conn):
        return True

    def _checkout(self):
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            if self._idle:
                return self._idle.pop()
        return self._open()

    def _checkin(self, conn):
        with self._lock:
            if not self._closed and len(self._idle) < self.pool_size and self._usable(conn):
                self._idle.append(conn)
                return
        _close_quietly(conn)

    @contextmanager
    def connect(self, readonly=False):
        """Yield a DB-API connection holding one transaction; commit on a clean exit."""
        conn = self._checkout()
        try:
            self._begin(conn, readonly)
            yield conn
            self._commit(conn)
        except BaseException:
            try:
                self._rollback(conn)
            except Exception:  # the connection is gone: drop it, report the first error
                _close_quietly(conn)
            else:
                self._checkin(conn)
            raise
        self._checkin(conn)

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers -----------------------------------------------------------------------

    def sql(self, text):
        """``text`` with ``?`` placeholders rewritten for this dialect."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def fetchall(self, sql, params=()):
        """Rows of one query as dicts (column name → value)."""
        with self.connect(readonly=True) as conn:
            return rows(run(self, conn, sql, params))

    def insert_new(self, conn, table, columns, rows, key):
        """Insert ``rows`` skipping those whose ``key`` exists; return the inserted keys."""
        raise StoreError(f"{type(self).__name__} cannot insert")

    def lock_keys(self, conn, keys):
        """Hold each of ``keys`` (strings naming rows that other writers' transactions
        also write: a device, a photo) until ``conn``'s transaction ends, taken in the
        same order by every writer, so that two transactions sharing rows queue instead
        of each holding one and waiting for the other.  Nothing to do where a write
        transaction holds the whole store (SQLite)."""

    # -- schema ------------------------------------------------------------------------

    def applied_migrations(self):
        with self.connect(readonly=True) as conn:
            self._ensure_migrations_table(conn)
        return [r["name"] for r in self.fetchall(
            "SELECT name FROM schema_migrations ORDER BY applied_at, name")]

    def _ensure_migrations_table(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")

    def _lock_migrations(self, conn):
        """Serialise migrators (several workers may start at once)."""

    def _run_script(self, conn, script):
        raise StoreError(f"{type(self).__name__} cannot run scripts")

    def migrate(self, extra=()):
        """Apply the built-in migrations, then ``extra`` ones; return the names applied now.

        Each migration is ``(name, sqlite_sql, postgres_sql)`` and runs in its own
        transaction together with its row in ``schema_migrations``.
        """
        from ..clock import utc_now_iso

        done = []
        for migration in (*BUILTIN, *extra):
            if len(migration) != 3 or not all(isinstance(m, str) for m in migration):
                raise StoreError(
                    f"a migration is (name, sqlite_sql, postgres_sql), got {migration!r}")
            name, sqlite_sql, postgres_sql = migration
            script = sqlite_sql if self.dialect == "sqlite" else postgres_sql
            with self.connect() as conn:
                self._lock_migrations(conn)
                self._ensure_migrations_table(conn)
                cur = conn.execute(self.sql("SELECT 1 FROM schema_migrations WHERE name = ?"),
                                   (name,))
                if cur.fetchone():
                    continue
                try:
                    self._run_script(conn, script)
                except Exception as exc:
                    raise StoreError(f"migration {name} failed on {self.dialect}: {exc}") from exc
                conn.execute(self.sql("INSERT INTO schema_migrations (name, applied_at) "
                                      "VALUES (?, ?)"), (name, utc_now_iso()))
            done.append(name)
        return done


def first_rows(rows, at):
    """key → row of ``rows`` keyed by column ``at``, in order; a key given twice keeps its
    first row (what ``insert_new`` inserts on every store)."""
    first = {}
    for row in rows:
        first.setdefault(row[at], row)
    return first


def _close_quietly(conn):
    with suppress(Exception):
        conn.close()
