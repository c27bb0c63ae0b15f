"""The board's session: sign in (a cookie and a CSRF token), who is signed in, sign out.

Sign-ins are limited per client address (``RateLimit``) on top of the account lockout;
every sign-in, failed sign-in and sign-out goes to the audit trail.
"""

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ..auth import roles as role_table
from ..auth.accounts import ABSOLUTE_S
from ..auth.errors import LockedOut, Unauthenticated
from ..auth.web import COOKIE, clear_session_cookie, set_session_cookie
from .bodies import ErrorBody


class SignIn(BaseModel):
    user: str = Field(..., min_length=1, max_length=64, examples=["slw-01"])
    password: str = Field(..., min_length=1, max_length=1024)


class SessionInfo(BaseModel):
    user: str
    display: str
    roles: list[str] = Field(..., description="acceptor, shift_lead, technician, viewer, admin")
    labels: list[str] = Field(..., description="the roles' names on the board (受理员 …)")
    via: str = Field(..., description="session (the board's cookie) or token")
    csrf: str | None = Field(None, description="send as X-CSRF-Token on every change")


REFUSED = {401: {"model": ErrorBody, "description": "wrong user name or password"},
           429: {"model": ErrorBody,
                 "description": "too many attempts or locked: see Retry-After"}}


def build_router(accounts, trail, limiter, proxies):
    """``/api/session`` over ``Accounts``, an ``AuditTrail``, a sign-in ``RateLimit`` and
    the ``TrustedProxies`` (which say whether the client came over HTTPS)."""
    router = APIRouter(tags=["session"])

    def info(principal):
        user = accounts.get(principal.name)
        return {"user": principal.name, "display": user["display"],
                "roles": list(principal.roles),
                "labels": [role_table.LABELS[r] for r in principal.roles],
                "via": principal.via, "csrf": principal.csrf}

    @router.post("/api/session", response_model=SessionInfo, responses=REFUSED,
                 summary="Sign in: sets the session cookie, answers the CSRF token")
    def sign_in(body: SignIn, request: Request, response: Response):
        address = request.state.address
        limiter.hit(address or "?")
        target = f"user:{body.user[:64]}"
        try:
            principal = accounts.authenticate(body.user, body.password)
        except (Unauthenticated, LockedOut) as exc:
            trail.append("anonymous", "session.failed", target=target, address=address,
                         after={"reason": str(exc)})
            raise
        cookie, csrf = accounts.open_session(principal, address)
        trail.append(principal.name, "session.open", target=target, address=address)
        set_session_cookie(response, cookie, secure=proxies.https(request), max_age=ABSOLUTE_S)
        principal.csrf, principal.via = csrf, "session"
        return info(principal)

    @router.get("/api/session", response_model=SessionInfo,
                summary="Who is signed in (the board asks on reload)")
    def current(request: Request):
        return info(request.state.principal)

    @router.delete("/api/session", status_code=204, summary="Sign out")
    def sign_out(request: Request, response: Response):
        principal = request.state.principal
        if principal.via == "session":
            accounts.close_session(request.cookies.get(COOKIE))
            trail.append(principal.name, "session.close", target=f"user:{principal.name}",
                         address=request.state.address)
        clear_session_cookie(response, secure=proxies.https(request))
        response.status_code = 204
        return None

    return router
