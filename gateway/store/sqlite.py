"""SQLite back end, the embedded default: WAL, ``synchronous=FULL`` (commits survive power loss)."""

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import StoreError
from .base import Store, first_rows


class SQLiteStore(Store):
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, url, busy_timeout=5.0):
        super().__init__(url)
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(f"not a SQLite URL (sqlite:///path/to/db.sqlite): {url!r}")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._turn = threading.Lock()  # writers of this process, one at a time
        self._turn_fd = None  # flock on <db>-writer: writers of all processes, in turn
        self._turn_holder = None  # the connection whose write transaction holds the turn
        if not self.path.parent.is_dir():
            raise StoreError(f"SQLite store {url}: folder {self.path.parent} does not exist")
        conn = self._open()  # fail now, with the path in the message, not on first ingest
        self._checkin(conn)

    def _open(self):
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        return conn

    def _begin(self, conn, readonly):
        # IMMEDIATE takes the write lock up front, so a read-then-write block never fails
        # half-way with SQLITE_BUSY_SNAPSHOT; readers in WAL mode are never blocked.
        if readonly:
            conn.execute("BEGIN")
            return
        self._take_turn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._end_turn()
            raise
        self._turn_holder = conn

    def _commit(self, conn):
        if conn.in_transaction:
            conn.execute("COMMIT")  # on failure the caller rolls back, which ends the turn
        if self._turn_holder is conn:
            self._end_turn()

    def _rollback(self, conn):
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            if self._turn_holder is conn:
                self._end_turn()

    def _take_turn(self):
        """Wait for this writer's turn.  SQLite's own busy handler sleeps 1, 2, 5 … 100 ms
        between tries, so two gateway workers on one database spent their time asleep;
        an flock on ``<db>-writer`` hands the write lock over as soon as it is free
        (tried every 0.2-2 ms, for at most ``busy_timeout``).  Other programs still meet
        SQLite's own lock."""
        if not self._turn.acquire(timeout=self.busy_timeout):
            raise StoreError(f"{self.path}: no write turn within {self.busy_timeout}s")
        try:
            if self._turn_fd is None:
                self._turn_fd = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
            deadline, pause = time.monotonic() + self.busy_timeout, 0.0002
            while True:
                try:
                    fcntl.flock(self._turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(f"{self.path}: another process held the write "
                                         f"turn for {self.busy_timeout}s") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
        except BaseException:
            self._turn.release()
            raise

    def _end_turn(self):
        self._turn_holder = None
        try:
            if self._turn_fd is not None:
                fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
        finally:
            self._turn.release()

    def _run_script(self, conn, script):
        for statement in split_statements(script):
            conn.execute(statement)

    def insert_new(self, conn, table, columns, rows, key):
        # A batch's keys are almost always new (a key already present is a message handed
        # over again after a crash), so first insert them all under a savepoint and count
        # the changes: all in, and no key was looked up.  Otherwise roll back to the
        # savepoint and insert only the absent ones.  The block holds SQLite's write lock
        # (BEGIN IMMEDIATE): no other writer can add a key in between.
        k = columns.index(key)
        first = first_rows(rows, k)
        fresh = list(first.values())
        if not fresh:
            return []
        conn.execute("SAVEPOINT insert_new")
        if self._insert_rows(conn, table, columns, fresh) == len(fresh):
            conn.execute("RELEASE insert_new")
            return list(first)
        conn.execute("ROLLBACK TO insert_new")
        conn.execute("RELEASE insert_new")
        present = set()
        keys = list(first)
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            cur = conn.execute(f"SELECT {key} FROM {table} WHERE {key} IN "
                               f"({', '.join('?' * len(part))})", part)
            present.update(r[0] for r in cur.fetchall())
        new = [row for row in fresh if row[k] not in present]
        done = self._insert_rows(conn, table, columns, new)
        if done != len(new):
            raise StoreError(f"{table}: {len(new)} new rows expected to insert, {done} did")
        return [row[k] for row in new]

    @staticmethod
    def _insert_rows(conn, table, columns, rows):
        """INSERT … ON CONFLICT DO NOTHING of ``rows``; how many went in.

        Multi-row INSERTs: one sqlite3_step per statement, so the GIL is released and
        taken back once per statement, not once per row, and fewer instructions a row
        than executemany (cachegrind)."""
        width = len(columns)
        per = max(1, min(500, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = f"({', '.join('?' * width)})"
        before = conn.total_changes
        for i in range(0, len(rows), per):
            part = rows[i:i + per]
            conn.execute(head + ", ".join([one] * len(part)) + " ON CONFLICT DO NOTHING",
                         [v for row in part for v in row])
        return conn.total_changes - before


def split_statements(script):
    """The complete SQL statements of ``script`` (executescript would commit on its own)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
