# The node's desired state: the centre's signed configuration document (.../config,
# retained), checked by the core (gridcore.desired: signature, device, version, schema)
# and kept on flash new-then-rename, so a power cut leaves the old one or the new one.
# A node has one setting a centre may change: status_interval_s, its wake interval; a
# document setting anything else is refused whole.  A document naming a grid map the node
# does not hold (by its sha256), or another code book with the sha256 of its file
# (codebook_sha256), is applied once the node holds them: it fetches them first
# (gridnode/maps.py, gridnode/books.py: ``wanted`` holds the document meanwhile); another
# code book without codebook_sha256 is refused.  The centre's keys:
# /gridlink/config-keys, 64 hex digits a line; without them the node does not subscribe.
import binascii
import json

from gridcore import desired, fsio
from gridcore.desired import ConfigRefused

SCHEMA = {"properties": {"status_interval_s": {"type": "number", "minimum": 5,
                                               "maximum": 3600}}}


def read_keys(path):
    data = fsio.read_file(path)
    out = []
    for line in (data or b"").decode().split():
        try:
            key = binascii.unhexlify(line)
        except ValueError:
            continue
        if len(key) == 32:
            out.append(key)
    return out


class Need(ConfigRefused):
    # the document is good but names artifacts to fetch first, ``wants`` ("map",
    # "codebook"); a kept document that does: they are not held
    def __init__(self, doc, wants):
        super().__init__(wants[0], "the " + " and ".join(wants) + " named are not held",
                         wants[0])
        self.doc, self.wants = doc, wants


class Desired:
    def __init__(self, data_dir, device, keys, codebook=None, map_sha=None):
        self.dir = data_dir.rstrip("/") or "/"
        self.path = fsio.join(self.dir, "desired.json")
        self.refused_path = fsio.join(self.dir, "desired-refused.json")
        self.device, self.keys, self.codebook, self.map = device, keys, codebook, map_sha
        self.doc = None
        self.sha = None
        self.refused = None
        self.changed = False
        self.wanted = None   # (message, document, wants): applied once they are held
        try:
            self.refused = json.loads(fsio.read_file(self.refused_path) or b"null")
        except ValueError:
            self.refused = None
        try:
            kept = json.loads(fsio.read_file(self.path) or b"null")
            if kept:
                self.doc = self._judge(kept["message"].encode(), None)
                self.sha = kept["sha256"]
        except (ValueError, KeyError, TypeError, ConfigRefused):
            self.doc = None   # a kept file not from the centre: the provisioned config

    @property
    def version(self):
        return self.doc["version"] if self.doc else None

    def status(self):
        return {"version": self.version, "refused": self.refused}

    def interval_s(self, default):
        return (self.doc["settings"] if self.doc else {}).get("status_interval_s", default)

    def _judge(self, message, applied):
        doc = desired.check(message, self.keys, self.device, applied, SCHEMA)
        if "broker" in doc:
            raise ConfigRefused("schema", "a sensor node's broker changes only when it is "
                                "provisioned again", "broker")
        wants = []
        if doc["codebook"] is not None and doc["codebook"] != self.codebook:
            if "codebook_sha256" not in doc:
                raise ConfigRefused("hash", "the code book " + doc["codebook"]
                                    + " is not the one this node holds", "codebook")
            wants.append("codebook")
        if doc["map"] is not None and doc["map"] != self.map:
            wants.append("map")
        if wants:
            raise Need(doc, wants)
        return doc

    def offer(self, message):
        # Check and apply a wire message; True when applied.
        try:
            _, claimed, _ = desired.open_envelope(message)
        except ConfigRefused as e:
            return self._refuse(e, None)
        if claimed == self.sha:
            return False   # the retained copy of what runs
        try:
            doc = self._judge(message, self.version)
        except Need as e:
            doc = e.doc
            r = self.refused
            if r and r["version"] == doc["version"] and r["field"] in ("codebook",
                                                                       "codebook_sha256",
                                                                       "map"):
                return False   # what it names was refused: not fetched again
            self.wanted = (message, doc, e.wants)
            return False
        except ConfigRefused as e:
            return self._refuse(e, desired.claimed_version(message))
        body = json.dumps({"version": doc["version"], "sha256": claimed,
                           "message": bytes(message).decode()})
        try:
            fsio.write_file(self.path, body.encode(), self.dir)
        except OSError as e:
            return self._refuse(ConfigRefused("storage", "not kept on flash: " + str(e)),
                                doc["version"])
        self.doc, self.sha, self.changed = doc, claimed, True
        if self.refused is not None:
            self.refused = None
            fsio.remove(self.refused_path)
        return True

    def refuse_fetched(self, e, message):
        # a book or map a document named could not be installed: the document is refused
        return self._refuse(e, desired.claimed_version(message))

    def _refuse(self, e, version):
        self.refused = e.as_dict(version)
        self.changed = True
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            fsio.write_file(self.refused_path, json.dumps(self.refused).encode(), self.dir)
        except OSError:
            pass   # reported in this wake's status all the same
        return False
