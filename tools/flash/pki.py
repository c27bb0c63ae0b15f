"""Device certificates: a key and CSR made for the device, signed by the district CA.

Two backends with the same results: the ``cryptography`` package when it is installed,
else the ``openssl`` command.  Keys are EC P-256 (small enough for a microcontroller's
TLS stack); the certificate's CN is the device id, which the broker's ACL uses as the
user name (``use_identity_as_username``), so a device can speak only for itself.
"""

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from gridlink.gateway.issued import DEVICE_DAYS

from .errors import FlashError


class CertError(FlashError):
    """A certificate, key or CA that cannot be used; the message says which and why."""


def backend():
    """'cryptography' when that package is importable, else 'openssl'.

    ``GRIDLINK_PKI=openssl`` (or ``cryptography``) forces one.
    """
    forced = os.environ.get("GRIDLINK_PKI")
    if forced in ("openssl", "cryptography"):
        return forced
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            raise FlashError("neither the cryptography package nor the openssl command is "
                             "installed; install one of them") from None
        return "openssl"
    return "cryptography"


def _openssl(*args, stdin=None):
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if proc.returncode:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CertError(f"openssl {args[0]}: {msg[-1] if msg else 'failed'}")
    return proc.stdout


def _read(path, what):
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertError(f"{what} {path}: {exc.strerror or exc}") from None


# -- making certificates ------------------------------------------------------------------

def make_ca(cn, days=3650, which=None):
    """(key PEM, cert PEM) of a new self-signed CA (a district CA for a bench or a test)."""
    if (which or backend()) == "cryptography":
        return _cg_make(cn, None, None, days, ca=True)
    with tempfile.TemporaryDirectory() as d:
        key, crt = Path(d, "ca.key"), Path(d, "ca.pem")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(key))
        _openssl("req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={cn}/O=gridlink",
                 "-days", str(days), "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(crt))
        return key.read_bytes(), crt.read_bytes()


def sign_device(cn, ca_cert, ca_key, days=DEVICE_DAYS, hosts=(), which=None, peer=False):
    """(key PEM, cert PEM) for ``cn``: a fresh key and CSR, signed with the CA.

    ``hosts`` (names or IP addresses) makes it a server certificate, for a broker;
    ``peer`` also a client one, for a cluster node that dials the other nodes (NATS routes).
    """
    ca_cert_pem = _read(ca_cert, "CA certificate")
    ca_key_pem = _read(ca_key, "CA key")
    check_key_matches(ca_cert_pem, ca_key_pem, "CA certificate", "CA key")
    if (which or backend()) == "cryptography":
        return _cg_make(cn, ca_cert_pem, ca_key_pem, days, hosts=hosts, peer=peer)
    with tempfile.TemporaryDirectory() as d:
        key, csr, crt, ext = (Path(d, n) for n in ("k.pem", "r.csr", "c.pem", "ext.cnf"))
        cap, cak = Path(d, "ca.pem"), Path(d, "ca.key")
        cap.write_bytes(ca_cert_pem)
        cak.write_bytes(ca_key_pem)
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(key))
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}/O=gridlink", "-out", str(csr))
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
        if hosts:
            alt = ",".join(("IP:" if _is_ip(h) else "DNS:") + h for h in hosts)
            usage = "serverAuth,clientAuth" if peer else "serverAuth"
            lines += [f"extendedKeyUsage={usage}", f"subjectAltName={alt}"]
        else:
            lines.append("extendedKeyUsage=clientAuth")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(cap), "-CAkey", str(cak),
                 "-set_serial", str(secrets.randbits(63)), "-days", str(days), "-sha256",
                 "-extfile", str(ext), "-out", str(crt))
        return key.read_bytes(), crt.read_bytes()


def _is_ip(h):
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        return False


def _cg_make(cn, ca_cert_pem, ca_key_pem, days, ca=False, hosts=(), peer=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridlink")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    if ca:
        issuer, signer = name, key
    else:
        issuer_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        issuer = issuer_cert.subject
        signer = serialization.load_pem_private_key(ca_key_pem, None)
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(issuer)
         .public_key(csr.public_key()).serial_number(secrets.randbits(63))
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if hosts else []
        if peer or not hosts:
            usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if hosts:
            alt = [x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h)
                   for h in hosts]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = b.sign(signer, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# -- checking -----------------------------------------------------------------------------

class CertInfo:
    def __init__(self, cn, not_before, not_after, serial=None):
        self.cn, self.not_before, self.not_after = cn, not_before, not_after
        self.serial = serial  # upper-case hex, as openssl and CRLs print it


def info(cert_pem, what="certificate"):
    """CN, validity period and serial of a PEM certificate."""
    if backend() == "cryptography":
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        try:
            c = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise CertError(f"{what} is not a PEM certificate ({exc})") from None
        cns = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return CertInfo(cns[0].value if cns else None, c.not_valid_before_utc,
                        c.not_valid_after_utc, f"{c.serial_number:X}")
    try:
        out = _openssl("x509", "-noout", "-subject", "-startdate", "-enddate", "-serial",
                       "-nameopt", "multiline", stdin=cert_pem).decode()
    except CertError:
        raise CertError(f"{what} is not a PEM certificate") from None
    cn = serial = None
    dates = {}
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("serial="):
            serial = s.split("=", 1)[1].lstrip("0") or "0"
        elif s.startswith("commonName"):
            cn = s.split("=", 1)[1].strip()
        elif s.startswith(("notBefore=", "notAfter=")):
            k, v = s.split("=", 1)
            dates[k] = dt.datetime.strptime(v.replace("  ", " "), "%b %d %H:%M:%S %Y GMT"
                                            ).replace(tzinfo=dt.UTC)
    return CertInfo(cn, dates["notBefore"], dates["notAfter"], serial)


def _public_der(pem, kind):
    if backend() == "cryptography":
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        enc, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        try:
            if kind == "cert":
                return x509.load_pem_x509_certificate(pem).public_key().public_bytes(enc, fmt)
            return serialization.load_pem_private_key(pem, None).public_key().public_bytes(
                enc, fmt)
        except (ValueError, TypeError) as exc:
            raise CertError(str(exc)) from None
    if kind == "cert":
        return _openssl("x509", "-noout", "-pubkey", stdin=pem)
    return _openssl("pkey", "-pubout", stdin=pem)


def check_key_matches(cert_pem, key_pem, cert_what="certificate", key_what="key"):
    try:
        a = _public_der(cert_pem, "cert")
    except CertError:
        raise CertError(f"{cert_what} is not a PEM certificate") from None
    try:
        b = _public_der(key_pem, "key")
    except CertError:
        raise CertError(f"{key_what} is not an unencrypted PEM private key") from None
    if a != b:
        raise CertError(f"{key_what} does not belong to {cert_what}")


def verify_chain(cert_pem, ca_pem, key_pem=None, now=None):
    """Check the device certificate: signed by the CA, in its validity period, and (given
    the key) matching the key.  Returns its CertInfo; raises CertError saying what failed."""
    now = now or dt.datetime.now(dt.UTC)
    ci = info(cert_pem, "device certificate")
    ca = info(ca_pem, "CA certificate")
    if not ca.not_before <= now <= ca.not_after:
        raise CertError(f"CA certificate is not valid now (valid {ca.not_before:%Y-%m-%d} to "
                        f"{ca.not_after:%Y-%m-%d})")
    if now > ci.not_after:
        raise CertError(f"device certificate expired on {ci.not_after:%Y-%m-%d %H:%M} UTC")
    if now < ci.not_before:
        raise CertError(f"device certificate is not valid before {ci.not_before:%Y-%m-%d %H:%M}"
                        " UTC (check the clock)")
    if backend() == "cryptography":
        _cg_verify(cert_pem, ca_pem)
    else:
        with tempfile.TemporaryDirectory() as d:
            Path(d, "ca.pem").write_bytes(ca_pem)
            Path(d, "c.pem").write_bytes(cert_pem)
            proc = subprocess.run(["openssl", "verify", "-no_check_time", "-CAfile",
                                   os.path.join(d, "ca.pem"), os.path.join(d, "c.pem")],
                                  capture_output=True, text=True)
        if proc.returncode:
            reason = (proc.stderr or proc.stdout).strip().splitlines()
            raise CertError("device certificate is not signed by the CA"
                            + (f" ({reason[-1]})" if reason else ""))
    if key_pem is not None:
        check_key_matches(cert_pem, key_pem, "device certificate", "device key")
    return ci


def _cg_verify(cert_pem, ca_pem):
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except InvalidSignature:
        raise CertError("device certificate is not signed by the CA (bad signature)") from None
    except (ValueError, TypeError) as exc:
        raise CertError(f"device certificate is not signed by the CA ({exc})") from None
