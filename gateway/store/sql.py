"""Running SQL inside a store's transaction: one statement, its rows as dicts.

Queries are written once with ``?`` placeholders (see :meth:`Store.sql`); these helpers
take the connection of a ``with store.connect() as conn`` block, so several statements
share its transaction.
"""

import json


def run(store, conn, sql, params=()):
    """Execute ``sql`` written with ``?`` placeholders in the store's dialect; return the cursor."""
    cur = conn.cursor()
    cur.execute(store.sql(sql), tuple(params))
    return cur


def rows(cur):
    """All rows of ``cur`` as dicts, whatever row factory the connection uses."""
    fetched = cur.fetchall()
    if not fetched:
        return []
    if isinstance(fetched[0], dict):
        return [dict(r) for r in fetched]
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in fetched]


def one(cur):
    """The first row of ``cur`` as a dict, or None when there is none."""
    found = rows(cur)
    return found[0] if found else None


def locked(store, conn, sql, params=(), missing=None):
    """The first row of ``sql`` (a SELECT) locked for the rest of the transaction: ``FOR
    UPDATE`` on PostgreSQL; on SQLite the write transaction already admits one writer.
    None when there is no row, or ``missing()`` raised (a NotFound naming the row)."""
    lock = " FOR UPDATE" if store.dialect == "postgres" else ""
    row = one(run(store, conn, sql + lock, params))
    if row is None and missing is not None:
        raise missing()
    return row


def decode_json(value, default):
    """A JSON column's value: text (SQLite) decoded, an already decoded one (PostgreSQL)
    as it is; ``default`` when empty or not JSON."""
    if value is None or value == "":
        return default
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return default
