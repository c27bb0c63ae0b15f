"""A/B application slots on the Pi, with a boot counter and automatic rollback.

    DATA/ota/
      slots/a/, slots/b/    two complete releases (release.json + files, e.g. site/)
      current -> slots/a    the slot the unit starts; switched by an atomic rename
      state.json            {"good": slot, "trial": {...} | null, "failed": [...]}

An install unpacks the new release beside the running one (``slots/.b.new``), checks every
file against ``release.json``, renames it into place, records a *trial* (slot, version,
boots left, previous slot), then switches ``current``.  Every start calls ``boot()``: a
trial slot uses up one boot; when its boots run out before it ``mark_good()``s itself
(after its health check), ``current`` goes back to the previous slot.  A power cut at any
point leaves ``current`` naming a complete slot: the old release or the new one.

The device's data (outbox, sequence, photos) lives beside ``ota/`` and is never touched.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from ..core import fsio
from .update import UpdateError, UpdateRefused

SLOTS = ("a", "b")
RELEASE_FORMAT = "gridlink-release/1"
DEFAULT_BOOTS = 3


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _noop(_step):
    pass


def _sync_tree(root):
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        fsio.sync_dir(folder)


def unpack(tar_path, dest, kind, version, on_step=_noop):
    """Unpack release tar ``tar_path`` into new folder ``dest`` and check it against its
    ``release.json`` (kind, version, every file's sha256 and size, nothing else, no path
    outside ``dest``); returns the release dict.  UpdateRefused on any mismatch."""
    dest = Path(dest)
    name = Path(tar_path).name
    if not tarfile.is_tarfile(tar_path):
        raise UpdateRefused(name, "content", "not a release tar")
    with tarfile.open(tar_path, "r:") as tar:
        members = tar.getmembers()
        if not members or members[0].name != "release.json":
            raise UpdateRefused(name, "content", "release.json is not its first entry")
        try:
            release = json.loads(tar.extractfile(members[0]).read())
            listed = {f["path"]: f for f in release["files"]}
            ok = (release["format"] == RELEASE_FORMAT and release["kind"] == kind
                  and release["version"] == version)
        except (ValueError, KeyError, TypeError) as exc:
            raise UpdateRefused(name, "content", f"release.json unreadable ({exc})") from None
        if not ok:
            raise UpdateRefused(name, "content", f"release.json says {release.get('kind')} "
                                f"{release.get('version')}, expected {kind} {version}")
        names = [m.name for m in members[1:]]
        if sorted(names) != sorted(listed) or len(set(names)) != len(names):
            raise UpdateRefused(name, "content", "its files differ from release.json's list")
        dest.mkdir(parents=True)
        (dest / "release.json").write_bytes(tar.extractfile(members[0]).read())
        for m in members[1:]:
            parts = Path(m.name).parts
            if not m.isfile() or Path(m.name).is_absolute() or ".." in parts:
                raise UpdateRefused(name, "content", f"{m.name}: not a plain relative file")
            on_step(f"unpack {m.name}")
            out = dest.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with tar.extractfile(m) as src, open(out, "wb") as f:
                for block in iter(lambda s=src: s.read(1 << 16), b""):
                    h.update(block)
                    f.write(block)
            want = listed[m.name]
            if h.hexdigest() != want["sha256"] or out.stat().st_size != want["bytes"]:
                raise UpdateRefused(m.name, "hash", "content differs from release.json")
    return release


def prepare_pi(slot_dir):
    """Install the release's wheels into ``slot_dir/site`` (no index: only what it ships);
    a release that ships its ``site/`` installed already and no wheels needs nothing."""
    slot_dir = Path(slot_dir)
    if not (slot_dir / "wheels").is_dir():
        if (slot_dir / "site").is_dir():
            return
        raise UpdateError(f"{slot_dir}: neither wheels/ to install nor an installed site/")
    wheels = sorted((slot_dir / "wheels").glob("gridlink-*.whl"))
    if len(wheels) != 1:
        raise UpdateError(f"{slot_dir}: expected one gridlink wheel, found {len(wheels)}")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-compile",
         "--find-links", str(slot_dir / "wheels"), "--target", str(slot_dir / "site"),
         str(wheels[0]), *([] if len(list((slot_dir / "wheels").glob("*.whl"))) > 1
                           else ["--no-deps"])],
        capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise UpdateError(f"installing {wheels[0].name} failed: {last[-1] if last else ''}")


class Slots:
    """The A/B slots under ``ota_dir`` (DATA/ota)."""

    def __init__(self, ota_dir):
        self.dir = Path(ota_dir)
        self.slots_dir = self.dir / "slots"
        self.link = self.dir / "current"
        self.state_path = self.dir / "state.json"

    # -- reading ---------------------------------------------------------------------------

    def current(self):
        """The slot ``current`` names, or None."""
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        slot = Path(target).name
        return slot if slot in SLOTS else None

    def release(self, slot):
        """The release.json of a complete slot, or None."""
        try:
            return json.loads((self.slots_dir / slot / "release.json").read_text())
        except (OSError, ValueError):
            return None

    def installed_version(self):
        slot = self.current()
        release = self.release(slot) if slot else None
        return release["version"] if release else None

    def state(self):
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            state = {}
        state.setdefault("good", None)
        state.setdefault("trial", None)
        state.setdefault("failed", [])
        return state

    def wire_status(self):
        """The status message's ``ota`` (protocol §3.7): the running version and slot, each
        slot's version, the one on trial, the last failure; None without slots."""
        slot = self.current()
        if slot is None:
            return None
        state = self.state()
        trial = state["trial"]
        last = state["failed"][-1] if state["failed"] else None
        versions = {}
        for s in SLOTS:
            release = self.release(s)
            versions[s] = release["version"] if release else None
        return {"installed": versions[slot], "slot": slot, "slots": versions,
                "pending": trial["version"] if trial and trial["slot"] == slot else None,
                "failed": ({"version": last["version"], "reason": str(last["reason"])[:200]}
                           if last else None)}

    def last_failure(self, version):
        """The newest recorded failure of ``version`` (a dict), or None."""
        return next((f for f in reversed(self.state()["failed"])
                     if f.get("version") == version), None)

    def status(self):
        """What the device reports: installed, pending (on trial) and failed versions."""
        state = self.state()
        trial = state["trial"]
        return {"installed": self.installed_version(), "slot": self.current(),
                "pending": trial["version"] if trial else None,
                "boots_left": trial["boots_left"] if trial else None,
                "failed": state["failed"][-5:]}

    # -- writing ---------------------------------------------------------------------------

    def _write_state(self, state):
        self.dir.mkdir(parents=True, exist_ok=True)
        fsio.write_file(str(self.state_path), json.dumps(state, sort_keys=True).encode(),
                        str(self.dir))

    def _switch(self, slot):
        tmp = self.dir / "current.new"
        tmp.unlink(missing_ok=True)
        os.symlink(f"slots/{slot}", tmp)
        os.replace(tmp, self.link)
        fsio.sync_dir(str(self.dir))

    def adopt(self, release_dir):
        """First installation (provisioning): copy a checked release into slot a and make
        it current and good."""
        if self.current() is not None:
            raise UpdateError(f"{self.dir} already has slots")
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.slots_dir / ".a.new"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(release_dir, tmp, symlinks=False)
        _sync_tree(tmp)
        os.replace(tmp, self.slots_dir / "a")
        self._write_state({"good": "a", "trial": None, "failed": []})
        self._switch("a")

    def install(self, tar_path, kind, version, prepare=None, boots=DEFAULT_BOOTS,
                on_step=_noop):
        """Install a verified release tar into the other slot and switch to it on trial."""
        running = self.current()
        if running is None:
            raise UpdateError(f"{self.dir}: no current slot; provision the device first")
        state = self.state()
        if state["trial"] and state["trial"]["slot"] == running:
            raise UpdateError(f"version {state['trial']['version']} is still on trial; "
                              "install again once it is good or rolled back")
        target = "b" if running == "a" else "a"
        tmp = self.slots_dir / f".{target}.new"
        old = self.slots_dir / f".{target}.old"
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)
        on_step("unpack")
        try:
            unpack(tar_path, tmp, kind, version, on_step)
            if prepare:
                on_step("prepare")
                prepare(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _sync_tree(tmp)
        on_step("place")
        if (self.slots_dir / target).exists():
            os.replace(self.slots_dir / target, old)
        os.replace(tmp, self.slots_dir / target)
        fsio.sync_dir(str(self.slots_dir))
        shutil.rmtree(old, ignore_errors=True)
        on_step("trial")
        state["trial"] = {"slot": target, "version": version, "boots_left": boots,
                          "previous": running}
        self._write_state(state)
        on_step("switch")
        self._switch(target)
        return target

    def boot(self, on_step=_noop):
        """Called at every start, before the application: repairs a missing or broken
        ``current``, counts the trial's boots, rolls back when they ran out.  Returns
        the slot to start."""
        state = self.state()
        slot = self.current()
        if slot is None or self.release(slot) is None:
            fallback = next((s for s in (state["good"], *SLOTS) if s and self.release(s)), None)
            if fallback is None:
                raise UpdateError(f"{self.dir}: no complete slot to start")
            self._switch(fallback)
            slot = fallback
        trial = state["trial"]
        if trial and trial["slot"] != slot:
            state["trial"] = None                # the switch never happened: old runs
            self._write_state(state)
        elif trial and trial["boots_left"] <= 0:
            return self.rollback("health check not passed within its boots", on_step)
        elif trial:
            on_step("boot")
            trial["boots_left"] -= 1
            self._write_state(state)
        return slot

    def record_failure(self, version, reason, file=None):
        """Remember a refused or failed version (the last 20) for the device's status."""
        state = self.state()
        entry = {"version": version, "reason": reason, **({"file": file} if file else {})}
        state["failed"] = [*state["failed"][-19:], entry]
        self._write_state(state)

    def rollback(self, reason, on_step=_noop):
        """Go back to the trial's previous slot; records the trial's version as failed."""
        state = self.state()
        trial = state["trial"]
        if not trial:
            raise UpdateError("no trial to roll back")
        on_step("rollback")
        state["failed"] = [*state["failed"][-19:],
                           {"version": trial["version"], "reason": reason}]
        state["trial"] = None
        self._write_state(state)
        self._switch(trial["previous"])
        return trial["previous"]

    def mark_good(self, on_step=_noop):
        """The running trial passed its health check: it stays."""
        state = self.state()
        trial = state["trial"]
        slot = self.current()
        if not trial or trial["slot"] != slot:
            return False
        on_step("good")
        state["good"], state["trial"] = slot, None
        self._write_state(state)
        return True


def health_check(checks, deadline):
    """Run every check (name → callable; a check passes when it returns without raising
    and not False) within ``deadline`` seconds in all; returns [(name, problem)]."""
    problems = []
    end = time.monotonic() + deadline
    for name, check in checks.items():
        result = {}

        def run(check=check, result=result):
            try:
                result["ok"] = check() is not False
                if not result["ok"]:
                    result["error"] = "returned False"
            except Exception as exc:
                result["ok"], result["error"] = False, f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=run, daemon=True, name=f"health-{name}")
        worker.start()
        worker.join(max(0.0, end - time.monotonic()))
        if worker.is_alive():
            problems.append((name, f"no answer within the {deadline:g} s deadline"))
        elif not result["ok"]:
            problems.append((name, result["error"]))
    return problems


def commit_if_healthy(slots, checks, deadline, on_step=_noop):
    """The new version's first-boot rule: healthy within ``deadline`` → mark good;
    otherwise leave the trial (its boots run out, the previous slot comes back).
    Returns the problems ([] when good)."""
    on_step("health")
    problems = health_check(checks, deadline)
    if not problems:
        slots.mark_good(on_step)
    return problems
