"""The device's durable state in its data directory, behind one lock.

    data-dir/
      outbox/            core Outbox: reports, task results, track batches, photo progress
      seq                core SequenceFile: the report sequence, survives reboot
      photos/<sha>.jpg   photos, fsync'd before the report naming them is stored
      cancelled.jsonl    reports cancelled by a long press (kept, never sent)
      tasks.json         open 核实/核查 tasks
      status.json        the device's local status (what `gridlink device status` shows)
      control.sock       the control socket (simulation buttons, status, task answers)
"""

import json
import logging
import os
import threading
from pathlib import Path

from ..core import fsio
from ..core import outbox as ob
from ..core.report import decode_report
from ..core.seqfile import SequenceError, SequenceFile
from ..errors import DeviceError

log = logging.getLogger("gridlink.device.store")

REPORT, TASK_RESULT, TRACK, PHOTO = ob.REPORT, ob.TASK_RESULT, ob.TRACK, ob.PHOTO_PROGRESS


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

    def __init__(self, data_dir, max_outbox_bytes=8 * 1024 * 1024):
        self.dir = Path(data_dir)
        (self.dir / "outbox").mkdir(parents=True, exist_ok=True)
        (self.dir / "photos").mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.closed = False
        self.outbox = ob.Outbox(str(self.dir / "outbox"), max_bytes=max_outbox_bytes,
                                on_problem=self._problem)
        try:
            self.seq = SequenceFile(str(self.dir / "seq"))
        except SequenceError as exc:
            floor = self._highest_seq()
            log.error("%s; continuing after the highest seq found (%d)", exc, floor)
            self.seq = SequenceFile(str(self.dir / "seq"), floor=max(floor, 1))

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
            return self.seq.next()

    def append(self, kind, payload):
        """Durably store one record; returns its outbox sequence."""
        with self.lock:
            try:
                return self.outbox.append(kind, payload)
            except ob.OutboxFull as exc:
                raise DeviceError(f"outbox full, report not stored: {exc}") from None

    def pending(self, kinds):
        """[(outbox seq, kind, payload)] not yet acknowledged, in append order."""
        with self.lock:
            return [r for r in self.outbox.pending() if r[1] in kinds]

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
        path = self.photo_path(sha)
        if not path.exists():
            write_durable(path, data)
        return path

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
