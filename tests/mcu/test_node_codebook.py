"""Code books as artifacts on the sensor node as flashed (simulated board, MicroPython
WebAssembly, real Mosquitto, the gateway's piece server): a signed document naming a book
the node does not hold, by id and the sha256 of its file, has it fetched in pieces over
…/ota/get → …/ota/chunk, checked, installed, and only then applied; a book that does not
hash, is another book, or is not on the gateway is refused whole and the old one stays."""

import hashlib
import json

import pytest
from gridlink.firmware.codebooks import build
from gridlink.firmware.core import desired
from gridlink.flash import simboard

from tests.mcu.test_node import wait_status
from tests.mcu.test_node_desired import KEY, TOPIC
from tests.support.paths import ROOT

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

HELD = "GB/T 47678.5-2026@9b9bd01eda60"   # provisioned (tests/mcu/conftest.py)
SLIM = build.dump(build.slim(json.loads(
    (ROOT / "firmware" / "codebooks" / "cjt214-2007.json").read_text())))   # event-only
SLIM_ID = "CJ/T 214-2007@" + json.loads(SLIM)["version"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def books(books):
    (books / "cjt214-2007-slim.json").write_bytes(SLIM)
    return books


def centre_sends(broker, version, codebook=None, codebook_sha256=None, map_sha=None):
    import paho.mqtt.client as mqtt

    doc = desired.document("sn-0007", "410106", version, {"status_interval_s": 60},
                           1765000000, map_sha, codebook=codebook,
                           codebook_sha256=codebook_sha256)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="centre")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.publish(TOPIC, desired.envelope(doc, KEY.sign(desired.digest(doc))), qos=1,
                  retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_book_the_node_lacks_is_fetched_checked_installed_then_applied(keyed, broker,
                                                                          served):
    flash = keyed.flash / "gridlink"
    centre_sends(broker, 4, SLIM_ID, sha(SLIM))
    out = keyed.run()
    assert f"code book {SLIM_ID} installed" in out and "configuration 4 applied" in out
    assert (flash / "codebook.json").read_bytes() == SLIM
    assert (flash / "codebook.id").read_text() == SLIM_ID
    assert not (flash / "codebook.json.part").exists()
    assert keyed.last_sleep_ms == 60 * 1000
    st = wait_status(served, lambda s: (s.get("config") or {}).get("version") == 4)
    assert st["codebook"] == SLIM_ID and st["config"]["refused"] is None
    out = keyed.run()   # the retained document again: held, applied, nothing fetched
    assert "code book" not in out and "configuration" not in out
    # the id file lost (flash damage): the node runs on, fetches the book again, applies
    (flash / "codebook.id").unlink()
    out = keyed.run()
    assert f"code book {SLIM_ID} installed" in out and "configuration 4 applied" in out
    assert (flash / "codebook.id").read_text() == SLIM_ID and keyed.last_sleep_ms == 60000


@pytest.mark.parametrize("case, reason, field", [
    ("tampered", "hash", "codebook_sha256"),       # the gateway's copy changed on its disk
    ("absent", "codebook", "codebook"),            # no such file on the gateway
    ("other-book", "codebook", "codebook"),        # hashes right, but is another book
])
def test_a_book_that_fails_is_refused_whole_and_the_old_one_stays(keyed, broker, served,
                                                                  books, case, reason, field):
    flash = keyed.flash / "gridlink"
    before = (flash / "codebook.json").read_bytes()
    book_id, digest = SLIM_ID, sha(SLIM)
    if case == "tampered":
        (books / "cjt214-2007-slim.json").write_bytes(SLIM.replace(b"CJ/T", b"XX/T", 1))
    elif case == "absent":
        digest = sha(b"not a book the gateway has")
    else:
        book_id = "CJ/T 214-2007@000000000000"
    centre_sends(broker, 5, book_id, digest)
    out = keyed.run()
    assert f"configuration refused: {reason} {field}" in out
    assert (flash / "codebook.json").read_bytes() == before
    assert not (flash / "codebook.json.part").exists() and not (flash / "codebook.id").exists()
    assert keyed.last_sleep_ms == 300 * 1000        # the document is not applied
    st = wait_status(served, lambda s: (s.get("config") or {}).get("refused") is not None)
    assert st["codebook"] == HELD and st["config"]["version"] is None
    assert (st["config"]["refused"]["version"], st["config"]["refused"]["reason"],
            st["config"]["refused"]["field"]) == (5, reason, field)
    seen = len(keyed.relay.transcript)
    keyed.run()   # the retained document again: refused as it was, not fetched again
    sent = b"".join(d for _, way, d in keyed.relay.transcript[seen:] if way == "out")
    assert b"ota/get" not in sent and b"/status" in sent
    assert (flash / "codebook.json").read_bytes() == before
