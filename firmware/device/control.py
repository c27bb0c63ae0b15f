"""The control socket ``<data-dir>/control.sock``: one JSON request line, one JSON answer.

Requests: ``{"cmd": "press", "input": "garbage", "hold": false}`` (simulation: drives the
mock pin), ``{"cmd": "status"}``, ``{"cmd": "tasks"}``,
``{"cmd": "answer", "task": "T-1"|null, "result": "confirmed"|..., "yes": true}``,
``{"cmd": "report", "input": "garbage"}`` (make a report as a press would, any backend),
``{"cmd": "config"}`` (the applied configuration version, the last refusal, the profile
in use).
Answers: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

import contextlib
import json
import logging
import os
import socket
import threading

from ..errors import DeviceError

log = logging.getLogger("gridlink.device.control")


class ControlServer:
    def __init__(self, path, handler):
        self.path = str(path)
        self.handler = handler
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def is_alive(self):
        return self._thread.is_alive()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                conn.settimeout(30)
                data = b""
                while not data.endswith(b"\n") and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                answer = {"ok": True, **(self.handler(request) or {})}
            except DeviceError as exc:
                answer = {"ok": False, "error": str(exc)}
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": f"bad request: {exc}"}
            except Exception as exc:  # the device keeps running; the caller sees why
                log.exception("control request failed")
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer, ensure_ascii=False).encode() + b"\n")

    def stop(self):
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def request(data_dir, obj, timeout=30.0):
    """Send one request to a running device; returns its answer dict."""
    path = os.path.join(str(data_dir), "control.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise DeviceError(f"no device runs with data dir {data_dir} ({path}: {exc.strerror})"
                          ) from None
    with sock:
        sock.sendall(json.dumps(obj).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
