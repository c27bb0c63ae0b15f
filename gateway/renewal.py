"""Certificate renewal on the centre's side: a device's CSR (``…/{device}/csr``) signed
with the district CA, or kept for a technician.

The device makes its new key itself and sends only a CSR.  The gateway checks the CSR's
own signature (the sender holds the key), that its CN is the device of the topic (the
broker's ACL lets a device publish only under its own id) and that the device is not
revoked; then, by policy (``mode``):

- ``auto``: signs it at once;
- ``approve``: keeps it in ``renew_requests`` (pending) until a technician approves or
  refuses it (``approve``/``refuse``, the API's ``/api/fleet/renewals``).

A signed certificate (``DEVICE_DAYS`` days, as ``gridlink flash`` issues) is appended to
``CADIR/issued.csv`` (gateway/issued.py) — so the fleet view's expiry moves on — and sent
on ``…/cert``; a refusal is sent there too (``{"refused": reason}``), and the device keeps
its certificate.
"""

import datetime as dt
import logging
import queue
import secrets
import threading
from pathlib import Path

from ..firmware.core import messages, topics
from .clock import wire_time
from .errors import ConfigError, GatewayError
from .issued import DEVICE_DAYS, IssuedRecord
from .queue import Conflict, NotFound, system_clock
from .store.sql import one, rows, run

log = logging.getLogger("gridlink.gateway.renewal")

MODES = ("auto", "approve")
STATES = ("pending", "approved", "refused")

MIGRATIONS = (
    (
        "renew_001_requests",
        "CREATE TABLE IF NOT EXISTS renew_requests ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, district TEXT NOT NULL,"
        " csr TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, serial TEXT,"
        " received_at TEXT NOT NULL, decided_at TEXT, decided_by TEXT)",
        "CREATE TABLE IF NOT EXISTS renew_requests ("
        " id BIGSERIAL PRIMARY KEY, device TEXT NOT NULL, district TEXT NOT NULL,"
        " csr TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, serial TEXT,"
        " received_at TEXT NOT NULL, decided_at TEXT, decided_by TEXT)",
    ),
)


class Refused(GatewayError):
    """A CSR the centre does not sign; the message says why (sent to the device)."""

    def __init__(self, reason, message):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class CertificateAuthority:
    """The district CA of a ``gridlink flash ca`` folder: ``ca.pem`` and ``ca.key``."""

    def __init__(self, ca_dir, days=DEVICE_DAYS):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        d = Path(ca_dir)
        try:
            self.cert_pem = (d / "ca.pem").read_bytes()
            self.cert = x509.load_pem_x509_certificate(self.cert_pem)
            self.key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
        except OSError as exc:
            raise ConfigError(f"CA folder {d}: {exc.strerror or exc} (a 'gridlink flash ca' "
                              "folder holds ca.pem and ca.key)") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"CA folder {d}: ca.pem or ca.key unusable ({exc})") from None
        self.days = days
        self.record = IssuedRecord(d / "issued.csv")

    def check(self, device, csr_pem):
        """The loaded CSR of ``device``, or Refused saying why not."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeError) as exc:
            raise Refused("csr", f"not a certificate signing request ({exc})") from None
        if not csr.is_signature_valid:
            raise Refused("csr", "the request's signature does not verify (not made with "
                                 "the key it names)")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = cns[0].value if cns else None
        if cn != device:
            raise Refused("csr", f"the request is for {cn!r}, not for {device!r}")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise Refused("csr", "the key must be EC P-256")
        return csr

    def sign(self, device, csr, district=""):
        """(certificate PEM text, serial hex) for a checked CSR; recorded in issued.csv."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridlink")])
        not_after = min(now + dt.timedelta(days=self.days), self.cert.not_valid_after_utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(self.cert.subject)
                .public_key(csr.public_key()).serial_number(secrets.randbits(63))
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        serial = f"{cert.serial_number:X}"
        previous = self.record.latest(device)
        self.record.append(device, serial, f"{not_after:%Y-%m-%d}", district, "renewal",
                           previous["serial"] if previous else "")
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), serial


class Renewals:
    """Handles CSRs off the ingest path (``submit`` from the broker link's thread queues
    them; one thread of its own checks, signs, stores and answers).

    ``publisher(topic, payload, qos=1)``: the running gateway's publish; ``revoked(device)``
    → the reason it is revoked, or None.
    """

    def __init__(self, store, ca, mode="auto", *, publisher=None, revoked=None, clock=None):
        if mode not in MODES:
            raise ConfigError(f"--renew must be one of {', '.join(MODES)} (got {mode!r})")
        self.store, self.ca, self.mode = store, ca, mode
        self.publisher = publisher
        self.revoked = revoked or (lambda device: None)
        self.clock = clock or system_clock
        self.counters = {"signed": 0, "refused": 0, "pending": 0, "bad": 0}
        self._queue = queue.SimpleQueue()
        self._thread = None

    # -- intake ---------------------------------------------------------------------------

    def submit(self, topic, payload):
        """A message on ``…/csr`` (called on the link's thread: only queued)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="renewals", daemon=True)
            self._thread.start()
        self._queue.put((topic, bytes(payload)))

    def _loop(self):
        while True:
            topic, payload = self._queue.get()
            try:
                self.handle(topic, payload)
            except Exception:  # one bad request must not stop the others
                log.exception("certificate request on %s not handled", topic)

    def handle(self, topic, payload):
        """Check one request and sign it, keep it, or refuse it; returns the outcome
        ("signed", "pending", "refused" or "bad": not answerable)."""
        try:
            district, device, leaf, _ = topics.parse_topic(topic)
            if leaf != "csr":
                raise messages.MessageError("topic", f"not a csr topic: {topic!r}")
            msg = messages.decode(payload, messages.validate_csr, messages.CSR_MAX_BYTES)
        except messages.MessageError as exc:
            self.counters["bad"] += 1
            log.warning("certificate request on %s refused: %s", topic, exc)
            return "bad"
        try:
            if msg["device"] != device:
                raise Refused("device", f"the message is for {msg['device']!r}, sent on "
                                        f"{device!r}'s topic")
            why = self.revoked(device)
            if why:
                raise Refused("revoked", why)
            csr = self.ca.check(device, msg["csr"])
        except Refused as exc:
            self._answer(district, device, refused=str(exc))
            self.counters["refused"] += 1
            log.warning("certificate request of %s refused: %s", device, exc)
            return "refused"
        if self.mode == "approve":
            self._keep(district, device, msg["csr"])
            self.counters["pending"] += 1
            log.info("certificate request of %s waits for a technician", device)
            return "pending"
        cert, serial = self.ca.sign(device, csr, district)
        self._answer(district, device, cert=cert)
        self.counters["signed"] += 1
        log.info("certificate of %s renewed (serial %s)", device, serial)
        return "signed"

    def _answer(self, district, device, cert=None, refused=None):
        body = messages.make_cert(device, cert, refused=refused)
        if self.publisher is not None:
            self.publisher(topics.topic(district, device, "cert"), messages.encode(body), qos=1)

    # -- the technician's side (approve mode) -----------------------------------------------

    def _keep(self, district, device, csr):
        with self.store.connect() as conn:
            # a device asks again until answered: one pending request per device, the newest
            run(self.store, conn, "DELETE FROM renew_requests WHERE device = ? AND state = ?",
                [device, "pending"])
            run(self.store, conn, "INSERT INTO renew_requests (device, district, csr, state,"
                " received_at) VALUES (?, ?, ?, ?, ?)",
                [device, district, csr, "pending", wire_time(self.clock())])

    def requests(self, state="pending"):
        """[{id, device, district, state, reason, serial, received_at, decided_at,
        decided_by}], newest first (``state`` None: all)."""
        sql = ("SELECT id, device, district, state, reason, serial, received_at, decided_at,"
               " decided_by FROM renew_requests")
        params = []
        if state is not None:
            sql += " WHERE state = ?"
            params.append(state)
        with self.store.connect() as conn:
            return rows(run(self.store, conn, sql + " ORDER BY id DESC", params))

    def _pending(self, conn, request_id):
        row = one(run(self.store, conn, "SELECT id, device, district, csr, state FROM"
                      " renew_requests WHERE id = ?", [int(request_id)]))
        if row is None:
            raise NotFound(f"no certificate request {request_id}")
        if row["state"] != "pending":
            raise Conflict(f"certificate request {request_id} is already {row['state']}")
        return row

    def approve(self, request_id, operator=None):
        """Sign a pending request and send the certificate."""
        with self.store.connect() as conn:
            row = self._pending(conn, request_id)
        try:
            why = self.revoked(row["device"])
            if why:
                raise Refused("revoked", why)
            csr = self.ca.check(row["device"], row["csr"])
        except Refused as exc:
            return self.refuse(request_id, str(exc), operator)
        cert, serial = self.ca.sign(row["device"], csr, row["district"])
        self._decide(row["id"], "approved", None, serial, operator)
        self._answer(row["district"], row["device"], cert=cert)
        self.counters["signed"] += 1
        return self.get(request_id)

    def refuse(self, request_id, reason, operator=None):
        """Refuse a pending request; the device is told and keeps its certificate."""
        reason = (str(reason or "").strip() or "refused by a technician")[:messages.REASON_MAX]
        with self.store.connect() as conn:
            row = self._pending(conn, request_id)
        self._decide(row["id"], "refused", reason, None, operator)
        self._answer(row["district"], row["device"], refused=reason)
        self.counters["refused"] += 1
        return self.get(request_id)

    def _decide(self, request_id, state, reason, serial, operator):
        with self.store.connect() as conn:
            cur = run(self.store, conn, "UPDATE renew_requests SET state = ?, reason = ?,"
                      " serial = ?, decided_at = ?, decided_by = ? WHERE id = ? AND state = ?",
                      [state, reason, serial, wire_time(self.clock()), operator, request_id,
                       "pending"])
            if cur.rowcount == 0:
                raise Conflict(f"certificate request {request_id} was decided meanwhile")

    def get(self, request_id):
        found = [r for r in self.requests(None) if r["id"] == int(request_id)]
        if not found:
            raise NotFound(f"no certificate request {request_id}")
        return found[0]
