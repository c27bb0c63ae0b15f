"""The update keys: Ed25519, one PEM file per key, made with ``cryptography``.

    KEYDIR/
      roles.json          the root threshold and which files hold which role
      root-1.pem …        root keys: offline, a threshold of them signs root metadata
      targets.pem         signs the list of releases (the release manager's key)
      snapshot.pem        online: signs the repository's consistent view
      timestamp.pem       online: re-signed often, proves the view is fresh

Private keys are written 0600 and never overwritten.  Only the public halves ever leave
KEYDIR (inside root metadata); a device holds nothing but that root metadata.
"""

import json
import os
from pathlib import Path

from .errors import FleetError

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROLES_FILE = "roles.json"


def _private_key_cls():
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise FleetError("the Python package 'cryptography' is not installed; "
                         "pip install 'gridlink[fleet]'") from None
    return Ed25519PrivateKey


def _write_private(path, key):
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def init_keys(keydir, root_keys=3, threshold=2):
    """Make every key in ``keydir`` (new or empty); returns the roles description."""
    if not 1 <= threshold <= root_keys:
        raise FleetError(f"root threshold {threshold} must be between 1 and the number of "
                         f"root keys ({root_keys})")
    keydir = Path(keydir)
    if keydir.exists() and (not keydir.is_dir() or any(keydir.iterdir())):
        raise FleetError(f"{keydir} exists and is not an empty folder: no key was written "
                         "(keys are never overwritten)")
    keydir.mkdir(parents=True, exist_ok=True)
    os.chmod(keydir, 0o700)
    cls = _private_key_cls()
    files = {"root": [f"root-{i}.pem" for i in range(1, root_keys + 1)]}
    files.update({role: [f"{role}.pem"] for role in ONLINE_ROLES})
    for names in files.values():
        for name in names:
            _write_private(keydir / name, cls.generate())
    roles = {"root_threshold": threshold, "files": files}
    (keydir / ROLES_FILE).write_text(json.dumps(roles, indent=1) + "\n")
    return roles


def new_key(keydir, role):
    """Write a new key for ``role`` as a new file (targets-2.pem, root-4.pem …); returns
    its file name.  roles.json is not changed (``replace_in_roles`` does that)."""
    existing = {p.name for p in Path(keydir).iterdir()}
    n = 2
    while f"{role}-{n}.pem" in existing:
        n += 1
    name = f"{role}-{n}.pem"
    _write_private(Path(keydir) / name, _private_key_cls().generate())
    return name


def replaced_file(keydir, role, replace=None):
    """The key file of ``role`` to replace: ``replace``, or the role's only key."""
    _, files = load_roles(keydir)
    names = files.get(role)
    if not names:
        raise FleetError(f"unknown role {role!r}; one of {', '.join(files)}")
    if replace is None:
        if len(names) != 1:
            raise FleetError(f"{role} has {len(names)} keys: say which one to replace")
        replace = names[0]
    if replace not in names:
        raise FleetError(f"{replace} is not a {role} key ({', '.join(names)})")
    return replace


def replace_in_roles(keydir, role, old, new):
    threshold, files = load_roles(keydir)
    files[role] = [new if name == old else name for name in files[role]]
    tmp = Path(keydir) / f".{ROLES_FILE}.new"
    tmp.write_text(json.dumps({"root_threshold": threshold, "files": files}, indent=1) + "\n")
    os.replace(tmp, Path(keydir) / ROLES_FILE)


def load_roles(keydir):
    try:
        roles = json.loads((Path(keydir) / ROLES_FILE).read_text())
        threshold = int(roles["root_threshold"])
        files = {role: list(names) for role, names in roles["files"].items()}
    except FileNotFoundError:
        raise FleetError(f"{keydir}: no {ROLES_FILE}; make the keys with "
                         "'gridlink fleet keys init'") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FleetError(f"{Path(keydir) / ROLES_FILE}: not a roles file ({exc})") from None
    return threshold, files


def load_private(path):
    """The Ed25519 private key in PEM file ``path``."""
    from cryptography.hazmat.primitives import serialization

    cls = _private_key_cls()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise FleetError(f"{path}: key file missing") from None
    except (ValueError, TypeError) as exc:
        raise FleetError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, cls):
        raise FleetError(f"{path}: not an Ed25519 key")
    return key


def signer(path):
    """A securesystemslib signer for the key in ``path`` (its public key: ``.public_key``)."""
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(load_private(path))


def role_signers(keydir, role, required=True):
    """Signers of ``role`` whose key files are present in ``keydir`` (root keys may be
    offline: only those present are returned)."""
    _, files = load_roles(keydir)
    present = [Path(keydir) / name for name in files.get(role, [])
               if (Path(keydir) / name).exists()]
    if required and not present:
        raise FleetError(f"{keydir}: no {role} key present ({', '.join(files.get(role, []))})")
    return [signer(p) for p in present]
