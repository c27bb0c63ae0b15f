"""The district's certificate revocation list: which serials are revoked, and how long
the list holds.  The gateway refuses revoked identities by it (``revocation.py``); the
flash tools warn before it runs out (``gridlink flash crl-check``) — an expired CRL makes a
broker that checks it (mosquitto ``crlfile``) refuse every device."""

import datetime as dt

from .errors import ConfigError

CRL_WARN_DAYS = 14  # warn this long before a CRL's next update


class CrlError(ConfigError):
    """A CRL that cannot be read; the message names it and why."""


class CrlInfo:
    """A CRL's issuer CN, last and next update (aware datetimes; next may be None) and
    the revoked certificate serials (ints)."""

    def __init__(self, issuer, last_update, next_update, serials):
        self.issuer, self.last_update, self.next_update = issuer, last_update, next_update
        self.serials = frozenset(serials)


def read_crl(path, what=None):
    """``crl_info`` of the PEM file at ``path``."""
    what = what or f"CRL {path}"
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise CrlError(f"{what}: {exc.strerror or exc}") from None
    return crl_info(pem, what)


def crl_info(crl_pem, what="CRL"):
    """Read a PEM CRL (with the ``cryptography`` package)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise CrlError(f"{what}: reading a CRL needs the cryptography package") from None
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise CrlError(f"{what} is not a PEM CRL ({exc})") from None
    cns = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CrlInfo(cns[0].value if cns else None, crl.last_update_utc, crl.next_update_utc,
                   (r.serial_number for r in crl))


def crl_warning(info, now=None, warn_days=CRL_WARN_DAYS, what="CRL"):
    """None while the CRL's (a ``CrlInfo``) next update is more than ``warn_days`` away;
    else the warning to print (the CRL is expired, or will be soon)."""
    now = now or dt.datetime.now(dt.UTC)
    if info.next_update is None:
        return None
    left = info.next_update - now
    when = info.next_update.strftime("%Y-%m-%d %H:%M UTC")
    if left.total_seconds() <= 0:
        return (f"{what} EXPIRED at {when}: a broker checking it refuses every device; "
                "publish a new CRL now")
    if left <= dt.timedelta(days=warn_days):
        return (f"{what} expires in {left.days} d {left.seconds // 3600} h ({when}): "
                "publish a new CRL before then, or every device is refused")
    return None


def parse_serial(value):
    """A certificate serial from a record: an int, or text in hex as openssl prints it
    (``1A2B``, ``0x1a2b``, ``serial=1A2B``, ``1A:2B``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a serial: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lower().startswith("serial="):
        text = text[7:]
    text = text.replace(":", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    return int(text, 16)
