"""A crash-safe outbox: what the device has made but the gateway has not yet acknowledged.

Files in ``dir_path`` (format in :mod:`records`, design in ``docs/protocol.md``):

- ``outbox.log``  — a META record (next sequence number, records lost to damage so
  far), then one record per append.  Append-only; fsync'd before ``append`` returns.
- ``outbox.acks`` — one empty ACK record per acknowledged sequence (acks may come out of
  order).  The *acknowledged-up-to cursor* is derived: every sequence below the first
  unacknowledged record.  Only acks of records still in the log are kept.
- ``outbox.rejected`` — reports the gateway rejected, kept with the reason (never retried,
  never silently dropped).

On open a damaged record is reported in ``problems`` (file, offset, bytes, reason) and
skipped; a torn tail is cut by rewriting the file.  Every record lost to damage (in the
middle of the log, or written whole at its end, or found unreadable while compacting) is
counted in ``lost``, which the META record keeps across restarts; an append cut short by a
crash (it never returned) is not a loss.  Compaction writes ``outbox.log.new``,
fsyncs it and renames it over the log (then drops the stale ack file), so a power cut at
any step leaves either the old or the new log, both complete.  The log is bounded by
``max_bytes``: to make room, acknowledged records go first, then unacknowledged TRACK
points (oldest first), then PHOTO_PROGRESS records; REPORT and TASK_RESULT records are
never evicted — when only they fill the log, ``append`` raises :class:`OutboxFull`.

An urgent record (``append(kind, payload, urgent=True)``: a 突发事件 report) carries
``URGENT`` in its kind byte; ``pending`` gives the urgent records first (in append
order), then the rest in append order, so whoever delivers from it sends them before any
backlog.  Firmware from before this mark reads such a record as an unknown kind.

Disk use stays below about 2.5 × ``max_bytes`` (log, its ack file, and the new log while
compacting).  An Outbox is not thread-safe: a threaded caller holds one lock around it.
"""

import struct

from . import fsio, records
from .errors import CoreError

REPORT = 1
TASK_RESULT = 2
TRACK = 3
PHOTO_PROGRESS = 4
KIND_NAMES = {REPORT: "report", TASK_RESULT: "task_result", TRACK: "track",
              PHOTO_PROGRESS: "photo_progress"}
URGENT = 0x80                  # in a record's kind byte: the record goes first
URGENT_KINDS = (REPORT, TASK_RESULT)
_META = 0
_ACK = 0x41
_META_TAG = b"GLOB\x01"
_META_SIZE = records.OVERHEAD + len(_META_TAG) + 8     # next seq, records lost (>I each)
_META_OLD = len(_META_TAG) + 4                          # before the lost count: next seq only
# What an append of a kind may evict to make room, in eviction order.
_EVICTS = {REPORT: (TRACK, PHOTO_PROGRESS), TASK_RESULT: (TRACK, PHOTO_PROGRESS),
           PHOTO_PROGRESS: (TRACK, PHOTO_PROGRESS), TRACK: (TRACK,)}

LOG = "outbox.log"
ACKS = "outbox.acks"
REJECTED = "outbox.rejected"


class OutboxError(CoreError):
    """The outbox could not store or find a record (the message says which and why)."""


class OutboxFull(OutboxError):
    """No room even after dropping acknowledged and evictable records; nothing was stored."""


class Outbox:
    """``append(kind, payload) -> seq``, ``pending(kind)``, ``ack(seq)``, ``depth(kind)``."""

    def __init__(self, dir_path, max_bytes=1024 * 1024, sync=True, on_problem=None):
        if max_bytes < _META_SIZE + records.OVERHEAD + 1:
            raise OutboxError(f"max_bytes {max_bytes} is too small for one record")
        self.dir = dir_path
        self.max_bytes = max_bytes
        self.sync = sync
        self.on_problem = on_problem
        self.problems = []
        self.lost = 0
        self.evicted = {TRACK: 0, PHOTO_PROGRESS: 0}
        self._log_path = fsio.join(dir_path, LOG)
        self._ack_path = fsio.join(dir_path, ACKS)
        self._rej_path = fsio.join(dir_path, REJECTED)
        self._w = self._r = self._aw = None
        fsio.makedirs(dir_path)
        self._load()

    # -- opening ------------------------------------------------------------------------

    def _problem(self, name, off, nbytes, reason):
        item = (name, off, nbytes, reason)
        self.problems.append(item)
        if self.on_problem is not None:
            self.on_problem(item)

    def _load(self):
        self._close_files()
        new = self._log_path + ".new"
        if fsio.exists(self._log_path):
            fsio.remove(new)                 # a compaction that did not finish
        elif fsio.exists(new):
            fsio.replace(new, self._log_path, self.dir)   # FAT: crash between remove and rename
        self._seqs = []                      # record seqs in log order
        self._where = {}                     # seq -> (kind, offset, payload length)
        self._acked = set()
        self._urgent = []                    # seqs of urgent records, in log order
        self._next = 1
        self._unacked = {k: 0 for k in KIND_NAMES}
        damaged = False
        size = fsio.size(self._log_path)
        if size > 0:
            damaged = self._scan_log(size)
        else:                                # missing, or created and never written
            self._write_log(())
        self._scan_acks()
        for seq in self._seqs:
            if seq not in self._acked:
                self._unacked[self._where[seq][0]] += 1
        if damaged:
            self._compact(())
        self._open_files()

    def _scan_log(self, size):
        damaged = False
        meta_next = meta_lost = found = 0
        with open(self._log_path, "rb") as f:
            for off, kind, seq, payload, nxt in records.scan(f, 0, size):
                if kind is None:
                    n = records.records_in(f, off, off + seq, nxt, payload, (_META,))
                    found += n
                    what = "torn tail cut" if nxt else "damaged record skipped"
                    self._problem(LOG, off, seq, f"{payload}; {what}; {n} record(s) lost")
                    damaged = True
                elif kind == _META:
                    if payload[:5] != _META_TAG:
                        pass
                    elif len(payload) == _META_OLD:
                        (meta_next,) = struct.unpack(">I", payload[5:])
                    elif len(payload) == _META_OLD + 4:
                        meta_next, meta_lost = struct.unpack(">II", payload[5:])
                elif kind in KIND_NAMES or (kind & ~URGENT) in URGENT_KINDS:
                    if seq in self._where:
                        self._problem(LOG, off, nxt - off, f"duplicate seq {seq} skipped")
                        damaged = True
                        continue
                    if kind & URGENT:
                        kind &= ~URGENT
                        self._urgent.append(seq)
                    self._seqs.append(seq)
                    self._where[seq] = (kind, off, len(payload))
                    self._next = max(self._next, seq + 1)
                else:
                    found += 1
                    self._problem(LOG, off, nxt - off,
                                  f"unknown record kind {kind} skipped; 1 record(s) lost")
                    damaged = True
        self._next = max(self._next, meta_next)
        self.lost = meta_lost + found
        self._size = size
        return damaged

    def _scan_acks(self):
        size = fsio.size(self._ack_path)
        if size < 0:
            return
        rewrite = False
        with open(self._ack_path, "rb") as f:
            for off, kind, seq, payload, nxt in records.scan(f, 0, size):
                if kind is None:
                    what = "torn tail cut" if nxt else "damaged ack skipped"
                    self._problem(ACKS, off, seq, f"{payload}; {what}")
                    rewrite = True
                elif kind == _ACK:
                    self._next = max(self._next, seq + 1)
                    if seq in self._where:
                        self._acked.add(seq)
        if rewrite:
            data = b"".join(records.encode(_ACK, s, b"") for s in sorted(self._acked))
            fsio.write_file(self._ack_path, data, self.dir)

    def _open_files(self):
        self._w = open(self._log_path, "ab")  # noqa: SIM115 (held open; close() closes)
        self._r = open(self._log_path, "rb")  # noqa: SIM115

    def _close_files(self):
        for f in (self._w, self._r, self._aw):
            if f is not None:
                f.close()
        self._w = self._r = self._aw = None

    # -- writing ------------------------------------------------------------------------

    def _durable(self, f):
        if self.sync:
            fsio.durable(f)
        else:
            f.flush()

    def _meta(self):
        return records.encode(_META, 0, _META_TAG + struct.pack(">II", self._next,
                                                                  min(self.lost, 0xFFFFFFFF)))

    def _write_log(self, keep):
        """Write META + the records ``keep`` (seq list) to LOG.new, then rename it over LOG."""
        tmp = self._log_path + ".new"
        where = {}
        off = _META_SIZE
        with open(tmp, "wb") as out:
            out.write(self._meta())
            for seq in keep:
                kind, src, length = self._where[seq]
                rec = records.read_record(self._r, src, src + records.OVERHEAD + length)
                if isinstance(rec, str):
                    self.lost += 1
                    self._problem(LOG, src, records.OVERHEAD + length,
                                  f"{rec} (found while compacting); record lost")
                    continue
                out.write(records.encode(rec[0], seq, rec[2]))
                where[seq] = (kind, off, length)
                off += records.OVERHEAD + length
            out.seek(0)
            out.write(self._meta())          # the lost count may have grown meanwhile
            self._durable(out)
        fsio.replace(tmp, self._log_path, self.dir if self.sync else None)
        self._size = off
        return where

    def _compact(self, evict):
        """Rewrite the log without acknowledged and ``evict``ed records."""
        if self._r is None:
            self._r = open(self._log_path, "rb")  # noqa: SIM115
        keep = [s for s in self._seqs if s not in self._acked and s not in evict]
        if self._w is not None:
            self._w.close()
            self._w = None
        if self._aw is not None:
            self._aw.close()
            self._aw = None
        where = self._write_log(keep)
        fsio.remove(self._ack_path)          # every ack in it refers to a dropped record
        self._r.close()
        self._r = None
        for seq in evict:
            if seq not in self._acked:
                self.evicted[self._where[seq][0]] += 1
        self._seqs = [s for s in keep if s in where]
        self._urgent = [s for s in self._urgent if s in where]
        self._where = where
        self._acked = set()
        self._unacked = {k: 0 for k in KIND_NAMES}
        for seq in self._seqs:
            self._unacked[where[seq][0]] += 1

    def compact(self):
        """Drop acknowledged records from disk now (appends also do it when space is short)."""
        self._compact(())
        self._open_files()

    def _make_room(self, need, kind):
        room = self.max_bytes - _META_SIZE
        live = 0
        for seq in self._seqs:
            if seq not in self._acked:
                live += records.OVERHEAD + self._where[seq][2]
        evict = set()
        for victim in _EVICTS[kind]:
            # Track points go in batches of an eighth of the log, so a full log of track
            # is not rewritten on every append.
            target = room - (self.max_bytes // 8 if victim == TRACK else 0)
            for seq in self._seqs:
                if live + need <= target:
                    break
                k, _, length = self._where[seq]
                if k == victim and seq not in self._acked:
                    evict.add(seq)
                    live -= records.OVERHEAD + length
        if live + need > room:
            raise OutboxFull(
                f"outbox full: {self.depth(REPORT)} reports and {self.depth(TASK_RESULT)} "
                f"task results await acknowledgement in {live} of {room} bytes; a "
                f"{KIND_NAMES[kind]} of {need} bytes was NOT stored (reports are never "
                "evicted: keep it and retry after acknowledgements arrive)")
        self._compact(evict)
        self._open_files()

    def append(self, kind, payload, urgent=False):
        """Store payload durably; returns its sequence number.  Raises OutboxFull.

        ``urgent`` (a report or task result only): ``pending`` gives it before the rest."""
        if kind not in KIND_NAMES:
            raise OutboxError(f"unknown record kind {kind}")
        if urgent and kind not in URGENT_KINDS:
            raise OutboxError(f"a {KIND_NAMES[kind]} record cannot be urgent (only reports "
                              "and task results are)")
        payload = bytes(payload)
        rec = records.encode(kind | URGENT if urgent else kind, self._next, payload)
        if len(rec) > self.max_bytes - _META_SIZE:
            raise OutboxFull(f"a record of {len(rec)} bytes can never fit in an outbox of "
                             f"{self.max_bytes} bytes")
        if self._size + len(rec) > self.max_bytes:
            self._make_room(len(rec), kind)
        seq = self._next
        try:
            self._w.write(rec)
            self._durable(self._w)
        except OSError as exc:
            self._load()                     # cut whatever part of the record landed
            raise OutboxError(f"could not store a {KIND_NAMES[kind]}: {exc}")  # noqa: B904
        self._seqs.append(seq)
        if urgent:
            self._urgent.append(seq)
        self._where[seq] = (kind, self._size, len(payload))
        self._size += len(rec)
        self._next = seq + 1
        self._unacked[kind] += 1
        return seq

    # -- reading ------------------------------------------------------------------------

    def _payload(self, seq):
        off, length = self._where[seq][1:]
        rec = records.read_record(self._r, off, off + records.OVERHEAD + length)
        if isinstance(rec, str):
            raise OutboxError(f"record {seq} at offset {off} became unreadable: {rec}")
        return rec[2]

    def get(self, seq):
        """(kind, payload) of a pending record; OutboxError if it is acked or unknown."""
        if seq not in self._where or seq in self._acked:
            raise OutboxError(f"no pending record {seq} in the outbox")
        return self._where[seq][0], self._payload(seq)

    def pending(self, kind=None):
        """Iterate unacknowledged ``(seq, kind, payload)``: the urgent records first, then
        the others, each in append order.

        Safe to ack (or append) while iterating: records acked meanwhile are skipped.
        """
        self._w.flush()
        urgent = [s for s in self._urgent if s not in self._acked]
        rest = self._seqs
        if urgent:
            first = set(urgent)
            rest = [s for s in self._seqs if s not in first]
        for seq in urgent + list(rest):
            entry = self._where.get(seq)
            if entry is None or seq in self._acked:
                continue
            if kind is not None and entry[0] != kind:
                continue
            yield seq, entry[0], self._payload(seq)

    def is_urgent(self, seq):
        """Whether record ``seq`` was appended urgent."""
        return seq in self._urgent

    def depth(self, kind=None):
        """Unacknowledged records (of one kind, or all)."""
        if kind is None:
            return sum(self._unacked.values())
        return self._unacked.get(kind, 0)

    @property
    def cursor(self):
        """Acknowledged-up-to: every sequence ≤ cursor is acknowledged (or evicted)."""
        for seq in self._seqs:
            if seq not in self._acked:
                return seq - 1
        return self._next - 1

    @property
    def size(self):
        """Bytes the log takes on disk now."""
        return self._size

    @property
    def next_seq(self):
        return self._next

    # -- acknowledging ------------------------------------------------------------------

    def ack(self, seq):
        """Mark seq delivered (persisted before returning).  False if it was not pending."""
        return self.ack_many((seq,)) == 1

    def ack_many(self, seqs):
        """Acknowledge several sequences with one fsync; returns how many were pending."""
        fresh = []
        for s in seqs:                       # a sequence listed twice is acked once
            if s in self._where and s not in self._acked and s not in fresh:
                fresh.append(s)
        if not fresh:
            return 0
        if self._aw is None:
            existed = fsio.exists(self._ack_path)
            self._aw = open(self._ack_path, "ab")  # noqa: SIM115
            if not existed and self.sync:
                fsio.sync_dir(self.dir)
        self._aw.write(b"".join(records.encode(_ACK, s, b"") for s in fresh))
        self._durable(self._aw)
        for s in fresh:
            self._acked.add(s)
            self._unacked[self._where[s][0]] -= 1
        if self.depth() == 0 and self._size > self.max_bytes // 2:
            self.compact()
        return len(fresh)

    # -- rejected reports ---------------------------------------------------------------

    def reject(self, seq, reason):
        """Move a record the gateway rejected to ``outbox.rejected`` with the reason.

        Written and fsync'd there before it is acked here, so a crash in between can
        only keep it in both places, never lose it.  False if seq was not pending (an
        ack or rejection that arrived twice).
        """
        if seq not in self._where or seq in self._acked:
            return False
        kind, payload = self.get(seq)
        why = reason.encode("utf-8")[:255]
        with open(self._rej_path, "ab") as f:
            f.write(records.encode(kind, seq, bytes((len(why),)) + why + payload))
            self._durable(f)
        return self.ack(seq)

    def rejected(self):
        """Iterate ``(seq, kind, payload, reason)`` of rejected records, oldest first."""
        size = fsio.size(self._rej_path)
        if size < 0:
            return
        with open(self._rej_path, "rb") as f:
            for off, kind, seq, payload, _ in records.scan(f, 0, size):
                if kind is None:
                    self._problem(REJECTED, off, seq, payload)
                    continue
                n = payload[0]
                yield seq, kind, payload[1 + n:], payload[1:1 + n].decode("utf-8", "replace")

    def close(self):
        self._close_files()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
