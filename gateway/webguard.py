"""ASGI middleware the HTTP API runs behind: request body limits and security headers.

- ``BodyLimit``: a request body larger than ``max_bytes`` (or the larger limit ``wider``
  gives paths matching a pattern: a photo upload) is answered 413 before a route reads it
  (by its Content-Length, or while a chunked body streams in).
- ``SecurityHeaders``: ``Strict-Transport-Security`` on every answer over HTTPS, and the
  headers that keep the board out of frames and stop content-type sniffing.
"""

import json
import re

DEFAULT_BODY_LIMIT = 64 * 1024
HSTS = "max-age=31536000; includeSubDomains"


class BodyLimit:
    def __init__(self, app, max_bytes=DEFAULT_BODY_LIMIT, wider=()):
        self.app = app
        self.max_bytes = max_bytes
        self.wider = tuple((re.compile(p), n) for p, n in wider)  # (path pattern, limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = next((n for p, n in self.wider if p.fullmatch(scope.get("path", ""))),
                     self.max_bytes)
        if limit != self.max_bytes:
            return await BodyLimit(self.app, limit)(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        if length is not None or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        # a chunked body: read it here (it is small, or refused) and hand it on whole
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._refuse(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        replayed = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return replayed.pop() if replayed else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        https = scope.get("scheme") == "https"

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"same-origin")]
                if https:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
