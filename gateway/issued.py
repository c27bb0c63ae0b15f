"""The district's record of issued identities: ``issued.csv`` beside the CA certificate.

One line per certificate issued (time, device id, certificate serial, valid until,
district, target, the serial it replaced), appended whole and fsynced under a lock, so
parallel writers (``gridlink flash`` batch jobs, the gateway's renewals) and a crash never
leave a torn or lost line.  Provisioning reads it to refuse a device id that is already on
another board; revocation maps certificate serials to device ids with it; the fleet view
shows each device's certificate end from it.

``issued.json`` (a list, or ``{"issued": [...]}``, of objects with the same keys, for
records written by other tools) is read as well: ``serial`` hex text as openssl prints it
(an int is taken as is), ``issued_at`` and ``not_after`` optional.
"""

import csv
import fcntl
import io
import json
import os
import threading
import time
from pathlib import Path

from .crl import parse_serial
from .errors import ConfigError

NAME = "issued.csv"
RECORD_NAMES = ("issued.json", NAME)
COLUMNS = ("time", "device", "serial", "not_after", "district", "target", "replaces")
DEVICE_DAYS = 825  # a device certificate's life, as flash issues and the gateway renews it
_lock = threading.Lock()


class IssuedRecord:
    """The ``issued.csv`` at ``path``; its errors are ``error`` (ConfigError here; the flash
    tools' subclass makes them FlashError)."""

    error = ConfigError

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def beside(cls, ca_cert):
        """The record in the folder of the CA certificate ``ca_cert``."""
        return cls(Path(ca_cert).resolve().parent / NAME)

    def rows(self):
        """Every whole line (a dict of the columns, text as written) with a device and a
        serial, oldest first; none when there is no record yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self.error(f"{self.path}: {exc.strerror or exc}") from None
        return [row for row in csv.DictReader(io.StringIO(text))
                if row.get("device") and row.get("serial") and None not in row]

    def latest(self, device):
        """The newest line for ``device``, or None."""
        found = [r for r in self.rows() if r["device"] == device]
        return found[-1] if found else None

    def append(self, device, serial, not_after, district="", target="", replaces=""):
        """One line for a certificate just issued (the header first in a new record)."""
        try:
            append_row(self.path, COLUMNS, [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                            device, serial, not_after, district, target,
                                            replaces])
        except OSError as exc:
            raise self.error(f"{self.path}: cannot record the issued certificate "
                             f"({exc.strerror or exc})") from None


def append_row(path, columns, row):
    """One CSV line appended to ``path`` whole and fsynced under a lock (``columns`` as
    the header line first in a new file), so parallel writers and a crash never leave a
    torn or lost line.  An OSError goes to the caller."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(row)
    data = line.getvalue().encode()
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size == 0:
                data = (",".join(columns) + "\n").encode() + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_records(path):
    """[{device, serial (int), issued_at, not_after}] from an issued-ids record (``.csv`` or
    ``.json``); the two times are text as recorded (``issued_at``: that column, or
    ``issued.csv``'s ``time``, to the millisecond), or None.  Strict: an entry without a
    device or a serial, or an unreadable serial, is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"issued-ids record {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
        else:
            rows = json.loads(text)
            if isinstance(rows, dict):
                rows = rows.get("issued", [])
        out = []
        for i, row in enumerate(rows):
            device, serial = row.get("device"), row.get("serial")
            if not device or serial in (None, ""):
                raise ValueError(f"entry {i + 1} needs device and serial")
            out.append({"device": str(device).strip(), "serial": parse_serial(serial),
                        "issued_at": _ms(row.get("issued_at") or row.get("time")),
                        "not_after": row.get("not_after") or None})
        return out
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"issued-ids record {path}: {exc}") from None


def _ms(stamp):
    """An ISO UTC time as the validator compares them (``…SS.mmmZ``): ``issued.csv``'s
    ``time`` is written to the second (``…SSZ``), which as text sorts after every
    millisecond of its own second."""
    if not stamp:
        return None
    stamp = str(stamp).strip()
    if len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T":
        return stamp[:-1] + ".000Z"
    return stamp


def read_issued(path):
    """[(device, serial int, issued_at ISO text or None)] from an issued-ids record."""
    return [(r["device"], r["serial"], r["issued_at"]) for r in read_records(path)]


def default_record(crl_path):
    """The issued-ids record beside a CRL, if there is one."""
    for name in RECORD_NAMES:
        candidate = Path(crl_path).parent / name
        if candidate.exists():
            return candidate
    return None
