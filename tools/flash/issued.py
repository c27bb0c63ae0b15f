"""The district's record of issued identities: ``issued.csv`` beside the CA certificate.

One line per certificate issued (device id, certificate serial, valid until, target,
time, what it replaced), appended whole and fsynced under a lock, so parallel batch
jobs and a crash never leave a torn or lost line.  Provisioning reads it to refuse a
device id that is already on another board; revocation needs the serials.
"""

import csv
import fcntl
import io
import os
import threading
import time
from pathlib import Path

from .errors import FlashError

NAME = "issued.csv"
COLUMNS = ("time", "device", "serial", "not_after", "district", "target", "replaces")
_lock = threading.Lock()


class IssuedRecord:
    def __init__(self, ca_cert):
        self.path = Path(ca_cert).resolve().parent / NAME

    def rows(self):
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FlashError(f"{self.path}: {exc.strerror or exc}") from None
        out = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("device") and row.get("serial") and None not in row:
                out.append(row)
        return out

    def latest(self, device):
        """The newest line for ``device``, or None."""
        found = [r for r in self.rows() if r["device"] == device]
        return found[-1] if found else None

    def append(self, device, serial, not_after, district="", target="", replaces=""):
        line = io.StringIO()
        w = csv.writer(line, lineterminator="\n")
        w.writerow([time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device, serial,
                    not_after, district, target, replaces])
        with _lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FlashError(f"{self.path}: cannot record the issued certificate "
                                 f"({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                data = line.getvalue().encode()
                if os.fstat(fd).st_size == 0:
                    data = (",".join(COLUMNS) + "\n").encode() + data
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
