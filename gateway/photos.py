"""Photo transfers: chunks kept in the database until the last arrives, then the photo is
reassembled, sha256-checked and stored content-addressed on disk (``<dir>/ab/abcd….jpg``).

Chunks are written in the same transaction as the rest of their batch, before the broker
gets its PUBACK, so a transfer resumes across gateway restarts: the device re-sends only
the chunks it never saw acknowledged, and the gateway still has the others.
"""

import hashlib
from pathlib import Path

from gridlink.firmware.core import fsio

from .clock import utc_now_iso
from .errors import ConfigError

JPEG = b"\xff\xd8\xff"


class PhotoDir:
    """Content-addressed photo files under one folder."""

    def __init__(self, root):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"photos folder {self.root}: {exc}") from exc

    def path_for(self, sha256, data=b""):
        ext = ".jpg" if data.startswith(JPEG) else ".bin"
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


def add_chunks(store, conn, photo_dir, chunks):
    """Store chunk verdict data; finish every photo whose last chunk arrived.

    Returns (completed sha256 list, [(chunk data, reason)] for chunks refused here).
    """
    q = store.sql
    now = utc_now_iso()
    touched, refused = {}, []
    for c in chunks:
        sha = c["sha256"]
        row = conn.execute(q("SELECT size, complete, chunks FROM photos WHERE sha256 = ?"),
                           (sha,)).fetchone()
        if row is None:
            conn.execute(q("INSERT INTO photos (sha256, size, complete, first_report, chunks) "
                           "VALUES (?, ?, 0, ?, ?)"), (sha, c["size"], c["report_id"], c["total"]))
        else:
            size, complete, total = row
            if complete:
                continue  # a late copy of a chunk of a finished photo
            if size != c["size"] or (total is not None and total != c["total"]):
                refused.append((c, f"photo {sha}: chunk says {c['size']} bytes in "
                                   f"{c['total']} chunks, the transfer has {size} in {total}"))
                continue
            if total is None:
                conn.execute(q("UPDATE photos SET chunks = ? WHERE sha256 = ?"),
                             (c["total"], sha))
        conn.execute(q("INSERT INTO report_photos (report_id, sha256) VALUES (?, ?) "
                       "ON CONFLICT DO NOTHING"), (c["report_id"], sha))
        conn.execute(q("INSERT INTO photo_chunks (sha256, n, total, data, received_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                     (sha, c["n"], c["total"], c["data"], now))
        touched[sha] = c
    completed = []
    for sha, c in touched.items():
        (have,) = conn.execute(q("SELECT COUNT(*) FROM photo_chunks WHERE sha256 = ?"),
                               (sha,)).fetchone()
        conn.execute(q("UPDATE photos SET chunks_received = ? WHERE sha256 = ?"), (have, sha))
        if have < c["total"]:
            continue
        parts = conn.execute(q("SELECT data FROM photo_chunks WHERE sha256 = ? ORDER BY n"),
                             (sha,)).fetchall()
        data = b"".join(bytes(p[0]) for p in parts)
        conn.execute(q("DELETE FROM photo_chunks WHERE sha256 = ?"), (sha,))
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != c["size"] or digest != sha:
            reason = (f"photo {sha}: reassembled {len(data)} bytes with sha256 {digest}; "
                      f"expected {c['size']} bytes — chunks discarded, resend the photo")
            conn.execute(q("UPDATE photos SET error = ?, chunks_received = 0 WHERE sha256 = ?"),
                         (reason, sha))
            refused.append((c, reason))
            continue
        path = photo_dir.write(sha, data)
        conn.execute(q("UPDATE photos SET complete = 1, path = ?, error = NULL, "
                       "chunks_received = chunks, completed_at = ? WHERE sha256 = ?"),
                     (str(path), now, sha))
        completed.append(sha)
    return completed, refused


def report_photos(store, report_id):
    """[{sha256, bytes, complete, path}] for one report, in the report's order."""
    import json

    rows = store.fetchall("SELECT photos FROM reports WHERE id = ?", (report_id,))
    if not rows:
        return []
    announced = json.loads(rows[0]["photos"])
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
