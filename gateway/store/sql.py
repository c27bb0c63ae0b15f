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


def one_of(field, value, allowed, invalid, said=None):
    """``value`` when it is one of ``allowed``; else ``invalid`` (the caller's error
    class) naming the field: ``state: one of open, sent, not 'x'`` (``said`` words the
    choices otherwise)."""
    if value not in allowed:
        raise invalid(f"{field}: {said or 'one of ' + ', '.join(allowed)}, not {value!r}")
    return value


MAX_PAGE = 500  # the most rows a list returns in one page


def page_limit(limit, invalid, most=MAX_PAGE):
    """A list's page size as an int, refused (``invalid``) unless 1 to ``most``."""
    if not 1 <= int(limit) <= most:
        raise invalid(f"limit: 1 to {most}")
    return int(limit)


class Filters:
    """The WHERE clause of a list being built: its conditions and their ``?`` parameters,
    each condition added only when its filter is given (not None)."""

    def __init__(self, invalid):
        self.invalid = invalid        # the caller's error class for a refused filter
        self.where, self.params = [], []

    def add(self, condition, *params):
        self.where.append(condition)
        self.params.extend(params)

    def equal(self, column, value):
        """``column = value`` when ``value`` is given."""
        if value is not None:
            self.add(f"{column} = ?", value)

    def choice(self, field, value, allowed, column=None, said=None):
        """``column`` (the field's name by default) ``= value`` when ``value`` is given;
        one not in ``allowed`` is refused by name (see ``one_of``)."""
        if value is not None:
            self.equal(column or field, one_of(field, value, allowed, self.invalid, said))

    @property
    def clause(self):
        """`` WHERE …`` joining the conditions, or nothing when there are none."""
        return (" WHERE " + " AND ".join(self.where)) if self.where else ""
