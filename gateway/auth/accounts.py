"""Users, API tokens and board sessions, kept in the intake store.

- A user has a name, roles and an argon2id password hash; a disabled user cannot sign in
  and its sessions and tokens stop working at once.  Five failed sign-ins in a row lock
  the account for ``LOCKOUT_S``; the lock is kept in the store, so every gateway worker
  honours it.
- An API token (``glt_…``) is shown once, stored as its SHA-256 digest, scoped to roles
  the owner holds, expires, and can be revoked.
- A session is a random id in a signed cookie; the store keeps its digest, its CSRF
  token, when it began and when it was last seen: it ends after ``IDLE_S`` without a
  request or ``ABSOLUTE_S`` after sign-in, whichever comes first.
"""

import hashlib
import hmac
import math
import secrets
import time

from ..clock import epoch_from_iso, wire_time
from ..store.sql import one, rows, run
from . import passwords
from . import roles as role_table
from .errors import AccountError, LockedOut, Unauthenticated

IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600          # a long shift
MAX_FAILED = 5
LOCKOUT_S = 15 * 60
TOKEN_DAYS_DEFAULT = 90
TOKEN_PREFIX = "glt_"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name):
    if not isinstance(name, str) or not 2 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise AccountError(f"user name {name!r}: 2-64 of a-z 0-9 - _ . (lower case)")
    return name


class Principal:
    """Who is acting: a user (through a session or a token) and the roles in force."""

    __slots__ = ("csrf", "name", "roles", "session", "via")

    def __init__(self, name, roles, via, session=None, csrf=None):
        self.name, self.roles, self.via, self.session, self.csrf = (
            name, tuple(roles), via, session, csrf)

    def can(self, permission):
        return role_table.allows(self.roles, permission)

    def __repr__(self):
        return f"<Principal {self.name} {','.join(self.roles)} via {self.via}>"


class Accounts:
    """The centre's people over ``store`` (migrated with ``auth.migrations.MIGRATIONS``)."""

    def __init__(self, store, *, clock=time.time, secret=None):
        self.store = store
        self.clock = clock
        # signs session cookies; a restart with a new secret signs everyone out
        self.secret = secret or secrets.token_bytes(32)

    # -- users ---------------------------------------------------------------------------

    def add(self, name, roles, password, *, display=None):
        """A new user; ``password`` None makes one who cannot sign in with a password
        (signed in by the city's identity provider, ``auth.oidc``)."""
        name = check_name(name)
        granted = self._roles(roles)
        digest = None if password is None else passwords.hash_password(password, name)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            if one(run(self.store, conn, "SELECT name FROM users WHERE name = ?", [name])):
                raise AccountError(f"user {name} exists (reset-password or disable it)")
            run(self.store, conn,
                "INSERT INTO users (name, display, roles, password_hash, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [name, display or name, ",".join(granted), digest, now, now])
        return self.get(name)

    def get(self, name):
        with self.store.connect(readonly=True) as conn:
            row = one(run(self.store, conn, "SELECT * FROM users WHERE name = ?", [name]))
        if row is None:
            raise AccountError(f"no user {name!r}")
        return _public(row)

    def list(self):
        with self.store.connect(readonly=True) as conn:
            return [_public(r) for r in rows(run(self.store, conn,
                                                 "SELECT * FROM users ORDER BY name"))]

    def count(self):
        with self.store.connect(readonly=True) as conn:
            return one(run(self.store, conn, "SELECT COUNT(*) AS n FROM users"))["n"]

    def set_disabled(self, name, disabled=True):
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            cur = run(self.store, conn, "UPDATE users SET disabled = ?, updated_at = ?"
                      " WHERE name = ?", [1 if disabled else 0, now, name])
            if cur.rowcount == 0:
                raise AccountError(f"no user {name!r}")
            if disabled:
                self._end_sessions(conn, name, now)
        return self.get(name)

    def reset_password(self, name, password):
        digest = passwords.hash_password(password, name)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            cur = run(self.store, conn,
                      "UPDATE users SET password_hash = ?, failed = 0, locked_until = NULL,"
                      " updated_at = ? WHERE name = ?", [digest, now, name])
            if cur.rowcount == 0:
                raise AccountError(f"no user {name!r}")
            self._end_sessions(conn, name, now)

    def set_roles(self, name, roles):
        granted = self._roles(roles)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            cur = run(self.store, conn, "UPDATE users SET roles = ?, updated_at = ?"
                      " WHERE name = ?", [",".join(granted), now, name])
            if cur.rowcount == 0:
                raise AccountError(f"no user {name!r}")
        return self.get(name)

    @staticmethod
    def _roles(roles):
        try:
            return role_table.parse_roles(roles)
        except ValueError as exc:
            raise AccountError(str(exc)) from None

    # -- sign-in -------------------------------------------------------------------------

    def authenticate(self, name, password):
        """The user's Principal for a right password; ``Unauthenticated`` otherwise (one
        message for a wrong name or password), ``LockedOut`` while locked."""
        now = self.clock()
        with self.store.connect() as conn:
            row = one(run(self.store, conn, "SELECT * FROM users WHERE name = ?",
                          [name if isinstance(name, str) else ""]))
            locked = row and row["locked_until"] and epoch_from_iso(row["locked_until"])
            if locked and locked > now:
                wait = math.ceil(locked - now)
                raise LockedOut(f"user {name}: locked after {MAX_FAILED} failed sign-ins; "
                                f"try again in {wait} s", retry_after=wait)
            ok, upgraded = passwords.verify(row["password_hash"] if row else None,
                                            password if isinstance(password, str) else "")
            refused = not ok or row["disabled"]
            if refused and row:  # counted in this transaction, which must commit
                failed = (0 if locked else row["failed"]) + 1
                until = (wire_time(now + LOCKOUT_S) if failed >= MAX_FAILED else None)
                run(self.store, conn, "UPDATE users SET failed = ?, locked_until = ?"
                    " WHERE name = ?", [0 if until else failed, until, name])
            elif not refused:
                run(self.store, conn, "UPDATE users SET failed = 0, locked_until = NULL"
                    + (", password_hash = ?" if upgraded else "") + " WHERE name = ?",
                    [*([upgraded] if upgraded else []), name])
        if refused:
            raise Unauthenticated("wrong user name or password")
        return Principal(row["name"], row["roles"].split(","), "password")

    # -- sessions ------------------------------------------------------------------------

    def open_session(self, principal, address=None):
        """A new session: returns (cookie value, csrf token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = wire_time(self.clock())
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO sessions (digest, user_name, csrf, address, created_at, seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", [_digest(sid), principal.name, csrf, address,
                                               now, now])
        return f"{sid}.{self._sign(sid)}", csrf

    def session(self, cookie):
        """The Principal of a live session cookie (its last-seen time moved on)."""
        sid = self._unsign(cookie)
        now = self.clock()
        with self.store.connect() as conn:
            row = one(run(self.store, conn,
                          "SELECT s.*, u.roles, u.disabled FROM sessions s"
                          " JOIN users u ON u.name = s.user_name WHERE s.digest = ?",
                          [_digest(sid)]))
            if row is None or row["ended_at"] or row["disabled"]:
                raise Unauthenticated("signed out: sign in again")
            ended = None
            if now - epoch_from_iso(row["created_at"]) > ABSOLUTE_S:
                ended = f"session older than {ABSOLUTE_S // 3600} h: sign in again"
            elif now - epoch_from_iso(row["seen_at"]) > IDLE_S:
                ended = f"idle for more than {IDLE_S // 60} min: sign in again"
            if ended:  # ended in this transaction, which must commit
                self._end(conn, row["digest"], now)
            else:
                run(self.store, conn, "UPDATE sessions SET seen_at = ? WHERE digest = ?",
                    [wire_time(now), row["digest"]])
        if ended:
            raise Unauthenticated(ended)
        return Principal(row["user_name"], row["roles"].split(","), "session",
                         session=row["digest"], csrf=row["csrf"])

    def close_session(self, cookie):
        try:
            sid = self._unsign(cookie)
        except Unauthenticated:
            return
        with self.store.connect() as conn:
            self._end(conn, _digest(sid), self.clock())

    def _end(self, conn, digest, now):
        run(self.store, conn, "UPDATE sessions SET ended_at = ? WHERE digest = ?"
            " AND ended_at IS NULL", [wire_time(now), digest])

    def _end_sessions(self, conn, name, now_iso):
        run(self.store, conn, "UPDATE sessions SET ended_at = ? WHERE user_name = ?"
            " AND ended_at IS NULL", [now_iso, name])

    def _sign(self, sid):
        return hmac.new(self.secret, sid.encode(), hashlib.sha256).hexdigest()[:32]

    def _unsign(self, cookie):
        sid, _, sig = (cookie or "").rpartition(".")
        # as bytes: compare_digest refuses non-ASCII text, which a cookie may carry
        if not sid or not hmac.compare_digest(sig.encode(), self._sign(sid).encode()):
            raise Unauthenticated("no valid session: sign in")
        return sid

    # -- API tokens ----------------------------------------------------------------------

    def issue_token(self, owner, name, *, roles=None, days=TOKEN_DAYS_DEFAULT):
        """A new token for ``owner`` limited to ``roles`` (default: the owner's): returns
        (secret, record).  The secret is shown once; only its digest is kept."""
        user = self.get(owner)
        granted = self._roles(roles) if roles else tuple(user["roles"])
        extra = set(granted) - set(user["roles"])
        if extra:
            raise AccountError(f"token roles {sorted(extra)} are not {owner}'s")
        if not 1 <= days <= 366:
            raise AccountError("token lifetime: 1 to 366 days")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = secrets.token_hex(6)
        now = self.clock()
        with self.store.connect() as conn:
            run(self.store, conn,
                "INSERT INTO api_tokens (id, digest, name, owner, roles, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [tid, _digest(secret), name, owner, ",".join(granted), wire_time(now),
                 wire_time(now + days * 86400)])
        return secret, self.token(tid)

    def token(self, tid):
        with self.store.connect(readonly=True) as conn:
            row = one(run(self.store, conn, "SELECT * FROM api_tokens WHERE id = ?", [tid]))
        if row is None:
            raise AccountError(f"no token {tid!r}")
        return _token_public(row)

    def tokens(self, owner=None):
        sql = "SELECT * FROM api_tokens" + (" WHERE owner = ?" if owner else "") + " ORDER BY id"
        with self.store.connect(readonly=True) as conn:
            return [_token_public(r) for r in rows(run(self.store, conn, sql,
                                                       [owner] if owner else []))]

    def revoke_token(self, tid):
        with self.store.connect() as conn:
            cur = run(self.store, conn, "UPDATE api_tokens SET revoked_at = ? WHERE id = ?"
                      " AND revoked_at IS NULL", [wire_time(self.clock()), tid])
            if cur.rowcount == 0:
                raise AccountError(f"no live token {tid!r}")

    def by_token(self, secret):
        """The Principal of a bearer token that is live and whose owner is enabled."""
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
            raise Unauthenticated("not a gridlink API token")
        now = self.clock()
        with self.store.connect() as conn:
            row = one(run(self.store, conn,
                          "SELECT t.*, u.disabled, u.roles AS user_roles FROM api_tokens t"
                          " JOIN users u ON u.name = t.owner WHERE t.digest = ?",
                          [_digest(secret)]))
            if row is None or row["revoked_at"] or row["disabled"]:
                raise Unauthenticated("token unknown or revoked")
            if epoch_from_iso(row["expires_at"]) <= now:
                raise Unauthenticated(f"token {row['id']} expired at {row['expires_at']}")
            run(self.store, conn, "UPDATE api_tokens SET last_used = ? WHERE id = ?",
                [wire_time(now), row["id"]])
        # a token never holds more than its owner holds now
        held = set(row["user_roles"].split(","))
        return Principal(row["owner"], [r for r in row["roles"].split(",") if r in held],
                         "token")


def _public(row):
    return {"name": row["name"], "display": row["display"], "roles": row["roles"].split(","),
            "disabled": bool(row["disabled"]), "locked_until": row["locked_until"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def _token_public(row):
    return {k: row[k] for k in ("id", "name", "owner", "created_at", "expires_at",
                                "revoked_at", "last_used")} | {"roles": row["roles"].split(",")}
