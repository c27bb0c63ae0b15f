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
"""

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from ..core import desired
from ..core.desired import ConfigRefused
from ..errors import DeviceError
from . import profile as profiles

log = logging.getLogger("gridlink.device.desired")

APPLIED = "desired.json"
REFUSED = "desired-refused.json"
STEPS = ("written", "renamed", "synced")


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


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


class DesiredState:
    """The configuration applied on one device, over its provisioned ``base`` profile.

    ``keys``: the centre's public keys; ``map_sha256`` / ``codebook``: what the device
    holds (a document naming others is refused, ``hash``).  ``after_step(name)`` is
    called after each step of an apply (``STEPS``).
    """

    def __init__(self, data_dir, device, keys, base, *, map_sha256=None, codebook=None,
                 broker=None, try_broker=None):
        self.dir = Path(data_dir)
        self.device, self.keys, self.base = device, list(keys or ()), base
        self.map_sha256, self.codebook = map_sha256, codebook
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
            doc, merged = self._judge(message, applied=None)
        except ConfigRefused as exc:
            log.error("kept configuration refused (%s): running the provisioned profile", exc)
            return
        self.doc, self.profile, self.sha256 = doc, merged, kept.get("sha256")

    def _judge(self, message, applied):
        doc = desired.check(message, self.keys, self.device, applied=applied,
                            schema=self.schema, pattern=re.search)
        if doc["map"] is not None and doc["map"] != self.map_sha256:
            raise ConfigRefused("hash", f"the map {doc['map'][:12]}… is not the one this device "
                                f"holds ({(self.map_sha256 or 'none')[:12]})", "map")
        if doc["codebook"] is not None and doc["codebook"] != self.codebook:
            raise ConfigRefused("hash", f"the code book {doc['codebook']} is not the one this "
                                f"device holds ({self.codebook})", "codebook")
        merged = desired.apply(self.base, doc["settings"])
        problems = profiles.validate({k: v for k, v in merged.items() if k != "_path"},
                                     f"config {doc['version']}")
        if problems:
            raise ConfigRefused("schema", problems[0].message,
                                _setting_of(problems[0].key, doc["settings"], self.base))
        return doc, profiles.with_defaults(merged)

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
            doc, merged = self._judge(message, applied=self.version)
            self._try(doc)
        except ConfigRefused as exc:
            return self._refuse(exc, desired.claimed_version(message))
        try:
            self._write(message, doc, claimed)
        except OSError as exc:              # a full or read-only disk: nothing changed
            (self.dir / (APPLIED + ".new")).unlink(missing_ok=True)
            why = ConfigRefused("storage", f"not kept on disk: {exc.strerror or exc}")
            return self._refuse(why, doc["version"])
        self.doc, self.profile, self.sha256 = doc, merged, claimed
        if self.refused is not None:
            self.refused = None
            (self.dir / REFUSED).unlink(missing_ok=True)
        log.info("configuration version %d applied", doc["version"])
        return merged

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
