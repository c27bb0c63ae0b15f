"""Revoked identities: the district CRL mapped to device ids by the issued-ids record.

The broker refuses a revoked certificate's next connection, but a session already open
goes on; so the gateway refuses a revoked identity's messages itself.  It sees a client's
device id, not its certificate: ``issued.json`` (or ``issued.csv``), written beside the
CA when certificates are issued, maps certificate serials to device ids.  A device counts
as revoked when every certificate recorded for it is on the CRL (one re-issued a new
certificate goes on).  Both files are read again when they change, at most once a second.

Its formats are gateway/issued.py's.
"""

import datetime as dt
import logging
import time
from pathlib import Path

from .crl import CrlError, crl_warning, read_crl
from .errors import ConfigError
from .issued import default_record, read_records

log = logging.getLogger("gridlink.gateway")

RENEW_WARN_DAYS = 30  # the fleet view flags a certificate this close to its end


class Revocations:
    """``revoked(device)`` → the reason it is refused, or None; ``provisioned(device)`` →
    the ISO time its first certificate was issued, when recorded."""

    def __init__(self, crl_path, issued_path=None, check_every=1.0, clock=time.monotonic):
        self.crl_path = Path(crl_path)
        self.issued_path = Path(issued_path) if issued_path else default_record(crl_path)
        self.check_every = check_every
        self.clock = clock
        self._stamp = None
        self._next_check = 0.0
        self._revoked = {}  # device → reason
        self._provisioned = {}  # device → ISO time
        self._expires = {}  # device → its newest certificate's not_after
        self._load(strict=True)

    def _files(self):
        return [p for p in (self.crl_path, self.issued_path) if p is not None]

    def _current_stamp(self):
        out = []
        for p in self._files():
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def _load(self, strict=False):
        stamp = self._current_stamp()
        try:
            crl = read_crl(self.crl_path)
            issued = read_records(self.issued_path) if self.issued_path else []
        except (CrlError, ConfigError) as exc:
            if strict:
                raise ConfigError(str(exc)) from None
            log.error("revocations not reloaded, the previous ones stand: %s", exc)
            self._stamp = stamp
            return
        serials = {}
        provisioned = {}
        expires = {}  # device → the latest not_after of its certificates not revoked
        for r in issued:
            device, issued_at = r["device"], r["issued_at"]
            serials.setdefault(device, set()).add(r["serial"])
            if issued_at and (device not in provisioned or issued_at < provisioned[device]):
                provisioned[device] = issued_at
            if r["not_after"] and r["serial"] not in crl.serials:
                expires[device] = max(expires.get(device, ""), r["not_after"])
        revoked = {d: f"revoked: every certificate of {d} is on the district CRL"
                   for d, own in serials.items() if own <= crl.serials}
        unknown = crl.serials - set().union(*serials.values()) if serials else crl.serials
        if unknown:
            log.warning("%d revoked serials have no device in the issued-ids record %s",
                        len(unknown), self.issued_path or "(none)")
        warning = crl_warning(crl, what=f"CRL {self.crl_path}")
        if warning:
            log.warning(warning)
        self._revoked, self._provisioned, self._stamp = revoked, provisioned, stamp
        self._expires = expires
        log.info("revocations: %d devices revoked (CRL %s)", len(revoked), self.crl_path)

    def _fresh(self):
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_every
        if self._current_stamp() != self._stamp:
            self._load()

    def revoked(self, device):
        self._fresh()
        return self._revoked.get(device)

    def provisioned(self, device):
        self._fresh()
        return self._provisioned.get(device)

    def identity(self, device, today=None):
        """What the fleet view shows of ``device``'s certificate: ``revoked`` (the reason,
        or None), ``certificate_expires`` (the date its newest unrevoked certificate runs
        out, as recorded, or None) and ``renew_due`` (expired, or within
        ``RENEW_WARN_DAYS``: renew it before the broker refuses it)."""
        self._fresh()
        expires = self._expires.get(device)
        due = None
        if expires:
            today = today or dt.datetime.now(dt.UTC).date()
            try:
                left = (dt.date.fromisoformat(expires[:10]) - today).days
            except ValueError:
                left = None
            due = None if left is None else left <= RENEW_WARN_DAYS
        return {"revoked": self._revoked.get(device), "certificate_expires": expires,
                "renew_due": due}

    @property
    def devices(self):
        return sorted(self._revoked)
