"""Signing in through the city's identity provider (OpenID Connect, ``auth.oidc``).

``GET /api/session/providers`` tells the board's sign-in page whether to offer the
provider's button; ``GET /api/session/oidc`` sends the browser to the provider with
``state``, ``nonce`` and a PKCE challenge, whose secrets ride in a short-lived signed
cookie bound to that browser; ``GET /api/session/oidc/callback`` takes the provider's
answer and, when the ID token holds and its groups give a gridlink role, opens a normal
board session (the same cookie, CSRF token and timeouts as a password sign-in).  Every
sign-in and every refusal is on the audit trail with the provider's subject.
"""


from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from ..auth.accounts import ABSOLUTE_S
from ..auth.oidc import PENDING_S, OidcRefused, PendingSeal
from ..auth.web import set_session_cookie
from .bodies import ErrorBody

PENDING_COOKIE = "gridlink_oidc"
PENDING_PATH = "/api/session/oidc"
CALLBACK = PENDING_PATH + "/callback"


class Provider(BaseModel):
    kind: str = Field(..., examples=["oidc"])
    label: str = Field(..., description="the button's text on the sign-in page")
    issuer: str
    start: str = Field(..., description="where the button goes")


def _error(description):
    return {"model": ErrorBody, "description": description}


NOT_CONFIGURED = {404: _error("no identity provider is configured")}
START = {303: {"description": "to the identity provider's sign-in page"},
         **NOT_CONFIGURED,
         429: _error("too many sign-in attempts from this address: see Retry-After"),
         502: _error("the identity provider is unreachable or answers nonsense")}
CALLBACK_ANSWERS = {
    303: {"description": "signed in: to the board, with the session cookie set"},
    400: _error("state missing or not the one this browser started with"),
    401: _error("the provider refused, or the ID token does not hold (signature, "
                "issuer, audience, expiry, nonce)"),
    403: _error("the person's groups give no gridlink role, or the user is disabled"),
    **NOT_CONFIGURED,
    502: _error("the identity provider is unreachable")}


def build_router(client, links, accounts, trail, limiter, proxies):
    """The provider's routes over an ``OidcClient`` (None: no provider configured, the
    routes answer 404), its ``OidcLinks``, ``Accounts``, the ``AuditTrail``, the sign-in
    ``RateLimit`` and the ``TrustedProxies``."""
    router = APIRouter(tags=["session"])
    seal = PendingSeal(accounts.secret)

    def configured():
        if client is None:
            raise OidcRefused("no identity provider is configured on this gateway "
                              "(gridlink gateway run --oidc FILE)", 404)
        return client.settings

    def redirect_uri(request, settings):
        if settings.redirect_uri:
            return settings.redirect_uri
        scheme = "https" if proxies.https(request) else "http"
        return f"{scheme}://{request.headers.get('host', 'localhost')}{CALLBACK}"

    def refused(exc, settings, address):
        trail.append("anonymous", "session.failed",
                     target=f"oidc:{exc.subject or '?'}", address=address,
                     after={"via": "oidc", "issuer": settings.issuer,
                            "subject": exc.subject, "subject_verified": exc.verified,
                            "reason": str(exc)})

    @router.get("/api/session/providers", response_model=list[Provider],
                summary="Identity providers the sign-in page offers (none: passwords only)")
    def providers():
        if client is None:
            return []
        return [{"kind": "oidc", "label": client.settings.label,
                 "issuer": client.settings.issuer, "start": PENDING_PATH}]

    @router.get(PENDING_PATH, status_code=303, response_class=RedirectResponse,
                responses=START, summary="Sign in through the identity provider (a redirect)")
    def start(request: Request):
        settings = configured()
        address = request.state.address
        limiter.hit(address or "?")
        try:
            url, pending = client.begin(redirect_uri(request, settings))
        except OidcRefused as exc:
            refused(exc, settings, address)
            raise
        response = RedirectResponse(url, status_code=303)
        # Lax, not Strict: it must come back with the provider's (cross-site) redirect
        response.set_cookie(PENDING_COOKIE, seal.seal(pending), max_age=PENDING_S,
                            path=PENDING_PATH, secure=proxies.https(request), httponly=True,
                            samesite="lax")
        return response

    @router.get(CALLBACK, status_code=303, response_class=RedirectResponse,
                responses=CALLBACK_ANSWERS,
                summary="The identity provider's answer: opens the board session")
    def callback(request: Request,
                 code: str | None = Query(None, max_length=4096),
                 state: str | None = Query(None, max_length=512),
                 error: str | None = Query(None, max_length=256),
                 error_description: str | None = Query(None, max_length=1024)):
        settings = configured()
        address = request.state.address
        secure = proxies.https(request)
        params = {"code": code, "state": state, "error": error,
                  "error_description": error_description}
        try:
            claims = client.finish(seal.open(request.cookies.get(PENDING_COOKIE)), params)
            granted, groups = settings.roles_for(claims)
            if not granted:
                raise OidcRefused(
                    f"signed in at the identity provider as {claims['sub']!r}, but no "
                    f"gridlink role is mapped to the groups {groups} (claim "
                    f"{settings.role_claim!r}): ask the centre's administrator", 403,
                    claims["sub"], True)
            principal = links.sign_in(settings.issuer, claims, granted, address)
        except OidcRefused as exc:
            refused(exc, settings, address)
            response = JSONResponse({"detail": str(exc)}, status_code=exc.status)
            response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH, secure=secure,
                                   httponly=True, samesite="lax")
            return response
        cookie, _ = accounts.open_session(principal, address)
        trail.append(principal.name, "session.open", target=f"user:{principal.name}",
                     address=address,
                     after={"via": "oidc", "issuer": settings.issuer, "subject": claims["sub"],
                            "groups": groups, "roles": list(principal.roles)})
        response = RedirectResponse("/board/", status_code=303)
        set_session_cookie(response, cookie, secure=secure, max_age=ABSOLUTE_S)
        response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH, secure=secure,
                               httponly=True, samesite="lax")
        return response

    return router
