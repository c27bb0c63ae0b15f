"""The HTTP side of sign-in: who is calling, may they, and from where.

:class:`Guard` is the app-wide dependency every API route runs first.  It finds the
route's line in ``policy.POLICY`` (a route without one is refused), resolves the caller
from a bearer token (``Authorization: Bearer glt_…``) or the board's session cookie,
checks the permission, and — for a state-changing request signed in by cookie — the
``X-CSRF-Token`` header against the session's token.  The caller (``Principal``) and the
client's address are left on ``request.state`` for the routes and the audit trail.
"""

import hmac
import ipaddress
import threading
import time
from collections import deque

from starlette.requests import Request

from . import policy
from . import roles as role_table
from .errors import Forbidden, LockedOut, Unauthenticated

COOKIE = "gridlink_session"
CSRF_HEADER = "X-CSRF-Token"
WWW_AUTHENTICATE = 'Bearer realm="gridlink", Cookie realm="gridlink"'


class TrustedProxies:
    """Addresses (or networks) whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are
    believed; from anyone else those headers are ignored."""

    def __init__(self, proxies=()):
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in proxies)

    def trusts(self, host):
        try:
            ip = ipaddress.ip_address(host)
        except (TypeError, ValueError):
            return False
        return any(ip in net for net in self.networks)

    def address(self, request):
        """The client's address: the peer, or, behind trusted proxies, the last address in
        ``X-Forwarded-For`` that is not itself a trusted proxy."""
        peer = request.client.host if request.client else None
        if not self.trusts(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self.trusts(hop):
                return hop
        return peer

    def https(self, request):
        """Whether the client reached us over HTTPS (directly, or at a trusted proxy)."""
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else None
        return (self.trusts(peer)
                and request.headers.get("x-forwarded-proto", "").lower() == "https")


class RateLimit:
    """At most ``limit`` attempts per ``window_s`` seconds per key (a client address),
    kept in memory: ``hit(key)`` raises :class:`LockedOut` past the limit."""

    def __init__(self, limit=10, window_s=60.0, *, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self.seen = {}
        self.lock = threading.Lock()

    def hit(self, key):
        now = self.clock()
        with self.lock:
            times = self.seen.setdefault(key, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.limit:
                wait = max(1, int(times[0] + self.window_s - now + 0.999))
                raise LockedOut(f"too many sign-in attempts from {key}: try again in "
                                f"{wait} s", retry_after=wait)
            times.append(now)
            if len(self.seen) > 10000:  # forget idle addresses
                for k in [k for k, t in self.seen.items() if not t or t[-1] <= now - self.window_s]:
                    del self.seen[k]


class Guard:
    """The app-wide dependency: resolve the caller, apply the route's policy, check CSRF."""

    def __init__(self, accounts, proxies):
        self.accounts = accounts
        self.proxies = proxies

    def __call__(self, request: Request):
        route = request.scope.get("route")
        path = getattr(route, "path", None)
        request.state.address = self.proxies.address(request)
        request.state.principal = None
        need = policy.required(request.method, path) if path else None
        if need is None:
            raise Forbidden(f"{request.method} {path}: not in the access policy")
        if need == policy.PUBLIC:
            return
        principal = self.caller(request)
        if principal.via == "session" and request.method not in policy.SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not (sent and principal.csrf
                    and hmac.compare_digest(sent.encode(), principal.csrf.encode())):
                raise Forbidden(f"missing or wrong {CSRF_HEADER} header: reload the board")
        if need != policy.SIGNED_IN and not principal.can(need):
            held = "、".join(role_table.LABELS.get(r, r) for r in principal.roles) or "none"
            raise Forbidden(f"{principal.name} ({held}) may not do this: it needs "
                            f"the {need!r} permission")
        request.state.principal = principal

    def caller(self, request):
        """The Principal of the request's bearer token or session cookie."""
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthenticated("Authorization: use 'Bearer <API token>'")
            return self.accounts.by_token(secret.strip())
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return self.accounts.session(cookie)
        raise Unauthenticated("sign in first (the board) or send an API token")


def set_session_cookie(response, value, *, secure, max_age):
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", secure=secure,
                        httponly=True, samesite="strict")


def clear_session_cookie(response, *, secure):
    response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")


def document(schema):
    """The OpenAPI document told the truth about sign-in: the two ways to sign in, and per
    operation the security it takes and the 401/403 it may answer."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update({
        "token": {"type": "http", "scheme": "bearer",
                  "description": "an API token (glt_…): `gridlink users token`"},
        "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                    "description": "the board's session (POST /api/session); a "
                                   f"state-changing request also sends {CSRF_HEADER}"},
    })
    error = {"content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/ErrorBody"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            need = policy.required(method, path)
            responses = op.setdefault("responses", {})
            if "requestBody" in op:
                responses.setdefault("413", {"description": "a body over the limit (64 KiB)",
                                             **error})
            if need == policy.PUBLIC:
                op["security"] = []
                continue
            op["security"] = [{"token": []}, {"session": []}]
            responses.setdefault("401", {"description": "not signed in", **error})
            if need != policy.SIGNED_IN or method.upper() not in policy.SAFE_METHODS:
                responses.setdefault("403", {
                    "description": f"the role lacks {need!r}"
                    + ("" if method.upper() in policy.SAFE_METHODS
                       else f", or a board request without {CSRF_HEADER}"), **error})
    return schema
