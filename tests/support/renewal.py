"""A district CA folder (``ca.pem``, ``ca.key``) and devices' certificate requests, for
the renewal tests."""

import json
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gridlink.firmware.core import topics
from gridlink.flash.pki import make_ca


def make_ca_dir(folder, cn="gridlink test district CA"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = make_ca(cn, which="cryptography")
    (folder / "ca.key").write_bytes(key)
    (folder / "ca.pem").write_bytes(cert)
    return folder


def ca_dir_of(pki, folder):
    """The district CA folder (``gridlink flash ca``'s layout) of the tests' CA
    (tests/support/pki.py), the CA that signed the broker's and the devices' certificates."""
    folder = Path(folder)
    folder.mkdir()
    shutil.copy(Path(pki) / "ca.crt", folder / "ca.pem")
    shutil.copy(Path(pki) / "ca.key", folder / "ca.key")
    return folder


def csr_pem(cn, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM).decode()


def csr_message(device, cn=None, key=None, district="410106"):
    """(topic, payload) of ``device``'s request (for ``cn``, default the device)."""
    payload = json.dumps({"v": 1, "device": device, "csr": csr_pem(cn or device, key)})
    return topics.topic(district, device, "csr"), payload.encode()
