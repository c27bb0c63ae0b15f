"""Cutting a device off: its certificates onto the district CRL.

The CA folder (``gridlink flash ca``) holds ``ca.pem``, ``ca.key``, the issued-ids record
``issued.csv`` (every certificate issued: device, serial, valid until) and the CRL
``crl.pem`` that the broker (``crlfile``) and the gateway (``--crl``) read.  Revoking a
device puts every certificate recorded for it on a new CRL, signed by the CA, keeping the
entries already there; ``revocations.csv`` beside it records who was revoked, why and
when.  A CRL holds until its next update: re-sign it (:func:`publish`) before then, or a
broker that checks it refuses every device (``gridlink flash crl-check`` warns).

Each file is written to a temporary name, synced and renamed, so a broker or gateway
reading it mid-write sees the old CRL or the new one, never half of one.
"""

import datetime as dt
from pathlib import Path

from gridlink.firmware.core import fsio

from .errors import FleetError

CRL_NAME = "crl.pem"
LOG_NAME = "revocations.csv"
LOG_COLUMNS = ("time", "device", "serials", "reason", "note")
CRL_DAYS = 30

# what a technician says → RFC 5280's reason code
REASONS = {
    "stolen": "key_compromise",
    "compromised": "key_compromise",
    "lost": "key_compromise",
    "retired": "cessation_of_operation",
    "replaced": "superseded",
    "unspecified": "unspecified",
}


class RevokeError(FleetError):
    """A revocation that cannot be made: no such device, no CA, an unreadable CRL."""


def _ca(ca_dir):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    d = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise RevokeError(f"{d}: no {Path(exc.filename).name} (a CA folder made by "
                          "'gridlink flash ca' holds ca.pem and ca.key)") from None
    except (ValueError, TypeError) as exc:
        raise RevokeError(f"{d}: the CA's certificate or key cannot be read ({exc})") from None
    return cert, key


def _current(ca_dir, ca_cert):
    """The revoked entries of the CA folder's CRL now (none when it has no CRL yet)."""
    from cryptography import x509

    path = Path(ca_dir) / CRL_NAME
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise RevokeError(f"{path} is not a PEM CRL ({exc}); it is left as it is") from None
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        raise RevokeError(f"{path} was not signed by this folder's CA; it is left as it is")
    return list(crl)


def publish(ca_dir, add=(), reason="unspecified", days=CRL_DAYS, now=None):
    """Sign and write ``CADIR/crl.pem``: the entries already on it, plus the serials in
    ``add`` (ints) revoked for ``reason`` (a key of :data:`REASONS`), next update in
    ``days``.  Returns the set of serials on the new CRL."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    if reason not in REASONS:
        raise RevokeError(f"reason: one of {', '.join(REASONS)}, not {reason!r}")
    if not 1 <= days <= 366:
        raise RevokeError(f"days: 1 to 366, not {days}")
    ca_cert, ca_key = _ca(ca_dir)
    now = now or dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now).next_update(now + dt.timedelta(days=days)))
    serials = set()
    for entry in _current(ca_dir, ca_cert):
        builder = builder.add_revoked_certificate(entry)
        serials.add(entry.serial_number)
    flag = getattr(x509.ReasonFlags, REASONS[reason])
    for serial in sorted(set(add) - serials):
        entry = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
                 .add_extension(x509.CRLReason(flag), critical=False).build())
        builder = builder.add_revoked_certificate(entry)
        serials.add(serial)
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    crl = Path(ca_dir) / CRL_NAME      # the old CRL or the new one, whole, after a crash
    fsio.write_file(str(crl), pem, str(crl.parent))
    return serials


def issued_serials(ca_dir, device):
    """Every certificate serial the CA folder's issued-ids record has for ``device``."""
    from gridlink.gateway.crl import parse_serial
    from gridlink.gateway.errors import ConfigError
    from gridlink.gateway.issued import read_issued

    path = Path(ca_dir) / "issued.csv"
    if not path.exists():
        raise RevokeError(f"{path}: no issued-ids record, so no certificate is known for "
                          f"{device!r}")
    try:
        rows = read_issued(path)
    except ConfigError as exc:
        raise RevokeError(str(exc)) from None
    found = sorted({parse_serial(serial) for d, serial, _ in rows if d == device})
    if not found:
        raise RevokeError(f"{device!r} has no certificate in {path}: check the device id")
    return found


def revoke(ca_dir, device, reason, note="", days=CRL_DAYS, now=None):
    """Revoke every certificate issued to ``device``: a new CRL in ``CADIR/crl.pem`` and a
    line in ``CADIR/revocations.csv`` naming the serials not revoked before.  Returns
    (the device's serials, those newly revoked), ints."""
    now = now or dt.datetime.now(dt.UTC)
    ca_cert, _key = _ca(ca_dir)     # a folder without a CA is named as that, first
    serials = issued_serials(ca_dir, device)
    before = {entry.serial_number for entry in _current(ca_dir, ca_cert)}
    publish(ca_dir, serials, reason=reason, days=days, now=now)
    new = [s for s in serials if s not in before]
    if new:
        _log(Path(ca_dir) / LOG_NAME, now, device, new, reason, note)
    return serials, new


def _log(path, now, device, serials, reason, note):
    from gridlink.gateway.issued import append_row

    append_row(path, LOG_COLUMNS, [now.strftime("%Y-%m-%dT%H:%M:%SZ"), device,
                                   " ".join(format(s, "X") for s in serials), reason, note])
