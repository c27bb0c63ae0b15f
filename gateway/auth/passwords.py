"""Passwords as argon2id hashes (argon2-cffi, RFC 9106's second recommended settings).

Verifying an unknown user's password still costs one hash (against a dummy), so a
sign-in's time does not tell which user names exist.
"""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import AccountError

MIN_LENGTH = 10
_HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
_DUMMY = _HASHER.hash("gridlink: no such user")


def check_strength(password, user=""):
    """Refuse a password a guesser tries first: short, all one character, or the user name."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise AccountError(f"password: at least {MIN_LENGTH} characters")
    if len(set(password)) < 4 or (user and user.lower() in password.lower()):
        raise AccountError("password: too easy to guess (repeated characters or the user name)")
    return password


def hash_password(password, user=""):
    return _HASHER.hash(check_strength(password, user))


def verify(hashed, password):
    """(ok, new_hash): ``new_hash`` is set when the stored hash should be upgraded."""
    try:
        _HASHER.verify(hashed or _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if not hashed:
        return False, None
    return True, (_HASHER.hash(password) if _HASHER.check_needs_rehash(hashed) else None)
