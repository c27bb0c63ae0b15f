"""The media shelf: clips and memos waiting for delivery, on disk and bounded.

Each file is kept under its SHA-256 (``<folder>/<sha>.<ext>``) with an entry in
``index.json`` (kind, report it belongs to, bytes, when added), both written atomically.
``sent(sha)`` keeps a file whose every chunk has left until ``prune_sent(keep_s)`` (the
gateway may ask for chunks again: ``again(sha, first)``), ``delivered(sha)`` prunes one at
once; ``progress(sha, done)`` keeps how many of its chunks have left (the delivery lane
resumes there after a cut or a restart).
Adding beyond ``max_bytes`` drops the oldest undelivered files to make room, and every
drop is recorded — never silently — for the delivery to report (``take_dropped()``).
At start-up the shelf reconciles with the folder: a file with no entry (a crash between
the two writes) is kept as pending, an entry whose file is gone is reported as dropped.
"""

import hashlib
import json
import threading
import time
from pathlib import Path

from ..core import fsio
from ..errors import DeviceError

INDEX = "index.json"
EXTENSIONS = {"clip": ".mp4", "memo": ".ogg", "photo": ".jpg"}
KINDS = {ext: kind for kind, ext in EXTENSIONS.items()}


class ShelfError(DeviceError):
    """Media that cannot be kept on the shelf (unknown kind, larger than the shelf)."""


class MediaShelf:
    """Undelivered media files under ``folder``, at most ``max_bytes`` of them."""

    def __init__(self, folder, max_bytes, clock=time.time):
        if max_bytes <= 0:
            raise ShelfError(f"the shelf's size must be positive, not {max_bytes}")
        self.folder, self.max_bytes, self.clock = Path(folder), max_bytes, clock
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries, self._dropped = self._load()
        self._reconcile()

    # -- persistence ------------------------------------------------------------------

    def _load(self):
        path = self.folder / INDEX
        if not path.exists():
            return {}, []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {e["sha256"]: e for e in data["pending"]}, list(data["dropped"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ShelfError(f"{path}: unreadable shelf index ({exc}); move it aside and "
                             "restart: the files are adopted again") from None

    def _save(self):
        data = {"pending": sorted(self._entries.values(), key=lambda e: e["added"]),
                "dropped": self._dropped}
        fsio.write_file(str(self.folder / INDEX),
                        json.dumps(data, ensure_ascii=False).encode(), str(self.folder))

    def _reconcile(self):
        changed = False
        for path in sorted(self.folder.iterdir()):
            sha, ext = path.stem, path.suffix
            if ext in KINDS and len(sha) == 64 and sha not in self._entries:
                self._entries[sha] = {"sha256": sha, "kind": KINDS[ext], "report": None,
                                      "bytes": path.stat().st_size,
                                      "added": path.stat().st_mtime}
                changed = True
        for sha, entry in list(self._entries.items()):
            if not self._path(entry).exists():
                del self._entries[sha]
                self._dropped.append({**entry, "reason": "file missing at start-up"})
                changed = True
        if changed:
            self._save()

    def _path(self, entry):
        return self.folder / (entry["sha256"] + EXTENSIONS[entry["kind"]])

    # -- use ----------------------------------------------------------------------------

    def add(self, data, kind, report=None):
        """Keep ``data`` (a clip, memo or photo of ``report``) until delivered; its entry.
        Older undelivered media are dropped, and recorded, if the shelf would overflow."""
        if kind not in EXTENSIONS:
            raise ShelfError(f"unknown media kind {kind!r} (one of {', '.join(EXTENSIONS)})")
        if len(data) > self.max_bytes:
            raise ShelfError(f"{kind} of {len(data)} bytes is larger than the whole shelf "
                             f"({self.max_bytes} bytes)")
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            if sha in self._entries:
                return self._entries[sha]
            entry = {"sha256": sha, "kind": kind, "report": report, "bytes": len(data),
                     "added": self.clock()}
            fsio.write_file(str(self._path(entry)), data, str(self.folder))
            used = sum(e["bytes"] for e in self._entries.values())
            # sent files (kept only in case the gateway asks again) make room first, quietly
            for old in sorted(self._entries.values(),
                              key=lambda e: ("sent" not in e, e["added"])):
                if used + len(data) <= self.max_bytes:
                    break
                self._remove(old)
                used -= old["bytes"]
                if "sent" not in old:
                    self._dropped.append({**old, "reason": "shelf full"})
            self._entries[sha] = entry
            self._save()
            return entry

    def add_file(self, path, kind, report=None):
        """``add`` the bytes of ``path`` (e.g. a clip ``EventClips`` wrote), then remove it."""
        path = Path(path)
        entry = self.add(path.read_bytes(), kind, report)
        if path.resolve() != self._path(entry).resolve():
            path.unlink()
        return entry

    def _remove(self, entry):
        del self._entries[entry["sha256"]]
        self._path(entry).unlink(missing_ok=True)

    def delivered(self, sha256):
        """Prune a file the gateway has acknowledged; False if the shelf did not hold it."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                return False
            self._remove(entry)
            self._save()
            return True

    def sent(self, sha256):
        """Every chunk of ``sha256`` has left: keep the file (the gateway may ask for chunks
        again, :meth:`again`) until :meth:`prune_sent` removes it; it is no longer pending."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                entry["sent"] = self.clock()
                self._save()

    def again(self, sha256, first=0):
        """The gateway asks for ``sha256`` again from chunk ``first`` on: pending again;
        False if the shelf no longer holds it."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                return False
            entry.pop("sent", None)
            entry["done"] = min(entry.get("done", 0), first)
            self._save()
            return True

    def prune_sent(self, keep_s):
        """Remove the files sent more than ``keep_s`` seconds ago; how many."""
        with self._lock:
            now = self.clock()
            due = [e for e in self._entries.values()
                   if "sent" in e and now - e["sent"] >= keep_s]
            for entry in due:
                self._remove(entry)
            if due:
                self._save()
            return len(due)

    def withdraw(self, report_id):
        """Remove the files of a report taken back (a long press): not a drop, nothing
        is lost.  How many were removed."""
        with self._lock:
            gone = [e for e in self._entries.values() if e["report"] == report_id]
            for entry in gone:
                self._remove(entry)
            if gone:
                self._save()
            return len(gone)

    def progress(self, sha256, done):
        """Record that chunks ``0 … done-1`` of ``sha256`` have left (durably)."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None or entry.get("done", 0) >= done:
                return
            entry["done"] = done
            self._save()

    def drop(self, sha256, reason):
        """Give up an undelivered file (it cannot be sent): removed and recorded as dropped
        with ``reason``; False if the shelf did not hold it."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                return False
            self._remove(entry)
            self._dropped.append({**entry, "reason": reason})
            self._save()
            return True

    def pending(self):
        """Entries still to send (copies), oldest first; ``done``: chunks already sent."""
        with self._lock:
            return [{"done": 0, **e} for e in sorted(self._entries.values(),
                                                     key=lambda e: e["added"])
                    if "sent" not in e]

    def holds(self, sha256):
        with self._lock:
            return sha256 in self._entries

    def path(self, sha256):
        with self._lock:
            return self._path(self._entries[sha256])

    def used(self):
        with self._lock:
            return sum(e["bytes"] for e in self._entries.values())

    def take_dropped(self):
        """The media dropped since the last call (each with its ``reason``), to report."""
        with self._lock:
            dropped, self._dropped = self._dropped, []
            if dropped:
                self._save()
            return dropped
