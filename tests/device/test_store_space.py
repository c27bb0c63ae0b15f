"""The store on a real small filesystem (a tmpfs the test mounts: root): a photo never eats
the room kept for reports, a photo or counter that cannot be written is a DeviceError that
leaves no half-written file, leftovers are cleaned at start, problem counters persist."""

import json
import os
import shutil
import time

import pytest
from gridlink.firmware.core.report import encode_report, make_report
from gridlink.firmware.device.store import PHOTO, REPORT, Store
from gridlink.firmware.errors import DeviceError

from tests.support.tmpfs import tmpfs


@pytest.fixture
def disk(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as mnt:
        yield mnt


def fill(path):
    """Fill the filesystem of ``path`` to the last byte (unbuffered: no late flush)."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass


def test_a_photo_may_not_eat_the_room_kept_for_reports(disk):
    store = Store(disk / "dev")
    free = shutil.disk_usage(disk).free
    store.photo_reserve = free - 8192
    with pytest.raises(DeviceError, match="kept for reports"):
        store.save_photo("a" * 64, b"x" * 8193)        # one byte into the reserve
    assert list((disk / "dev" / "photos").iterdir()) == []
    store.save_photo("b" * 64, b"x" * 8192)             # exactly up to it
    assert store.photo_path("b" * 64).read_bytes() == b"x" * 8192
    store.close()


def test_a_photo_that_does_not_fit_leaves_no_half_written_file(disk):
    store = Store(disk / "dev", photo_reserve=0)
    fill(disk / "filler")
    with pytest.raises(DeviceError, match="not saved"):
        store.save_photo("c" * 64, b"y" * 200_000)
    assert list((disk / "dev" / "photos").iterdir()) == []
    with pytest.raises(DeviceError, match=r"report counter .* not written"):
        store.next_seq()
    assert [p.name for p in (disk / "dev").iterdir() if p.name.endswith(".new")] == []
    store.count_problem("failed")                   # cannot be written: kept in memory
    assert store.problems()["failed"] == 1
    store.close()
    (disk / "filler").unlink()
    again = Store(disk / "dev")
    assert again.next_seq() >= 1                       # the counter was not damaged
    again.close()


def test_leftovers_are_cleaned_at_start_and_waiting_photos_kept(tmp_path):
    store = Store(tmp_path)
    store.save_photo("d" * 64, b"waiting")
    store.save_photo("e" * 64, b"orphan")
    store.save_photo("c" * 64, b"just delivered")      # the gateway may ask for it again
    old = time.time() - store.photo_keep_s - 1
    os.utime(store.photo_path("e" * 64), (old, old))
    rep = make_report("pv-0001", 1, None, 1796500000.0, "event", "GB/T 47678.5-2026",
                      "06010", photos=[("d" * 64, 7)])
    store.append(REPORT, encode_report(rep))
    store.append(PHOTO, json.dumps({"report": rep["id"], "sha256": "d" * 64, "size": 7,
                                    "done": []}).encode())
    store.close()
    (tmp_path / "photos" / ("f" * 64 + ".jpg.new")).write_bytes(b"half")
    (tmp_path / "tasks.json.new").write_bytes(b"{")
    (tmp_path / "seq.new").write_bytes(b"garbage")      # the counter's own: its reader's
    Store(tmp_path).close()
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == [
        "c" * 64 + ".jpg", "d" * 64 + ".jpg"]
    assert not (tmp_path / "tasks.json.new").exists()
    assert (tmp_path / "seq.new").exists()


def test_problem_counters_survive_a_restart_and_a_damaged_file(tmp_path):
    store = Store(tmp_path)
    assert store.problems() == {"lost": 0, "reissued": 0, "photos_dropped": 0, "failed": 0,
                                "media_dropped": 0}
    store.count_problem("photos_dropped")
    store.count_problem("photos_dropped")
    store.close()
    store = Store(tmp_path)
    assert store.problems()["photos_dropped"] == 2
    store.close()
    (tmp_path / "problems.json").write_text('["not", "a", "dict"]')
    assert Store(tmp_path).problems()["photos_dropped"] == 0
    (tmp_path / "problems.json").write_text('{"failed": "x", "reissued": 3, "other": 9}')
    assert Store(tmp_path).problems() == {"lost": 0, "reissued": 3, "photos_dropped": 0,
                                          "failed": 0, "media_dropped": 0}
