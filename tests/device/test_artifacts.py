"""Maps and code books as artifacts on a Pi device, with the real gateway serving them over
the real broker's piece path: a document naming a map or book the device lacks has it
fetched, hash-checked, kept whole, and only then is the document applied; a file too
large, unknown to the gateway, not hashing, another book, or a class the new book lacks
refuses the document whole and the device keeps what it had; a power cut at any step of
a fetch leaves the old document in use.  Then a running device (``gridlink device run
--sim``) switches its grid locator and code book without a restart."""

import signal
import subprocess
import sys

import pytest
from gridlink.firmware.device import codebook
from gridlink.firmware.device.artifacts import STEPS, Artifacts
from gridlink.firmware.device.desired import DesiredState
from gridlink.firmware.device.profile import load_profile
from gridlink.firmware.maps import default_map
from gridlink.gateway.service import Gateway
from gridlink.host.gridcut import around, cut_map

from tests.support.artifacts import (
    BOOK,
    BOOK_ID,
    DROPPED,
    PUBLIC,
    REDRAWN_GRID,
    PieceLink,
    message,
    redrawn_map,
    send,
    sha,
)
from tests.support.device_rig import DeviceProc
from tests.support.paths import ROOT
from tests.support.report_listener import ReportListener
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

HELD_BOOK = codebook.version("GB/T 47678.5-2026")
SHIPPED = default_map("410106")
REDRAWN = redrawn_map()
ELSEWHERE = cut_map(SHIPPED.read_bytes(), around(113.27, 34.79, 100))[0]


@pytest.fixture
def served(broker, tmp_path):
    """The gateway serving the redrawn map and the next book beside the shipped ones."""
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "redrawn.glgm").write_bytes(REDRAWN)
    (tmp_path / "maps" / "elsewhere.glgm").write_bytes(ELSEWHERE)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "next.json").write_bytes(BOOK)
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", codebook_files=tmp_path / "books",
                 map_files=tmp_path / "maps").start()
    assert gw.runtime.wait_ready(10)
    yield tmp_path
    gw.stop()


@pytest.fixture
def state(broker, served, tmp_path):
    """A patrol vehicle's desired state fetching over the piece path; ``limits`` on it."""
    links = []

    def make(data=tmp_path / "data", profile="patrol-vehicle", device="pv-0001", **limits):
        data.mkdir(exist_ok=True)
        artifacts = Artifacts(data, wait_s=2, limits=limits)
        links.append(PieceLink(broker.port, device, artifacts.on_chunk))
        artifacts.ask = links[-1].ask
        return DesiredState(data, device, [PUBLIC], load_profile(profile),
                            map_sha256=sha(SHIPPED.read_bytes()), codebook=HELD_BOOK,
                            artifacts=artifacts)

    yield make
    for link in links:
        link.close()


def offer_and_fetch(st, msg):
    """What the runtime does: offer, fetch what it names, offer again."""
    profile = st.offer(msg)
    if st.needs is not None:
        again = st.fetch()
        profile = st.offer(again) if again is not None else None
    return profile


def test_a_map_and_book_the_device_lacks_are_fetched_checked_and_then_applied(state):
    st = state()
    msg = message(2, {"buttons": {"garbage": {"kind": "event", "code": "06011"}}},
                  map_sha=sha(REDRAWN), book=BOOK_ID, book_sha=sha(BOOK))
    assert st.offer(msg) is None and st.needs is not None and st.refused is None
    assert st.version is None and st.used == {"map": None, "book": None}
    again = st.fetch()
    profile = st.offer(again)
    assert profile["buttons"][0]["code"] == "06011" and st.version == 2
    path, gm, _ = st.used["map"]
    assert path.read_bytes() == REDRAWN and gm.locate(113.2965, 34.8095) == REDRAWN_GRID
    assert st.used["book"][1].id == BOOK_ID and st.used["book"][0].read_bytes() == BOOK
    assert sorted(p.name for p in st.artifacts.dir.iterdir()) == sorted(
        [f"{sha(REDRAWN)}.glgm", f"{sha(BOOK)}.json"])
    kept = state()                     # after a restart: in use again, nothing fetched
    assert kept.version == 2 and kept.used["map"][0] == path
    assert kept.used["book"][1].id == BOOK_ID and kept.needs is None
    # the next document names neither: back to the provisioned map and book; files pruned
    assert kept.offer(message(3)) is not None and kept.used == {"map": None, "book": None}
    assert list(kept.artifacts.dir.iterdir()) == []


REFUSALS = [
    ("unknown map", dict(map_sha=sha(b"no such map")), {}, "map", "map",
     "the gateway has no such map"),
    ("unknown book", dict(book=BOOK_ID, book_sha=sha(b"no such book")), {}, "codebook",
     "codebook", "the gateway has no such codebook"),
    ("map too large", dict(map_sha=sha(REDRAWN)), {"map": 100}, "map", "map",
     "more than this device takes (100)"),
    ("book too large", dict(book=BOOK_ID, book_sha=sha(BOOK)), {"codebook": 1000},
     "codebook", "codebook", "more than this device takes (1000)"),
    ("map not hashing", dict(map_sha="tampered"), {}, "hash", "map", "hashes to"),
    ("book not hashing", dict(book=BOOK_ID, book_sha="tampered"), {}, "hash",
     "codebook_sha256", "hashes to"),
    ("another book", dict(book="GB/T 47678.5-2026@000000000000", book_sha=sha(BOOK)), {},
     "codebook", "codebook", f"is the code book {BOOK_ID}"),
    ("another standard", dict(book="CJ/T 214-2007@000000000000", book_sha=sha(BOOK)), {},
     "codebook", "codebook", "not of the standard this device reports under"),
    ("a class the new book lacks", dict(book=BOOK_ID, book_sha=sha(BOOK), settings={
        "buttons": {"garbage": {"kind": "event", "code": DROPPED}}}), {}, "schema",
     "settings.buttons.garbage.code", DROPPED),
]


@pytest.mark.parametrize("why, names, limits, reason, field, words", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_a_document_whose_map_or_book_fails_is_refused_whole_and_nothing_changes(
        state, served, why, names, limits, reason, field, words):
    st = state(**limits)
    st.offer(message(2, {"status_interval_s": 45}))
    before = (st.dir / "desired.json").read_bytes()
    names = dict(names)
    settings = names.pop("settings", None)
    for key in ("map_sha", "book_sha"):
        if names.get(key) == "tampered":   # indexed when the gateway started, then changed
            folder, name, data = (("maps", "redrawn.glgm", REDRAWN) if key == "map_sha"
                                  else ("books", "next.json", BOOK))
            (served / folder / name).write_bytes(data[:-2] + b"\n\n")
            names[key] = sha(data)
    assert offer_and_fetch(st, message(3, settings, **names)) is None
    r = st.refused
    assert (r["version"], r["reason"], r["field"]) == (3, reason, field), r
    assert words in r["message"]
    assert st.version == 2 and st.profile["status_interval_s"] == 45
    assert st.used == {"map": None, "book": None}
    assert (st.dir / "desired.json").read_bytes() == before
    kept = list(st.artifacts.dir.glob("*")) if st.artifacts.dir.exists() else []
    # nothing of a failing file is kept; a good book a refused document named may stay
    assert kept == ([st.artifacts.path("codebook", sha(BOOK))] if reason == "schema" else [])
    # the retained copy again (a reconnect): refused as it was, not fetched again
    assert st.offer(message(3, settings, **names)) is None and st.needs is None


def test_a_fixed_terminal_takes_its_grid_code_from_the_map_or_refuses_one_without_it(
        state):
    st = state(profile="fixed-terminal", device="ft-0001")
    assert offer_and_fetch(st, message(2, device="ft-0001", map_sha=sha(ELSEWHERE))) is None
    r = st.refused
    assert (r["version"], r["reason"], r["field"]) == (2, "map", "map")
    assert "no cell of the map covers this terminal's position" in r["message"]
    assert offer_and_fetch(st, message(3, device="ft-0001", map_sha=sha(REDRAWN)))
    assert st.used["map"][2] == REDRAWN_GRID


FETCH_AND_DIE = """
import os, signal, sys
from gridlink.firmware.device.artifacts import Artifacts
from tests.support.artifacts import PieceLink
port, data, step, kind, sha = sys.argv[1:6]
artifacts = Artifacts(data, wait_s=2)
link = PieceLink(int(port), "pv-0001", artifacts.on_chunk)
artifacts.ask = link.ask
artifacts.after_step = lambda name: name == step and os.kill(os.getpid(), signal.SIGKILL)
artifacts.fetch(kind, sha)
"""


@pytest.mark.parametrize("step", STEPS)
def test_a_power_cut_mid_fetch_leaves_the_old_document_in_use(broker, served, state,
                                                               tmp_path, step):
    data = tmp_path / "data"
    state(data).offer(message(2, {"status_interval_s": 45}))
    proc = subprocess.run([sys.executable, "-c", FETCH_AND_DIE, str(broker.port), str(data),
                           step, "map", sha(REDRAWN)], capture_output=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    st = state(data)                   # the device starts again: what it had
    assert st.version == 2 and st.used == {"map": None, "book": None}
    # the document comes again: fetched (from what is on disk) and applied
    assert offer_and_fetch(st, message(3, map_sha=sha(REDRAWN))) is not None
    assert st.version == 3 and st.used["map"][0].read_bytes() == REDRAWN


def test_a_running_device_switches_its_map_and_book_without_a_restart(broker, served,
                                                                       tmp_path):
    (tmp_path / "keys").write_text(PUBLIC.hex() + "\n")
    listener = ReportListener("127.0.0.1", broker.port, client_id="report-listener")
    dev = DeviceProc(tmp_path, broker, extra=[
        "--sim", "--cancel-grace", "0", "--reconnect-max", "1",
        "--config-keys", str(tmp_path / "keys")])
    try:
        with dev:
            wait_until(lambda: (s := dev.status())["connected"] and s["fix"], 30,
                       "the device to connect with a fix")
            assert dev.status()["codebook"] == HELD_BOOK
            dev.press("garbage")
            first = wait_until(lambda: listener.reports and listener.reports[-1], 30,
                               "a report")
            assert first["grid"].startswith("410106002") and first["grid"] != REDRAWN_GRID
            send(broker.port, message(2, {"buttons": {"garbage": {
                "kind": "event", "code": "06011"}}}, map_sha=sha(REDRAWN), book=BOOK_ID,
                book_sha=sha(BOOK)))
            st = wait_until(lambda: (s := dev.status())["config"]["version"] == 2 and s, 30,
                            "version 2 applied")
            assert st["codebook"] == BOOK_ID and st["config"]["refused"] is None
            dev.press("garbage")
            second = wait_until(lambda: len(listener.reports) > 1 and listener.reports[-1],
                                30, "a second report")
            assert (second["grid"], second["code"]) == (REDRAWN_GRID, "06011")
            assert "fetched" in dev.log()
        with DeviceProc(tmp_path, broker, extra=dev.args[dev.args.index("--sim"):]) as again:
            st = wait_until(lambda: (s := again.status())["connected"] and s, 30, "up")
            assert st["config"]["version"] == 2 and st["codebook"] == BOOK_ID
    finally:
        listener.close()
