"""The device's side of desired state: check a signed configuration document, apply it
all or nothing, keep the last refusal.

The applied document is kept as the signed wire message in ``<data-dir>/desired.json``
(with its version and digest); applying is: write ``desired.json.new`` and fsync it,
rename it over ``desired.json``, fsync the folder, then use the new profile.  A power cut
before the rename leaves the old document, after it the new one; at start the kept
message is verified again, so a file from anywhere but the centre is never used.  A
refused document changes nothing — nor does one that cannot be written (reason
``storage``: a full or read-only disk), nor one naming a broker the device could not
connect to (reason ``unreachable``: a new broker is tried before it is used); the refusal
is kept in ``desired-refused.json`` and reported in every status until a document is
applied.

A document may name a grid map (its file's sha256) and a code book (its id and its file's
sha256, ``codebook_sha256``) other than the provisioned ones: with ``artifacts`` (an
``artifacts.Artifacts``) the device fetches the files it lacks first (``needs`` holds the
document meanwhile, ``fetch`` fetches and offers it again), checks that the map is a map
(covering the terminal's position, for a fixed one) and the book is the book named, of the
device's standard, and checks the document's classes against that book.  What is in use
(``used``) follows the applied document, so writing it is the one step that switches.
"""

import json
import logging
import os
import re
from pathlib import Path

from ..core import desired
from ..core.codebook import CodeBook, CodeError, standard_key
from ..core.desired import ConfigRefused
from ..core.gridmap import GridMapError
from ..errors import DeviceError
from . import codebook
from . import profile as profiles
from .artifacts import Unanswered

log = logging.getLogger("gridlink.device.desired")

APPLIED = "desired.json"
REFUSED = "desired-refused.json"
STEPS = ("written", "renamed", "synced")
ARTIFACT_FIELDS = ("map", "codebook", "codebook_sha256")
NOTHING = {"map": None, "book": None}   # in use: the provisioned map and book


class Need(Exception):
    """A good document naming files the device lacks: ``wants`` [(kind, sha256)]."""

    def __init__(self, doc, wants):
        super().__init__(", ".join(f"{k} {s[:12]}" for k, s in wants))
        self.doc, self.wants = doc, wants


def read_keys(path):
    """The centre's public keys from a file: one 64-hex-digit Ed25519 key a line."""
    try:
        lines = Path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeError) as exc:
        raise DeviceError(f"centre key file {path}: {exc}") from None
    keys = []
    for line in lines:
        try:
            key = bytes.fromhex(line)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise DeviceError(f"centre key file {path}: {line[:20]!r} is not a 64-hex-digit "
                              "Ed25519 public key") from None
        keys.append(key)
    if not keys:
        raise DeviceError(f"centre key file {path} holds no key")
    return keys


class DesiredState:
    """The configuration applied on one device, over its provisioned ``base`` profile.

    ``keys``: the centre's public keys; ``map_sha256`` / ``codebook``: the provisioned
    map's sha256 and book's id; ``artifacts``: where other maps and books are fetched
    (without it a document naming others is refused, ``hash``).  ``used`` is what the
    applied document has in use besides: ``{"map": (path, GridMap, grid code of a fixed
    position or None) | None, "book": (path, CodeBook) | None}`` (None: the provisioned
    one).
    ``after_step(name)`` is called after each step of an apply (``STEPS``).
    """

    def __init__(self, data_dir, device, keys, base, *, map_sha256=None, codebook=None,
                 broker=None, try_broker=None, artifacts=None):
        self.dir = Path(data_dir)
        self.device, self.keys, self.base = device, list(keys or ()), base
        self.map_sha256, self.codebook = map_sha256, codebook
        self.artifacts = artifacts
        self.used = NOTHING
        self.needs = None      # (message, document, wants) waiting for its files
        self.provisioned_broker = broker
        self.try_broker = try_broker      # url → None when it accepts this device, else why
        self.schema = profiles.load_schema()
        self.profile = base
        self.doc = None
        self.sha256 = None
        self.refused = None
        self.after_step = None
        self._load()

    @property
    def version(self):
        return self.doc["version"] if self.doc else None

    @property
    def broker(self):
        """The broker to use: the applied document's, else the provisioned one."""
        return (self.doc or {}).get("broker") or self.provisioned_broker

    def status(self):
        """The status message's ``config``: the applied version and the last refusal."""
        return {"version": self.version, "refused": self.refused}

    def _load(self):
        leftover = self.dir / (APPLIED + ".new")
        if leftover.exists():                 # a cut before the rename: the old one stands
            leftover.unlink()
        try:
            self.refused = json.loads((self.dir / REFUSED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.refused = None
        try:
            kept = json.loads((self.dir / APPLIED).read_text(encoding="utf-8"))
            message = kept["message"].encode("utf-8")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            log.error("%s unreadable (%s): running the provisioned profile", APPLIED, exc)
            return
        try:
            doc, merged, used = self._judge(message, applied=None)
        except (ConfigRefused, Need) as exc:
            log.error("kept configuration refused (%s): running the provisioned profile", exc)
            return
        self.doc, self.profile, self.sha256 = doc, merged, kept.get("sha256")
        self.used = used

    def _judge(self, message, applied):
        """(document, profile, used) of a message; ConfigRefused, or Need when it names
        files still to fetch."""
        doc = desired.check(message, self.keys, self.device, applied=applied,
                            schema=self.schema, pattern=re.search)
        wants, used = [], dict(NOTHING)
        if doc["map"] is not None and doc["map"] != self.map_sha256:
            if self.artifacts is None:
                raise ConfigRefused("hash", f"the map {doc['map'][:12]}… is not the one this "
                                    f"device holds ({(self.map_sha256 or 'none')[:12]})", "map")
            path = self.artifacts.held("map", doc["map"])
            if path is None:
                wants.append(("map", doc["map"]))
            else:
                used["map"] = self._map(path, doc["map"])
        if doc["codebook"] is not None and doc["codebook"] != self.codebook:
            sha = doc.get("codebook_sha256")
            if self.artifacts is None or sha is None:
                raise ConfigRefused("hash", f"the code book {doc['codebook']} is not the one "
                                    f"this device holds ({self.codebook})", "codebook")
            standard = doc["codebook"].partition("@")[0]
            if standard_key(standard) != standard_key(self.base["standard"]):
                raise ConfigRefused("codebook", f"the code book {doc['codebook']} is not of "
                                    f"the standard this device reports under "
                                    f"({self.base['standard']})", "codebook")
            path = self.artifacts.held("codebook", sha)
            if path is None:
                wants.append(("codebook", sha))
            else:
                used["book"] = (path, self._book(path, sha, doc["codebook"]))
        if wants:
            raise Need(doc, wants)
        merged = desired.apply(self.base, doc["settings"])
        problems = profiles.validate({k: v for k, v in merged.items() if k != "_path"},
                                     f"config {doc['version']}",
                                     codebook=codebook.lookup_in(used["book"][1])
                                     if used["book"] else None)
        if problems:
            raise ConfigRefused("schema", problems[0].message,
                                _setting_of(problems[0].key, doc["settings"], self.base))
        return doc, profiles.with_defaults(merged), used

    def _map(self, path, sha):
        """(path, GridMap, the fixed position's grid code) of a fetched map; a map that
        cannot be read, or has no cell at a fixed terminal's position, is refused."""
        from ..maps import open_map

        try:
            gm = open_map(path, mapped=True)
        except GridMapError as exc:
            self.artifacts.discard("map", sha)
            raise ConfigRefused("map", f"not a grid map: {exc}", "map") from None
        grid = None
        if "position" in self.base:
            p = self.base["position"]
            grid = gm.locate(p["lon"], p["lat"])
            if grid is None:
                raise ConfigRefused("map", f"no cell of the map covers this terminal's "
                                    f"position ({p['lon']}, {p['lat']})", "map")
        return path, gm, grid

    def _book(self, path, sha, book_id):
        """The CodeBook of a fetched file, refused (``codebook``) unless it is ``book_id``."""
        try:
            book = CodeBook(json.loads(path.read_text(encoding="utf-8")))
            held = book.id
        except (OSError, ValueError, KeyError, TypeError, CodeError) as exc:
            self.artifacts.discard("codebook", sha)
            raise ConfigRefused("codebook", f"the file is not a code book ({exc})",
                                "codebook") from None
        if held != book_id:
            self.artifacts.discard("codebook", sha)
            raise ConfigRefused("codebook", f"the file is the code book {held}, not "
                                f"{book_id}", "codebook")
        return book

    def offer(self, message):
        """Check and apply a wire message; returns the new profile, or None when it was
        refused (kept in ``refused``) or is the document already applied."""
        message = bytes(message)
        try:
            _doc_bytes, claimed, _sig = desired.open_envelope(message)
        except ConfigRefused as exc:
            return self._refuse(exc, None)
        if claimed == self.sha256:
            return None                       # the retained copy of what runs: nothing to do
        try:
            doc, merged, used = self._judge(message, applied=self.version)
            self._try(doc)
        except Need as need:
            r = self.refused
            if r and r["version"] == need.doc["version"] and r["field"] in ARTIFACT_FIELDS:
                return None                   # what it names was refused: not fetched again
            self.needs = (message, need.doc, need.wants)
            log.info("configuration version %d names %s: fetching", need.doc["version"], need)
            return None
        except ConfigRefused as exc:
            return self._refuse(exc, desired.claimed_version(message))
        try:
            self._write(message, doc, claimed)
        except OSError as exc:              # a full or read-only disk: nothing changed
            (self.dir / (APPLIED + ".new")).unlink(missing_ok=True)
            why = ConfigRefused("storage", f"not kept on disk: {exc.strerror or exc}")
            return self._refuse(why, doc["version"])
        self.doc, self.profile, self.sha256 = doc, merged, claimed
        self.used = used
        if self.artifacts is not None:        # the files no applied document names any more
            self.artifacts.prune({u[0] for u in used.values() if u})
        if self.refused is not None:
            self.refused = None
            (self.dir / REFUSED).unlink(missing_ok=True)
        log.info("configuration version %d applied", doc["version"])
        return merged

    def fetch(self):
        """Fetch the files the waiting document (``needs``) names; the message to offer
        again, or None (refused, or the gateway did not answer: the document is taken
        again when it comes again)."""
        message, doc, wants = self.needs
        self.needs = None
        try:
            for kind, sha in wants:
                version = doc["codebook"].rpartition("@")[2] if kind == "codebook" else None
                self.artifacts.fetch(kind, sha, version)
        except ConfigRefused as exc:
            return self._refuse(exc, doc["version"])
        except (Unanswered, OSError) as exc:
            log.warning("configuration version %d waits: %s", doc["version"], exc)
            return None
        return message

    def _try(self, doc):
        """A new broker is taken only once a connection to it succeeds (a change that could
        cut the device off is tried first); ConfigRefused ``unreachable`` otherwise."""
        url = doc.get("broker")
        if url is None or url == self.broker:
            return
        if self.try_broker is None:
            raise ConfigRefused("schema", "this device cannot try a new broker", "broker")
        why = self.try_broker(url)
        if why is not None:
            raise ConfigRefused("unreachable", f"{why}; still using {self.broker}", "broker")

    def _write(self, message, doc, sha):
        body = json.dumps({"version": doc["version"], "sha256": sha,
                           "message": message.decode("utf-8")}, ensure_ascii=False).encode()
        new, final = self.dir / (APPLIED + ".new"), self.dir / APPLIED
        with open(new, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        self._step("written")
        os.replace(new, final)
        self._step("renamed")
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._step("synced")

    def _step(self, name):
        if self.after_step is not None:
            self.after_step(name)

    def _refuse(self, exc, version):
        self.refused = exc.as_dict(version)
        log.error("configuration%s refused: %s (still running version %s)",
                  f" {version}" if version else "", exc, self.version)
        try:
            (self.dir / REFUSED).write_text(json.dumps(self.refused, ensure_ascii=False))
        except OSError as err:
            log.error("refusal not kept on disk: %s", err)
        return None


def _setting_of(profile_key, settings, base):
    """The document's setting behind a profile problem's key (``buttons[1].code`` →
    ``settings.buttons.<name>.code``), or the profile key when none matches."""
    for name, (path, _node) in desired.SETTINGS.items():
        if name in settings and profile_key == ".".join(path):
            return "settings." + name
    if profile_key and profile_key.startswith("buttons[") and "]" in profile_key:
        index, _, rest = profile_key[len("buttons["):].partition("]")
        if index.isdigit() and int(index) < len(base.get("buttons", [])):
            return f"settings.buttons.{base['buttons'][int(index)]['name']}{rest}"
    return profile_key

