"""The device's durable state in its data directory, behind one lock.

    data-dir/
      outbox/            core Outbox: reports, task results, track batches, photo progress
      seq                core SequenceFile: the report sequence, survives reboot
      photos/<sha>.jpg   photos (JPEG or WebP, as camera.format says; named .jpg either
                         way), fsync'd before the report naming them is stored, deleted
                         once delivered
      media/             the media shelf (shelf.py): clips and memos until delivered
      seq.acked          the highest report seq the gateway acknowledged
      cancelled.jsonl    reports cancelled by a long press (kept, never sent)
      reissued.jsonl     reports sent again under a fresh id (old id, new id, why)
      problems.json      life-long counters of what went wrong (status ``problems``)
      tasks.json         open 核实/核查 tasks
      status.json        the device's local status (what `gridlink device status` shows)
      control.sock       the control socket (simulation buttons, status, task answers)
"""

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from ..core import fsio
from ..core import outbox as ob
from ..core.messages import PROBLEMS
from ..core.report import ReportError, decode_report, encode_report, renumber
from ..core.seqfile import SequenceError, SequenceFile, time_floor
from ..errors import DeviceError

log = logging.getLogger("gridlink.device.store")

REPORT, TASK_RESULT, TRACK, PHOTO = ob.REPORT, ob.TASK_RESULT, ob.TRACK, ob.PHOTO_PROGRESS
PHOTO_RESERVE = 256 * 1024   # bytes a photo may not eat into: room for ~250 reports
PHOTO_KEEP_S = 600           # a delivered photo stays this long: the gateway may ask again
                             # (the profile's camera.keep_delivered_s)
KEEP_NEW = ("seq.new", "seq.acked.new")   # read by SequenceFile, not leftovers


def write_durable(path, data):
    """Write-new, fsync, rename, fsync the folder: the file is old or new, never torn."""
    path = Path(path)
    fsio.write_file(str(path), data, str(path.parent))


def _seq_of(payload):
    try:
        return json.loads(payload)["seq"]
    except (ValueError, KeyError, TypeError):
        return 0


class Store:
    """Outbox, sequence, photos and side files of one device, safe across threads."""

    def __init__(self, data_dir, max_outbox_bytes=8 * 1024 * 1024,
                 photo_reserve=PHOTO_RESERVE, photo_keep_s=PHOTO_KEEP_S):
        self.dir = Path(data_dir)
        self.photo_reserve = photo_reserve
        self.photo_keep_s = photo_keep_s
        self.lock = threading.RLock()
        self.closed = False
        try:
            self._open(max_outbox_bytes)
        except OSError as exc:
            raise DeviceError(
                f"data directory {self.dir} cannot be written ({exc.strerror or exc}"
                f"{': ' + str(exc.filename) if exc.filename else ''}): the device keeps its "
                "outbox, report counter and photos there — mount it read-write and give "
                "the device's user write access to it (chown), or pass another --data-dir"
            ) from None

    def _open(self, max_outbox_bytes):
        (self.dir / "outbox").mkdir(parents=True, exist_ok=True)
        (self.dir / "photos").mkdir(exist_ok=True)
        self._clean_partial()
        self._delivered = {}  # sha256 → when its last chunk left (monotonic)
        self.outbox = ob.Outbox(str(self.dir / "outbox"), max_bytes=max_outbox_bytes,
                                on_problem=self._problem)
        saved = self.load_json("problems.json", {})
        saved = saved if isinstance(saved, dict) else {}
        self._problems = {k: saved[k] if isinstance(saved.get(k), int) else 0
                          for k in PROBLEMS if k != "lost"}
        self._settle_photo_swaps()
        self._clean_photos()
        floor = self._highest_seq()
        try:
            self.seq = SequenceFile(str(self.dir / "seq"), floor=floor, now=time.time())
        except SequenceError as exc:
            raise DeviceError(f"{exc}; set the clock (NTP or GNSS) and start again") from None
        if self.seq.restarted and fsio.exists(str(self.dir / "seq")):
            log.error("report counter %s was damaged; it restarts at %d, above every id this "
                      "device used (highest still here %d, last acknowledged %d, the clock)",
                      self.dir / "seq", self.seq.peek(), floor, self.seq.last_acknowledged)

    # -- problems (counted for the status, kept across restarts) -------------------------

    def problems(self):
        """The status ``problems`` counters: damaged outbox records lost, reports reissued,
        photos dropped, reports that failed to be made."""
        with self.lock:
            counts = dict(self._problems)
            counts["lost"] = self.outbox.lost
            return counts

    def count_problem(self, name):
        """Add one to a ``problems`` counter (written durably: these are rare)."""
        with self.lock:
            self._problems[name] = self._problems.get(name, 0) + 1
            try:
                self.save_json("problems.json", self._problems)
            except OSError as exc:
                log.error("problems.json not written (%s); the count is kept in memory", exc)

    def _clean_partial(self):
        """Remove ``*.new`` files a crash or a full disk left half-written (not the counter's:
        :class:`SequenceFile` reads those)."""
        for path in [*self.dir.glob("*.new"), *(self.dir / "photos").glob("*.new")]:
            if path.name in KEEP_NEW:
                continue
            size = path.stat().st_size
            path.unlink()
            log.warning("removed %s (%d bytes), left half-written by a crash or a full disk",
                        path, size)

    def _settle_photo_swaps(self):
        """A report stored twice under one id (a power cut while its photo was swapped
        for its WebP, runtime ``_swap_photo``): keep the record naming the photo its newest
        upload record names (else the first), settle the other."""
        by_id, uploads = {}, {}
        for oseq, kind, payload in self.outbox.pending():
            try:
                obj = json.loads(payload)
            except ValueError:
                continue
            if kind == PHOTO and isinstance(obj, dict):
                uploads[obj.get("report")] = obj.get("sha256")
            elif kind in (REPORT, TASK_RESULT) and isinstance(obj, dict):
                by_id.setdefault(obj.get("id"), []).append((oseq, obj))
        for rid, records in by_id.items():
            if len(records) < 2:
                continue
            named = [s for s, o in records
                     if [p.get("sha256") for p in o.get("photos") or ()] == [uploads.get(rid)]]
            keep = named[-1] if named else records[0][0]
            for oseq, _obj in records:
                if oseq != keep:
                    self.outbox.ack(oseq)
            log.warning("report %s was stored twice (a cut while its photo became WebP): "
                        "the copy naming its upload is kept", rid)

    def _clean_photos(self):
        """Remove photos no pending upload names (delivered, or left by a report that
        could not be stored), but those written in the last ``photo_keep_s``: the gateway
        may still ask for a just-delivered one again."""
        wanted = set()
        for _s, _kind, payload in self.outbox.pending(PHOTO):
            try:
                wanted.add(json.loads(payload)["sha256"])
            except (ValueError, KeyError, TypeError):
                continue
        recent = time.time() - self.photo_keep_s
        for path in (self.dir / "photos").glob("*.jpg"):
            if path.stem not in wanted and path.stat().st_mtime < recent:
                path.unlink()
                log.info("removed photo %s: no upload waits for it", path.name)

    def _problem(self, item):
        name, off, nbytes, reason = item
        log.error("outbox: %s at offset %d (%d bytes): %s — skipped, the rest is kept",
                  name, off, nbytes, reason)

    def _highest_seq(self):
        seqs = [_seq_of(p) for _, k, p in self.outbox.pending() if k in (REPORT, TASK_RESULT)]
        seqs += [_seq_of(p) for _, k, p, _r in self.outbox.rejected()
                 if k in (REPORT, TASK_RESULT)]
        for line in self._lines("cancelled.jsonl"):
            seqs.append(line.get("report", {}).get("seq", 0))
        return max(seqs, default=0)

    # -- reports ----------------------------------------------------------------------

    def next_seq(self):
        with self.lock:
            try:
                return self.seq.next()
            except OSError as exc:
                raise DeviceError(f"report counter {self.seq.path} not written "
                                  f"({exc.strerror or exc}): no report made") from None

    def acknowledged(self, seq):
        """The gateway acknowledged report ``seq``: a lost counter restarts above it."""
        with self.lock:
            self.seq.acknowledged(seq)

    def reissue(self, oseq, why):
        """Send a pending report again under a fresh id (the gateway refused its id).

        The renumbered copy is stored durably before the old record is settled, so a power
        cut in between can only send the report twice, never lose it.  Returns (old report,
        new report); DeviceError when the record cannot be renumbered (it stays pending).
        """
        with self.lock:
            kind, payload = self.outbox.get(oseq)
            old = decode_report(payload)
            self.seq.skip_past(max(old["seq"], time_floor(time.time())))
            try:
                new = renumber(old, self.seq.next())
                self.outbox.append(kind, encode_report(new))
            except (ob.OutboxError, ReportError, SequenceError) as exc:
                raise DeviceError(f"report {old['id']} could not be sent again under a "
                                  f"fresh id ({exc}); it stays in the outbox") from None
            self.append_line("reissued.jsonl", {"time": time.time(), "old": old["id"],
                                                 "new": new["id"], "why": why})
            self.outbox.ack(oseq)
            self.count_problem("reissued")
            return old, new

    def append(self, kind, payload, urgent=False):
        """Durably store one record; returns its outbox sequence.  An ``urgent`` one (a
        突发事件 report) is pending before every other."""
        with self.lock:
            try:
                return self.outbox.append(kind, payload, urgent)
            except ob.OutboxFull as exc:
                raise DeviceError(f"outbox full, report not stored: {exc}") from None
            except ob.OutboxError as exc:
                raise DeviceError(f"{exc}: NOT stored") from None

    def append_numbered(self, kind, build):
        """Durably store the record ``build(seq)`` makes knowing its own outbox sequence
        (a track batch carries it for the gateway's ``track_stored`` ack); returns seq."""
        with self.lock:
            return self.append(kind, build(self.outbox.next_seq))

    def pending(self, kinds):
        """[(outbox seq, kind, payload)] not yet acknowledged: urgent first, then the
        rest, each in append order."""
        with self.lock:
            return [r for r in self.outbox.pending() if r[1] in kinds]

    def is_urgent(self, oseq):
        with self.lock:
            return self.outbox.is_urgent(oseq)

    def ack(self, oseq):
        with self.lock:
            return self.outbox.ack(oseq)

    def ack_many(self, oseqs):
        """Acknowledge several (a grouped ack) with one fsync; how many were pending."""
        with self.lock:
            return self.outbox.ack_many(oseqs)

    def reject(self, oseq, reason):
        with self.lock:
            self.outbox.reject(oseq, reason)

    def depth(self):
        with self.lock:
            return {"reports": self.outbox.depth(REPORT) + self.outbox.depth(TASK_RESULT),
                    "track": self.outbox.depth(TRACK)}

    def rejected(self):
        with self.lock:
            return [(s, k, decode_or_raw(p), r) for s, k, p, r in self.outbox.rejected()]

    # -- photos -----------------------------------------------------------------------

    def photo_path(self, sha):
        return self.dir / "photos" / f"{sha}.jpg"

    def save_photo(self, sha, data):
        """Store a photo durably; DeviceError when the disk cannot take it without eating
        the ``photo_reserve`` bytes kept for reports (the report then goes without it)."""
        path = self.photo_path(sha)
        if path.exists():
            return path
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if free is not None and free - len(data) < self.photo_reserve:
            raise DeviceError(f"photo of {len(data)} bytes not saved: {free} bytes free in "
                              f"{path.parent}, {self.photo_reserve} are kept for reports")
        try:
            write_durable(path, data)
        except OSError as exc:
            Path(str(path) + ".new").unlink(missing_ok=True)
            raise DeviceError(f"photo of {len(data)} bytes not saved: "
                              f"{exc.strerror or exc}") from None
        return path

    def remove_photo(self, sha):
        """Delete a delivered photo (or one no report names)."""
        self.photo_path(sha).unlink(missing_ok=True)

    def photo_delivered(self, sha, now=None):
        """Every chunk of ``sha`` left the device: delete it ``photo_keep_s`` from now
        (:meth:`prune_delivered`), so the gateway can still ask for it again meanwhile."""
        with self.lock:
            self._delivered[sha] = time.monotonic() if now is None else now

    def photo_wanted_again(self, sha):
        """The gateway asked for ``sha`` again: keep it until it is delivered anew."""
        with self.lock:
            self._delivered.pop(sha, None)

    def prune_delivered(self, now=None):
        """Delete the delivered photos whose ``photo_keep_s`` has run out; their count."""
        now = time.monotonic() if now is None else now
        with self.lock:
            due = [sha for sha, at in self._delivered.items() if now - at >= self.photo_keep_s]
            for sha in due:
                del self._delivered[sha]
                self.remove_photo(sha)
        return len(due)

    # -- side files -------------------------------------------------------------------

    def _lines(self, name):
        path = self.dir / name
        if not path.exists():
            return []
        out = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                log.error("%s: a damaged line was skipped", path)
        return out

    def append_line(self, name, obj):
        with self.lock, open(self.dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def cancelled(self):
        return self._lines("cancelled.jsonl")

    def load_json(self, name, default):
        path = self.dir / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default
        except ValueError:
            log.error("%s is damaged; starting from an empty one (old copy kept as .bad)", path)
            os.replace(path, path.with_name(path.name + ".bad"))
            return default

    def save_json(self, name, obj):
        write_durable(self.dir / name, json.dumps(obj, ensure_ascii=False, indent=1).encode())

    def is_alive(self):
        """True until closed: the outbox takes records."""
        return not self.closed

    def close(self):
        with self.lock:
            self.closed = True
            self.outbox.close()


def decode_or_raw(payload):
    try:
        return decode_report(payload)
    except Exception:  # a rejected record is shown as it is, whatever it holds
        return payload.decode("utf-8", "replace")
