"""Photo transfers: chunks kept in the database until the last arrives, then the photo is
reassembled, sha256-checked and stored content-addressed on disk (``<dir>/ab/abcd….jpg``,
``.webp`` for a WebP photo).

Chunks are written in the same transaction as the rest of their batch, before the broker
gets its PUBACK, so a transfer resumes across gateway restarts: the device re-sends only
the chunks it never saw acknowledged, and the gateway still has the others.  Chunks are
kept per sending device (``photo_parts``), only for a photo that device's report
announced, within a per-device quota; a transfer that fails its hash, or waits too long,
is dropped and the device is asked (a ``resend`` ack) for what is missing.

A chunk of a photo held whole (just completed, or complete before: a device asking
whether it arrived) is marked ``stored``, for the ``photo_stored`` ack; a photo's last
chunk (``n = of - 1``) arriving *again* while its transfer lacks chunks is answered with a
``resend`` of the missing ones: a device that sent every chunk and heard nothing asks with
it (docs/protocol.md §3.6).  The first copy of the last chunk is not answered so: chunks
asked for before may still be on their way.
"""

import hashlib
from pathlib import Path

from gridlink.firmware.core import fsio
from gridlink.firmware.core.messages import RESEND_CHUNKS_MAX

from .clock import utc_now_iso, wire_time
from .errors import ConfigError

JPEG = b"\xff\xd8\xff"


def is_webp(data):
    """A RIFF container holding WebP (what a device with ``camera.format`` webp sends)."""
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


class PhotoDir:
    """Content-addressed photo files under one folder."""

    def __init__(self, root):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"photos folder {self.root}: {exc}") from exc

    def path_for(self, sha256, data=b""):
        ext = ".jpg" if data.startswith(JPEG) else ".webp" if is_webp(data) else ".bin"
        return self.root / sha256[:2] / (sha256 + ext)

    def write(self, sha256, data):
        """Store ``data`` durably under its hash (atomic: a crash leaves no torn file)."""
        path = self.path_for(sha256, data)
        path.parent.mkdir(exist_ok=True)
        fsio.write_file(str(path), data, str(path.parent))
        return path


def register_report_photos(store, conn, report_id, photos):
    """Link a committed report to the photos it announces (sha256 + bytes)."""
    if not photos:
        return
    q = store.sql
    conn.cursor().executemany(q("INSERT INTO photos (sha256, size, complete, first_report) "
                       "VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING"),
                     [(p["sha256"], p["bytes"], report_id) for p in photos])
    conn.cursor().executemany(q("INSERT INTO report_photos (report_id, sha256) VALUES (?, ?) "
                       "ON CONFLICT DO NOTHING"),
                     [(report_id, p["sha256"]) for p in photos])


# Limits beside the protocol's (a chunk ≤ messages.CHUNK_MAX bytes, a photo ≤
# report.PHOTO_MAX_BYTES): the chunk bytes one device may have waiting in unfinished
# photos, and how long an unfinished transfer waits for its next chunk before it is
# dropped (docs/protocol.md §3.6).
DEVICE_UNFINISHED_MAX_BYTES = 64 * 1024 * 1024
UNFINISHED_MAX_AGE_S = 7 * 86400


def _excerpt(sha):
    """The head of a digest, for a message."""
    return sha[:16] + "…"  # pragma: no mutate: a message's excerpt, nothing else reads it


class Refusal:
    """A chunk the photo store refused: ``category`` (a metrics label), ``reason``, and
    ``resend`` — (report id, sha256, chunk numbers or None for all) to ask the device
    for, or None when sending again cannot help."""

    __slots__ = ("category", "reason", "resend")

    def __init__(self, category, reason, resend=None):
        self.category, self.reason, self.resend = category, reason, resend


def add_chunks(store, conn, photo_dir, chunks, now=None,
               quota=DEVICE_UNFINISHED_MAX_BYTES):
    """Store chunk verdict data; finish every transfer whose last chunk arrived.

    A chunk is taken only for a photo its own report (the topic's, so the sending
    device's) announced, with the announced size, while the device's chunks waiting in
    unfinished photos stay within ``quota`` bytes; each device's chunks form a transfer of
    their own.  ``now`` (a wire time, default the present) stamps the stored chunks.
    Returns (completed sha256 list, {id(chunk data): Refusal}) — and a stored chunk of a
    photo discarded before (failed, expired), or a repeated last chunk while chunks are
    missing, is given a Refusal-free resend of the chunks still missing, under category
    None.  A chunk of a photo now held whole gets ``c["stored"] = True``.
    """
    q = store.sql
    now = now or utc_now_iso()
    touched, refused = {}, {}
    asked = set()  # (sha, device) whose last chunk came again in this batch
    for c in chunks:
        sha, device, rid, n = c["sha256"], c["device"], c["report_id"], c["n"]
        row = conn.execute(q("SELECT p.size, p.complete, p.chunks, p.error FROM photos p "
                             "JOIN report_photos r ON r.sha256 = p.sha256 "
                             "WHERE p.sha256 = ? AND r.report_id = ?"), (sha, rid)).fetchone()
        if row is None:
            refused[id(c)] = Refusal(
                "photo_unannounced", f"photo {_excerpt(sha)}: report {rid} does not announce it "
                "(a chunk is taken only after its report): send it again", (rid, sha, [n]))
            continue
        size, complete, total, error = row
        if complete:
            c["stored"] = True  # a late copy, or a device asking: the photo is held whole
            continue
        if size != c["size"] or (total is not None and total != c["total"]):
            refused[id(c)] = Refusal(
                "photo", f"photo {_excerpt(sha)}: chunk says {c['size']} bytes in {c['total']} "
                f"chunks, the report announced {size} bytes" + (f" in {total}" if total else ""))
            continue
        have = conn.execute(q("SELECT 1 FROM photo_parts WHERE sha256 = ? AND device = ? "
                              "AND n = ?"), (sha, device, n)).fetchone()
        if have is not None:
            if n == c["total"] - 1:  # the device asks what is missing
                asked.add((sha, device))
                touched.setdefault((sha, device), c)
            continue  # a repeat
        (waiting,) = conn.execute(q("SELECT COALESCE(SUM(bytes), 0) FROM photo_parts "
                                    "WHERE device = ?"), (device,)).fetchone()
        if waiting + len(c["data"]) > quota:
            refused[id(c)] = Refusal(
                "photo_quota", f"photo {_excerpt(sha)}: {device} has {waiting} bytes in "
                f"unfinished photos; the limit is {quota}")
            continue
        if total is None:
            conn.execute(q("UPDATE photos SET chunks = ? WHERE sha256 = ?"), (c["total"], sha))
        if error is not None:  # discarded before: start over, asking for what is missing
            conn.execute(q("UPDATE photos SET error = NULL WHERE sha256 = ?"), (sha,))
            c["missing_after_error"] = True
        conn.execute(q("INSERT INTO photo_parts (sha256, device, n, total, bytes, data, "
                       "received_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                     (sha, device, n, c["total"], len(c["data"]), c["data"], now))
        touched[(sha, device)] = c
    completed = []
    for (sha, device), c in touched.items():
        (have,) = conn.execute(q("SELECT COUNT(*) FROM photo_parts WHERE sha256 = ? AND "
                                 "device = ?"), (sha, device)).fetchone()
        conn.execute(q("UPDATE photos SET chunks_received = ? WHERE sha256 = ?"), (have, sha))
        if have < c["total"]:
            if c.pop("missing_after_error", False):
                missing = _missing(conn, q, sha, device, c["total"])
                refused[id(c)] = Refusal(None, f"photo {_excerpt(sha)}: its earlier chunks were "
                                         "discarded; send the missing ones again",
                                         (c["report_id"], sha, missing))
            elif (sha, device) in asked:
                missing = _missing(conn, q, sha, device, c["total"])
                refused[id(c)] = Refusal(None, f"photo {_excerpt(sha)}: its last chunk came "
                                         f"again, {c['total'] - have} chunks did not; send "
                                         "them again",
                                         (c["report_id"], sha, missing))
            continue
        parts = conn.execute(q("SELECT data FROM photo_parts WHERE sha256 = ? AND device = ? "
                               "ORDER BY n"), (sha, device)).fetchall()
        data = b"".join(bytes(part) for (part,) in parts)
        conn.execute(q("DELETE FROM photo_parts WHERE sha256 = ? AND device = ?"), (sha, device))
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != c["size"] or digest != sha:
            reason = (f"photo {_excerpt(sha)}: reassembled {len(data)} bytes hash to "
                      f"{_excerpt(digest)}; chunks discarded, send the photo again")
            conn.execute(q("UPDATE photos SET error = ?, chunks_received = 0 WHERE sha256 = ?"),
                         (reason, sha))
            refused[id(c)] = Refusal("photo_failed", reason, (c["report_id"], sha, None))
            continue
        path = photo_dir.write(sha, data)
        conn.execute(q("UPDATE photos SET complete = 1, path = ?, error = NULL, "
                       "chunks_received = chunks, completed_at = ? WHERE sha256 = ?"),
                     (str(path), now, sha))
        conn.execute(q("DELETE FROM photo_parts WHERE sha256 = ?"), (sha,))  # others' copies
        c["stored"] = True
        completed.append(sha)
    return completed, refused


def _missing(conn, q, sha, device, total):
    """The chunk numbers of a transfer not stored yet (None: more than a resend lists)."""
    have = {n for (n,) in conn.execute(q("SELECT n FROM photo_parts WHERE sha256 = ? AND "
                                         "device = ?"), (sha, device)).fetchall()}
    missing = [n for n in range(total) if n not in have]
    return missing if len(missing) <= RESEND_CHUNKS_MAX else None


def expire_unfinished(store, now_epoch, max_age_s=UNFINISHED_MAX_AGE_S):
    """Drop every transfer whose newest chunk is older than ``max_age_s``: its chunks are
    deleted and its photo marked with the reason (a later chunk starts it over, and the
    device is then asked for the rest).  Returns how many transfers were dropped."""
    q = store.sql
    cutoff = wire_time(now_epoch - max_age_s)
    with store.connect() as conn:
        stale = conn.execute(q("SELECT sha256, device FROM photo_parts GROUP BY sha256, device "
                               "HAVING MAX(received_at) < ?"), (cutoff,)).fetchall()
        for sha, device in stale:
            conn.execute(q("DELETE FROM photo_parts WHERE sha256 = ? AND device = ?"),
                         (sha, device))
            conn.execute(q("UPDATE photos SET error = ?, chunks_received = 0 "
                           "WHERE sha256 = ? AND complete = 0"),
                         (f"unfinished for {max_age_s / 86400:g} days: chunks dropped", sha))
    return len(stale)


def report_photos(store, report_id):
    """[{sha256, bytes, complete, path}] for one report, in the report's order."""
    import json

    rows = store.fetchall("SELECT photos FROM reports WHERE id = ?", (report_id,))
    if not rows:
        return []
    (row,) = rows
    announced = json.loads(row["photos"])
    state = {r["sha256"]: r for r in store.fetchall(
        "SELECT p.sha256, p.complete, p.path, p.chunks, p.chunks_received FROM photos p "
        "JOIN report_photos r ON r.sha256 = p.sha256 WHERE r.report_id = ?", (report_id,))}
    out = []
    for p in announced:
        s = state.get(p["sha256"], {})
        out.append({"sha256": p["sha256"], "bytes": p["bytes"],
                    "complete": bool(s.get("complete")), "path": s.get("path"),
                    "chunks": s.get("chunks"), "chunks_received": s.get("chunks_received") or 0})
    return out
