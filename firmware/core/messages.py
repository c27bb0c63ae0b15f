"""The other wire messages of protocol v1: ack, task, update, track, status, photo chunks.

Each has ``validate_<name>(obj)`` (returns obj, raises MessageError naming the field) and,
where the device or gateway builds it, ``make_<name>(...)``.  Task results are reports
(:mod:`report`).  Encode any of them with :func:`encode` (canonical compact JSON).
"""

from . import canonjson
from .checks import (
    UPPER_DIGITS,
    MessageError,
    check_device,
    check_enum,
    check_int,
    check_num,
    check_obj,
    check_report_id,
    check_sha256,
    check_str,
    check_time,
    is_int,
)
from .report import (
    KINDS,
    PHOTO_MAX_BYTES,
    VERSION,
    ReportError,
    check_task_id,
    validate_fix,
    validate_report,
)
from .report import MAX_BYTES as REPORT_MAX_BYTES

# id_reused: the id is committed with other content (a device whose counter restarted);
# the report is refused, never taken for its namesake, and the device must keep it
ACK_STATUSES = ("accepted", "duplicate", "rejected", "id_reused")
# resend: chunks of a photo the gateway discarded (failed its hash, a bad chunk, expired,
# or not yet announced); a device sends them again.  Not a report's outcome.
RESEND = "resend"
RESEND_CHUNKS_MAX = 64  # chunk numbers listed in one resend ack; null means every chunk
# the gateway's confirmations of what is not a report: a photo it reassembled and stored
# (named by its report and sha256), track batches it committed (named by their seq).  A
# device keeps the photo and the batch until it reads one.  Not a report's outcome.
PHOTO_STORED = "photo_stored"
TRACK_STORED = "track_stored"
TRACK_SEQS_MAX = 64  # batch seqs in one track_stored ack (≤ 64 × 13 + 60 bytes)
SEQ_MAX = 999999999999  # a track batch's seq: the device's outbox record number
TASK_TYPES = ("verify", "check", "clip")  # clip: send the last CLIP_TASK_S of video
CLIP_TASK_S = 30
STATES = ("online", "buffering", "offline")
CHUNK_MAX = 16384
TRACK_MAX_POINTS = 500
TRACK_MAX_BYTES = 16384
STATUS_MAX_BYTES = 2048
TASK_MAX_BYTES = 2048
REASON_MAX = 200
TEXT_MAX = 256
UNIX_MAX = 4102444800          # 2100-01-01


def _version(obj, err=MessageError):
    v = obj["v"]
    if v != VERSION or not is_int(v):
        raise err("v", f"must be {VERSION} (got {v!r})")


def encode(obj):
    """Canonical compact UTF-8 JSON bytes of a message."""
    try:
        return canonjson.dumps(obj)
    except canonjson.EncodeError as exc:
        raise MessageError("message", str(exc))  # noqa: B904


def decode(data, validate, max_bytes):
    """Bytes → validated message, with ``validate`` one of the validators here."""
    if len(data) > max_bytes:
        raise MessageError("message", f"{len(data)} bytes, more than {max_bytes}")
    try:
        obj = canonjson.loads(data)
    except canonjson.EncodeError as exc:
        raise MessageError("message", str(exc))  # noqa: B904
    return validate(obj)


# -- ack (gateway → device) ---------------------------------------------------------------

# report ids in one grouped ack: ≤ 16 × 48 + 52 bytes, within the 1024 an MCU node reads
ACK_IDS_MAX = 16


# A status the device does not know is still read (a newer gateway may say more): the
# report is then kept and sent again (see ack_action), never dropped.
ACK_STATUS_CHARS = "abcdefghijklmnopqrstuvwxyz_ "
ACK_STATUS_MAX = 32


def _check_ack_status(status, known, any_status):
    if any_status:
        check_str(MessageError, status, "status", 1, ACK_STATUS_MAX, ACK_STATUS_CHARS,
                  "lower-case words")
    else:
        check_enum(MessageError, status, "status", known)


def validate_ack(obj, any_status=False):
    """One report's ack (``id``), or a grouped one (``ids``): several reports of the device
    committed with the same status, ``accepted`` or ``duplicate`` (a rejection has its own
    reason, so its own ack); or a photo resend (status ``resend``).  ``any_status``: also
    take statuses this version does not know (what a receiver does:
    :func:`validate_received_ack`)."""
    if isinstance(obj, dict) and obj.get("status") == RESEND:
        return _validate_resend(obj)
    if isinstance(obj, dict) and obj.get("status") == PHOTO_STORED:
        return _validate_photo_stored(obj)
    if isinstance(obj, dict) and obj.get("status") == TRACK_STORED:
        return _validate_track_stored(obj)
    if isinstance(obj, dict) and "ids" in obj:
        check_obj(MessageError, obj, "", ("v", "ids", "status", "reason"))
        _version(obj)
        ids = obj["ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= ACK_IDS_MAX:
            raise MessageError("ids", f"must be a list of 1 to {ACK_IDS_MAX} report ids")
        for i, rid in enumerate(ids):
            check_report_id(MessageError, rid, f"ids[{i}]")
        _check_ack_status(obj["status"], ACK_STATUSES[:2], any_status)
        if obj["reason"] is not None:
            raise MessageError("reason", "a grouped ack has no reason (null)")
        return obj
    check_obj(MessageError, obj, "", ("v", "id", "status", "reason"))
    _version(obj)
    if obj["id"] is not None:
        check_report_id(MessageError, obj["id"])
    _check_ack_status(obj["status"], ACK_STATUSES, any_status)
    if obj["reason"] is None:
        if obj["status"] in ("rejected", "id_reused"):
            raise MessageError("reason", "a rejection must say why")
    else:
        check_str(MessageError, obj["reason"], "reason", 1, REASON_MAX)
    return obj


def _validate_resend(obj):
    """``{"v", "id" (the report showing the photo), "status": "resend", "reason",
    "sha256", "chunks"}``: send these chunks of that photo again (``chunks`` null: all)."""
    check_obj(MessageError, obj, "", ("v", "id", "status", "reason", "sha256", "chunks"))
    _version(obj)
    check_report_id(MessageError, obj["id"])
    check_str(MessageError, obj["reason"], "reason", 1, REASON_MAX)
    check_sha256(MessageError, obj["sha256"], "sha256")
    chunks = obj["chunks"]
    if chunks is not None:
        if not isinstance(chunks, list) or not 1 <= len(chunks) <= RESEND_CHUNKS_MAX:
            raise MessageError("chunks", f"must be null or a list of 1 to {RESEND_CHUNKS_MAX} "
                                         "chunk numbers")
        for i, n in enumerate(chunks):
            check_int(MessageError, n, f"chunks[{i}]", 0, PHOTO_MAX_BYTES - 1)
    return obj


def make_resend(report_id, sha256, chunks, reason):
    """The ack asking a device to send chunks (a list, or None for all) of a photo again."""
    return _validate_resend({"v": VERSION, "id": report_id, "status": RESEND,
                             "reason": reason, "sha256": sha256, "chunks": chunks})


def _validate_photo_stored(obj):
    """``{"v", "id" (the report showing the photo), "status": "photo_stored", "reason":
    null, "sha256"}``: the gateway holds the photo whole; the device may forget it."""
    check_obj(MessageError, obj, "", ("v", "id", "status", "reason", "sha256"))
    _version(obj)
    check_report_id(MessageError, obj["id"])
    if obj["reason"] is not None:
        raise MessageError("reason", "a photo_stored ack has no reason (null)")
    check_sha256(MessageError, obj["sha256"], "sha256")
    return obj


def _validate_track_stored(obj):
    """``{"v", "status": "track_stored", "reason": null, "seqs"}``: the gateway committed
    the track batches with these seqs; the device may drop them."""
    check_obj(MessageError, obj, "", ("v", "status", "reason", "seqs"))
    _version(obj)
    if obj["reason"] is not None:
        raise MessageError("reason", "a track_stored ack has no reason (null)")
    seqs = obj["seqs"]
    if not isinstance(seqs, list) or not 1 <= len(seqs) <= TRACK_SEQS_MAX:
        raise MessageError("seqs", f"must be a list of 1 to {TRACK_SEQS_MAX} batch seqs")
    for i, n in enumerate(seqs):
        check_int(MessageError, n, f"seqs[{i}]", 0, SEQ_MAX)
    return obj


def make_photo_stored(report_id, sha256):
    """The ack saying the gateway holds photo ``sha256`` of ``report_id`` whole."""
    return _validate_photo_stored({"v": VERSION, "id": report_id, "status": PHOTO_STORED,
                                   "reason": None, "sha256": sha256})


def make_track_stored(seqs):
    """The ack saying the gateway committed the track batches ``seqs`` (a list)."""
    return _validate_track_stored({"v": VERSION, "status": TRACK_STORED, "reason": None,
                                   "seqs": list(seqs)})


def answers_reports(ack):
    """True when a valid ack is about reports (its ``id``/``ids`` are report outcomes);
    False for a photo resend and for the photo and track confirmations."""
    return ack["status"] not in (RESEND, PHOTO_STORED, TRACK_STORED)


def validate_received_ack(obj):
    """An ack as a device reads it: any status word is taken (see :func:`ack_action`)."""
    return validate_ack(obj, any_status=True)


def make_ack(report_id, status, reason=None):
    """The ack of one report; ``report_id`` may be a list of ids (a grouped ack)."""
    if isinstance(report_id, list):
        return validate_ack({"v": VERSION, "ids": report_id, "status": status,
                             "reason": reason})
    return validate_ack({"v": VERSION, "id": report_id, "status": status, "reason": reason})


def ack_ids(ack):
    """The report ids a valid ack answers (``[None]``: a message the gateway could not read)."""
    return ack["ids"] if "ids" in ack else [ack["id"]]


def ack_drops_report(ack):
    """True when the device may drop the report from its outbox (accepted or duplicate)."""
    return ack["status"] in ("accepted", "duplicate")


ID_REUSED = "id_reused"
DROP, REJECT, REISSUE, KEEP = "drop", "reject", "reissue", "keep"


def ack_action(ack):
    """What the device does with the report(s) an ack answers.

    ``drop``: accepted, or a duplicate (the gateway holds the same content under this id);
    ``reject``: kept in the device's rejected file with the reason, never sent again (its
    content broke the protocol); ``reissue``: ``id_reused`` — the gateway holds another
    report under this id — so it is kept and sent again under a fresh id; ``keep``: any
    status this device does not know — the report stays in the outbox and is sent again
    under the same id (never dropped, never doubled).
    """
    status = ack["status"]
    if status in ("accepted", "duplicate"):
        return DROP
    if status == "rejected":
        return REJECT
    return REISSUE if status == ID_REUSED else KEEP


# -- task (gateway → device) --------------------------------------------------------------

_TASK_KEYS = ("v", "task", "type", "report", "lat", "lon", "grid", "text", "deadline")
# the class (kind and code) of the report or case the task is about: the device codes its
# result report with it (a 核查 of illegal parking is an illegal-parking report)
_TASK_CLASS = ("kind", "code")


def validate_task(obj):
    check_obj(MessageError, obj, "", _TASK_KEYS, _TASK_CLASS)
    if ("kind" in obj) != ("code" in obj):
        raise MessageError("kind" if "code" in obj else "code",
                           "is required with " + ("code" if "code" in obj else "kind"))
    if "kind" in obj:
        check_enum(MessageError, obj["kind"], "kind", KINDS)
        check_str(MessageError, obj["code"], "code", 2, 12, UPPER_DIGITS,
                  "2-12 digits or upper-case letters")
    _version(obj)
    check_task_id(obj["task"], "task", MessageError)
    check_enum(MessageError, obj["type"], "type", TASK_TYPES)
    if obj["report"] is not None:
        check_report_id(MessageError, obj["report"], "report")
    check_num(MessageError, obj["lat"], "lat", -90, 90)
    check_num(MessageError, obj["lon"], "lon", -180, 180)
    if obj["grid"] is not None:
        check_str(MessageError, obj["grid"], "grid", 14, 15, "0123456789",
                  "a 14- or 15-digit grid code")
    check_str(MessageError, obj["text"], "text", 0, TEXT_MAX)
    if obj["deadline"] is not None:
        check_time(MessageError, obj["deadline"], "deadline")
    return obj


def make_task(task, type, lat, lon, text="", report=None, grid=None, deadline=None,
              kind=None, code=None):
    obj = {"v": VERSION, "task": task, "type": type, "report": report, "lat": lat,
           "lon": lon, "grid": grid, "text": text, "deadline": deadline}
    if kind is not None or code is not None:
        obj["kind"], obj["code"] = kind, code
    return validate_task(obj)


# -- update offer (gateway → device, retained) ---------------------------------------------

_UPDATE_KEYS = ("v", "rollout", "kind", "version")
UPDATE_KINDS = ("pi", "mcu")
UPDATE_MAX_BYTES = 512
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"


def check_release_version(err, x, field):
    """Dotted numbers, 1 to 4 parts of 1 to 6 digits: ``1.4``, ``2.0.3``."""
    check_str(err, x, field, 1, 27, "0123456789.", "a version like 1.4 or 2.0.3")
    parts = x.split(".")
    if len(parts) > 4 or not all(1 <= len(p) <= 6 for p in parts):
        raise err(field, f"must be a version like 1.4 or 2.0.3 (got {x!r})")


def validate_update(obj):
    """An offer of a release: install ``version`` of ``kind`` (rollout ``rollout``)."""
    check_obj(MessageError, obj, "", _UPDATE_KEYS)
    _version(obj)
    rid = obj["rollout"]
    check_str(MessageError, rid, "rollout", 3, 42, _ID_CHARS, "R- and 1..40 of A-Za-z0-9_.:-")
    if rid[:2] != "R-":
        raise MessageError("rollout", f"must start with R- (got {rid!r})")
    check_enum(MessageError, obj["kind"], "kind", UPDATE_KINDS)
    check_release_version(MessageError, obj["version"], "version")
    return obj


def make_update(rollout, kind, version):
    return validate_update({"v": VERSION, "rollout": rollout, "kind": kind,
                            "version": version})


# -- track (device → gateway) -------------------------------------------------------------

def validate_track(obj):
    """``pts``: [dt_s, lat_1e-6_deg, lon_1e-6_deg, speed_cm_s], dt from t0, non-decreasing;
    ``seq`` (optional): the batch's number, which the gateway's ``track_stored`` ack
    names (a device that sends it keeps the batch until then)."""
    check_obj(MessageError, obj, "", ("v", "device", "t0", "pts"), ("seq",))
    _version(obj)
    check_device(MessageError, obj["device"])
    if "seq" in obj:
        check_int(MessageError, obj["seq"], "seq", 0, SEQ_MAX)
    check_int(MessageError, obj["t0"], "t0", 0, UNIX_MAX)
    pts = obj["pts"]
    if not isinstance(pts, list) or not pts:
        raise MessageError("pts", "must be a non-empty list")
    if len(pts) > TRACK_MAX_POINTS:
        raise MessageError("pts", f"at most {TRACK_MAX_POINTS} points (got {len(pts)})")
    for i, p in enumerate(pts):
        f = f"pts[{i}]"
        if not isinstance(p, list) or len(p) != 4:
            raise MessageError(f, "must be [dt_s, lat_e6, lon_e6, speed_cm_s]")
        check_int(MessageError, p[0], f + "[0]", 0, 86400)
        check_int(MessageError, p[1], f + "[1]", -90000000, 90000000)
        check_int(MessageError, p[2], f + "[2]", -180000000, 180000000)
        check_int(MessageError, p[3], f + "[3]", 0, 100000)
    return obj


def make_track(device, points, seq=None):
    """points: (unix_s, lat_deg, lon_deg, speed_m_s) in time order → a track message
    (with ``seq``, the batch's number, when given)."""
    if not points:
        raise MessageError("pts", "a track needs at least one point")
    t0 = int(points[0][0])
    pts = [[int(t) - t0, int(round(lat * 1e6)), int(round(lon * 1e6)),  # noqa: RUF046
            int(round((speed or 0) * 100))] for t, lat, lon, speed in points]  # noqa: RUF046
    obj = {"v": VERSION, "device": device, "t0": t0, "pts": pts}
    if seq is not None:
        obj["seq"] = seq
    return validate_track(obj)


# -- status (device → broker, retained; last will "offline") ------------------------------

_STATUS_FULL = ("time", "fix", "outbox", "disk_free", "cpu_temp", "uptime", "firmware",
                "codebook", "profile")
# Optional counters of what went wrong on the device, each over its whole life: records lost
# to damage in the outbox, reports sent again under a fresh id (the gateway refused their
# id), reports kept without their photo, reports that could not be made durable.
# clips and memos dropped from the media shelf undelivered (full, or their file gone).
PROBLEMS = ("lost", "reissued", "photos_dropped", "failed", "media_dropped")
_STATUS_OPTIONAL = ("time", "fix", "outbox", "disk_free", "cpu_temp", "uptime", "firmware",
                    "codebook", "profile", "problems", "config", "ota")
_OTA_KEYS = ("installed", "slot", "slots", "pending", "failed")
SLOTS = ("a", "b")


def validate_status(obj):
    """An online/buffering status carries every field; an offline one may be the bare will."""
    check_obj(MessageError, obj, "", ("v", "device", "state"), _STATUS_OPTIONAL)
    _version(obj)
    check_device(MessageError, obj["device"])
    check_enum(MessageError, obj["state"], "state", STATES)
    if obj["state"] != "offline":
        for k in _STATUS_FULL:
            if k not in obj:
                raise MessageError(k, f"is required when state is {obj['state']!r}")
    if obj.get("time") is not None:
        check_time(MessageError, obj["time"], "time")
    if obj.get("fix") is not None:
        validate_fix(obj["fix"], "fix", MessageError)
    if "outbox" in obj:
        check_obj(MessageError, obj["outbox"], "outbox", ("reports", "track"))
        check_int(MessageError, obj["outbox"]["reports"], "outbox.reports", 0, 10 ** 9)
        check_int(MessageError, obj["outbox"]["track"], "outbox.track", 0, 10 ** 9)
    if "problems" in obj:
        check_obj(MessageError, obj["problems"], "problems", (), PROBLEMS)
        for k, n in obj["problems"].items():
            check_int(MessageError, n, "problems." + k, 0, 10 ** 9)
    if obj.get("disk_free") is not None:
        check_int(MessageError, obj["disk_free"], "disk_free", 0, 2 ** 53)
    if obj.get("cpu_temp") is not None:
        check_num(MessageError, obj["cpu_temp"], "cpu_temp", -60, 150)
    if "uptime" in obj:
        check_num(MessageError, obj["uptime"], "uptime", 0, 1e10)
    for k in ("firmware", "codebook", "profile"):
        if k in obj:
            check_str(MessageError, obj[k], k, 1, 64)
    if "config" in obj:
        validate_config_status(obj["config"])
    if "ota" in obj:
        validate_ota(obj["ota"])
    return obj


def validate_config_status(obj):
    """``config``: the applied configuration version (or null) and the last refusal
    (or null): ``{version, reason, field, message}``."""
    check_obj(MessageError, obj, "config", ("version", "refused"))
    if obj["version"] is not None:
        check_int(MessageError, obj["version"], "config.version", 1, UNIX_MAX)
    refused = obj["refused"]
    if refused is not None:
        check_obj(MessageError, refused, "config.refused",
                  ("version", "reason", "field", "message"))
        if refused["version"] is not None:
            check_int(MessageError, refused["version"], "config.refused.version", 1, UNIX_MAX)
        check_str(MessageError, refused["reason"], "config.refused.reason", 1, 16)
        if refused["field"] is not None:
            check_str(MessageError, refused["field"], "config.refused.field", 1, 80)
        check_str(MessageError, refused["message"], "config.refused.message", 0, 200)


def validate_ota(ota):
    """The status's ``ota``: the A/B slots' versions, the one running, the one on trial
    and the last failed or refused one (with its reason)."""
    check_obj(MessageError, ota, "ota", _OTA_KEYS)
    for k in ("installed", "pending"):
        if ota[k] is not None:
            check_release_version(MessageError, ota[k], "ota." + k)
    if ota["slot"] is not None:
        check_enum(MessageError, ota["slot"], "ota.slot", SLOTS)
    check_obj(MessageError, ota["slots"], "ota.slots", SLOTS)
    for k in SLOTS:
        if ota["slots"][k] is not None:
            check_release_version(MessageError, ota["slots"][k], "ota.slots." + k)
    if ota["failed"] is not None:
        check_obj(MessageError, ota["failed"], "ota.failed", ("version", "reason"))
        check_release_version(MessageError, ota["failed"]["version"], "ota.failed.version")
        check_str(MessageError, ota["failed"]["reason"], "ota.failed.reason", 1, REASON_MAX)
    return ota


def will_status(device):
    """The last-will payload: the broker publishes it (retained) if the device vanishes."""
    return validate_status({"v": VERSION, "device": device, "state": "offline"})


def make_status(device, state, firmware, codebook, profile, time=None, fix=None, reports=0,
                track=0, disk_free=None, cpu_temp=None, uptime=0, problems=None, config=None,
                ota=None):
    """``problems``: a dict of :data:`PROBLEMS` counters, ``config`` the configuration
    state, ``ota`` the update slots (each left out when None)."""
    obj = {
        "v": VERSION, "device": device, "state": state, "time": time, "fix": fix,
        "outbox": {"reports": reports, "track": track}, "disk_free": disk_free,
        "cpu_temp": cpu_temp, "uptime": uptime, "firmware": firmware, "codebook": codebook,
        "profile": profile}
    if problems is not None:
        obj["problems"] = problems
    if config is not None:
        obj["config"] = config
    if ota is not None:
        obj["ota"] = ota
    return validate_status(obj)


# -- photo chunks (device → gateway) ------------------------------------------------------

def validate_photo_header(obj):
    """{"sha256", "n" (0-based index), "of" (chunk count), "size" (photo bytes)}, and
    optionally "digest" (the chunk's own sha256)."""
    check_obj(MessageError, obj, "", ("sha256", "n", "of", "size"), ("digest",))
    return _check_chunk_head(obj)


def _check_chunk_head(obj):
    check_sha256(MessageError, obj["sha256"], "sha256")
    check_int(MessageError, obj["size"], "size", 1, PHOTO_MAX_BYTES)
    check_int(MessageError, obj["of"], "of", 1, PHOTO_MAX_BYTES)
    check_int(MessageError, obj["n"], "n", 0, obj["of"] - 1)
    if obj["of"] > obj["size"]:
        raise MessageError("of", "more chunks than photo bytes")
    if obj["size"] > obj["of"] * CHUNK_MAX:
        raise MessageError("of", f"{obj['of']} chunks of at most {CHUNK_MAX} bytes cannot "
                                 f"hold {obj['size']} bytes")
    if "digest" in obj:
        check_sha256(MessageError, obj["digest"], "digest")
    return obj


def check_chunk_length(head, length):
    """The chunk-length rule: every chunk but the last holds the same number of bytes L
    (1..CHUNK_MAX) and the last holds the rest, 1..L bytes; so a chunk's length alone
    must fit ``size`` and ``of``.  Raises MessageError naming the expected length."""
    n, of, size = head["n"], head["of"], head["size"]
    if of == 1:
        fits = length == size
    elif n < of - 1:
        fits = (of - 1) * length < size <= of * length
    else:
        rest = size - length
        fits = (rest > 0 and rest % (of - 1) == 0
                and length <= rest // (of - 1) <= CHUNK_MAX)
    if not fits:
        raise MessageError("chunk", f"chunk {n} of {of} holds {length} bytes, which does not "
                                    f"fit a {size}-byte photo in {of} equal chunks")


def photo_chunk_count(size, chunk=CHUNK_MAX):
    return (size + chunk - 1) // chunk


def make_photo_chunk(sha256, n, of, size, data, digest=None):
    """One photo chunk payload: header JSON line, ``\\n``, then 1..16384 raw bytes;
    ``digest`` (the chunk's own hash, hex) lets the gateway check the chunk alone."""
    if not 1 <= len(data) <= CHUNK_MAX:
        raise MessageError("chunk", f"must hold 1..{CHUNK_MAX} bytes (got {len(data)})")
    head = {"sha256": sha256, "n": n, "of": of, "size": size}
    if digest is not None:
        head["digest"] = digest
    head = validate_photo_header(head)
    return encode(head) + b"\n" + bytes(data)


def split_photo_chunk(payload):
    """Payload → (validated header dict, chunk bytes); raises MessageError."""
    return _split_chunk(payload, validate_photo_header)


def _split_chunk(payload, validate):
    nl = bytes(payload[:200]).find(b"\n")
    if nl < 0:
        raise MessageError("chunk", "no header line (JSON then newline) in the first 200 bytes")
    try:
        head = canonjson.loads(bytes(payload[:nl]))
    except canonjson.EncodeError as exc:
        raise MessageError("chunk", "header: " + str(exc))  # noqa: B904
    validate(head)
    data = bytes(payload[nl + 1:])
    if not 1 <= len(data) <= CHUNK_MAX:
        raise MessageError("chunk", f"must hold 1..{CHUNK_MAX} bytes (got {len(data)})")
    return head, data


# -- media chunks: clips and memos (device → gateway, after the report) ----------------------

MEDIA_KINDS = ("clip", "memo")


def validate_media_header(obj):
    """{"kind" (clip or memo), "sha256", "n", "of", "size", "digest"}: a photo chunk's
    header with the kind, and the chunk's own sha256 always present."""
    check_obj(MessageError, obj, "", ("kind", "sha256", "n", "of", "size", "digest"))
    check_enum(MessageError, obj["kind"], "kind", MEDIA_KINDS)
    return _check_chunk_head(obj)


def make_media_chunk(kind, sha256, n, of, size, data, digest):
    """One media chunk payload (``…/media/{report_id}/{n}``): header line, ``\n``, bytes."""
    if not 1 <= len(data) <= CHUNK_MAX:
        raise MessageError("chunk", f"must hold 1..{CHUNK_MAX} bytes (got {len(data)})")
    head = validate_media_header({"kind": kind, "sha256": sha256, "n": n, "of": of,
                                  "size": size, "digest": digest})
    return encode(head) + b"\n" + bytes(data)


def split_media_chunk(payload):
    """Payload → (validated media header, chunk bytes); raises MessageError."""
    return _split_chunk(payload, validate_media_header)


# -- task results and the per-topic table -------------------------------------------------

def validate_task_result(obj):
    """A report with source "task" (topic .../task/result); raises ReportError."""
    validate_report(obj)
    if obj["source"] != "task":
        raise ReportError("source", "a task result must have source 'task'")
    return obj


ACK_MAX_BYTES = 2048

# topic leaf -> (validator, largest payload in bytes); photo chunks use split_photo_chunk.
BY_LEAF = {
    "report": (validate_report, REPORT_MAX_BYTES),
    "task/result": (validate_task_result, REPORT_MAX_BYTES),
    "track": (validate_track, TRACK_MAX_BYTES),
    "status": (validate_status, STATUS_MAX_BYTES),
    "ack": (validate_ack, ACK_MAX_BYTES),
    "task": (validate_task, TASK_MAX_BYTES),
    "update": (validate_update, UPDATE_MAX_BYTES),
}


def decode_for(leaf, data):
    """Decode and validate the payload of a topic leaf (see topics.parse_topic)."""
    if leaf not in BY_LEAF:
        raise MessageError("topic", f"no JSON message on leaf {leaf!r}")
    validate, max_bytes = BY_LEAF[leaf]
    return decode(data, validate, max_bytes)
