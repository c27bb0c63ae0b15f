# The node's desired state: the centre's signed configuration document (.../config,
# retained), checked by the core (gridcore.desired: signature, device, version, schema)
# and kept on flash new-then-rename, so a power cut leaves the old one or the new one.
# A node has one setting a centre may change: status_interval_s, its wake interval; a
# document setting anything else, or naming a map (a node holds none), is refused whole.
# A document naming another code book is applied once that book is held: with the sha256
# of its file (codebook_sha256) the node fetches it first (gridnode/books.py: ``wanted``
# holds the document meanwhile); without, it is refused.  The centre's keys:
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


class NeedBook(ConfigRefused):
    # the document is good but names a book to fetch first (a kept one that does: not held)
    def __init__(self, doc):
        super().__init__("codebook", "the code book " + doc["codebook"] + " is not held",
                         "codebook")
        self.doc = doc


class Desired:
    def __init__(self, data_dir, device, keys, codebook=None):
        self.dir = data_dir.rstrip("/") or "/"
        self.path = fsio.join(self.dir, "desired.json")
        self.refused_path = fsio.join(self.dir, "desired-refused.json")
        self.device, self.keys, self.codebook = device, keys, codebook
        self.doc = None
        self.sha = None
        self.refused = None
        self.changed = False
        self.wanted = None   # (message, code book id, sha256): applied once the book is held
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
        if doc["map"] is not None:
            raise ConfigRefused("hash", "a sensor node holds no grid map", "map")
        if "broker" in doc:
            raise ConfigRefused("schema", "a sensor node's broker changes only when it is "
                                "provisioned again", "broker")
        if doc["codebook"] is not None and doc["codebook"] != self.codebook:
            if "codebook_sha256" in doc:
                raise NeedBook(doc)
            raise ConfigRefused("hash", "the code book " + doc["codebook"]
                                + " is not the one this node holds", "codebook")
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
        except NeedBook as e:
            doc = e.doc
            r = self.refused
            if r and r["version"] == doc["version"] and r["field"] in ("codebook",
                                                                       "codebook_sha256"):
                return False   # its book was refused: not fetched again
            self.wanted = (message, doc["codebook"], doc["codebook_sha256"])
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

    def refuse_book(self, e, message):
        # the book a document named could not be installed: the document is refused
        return self._refuse(e, desired.claimed_version(message))

    def _refuse(self, e, version):
        self.refused = e.as_dict(version)
        self.changed = True
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            fsio.write_file(self.refused_path, json.dumps(self.refused).encode(), self.dir)
        except OSError:
            pass   # reported in this wake's status all the same
        return False
