"""PostgreSQL back end (psycopg 3): one intake queue shared by several gateway workers.

``postgresql://user@host:port/db?schema=NAME`` keeps the tables in schema ``NAME``
(created when missing) — how tests get a fresh schema each, and how one database can
hold several districts.
"""

import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StoreError
from .base import Store, first_rows

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def split_schema(url):
    """(libpq URL without our ``schema`` parameter, schema name or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not _SCHEMA.match(schema):
        raise StoreError(f"schema name must match {_SCHEMA.pattern}: {schema!r}")
    return urlunsplit(parts._replace(query=rest)), schema


LOCK_SLOTS = 64  # advisory locks one transaction takes at most (see lock_keys)


def lock_slot(key, slots=LOCK_SLOTS):
    """The advisory lock slot, 0 … ``slots`` - 1, of ``key`` (a string): a digest, so that
    any key has one; keys sharing a slot only wait for each other."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % slots


class PostgresStore(Store):
    dialect = "postgres"
    placeholder = "%s"

    def __init__(self, url, connect_timeout=5):
        super().__init__(url)
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("PostgreSQL store needs psycopg 3: pip install 'psycopg[binary]'") \
                from exc
        self._psycopg = psycopg
        self.conninfo, self.schema = split_schema(url)
        self._lock_space = lock_slot(f"gridlink:{self.schema or ''}", 2**31)  # an int4
        self.connect_timeout = connect_timeout
        if self.schema:
            conn = self._raw_connect()
            try:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                conn.close()
        self._checkin(self._open())

    def _raw_connect(self, **kw):
        try:
            return self._psycopg.connect(self.conninfo, autocommit=True,
                                         connect_timeout=self.connect_timeout, **kw)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL {self.conninfo}: {exc}") from exc

    def _open(self):
        kw = {"options": f"-c search_path={self.schema}"} if self.schema else {}
        conn = self._raw_connect(**kw)
        conn.autocommit = False
        return conn

    def _usable(self, conn):
        return not conn.closed and not conn.broken

    def _lock_migrations(self, conn):
        conn.execute("SELECT pg_advisory_xact_lock(7420371)")

    def _run_script(self, conn, script):
        conn.execute(script)

    def insert_new(self, conn, table, columns, rows, key):
        # psycopg splits a query at its placeholders in Python, and remembers the split
        # only for queries of ≤ 50 parameters: one INSERT of 500 rows × 27 columns cost
        # ~260 µs a row to split, every batch.  Instead the rows are COPYed (adapted in
        # C) into a temporary twin of the table, emptied at each commit, and one
        # INSERT … SELECT takes those whose key is new.
        first = first_rows(rows, columns.index(key))
        if not first:
            return []
        cols = ", ".join(columns)
        twin = f"gridlink_new_{table}"
        with conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {twin} (LIKE {table}) "
                        f"ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY {twin} ({cols}) FROM STDIN") as copy:
                for row in first.values():
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {twin} "
                        f"ON CONFLICT DO NOTHING RETURNING {key}")
            # (a second call in the same transaction offers these rows again: all now
            # conflict, so only the work is repeated; the ingest calls once a batch)
            new = {r[0] for r in cur.fetchall()}
        return [k for k in first if k in new]  # in the order given, as the SQLite store

    def lock_keys(self, conn, keys):
        # transaction-level advisory locks, one per slot the keys fall in, every writer
        # taking them in ascending order (unnest yields the array's order).  At most
        # LOCK_SLOTS a transaction, however many devices a batch holds: each takes an
        # entry of the server's lock table, sized by max_locks_per_transaction (64).
        # The slots are this schema's own: districts in one database never wait on each
        # other (two-key advisory locks, a space apart from the migrations' one-key lock).
        slots = sorted({lock_slot(k) for k in keys})
        if slots:
            conn.execute("SELECT pg_advisory_xact_lock(%s, s) FROM unnest(%s::int[]) AS s",
                         (self._lock_space, slots))

    def migrate(self, extra=()):
        done = super().migrate(extra)
        self.add_month_partitions()
        return done

    def add_month_partitions(self, months_ahead=2, today=None):
        """Make the month partitions of ``reports`` and ``track_points`` from the month of
        ``today`` (default: now, UTC) to ``months_ahead`` after it, where missing; return
        the names made.  ``migrate`` calls it: a gateway started, or ``gridlink gateway
        migrate`` run monthly (cron), keeps every row of the present in its month's
        partition (rows of other times are in the DEFAULT one, still found, until their
        month is made)."""
        import datetime as dt

        today = today or dt.datetime.now(dt.UTC).date()
        months = [dt.date(today.year + (today.month - 1 + k) // 12,
                          (today.month - 1 + k) % 12 + 1, 1) for k in range(months_ahead + 1)]
        made = []
        with self.connect() as conn:
            self._lock_migrations(conn)
            if conn.execute("SELECT to_regproc('gridlink_month_partition')").fetchone()[0] \
                    is None:
                return made  # migration 0007 is not applied (a partial migrate)
            for table in ("reports", "track_points"):
                for m in months:
                    if conn.execute("SELECT gridlink_month_partition(%s, %s)",
                                    (table, m)).fetchone()[0]:
                        made.append(f"{table}_{m:%Y_%m}")
        return made

    def drop_schema(self):
        """Remove this store's schema and everything in it (tests, demos)."""
        if not self.schema:
            raise StoreError("drop_schema needs a ?schema= store")
        self.close()
        conn = self._raw_connect()
        try:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            conn.close()
