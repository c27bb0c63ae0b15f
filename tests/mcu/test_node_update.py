"""The sensor node updates itself as flashed (simulated board, MicroPython WebAssembly, real
Mosquitto, a real gateway serving the update repository): it takes a rollout's offer,
fetches the signed manifest and the image piece by piece over MQTT into its other image
directory, switches to it on trial, keeps it once it reaches the broker, and comes back to
the old image when the new one cannot run.  A refused release installs nothing and is in
the node's status; a power cut at any step leaves the old image or the new one."""

import json
import shutil
import tarfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from gridlink.firmware.core import abboot, messages
from gridlink.flash import simboard
from gridlink.fleet import mcu_manifest
from gridlink.fleet.keys import init_keys, load_private, load_roles
from gridlink.fleet.release import write_release_tar
from gridlink.fleet.repo import Repository
from gridlink.gateway.service import Gateway, WebOptions

from tests.mcu.test_node import PIN
from tests.support.fleet import tree_digest

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

DEVICE = "gridlink/v1/410106/sn-0007"
BROKEN_APP = b"raise ImportError('this image is broken')\n"


def release_folder(tmp, image, version, key, break_it=False):
    """image/ (the board image, or one whose program cannot be imported) and its signed
    manifest/, as ``gridlink fleet release build --kind mcu`` lays them out."""
    folder = Path(tmp) / f"release-{version}"
    shutil.copytree(image, folder / "image")
    if break_it:
        (folder / "image" / "lib" / "gridnode" / "app.mpy").unlink()
        (folder / "image" / "lib" / "gridnode" / "app.py").write_bytes(BROKEN_APP)
    manifest = mcu_manifest.make(folder / "image", "mcu", version)
    (folder / "manifest").mkdir()
    (folder / "manifest" / "manifest.txt").write_bytes(manifest)
    (folder / "manifest" / "manifest.sig").write_bytes(mcu_manifest.sign(manifest, key))
    tar = Path(tmp) / f"image-{version}.tar"
    write_release_tar(tar, "mcu", version, folder)
    return tar


@pytest.fixture(scope="module")
def repo(tmp_path_factory, image):
    """Releases 2.0 (the image as built) and 3.0 (a program that cannot be imported)."""
    tmp = tmp_path_factory.mktemp("ota")
    keydir = tmp / "keys"
    init_keys(keydir)
    key = load_private(keydir / load_roles(keydir)[1]["targets"][0])
    repository = Repository(tmp / "repo")
    repository.add_release(keydir, "mcu", "2.0", release_folder(tmp, image, "2.0", key))
    repository.add_release(keydir, "mcu", "3.0",
                           release_folder(tmp, image, "3.0", key, break_it=True))
    return repository, mcu_manifest.public_bytes(key)


@pytest.fixture
def gateway(broker, tmp_path, repo):
    gw = Gateway(broker=broker.url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                 photos=tmp_path / "photos", web=WebOptions(update_repo=repo[0].path)).start()
    assert gw.runtime.wait_ready(10)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def keyed(node, repo):
    (node.flash / "gridlink" / "update-keys").write_text(repo[1].hex() + "\n")
    node.set_pin(PIN, 1)   # upright: no report, a status-only wake
    return node


def offer(broker, version, kind="mcu"):
    """A rollout's offer, as the gateway publishes it: retained, QoS 1."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="director")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        payload = messages.encode(messages.make_update("R-test", kind, version))
        c.publish(DEVICE + "/update", payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def status(broker):
    """The node's retained status, as the broker holds it."""
    got = threading.Event()
    box = {}

    def on_message(_c, _u, msg):
        box["status"] = json.loads(msg.payload)
        got.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="reader")
    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    c.subscribe(DEVICE + "/status", 1)
    c.loop_start()
    try:
        assert got.wait(10), "no retained status"
    finally:
        c.disconnect()
        c.loop_stop()
    return box["status"]


def ab(board):
    """The boot selector's state on the board's flash (read with the core, as it does)."""
    return abboot.load(str(board.flash / "gridlink" / "ota"))


def running(out):
    """The image directory the boot selector chose, from what the board printed."""
    lines = [ln for ln in out.splitlines() if ln.startswith("gridnode: image ")]
    assert len(lines) == 1, out
    return lines[0].split()[-1]


def test_the_node_fetches_a_signed_release_over_mqtt_runs_it_on_trial_and_keeps_it(
        keyed, gateway, broker, image):
    offer(broker, "2.0")
    out = keyed.run()
    assert running(out) == "a"
    assert "update 2.0 installed in slot b on trial" in out, out
    assert keyed.last_sleep_ms == 1000                      # restart into it at once
    slot_b = keyed.flash / "gridlink" / "ota" / "b"
    assert tree_digest(image) == {k: v for k, v in tree_digest(slot_b).items()
                                  if k not in ("fetching", "version", "manifest.txt",
                                               "manifest.sig")}
    assert ab(keyed)["trial"] == {"slot": "b", "version": "2.0", "boots_left": 3,
                                  "previous": "a"}
    assert status(broker)["ota"]["pending"] == "2.0"
    assert gateway.chunks.served > 30                       # every file, piece by piece

    out = keyed.run()                                       # first boot of the trial
    assert running(out) == "b"
    assert "update 2.0 kept" in out
    assert ab(keyed)["trial"] is None and ab(keyed)["good"] == "b"
    assert status(broker)["ota"] == {"installed": "2.0", "slot": "b",
                                     "slots": {"a": None, "b": "2.0"}, "pending": None,
                                     "failed": None}
    out = keyed.run()                                       # and from then on
    assert running(out) == "b" and "update" not in out


def test_an_image_that_cannot_run_gives_way_to_the_old_one_when_its_boots_run_out(
        keyed, gateway, broker):
    offer(broker, "3.0")
    assert "update 3.0 installed in slot b on trial" in keyed.run()
    for _ in range(3):                                     # each boot fails on import
        out = keyed.run()
        assert "this image is broken" in out and keyed.last_sleep_ms == 60000
    out = keyed.run()                                       # boots spent: back to a
    assert running(out) == "a"
    st = status(broker)["ota"]
    assert (st["slot"], st["pending"]) == ("a", None)
    assert st["failed"] == {"version": "3.0", "reason": "not healthy within its boots"}
    assert "installed" not in keyed.run()                   # and it is not fetched again


@pytest.mark.parametrize("case", ["tampered", "wrong-key", "wrong-kind", "unknown"])
def test_a_refused_release_installs_nothing_and_the_status_says_why(
        case, keyed, gateway, broker, repo, tmp_path):
    version, kind = "2.0", "mcu"
    if case == "tampered":
        (target,) = (repo[0].targets_dir / "mcu").glob("*.image-2.0.tar")
        saved = target.read_bytes()
        with tarfile.open(target) as tar:
            member = tar.getmember("image/lib/gridnode/node.mpy")
        data = bytearray(saved)
        data[member.offset_data + 10] ^= 0x01
        target.write_bytes(bytes(data))
        gateway.chunks.files._members.clear()
    elif case == "wrong-key":
        (keyed.flash / "gridlink" / "update-keys").write_text("11" * 32 + "\n")
    elif case == "wrong-kind":
        kind = "pi"
    else:
        version = "9.9"
    try:
        offer(broker, version, kind)
        out = keyed.run()
    finally:
        if case == "tampered":
            target.write_bytes(saved)
    reason = {"tampered": "hash", "wrong-key": "signature", "wrong-kind": "wrong-kind",
              "unknown": "download"}[case]
    assert f"update refused {version} {reason}" in out, out
    st = ab(keyed)
    assert (st["slot"], st["trial"]) == ("a", None)
    assert not (keyed.flash / "gridlink" / "ota" / "b" / "version").exists()
    failed = status(broker)["ota"]["failed"]
    assert failed["version"] == version and failed["reason"].startswith(reason + ":")
    assert running(keyed.run()) == "a"                      # and it keeps running


# A boot as the board does it (simboard.BOOT), with the power cut at the ``at``-th time the
# update reaches step ``cut`` (gridnode.update's steps; "boot": right after the boot
# selector chose, before the program starts).  The cut ends the run where it is: what is
# on flash stays as it was written.
CUT_BOOT = """
import sys
sys.path.insert(0, "/.sim/lib")
import machine


class PowerCut(BaseException):
    pass


seen = [0]


def hook(name):
    if name == {cut!r}:
        seen[0] += 1
        if seen[0] == {at}:
            raise PowerCut(name)


g = {{"__name__": "boot"}}
exec(open("/main.py").read(), g)
try:
    slot = g["select"]()
    hook("boot")
    from gridnode import app, update

    update.STEP_HOOK = hook
    app.main(slot)
except machine.DeepSleep:
    pass
except PowerCut as e:
    print("POWER CUT at", e)
"""
# download (its start, mid-way), verified, every file checked, switched; then the first
# boot of the new image, its health check passed, and kept
BEFORE_SWITCH = [("begin", 1), ("piece", 15), ("verified", 1), ("unpacked", 1), ("switched", 1)]
AFTER_SWITCH = [("boot", 1), ("healthy", 1), ("good", 1)]


def pieces(repo):
    """How many pieces the whole release is."""
    (target,) = (repo.targets_dir / "mcu").glob("*.image-2.0.tar")
    with tarfile.open(target) as tar:
        return sum(-(-m.size // 4096) for m in tar if m.isfile()
                   and m.name.startswith(("image/", "manifest/manifest.")))


@pytest.mark.parametrize(("cut", "at"), BEFORE_SWITCH + AFTER_SWITCH)
def test_a_power_cut_at_any_step_leaves_the_old_image_or_the_new_one(
        cut, at, keyed, gateway, broker, image, repo):
    slot_b = keyed.flash / "gridlink" / "ota" / "b"
    assert running(keyed.run()) == "a"                      # before the offer
    outbox = tree_digest(keyed.flash / "gridlink" / "outbox")

    def runs_a_whole_image(slot):
        if slot == "b":
            got = tree_digest(slot_b)
            assert got["version"] == b"2.0"
            assert {k: got[k] for k in tree_digest(image)} == tree_digest(image)
        return slot

    offer(broker, "2.0")
    if (cut, at) in AFTER_SWITCH:
        assert "on trial" in keyed.run()
    out = keyed.run(CUT_BOOT.format(cut=cut, at=at))
    assert f"POWER CUT at {cut}" in out, out
    slots = [runs_a_whole_image(ab(keyed)["slot"])]         # what the next boot runs
    for _ in range(3):
        out = keyed.run()
        slots.append(runs_a_whole_image(running(out)))
        if ab(keyed)["good"] == "b":
            break
    # old until the switch, new from then on: never a slot without its whole image
    switched = slots.index("b")
    assert set(slots[:switched]) <= {"a"} and set(slots[switched:]) == {"b"}
    assert ab(keyed)["good"] == "b" and ab(keyed)["trial"] is None
    assert status(broker)["ota"]["installed"] == "2.0"
    assert tree_digest(keyed.flash / "gridlink" / "outbox") == outbox
    if cut == "piece":   # the cut download went on from the bytes on flash
        assert pieces(repo[0]) <= gateway.chunks.served <= pieces(repo[0]) + 2


def test_a_rollout_to_the_node_is_done_once_it_keeps_the_new_image(keyed, gateway, broker,
                                                                    repo):
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.rollouts import Rollouts
    from gridlink.gateway.update_repo import UpdateRepository

    from tests.support.waiting import wait_until

    gateway.store.migrate(extra=MIGRATIONS)
    director = Rollouts(gateway.store, publisher=gateway.runtime.publish,
                        repository=UpdateRepository(repo[0].path))
    gateway.runtime.on_commit.append(director.on_commit)
    keyed.run()                                             # the gateway learns the node
    wait_until(lambda: gateway.store.fetchall("SELECT device FROM devices"), 10, "the node")
    r = director.create(kind="mcu", version="2.0", target={"devices": ["sn-0007"]},
                        stages=[100])
    assert [d["outcome"] for d in r["devices"]] == ["offered"]
    assert "update 2.0 installed in slot b on trial" in keyed.run()
    assert director.get(r["id"])["state"] == "running"      # on trial: not yet
    assert "update 2.0 kept" in keyed.run()
    wait_until(lambda: director.get(r["id"])["state"] == "done", 10, "the rollout done")
    assert director.get(r["id"])["devices"][0]["outcome"] == "installed"


@pytest.mark.parametrize("payload", [b"not json", b'{"v":1,"kind":"mcu","version":"../x",'
                                                   b'"rollout":"R-1"}'])
def test_a_malformed_offer_is_ignored_and_the_node_goes_on(keyed, gateway, broker, payload):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="director")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(DEVICE + "/update", payload, qos=1, retain=True).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()
    out = keyed.run()
    assert "bad update offer" in out and keyed.last_sleep_ms == 300 * 1000
    assert not (keyed.flash / "gridlink" / "ota" / "offer.json").exists()
    assert status(broker)["ota"]["failed"] is None
