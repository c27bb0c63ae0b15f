"""MQTT topic tree of protocol v1: ``gridlink/v1/{district}/{device}/{leaf}``."""

from .checks import DIGITS, MessageError, check_device, check_report_id, check_str

PREFIX = "gridlink/v1"  # the one spelling of the tree's root; the gateway's topics build on it
_ROOT, _VERSION = PREFIX.split("/")
# leaf → (publisher, QoS, retained)
LEAVES = {
    "report": ("device", 1, False),
    "track": ("device", 1, False),
    "status": ("device", 1, True),
    "photo": ("device", 1, False),
    "media": ("device", 1, False),
    "ack": ("gateway", 1, False),
    "task": ("gateway", 1, False),
    "task/result": ("device", 1, False),
    "config": ("gateway", 1, True),
    "update": ("gateway", 1, True),
    "ota/get": ("device", 0, False),
    "ota/chunk": ("gateway", 0, False),
}


CHUNKED = ("photo", "media")  # leaves of the form …/{leaf}/{report_id}/{n}


def check_district(district):
    check_str(MessageError, district, "district", 6, 6, DIGITS, "a 6-digit GB/T 2260 code")


def topic(district, device, leaf):
    """``gridlink/v1/410106/pv-0001/report`` (leaf: report, track, status, ack, task,
    task/result, config, update, ota/get, ota/chunk)."""
    check_district(district)
    check_device(MessageError, device)
    if leaf not in LEAVES or leaf in CHUNKED:
        raise MessageError("topic", f"unknown leaf {leaf!r}")
    return f"{PREFIX}/{district}/{device}/{leaf}"


def photo_topic(district, device, report_id, chunk, leaf="photo"):
    """``…/photo/{report_id}/{n}`` (or ``leaf`` media: a clip's or memo's chunk)."""
    if leaf not in CHUNKED:
        raise MessageError("topic", f"{leaf!r} is not a chunked leaf")
    check_district(district)
    check_device(MessageError, device)
    check_report_id(MessageError, report_id, "report_id")
    return f"{PREFIX}/{district}/{device}/{leaf}/{report_id}/{int(chunk)}"


def media_topic(district, device, report_id, chunk):
    return photo_topic(district, device, report_id, chunk, "media")


def subscription(district="+", device="+", leaf="#"):
    """A subscription filter, e.g. ``gridlink/v1/+/+/report`` (gateway) or the photo tree."""
    return f"{PREFIX}/{district}/{device}/{leaf}"


def parse_topic(name):
    """Topic → (district, device, leaf, extra); extra is (report_id, chunk) for photo and
    media chunks.

    Raises MessageError for anything outside the v1 tree.
    """
    parts = name.split("/")
    if len(parts) < 5 or parts[0] != _ROOT:
        raise MessageError("topic", f"not a gridlink topic: {name!r}")
    if parts[1] != _VERSION:
        raise MessageError("topic", f"unsupported protocol version {parts[1]!r}")
    district, device = parts[2], parts[3]
    check_district(district)
    check_device(MessageError, device)
    rest = parts[4:]
    if rest[0] in CHUNKED:
        if len(rest) != 3:
            raise MessageError("topic", f"{rest[0]} topics are .../{rest[0]}/{{report_id}}/"
                                        "{chunk}")
        check_report_id(MessageError, rest[1], "topic report id")
        if not rest[2] or len(rest[2]) > 8 or not all(c in DIGITS for c in rest[2]):
            raise MessageError("topic", f"chunk index must be digits (got {rest[2]!r})")
        return district, device, rest[0], (rest[1], int(rest[2]))
    leaf = "/".join(rest)
    if leaf not in LEAVES:
        raise MessageError("topic", f"unknown leaf {leaf!r}")
    return district, device, leaf, None
