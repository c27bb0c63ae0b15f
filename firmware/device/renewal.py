"""Renewing the device's own certificate before it expires, over MQTT.

When the certificate in use runs out within ``renew_before_days``, the device makes a new
EC P-256 key in its data dir (``renew.key``, mode 0600: it never leaves the device) and
sends a CSR for it (CN = its id) on ``…/csr``, again each ``ask_every_s`` until answered.
The centre answers on ``…/cert``; a certificate is used only when it belongs to the new
key, is the device's, chains to the device's CA and the broker accepts a connection made
with it (``try_connect``).  Then key and certificate are written together to
``identity.pem`` (written beside, fsynced, renamed over it, folder fsynced: a power cut
leaves the old identity or the new one), which every later start uses in place of the
provisioned files.  A refusal or a certificate that fails any check leaves the old
identity in use; why is kept in ``renewal.failed`` and reported in the status (``cert``).
"""

import datetime as dt
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("gridlink.device.renewal")

IDENTITY = "identity.pem"
NEW_KEY = "renew.key"
TRIAL = "identity.trial.pem"
ASK_EVERY_S = 3600.0


def _x509():
    from cryptography import x509

    return x509


def not_after(cert_pem):
    """The certificate's end of validity (aware UTC datetime)."""
    return _x509().load_pem_x509_certificate(cert_pem).not_valid_after_utc


def _mismatch(cert_pem, key_pem):
    """None when the certificate in ``cert_pem`` is for the key in ``key_pem``, else why."""
    from cryptography.hazmat.primitives import serialization

    try:
        cert = _x509().load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:
        return f"unreadable: {exc}"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "the certificate is not for the key"
    return None


def _write_atomic(path, data, mode=0o600):
    new = path.with_name(path.name + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(new, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Renewal:
    """The device's identity files and their renewal.

    ``tls``: the provisioned (CA, certificate, key) paths; ``try_connect(tls_files)`` →
    None when the broker accepts a connection with them, else why not.
    """

    def __init__(self, data_dir, device, tls, renew_before_days=30, *, try_connect=None,
                 ask_every_s=ASK_EVERY_S, clock=time.time):
        self.dir = Path(data_dir)
        self.device = device
        self.ca, self.provisioned = tls[0], (tls[1], tls[2])
        self.renew_before = dt.timedelta(days=renew_before_days)
        self.try_connect = try_connect
        self.ask_every_s = ask_every_s
        self.clock = clock
        self.failed = None          # why the last renewal did not take, or None
        self.renewed_at = None      # when this process took a new certificate
        self._asked_at = None
        for leftover in (IDENTITY + ".new", TRIAL, TRIAL + ".new"):   # a cut mid-write
            (self.dir / leftover).unlink(missing_ok=True)
        self._own = self._kept()

    def _kept(self):
        """The renewed identity file, when there is one and it is whole (its certificate
        for its key), else None: the provisioned files are used."""
        own = self.dir / IDENTITY
        try:
            pem = own.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("%s unreadable (%s): using the provisioned certificate", own, exc)
            return None
        why = _mismatch(pem, pem)
        if why:
            log.error("%s not used (%s): using the provisioned certificate", own, why)
            return None
        return own

    @property
    def files(self):
        """(CA, certificate, key) in use: the renewed identity when there is one."""
        if self._own is not None:
            return (self.ca, str(self._own), str(self._own))
        return (self.ca, *self.provisioned)

    def expires(self):
        try:
            return not_after(Path(self.files[1]).read_bytes())
        except (OSError, ValueError, ImportError):
            return None

    def status(self):
        """The status message's ``cert``: expiry, and why the last renewal failed."""
        end = self.expires()
        return {"expires": f"{end:%Y-%m-%dT%H:%M:%S}.000Z" if end else None,
                "failed": self.failed}

    def due(self):
        end = self.expires()
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        return end is not None and end - now <= self.renew_before

    def request(self):
        """The CSR PEM to send now, or None (not due, or asked recently)."""
        if not self.due():
            return None
        now = self.clock()
        if self._asked_at is not None and now - self._asked_at < self.ask_every_s:
            return None
        self._asked_at = now
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        x509 = _x509()
        path = self.dir / NEW_KEY
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        except (OSError, ValueError):
            key = ec.generate_private_key(ec.SECP256R1())
            _write_atomic(path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.device),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridlink")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
            key, hashes.SHA256())
        log.info("certificate expires %s: asked the centre for a new one",
                 f"{self.expires():%Y-%m-%d}")
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def receive(self, answer):
        """The centre's checked ``cert`` message; returns the new (CA, cert, key) files
        when the new certificate was taken, else None (``failed`` says why)."""
        if "refused" in answer:
            return self._fail(f"refused by the centre: {answer['refused']}")
        try:
            key_pem = (self.dir / NEW_KEY).read_bytes()
        except OSError:
            return self._fail("a certificate came, but this device asked for none "
                              "(no new key)")
        cert_pem = answer["cert"].encode("ascii")
        why = self._check(cert_pem, key_pem)
        if why:
            return self._fail(why)
        trial = self.dir / TRIAL
        _write_atomic(trial, key_pem + cert_pem)
        try:
            why = self.try_connect((self.ca, str(trial), str(trial))) \
                if self.try_connect else None
            if why:
                return self._fail(f"the broker did not accept the new certificate: {why}")
            _write_atomic(self.dir / IDENTITY, key_pem + cert_pem)
        except OSError as exc:
            return self._fail(f"not kept on disk: {exc.strerror or exc}")
        finally:
            trial.unlink(missing_ok=True)
        (self.dir / NEW_KEY).unlink(missing_ok=True)
        self._own = self.dir / IDENTITY
        self.failed, self.renewed_at, self._asked_at = None, self.clock(), None
        log.info("new certificate in use, valid to %s", f"{not_after(cert_pem):%Y-%m-%d}")
        return self.files

    def _check(self, cert_pem, key_pem):
        from cryptography.exceptions import InvalidSignature
        from cryptography.x509.oid import NameOID

        x509 = _x509()
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            ca = x509.load_pem_x509_certificate(Path(self.ca).read_bytes())
        except (OSError, ValueError) as exc:
            return f"certificate unreadable: {exc}"
        if _mismatch(cert_pem, key_pem):
            return "the certificate is not for this device's new key"
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns or cns[0].value != self.device:
            return f"the certificate is not this device's (CN {cns[0].value if cns else None!r})"
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            return "the certificate is not signed by this device's CA"
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return "the certificate is not valid now"
        return None

    def _fail(self, why):
        self.failed = why[:200]
        log.error("certificate not renewed: %s (the old one stays in use)", why)
        return None
