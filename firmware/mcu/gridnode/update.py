# The node's updates: take a rollout's offer (…/update), fetch the release's signed
# manifest and image piece by piece over MQTT (…/ota/get → …/ota/chunk, protocol §3.9)
# into the image directory it is not running, check the signature (gridcore.
# signed_manifest, the targets keys in /gridlink/update-keys) before any image file and
# every file's hash after it, then switch to it on trial (gridcore.abboot).  main.py's boot
# selector runs the trial; its first wake that reaches the broker keeps it (mark_good),
# otherwise its boots run out and the previous image comes back.
#
# On flash (OTA = /gridlink/ota):  ab.json (abboot), a/ and b/ (image directories: lib/…,
# manifest.txt, manifest.sig, version once complete), offer.json.
# A download cut at any point goes on from the bytes on flash at the next wake: a file
# shorter than the manifest says is continued, a whole one that does not hash is fetched
# again.  A power cut before begin_trial leaves the old image running; after it, the new.
import json
import os
import time

from gridcore import abboot, fsio, messages, otachunk, signed_manifest
from gridcore.errors import CoreError
from gridcore.signed_manifest import ManifestError

KIND = "mcu"
PIECE = 4096
REPLY_WAIT_S = 5
TRIES = 3
PIECES_PER_WAKE = 400   # bounds a wake's time awake: the rest follows at the next wake
MANIFEST = ("manifest.txt", "manifest.sig")
STEP_HOOK = None   # tests: called with each step's name (a power cut there)


class Stop(Exception):
    # The link did not answer: try again at the next wake (nothing is recorded).
    pass


def rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        p = path + "/" + name
        try:
            os.listdir(p)
            rmtree(p)
        except OSError:
            os.remove(p)
    os.rmdir(path)


class Updater:
    def __init__(self, root, keys, log=print, clock=None):
        self.root = root.rstrip("/")
        self.keys = keys
        self.log = log
        self.clock = clock            # () -> Unix seconds or None (the RTC was never set)
        fsio.makedirs(self.root)
        self.offer = self._read("offer.json")
        self.reply = None
        self.changed = False
        self.fetched = 0              # bytes fetched in this wake

    # -- what is on flash
    def _read(self, name):
        try:
            return json.loads(fsio.read_file(fsio.join(self.root, name)) or b"null")
        except ValueError:
            return None

    def _write(self, name, obj):
        fsio.write_file(fsio.join(self.root, name), json.dumps(obj).encode(), self.root)

    def _step(self, name):
        if STEP_HOOK is not None:
            STEP_HOOK(name)

    def state(self):
        return abboot.load(self.root)

    def slot_version(self, slot):
        data = fsio.read_file(self.root + "/" + slot + "/version")
        return data.decode().strip() if data else None

    def installed(self):
        return self.slot_version(self.state()["slot"])

    def status(self):
        # The status's ota (protocol §3.7): as a Pi reports it.
        st = self.state()
        failed = st["failed"][-1] if st["failed"] else None
        return {"installed": self.slot_version(st["slot"]), "slot": st["slot"],
                "slots": {"a": self.slot_version("a"), "b": self.slot_version("b")},
                "pending": st["trial"]["version"] if st["trial"] else None,
                "failed": failed}

    def on_trial(self):
        st = self.state()
        return bool(st["trial"]) and st["trial"]["slot"] == st["slot"]

    def mark_good(self):
        # The running trial reached the broker: it stays.
        self._step("healthy")
        if abboot.mark_good(self.root):
            self._step("good")
            self.changed = True
            self.log("update", self.installed(), "kept")
            return True
        return False

    # -- messages
    def on_offer(self, msg):
        if not msg:
            self.offer = None       # the rollout was aborted
            fsio.remove(fsio.join(self.root, "offer.json"))
            return
        try:
            offer = messages.decode(bytes(msg), messages.validate_update, 1024)
        except CoreError as e:
            self.log("bad update offer", e)
            return
        offer = {"version": offer["version"], "kind": offer["kind"]}
        if offer != self.offer:    # the retained copy of what is kept: not written again
            self.offer = offer
            self._write("offer.json", offer)

    def on_chunk(self, msg):
        try:
            self.reply = otachunk.parse_reply(msg)
        except Exception as e:
            self.log("bad update piece", e)

    def _refuse(self, version, reason, message):
        text = message if message.startswith(reason + ":") else reason + ": " + message
        abboot.record_failure(self.root, version, text[:200])
        self.changed = True
        self.log("update refused", version, reason, message)

    def wanted(self):
        # The offered version, when it should be fetched now.
        offer = self.offer
        if not offer:
            return None
        version = offer["version"]
        if version == self.installed():
            return None
        if any(f["version"] == version for f in self.state()["failed"]):
            return None
        if self.state()["trial"]:
            return None   # the fallback image must stay until the trial is decided
        if offer["kind"] != KIND:
            self._refuse(version, "wrong-kind", "the release is for " + str(offer["kind"])
                         + ", this device is " + KIND)
            return None
        return version

    # -- fetching
    def _piece(self, client, version, name, offset):
        want = otachunk.make_request(version, name, offset, PIECE)
        for _ in range(TRIES):
            self.reply = None
            try:
                client.publish(self.topic_get, want, qos=0)
            except OSError as e:   # the link, not the flash: the next wake goes on
                raise Stop("link lost: " + str(e))  # noqa: B904
            waited = 0
            while waited < REPLY_WAIT_S:
                try:
                    if not client.check_msg(1):
                        waited += 1
                except OSError as e:
                    raise Stop("link lost: " + str(e))  # noqa: B904
                got = self.reply
                if got and got[0].get("file") == name and got[0].get("offset") == offset \
                        and got[0].get("version") == version:
                    head, data = got
                    if "error" in head:
                        raise ManifestError("download", name + ": " + str(head["error"]))
                    return head["size"], data
        raise Stop(name)

    def _fetch(self, client, version, name, path, size=None):
        # The file at ``path`` made whole from the gateway's pieces, from what it holds.
        have = fsio.size(path) if fsio.exists(path) else 0
        if size is not None and have > size:
            os.remove(path)
            have = 0
        while size is None or have < size:
            if self.pieces >= PIECES_PER_WAKE:
                raise Stop("enough for one wake")
            total, data = self._piece(client, version, name, have)
            self.pieces += 1
            if size is None:
                size = total
            if total != size or (not data and have < size):
                raise ManifestError("download", name + " changed on the gateway")
            with open(path, "ab") as f:
                f.write(data)
            have += len(data)
            self.fetched += len(data)
            self._step("piece")
        return size

    def run(self, client, topic_get):
        # Fetch, check and switch to the offered release, as far as this wake goes.
        # True when a new image is on trial (the node should restart into it).
        version = self.wanted()
        if version is None:
            return False
        now = self.clock() if self.clock else None
        if now is None:
            self.log("update waits for the clock")
            return False
        self.topic_get = topic_get
        self.pieces = 0
        st = self.state()
        other = "b" if st["slot"] == "a" else "a"
        slot = self.root + "/" + other
        try:
            return self._install(client, version, slot, other, now)
        except Stop as e:
            self.log("update", version, "continues next wake:", e)
            return False
        except ManifestError as e:
            if e.reason in ("hash", "download"):
                rmtree(slot)   # the next attempt starts afresh
            self._refuse(version, e.reason, str(e))
            return False
        except OSError as e:   # no room on flash (or the flash failed): keep nothing
            rmtree(slot)
            self._refuse(version, "disk", "writing the image failed: " + str(e))
            return False

    def _install(self, client, version, slot, other, now):
        marker = fsio.read_file(slot + "/fetching")
        if marker is None or marker.decode() != version:
            rmtree(slot)            # another version's files, or an old image
            fsio.makedirs(slot)
            fsio.write_file(slot + "/fetching", version.encode(), slot)
        self._step("begin")
        for name in MANIFEST:
            self._fetch(client, version, "manifest/" + name, slot + "/" + name)
        manifest_bytes = fsio.read_file(slot + "/manifest.txt")
        sig = fsio.read_file(slot + "/manifest.sig")
        t0 = time.ticks_ms() if hasattr(time, "ticks_ms") else None
        try:
            manifest = signed_manifest.check(manifest_bytes, sig, self.keys, KIND, now,
                                             self.installed())
        except ManifestError as e:
            rmtree(slot)
            self._refuse(version, e.reason, str(e))
            return False
        if manifest["version"] != version:
            rmtree(slot)
            self._refuse(version, "content", "the manifest is for " + manifest["version"])
            return False
        if t0 is not None:
            self.log("manifest checked in", time.ticks_diff(time.ticks_ms(), t0), "ms")
        self._step("verified")
        for path, sha, size in manifest["files"]:
            local = slot + "/" + path
            fsio.makedirs(local.rpartition("/")[0])
            if fsio.exists(local) and fsio.size(local) == size:
                try:
                    signed_manifest.check_file(local, sha, size)
                    continue
                except ManifestError:
                    os.remove(local)
            self._fetch(client, version, "image/" + path, local, size)
            signed_manifest.check_file(local, sha, size)
        self._step("unpacked")
        fsio.write_file(slot + "/version", version.encode(), slot)
        self._step("complete")
        abboot.begin_trial(self.root, version)
        self._step("switched")
        self.changed = True
        self.log("update", version, "installed in slot", other, "on trial")
        return True
