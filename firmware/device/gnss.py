"""GNSS input: bytes from a serial port (pyserial) or gpsd, through the core NMEA decoder.

``port`` is a device path (``/dev/serial0``, a pty) or any pyserial URL
(``socket://host:port``, ``rfc2217://…``, ``loop://``) opened with
``serial.serial_for_url``.  With gpsd, the reader asks gpsd for raw NMEA
(``?WATCH={"enable":true,"nmea":true}``) so the same decoder and policy apply.

The reader never stops on bad input: garbage, bad checksums and silence are counted and
show up in ``health()`` (state ``ok``, ``no_fix``, ``garbage``, ``silent``, ``no_port``)
and in one log line each time the state changes.
"""

import contextlib
import json
import logging
import socket
import threading
import time

from ..core.nmea import NmeaDecoder

log = logging.getLogger("gridlink.device.gnss")

SILENT_AFTER_S = 5.0


class GnssReader:
    """A thread keeping the latest fix; ``snapshot()`` gives (fix, age seconds)."""

    def __init__(self, source="serial", port=None, baud=9600, gpsd="127.0.0.1:2947",
                 on_fix=None, clock=time.monotonic, min_year=2020):
        self.source, self.port, self.baud, self.gpsd = source, port, baud, gpsd
        self.on_fix = on_fix
        self.clock = clock
        self.decoder = NmeaDecoder(min_year=min_year)
        self.lock = threading.Lock()
        self.fix = None              # latest core Fix with a position
        self.fix_at = None           # monotonic time it arrived
        self.last_epoch = None       # latest Fix of any kind (time-only, no-fix)
        self.bytes = 0
        self.decoder_errors = 0
        self.last_byte_at = None
        self.first_read_at = None
        self.opened_at = None
        self.started_at = clock()
        self.error = None
        self.state = "starting"
        self._accepted_seen, self._accepted_at = 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gnss", daemon=True)
        self._link = None

    def start(self):
        self._thread.start()
        return self

    def is_alive(self):
        """True while the reader thread runs (bad input and a lost port do not end it)."""
        return self._thread.is_alive()

    def stop(self):
        """End the reader; the port closes in its own thread (reads time out in 0.5 s)."""
        self._stop.set()
        self._thread.join(timeout=3)

    # -- reading ------------------------------------------------------------------------

    def _open(self):
        if self.source == "gpsd":
            host, _, port = self.gpsd.rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=2)
            sock.sendall(b'?WATCH={"enable":true,"nmea":true};\n')
            sock.settimeout(0.5)
            return _SocketLink(sock)
        import serial

        return serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.5)

    def _run(self):
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._link = self._open()
            except (OSError, ValueError) as exc:
                self._set_error(f"cannot open {self._where()}: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
                continue
            backoff = 0.5
            self.opened_at = self.clock()
            self.error = None
            try:
                while not self._stop.is_set():
                    data = self._link.read(4096)
                    self._feed(data)
            except (OSError, ValueError) as exc:
                if self._stop.is_set():
                    break
                self._set_error(f"{self._where()} failed: {exc}")
                self._stop.wait(backoff)
            finally:
                with contextlib.suppress(OSError):
                    self._link.close()
                self._link = None

    def _where(self):
        return f"gpsd {self.gpsd}" if self.source == "gpsd" else f"serial port {self.port}"

    def _set_error(self, text):
        if text != self.error:
            log.error("GNSS: %s", text)
        self.error = text
        self._update_state()

    def _feed(self, data):
        now = self.clock()
        if data:
            if self.first_read_at is None:
                self.first_read_at = now
            self.bytes += len(data)
            self.last_byte_at = now
            try:
                fixes = self.decoder.feed(data)
            except Exception:  # a decoder bug must not silence the receiver: log, restart it
                log.exception("GNSS: the NMEA decoder failed on %d bytes; restarted", len(data))
                self.decoder_errors += 1
                self.decoder = NmeaDecoder(min_year=self.decoder.min_year)
                fixes = []
            for fix in fixes:
                with self.lock:
                    self.last_epoch = fix
                    if fix.has_position:
                        self.fix, self.fix_at = fix, now
                if fix.has_position and self.on_fix is not None:
                    try:
                        self.on_fix(fix)
                    except Exception:  # a consumer bug must not stop the receiver
                        log.exception("GNSS: fix consumer failed")
        self._update_state()

    # -- what the rest of the device sees --------------------------------------------------

    def snapshot(self):
        """(latest Fix with a position or None, its age in seconds or None)."""
        with self.lock:
            if self.fix is None:
                return None, None
            return self.fix, self.clock() - self.fix_at

    def _update_state(self):
        now = self.clock()
        if self.decoder.accepted != self._accepted_seen:
            self._accepted_seen, self._accepted_at = self.decoder.accepted, now
        quiet = SILENT_AFTER_S
        if self._link is None and self.error:
            state = "no_port"
        elif self.last_byte_at is None:
            state = "silent" if now - (self.opened_at or self.started_at) > quiet else "starting"
        elif now - self.last_byte_at > quiet:
            state = "silent"
        elif self.fix_at is not None and now - self.fix_at <= quiet:
            state = "ok"
        elif self._accepted_at is None or now - self._accepted_at > quiet:
            state = "garbage" if now - (self.first_read_at or now) > 1.0 else "starting"
        else:
            state = "no_fix"
        if state != self.state:
            level = logging.INFO if state in ("ok", "starting") else logging.WARNING
            log.log(level, "GNSS: %s (%s)", _EXPLAIN[state], self._where())
            self.state = state
        return state

    def health(self):
        """A JSON-ready summary for the local status."""
        state = self._update_state()
        _fix, age = self.snapshot()
        stats = self.decoder.stats()
        return {"state": state, "explain": _EXPLAIN[state], "port": self._where(),
                "bytes": self.bytes, "accepted": stats["accepted"],
                "rejected": stats["rejected"], "fixes": stats["fixes"],
                "fix_age": None if age is None else round(age, 3), "error": self.error,
                "decoder_errors": self.decoder_errors}


_EXPLAIN = {
    "starting": "waiting for the receiver",
    "ok": "receiving fixes",
    "no_fix": "receiver talks, but has no position fix",
    "garbage": "bytes arrive but no valid NMEA sentence (wrong baud rate or not a GNSS "
               "receiver?)",
    "silent": f"no bytes from the receiver for more than {SILENT_AFTER_S:.0f} s "
              "(cable, power, port?)",
    "no_port": "the port cannot be opened",
}


class _SocketLink:
    """gpsd's NMEA stream as a read()/close() link; gpsd's own JSON lines are dropped."""

    def __init__(self, sock):
        self.sock = sock
        self._pending = b""

    def read(self, n):
        try:
            data = self.sock.recv(n)
        except TimeoutError:
            return b""
        if not data:
            raise OSError("gpsd closed the connection")
        data = self._pending + data
        lines = data.split(b"\n")
        self._pending = lines.pop()
        keep = [line for line in lines if not line.startswith(b"{")]
        for line in lines:
            if line.startswith(b'{"class":"ERROR"'):
                log.error("gpsd: %s", json.loads(line).get("message"))
        return b"".join(line + b"\n" for line in keep)

    def close(self):
        self.sock.close()
