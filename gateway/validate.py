"""Decode and judge one inbound message: a verdict for every input, never an exception.

The order of checks is topic → size → UTF-8 → JSON → schema (the core's
``validate_report``, shared with the devices) → identity (payload device = topic device;
the broker's ACL already holds topic device = certificate identity) → class code against
the code book of the report's standard → grid code re-located on the authoritative map.
A grid mismatch is not a rejection: the report is kept with both codes and flagged.
"""

import hashlib
import json
import time

from gridlink.firmware.core import messages as core_messages
from gridlink.firmware.core.checks import MessageError
from gridlink.firmware.core.gridmap import GridMap
from gridlink.firmware.core.topics import parse_topic

from .clock import wire_time
from .fastreport import UNSET, check_report
from .gridindex import RasterLocator
from .media import MAX_CLIP_BYTES, MAX_MEMO_BYTES

MAX_REPORT = core_messages.REPORT_MAX_BYTES  # protocol v1: a report's UTF-8 JSON on the wire
MAX_STATUS = core_messages.STATUS_MAX_BYTES
MAX_TRACK = core_messages.TRACK_MAX_BYTES
MAX_CHUNK = core_messages.CHUNK_MAX
MAX_CHUNK_PAYLOAD = MAX_CHUNK + 200  # the header line is read from the first 200 bytes
MEDIA_LIMITS = {"clip": MAX_CLIP_BYTES, "memo": MAX_MEMO_BYTES}
TOPICS_CACHED = 4096  # parsed topics remembered per Validator  # pragma: no mutate (a size)

REPORT_COLUMNS = (
    "id", "device", "district", "seq", "captured_at", "received_at", "committed_at",
    "time_source", "lat", "lon", "fix_mode", "fix_status", "flags", "grid", "grid_device",
    "grid_mismatch", "street", "kind", "standard", "code", "object", "source", "task",
    "result", "text", "photos", "payload", "digest", "time_flag", "urgent",
)
# Capture-time flags: a capture time more than TIME_AHEAD_S after its receive time, or
# more than TIME_OLD_S before it, is kept but flagged (the intake queue then orders it by
# its receive time); so is one before its device was provisioned, when that is known.
TIME_AHEAD_S = 600
TIME_OLD_S = 30 * 86400
TIME_FLAGS = ("ahead", "old", "before_provisioning")


# rejections answered with no ack: the message is another gateway's (another district's)
# or comes from an identity this one no longer talks to
QUIET = frozenset({"district", "revoked"})


class Rejected(Exception):
    """Why a message is refused: ``category`` (a metrics label) and a readable ``reason``;
    for a photo chunk the device should send again, ``resend`` = (report id, sha256, n)."""

    def __init__(self, category, reason, resend=None):
        super().__init__(reason)
        self.category = category
        self.reason = reason
        self.resend = resend


class Verdict:
    """What the ingest does with one message.

    kind: report | task/result | track | status | photo | media | rejected.  ``data`` holds the
    rows to write (shape depends on kind); a rejection carries ``category`` and ``reason``;
    a track batch its ``seq`` (None from a device that numbers none), for the
    ``track_stored`` ack.
    """

    __slots__ = ("category", "data", "device", "district", "kind", "reason", "report_id",
                 "sent_at", "seq")

    def __init__(self, kind, district=None, device=None, report_id=None, data=None,
                 category=None, reason=None, sent_at=None, seq=None):
        self.kind = kind
        self.district = district
        self.device = device
        self.report_id = report_id
        self.data = data
        self.category = category
        self.reason = reason
        self.sent_at = sent_at
        self.seq = seq

    def __repr__(self):
        if self.kind == "rejected":  # pragma: no mutate (a debugging repr)
            return f"<Verdict rejected {self.category}: {self.reason}>"
        return f"<Verdict {self.kind} {self.device} {self.report_id or ''}>"  # pragma: no mutate


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)  # one decoder, not one per message


def _loads(text):
    return _DECODER.decode(text)


_bounds = [(None, None)]  # (unix second, its (ahead, old) ISO bounds): replaced whole


def _time_bounds(received):
    """The latest and earliest unflagged capture times (ISO text, compared as text) for a
    report received at ``received``, computed once a second."""
    secs = int(received)
    cached = _bounds[0]
    if cached[0] != secs:  # pragma: no mutate (a cache: any index recomputes, as right)
        cached = (secs, (wire_time(secs + TIME_AHEAD_S + 1),
                         wire_time(max(0, secs - TIME_OLD_S))))  # pragma: no mutate (1970)
        _bounds[0] = cached  # pragma: no mutate (one cell)
    return cached[1]


def _json_object(payload, limit, what):
    if len(payload) > limit:
        raise Rejected("size", f"{what} is {len(payload)} bytes; the limit is {limit}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("encoding", f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") \
            from None
    try:
        obj = _loads(text)
    except (ValueError, RecursionError) as exc:
        raise Rejected("json", f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Rejected("json", f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _has(book, kind, code):
    try:
        book.lookup(kind, code)
    except Exception:
        return False
    return True


class Validator:
    """Judges messages against protocol v1, the code books and the authoritative grid map.

    ``grid_map`` is a core ``GridMap`` (``locate(lon, lat)`` → grid code or None);
    ``codebooks`` maps a standard name ("GB/T 47678.5-2026") to a core ``CodeBook``.
    Either may be None: that check is then skipped (the CLI always loads both).
    """

    def __init__(self, grid_map=None, codebooks=None, validate_report=None, schemas=None,
                 districts=None, provisioned=None, revoked=None, served_books=None):
        # the core's validator takes the wire size, so it need not re-encode the report;
        # and what fastreport vouches for it would accept (a custom validator: no vouching)
        self._sized = self._fast = validate_report is None
        if validate_report is None:
            from gridlink.firmware.core.report import validate_report
        if schemas is None:
            from .schemas import load_schemas

            schemas = load_schemas()
        self.validate_report = validate_report
        self.grid_map = grid_map
        # the same answers as grid_map.locate, most of them from a raster (gridindex.py)
        self._locate = (RasterLocator(grid_map).locate if isinstance(grid_map, GridMap)
                        else grid_map.locate if grid_map is not None else None)
        self.codebooks = codebooks
        # standard → the code books this gateway serves devices (a new version the centre
        # sent them): a class found in one of them is accepted too
        self.served_books = served_books
        self._codes_found = set()  # (standard, kind, code) found in the books
        self._topics = {}  # topic → parse_topic's tuple, for topics that passed (bounded)
        self.schemas = schemas
        # the districts this gateway serves (None: any); another district's messages are
        # refused before anything else is read, and never answered (``QUIET``)
        self.districts = None if districts is None else frozenset(districts)
        # device → the ISO time it was provisioned, or None when not known
        self.provisioned = provisioned
        # device → why its identity is revoked (its messages refused, unanswered), or None
        self.revoked = revoked

    def decode(self, topic, payload, received=None, sent_at=None):
        """The verdict on one message (``payload`` bytes, ``received`` Unix seconds)."""
        district = device = None
        try:
            if not isinstance(topic, str):
                raise Rejected("topic", "topic is not text")
            district, device, kind, rest = self._topic(topic)
            if self.districts is not None and district not in self.districts:
                raise Rejected("district", f"district {district} is not served here (this "
                                           f"gateway takes {', '.join(sorted(self.districts))})")
            if self.revoked is not None:
                why = self.revoked(device)
                if why:
                    raise Rejected("revoked", why)
            payload = bytes(payload)
            if kind in ("report", "task/result"):
                verdict = self._report(kind, district, device, payload, received)
            elif kind == "photo":
                verdict = self._photo(district, device, rest, payload)
            elif kind == "media":
                verdict = self._media(district, device, rest, payload)
            elif kind == "track":
                verdict = self._track(district, device, payload)
            else:
                verdict = self._status(district, device, payload, received)
            verdict.sent_at = sent_at
            return verdict
        except Rejected as exc:
            if exc.resend is not None:  # a bad chunk: the device is asked for it again
                return Verdict("rejected", district, device, exc.resend[0],
                               data={"resend": exc.resend}, category=exc.category,
                               reason=exc.reason)
            return Verdict("rejected", district, device, _guess_id(payload, device),
                           category=exc.category, reason=exc.reason)
        except Exception as exc:  # a bug must cost one message, never the loop
            return Verdict("rejected", district, device, None, category="internal",
                           reason=f"internal error judging the message: "
                                  f"{type(exc).__name__}: {exc}")

    # -- reports -----------------------------------------------------------------------

    def _report(self, kind, district, device, payload, received):
        # fast path: msgspec's Struct of a report the core would accept; else (None) the
        # json + core validator path, which also words every rejection
        r = check_report(payload) if self._fast else None
        if r is not None:
            rid, seq, t, time_source, fix = r.id, r.seq, r.time, r.time_source, r.fix
            flags, grid_device, rkind, std, code = r.flags, r.grid, r.kind, r.standard, r.code
            source, text, photos = r.source, r.text, r.photos
            obj_id, task, result = r.object, r.task, r.result
            urgent = 1 if r.urgent is True else 0
            obj_id = None if obj_id is UNSET else obj_id
            task = None if task is UNSET else task
            result = None if result is UNSET else result
            if r.device != device:
                self._same_device(r.device, device)
            if fix is not None:
                fix = (fix.lat, fix.lon, fix.mode, fix.status)
        else:
            obj = _json_object(payload, MAX_REPORT, "report")
            try:
                if self._sized:
                    self.validate_report(obj, encoded_size=len(payload))
                else:
                    self.validate_report(obj)
            except Exception as exc:  # ReportError names the field; anything else is a bug
                raise Rejected("schema", str(exc)) from None
            self._same_device(obj["device"], device)
            rid, seq, t, time_source = obj["id"], obj["seq"], obj["time"], obj.get("time_source")
            flags, grid_device, rkind = obj.get("flags"), obj.get("grid"), obj["kind"]
            std, code, source, text = obj["standard"], obj["code"], obj["source"], obj.get("text")
            photos, obj_id, task, result = (obj.get("photos"), obj.get("object"), obj.get("task"),
                                            obj.get("result"))
            fix = obj.get("fix")
            if fix:
                fix = (fix["lat"], fix["lon"], fix.get("mode"), fix.get("status"))
            urgent = 1 if obj.get("urgent") is True else 0
        if not rid.startswith(device + ":"):
            raise Rejected("identity", f"id: {rid!r} is not one of {device!r}'s ids")
        if kind == "task/result" and source != "task":  # the core holds: source task ⇔ a task
            raise Rejected("schema", "source: a task result must have source 'task' and a task")
        self._check_code(std, rkind, code)
        grid, mismatch = grid_device, 0
        if fix and self._locate is not None:
            located = self._locate(fix[1], fix[0])
            if located != grid_device:
                grid, mismatch = located, 1
        time_flag = None if received is None else self._time_flag(device, t, received)
        received = received if received is not None else time.time()
        row = {
            "id": rid, "device": device, "district": district, "seq": seq,
            "captured_at": t, "received_at": wire_time(received), "committed_at": None,
            "time_source": time_source,
            "lat": fix[0] if fix else None, "lon": fix[1] if fix else None,
            "fix_mode": fix[2] if fix else None, "fix_status": fix[3] if fix else None,
            "flags": _flags_text(flags),
            "grid": grid, "grid_device": grid_device, "grid_mismatch": mismatch,
            "street": grid[:9] if grid else None, "kind": rkind,
            "standard": std, "code": code, "object": obj_id,
            "source": source, "task": task, "result": result, "text": text,
            "photos": _compact(photos),
            "payload": payload.decode("utf-8"),
            "digest": sha256_hex(payload),
            "time_flag": time_flag,
            "urgent": urgent,
        }
        return Verdict(kind, district, device, rid, data=row)

    def _time_flag(self, device, captured, received):
        """Why the capture time ``captured`` (validated ISO text) is doubtful, or None."""
        ahead, old = _time_bounds(received)
        if captured > ahead:
            return "ahead"
        if captured < old:
            return "old"
        if self.provisioned is not None:
            since = self.provisioned(device)
            if since is not None and captured < since:
                return "before_provisioning"
        return None

    def _check_code(self, standard, kind, code):
        if self.codebooks is None:
            return
        key = (standard, kind, code)
        if key in self._codes_found:
            return
        book = self.codebooks.get(standard)
        served = self.served_books(standard) if self.served_books is not None else []
        if book is None and not served:
            known = ", ".join(sorted(self.codebooks)) or "none"
            raise Rejected("code", f"standard: {standard!r} has no code book here "
                                   f"(known: {known})")
        try:
            (book or served[0]).lookup(kind, code)
        except Exception as exc:
            if not any(_has(b, kind, code) for b in served):
                raise Rejected("code", f"code: {exc}") from None
        # found codes are remembered (at most the code books' size: a miss is not kept)
        self._codes_found.add(key)

    def _topic(self, topic):
        parsed = self._topics.get(topic)
        if parsed is not None:
            return parsed
        try:
            parsed = parse_topic(topic)
        except MessageError as exc:
            raise Rejected("topic", f"topic {topic!r}: {exc}") from None
        leaf, extra = parsed[2], parsed[3]  # pragma: no mutate (extra only decides caching)
        if leaf in ("ack", "task", "config"):
            raise Rejected("topic", f"{topic!r}: {leaf} goes from the gateway to devices")
        # a device publishes on a few topics, over and over; photo topics name a report
        # and a chunk, so each is seen a few times only: not kept
        if extra is None:
            if len(self._topics) >= TOPICS_CACHED:  # pragma: no mutate (a cache's size)
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def _message(self, validate, obj, kind):
        try:
            validate(obj)
        except MessageError as exc:
            raise Rejected("schema", str(exc)) from None
        schema = self.schemas.get(kind)
        if schema is not None:
            from .schemas import first_error

            problem = first_error(schema, obj)
            if problem:
                raise Rejected("schema", problem)
        return obj

    @staticmethod
    def _same_device(said, device):
        if said != device:
            raise Rejected("identity", f"device: payload says {said!r} but it was "
                                       f"published on {device!r}'s topic")

    # -- photo and media chunks ----------------------------------------------------------

    def _chunk(self, leaf, device, rest, payload, split, limits=None):
        """The checks a photo's chunk (``leaf`` photo) and a clip's or memo's (media) pass
        alike: the report is the device's own; the payload's size, header, number, the
        whole's size (``limits``: kind → bytes), the chunk's length and its digest.  Each
        refusal's category starts with ``leaf``.  → (report id, header, data)."""
        report_id, chunk = rest
        if not report_id.startswith(device + ":"):
            raise Rejected("identity", f"{leaf} topic report {report_id!r} is not one of "
                                       f"{device!r}'s reports")
        if len(payload) > MAX_CHUNK_PAYLOAD:
            raise Rejected("size", f"{leaf} chunk is {len(payload)} bytes; the limit is "
                                   f"{MAX_CHUNK_PAYLOAD}")
        try:
            head, data = split(payload)
        except MessageError as exc:
            raise Rejected(leaf, f"{leaf} chunk {exc}") from None
        self._message(lambda h: h, head, leaf)
        n, size = head["n"], head["size"]
        kind = head.get("kind", leaf)
        what = f"{kind} {head['sha256'][:16]}…"  # pragma: no mutate (a message's excerpt)
        if chunk != n:
            raise Rejected(leaf, f"{what}: chunk topic says {chunk}, header says {n}")
        if limits is not None and size > limits[kind]:
            raise Rejected(f"{leaf}_size", f"{what}: {size} bytes is over the {kind} limit "
                                           f"of {limits[kind]}")
        again = (report_id, head["sha256"], n)
        try:
            core_messages.check_chunk_length(head, len(data))
        except MessageError as exc:
            raise Rejected(f"{leaf}_length", f"{what}: {exc}", again) from None
        digest = head.get("digest")   # a photo's is optional, a clip's or memo's is not
        if digest is not None and sha256_hex(data) != digest:
            raise Rejected(f"{leaf}_digest", f"{what}: chunk {n} does not hash to its digest "
                                             "(damaged): send it again", again)
        return report_id, head, data

    def _photo(self, district, device, rest, payload):
        report_id, head, data = self._chunk("photo", device, rest, payload,
                                            core_messages.split_photo_chunk)
        return Verdict("photo", district, device, report_id,
                       data={"sha256": head["sha256"], "n": head["n"], "total": head["of"],
                             "size": head["size"], "data": data, "report_id": report_id,
                             "device": device})

    def _media(self, district, device, rest, payload):
        report_id, head, data = self._chunk("media", device, rest, payload,
                                            core_messages.split_media_chunk, MEDIA_LIMITS)
        return Verdict("media", district, device, report_id,
                       data={"kind": head["kind"], "sha256": head["sha256"], "n": head["n"],
                             "total": head["of"], "size": head["size"], "data": data,
                             "report_id": report_id, "device": device})

    # -- track -------------------------------------------------------------------------

    def _track(self, district, device, payload):
        obj = _json_object(payload, MAX_TRACK, "track")
        self._message(core_messages.validate_track, obj, "track")
        self._same_device(obj["device"], device)
        t0 = obj["t0"]
        rows = [(device, wire_time(t0 + dt), lat / 1e6, lon / 1e6, speed / 100)
                for dt, lat, lon, speed in obj["pts"]]
        return Verdict("track", district, device, data=rows, seq=obj.get("seq"))

    # -- status ------------------------------------------------------------------------

    def _status(self, district, device, payload, received):
        obj = _json_object(payload, MAX_STATUS, "status")
        self._message(core_messages.validate_status, obj, "status")
        self._same_device(obj["device"], device)
        fix = obj.get("fix")
        seen = wire_time(received if received is not None else time.time())
        row = {
            "device": device, "district": district, "state": obj["state"],
            "last_seen": seen, "status": payload.decode("utf-8"),
            "last_lat": fix["lat"] if fix else None, "last_lon": fix["lon"] if fix else None,
            "last_fix_at": (obj.get("time") or seen) if fix else None,
            "outbox_reports": (obj.get("outbox") or {}).get("reports"),
            "firmware": obj.get("firmware"), "codebook": obj.get("codebook"),
            "profile": obj.get("profile"),
        }
        return Verdict("status", district, device, data=row)


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # = json.dumps
_FLAGS_TEXT = {}  # tuple of flag names → its _compact text (a district uses a handful)


def _compact(items):
    """A JSON list as compact text ("[]" without the encoder when empty)."""
    return _ENCODE(items) if items else "[]"


def _flags_text(flags):
    """``_compact(flags)``, remembered for lists of strings."""
    if not flags or type(flags) is not list:  # pragma: no mutate (a cache's shortcut)
        return _compact(flags)
    key = tuple(flags)
    try:
        return _FLAGS_TEXT[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable item (only a custom validator lets one through)
        return _compact(flags)
    text = _compact(flags)
    if all(type(f) is str for f in key):  # so True and 1 never share an entry
        if len(_FLAGS_TEXT) >= 256:  # pragma: no mutate (a cache's size)
            _FLAGS_TEXT.clear()
        _FLAGS_TEXT[key] = text
    return text


def _guess_id(payload, device):
    """The report id of a rejected report when one can be read (for the device's ack)."""
    if not device or not isinstance(payload, bytes | bytearray) or len(payload) > MAX_REPORT:
        return None
    try:
        obj = _loads(bytes(payload).decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) and rid.startswith(device + ":") and len(rid) < 64 \
        else None


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def report_tuple(row):
    return tuple(row[c] for c in REPORT_COLUMNS)
