"""The update repository: TUF metadata (python-tuf's Metadata API) and the release files.

    REPO/
      metadata/1.root.json, 2.root.json …   every root version (devices walk the chain)
      metadata/root.json                     the newest root (for the tools)
      metadata/N.targets.json                the releases: name → length, sha256, custom
      metadata/N.snapshot.json               which targets version is current
      metadata/timestamp.json                which snapshot is current; short-lived
      targets/pi/<sha256>.gridlink-V.tar     release files, named by their hash
      targets/mcu/<sha256>.image-V.tar

Consistent snapshots: a release is published by writing its file, then new targets and
snapshot versions, and last the timestamp (renamed into place), so a device reading
during a publication sees the old view or the new one, never a mix.
"""

import copy
import datetime
import hashlib
import os
import re
import shutil
from pathlib import Path

from . import keys
from .errors import FleetError

KINDS = {"pi": "gridlink", "mcu": "image"}
# How long each role's signature stays valid.
EXPIRY = {
    "root": datetime.timedelta(days=365),
    "targets": datetime.timedelta(days=90),
    "snapshot": datetime.timedelta(days=7),
    "timestamp": datetime.timedelta(days=1),
}
VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")


def target_name(kind, version):
    """The target path of release ``version`` for device ``kind`` (e.g. pi/gridlink-1.2.tar)."""
    if kind not in KINDS:
        raise FleetError(f"unknown device kind {kind!r}; one of {', '.join(KINDS)}")
    check_version(version)
    return f"{kind}/{KINDS[kind]}-{version}.tar"


def check_version(version):
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise FleetError(f"version {version!r} is not dotted numbers like 1.4 or 2.0.3")
    return version


def _now():
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _tuf():
    try:
        from tuf.api import metadata
        from tuf.api.serialization.json import JSONSerializer
    except ImportError:
        raise FleetError("the Python package 'tuf' is not installed; "
                         "pip install 'gridlink[fleet]'") from None
    return metadata, JSONSerializer


class Repository:
    """One update repository folder, opened for publishing."""

    def __init__(self, path):
        self.path = Path(path)
        self.meta_dir = self.path / "metadata"
        self.targets_dir = self.path / "targets"

    # -- reading ---------------------------------------------------------------------------

    def exists(self):
        return (self.meta_dir / "1.root.json").exists()

    def _latest(self, role):
        versions = [int(p.name.split(".")[0]) for p in self.meta_dir.glob(f"*.{role}.json")
                    if p.name.split(".")[0].isdigit()]
        if not versions:
            raise FleetError(f"{self.meta_dir}: no {role} metadata; not an update repository")
        return self.meta_dir / f"{max(versions)}.{role}.json"

    def load(self, role):
        md, _ = _tuf()
        path = self.meta_dir / "timestamp.json" if role == "timestamp" else self._latest(role)
        try:
            return md.Metadata.from_file(str(path))
        except FileNotFoundError:
            raise FleetError(f"{path}: missing; not an update repository") from None
        except Exception as exc:
            raise FleetError(f"{path}: unreadable metadata ({exc})") from None

    def releases(self):
        """{target name: TargetFile} of every release in the newest targets metadata."""
        return dict(self.load("targets").signed.targets)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, metadata, name):
        _, serializer = _tuf()
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        final = self.meta_dir / name
        tmp = final.with_name(f".{name}.tmp")
        metadata.to_file(str(tmp), serializer(compact=False))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def _sign(self, metadata, signers, threshold=1):
        if len(signers) < threshold:
            raise FleetError(f"{metadata.signed.type} needs {threshold} signatures, only "
                             f"{len(signers)} key(s) present")
        metadata.signatures.clear()
        for s in signers:
            metadata.sign(s, append=True)

    def init(self, keydir, now=None):
        """Make a new repository: root version 1 signed by a threshold of root keys, and
        empty targets, snapshot and timestamp."""
        md, _ = _tuf()
        if self.exists():
            raise FleetError(f"{self.path} already holds an update repository")
        if self.path.exists() and any(p for p in self.path.iterdir()):
            raise FleetError(f"{self.path} exists and is not empty: give a new folder")
        now = now or _now()
        threshold, _files = keys.load_roles(keydir)
        root_signers = keys.role_signers(keydir, "root")
        root = md.Metadata(md.Root(expires=now + EXPIRY["root"]))
        for s in root_signers:
            root.signed.add_key(s.public_key, "root")
        root.signed.roles["root"].threshold = threshold
        for role in keys.ONLINE_ROLES:
            (s,) = keys.role_signers(keydir, role)
            root.signed.add_key(s.public_key, role)
        self._sign(root, root_signers, threshold)
        self._write(root, "1.root.json")
        self._write(root, "root.json")
        targets = md.Metadata(md.Targets(expires=now + EXPIRY["targets"]))
        self.publish(keydir, targets, now)

    def publish(self, keydir, targets, now=None, expires=None, sign_targets=True):
        """Sign (unless ``sign_targets`` is false: signed already) and write ``targets``,
        then a snapshot naming it, then the timestamp."""
        md, _ = _tuf()
        now = now or _now()
        expires = expires or {}
        if sign_targets:
            self._sign(targets, keys.role_signers(keydir, "targets"))
        self._write(targets, f"{targets.signed.version}.targets.json")
        snap_version = (self.load("snapshot").signed.version + 1
                        if list(self.meta_dir.glob("*.snapshot.json")) else 1)
        snapshot = md.Metadata(md.Snapshot(
            version=snap_version, expires=expires.get("snapshot", now + EXPIRY["snapshot"]),
            meta={"targets.json": md.MetaFile(version=targets.signed.version)}))
        self._sign(snapshot, keys.role_signers(keydir, "snapshot"))
        self._write(snapshot, f"{snap_version}.snapshot.json")
        self.timestamp(keydir, now, expires=expires.get("timestamp"))

    def timestamp(self, keydir, now=None, expires=None):
        """Re-sign the timestamp (a new version naming the newest snapshot): done at least
        once per timestamp lifetime by the online service, or devices see a freeze."""
        md, _ = _tuf()
        now = now or _now()
        snapshot = self.load("snapshot").signed
        version = (self.load("timestamp").signed.version + 1
                   if (self.meta_dir / "timestamp.json").exists() else 1)
        ts = md.Metadata(md.Timestamp(
            version=version, expires=expires or now + EXPIRY["timestamp"],
            snapshot_meta=md.MetaFile(version=snapshot.version)))
        self._sign(ts, keys.role_signers(keydir, "timestamp"))
        self._write(ts, "timestamp.json")
        return ts

    def rotate_root(self, keydir, role, old_signer, new_signer, now=None):
        """Write a new root version in which ``role``'s key ``old_signer`` is replaced by
        ``new_signer``'s, signed by a threshold of the old root keys and of the new ones
        (the root keys present in ``keydir``).  Returns the new root version."""
        md, _ = _tuf()
        now = now or _now()
        old_root = self.load("root")
        root = md.Metadata(copy.deepcopy(old_root.signed))
        root.signed.version += 1
        root.signed.expires = now + EXPIRY["root"]
        old_id, new_id = old_signer.public_key.keyid, new_signer.public_key.keyid
        if old_id not in root.signed.roles[role].keyids:
            raise FleetError(f"the key being replaced is not a {role} key in root version "
                             f"{old_root.signed.version}")
        root.signed.revoke_key(old_id, role)
        root.signed.add_key(new_signer.public_key, role)
        by_id = {s.public_key.keyid: s for s in keys.role_signers(keydir, "root",
                                                                   required=False)}
        by_id[new_id] = new_signer
        by_id.setdefault(old_id, old_signer)
        old_ids = set(old_root.signed.roles["root"].keyids)
        new_ids = set(root.signed.roles["root"].keyids)
        for ids, need, which in ((old_ids, old_root.signed.roles["root"].threshold, "old"),
                                 (new_ids, root.signed.roles["root"].threshold, "new")):
            have = len(ids & set(by_id))
            if have < need:
                raise FleetError(f"the new root needs {need} signatures of the {which} root "
                                 f"keys; only {have} present in {keydir}: nothing written")
        for keyid in sorted((old_ids | new_ids) & set(by_id)):
            root.sign(by_id[keyid], append=True)
        self._write(root, f"{root.signed.version}.root.json")
        self._write(root, "root.json")
        return root.signed.version

    def resign(self, keydir, role, now=None):
        """Publish new versions of what ``role`` signs (after its key changed)."""
        if role in ("targets", "snapshot"):
            targets = self.load("targets")
            targets.signed.version += 1
            self.publish(keydir, targets, now)
        elif role == "timestamp":
            self.timestamp(keydir, now)

    def add_release(self, keydir, kind, version, payload, now=None, expires=None):
        """Publish ``payload`` (a release tar) as release ``version`` for ``kind``; returns
        its target name.  ``expires`` ({role: datetime}) overrides the default lifetimes."""
        md, _ = _tuf()
        name = target_name(kind, version)
        now = now or _now()
        expires = expires or {}
        if not self.exists():
            self.init(keydir, now)
        targets = self.load("targets")
        if name in targets.signed.targets:
            raise FleetError(f"{name} is already released; give a new version")
        target = md.TargetFile.from_file(name, str(payload), ["sha256"])
        target.unrecognized_fields["custom"] = {"kind": kind, "version": version}
        digest = target.hashes["sha256"]
        dest = self.targets_dir / kind / f"{digest}.{name.split('/', 1)[1]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(payload, tmp)
        if _sha256(tmp) != digest:
            tmp.unlink()
            raise FleetError(f"{payload} changed while it was copied; nothing was published")
        os.replace(tmp, dest)
        targets.signed.targets[name] = target
        targets.signed.version += 1
        targets.signed.expires = expires.get("targets", now + EXPIRY["targets"])
        self.publish(keydir, targets, now, expires)
        return name


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def rotate_key(repo_path, keydir, role, replace=None):
    """Replace a key of ``role``: a new key file in ``keydir``, a new root version naming
    it, then re-signed metadata.  Returns (old file, new file, root version).  On failure
    nothing changes but the new key file, which is removed."""
    repo = Repository(repo_path)
    if not repo.exists():
        raise FleetError(f"{repo_path}: no update repository to rotate a key in")
    old = keys.replaced_file(keydir, role, replace)
    new = keys.new_key(keydir, role)
    try:
        version = repo.rotate_root(keydir, role, keys.signer(Path(keydir) / old),
                                   keys.signer(Path(keydir) / new))
    except BaseException:
        (Path(keydir) / new).unlink()
        raise
    keys.replace_in_roles(keydir, role, old, new)
    repo.resign(keydir, role)
    return old, new, version
