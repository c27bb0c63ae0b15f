"""Pieces of sensor-node releases over MQTT (protocol §3.9): a node asks on
``…/ota/get`` for a piece of one file of an ``mcu`` release, and the gateway answers on
``…/ota/chunk`` from the release tar its update repository's signed targets list.

Requests are served on a thread of their own (reading a piece and publishing it never
holds up the broker link's reading thread); a bad request, an unknown release or file is
answered with an ``error`` so the node stops asking.  Nothing here is trusted by the node:
it checks the signed manifest and every file's hash itself.
"""

import json
import logging
import queue
import tarfile
import threading

from gridlink.firmware.core import otachunk
from gridlink.firmware.core import topics as core_topics
from gridlink.firmware.core.checks import MessageError

from .queue import NotFound

log = logging.getLogger(__name__)
_STOP = object()


class ReleaseFiles:
    """The members of the ``mcu`` releases of an update repository, read in pieces."""

    def __init__(self, repository):
        self.repository = repository
        self._members = {}      # (version, release file path) -> {name: (offset, size)}

    def _release(self, version):
        name = f"mcu/image-{version}.tar"
        newest = self.repository.newest_targets()
        if newest is None:
            raise NotFound("the update repository has no targets metadata")
        info = newest.get("targets", {}).get(name)
        if info is None:
            raise NotFound(f"no release mcu {version} in the update repository")
        sha = info.get("hashes", {}).get("sha256", "")
        return self.repository.repo_file("targets", f"{sha}.image-{version}.tar", "mcu")

    def piece(self, version, name, offset, length):
        """(size of the file, bytes from ``offset``); NotFound for what is not there."""
        path = self._release(version)
        key = (version, str(path))
        members = self._members.get(key)
        if members is None:
            with tarfile.open(path) as tar:
                members = {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
            self._members[key] = members
        if name not in members:
            raise NotFound(f"release mcu {version} has no file {name}")
        start, size = members[name]
        if offset > size:
            raise NotFound(f"{name} has {size} bytes, not {offset}")
        with open(path, "rb") as f:
            f.seek(start + offset)
            return size, f.read(min(length, size - offset))


class ChunkServer:
    """Answers ``…/ota/get`` requests with ``publish(topic, payload, qos, retain)``."""

    def __init__(self, repository, publish):
        self.files = ReleaseFiles(repository)
        self.publish = publish
        self._queue = queue.SimpleQueue()
        self._thread = None
        self.served = 0

    def start(self):
        self._thread = threading.Thread(target=self._run, name="ota-chunks", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None

    def submit(self, topic, payload):
        self._queue.put((topic, bytes(payload)))

    def _run(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self.handle(*item)
            except Exception:  # one bad request never stops the others
                log.exception("answering an update piece request failed")

    def handle(self, topic, payload):
        """Answer one request; returns the reply sent (None when there is nobody to
        answer: a topic outside the tree)."""
        try:
            district, device, leaf, _ = core_topics.parse_topic(topic)
        except MessageError:
            return None
        if leaf != "ota/get":
            return None
        try:
            request = otachunk.parse_request(payload)
        except MessageError as exc:
            try:
                guess = json.loads(payload)
                request = {"version": str(guess["version"]), "file": str(guess["file"]),
                           "offset": int(guess["offset"])}
            except (ValueError, KeyError, TypeError):
                log.info("update piece request from %s refused: %s", device, exc)
                return None
            reply = otachunk.make_reply(request, 0, error=f"bad request: {exc}")
        else:
            try:
                size, data = self.files.piece(request["version"], request["file"],
                                              request["offset"], request["length"])
                reply = otachunk.make_reply(request, size, data)
                self.served += 1
            except (NotFound, OSError, tarfile.TarError) as exc:
                reply = otachunk.make_reply(request, 0, error=str(exc))
        self.publish(core_topics.topic(district, device, "ota/chunk"), reply, qos=0,
                     retain=False)
        return reply
