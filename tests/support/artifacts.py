"""What the Pi artifact tests share: maps and code books the gateway serves, a signed
document naming them, and ``PieceLink`` — a device's piece path over the real broker
(``…/ota/get`` → ``…/ota/chunk``) for ``firmware.device.artifacts.Artifacts`` used
outside a running device."""

import hashlib
import json
import threading
import uuid

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gridlink.firmware.codebooks import build
from gridlink.firmware.codebooks import path as book_path
from gridlink.firmware.core import desired

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
STANDARD = "GB/T 47678.5-2026"
REDRAWN_GRID = "410106002005901"     # the one cell of the redrawn map
DROPPED = "09022"                    # a class the next version of the book retires


def _next_book():
    book = json.loads(book_path(STANDARD).read_text(encoding="utf-8"))
    del book["event"]["classes"][DROPPED]
    return build.dump({**book, "version": build.content_version(book)})


BOOK = _next_book()                   # the next version of the device's book
BOOK_ID = f"{STANDARD}@{json.loads(BOOK)['version']}"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def redrawn_map():
    """A district's redrawn grid: one cell over the patrol vehicle's simulated track."""
    from gridlink.host.gridcompile import compile_layer

    ring = [[113.28, 34.80], [113.31, 34.80], [113.31, 34.82], [113.28, 34.82], [113.28, 34.80]]
    return compile_layer({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"code": REDRAWN_GRID},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]})[0]


def message(version, settings=None, device="pv-0001", map_sha=None, book=None, book_sha=None):
    doc = desired.document(device, "410106", version, settings or {"status_interval_s": 30},
                           1765000000, map_sha, book, codebook_sha256=book_sha)
    return desired.envelope(doc, KEY.sign(desired.digest(doc)))


def send(port, payload, device="pv-0001"):
    """The centre's publish of a document: retained, QoS 1."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="centre")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(f"gridlink/v1/410106/{device}/config", payload, qos=1,
                  retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


class PieceLink:
    """Piece requests of ``device`` over the broker at ``port``; answers to ``on_chunk``."""

    def __init__(self, port, device="pv-0001", on_chunk=None):
        self.base = f"gridlink/v1/410106/{device}/"
        self.on_chunk = on_chunk
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,   # one link never takes
                             client_id=f"{device}-pieces-{uuid.uuid4().hex[:8]}")  # another's
        self.c.on_message = lambda _c, _u, msg: self.on_chunk(msg.payload)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *args: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(self.base + "ota/chunk", 0)
        self.c.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("the piece link could not subscribe")

    def ask(self, request):
        self.c.publish(self.base + "ota/get", request, qos=0)
        return True

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
