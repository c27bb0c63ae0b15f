"""Clips and voice memos arriving in chunks: kept in the database per sending device until
the last one arrives, then reassembled, hash-checked, checked as a playable clip or memo
(``media.check_clip`` / ``check_memo``) and put into the ``MediaStore``, linked to the
report its topic names.

Media follow a report the gateway already holds: a chunk for any other report is refused
(``media_unknown_report``), as is a reassembled file that does not hash to its announced
sha256 (``media_hash``: the device is asked for it again, a ``resend`` ack) or is not a
complete clip or memo (``media_invalid``, e.g. a truncated MP4).  Each refusal is a dead
letter with its reason; the report is untouched.
Chunks are written in the batch's transaction, so a transfer resumes across restarts.
"""

import hashlib
import json

from .clock import wire_time
from .media import CONTENT_TYPES, MediaError, check_clip, check_memo
from .photos import DEVICE_UNFINISHED_MAX_BYTES, UNFINISHED_MAX_AGE_S, Refusal

MIGRATIONS = (
    (
        "media_001_media",
        "CREATE TABLE IF NOT EXISTS media ("
        " sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, content_type TEXT NOT NULL,"
        " bytes INTEGER NOT NULL, seconds REAL, trigger_offset_s REAL, info TEXT NOT NULL,"
        " stored_at TEXT NOT NULL);\n"
        "CREATE TABLE IF NOT EXISTS report_media ("
        " report_id TEXT NOT NULL, sha256 TEXT NOT NULL, device TEXT NOT NULL,"
        " added_at TEXT NOT NULL, PRIMARY KEY (report_id, sha256));\n"
        "CREATE TABLE IF NOT EXISTS media_parts ("
        " sha256 TEXT NOT NULL, device TEXT NOT NULL, n INTEGER NOT NULL,"
        " total INTEGER NOT NULL, size INTEGER NOT NULL, kind TEXT NOT NULL,"
        " bytes INTEGER NOT NULL, data BLOB NOT NULL, received_at TEXT NOT NULL,"
        " PRIMARY KEY (sha256, device, n));\n"
        "CREATE INDEX IF NOT EXISTS media_parts_device ON media_parts (device)",
        "CREATE TABLE IF NOT EXISTS media ("
        " sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, content_type TEXT NOT NULL,"
        " bytes BIGINT NOT NULL, seconds DOUBLE PRECISION, trigger_offset_s DOUBLE PRECISION,"
        " info TEXT NOT NULL, stored_at TEXT NOT NULL);\n"
        "CREATE TABLE IF NOT EXISTS report_media ("
        " report_id TEXT NOT NULL, sha256 TEXT NOT NULL, device TEXT NOT NULL,"
        " added_at TEXT NOT NULL, PRIMARY KEY (report_id, sha256));\n"
        "CREATE TABLE IF NOT EXISTS media_parts ("
        " sha256 TEXT NOT NULL, device TEXT NOT NULL, n INTEGER NOT NULL,"
        " total INTEGER NOT NULL, size BIGINT NOT NULL, kind TEXT NOT NULL,"
        " bytes INTEGER NOT NULL, data BYTEA NOT NULL, received_at TEXT NOT NULL,"
        " PRIMARY KEY (sha256, device, n));\n"
        "CREATE INDEX IF NOT EXISTS media_parts_device ON media_parts (device)",
    ),
)

CHECKS = {"clip": check_clip, "memo": check_memo}


def add_media_chunks(store, conn, media_store, chunks, now):
    """Store the batch's media chunks; finish every file whose last chunk arrived.
    Returns {id(chunk data): Refusal} for the chunks refused."""
    q = store.sql
    touched, refused = {}, {}
    for c in chunks:
        sha, device, rid, n, kind = c["sha256"], c["device"], c["report_id"], c["n"], c["kind"]
        what = f"{kind} {sha[:16]}…"  # pragma: no mutate (the excerpt a message shows)
        if conn.execute(q("SELECT 1 FROM reports WHERE id = ?"), (rid,)).fetchone() is None:
            refused[id(c)] = Refusal("media_unknown_report",
                                     f"{what}: no report {rid} here; media follow their report")
            continue
        if conn.execute(q("SELECT 1 FROM media WHERE sha256 = ?"), (sha,)).fetchone():
            _link(conn, q, rid, sha, device, now)   # stored already (a repeat, or shared)
            continue
        held = conn.execute(q("SELECT total, size, kind FROM media_parts WHERE sha256 = ? "
                              "AND device = ? LIMIT 1"), (sha, device)).fetchone()
        if held is not None and tuple(held) != (c["total"], c["size"], kind):
            refused[id(c)] = Refusal("media", f"{what}: chunk says {c['size']} bytes in "
                                     f"{c['total']} chunks, the transfer under way "
                                     f"{held[1]} in {held[0]}")
            continue
        if conn.execute(q("SELECT 1 FROM media_parts WHERE sha256 = ? AND device = ? AND "
                          "n = ?"), (sha, device, n)).fetchone():
            continue                                  # a repeat
        (waiting,) = conn.execute(q("SELECT COALESCE(SUM(bytes), 0) FROM media_parts "
                                    "WHERE device = ?"), (device,)).fetchone()
        if waiting + len(c["data"]) > DEVICE_UNFINISHED_MAX_BYTES:
            refused[id(c)] = Refusal("media_quota", f"{what}: {device} has {waiting} bytes "
                                     f"in unfinished media; the limit is "
                                     f"{DEVICE_UNFINISHED_MAX_BYTES}")
            continue
        conn.execute(q("INSERT INTO media_parts (sha256, device, n, total, size, kind, bytes, "
                       "data, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                     (sha, device, n, c["total"], c["size"], kind, len(c["data"]), c["data"],
                      now))
        touched[(sha, device)] = c
    for (sha, device), c in touched.items():
        (have,) = conn.execute(q("SELECT COUNT(*) FROM media_parts WHERE sha256 = ? AND "
                                 "device = ?"), (sha, device)).fetchone()
        if have < c["total"]:
            continue
        parts = conn.execute(q("SELECT data FROM media_parts WHERE sha256 = ? AND device = ? "
                               "ORDER BY n"), (sha, device)).fetchall()
        data = b"".join(bytes(p[0]) for p in parts)  # pragma: no mutate (one column: [0] is [-1])
        conn.execute(q("DELETE FROM media_parts WHERE sha256 = ? AND device = ?"), (sha, device))
        problem = _finish(conn, q, media_store, c, data, now)
        if problem is not None:
            refused[id(c)] = problem
    return refused


def _finish(conn, q, media_store, c, data, now):
    """Check and keep one reassembled file; a Refusal when it cannot be kept."""
    sha, kind = c["sha256"], c["kind"]
    what = f"{kind} {sha[:16]}…"  # pragma: no mutate (the excerpt a message shows)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != c["size"] or digest != sha:
        short = digest[:16]  # pragma: no mutate (the excerpt a message shows)
        return Refusal("media_hash", f"{what}: the {len(data)} reassembled bytes hash to "
                       f"{short}…; chunks discarded, send the file again",
                       (c["report_id"], sha, None))
    try:
        info = CHECKS[kind](data)
    except MediaError as exc:
        return Refusal("media_invalid", f"{what}: {exc}")
    media_store.put(data, CONTENT_TYPES[kind], sha)
    conn.execute(q("INSERT INTO media (sha256, kind, content_type, bytes, seconds, "
                   "trigger_offset_s, info, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT DO NOTHING"),
                 (sha, kind, CONTENT_TYPES[kind], len(data), info.get("seconds"),
                  info.get("trigger_offset_s"), json.dumps(info), now))
    conn.execute(q("DELETE FROM media_parts WHERE sha256 = ?"), (sha,))   # others' copies
    _link(conn, q, c["report_id"], sha, c["device"], now)
    return None


def _link(conn, q, report_id, sha, device, now):
    conn.execute(q("INSERT INTO report_media (report_id, sha256, device, added_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"), (report_id, sha, device, now))


def expire_media(store, now_epoch, max_age_s=UNFINISHED_MAX_AGE_S):
    """Drop every unfinished transfer whose newest chunk is older than ``max_age_s`` (the
    device gave up on it, or lost it): [(sha256, device, chunks dropped)]."""
    q = store.sql
    cutoff = wire_time(now_epoch - max_age_s)
    with store.connect() as conn:
        stale = conn.execute(q("SELECT sha256, device, COUNT(*) FROM media_parts "
                               "GROUP BY sha256, device HAVING MAX(received_at) < ?"),
                             (cutoff,)).fetchall()
        for sha, device, _n in stale:
            conn.execute(q("DELETE FROM media_parts WHERE sha256 = ? AND device = ?"),
                         (sha, device))
    return [tuple(row) for row in stale]


def report_media(store, report_id):
    """[{sha256, kind, content_type, bytes, seconds, trigger_offset_s, info}] of one
    report: clips first, each kind in the order stored."""
    found = store.fetchall(
        "SELECT m.sha256, m.kind, m.content_type, m.bytes, m.seconds, m.trigger_offset_s,"
        " m.info FROM report_media r JOIN media m ON m.sha256 = r.sha256"
        " WHERE r.report_id = ? ORDER BY m.kind, r.added_at, m.sha256", (report_id,))
    return [{**r, "info": json.loads(r["info"])} for r in found]
