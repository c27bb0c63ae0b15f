"""The demo's simulated department's system: a small HTTP server on 127.0.0.1 that takes
the cases the gateway's bridge dispatches to it and their later moves (返工, 结案: webhook
JSON, ``docs/cases.md``), keeping
one per ``Idempotency-Key``, and a photo of the handled spot for its 处置反馈."""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY_MAX = 256 * 1024


class DepartmentSystem:
    """``received`` maps each idempotency key (a case number for a 派遣, ``case_no:n``
    for a later move) to the case message."""

    def __init__(self):
        self.received = {}
        self.lock = threading.Lock()
        system = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                key = self.headers.get("Idempotency-Key")
                try:
                    message = json.loads(self.rfile.read(min(n, BODY_MAX)))
                except ValueError:
                    message = None
                if not key or not isinstance(message, dict):
                    return self._answer(400, {"error": "a case message with its key"})
                with system.lock:
                    system.received.setdefault(key, message)
                return self._answer(200, {"id": f"HW-{key}"})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="demo-department", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def has(self, key):
        with self.lock:
            return key in self.received


def spot_photo(n):
    """A JPEG of the handled spot (a plain picture: the demo has no street to shoot)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 240), (70 + 20 * n, 140, 90)).save(out, "JPEG", quality=80)
    return out.getvalue()
