"""The sign-in and permission errors; the HTTP side maps them to 401, 403 and 429."""

from ..errors import GatewayError


class AuthError(GatewayError):
    """Base of the centre's sign-in and permission errors."""


class Unauthenticated(AuthError):
    """No valid session or token: sign in first (HTTP 401)."""


class Forbidden(AuthError):
    """Signed in, but the role does not allow this (HTTP 403)."""


class LockedOut(AuthError):
    """Too many failed sign-ins: wait ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after


class AccountError(AuthError, ValueError):
    """A bad user name, role, password or token request, named."""
