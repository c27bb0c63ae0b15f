"""Grid maps as artifacts on the sensor node as flashed (simulated board, MicroPython
WebAssembly, real Mosquitto, the gateway serving maps by sha256): a signed document naming
a map cut to the node's area has it fetched in pieces, checked (hash, a readable map, one
covering the node's position), installed, and only then applied — and the node's reports
carry the code the map gives its position.  A map too large for a node, one the gateway
does not have, one that does not hash or does not cover the node is refused whole; a
fetch cut by a power cut leaves the old map in use and goes on from the bytes on flash."""

import hashlib
import json

import pytest
from gridlink.firmware.maps import default_map
from gridlink.flash import simboard
from gridlink.host.gridcut import around, cut_map

from tests.mcu.test_node import PIN, wait_status
from tests.mcu.test_node_codebook import centre_sends

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

NODE = (113.2965, 34.8095)            # the sensor-node profile's position
WHOLE = default_map("410106").read_bytes()
CUT, STATS = cut_map(WHOLE, around(*NODE, 300))
OWN_GRID = "410106002005047"           # the map's cell at the node's position
PROVISIONED = "410106001001001"        # what the node is provisioned with in these tests
FAR, _ = cut_map(WHOLE, around(113.27, 34.79, 150))     # cut around another place


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def maps(maps):
    """The gateway's own maps: the node's cut and one cut elsewhere."""
    (maps / "sn-0007.glgm").write_bytes(CUT)
    (maps / "far.glgm").write_bytes(FAR)
    return maps


@pytest.fixture
def placed(keyed):
    """A node provisioned with a grid code other than its cell's (a redrawn grid)."""
    cfg_path = keyed.flash / "gridlink" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["grid"] = PROVISIONED
    cfg_path.write_text(json.dumps(cfg))
    return keyed


def tilt_report(node, served):
    node.set_pin(PIN, 0)
    node.run()
    node.set_pin(PIN, 1)
    return served.reports[-1]


def test_the_map_cut_to_the_node_is_a_small_part_of_the_district_map():
    assert STATS["cells"] == 50 and STATS["of_cells"] == 4288
    assert len(CUT) < 5000 and len(WHOLE) > 70 * len(CUT)


def test_a_cut_map_is_fetched_checked_installed_then_applied_and_locates_the_node(
        placed, broker, served, maps):
    flash = placed.flash / "gridlink"
    assert tilt_report(placed, served)["grid"] == PROVISIONED
    centre_sends(broker, 4, map_sha=sha(CUT))
    out = placed.run()
    assert f"grid map {sha(CUT)[:12]} installed: grid {OWN_GRID}" in out
    assert "configuration 4 applied" in out
    assert (flash / "gridmap.glgm").read_bytes() == CUT
    assert (flash / "map.id").read_text() == f"{sha(CUT)} {OWN_GRID}"
    assert not (flash / "gridmap.glgm.part").exists() and placed.last_sleep_ms == 60000
    st = wait_status(served, lambda s: (s.get("config") or {}).get("version") == 4)
    assert st["config"]["refused"] is None
    assert tilt_report(placed, served)["grid"] == OWN_GRID       # located on the new map
    out = placed.run()   # the retained document again: held, nothing fetched
    assert "grid map" not in out and "configuration" not in out


@pytest.mark.parametrize("case, reason, words", [
    ("too-large", "map", "larger than a node holds"),        # the whole district's map
    ("absent", "map", "the gateway has no such map"),
    ("tampered", "hash", "hashes to"),                       # changed on the gateway's disk
    ("elsewhere", "map", "no cell of the map covers"),       # cut around another place
])
def test_a_map_that_fails_is_refused_whole_and_the_old_one_stays(
        placed, broker, served, maps, case, reason, words):
    flash = placed.flash / "gridlink"
    digest = sha(CUT)
    if case == "too-large":
        digest = sha(WHOLE)                                   # shipped: served by default
    elif case == "absent":
        digest = sha(b"no map the gateway has")
    elif case == "elsewhere":
        digest = sha(FAR)
    else:   # indexed when the gateway started, then changed: the bytes no longer hash
        (maps / "sn-0007.glgm").write_bytes(CUT[:-1] + bytes([CUT[-1] ^ 1]))
    centre_sends(broker, 5, map_sha=digest)
    out = placed.run()
    assert f"configuration refused: {reason} map" in out, out
    assert not (flash / "gridmap.glgm").exists() and not (flash / "gridmap.glgm.part").exists()
    assert not (flash / "map.id").exists() and placed.last_sleep_ms == 300 * 1000
    st = wait_status(served, lambda s: (s.get("config") or {}).get("refused") is not None)
    refused = st["config"]["refused"]
    assert (refused["version"], refused["reason"], refused["field"]) == (5, reason, "map")
    assert words in refused["message"] and st["config"]["version"] is None
    assert tilt_report(placed, served)["grid"] == PROVISIONED    # runs on what it had
    seen = len(placed.relay.transcript)
    placed.run()   # the retained document again: refused as it was, not fetched again
    sent = b"".join(d for _, way, d in placed.relay.transcript[seen:] if way == "out")
    assert b"ota/get" not in sent


def test_a_fetch_cut_by_a_power_cut_leaves_the_old_map_and_goes_on_from_flash(
        placed, broker, served, maps):
    flash = placed.flash / "gridlink"
    # the power went while the first piece was being written: 3000 bytes on flash
    (flash / "gridmap.glgm.part").write_bytes(CUT[:3000])
    assert tilt_report(placed, served)["grid"] == PROVISIONED   # not a map it uses
    centre_sends(broker, 6, map_sha=sha(CUT))
    seen = len(placed.relay.transcript)
    out = placed.run()
    assert "configuration 6 applied" in out
    asked = [json.loads(d[d.index(b"{", d.index(b"ota/get")):])
             for _, way, d in placed.relay.transcript[seen:] if way == "out" and b"ota/get" in d]
    assert asked and asked[0]["offset"] == 3000 and all(a["offset"] for a in asked), asked
    assert (flash / "gridmap.glgm").read_bytes() == CUT
    assert tilt_report(placed, served)["grid"] == OWN_GRID
