"""The dead-letter page: the messages the ingest refused, newest first, and why."""

from .clock import wire_time
from .queue import parse_time
from .store.sql import rows, run


def page(store, *, device=None, since=None, before=None, limit=50):
    """A page of dead letters, newest first, and ``next``: the ``before`` of the page
    after it (None on the last page)."""
    given = [(cond, value) for cond, value in (
        ("device = ?", device),
        ("received_at >= ?", wire_time(parse_time(since, "since")) if since else None),
        ("id < ?", before)) if value not in (None, "")]
    sql = ("SELECT id, received_at, topic, device, reason, payload, payload_encoding "
           "FROM dead_letters"
           + (" WHERE " + " AND ".join(cond for cond, _ in given) if given else "")
           + " ORDER BY id DESC LIMIT ?")
    params = [value for _, value in given]
    with store.connect(readonly=True) as conn:
        found = rows(run(store, conn, sql, [*params, limit + 1]))
    items = found[:limit]
    return {"items": items, "next": items[-1]["id"] if len(found) > limit else None}
