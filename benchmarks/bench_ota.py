"""OTA budgets: a rollout to 100 simulated devices — the gateway's CPU cost and the time
to finish — and a Pi application update over a 256 kbit/s link cut in the middle (issue 12).

    .venv/bin/python benchmarks/bench_ota.py [--quick]

A private Mosquitto; the gateway as its own process (``gridlink gateway run --update-repo``,
SQLite), so its CPU time is its own (/proc); a repository with a small Pi release made by
the fleet tools.  The simulated fleet (this process) is N devices that each publish a
retained status with their update slots, take the offer on their ``…/update`` topic, fetch
and verify the release from the gateway as a Pi does (``update.fetch_release``:
tuf.ngclient over HTTP, from the device's own copy of the trusted root), wait the
simulated rest of an install (unpack, restart, health check: ``INSTALL_S``) and report
the new version.  The rollout (5 → 50 → 100 %) is started through the API; its state is
read from the store file, so polling costs the gateway nothing.

The link: the gateway's app behind the user-space link shaper (hil_tests/shaper.py,
256 kbit/s, 40 ms one way); a release the size of a Pi release (the gridlink wheel,
incompressible like any zip); the device's update runs once uncut, and once with the
link reset when half the release has crossed it, then again: bytes on the wire (TCP
payload plus 40 bytes a segment) and seconds, against starting over from zero.

The sensor node (``--only mcu`` runs this part alone and keeps the other figures): a real
``release build --kind mcu`` image served by an in-process gateway, a simulated board
(the MicroPython WebAssembly port under Node) flashed and provisioned; the wake that
fetches the release over MQTT piece by piece, checks it and switches to it, against a
plain wake of the same board; the first boot of the new image, which keeps it.  And the
signed manifest's check (Ed25519 in the core, plain Python) under MicroPython against the
same code under CPython and against ``cryptography`` (OpenSSL).

Writes benchmarks/results/ota.json.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results" / "ota.json"
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from gridlink.firmware.core import messages, topics  # noqa: E402
from gridlink.firmware.device.update import fetch_release  # noqa: E402
from gridlink.gateway.api import MIGRATIONS  # noqa: E402
from gridlink.gateway.auth.accounts import Accounts  # noqa: E402
from gridlink.gateway.ports import free_port  # noqa: E402
from gridlink.gateway.store import open_store  # noqa: E402
from gridlink.mosquitto import Mosquitto  # noqa: E402

from hil_tests.shaper import Profile, Shaper  # noqa: E402
from tests.support.fleet import app_release, make_repo, provision  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

INSTALL_S = 2.0           # the simulated rest of an install: unpack, restart, health check
DISTRICT = "410106"
PI_RELEASE_BYTES = 563_000  # the gridlink wheel (docs/ota.md)
LINK = Profile("256k", delay_ms=40, rate_kbps=256)


def cpu_seconds(pid):
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fleet:
    """N simulated Pi devices on one MQTT connection (the bench broker has no ACL)."""

    def __init__(self, broker, n, repo_url, root_json, work):
        self.repo_url, self.work = repo_url, Path(work)
        self.devices = [f"pv-{i:04d}" for i in range(n)]
        self.installed = {}                      # device → monotonic time it reported 1.1
        self.fetch_s = []
        self.errors = []
        self.lock = threading.Lock()
        for d in self.devices:
            meta = self.work / d / "metadata"
            meta.mkdir(parents=True)
            shutil.copyfile(root_json, meta / "root.json")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sim")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.subscription(leaf="update"), qos=1)

    def status(self, device, version, slot, slots):
        ota = {"installed": version, "slot": slot, "slots": slots, "pending": None,
               "failed": None}
        msg = messages.make_status(device, "online", "0.1.0", "GB/T 47678.5-2026",
                                   "patrol-vehicle", reports=0, track=0, uptime=1.0, ota=ota)
        self.client.publish(topics.topic(DISTRICT, device, "status"), messages.encode(msg),
                            qos=1, retain=True)

    def announce(self):
        for d in self.devices:
            self.status(d, "1.0", "a", {"a": "1.0", "b": None})

    def _on_message(self, _client, _userdata, msg):
        if not msg.payload:
            return
        device = topics.parse_topic(msg.topic)[1]
        offer = messages.decode(msg.payload, messages.validate_update, 512)
        threading.Thread(target=self._install, args=(device, offer), daemon=True).start()

    def _install(self, device, offer):
        t0 = time.monotonic()
        try:
            fetch_release(self.work / device / "metadata", self.repo_url, offer["kind"],
                          offer["version"], self.work / device / "download", installed="1.0")
        except Exception as exc:  # a bench: counted and shown
            with self.lock:
                self.errors.append(f"{device}: {exc}")
            return
        with self.lock:
            self.fetch_s.append(time.monotonic() - t0)
        time.sleep(INSTALL_S)
        self.status(device, offer["version"], "b", {"a": "1.0", "b": offer["version"]})
        with self.lock:
            self.installed[device] = time.monotonic()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def run(n):
    work = Path(tempfile.mkdtemp(prefix="gridlink-bench-ota-"))
    broker = Mosquitto(work / "broker").start()
    gateway = None
    try:
        _keydir, repo = make_repo(work, versions=("1.0", "1.1"))
        db = f"sqlite:///{work}/intake.sqlite"
        store = open_store(db)
        store.migrate(extra=MIGRATIONS)
        accounts = Accounts(store)
        accounts.add("tech", ("technician",), secrets.token_urlsafe(12))
        token, _ = accounts.issue_token("tech", "bench")
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gridlink.cli", "gateway", "run", "--broker", broker.url,
             "--db", db, "--http", f"127.0.0.1:{port}", "--update-repo", str(repo.path),
             "--photos", str(work / "photos"), "--log-level", "warning"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(work / "gateway.log", "wb"))  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 30, "gateway HTTP up")
        fleet = Fleet(broker, n, url + "/ota", repo.meta_dir / "1.root.json", work / "fleet")
        fleet.announce()
        wait_until(lambda: store.fetchall("SELECT COUNT(*) AS n FROM devices")[0]["n"] == n,
                   60, "every device's status stored")
        time.sleep(1.0)
        cpu0, t0 = cpu_seconds(gateway.pid), time.monotonic()
        body = {"kind": "pi", "version": "1.1", "target": {"district": DISTRICT},
                "stages": [5, 50, 100], "failure_threshold": 20}
        req = urllib.request.Request(url + "/api/rollouts", data=json.dumps(body).encode(),
                                     method="POST", headers={
                                         "Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            rid = json.loads(resp.read())["id"]
        stages_done = []
        seen_stage = 1
        while True:
            row = store.fetchall("SELECT state, stage FROM ota_rollouts WHERE id = ?", [rid])[0]
            if row["stage"] + 1 > seen_stage:
                stages_done.append(round(time.monotonic() - t0, 2))
                seen_stage = row["stage"] + 1
            if row["state"] != "running":
                break
            if time.monotonic() - t0 > 600 or fleet.errors:
                raise RuntimeError(f"rollout not done: {row}, errors {fleet.errors[:3]}")
            time.sleep(0.05)
        t_done = time.monotonic() - t0
        cpu = cpu_seconds(gateway.pid) - cpu0
        stages_done.append(round(t_done, 2))
        fleet.close()
        tar = next((repo.targets_dir / "pi").glob("*.gridlink-1.1.tar"))
        fetch = sorted(fleet.fetch_s)
        return {
            "devices": n, "stages": body["stages"], "state": row["state"],
            "simulated_install_s": INSTALL_S,
            "release_bytes": tar.stat().st_size,
            "time_to_done_s": round(t_done, 2),
            "stage_done_at_s": stages_done,
            "gateway_cpu_s": round(cpu, 3),
            "gateway_cpu_ms_per_device": round(cpu / n * 1000, 2),
            "device_fetch_verify_s": {"median": round(fetch[len(fetch) // 2], 3),
                                      "max": round(fetch[-1], 3)},
        }
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def link_update(size):
    """A Pi update over the shaped link: uncut, and cut in the middle then resumed."""
    from gridlink.firmware.device.ota import update_device
    from gridlink.firmware.device.update import UpdateRefused
    from gridlink.fleet.keys import init_keys
    from gridlink.fleet.repo import Repository
    from gridlink.gateway.api import create_app
    from gridlink.gateway.httpserver import BackgroundServer

    work = Path(tempfile.mkdtemp(prefix="gridlink-bench-ota-link-"))
    try:
        init_keys(work / "keys")
        repo = Repository(work / "repo")
        repo.add_release(work / "keys", "pi", "1.0", app_release(work, "1.0"))
        repo.add_release(work / "keys", "pi", "1.1",
                         app_release(work, "1.1", extra=os.urandom(size)))
        tar = next((repo.targets_dir / "pi").glob("*.gridlink-1.1.tar")).stat().st_size
        store = open_store(f"sqlite:///{work}/intake.sqlite")
        out = {"link": {"rate_kbps": LINK.rate_kbps, "delay_ms": LINK.delay_ms},
               "release_bytes": tar}
        with BackgroundServer(create_app(store, update_repo=repo.path)) as server:
            shaper = Shaper(server.port, LINK)
            url = f"http://127.0.0.1:{shaper.port}/ota"
            try:
                device = provision(work / "uncut", repo, "1.0")
                w0, t0 = shaper.wire_bytes(), time.monotonic()
                update_device(device, url, "pi", "1.1")
                uncut = {"wire_bytes": shaper.wire_bytes() - w0,
                         "seconds": round(time.monotonic() - t0, 2)}
                device = provision(work / "cut", repo, "1.0")
                w0, t0, d0 = shaper.wire_bytes(), time.monotonic(), shaper.bytes_down
                failed = []
                worker = threading.Thread(target=lambda: _try(update_device, failed, device,
                                                              url, UpdateRefused))
                worker.start()
                wait_until(lambda: shaper.bytes_down - d0 > tar // 2, 120, "half the release")
                before_cut = shaper.wire_bytes() - w0
                shaper.cut(mode="reset")
                worker.join(60)
                shaper.restore()
                update_device(device, url, "pi", "1.1")
                cut = {"wire_bytes": shaper.wire_bytes() - w0,
                       "seconds": round(time.monotonic() - t0, 2),
                       "first_attempt": failed[0] if failed else None,
                       "wire_bytes_before_the_cut": before_cut}
            finally:
                shaper.close()
        store.close()
        out["uncut"] = uncut
        out["cut_in_the_middle_resumed"] = cut
        out["cut_in_the_middle_from_zero_wire_bytes"] = before_cut + uncut["wire_bytes"]
        out["resumed_vs_from_zero"] = round(
            cut["wire_bytes"] / out["cut_in_the_middle_from_zero_wire_bytes"], 3)
        out["resumed_vs_uncut"] = round(cut["wire_bytes"] / uncut["wire_bytes"], 3)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _try(fn, failed, device, url, refused):
    try:
        fn(device, url, "pi", "1.1")
    except refused as exc:
        failed.append(exc.reason)


def _answers(url):
    try:
        with urllib.request.urlopen(url + "/open311/v2/services.json", timeout=2):
            return True
    except OSError:
        return False


MPY_CHECK = """
import time
from gridcore.signed_manifest import check

def load(p):
    f = open(p, "rb")
    d = f.read()
    f.close()
    return d

key, data, sig = load("/k"), load("/m"), load("/s")
best = None
for _ in range(ROUNDS):
    t0 = time.ticks_us()
    check(data, sig, [key], "mcu", NOW, "1.0")
    t = time.ticks_diff(time.ticks_us(), t0)
    best = t if best is None else min(best, t)
print(best)
"""


def mcu_update(rounds=5):
    """The sensor node's update on the WebAssembly port: install time and the check."""
    from gridlink.firmware.core import signed_manifest
    from gridlink.flash import simboard
    from gridlink.flash.build import build
    from gridlink.flash.flashing import flash_image
    from gridlink.flash.provision import Spec, provision
    from gridlink.fleet import mcu_manifest
    from gridlink.fleet.keys import init_keys, load_private, load_roles
    from gridlink.fleet.release import build_mcu
    from gridlink.fleet.repo import Repository
    from gridlink.gateway.service import Gateway, WebOptions

    from tests.support.mpy_wasm import run_micropython

    with tempfile.TemporaryDirectory(prefix="bench-ota-mcu-") as tmp:
        tmp = Path(tmp)
        init_keys(tmp / "keys")
        key = load_private(tmp / "keys" / load_roles(tmp / "keys")[1]["targets"][0])
        build_mcu(tmp / "r.tar", "2.0", signing_key=key)
        repo = Repository(tmp / "repo")
        repo.add_release(tmp / "keys", "mcu", "2.0", tmp / "r.tar")
        build(tmp / "img")
        image_bytes = sum(p.stat().st_size for p in (tmp / "img").rglob("*") if p.is_file())
        with Mosquitto(tmp / "broker") as broker:
            gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp}/gw.sqlite",
                         photos=tmp / "photos", web=WebOptions(update_repo=repo.path)).start()
            board = simboard.SimBoard(tmp / "board")
            try:
                gw.runtime.wait_ready(10)
                flash_image(tmp / "img", board.flash)
                provision(Spec("sn-0007", DISTRICT, "sensor-node", str(board.flash),
                               broker.url, object_id="41010601002000123"))
                cfg_path = board.flash / "gridlink" / "config.json"
                cfg = json.loads(cfg_path.read_text())
                cfg.update(ack_wait_s=2, console_window_s=0)
                cfg_path.write_text(json.dumps(cfg))
                (board.flash / "gridlink" / "update-keys").write_text(
                    mcu_manifest.public_bytes(key).hex() + "\n")
                board.set_pin(15, 1)
                plain = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    board.run()
                    plain.append(time.perf_counter() - t0)
                c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-director")
                c.connect("127.0.0.1", broker.port)
                c.loop_start()
                c.publish(topics.topic(DISTRICT, "sn-0007", "update"),
                          messages.encode(messages.make_update("R-bench", "mcu", "2.0")),
                          qos=1, retain=True).wait_for_publish(10)
                c.disconnect()
                c.loop_stop()
                t0 = time.perf_counter()
                out = board.run()
                install = time.perf_counter() - t0
                assert "installed in slot b" in out, out
                checked = [ln for ln in out.splitlines() if ln.startswith("manifest checked")]
                t0 = time.perf_counter()
                out = board.run()
                first_boot = time.perf_counter() - t0
                assert "update 2.0 kept" in out, out
                pieces = gw.chunks.served
            finally:
                board.close()
                gw.stop()
        with tarfile.open(tmp / "r.tar") as tar:
            manifest = tar.extractfile("manifest/manifest.txt").read()
            sig = tar.extractfile("manifest/manifest.sig").read()
    public = mcu_manifest.public_bytes(key)
    now = int(time.time())
    mpy_us = int(run_micropython(f"NOW = {now}\nROUNDS = {rounds}\n" + MPY_CHECK,
                                 files={"/k": public, "/m": manifest, "/s": sig}).split()[-1])
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        signed_manifest.check(manifest, sig, [public], "mcu", now, "1.0")
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pk = Ed25519PublicKey.from_public_bytes(public)
    digest, raw = hashlib.sha256(manifest).digest(), bytes.fromhex(sig.decode().strip())
    t0 = time.perf_counter()
    for _ in range(200):
        pk.verify(raw, digest)
    openssl = (time.perf_counter() - t0) / 200
    plain_s = min(plain)
    return {
        "image_bytes": image_bytes, "image_files": len(signed_manifest.parse(manifest)["files"]),
        "pieces_over_mqtt": pieces,
        "plain_wake_s": round(plain_s, 2),
        "install_wake_s": round(install, 2),
        "install_s": round(install - plain_s, 2),
        "first_boot_of_new_image_s": round(first_boot, 2),
        "manifest_check_in_the_install_wake": checked[0] if checked else None,
        "manifest_check_ms": {"micropython_wasm": round(mpy_us / 1000, 1),
                              "cpython_same_code": round(best * 1000, 1),
                              "cryptography_openssl": round(openssl * 1000, 3)},
        "micropython_vs_cpython": round(mpy_us / 1e6 / best, 2),
        "micropython_vs_openssl": round(mpy_us / 1e6 / openssl, 0),
        "note": "WebAssembly under Node on this machine: a Pico W or ESP32 is slower",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 devices instead of 100")
    parser.add_argument("--only", choices=("mcu",),
                        help="run only this part; keep the other figures of the last run")
    args = parser.parse_args(argv)
    if args.only == "mcu":
        results = json.loads(OUT.read_text()) if OUT.exists() else {}
        results["mcu_update_wasm"] = mcu_update()
        results["machine"] = {"cpus": os.cpu_count()}
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["mcu_update_wasm"], indent=1))
        return
    results = {"rollout": run(20 if args.quick else 100),
               "pi_update_256kbit": link_update(100_000 if args.quick else PI_RELEASE_BYTES),
               "mcu_update_wasm": mcu_update(),
               "machine": {"cpus": os.cpu_count()}}
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
