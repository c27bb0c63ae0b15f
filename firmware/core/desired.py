"""Desired state: the configuration the centre sets for a device, signed with Ed25519.

The wire message (topic ``…/{device}/config``, retained) is a JSON envelope around the
document's exact bytes, so the signed bytes are the bytes received on every platform::

    {"v": 1, "doc": "<canonical JSON text>", "sha256": "<hex of doc>", "sig": "<hex>"}

    doc = {"v": 1, "device": "pv-0001", "district": "410106", "version": 7,
           "issued": 1765000000, "settings": {...}, "map": <sha256 hex> | null,
           "codebook": "GB/T 47678.5-2026@9b9bd01eda60" | null}

``sig`` is Ed25519 over the document's SHA-256 digest (as ``signed_manifest``: the node
runs SHA-512 over 96 bytes only).  ``settings`` holds only what a centre may change
(:data:`SETTINGS`); each is checked against the node of the profile schema it lands in.
``check`` refuses — :class:`ConfigRefused` with a ``reason`` (format, hash, signature,
device, older, schema) and the ``field`` at fault — before anything is applied.
I/O-free: the caller gives the schema, the keys, the applied version.
"""

import binascii
import hashlib
import json

from . import brokerurl, canonjson, ed25519
from .errors import CoreError

VERSION = 1
DOC_MAX_BYTES = 8192

# setting → (path in the profile, path of its node in the profile schema)
SETTINGS = {
    "track_interval_s": (("track", "interval_s"), ("$defs", "track", "properties", "interval_s")),
    "status_interval_s": (("status_interval_s",), ("properties", "status_interval_s")),
    "photo_max_bytes": (("camera", "max_bytes"), ("$defs", "camera", "properties", "max_bytes")),
    "max_fix_age_s": (("gnss", "stale_after_s"),
                      ("$defs", "gnss", "properties", "stale_after_s")),
}
# ``buttons``: {button name: {"kind", "code", "text"?}} — the class a button reports.
BUTTON_FIELDS = ("kind", "code", "text")
BUTTON_SCHEMA = ("$defs", "button", "properties")
_DOC_KEYS = ("v", "device", "district", "version", "issued", "settings", "map", "codebook")
# ``broker``: a new broker URL (mqtt[s]://host[:port]); a device takes it only after a
# connection to it succeeds (a document without it leaves the broker as it is)
# ``codebook_sha256``: the sha256 of the exact code book file to hold (a sensor node
# fetches a book it does not hold by it, protocol §3.9, and refuses one that does not hash)
_OPTIONAL_KEYS = ("broker", "codebook_sha256")
_HEX = "0123456789abcdef"


class ConfigRefused(CoreError):
    """A configuration document refused whole; ``reason`` is a short code, ``field`` the
    setting at fault (or None), the message says why."""

    def __init__(self, reason, message, field=None):
        self.reason, self.field, self.message = reason, field, message
        super().__init__(reason + ": " + (field + ": " if field else "") + message)

    def as_dict(self, version=None):
        """What the device reports in its status: ``{version, reason, field, message}``."""
        return {"version": version, "reason": self.reason, "field": self.field,
                "message": self.message[:200]}


def _is_hex(text, n):
    return isinstance(text, str) and len(text) == n and all(c in _HEX for c in text)


# -- the centre's side --------------------------------------------------------------------

def document(device, district, version, settings, issued, map_sha256=None, codebook=None,
             broker=None, codebook_sha256=None):
    """The canonical bytes of a document (what the centre signs)."""
    doc = {"v": VERSION, "device": device, "district": district, "version": int(version),
           "issued": int(issued), "settings": settings, "map": map_sha256,
           "codebook": codebook}
    if broker is not None:
        doc["broker"] = broker
    if codebook_sha256 is not None:
        doc["codebook_sha256"] = codebook_sha256
    _check_doc(doc)
    return canonjson.dumps(doc)


def envelope(doc_bytes, signature):
    """The wire message of signed document bytes (``signature``: 64 bytes)."""
    return canonjson.dumps({
        "v": VERSION, "doc": bytes(doc_bytes).decode("utf-8"),
        "sha256": binascii.hexlify(hashlib.sha256(bytes(doc_bytes)).digest()).decode(),
        "sig": binascii.hexlify(bytes(signature)).decode()})


def digest(doc_bytes):
    """What is signed: the document's SHA-256 digest (32 bytes)."""
    return hashlib.sha256(bytes(doc_bytes)).digest()


# -- the device's side --------------------------------------------------------------------

def open_envelope(data):
    """(document bytes, claimed sha256 hex, signature hex) of a wire message."""
    if len(data) > DOC_MAX_BYTES * 2:
        raise ConfigRefused("format", "message larger than " + str(DOC_MAX_BYTES * 2) + " bytes")
    try:
        env = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, UnicodeError):
        raise ConfigRefused("format", "the message is not JSON")  # noqa: B904
    if not isinstance(env, dict) or sorted(env) != ["doc", "sha256", "sig", "v"]:
        raise ConfigRefused("format", "the envelope is {v, doc, sha256, sig}")
    if env["v"] != VERSION or not isinstance(env["doc"], str):
        raise ConfigRefused("format", "unsupported envelope")
    return env["doc"].encode("utf-8"), env["sha256"], env["sig"]


def claimed_version(data):
    """The version a wire message claims (read before, or without, checking it), or None:
    what a refusal names."""
    try:
        doc_bytes, _, _ = open_envelope(data)
        version = json.loads(doc_bytes)["version"]
    except (ConfigRefused, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def check(data, public_keys, device, applied=None, schema=None, pattern=None):
    """Verify a wire message and return its document, or raise ConfigRefused.

    ``public_keys``: the centre's 32-byte Ed25519 keys (more than one while it rotates);
    ``device``: this device's id; ``applied``: the version running now (or None);
    ``schema``: the parsed profile schema, against which each setting is checked;
    ``pattern(regex, text)``: a regex search where the platform has one.
    """
    doc_bytes, claimed, sig_hex = open_envelope(data)
    if len(doc_bytes) > DOC_MAX_BYTES:
        raise ConfigRefused("format", "document larger than " + str(DOC_MAX_BYTES) + " bytes")
    if not _is_hex(claimed, 64) or not _is_hex(sig_hex, 128):
        raise ConfigRefused("format", "sha256 is 64 and sig 128 lowercase hex digits")
    got = digest(doc_bytes)
    if binascii.hexlify(got).decode() != claimed:
        raise ConfigRefused("hash", "the document does not hash to its sha256 " + claimed[:12])
    signature = binascii.unhexlify(sig_hex)
    if not any(ed25519.verify(key, got, signature) for key in public_keys):
        raise ConfigRefused("signature", "not signed by the centre's key")
    try:
        doc = json.loads(doc_bytes.decode("utf-8"))
    except (ValueError, UnicodeError):
        raise ConfigRefused("format", "the document is not JSON")  # noqa: B904
    _check_doc(doc)
    if doc["device"] != device:
        raise ConfigRefused("device", "the document is for " + doc["device"]
                            + ", this is " + device, "device")
    if applied is not None and doc["version"] <= applied:
        raise ConfigRefused("older", "version " + str(doc["version"])
                            + " is not newer than the applied " + str(applied), "version")
    if schema is not None:
        validate_settings(doc["settings"], schema, pattern)
    return doc


def _check_doc(doc):
    if not isinstance(doc, dict):
        raise ConfigRefused("format", "the document is not a JSON object")
    for k in _DOC_KEYS:
        if k not in doc:
            raise ConfigRefused("format", "is required", k)
    for k in doc:
        if k not in _DOC_KEYS and k not in _OPTIONAL_KEYS:
            raise ConfigRefused("format", "is not a field of a configuration document", k)
    if "broker" in doc:
        try:
            url = brokerurl.BrokerURL(doc["broker"])
        except (brokerurl.BrokerURLError, TypeError, AttributeError) as exc:
            raise ConfigRefused("format", str(exc), "broker")  # noqa: B904
        if url.username is not None or url.password is not None:
            raise ConfigRefused("format", "a document names a broker without a user or "
                                "password (the device's identity is its certificate)",
                                "broker")
    if doc["v"] != VERSION:
        raise ConfigRefused("format", "unsupported document version", "v")
    for k in ("device", "district"):
        if not isinstance(doc[k], str) or not 3 <= len(doc[k]) <= 32:
            raise ConfigRefused("format", "must be a string", k)
    for k in ("version", "issued"):
        if not isinstance(doc[k], int) or isinstance(doc[k], bool) or not 0 < doc[k] < 2 ** 53:
            raise ConfigRefused("format", "must be a positive integer", k)
    if doc["map"] is not None and not _is_hex(doc["map"], 64):
        raise ConfigRefused("format", "must be the map file's sha256 (64 hex digits)", "map")
    if doc["codebook"] is not None and (not isinstance(doc["codebook"], str)
                                        or "@" not in doc["codebook"]):
        raise ConfigRefused("format", "must be a code book id 'STANDARD@hash'", "codebook")
    if "codebook_sha256" in doc and (doc["codebook"] is None
                                     or not _is_hex(doc["codebook_sha256"], 64)):
        raise ConfigRefused("format", "must be the sha256 (64 hex digits) of the file of the "
                            "code book the document names", "codebook_sha256")
    settings = doc["settings"]
    if not isinstance(settings, dict):
        raise ConfigRefused("format", "must be an object", "settings")
    for k in settings:
        if k != "buttons" and k not in SETTINGS:
            raise ConfigRefused("schema", "a centre may not set this (it may set buttons, "
                                + ", ".join(sorted(SETTINGS)) + ")", "settings." + k)


def _node(schema, path, field):
    """The schema node at ``path``; a schema without it (a sensor node's, which has no
    buttons) refuses the setting."""
    node = schema
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise ConfigRefused("schema", "this device has no such setting", field)
        node = node[part]
    return _deref(schema, node)


def _deref(schema, node):
    while "$ref" in node:
        target = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate_settings(settings, schema, pattern=None):
    """Raise ConfigRefused(schema) naming the first setting outside the profile schema."""
    if not isinstance(settings, dict):
        raise ConfigRefused("schema", "must be an object", "settings")
    for name in sorted(settings):
        value = settings[name]
        if name != "buttons" and name not in SETTINGS:
            raise ConfigRefused("schema", "a centre may not set this (it may set buttons, "
                                + ", ".join(sorted(SETTINGS)) + ")", "settings." + name)
        if name == "buttons":
            _check_buttons(value, schema, pattern)
        else:
            field = "settings." + name
            check_value(value, _node(schema, SETTINGS[name][1], field), field, schema, pattern)


def _check_buttons(value, schema, pattern):
    if not isinstance(value, dict) or not value:
        raise ConfigRefused("schema", "an object {button name: {kind, code, text}}",
                            "settings.buttons")
    props = _node(schema, BUTTON_SCHEMA, "settings.buttons")
    for name in sorted(value):
        field = "settings.buttons." + name
        check_value(name, _deref(schema, props["name"]), field, schema, pattern)
        button = value[name]
        if not isinstance(button, dict) or "kind" not in button or "code" not in button:
            raise ConfigRefused("schema", "needs kind and code", field)
        for k in button:
            if k not in BUTTON_FIELDS:
                raise ConfigRefused("schema", "only kind, code and text may change",
                                    field + "." + k)
            check_value(button[k], _deref(schema, props[k]), field + "." + k, schema, pattern)


_TYPES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    and v == v and v not in (float("inf"), float("-inf")),
    "string": lambda v: isinstance(v, str),
}


def check_value(value, node, field, schema=None, pattern=None):
    """One value against one schema node: type, enum, minimum/maximum, length, pattern."""
    node = _deref(schema, node) if schema is not None else node
    if "type" in node and not _TYPES[node["type"]](value):
        raise ConfigRefused("schema", "must be " + node["type"] + " (got "
                            + json.dumps(value)[:40] + ")", field)
    if "enum" in node and value not in node["enum"]:
        raise ConfigRefused("schema", json.dumps(value)[:40] + " is not one of "
                            + ", ".join(json.dumps(e) for e in node["enum"]), field)
    if _TYPES["number"](value):
        if "minimum" in node and value < node["minimum"]:
            raise ConfigRefused("schema", str(value) + " is below the minimum "
                                + str(node["minimum"]), field)
        if "maximum" in node and value > node["maximum"]:
            raise ConfigRefused("schema", str(value) + " is above the maximum "
                                + str(node["maximum"]), field)
    if isinstance(value, str):
        if "maxLength" in node and len(value) > node["maxLength"]:
            raise ConfigRefused("schema", "longer than " + str(node["maxLength"])
                                + " characters", field)
        if "pattern" in node and pattern is not None and not pattern(node["pattern"], value):
            raise ConfigRefused("schema", json.dumps(value)[:40] + " does not have the form "
                                + node["pattern"], field)


def apply(profile, settings):
    """A new profile dict with ``settings`` written in (``profile`` is not changed); a
    button given a new class and no text loses its old text. Raises ConfigRefused naming
    a button the profile does not have."""
    out = json.loads(json.dumps(profile))
    for name in settings:
        if name == "buttons":
            known = {b["name"]: b for b in out.get("buttons", [])}
            for bname in sorted(settings["buttons"]):
                if bname not in known:
                    raise ConfigRefused("schema", "this device has no such button ("
                                        + ", ".join(sorted(known)) + ")",
                                        "settings.buttons." + bname)
                button, change = known[bname], settings["buttons"][bname]
                if "text" not in change and (change["kind"], change["code"]) != \
                        (button.get("kind"), button.get("code")):
                    button["text"] = ""     # the old class's text does not name the new one
                button.update(change)
            continue
        path = SETTINGS[name][0]
        node = out
        for part in path[:-1]:
            if part not in node:
                raise ConfigRefused("schema", "this device has no " + part + " section",
                                    "settings." + name)
            node = node[part]
        node[path[-1]] = settings[name]
    return out
