"""Pieces of sensor-node releases over MQTT (protocol §3.9): a node asks on
``…/ota/get`` for a piece of one file of an ``mcu`` release, and the gateway answers on
``…/ota/chunk`` from the release tar its update repository's signed targets list.

Code books and grid maps are served the same way, by the sha256 of the file
(``codebook/<sha256>``, ``map/<sha256>``, named by a signed desired-state document): code
books from the shipped books and a folder of the gateway's own (``CodeBookFiles``: a slim,
event-only book for the nodes, a local book), compiled maps (``MapFiles``) from the
shipped maps and a folder of the gateway's own (a district's new map, a map cut to a
sensor node's area).  Pi devices and sensor nodes fetch them alike.

Requests are served on a thread of their own (reading a piece and publishing it never
holds up the broker link's reading thread); a bad request, an unknown release or file is
answered with an ``error`` so the node stops asking.  Nothing here is trusted by the node:
it checks the signed manifest and every file's hash itself.
"""

import hashlib
import json
import logging
import queue
import tarfile
import threading
import time
from pathlib import Path

from gridlink.firmware.core import otachunk
from gridlink.firmware.core import topics as core_topics
from gridlink.firmware.core.checks import MessageError
from gridlink.firmware.core.gridmap import GridMap, GridMapError

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


class ArtifactFiles:
    """Files matching ``pattern`` in some folders, by the sha256 of their bytes; the
    folders are read again when a file is asked for that is not known (at most once every
    ``RESCAN_S``), so a file put there is served without a restart."""

    pattern = "*"
    what = "file"
    RESCAN_S = 1.0

    def __init__(self, *folders):
        self.folders = folders
        self._scanned = 0.0
        self._lock = threading.Lock()    # the chunk thread and the API's read alike
        self._scan()

    def _scan(self):
        with self._lock:
            self._reset()
            by_sha = {}
            for folder in self.folders:
                for path in sorted(Path(folder).glob(self.pattern)):
                    data = path.read_bytes()
                    if self._take(path, data):
                        by_sha[hashlib.sha256(data).hexdigest()] = path
            self.by_sha = by_sha
            self._scanned = time.monotonic()

    def _rescan(self):
        """Read the folders again unless that was done within ``RESCAN_S``."""
        if time.monotonic() - self._scanned >= self.RESCAN_S:
            self._scan()

    def _reset(self):
        pass

    def _take(self, path, data):
        return True

    def has(self, sha):
        """Whether a file with sha256 ``sha`` is served (the folders read again if not)."""
        if sha not in self.by_sha:
            self._rescan()
        return sha in self.by_sha

    def piece(self, sha, offset, length):
        if sha not in self.by_sha:
            self._rescan()
        path = self.by_sha.get(sha)
        if path is None:
            raise NotFound(f"no {self.what} with sha256 {sha}")
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if offset > size:
                raise NotFound(f"the {self.what} has {size} bytes, not {offset}")
            f.seek(offset)
            return size, f.read(length)


class CodeBookFiles(ArtifactFiles):
    """Code book files (``*.json``) of some folders, by the sha256 of their bytes."""

    pattern = "*.json"
    what = "code book file"

    def _reset(self):
        self.by_id = {}     # book id -> [(file size, sha256)]
        self.by_standard = {}   # standard -> [sha256 of each book file of it]
        if not hasattr(self, "_parsed"):
            self._parsed = {}   # sha256 -> CodeBook (kept across scans: files do not change)

    def _files(self, book_id):
        if book_id not in self.by_id:
            self._rescan()
        with self._lock:
            return sorted(self.by_id.get(book_id, ()))

    def _take(self, path, data):
        try:
            book = json.loads(data)
            book_id = f"{book['standard']}@{book['version']}"
        except (ValueError, KeyError, TypeError):
            return True    # not a book (divisions.json): served by sha256 all the same
        digest = hashlib.sha256(data).hexdigest()
        self.by_id.setdefault(book_id, []).append((len(data), digest))
        self.by_standard.setdefault(book["standard"], []).append(digest)
        return True

    def of_standard(self, standard):
        """The code books served for ``standard`` (``CodeBook`` each; a file that is no
        readable book is left out): devices may be coded from any of them."""
        from gridlink.firmware.core.codebook import CodeBook, CodeError

        self._rescan()
        with self._lock:
            shas = list(self.by_standard.get(standard, ()))
        books = []
        for digest in shas:
            book = self._parsed.get(digest)
            if book is None:
                try:
                    book = CodeBook(json.loads(self.by_sha[digest].read_bytes()))
                except (OSError, KeyError, ValueError, TypeError, CodeError) as exc:
                    log.error("served code book %s is not readable as a book: %s",
                              digest[:12], exc)
                    continue
                self._parsed[digest] = book
            books.append(book)
        return books

    def for_node(self, book_id):
        """The sha256 of the smallest file of the book ``book_id`` (a slim copy, where
        there is one: a sensor node's memory is small), or None."""
        files = self._files(book_id)
        return files[0][1] if files else None

    def for_pi(self, book_id):
        """The sha256 of the largest (the whole) file of the book ``book_id``, or None."""
        files = self._files(book_id)
        return files[-1][1] if files else None


class MapFiles(ArtifactFiles):
    """Compiled grid maps (``*.glgm``) of some folders, by the sha256 of their bytes; a
    file that is not a readable map is logged and left out."""

    pattern = "*.glgm"
    what = "grid map"

    def _take(self, path, data):
        try:
            GridMap(data)
        except GridMapError as exc:
            log.error("grid map %s not served: %s", path, exc)
            return False
        return True


def shipped_books():
    """The folder of the code books shipped with gridlink (firmware/codebooks)."""
    from importlib import resources

    return Path(str(resources.files("gridlink.firmware.codebooks")))


def shipped_maps():
    """The folder of the grid maps shipped with gridlink (firmware/maps)."""
    from importlib import resources

    return Path(str(resources.files("gridlink.firmware.maps")))


class ChunkServer:
    """Answers ``…/ota/get`` requests with ``publish(topic, payload, qos, retain)``:
    pieces of releases (``repository``, or None), of code books (``books``) and of grid
    maps (``maps``)."""

    def __init__(self, repository, publish, books=None, maps=None):
        self.files = ReleaseFiles(repository) if repository is not None else None
        self.books = books or CodeBookFiles()
        self.maps = maps or MapFiles()
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

    def _piece(self, request):
        name = request["file"]
        if otachunk.is_artifact(name):
            kind, sha = name.split("/", 1)
            files = self.books if kind == "codebook" else self.maps
            return files.piece(sha, request["offset"], request["length"])
        if self.files is None:
            raise NotFound("this gateway serves no releases")
        return self.files.piece(request["version"], name, request["offset"],
                                request["length"])

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
                size, data = self._piece(request)
                reply = otachunk.make_reply(request, size, data)
                self.served += 1
            except (NotFound, OSError, tarfile.TarError) as exc:
                reply = otachunk.make_reply(request, 0, error=str(exc))
        self.publish(core_topics.topic(district, device, "ota/chunk"), reply, qos=0,
                     retain=False)
        return reply
