"""A department's system as the bridge tests meet it: a real HTTP server on 127.0.0.1
that takes case messages (webhook JSON, or Open311 ``POST requests.json`` forms), keeps
one per ``Idempotency-Key`` and counts every request — and can be told to fail (HTTP
500), to be down (stopped: connection refused; started again on the same port) or to
answer slowly (it keeps the message, then answers after the client gave up)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from gridlink.gateway.ports import free_port


class Receiver:
    """``mode``: ``ok``, ``fail`` (500, nothing kept) or ``slow`` (kept, answered after
    ``slow_s``).  ``hits`` counts requests per key; ``kept`` holds the first body of each
    key (JSON, or the form's fields)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.mode = "ok"
        self.slow_s = 1.5
        self.hits = {}
        self.kept = {}
        self.lock = threading.Lock()
        self._server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver._take(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _take(self, handler):
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        key = handler.headers.get("Idempotency-Key")
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            mode = self.mode
        if mode == "fail" or not key:
            return _answer(handler, 500, {"error": "the department's system is down"})
        if handler.headers.get("Content-Type", "").startswith("application/json"):
            taken = json.loads(body)
        else:
            taken = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            if key not in self.kept:
                self.kept[key] = taken
            n = list(self.kept).index(key) + 1
        if mode == "slow":
            time.sleep(self.slow_s)
        if handler.path.endswith("requests.json"):
            return _answer(handler, 201, [{"service_request_id": f"r-{n}"}])
        return _answer(handler, 200, {"id": f"w-{n}"})

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _answer(handler, status, body):
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up waiting (a slow answer)
        pass


