"""A full disk never loses a report behind an "ok": on a real 3 MB filesystem (tmpfs,
mounted by the test — we need root) a running device keeps every report whose photo no
longer fits (flag ``photo_dropped``), answers an error to a press it could not make
durable (control socket, `gridlink device press` exit status, status counters), deletes
photos once delivered and cleans up half-written ``.new`` files at start."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gridlink.firmware.core.outbox import PHOTO_PROGRESS, REPORT, Outbox
from gridlink.firmware.device.control import request

from tests.support.device_rig import GatewayAcker
from tests.support.tmpfs import tmpfs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
GRIDLINK = [sys.executable, "-c", "import sys; from gridlink.cli import main; sys.exit(main())"]


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "3m") as mnt:
        yield mnt


class Device:
    def __init__(self, tmp_path, broker, data_dir):
        self.data_dir = data_dir
        self.log_path = tmp_path / "device.log"
        # delivered photos are deleted at once here (the field keeps them a while)
        profile = json.loads((ROOT / "device_profiles" / "patrol-vehicle.json").read_text())
        profile["camera"]["keep_delivered_s"] = 0
        (tmp_path / "patrol-vehicle.json").write_text(json.dumps(profile))
        args = [*GRIDLINK, "device", "run", "--profile", str(tmp_path / "patrol-vehicle.json"),
                "--sim",
                "--data-dir", str(data_dir), "--broker", broker.url, "--device-id",
                "pv-0001", "--cancel-grace", "0", "--reconnect-max", "1"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_until(self._up, 30, "the device to answer")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"device exited:\n{self.log_path.read_text()}")
        try:
            return request(self.data_dir, {"cmd": "status"}, timeout=5)["ok"]
        except Exception:
            return False

    def press(self):
        """(exit status, answer or error line) of `gridlink device press garbage`."""
        done = subprocess.run([*GRIDLINK, "device", "press", "--data-dir",
                               str(self.data_dir), "garbage"], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
        return done.returncode, (done.stdout + done.stderr).strip()

    def status(self):
        return request(self.data_dir, {"cmd": "status"})["status"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


def stored_reports(data_dir):
    with Outbox(str(data_dir / "outbox")) as ob:
        return [json.loads(p) for _s, _k, p in ob.pending(REPORT)], ob.depth(PHOTO_PROGRESS)


def test_a_full_disk_keeps_reports_or_says_no_never_a_silent_ok(tmp_path, broker, small_disk):
    data = small_disk / "dev"
    (data / "photos").mkdir(parents=True)
    # what a crash or the full disk left half-written last time
    (data / "photos" / ("ab" * 32 + ".jpg.new")).write_bytes(b"\xff\xd8" * 1000)
    (data / "tasks.json.new").write_bytes(b'{"T-1": ')
    (data / "photos" / ("cd" * 32 + ".jpg")).write_bytes(b"\xff\xd8" * 1000)  # orphan
    broker.stop()                               # no link yet: nothing is delivered
    dev = Device(tmp_path, broker, data)
    filler = small_disk / "filler"
    try:
        assert sorted(p.name for p in (data / "photos").iterdir()) == []
        assert not (data / "tasks.json.new").exists()
        made, answers = 0, []
        while True:                              # photos fill the disk, reports go on
            code, out = dev.press()
            answers.append((code, out))
            assert code == 0, answers
            assert json.loads(out)["reports"] == 1, answers   # never "ok" with 0 reports
            made += 1
            if dev.status()["problems"]["photos_dropped"] >= 2:
                break
            assert made < 40, "photos never stopped fitting on a 3 MB disk"
        reports, jobs = stored_reports(data)
        assert len(reports) == made
        dropped = [r for r in reports if "photo_dropped" in r["flags"]]
        assert len(dropped) == 2 and all(r["photos"] == [] for r in dropped)
        assert all(r["photos"] for r in reports if r not in dropped)
        assert jobs == made - 2 == len(list((data / "photos").glob("*.jpg")))
        # now the disk is truly full: a press cannot make a durable report and says so
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        code, out = dev.press()
        assert code != 0 and "NOT" in out and "No space left" in out, out
        status = dev.status()
        assert status["problems"]["failed"] == 1 and "No space left" in status["last_error"]
        assert stored_reports(data)[0] == reports            # the earlier ones all kept
        assert list(data.rglob("*.new")) == []               # no half-written leftovers
        filler.unlink()
        code, out = dev.press()                  # room again: reports are made again
        assert code == 0 and json.loads(out)["reports"] == 1
        # the link and the gateway come: every report is delivered, every photo deleted
        broker.start()
        gw = GatewayAcker(broker).start()
        try:
            wait_until(lambda: stored_reports(data) == ([], 0), 90, "all delivered")
            wait_until(lambda: not list((data / "photos").glob("*.jpg")), 10,
                       "delivered photos deleted")
            assert len({r["id"] for r in gw.reports}) == made + 1
        finally:
            gw.stop()
    finally:
        filler.unlink(missing_ok=True)
        dev.stop()


def test_a_delivered_photo_stays_its_keep_time_so_the_centre_can_ask_again(tmp_path):
    from gridlink.firmware.device.store import Store

    store = Store(tmp_path / "dev", photo_keep_s=600)
    try:
        store.save_photo("ab" * 32, b"jpeg")
        store.photo_delivered("ab" * 32, now=1000.0)
        assert store.prune_delivered(now=1599.0) == 0 and store.photo_path("ab" * 32).exists()
        store.photo_wanted_again("ab" * 32)          # asked for again: kept until re-sent
        assert store.prune_delivered(now=5000.0) == 0 and store.photo_path("ab" * 32).exists()
        store.photo_delivered("ab" * 32, now=5000.0)
        assert store.prune_delivered(now=5600.0) == 1
        assert not store.photo_path("ab" * 32).exists()
    finally:
        store.close()
