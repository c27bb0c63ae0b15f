"""The audit trail: every state change, who made it, when, from where, before and after.

Append-only and tamper-evident: entry *n* carries the SHA-256 of its own content together
with entry *n-1*'s hash, so editing, removing or reordering any entry breaks every hash
after it (``verify``).  The chain's head (count and last hash) is one row updated in the
same transaction as the append; on PostgreSQL that row is locked first, so two gateway
workers appending at once queue instead of forking the chain.  An append can join the
caller's transaction (``record(conn, …)``) so a decision and its entry commit together.
"""

import csv
import hashlib
import io
import json
import time

from ..clock import wire_time
from ..store.sql import decode_json, locked, one, rows, run

GENESIS = "0" * 64
FIELDS = ("n", "at", "actor", "address", "action", "target", "before_state", "after_state",
          "prev", "hash")


def entry_hash(prev, n, at, actor, address, action, target, before, after):
    """The hash an entry must carry: canonical JSON of its content and the previous hash."""
    body = json.dumps([prev, n, at, actor, address, action, target, before, after],
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _canonical(value):
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True,
                                                 separators=(",", ":"))


class AuditTrail:
    def __init__(self, store, *, clock=time.time):
        self.store = store
        self.clock = clock

    def record(self, conn, actor, action, *, target=None, before=None, after=None,
               address=None):
        """Append one entry inside ``conn``'s transaction; returns its number."""
        head = locked(self.store, conn, "SELECT n, hash FROM audit_head WHERE id = 1")
        n, prev = head["n"] + 1, head["hash"]
        at = wire_time(self.clock())
        b, a = _canonical(before), _canonical(after)
        digest = entry_hash(prev, n, at, actor, address, action, target, b, a)
        run(self.store, conn,
            "INSERT INTO audit (n, at, actor, address, action, target, before_state,"
            " after_state, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [n, at, actor, address, action, target, b, a, prev, digest])
        run(self.store, conn, "UPDATE audit_head SET n = ?, hash = ? WHERE id = 1", [n, digest])
        return n

    def append(self, actor, action, **kw):
        """``record`` in a transaction of its own."""
        with self.store.connect() as conn:
            return self.record(conn, actor, action, **kw)

    def entries(self, *, target=None, since=None, until=None, actor=None, limit=None):
        given = [(c, v) for c, v in (("target = ?", target), ("at >= ?", since),
                                     ("at < ?", until), ("actor = ?", actor)) if v]
        sql = ("SELECT * FROM audit" + (" WHERE " + " AND ".join(c for c, _ in given)
                                        if given else "") + " ORDER BY n")
        params = [v for _, v in given]
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self.store.connect(readonly=True) as conn:
            found = rows(run(self.store, conn, sql, params))
        return [_shown(r) for r in found]

    def verify(self):
        """(ok, problems): walks the whole chain and the head; each problem names the entry."""
        problems = []
        prev, last = GENESIS, 0
        with self.store.connect(readonly=True) as conn:
            cur = run(self.store, conn, "SELECT * FROM audit ORDER BY n")
            for r in rows(cur):
                n = r["n"]
                if n != last + 1:
                    problems.append(f"entry {last + 1}: missing (next is {n})")
                if r["prev"] != prev:
                    problems.append(f"entry {n}: its link to the entry before was changed")
                want = entry_hash(r["prev"], n, r["at"], r["actor"], r["address"], r["action"],
                                  r["target"], r["before_state"], r["after_state"])
                if r["hash"] != want:
                    problems.append(f"entry {n}: its content was changed after it was written")
                prev, last = r["hash"], n
            head = one(run(self.store, conn, "SELECT n, hash FROM audit_head WHERE id = 1"))
        if head and (head["n"] != last or head["hash"] != prev):
            problems.append(f"the head says {head['n']} entries, the chain has {last}: "
                            "entries at the end were removed or the head was changed")
        return not problems, problems


def _shown(r):
    out = {k: r[k] for k in FIELDS}
    out["before"] = decode_json(out.pop("before_state"), None)
    out["after"] = decode_json(out.pop("after_state"), None)
    return out


def export(entries, fmt):
    """The entries as ``json`` or ``csv`` text (before/after as JSON in their cells)."""
    if fmt == "json":
        return json.dumps(entries, ensure_ascii=False, indent=1)
    out = io.StringIO()
    cols = ("n", "at", "actor", "address", "action", "target", "before", "after", "prev", "hash")
    w = csv.writer(out)
    w.writerow(cols)
    for e in entries:
        w.writerow([_canonical(e[c]) if c in ("before", "after") else e[c] for c in cols])
    return out.getvalue()
