"""Group commit: one transaction per batch of judged messages, then the outcomes.

``Ingest.commit(items)`` writes every accepted report (deduplicated by the device-made id
through the table's primary key — ``INSERT … ON CONFLICT DO NOTHING``, not a cache), every
rejection (``dead_letters``, deduplicated the same way by the message's digest), photo
chunk, track point and device status of the batch in ONE transaction.  Only when it
returns may the caller PUBACK the batch's messages and send the devices their acks; when
it raises, nothing of the batch is committed.
"""

import base64
import json
import time
from operator import itemgetter

from gridlink.firmware.core import canonjson
from gridlink.firmware.core.messages import (
    ACK_IDS_MAX,
    REASON_MAX,
    TRACK_SEQS_MAX,
    make_photo_stored,
    make_resend,
    make_track_stored,
)

from .clock import wire_time
from .media_ingest import add_media_chunks
from .photos import DEVICE_UNFINISHED_MAX_BYTES, Refusal, add_chunks, register_report_photos
from .validate import QUIET, REPORT_COLUMNS, sha256_hex

ACCEPTED, DUPLICATE, REJECTED, STORED = "accepted", "duplicate", "rejected", "stored"
REUSED = "id_reused"  # a report id committed before with other content: refused
_REPORT_ROW = itemgetter(*REPORT_COLUMNS)
# acks of accepted or duplicate reports: their ids are validated ([a-z0-9-]:digits), so
# they need no JSON escaping; the same bytes as the core's encode(make_ack(...))
TRACK_SEQS = object()  # device_acks' group key of a device's track_stored seqs
_PLAIN_ACK = '{{"v":1,"id":"{}","status":"{}","reason":null}}'
_GROUPED_ACK = '{{"v":1,"ids":["{}"],"status":"{}","reason":null}}'


class Item:
    """One inbound message on its way through a batch."""

    __slots__ = ("mid", "outcome", "payload", "qos", "reason", "received", "resend", "stored",
                 "token", "topic", "verdict")

    def __init__(self, topic, payload, received, verdict, mid=0, qos=0, token=None):
        self.topic = topic
        self.payload = payload
        self.received = received
        self.verdict = verdict
        self.mid = mid
        self.qos = qos
        self.token = token  # whatever the transport needs to acknowledge it
        self.outcome = None
        self.reason = None
        self.resend = None  # (report id, sha256, chunk numbers or None): a photo's resend
        self.stored = False  # a photo chunk whose photo the gateway now holds whole


def device_acks(items, ids_max=ACK_IDS_MAX):
    """(district, device, ack payload) of the acks a committed batch owes its devices.

    Accepted and duplicate reports of one device are answered together, up to ``ids_max``
    ids an ack (the protocol's grouped ack; 1 gives each report an ack of its own, for
    devices that read only ``id``); a rejection gets an ack of its own with its reason
    (none for another district's message or a revoked identity's: ``validate.QUIET``);
    a photo chunk the device must send again gets a ``resend`` ack instead; a photo held
    whole gets a ``photo_stored`` ack (one a batch), a device's committed track batches
    that carry a ``seq`` one ``track_stored`` ack (up to ``TRACK_SEQS_MAX`` seqs).
    In the order of each ack's first message.
    """
    acks = []
    groups = {}  # (district, device, status) → the ids of its latest ack
    photos = set()  # (device, report id, sha256) confirmed in this batch
    for it in items:
        v = it.verdict
        if v.device is None or v.district is None or v.category in QUIET:
            continue
        if v.kind == "track":
            if it.outcome == STORED and v.seq is not None:
                key = (v.district, v.device, TRACK_SEQS)
                seqs = groups.get(key)
                if seqs is None or len(seqs) >= TRACK_SEQS_MAX:
                    seqs = groups[key] = []
                    acks.append((v.district, v.device, (seqs, TRACK_SEQS)))
                seqs.append(v.seq)
            continue
        if it.stored:
            key = (v.device, v.report_id, v.data["sha256"])
            if key not in photos:
                photos.add(key)
                acks.append((v.district, v.device, _encode(make_photo_stored(
                    v.report_id, v.data["sha256"]))))
            continue
        if it.resend is not None:
            rid, sha, chunks = it.resend
            acks.append((v.district, v.device, _encode(make_resend(
                rid, sha, chunks, _short(it.reason or "send the photo's chunks again")))))
        elif it.outcome in (REJECTED, REUSED) and v.kind == "media":
            continue  # a refused clip or memo is not a report's outcome: a dead letter only
        elif it.outcome in (REJECTED, REUSED):
            rid = v.report_id if v.kind in ("report", "task/result", "rejected") else None
            body = {"v": 1, "id": rid, "status": it.outcome, "reason": it.reason}
            acks.append((v.district, v.device, json.dumps(
                body, ensure_ascii=False, separators=(",", ":")).encode()))
        elif v.kind in ("report", "task/result"):
            key = (v.district, v.device, it.outcome)
            ids = groups.get(key)
            if ids is None or len(ids) >= ids_max:
                ids = groups[key] = []
                acks.append((v.district, v.device, (ids, it.outcome)))
            ids.append(v.report_id)
    for i, (district, device, body) in enumerate(acks):
        if type(body) is tuple and body[1] == TRACK_SEQS:
            acks[i] = (district, device, _encode(make_track_stored(body[0])))
        elif type(body) is tuple:
            ids, status = body
            body = (_PLAIN_ACK.format(ids[0], status) if len(ids) == 1 else
                    _GROUPED_ACK.format('","'.join(ids), status)).encode()
            acks[i] = (district, device, body)
    return acks


def _encode(body):
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _short(reason, limit=REASON_MAX):
    """A reason within the ack's limit (the dead letter keeps it whole)."""
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def shared_keys(items, announced):
    """What a batch writes that another worker's batch may write at the same time: its
    devices (presence, refusal tally) and its photos (announced or chunks), as
    ``Store.lock_keys`` keys.  Reports, track points and dead letters are new rows: one
    that another batch is inserting too makes this batch wait on the unique index for
    that commit, which cannot cross back (reports go in before these locks; the others
    belong to a device that both batches lock) — save two dead letters of no device in
    opposite orders, which takes a crash and two garbage messages; the retry clears it."""
    keys = {"device:" + it.verdict.device for it in items if it.verdict.device is not None}
    keys.update("photo:" + it.verdict.data["sha256"] for it in items
                if it.verdict.kind == "photo")
    keys.update("photo:" + p["sha256"] for _, photos in announced for p in photos)
    keys.update("media:" + it.verdict.data["sha256"] for it in items
                if it.verdict.kind == "media")
    return keys


def message_digest(topic, payload):
    """The key of a dead letter: sha256 of the topic, a NUL and the payload (hex).  The
    same message handed over again is the same dead letter, not a second one."""
    topic = topic.encode("utf-8", "surrogateescape") if isinstance(topic, str) else bytes(topic)
    return sha256_hex(topic + b"\0" + bytes(payload))


def same_content(digest_a, payload_a, digest_b, payload_b):
    """Whether two payloads of one report id are the same report: the same bytes (equal
    digests), or else the same canonical encoding (``canonjson.dumps`` of the parsed
    JSON), so that key order and spacing never make a repeat a reused id.  A digest may
    be None (a row from before migration 0003): the payloads decide."""
    if digest_a is not None and digest_a == digest_b:
        return True
    return _canonical(payload_a) == _canonical(payload_b)


def _canonical(payload):
    if isinstance(payload, bytes | bytearray | memoryview):
        payload = bytes(payload).decode("utf-8", "surrogateescape")
    try:
        return canonjson.dumps(json.loads(payload))
    except (ValueError, canonjson.EncodeError):
        return payload.encode("utf-8", "surrogateescape")


def id_reused_reason(report_id, digest):
    """The dead letter's and the device ack's reason (≤ 200 characters, the ack's limit)."""
    held = f" (sha256 {digest[:16]}…)" if digest else ""
    return (f"id reused: {report_id} is already committed with other content{held}; "
            f"this report is refused, not stored")


def payload_text(payload):
    """(text, encoding) for a dead letter: UTF-8 as is, anything else base64."""
    try:
        text = payload.decode("utf-8")
        if "\x00" not in text:
            return text, "utf-8"
    except UnicodeDecodeError:
        pass
    return base64.b64encode(payload).decode("ascii"), "base64"


_SEEN = """
INSERT INTO devices (device, district, last_seen, last_lat, last_lon, last_fix_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (device) DO UPDATE SET
  district = excluded.district,
  last_seen = CASE WHEN excluded.last_seen > devices.last_seen
                   THEN excluded.last_seen ELSE devices.last_seen END,
  last_lat = CASE WHEN {newer} THEN excluded.last_lat ELSE devices.last_lat END,
  last_lon = CASE WHEN {newer} THEN excluded.last_lon ELSE devices.last_lon END,
  last_fix_at = CASE WHEN {newer} THEN excluded.last_fix_at ELSE devices.last_fix_at END
"""
# A device's last_seen is its last message: the broker's will saying it went offline is not
# one (the board's 最后通信 would read the moment the connection dropped).
_STATUS = """
INSERT INTO devices (device, district, state, last_seen, status, last_lat, last_lon,
                     last_fix_at, outbox_reports, firmware, codebook, profile)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device) DO UPDATE SET
  district = excluded.district,
  state = excluded.state,
  status = excluded.status,
  last_seen = CASE WHEN excluded.state <> 'offline' AND excluded.last_seen > devices.last_seen
                   THEN excluded.last_seen ELSE devices.last_seen END,
  last_lat = CASE WHEN {newer} THEN excluded.last_lat ELSE devices.last_lat END,
  last_lon = CASE WHEN {newer} THEN excluded.last_lon ELSE devices.last_lon END,
  last_fix_at = CASE WHEN {newer} THEN excluded.last_fix_at ELSE devices.last_fix_at END,
  outbox_reports = COALESCE(excluded.outbox_reports, devices.outbox_reports),
  firmware = COALESCE(excluded.firmware, devices.firmware),
  codebook = COALESCE(excluded.codebook, devices.codebook),
  profile = COALESCE(excluded.profile, devices.profile)
"""
_NEWER = ("excluded.last_fix_at IS NOT NULL AND (devices.last_fix_at IS NULL "
          "OR excluded.last_fix_at > devices.last_fix_at)")
_STATUS_COLUMNS = ("device", "district", "state", "last_seen", "status", "last_lat",
                   "last_lon", "last_fix_at", "outbox_reports", "firmware", "codebook",
                   "profile")


class Ingest:
    """Writes batches of judged messages into one store."""

    def __init__(self, store, photo_dir, media_store=None,
                 photo_quota=DEVICE_UNFINISHED_MAX_BYTES):
        self.store = store
        self.photo_dir = photo_dir
        self.media_store = media_store  # a media.MediaStore: None refuses clips and memos
        self.photo_quota = photo_quota  # chunk bytes a device may have waiting (photos.py)
        self._tasks_known = False  # the task desk's tables exist (seen once: they stay)
        self._media_known = False  # the media tables exist (seen once: they stay)
        q = store.sql
        self._seen_sql = q(_SEEN.format(newer=_NEWER))
        self._status_sql = q(_STATUS.format(newer=_NEWER))
        self._track_sql = q("INSERT INTO track_points (device, t, lat, lon, speed) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
        self._dead_sql = q("INSERT INTO dead_letters (received_at, topic, device, reason, "
                           "payload, payload_encoding, digest) VALUES (?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (digest) DO NOTHING RETURNING id")
        self._tally_sql = q(
            "INSERT INTO dead_letter_devices (device, refused, newest_id, id_reused) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
            "refused = dead_letter_devices.refused + excluded.refused, "
            "id_reused = dead_letter_devices.id_reused + excluded.id_reused, "
            "newest_id = CASE WHEN excluded.newest_id > dead_letter_devices.newest_id "
            "THEN excluded.newest_id ELSE dead_letter_devices.newest_id END")

    def commit(self, items):
        """Write one batch in one transaction; set each item's outcome; return the
        committed report rows (dicts) in arrival order."""
        committed_at = time.time()
        stamp = wire_time(committed_at)
        for it in items:
            it.outcome, it.reason, it.resend, it.stored = None, None, None, False
        with self.store.connect() as conn:
            results = [it for it in items if it.verdict.kind == "task/result"]
            if results:
                self._check_task_results(conn, results)
            reports, first, again = [], {}, []
            for it in items:
                v = it.verdict
                if v.kind in ("report", "task/result") and it.outcome is None:
                    if v.report_id in first:
                        again.append(it)  # judged below, against what holds the id
                    else:
                        first[v.report_id] = it
                        reports.append(it)
            inserted = set()
            if reports:
                rows = []
                for it in reports:
                    data = it.verdict.data
                    data["committed_at"] = stamp
                    rows.append(_REPORT_ROW(data))
                inserted = set(self.store.insert_new(conn, "reports", REPORT_COLUMNS, rows,
                                                     "id"))
            announced = []  # (report id, photos) of the accepted reports with photos
            holders = {}  # report id → (digest, payload) of the report committed under it
            for it in reports:
                v = it.verdict
                if v.report_id in inserted:
                    it.outcome = ACCEPTED
                    holders[v.report_id] = (v.data["digest"], v.data["payload"])
                    if v.data["photos"] != "[]":
                        announced.append((v.report_id, json.loads(v.data["photos"])))
                else:
                    again.append(it)
            if again:
                self._judge_repeats(conn, again, holders)
            # from here on, rows other workers' batches write too: take them in turn
            self.store.lock_keys(conn, shared_keys(items, announced))
            for report_id, photos in announced:
                register_report_photos(self.store, conn, report_id, photos)
            self._devices(conn, items)
            tracks = [r for it in items if it.verdict.kind == "track" for r in it.verdict.data]
            if tracks:
                conn.cursor().executemany(self._track_sql, tracks)
            chunks = [it for it in items if it.verdict.kind == "photo"]
            if chunks:
                _, refused = add_chunks(self.store, conn, self.photo_dir,
                                        [it.verdict.data for it in chunks], stamp,
                                        self.photo_quota)
                for it in chunks:
                    it.stored = it.verdict.data.pop("stored", False)
                    r = refused.get(id(it.verdict.data))
                    if r is None:
                        continue
                    it.reason = r.reason
                    if r.resend is not None:
                        it.resend = r.resend
                    if r.category is not None:  # refused (else stored, more asked for)
                        it.outcome, it.verdict.category = REJECTED, r.category
            media = [it for it in items if it.verdict.kind == "media"]
            if media:
                self._media(conn, media, stamp)
            dead = []
            for it in items:
                if it.verdict.kind == "rejected":
                    it.outcome, it.reason = REJECTED, it.verdict.reason
                    if it.verdict.data is not None and "resend" in it.verdict.data:
                        rid, sha, n = it.verdict.data["resend"]
                        it.resend = (rid, sha, [n])
                if it.outcome in (REJECTED, REUSED):
                    text, enc = payload_text(it.payload)
                    dead.append((wire_time(it.received), it.topic, it.verdict.device,
                                 it.reason, text, enc, message_digest(it.topic, it.payload),
                                 it.outcome == REUSED))
                elif it.outcome is None:
                    it.outcome = STORED
            if dead:
                self._dead_letters(conn, dead)
        return [it.verdict.data for it in reports if it.outcome == ACCEPTED]

    def _media(self, conn, media, stamp):
        """Store the batch's clip and memo chunks; a refused one becomes a dead letter."""
        refused = {}
        if self.media_store is None:
            why = Refusal("media", "this gateway keeps no clips or memos (no media store)")
            refused = {id(it.verdict.data): why for it in media}
        elif not self._media_known and conn.execute(
                self.store.sql("SELECT 1 FROM schema_migrations WHERE name = ?"),
                ("media_001_media",)).fetchone() is None:
            why = Refusal("media", "the media tables are missing: run gridlink gateway migrate")
            refused = {id(it.verdict.data): why for it in media}
        else:
            self._media_known = True
            refused = add_media_chunks(self.store, conn, self.media_store,
                                       [it.verdict.data for it in media], stamp)
        for it in media:
            r = refused.get(id(it.verdict.data))
            if r is not None:
                it.outcome, it.reason, it.verdict.category = REJECTED, r.reason, r.category
                it.resend = r.resend  # the device is asked for the file again, or None

    def _check_task_results(self, conn, results):
        """Refuse each task result whose task was not sent (or re-routed) to the device
        answering it, or is not known here.  Only where the task desk's tables exist
        (the board's migrations): a gateway without them has sent no task."""
        q = self.store.sql
        if not self._tasks_known:
            found = conn.execute(q("SELECT 1 FROM schema_migrations WHERE name = ?"),
                                 ("tasks_001_tasks",)).fetchone()
            if found is None:
                return
            self._tasks_known = True
        wanted = sorted({it.verdict.data["task"] for it in results})
        cur = conn.execute(q("SELECT id, device FROM tasks WHERE id IN ("
                             + ", ".join("?" * len(wanted)) + ")"), wanted)
        owner = dict(cur.fetchall())
        for it in results:
            task, device = it.verdict.data["task"], it.verdict.device
            if task in owner and owner[task] == device:
                continue
            it.verdict.category = "task"
            if task not in owner:
                it.outcome, it.reason = REJECTED, f"task: no task {task} was sent to {device}"
            else:
                it.outcome, it.reason = REJECTED, (f"task: {task} was sent to "
                                                   f"{owner[task] or 'no device'}, not {device}")

    def _judge_repeats(self, conn, again, holders):
        """Set the outcome of each report whose id is taken (committed before, or earlier
        in this batch): DUPLICATE when it is the same report, REUSED when its content
        differs from the one holding the id."""
        missing = sorted({it.verdict.report_id for it in again} - holders.keys())
        q = self.store.sql
        for i in range(0, len(missing), 500):
            part = missing[i:i + 500]
            cur = conn.execute(q("SELECT id, digest, payload FROM reports WHERE id IN ("
                                 + ", ".join("?" * len(part)) + ")"), part)
            holders.update((rid, (digest, payload)) for rid, digest, payload in cur.fetchall())
        for it in again:
            data = it.verdict.data
            held = holders.get(it.verdict.report_id)
            if held is None or same_content(held[0], held[1], data["digest"], data["payload"]):
                it.outcome = DUPLICATE
            else:
                it.outcome = REUSED
                it.reason = id_reused_reason(it.verdict.report_id, held[0])

    def _dead_letters(self, conn, dead):
        """Write the batch's dead letters, each distinct message once, and add those
        written to their device's counts (rejections are rare: a statement each)."""
        tally = {}  # device → [written, newest id, of them reused ids]
        cur = conn.cursor()
        for *row, reused in dead:
            cur.execute(self._dead_sql, row)
            written = cur.fetchone()  # None: this message is a dead letter already
            device = row[2]
            if written is not None and device is not None:
                t = tally.setdefault(device, [0, 0, 0])
                t[0] += 1
                t[1] = max(t[1], written[0])
                t[2] += reused
        if tally:
            cur.executemany(self._tally_sql, [(d, n, newest, reused)
                                              for d, (n, newest, reused) in tally.items()])

    def _devices(self, conn, items):
        seen = {}
        statuses = []
        for it in items:
            v = it.verdict
            if v.kind == "rejected" or v.device is None:
                continue
            if v.kind == "status":
                statuses.append(tuple(v.data[c] for c in _STATUS_COLUMNS))
                continue
            lat = lon = fix_at = None
            if v.kind in ("report", "task/result") and v.data["lat"] is not None:
                lat, lon, fix_at = v.data["lat"], v.data["lon"], v.data["captured_at"]
            prev = seen.get(v.device)
            if prev is None:
                seen[v.device] = [v.device, v.district, it.received, lat, lon, fix_at]
            else:
                prev[2] = max(prev[2], it.received)
                if fix_at and (prev[5] is None or fix_at > prev[5]):
                    prev[3:6] = [lat, lon, fix_at]
        if seen:
            conn.cursor().executemany(self._seen_sql, [(r[0], r[1], wire_time(r[2]), *r[3:])
                                              for r in seen.values()])
        if statuses:
            conn.cursor().executemany(self._status_sql, statuses)
