"""Code books and grid maps as artifacts on a Pi device: files a signed desired-state
document names by their sha256, fetched from the gateway when the device lacks them.

A file is fetched over the MQTT piece path a sensor node uses (``…/ota/get`` →
``…/ota/chunk``, protocol §3.9, file ``map/<sha256>`` or ``codebook/<sha256>``) into
``<data-dir>/artifacts/<sha256>.<ext>.part``, going on from the bytes there after a cut;
the whole file is fsynced, checked against the sha256 and renamed to
``artifacts/<sha256>.<ext>``, the folder fsynced.  Holding a file changes nothing: what
the device uses is what its applied document names (``desired.py``), so writing the
document is the one step that switches, and a power cut at any point leaves the old map
and book in use.  Refusals (``ConfigRefused``, the document refused whole): larger than
the device takes (reason ``map`` / ``codebook``), not on the gateway (the same), a file
that does not hash to the sha256 (``hash``).  No answer from the gateway is ``Unanswered``:
the document is tried again when it comes again (the retained copy, at the next
connection).
"""

import logging
import os
import queue
import time
from pathlib import Path

from ..core import fsio, otachunk
from ..core.checks import MessageError
from ..core.desired import ConfigRefused
from ..errors import DeviceError

log = logging.getLogger("gridlink.device.artifacts")

EXT = {"map": ".glgm", "codebook": ".json"}
LIMITS = {"map": 64 * 1024 * 1024, "codebook": 8 * 1024 * 1024}
HASH_FIELD = {"map": "map", "codebook": "codebook_sha256"}
STEPS = ("piece", "fetched", "installed")


class Unanswered(DeviceError):
    """The gateway did not answer a piece request (or the link is down): try again later."""


class Artifacts:
    """The artifacts folder of one device.  ``ask(request bytes)`` publishes a piece
    request (False when not connected); ``on_chunk(payload)`` takes the answers.
    ``after_step(name)`` is called after each step (``STEPS``)."""

    def __init__(self, data_dir, ask=None, limits=None, wait_s=5.0, tries=3):
        self.dir = Path(data_dir) / "artifacts"
        self.ask = ask
        self.limits = {**LIMITS, **(limits or {})}
        self.wait_s, self.tries = wait_s, tries
        self.after_step = None
        self._replies = queue.SimpleQueue()
        self._checked = {}        # path → the sha256 it was found to hash to (this process)

    def path(self, kind, sha):
        return self.dir / (sha + EXT[kind])

    def held(self, kind, sha):
        """The path of the file of ``kind`` with sha256 ``sha`` when it is here whole and
        hashes to it, else None."""
        path = self.path(kind, sha)
        if self._checked.get(path) == sha:
            return path if path.exists() else None
        try:
            got = fsio.file_sha256(path)
        except OSError:
            return None
        if got != sha:
            log.error("%s does not hash to its name: not used", path)
            return None
        self._checked[path] = sha
        return path

    def on_chunk(self, payload):
        try:
            self._replies.put(otachunk.parse_reply(payload))
        except MessageError as exc:
            log.warning("bad artifact piece: %s", exc)

    def _piece(self, kind, name, version, offset):
        request = otachunk.make_request(version, name, offset)
        for _ in range(self.tries):
            if self.ask is None or not self.ask(request):
                raise Unanswered("not connected: no piece can be asked for")
            deadline = time.monotonic() + self.wait_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    head, data = self._replies.get(timeout=left)
                except queue.Empty:
                    break
                if head.get("file") != name or head.get("offset") != offset:
                    continue                       # an answer to an earlier request
                if "error" in head:
                    raise ConfigRefused(kind, f"the gateway has no such {kind}: "
                                        f"{str(head['error'])[:160]}", kind)
                return head["size"], data
        raise Unanswered(f"no answer for {name} at {offset} after {self.tries} tries")

    def fetch(self, kind, sha, version=None):
        """Fetch, check and keep the file; its path.  ConfigRefused when it must be
        refused (nothing kept), Unanswered when the gateway did not answer (what came is
        kept in the .part file)."""
        final = self.path(kind, sha)
        if self.held(kind, sha):
            return final
        self.dir.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        name, most = f"{kind}/{sha}", self.limits[kind]
        have = part.stat().st_size if part.exists() else 0
        try:
            size = self._fetch_into(part, kind, name, version or sha[:12], have, most)
            got = fsio.file_sha256(part)
            if got != sha:
                raise ConfigRefused("hash", f"the {kind}'s file hashes to {got[:12]}…, not "
                                    f"the {sha[:12]}… the document names", HASH_FIELD[kind])
        except ConfigRefused:
            part.unlink(missing_ok=True)          # refused: nothing of it is kept
            raise
        os.replace(part, final)
        fsio.sync_dir(str(self.dir))
        self._checked[final] = sha
        self._step("installed")
        log.info("%s %s… fetched (%d bytes)", kind, sha[:12], size)
        return final

    def _fetch_into(self, part, kind, name, version, have, most):
        size = None
        with open(part, "ab") as f:
            while size is None or have < size:
                total, data = self._piece(kind, name, version, have)
                if total > most:
                    raise ConfigRefused(kind, f"the {kind} is {total} bytes, more than this "
                                        f"device takes ({most})", kind)
                if have > total or (size is not None and total != size) \
                        or (not data and have < total):
                    part.unlink(missing_ok=True)
                    raise Unanswered(f"the {kind} changed on the gateway while fetched")
                size = total
                f.write(data)
                f.flush()
                have += len(data)
                self._step("piece")
            os.fsync(f.fileno())
        self._step("fetched")
        return size

    def discard(self, kind, sha):
        """Remove a fetched file (and its .part) that turned out unusable."""
        final = self.path(kind, sha)
        for p in (final, final.with_name(final.name + ".part")):
            p.unlink(missing_ok=True)
        self._checked.pop(final, None)

    def prune(self, keep):
        """Remove the fetched files not in ``keep`` (paths) and leftover .part files of
        them: the ones no applied document names any more."""
        if not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            if p not in keep and p.suffix in (*EXT.values(), ".part"):
                p.unlink(missing_ok=True)
                self._checked.pop(p, None)

    def _step(self, name):
        if self.after_step is not None:
            self.after_step(name)

