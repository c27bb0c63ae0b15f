"""The device applies a configuration document all or nothing, keeps it across restarts
and power cuts, and refuses a bad one whole — each refusal named, the old state kept."""

import json
import signal
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gridlink.firmware.core import desired
from gridlink.firmware.device import codebook
from gridlink.firmware.device.desired import APPLIED, STEPS, DesiredState, read_keys
from gridlink.firmware.device.profile import load_profile
from gridlink.firmware.errors import DeviceError

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
MAP_SHA = "ab" * 32
BOOK = codebook.version("GB/T 47678.5-2026")


def message(version, settings, device="pv-0001", key=KEY, map_sha=None, book=None):
    doc = desired.document(device, "410106", version, settings, 1765000000, map_sha, book)
    return desired.envelope(doc, key.sign(desired.digest(doc)))


def keeper(tmp_path):
    return DesiredState(tmp_path, "pv-0001", [PUBLIC], load_profile("patrol-vehicle"),
                        map_sha256=MAP_SHA, codebook=BOOK)


GOOD = {"buttons": {"garbage": {"kind": "event", "code": "07001", "text": "非法小广告"}},
        "status_interval_s": 30}


def test_a_document_is_applied_kept_and_used_again_after_a_restart(tmp_path):
    state = keeper(tmp_path)
    assert state.status() == {"version": None, "refused": None}
    profile = state.offer(message(2, GOOD, map_sha=MAP_SHA, book=BOOK))
    assert profile["buttons"][0]["code"] == "07001" and profile["status_interval_s"] == 30
    assert state.status() == {"version": 2, "refused": None}
    again = keeper(tmp_path)
    assert again.version == 2 and again.profile["buttons"][0]["code"] == "07001"
    # the retained copy delivered again on reconnect: nothing happens, nothing is refused
    assert again.offer(message(2, GOOD, map_sha=MAP_SHA, book=BOOK)) is None
    assert again.refused is None


REFUSALS = [
    ("outside the schema", lambda: message(3, {"track_interval_s": 0}), "schema",
     "settings.track_interval_s", "below the minimum 1"),
    ("not in the code book", lambda: message(3, {"buttons": {"garbage": {
        "kind": "event", "code": "99999"}}}), "schema", "settings.buttons.garbage.code",
     "99999"),
    ("for another device", lambda: message(3, GOOD, device="pv-0002"), "device", "device",
     "for pv-0002"),
    ("signed by the wrong key", lambda: message(3, GOOD, key=OTHER), "signature", None,
     "not signed by the centre's key"),
    ("older than applied", lambda: message(1, GOOD), "older", "version",
     "1 is not newer than the applied 2"),
    ("a map it does not hold", lambda: message(3, GOOD, map_sha="cd" * 32), "hash", "map",
     "is not the one this device holds"),
    ("another code book", lambda: message(3, GOOD, book="GB/T 30428.2-2013@000000000000"),
     "hash", "codebook", "GB/T 30428.2-2013"),
    ("a document not matching its digest", lambda: _tampered(message(3, GOOD)), "hash", None,
     "does not hash"),
]


def _tampered(data):
    env = json.loads(data)
    env["doc"] = env["doc"].replace('"version":3', '"version":4')
    return json.dumps(env).encode()


@pytest.mark.parametrize("why, make, reason, field, words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_document_is_refused_whole_and_the_device_keeps_what_it_had(
        tmp_path, why, make, reason, field, words):
    state = keeper(tmp_path)
    state.offer(message(2, GOOD))
    before = json.loads((tmp_path / APPLIED).read_text())
    assert state.offer(make()) is None
    assert state.refused["reason"] == reason and state.refused["field"] == field
    assert words in state.refused["message"]
    assert state.version == 2 and state.profile["buttons"][0]["code"] == "07001"
    assert state.profile["track"]["interval_s"] == 5
    assert json.loads((tmp_path / APPLIED).read_text()) == before
    again = keeper(tmp_path)                    # the refusal is still reported after a restart
    assert again.version == 2 and again.refused == state.refused
    # the next good document clears it
    assert again.offer(message(5, {"track_interval_s": 9})) is not None
    assert again.status() == {"version": 5, "refused": None}
    assert again.profile["buttons"][0]["code"] == "06010"   # each document is complete


def test_a_kept_file_not_signed_by_the_centre_is_not_used(tmp_path):
    state = keeper(tmp_path)
    state.offer(message(2, GOOD))
    kept = json.loads((tmp_path / APPLIED).read_text())
    kept["message"] = message(7, {"status_interval_s": 5}, key=OTHER).decode()
    (tmp_path / APPLIED).write_text(json.dumps(kept))
    again = keeper(tmp_path)
    assert again.version is None and again.profile["status_interval_s"] == 60


APPLY_AND_DIE = """
import os, signal, sys
from gridlink.firmware.device.desired import DesiredState
from gridlink.firmware.device.profile import load_profile
data_dir, step, key, msg = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4]
state = DesiredState(data_dir, "pv-0001", [key], load_profile("patrol-vehicle"))
state.after_step = lambda name: name == step and os.kill(os.getpid(), signal.SIGKILL)
state.offer(open(msg, "rb").read())
"""


@pytest.mark.parametrize("step", STEPS)
def test_a_power_cut_mid_apply_leaves_the_old_document_or_the_new_one(tmp_path, step):
    data = tmp_path / "data"
    data.mkdir()
    keeper(data).offer(message(2, GOOD))
    (tmp_path / "msg").write_bytes(message(3, {"status_interval_s": 45}))
    proc = subprocess.run([sys.executable, "-c", APPLY_AND_DIE, str(data), step, PUBLIC.hex(),
                           str(tmp_path / "msg")], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    state = keeper(data)
    if step == "written":                       # killed before the rename: the old one
        assert state.version == 2 and state.profile["status_interval_s"] == 30
    else:
        assert state.version == 3 and state.profile["status_interval_s"] == 45
    assert not (data / (APPLIED + ".new")).exists()


def test_the_centre_key_file_is_checked(tmp_path):
    (tmp_path / "keys").write_text(PUBLIC.hex() + "\n")
    assert read_keys(tmp_path / "keys") == [PUBLIC]
    (tmp_path / "bad").write_text("not-a-key\n")
    with pytest.raises(DeviceError, match="is not a 64-hex-digit Ed25519 public key"):
        read_keys(tmp_path / "bad")


def test_a_document_that_cannot_be_kept_on_a_full_disk_is_refused_and_nothing_changes(
        tmp_path):
    from tests.support.tmpfs import tmpfs

    with tmpfs(tmp_path / "disk", "64k") as disk:
        state = keeper(disk)
        state.offer(message(2, GOOD))
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
            try:
                while True:
                    f.write(b"x" * 512)
            except OSError:
                pass
        assert state.offer(message(3, {"status_interval_s": 45})) is None
        assert state.refused["reason"] == "storage" and state.refused["version"] == 3
        assert "No space left" in state.refused["message"]
        assert state.version == 2 and state.profile["status_interval_s"] == 30
        assert not (disk / (APPLIED + ".new")).exists()
        assert keeper(disk).version == 2
        filler.unlink()                              # room again: the next copy applies
        assert state.offer(message(3, {"status_interval_s": 45}))["status_interval_s"] == 45
        assert keeper(disk).status() == {"version": 3, "refused": None}


def test_a_terminal_without_buttons_takes_a_document_too(tmp_path):
    # its profile has no button list, and the defaults make none up (minItems: 1)
    state = DesiredState(tmp_path, "ft-0001", [PUBLIC], load_profile("fixed-terminal"))
    profile = state.offer(message(2, {"status_interval_s": 45}, device="ft-0001"))
    assert profile is not None and profile["status_interval_s"] == 45
    assert state.status() == {"version": 2, "refused": None}
