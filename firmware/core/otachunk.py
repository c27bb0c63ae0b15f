"""A sensor node's release over MQTT: it asks for a piece of one file of an ``mcu``
release (``…/ota/get``) and the gateway answers with that piece (``…/ota/chunk``).

    request:  {"v":1,"version":"1.4","file":"image/main.py","offset":0,"length":4096}
    reply:    {"v":1,"version":"1.4","file":"image/main.py","offset":0,"size":1818}\\n<bytes>
    refusal:  {"v":1,"version":"1.4","file":"image/x","offset":0,"error":"no such file"}\\n

``file`` is a member of the release tar (``manifest/manifest.txt``, ``manifest/manifest.sig``
or ``image/…``), ``size`` the whole file's bytes.  A code book file is asked for by its
sha256 (``codebook/<64 hex>``, named by a signed desired-state document), its ``version``
the book's version (``9b9bd01eda60``, as in its id ``STANDARD@version``); a compiled
grid map (``.glgm``) likewise by the sha256 of its file (``map/<64 hex>``), its ``version``
the first 12 hex digits of that sha256.  An artifact may be larger than a release file
(``ARTIFACT_MAX``: a whole district's map for a Pi).  The node asks
again from the bytes it holds, so a download cut at any point goes on where it stopped;
the signed manifest (or document), not the gateway, is what the node trusts.
"""

import json

from .checks import MessageError, check_int, check_obj, check_str, is_int
from .messages import check_release_version

CHUNK_MAX = 8192
FILE_MAX = 1024 * 1024
ARTIFACT_MAX = 64 * 1024 * 1024
ARTIFACTS = ("codebook", "map")
_HEX = "0123456789abcdef"
_BOOK_VERSION_CHARS = _HEX + "ghijklmnopqrstuvwxyz.+-"
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/"


def _check_file(name):
    check_str(MessageError, name, "file", 1, 200, _PATH_CHARS, "a release file's path")
    parts = name.split("/")
    if parts[0] in ARTIFACTS:
        if len(parts) != 2 or len(parts[1]) != 64 or any(c not in _HEX for c in parts[1]):
            raise MessageError("file", "a code book or map is asked for as " + parts[0]
                               + "/<sha256 of its file> (got " + repr(name) + ")")
        return
    if parts[0] not in ("image", "manifest") or len(parts) < 2 or "" in parts \
            or ".." in parts or "." in parts:
        raise MessageError("file", "must be a path under image/ or manifest/ (got "
                           + repr(name) + ")")


def is_book(name):
    return name.startswith("codebook/")


def is_artifact(name):
    """True for a code book or map asked for by its sha256 (``codebook/…``, ``map/…``)."""
    return name.split("/", 1)[0] in ARTIFACTS


def make_request(version, name, offset, length=CHUNK_MAX):
    return json.dumps({"v": 1, "version": version, "file": name, "offset": offset,
                       "length": length}).encode()


def parse_request(payload):
    """The request's dict, or MessageError naming the field."""
    try:
        obj = json.loads(bytes(payload))
    except (ValueError, UnicodeError):
        raise MessageError("message", "not a JSON object")  # noqa: B904
    check_obj(MessageError, obj, "", ("v", "version", "file", "offset", "length"))
    if obj["v"] != 1:
        raise MessageError("v", "must be 1")
    _check_file(obj["file"])
    if is_artifact(obj["file"]):
        check_str(MessageError, obj["version"], "version", 1, 80, _BOOK_VERSION_CHARS,
                  "a code book or map version")
        top = ARTIFACT_MAX
    else:
        check_release_version(MessageError, obj["version"], "version")
        top = FILE_MAX
    check_int(MessageError, obj["offset"], "offset", 0, top)
    check_int(MessageError, obj["length"], "length", 1, CHUNK_MAX)
    return obj


def make_reply(request, size, data=b"", error=None):
    head = {"v": 1, "version": request["version"], "file": request["file"],
            "offset": request["offset"]}
    if error is None:
        head["size"] = size
    else:
        head["error"] = error
    return json.dumps(head).encode() + b"\n" + bytes(data)


def parse_reply(payload):
    """(head, data) of a reply; MessageError when it is not one."""
    payload = bytes(payload)
    cut = payload.find(b"\n")
    if cut < 0:
        raise MessageError("message", "no header line")
    try:
        head = json.loads(payload[:cut])
    except (ValueError, UnicodeError):
        raise MessageError("message", "the header is not JSON")  # noqa: B904
    if not isinstance(head, dict) or head.get("v") != 1 or not is_int(head.get("offset")):
        raise MessageError("message", "not a chunk header")
    if "error" not in head and not is_int(head.get("size")):
        raise MessageError("size", "is required")
    return head, payload[cut + 1:]
