"""uvicorn serving an ASGI app from a background thread: the gateway's HTTP side.

One class for every app the gateway serves in-process: the intake board's (with
``/metrics``), the metrics-only one when the board is not installed, and the apps the
demo and the browser tests start.
"""

import socket
import threading
import time


class BackgroundServer:
    """uvicorn serving an app from a background thread, on a port bound at construction.

    ``port=0`` picks a free one; ``url`` is known before ``start()``, which returns once
    the server accepts connections (or raises ``RuntimeError``).
    """

    def __init__(self, app, host="127.0.0.1", port=0, log_level="warning", *, certfile=None,
                 keyfile=None):
        """``certfile``/``keyfile`` (PEM) serve HTTPS instead of HTTP."""
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        # forwarded headers are judged by the app against its configured proxies
        # (``auth.web.TrustedProxies``), never by uvicorn's default trust of 127.0.0.1
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level,
                                                    timeout_graceful_shutdown=2,
                                                    proxy_headers=False,
                                                    ssl_certfile=certfile, ssl_keyfile=keyfile))
        self.scheme = "https" if certfile else "http"
        self.thread = None

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout=10.0):
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="gridlink-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self):
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
