"""OpenID Connect sign-in for cities with an identity provider, through Authlib.

- ``OidcSettings``: the provider (issuer URL), gridlink's client id and secret, the claim
  that carries the person's groups and which gridlink roles each group gives; read from
  a TOML file (``gridlink gateway run --oidc FILE``).
- ``OidcClient``: the authorization-code flow with PKCE (S256), ``state`` and ``nonce``
  over the provider's discovery document.  ``begin`` makes the provider's sign-in URL and
  the secrets the browser must bring back; ``finish`` checks ``state``, trades the code
  for tokens and accepts the ID token only when its signature verifies against the
  provider's JWKS and its issuer, audience, expiry and nonce are right.
- ``PendingSeal``: those secrets in a signed, dated cookie value between the two.
- ``OidcLinks``: a provider identity (issuer, subject) ↔ a gridlink user, made at the
  first sign-in under a name of its own (never an existing local account), its roles
  set from the groups at every sign-in.

Every refusal is an ``OidcRefused`` with the HTTP status it answers and, when the
provider named one, the subject.
"""

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import tomllib
from pathlib import Path

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from ..clock import wire_time
from ..errors import ConfigError
from ..store.sql import one, run
from . import roles as role_table
from .accounts import NAME_CHARS, Principal
from .errors import AuthError

LEEWAY_S = 60            # clock difference tolerated between the provider and the gateway
HTTP_TIMEOUT_S = 10.0
PENDING_S = 600          # from the sign-in button to the provider's answer
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


class OidcRefused(AuthError):
    """A sign-in through the provider refused: ``status`` is the HTTP answer (400 wrong
    state, 401 a token that does not hold, 403 no gridlink role, 502 provider
    unreachable); ``subject`` the provider's ``sub`` when it named one."""

    def __init__(self, message, status, subject=None, verified=False):
        super().__init__(message)
        self.status, self.subject, self.verified = status, subject, verified


class OidcSettings:
    """Who the provider is, who gridlink is to it, and which groups give which roles."""

    def __init__(self, issuer, client_id, client_secret, roles, *, role_claim="groups",
                 label=None, scope="openid profile", ca_file=None, redirect_uri=None):
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            raise ConfigError(f"OIDC issuer {issuer!r}: an https:// URL")
        for key, value in (("client_id", client_id), ("client_secret", client_secret),
                           ("role_claim", role_claim)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"OIDC {key}: a non-empty string")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(f"OIDC ca_file: no file {ca_file}")
        if not isinstance(roles, dict) or not roles:
            raise ConfigError("OIDC [roles]: map at least one group to gridlink roles")
        self.roles = {}
        for group, given in roles.items():
            try:
                self.roles[str(group)] = role_table.parse_roles(given)
            except ValueError as exc:
                raise ConfigError(f"OIDC [roles] {group!r}: {exc}") from None
        self.issuer = issuer.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.role_claim, self.scope = role_claim, scope
        self.label = label or "城市统一身份认证"
        self.ca_file = str(ca_file) if ca_file else None
        self.redirect_uri = redirect_uri

    @classmethod
    def load(cls, path):
        """From a TOML file; it holds the client secret, so others may not read it."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--oidc {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--oidc {path}: not TOML ({exc})") from None
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"--oidc {path} holds the client secret: chmod 600 it")
        known = {"issuer", "client_id", "client_secret", "roles", "role_claim", "label",
                 "scope", "ca_file", "redirect_uri"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"--oidc {path}: unknown keys {unknown}: {sorted(known)}")
        missing = sorted({"issuer", "client_id", "client_secret", "roles"} - set(data))
        if missing:
            raise ConfigError(f"--oidc {path}: missing {missing}")
        return cls(**data)

    def roles_for(self, claims):
        """The gridlink roles the ID token's groups give, in table order (may be empty)."""
        value = claims.get(self.role_claim)
        groups = ([value] if isinstance(value, str) else
                  [g for g in value if isinstance(g, str)] if isinstance(value, list) else [])
        given = {r for g in groups for r in self.roles.get(g, ())}
        return tuple(r for r in role_table.ROLES if r in given), groups


class OidcClient:
    """The relying party's side of the code flow, over Authlib and ``requests``."""

    def __init__(self, settings, *, timeout=HTTP_TIMEOUT_S, clock=time.time):
        self.settings = settings
        self.timeout = timeout
        self.clock = clock
        self._metadata = None
        self._jwks = None

    # -- the provider's documents --------------------------------------------------------

    def _get(self, url, what):
        try:
            resp = requests.get(url, timeout=self.timeout, verify=self._verify())
            resp.raise_for_status()
            return resp.json()
        except requests.RequestException as exc:
            raise OidcRefused(f"identity provider unreachable ({what} {url}): "
                              f"{_short(exc)}", 502) from None
        except ValueError:
            raise OidcRefused(f"identity provider: {what} {url} is not JSON", 502) from None

    def metadata(self):
        """The discovery document (``/.well-known/openid-configuration``), kept once read."""
        if self._metadata is None:
            url = self.settings.issuer + "/.well-known/openid-configuration"
            doc = self._get(url, "discovery")
            if not isinstance(doc, dict):
                raise OidcRefused(f"identity provider: discovery {url} is not an object", 502)
            if str(doc.get("issuer", "")).rstrip("/") != self.settings.issuer:
                raise OidcRefused(f"identity provider: discovery names issuer "
                                  f"{doc.get('issuer')!r}, not {self.settings.issuer!r}", 502)
            missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
                       if not isinstance(doc.get(k), str)]
            if missing:
                raise OidcRefused(f"identity provider: discovery lacks {missing}", 502)
            self._metadata = doc
        return self._metadata

    def key_set(self, refresh=False):
        if self._jwks is None or refresh:
            url = self.metadata()["jwks_uri"]
            try:
                self._jwks = KeySet.import_key_set(self._get(url, "JWKS"))
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise OidcRefused(f"identity provider: JWKS {url} unusable ({exc})",
                                  502) from None
        return self._jwks

    def _verify(self):
        """The CA bundle for the provider's certificate (per request: a session's own
        would lose to ``REQUESTS_CA_BUNDLE``)."""
        return self.settings.ca_file or True

    def _session(self, redirect_uri, state=None):
        return OAuth2Session(self.settings.client_id, self.settings.client_secret,
                             scope=self.settings.scope, redirect_uri=redirect_uri,
                             state=state, code_challenge_method="S256")

    # -- the flow ------------------------------------------------------------------------

    def begin(self, redirect_uri):
        """(the provider's sign-in URL, the pending secrets {state, nonce, verifier})."""
        pending = {"state": generate_token(32), "nonce": generate_token(32),
                   "verifier": generate_token(64), "redirect_uri": redirect_uri}
        url, _ = self._session(redirect_uri).create_authorization_url(
            self.metadata()["authorization_endpoint"], state=pending["state"],
            nonce=pending["nonce"], code_verifier=pending["verifier"])
        return url, pending

    def finish(self, pending, params):
        """The verified ID token claims of the provider's answer ``params`` (the callback's
        query) to the flow ``pending`` began."""
        sent = params.get("state")
        if not pending or not sent or not hmac.compare_digest(
                str(sent).encode(), str(pending.get("state")).encode()):
            raise OidcRefused("sign-in state does not match the one this browser started "
                              "with (an old or forged link): start again from the board", 400)
        if params.get("error"):
            raise OidcRefused(f"the identity provider refused: {params['error']}"
                              + (f" ({params['error_description']})"
                                 if params.get("error_description") else ""), 401)
        if not params.get("code"):
            raise OidcRefused("the identity provider's answer has no code", 400)
        token = self._trade(pending, params["code"])
        return self.verify(token, pending["nonce"])

    def _trade(self, pending, code):
        session = self._session(pending["redirect_uri"], pending["state"])
        try:
            token = session.fetch_token(self.metadata()["token_endpoint"], code=code,
                                        code_verifier=pending["verifier"],
                                        timeout=self.timeout, verify=self._verify())
        except requests.RequestException as exc:
            raise OidcRefused("identity provider unreachable (token endpoint): "
                              f"{_short(exc)}", 502) from None
        except OAuthError as exc:
            raise OidcRefused(f"the identity provider refused the code: {exc.error}"
                              + (f" ({exc.description})" if exc.description else ""),
                              401) from None
        except ValueError as exc:
            raise OidcRefused(f"identity provider: token answer unusable ({exc})", 502) from None
        if not token.get("id_token"):
            raise OidcRefused("the identity provider sent no ID token (is 'openid' in the "
                              "client's scopes?)", 401)
        return token

    def verify(self, token, nonce):
        """The claims of ``token['id_token']``: signed by a key of the provider's JWKS,
        issued by the issuer, for this client, not expired, carrying ``nonce``."""
        algorithms = [a for a in self.metadata().get("id_token_signing_alg_values_supported",
                                                     ["RS256"]) if a in ALGORITHMS]
        registry = JWSRegistry(algorithms=algorithms or ["RS256"], strict_check_header=False)
        raw = token["id_token"]
        subject = _unverified_subject(raw)
        try:
            try:
                decoded = jwt.decode(raw, self.key_set(), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys
                decoded = jwt.decode(raw, self.key_set(refresh=True), registry=registry)
        except (BadSignatureError, InvalidKeyIdError):
            raise OidcRefused("ID token signature does not verify against the identity "
                              "provider's keys (JWKS): refused", 401, subject) from None
        except JoseError as exc:
            raise OidcRefused(f"ID token unusable: {exc.description or exc.error}", 401,
                              subject) from None
        claims = CodeIDToken(
            decoded.claims, decoded.header,
            {"iss": {"essential": True, "value": self.settings.issuer},
             "aud": {"essential": True, "value": self.settings.client_id}},
            {"nonce": nonce, "client_id": self.settings.client_id,
             "access_token": token.get("access_token")})
        subject = claims.get("sub")
        try:
            claims.validate(now=int(self.clock()), leeway=LEEWAY_S)
        except ExpiredTokenError:
            raise OidcRefused(f"ID token expired at {wire_time(claims.get('exp', 0))}: "
                              "sign in again", 401, subject, True) from None
        except ClaimError as exc:
            raise OidcRefused(_claim_problem(exc.claim, claims, self.settings), 401,
                              subject, True) from None
        return dict(claims)


def _claim_problem(claim, claims, settings):
    if claim == "nonce":
        return ("ID token nonce does not match the one this sign-in sent (a replayed "
                "token): refused")
    if claim in ("aud", "azp"):
        return (f"ID token is for audience {claims.get('aud')!r}, not gridlink's client "
                f"{settings.client_id!r}: refused")
    if claim == "iss":
        return f"ID token issued by {claims.get('iss')!r}, not {settings.issuer!r}: refused"
    return f"ID token claim {claim!r} is missing or wrong: refused"


def _unverified_subject(raw):
    """``sub`` of a token not (yet) verified: only for the audit trail, marked so."""
    try:
        body = raw.split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("sub")
        return sub if isinstance(sub, str) else None
    except (ValueError, IndexError, AttributeError):
        return None


def _short(exc):
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"


class PendingSeal:
    """The flow's secrets in a cookie value, signed with the accounts' key and dated."""

    def __init__(self, secret, *, clock=time.time):
        self.key = hashlib.sha256(b"gridlink oidc pending\n" + secret).digest()
        self.clock = clock

    def seal(self, pending):
        body = base64.urlsafe_b64encode(json.dumps(
            {**pending, "at": int(self.clock())}, separators=(",", ":")).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def open(self, value):
        """The pending secrets, or None for a missing, forged or stale cookie."""
        body, _, sig = (value or "").rpartition(".")
        if not body or not hmac.compare_digest(sig.encode(), self._sign(body).encode()):
            return None
        try:
            pending = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, RecursionError):
            return None
        if not isinstance(pending, dict) or not isinstance(pending.get("at"), int):
            return None
        if not 0 <= self.clock() - pending["at"] <= PENDING_S:
            return None
        return pending

    def _sign(self, body):
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()[:32]


class OidcLinks:
    """Provider identities and the gridlink users they sign in as (``oidc_identities``).

    Making a user and changing its roles are user changes like ``gridlink users``': on
    the audit ``trail`` (``user.add``, ``user.roles``), the actor the provider
    (``oidc:<issuer>``), on whose word they are made."""

    def __init__(self, store, accounts, trail):
        self.store, self.accounts, self.trail = store, accounts, trail

    def sign_in(self, issuer, claims, granted, address=None):
        """The Principal of the identity ``claims`` name, made a user on first sign-in,
        its roles set to ``granted``; ``OidcRefused`` (403) when disabled at gridlink."""
        subject = claims["sub"]
        display = claims.get("name") or claims.get("preferred_username") or subject
        now = wire_time(self.accounts.clock())
        with self.store.connect(readonly=True) as conn:
            link = one(run(self.store, conn, "SELECT user_name FROM oidc_identities"
                           " WHERE issuer = ? AND subject = ?", [issuer, subject]))
        if link is None:
            name = self._new_name(issuer, claims)
            user = self.accounts.add(name, granted, None, display=str(display)[:200])
            with self.store.connect() as conn:
                run(self.store, conn,
                    "INSERT INTO oidc_identities (issuer, subject, user_name, created_at,"
                    " last_sign_in) VALUES (?, ?, ?, ?, ?)", [issuer, subject, name, now, now])
            self.trail.append(f"oidc:{issuer}", "user.add", target=f"user:{name}",
                              address=address, after={**user, "subject": subject})
        else:
            name = link["user_name"]
            before = self.accounts.get(name)
            if before["roles"] != list(granted):
                after = self.accounts.set_roles(name, granted)
                self.trail.append(f"oidc:{issuer}", "user.roles", target=f"user:{name}",
                                  address=address, before=before, after=after)
            with self.store.connect() as conn:
                run(self.store, conn, "UPDATE oidc_identities SET last_sign_in = ?"
                    " WHERE issuer = ? AND subject = ?", [now, issuer, subject])
        user = self.accounts.get(name)
        if user["disabled"]:
            raise OidcRefused(f"user {name} is disabled at gridlink (gridlink users "
                              "enable)", 403, subject, True)
        return Principal(name, user["roles"], "oidc")

    def _new_name(self, issuer, claims):
        """The provider's user name made a gridlink one; with a suffix of the identity's
        hash when taken (an existing local account is never taken over)."""
        tag = hashlib.sha256(f"{issuer}\n{claims['sub']}".encode()).hexdigest()
        wanted = str(claims.get("preferred_username") or "").lower()
        base = "".join(c for c in wanted if c in NAME_CHARS)[:50]
        candidates = ([base] if len(base) >= 2 else []) + [
            f"{base or 'sso'}-{tag[:6]}", f"sso-{tag[:16]}"]
        with self.store.connect(readonly=True) as conn:
            for name in candidates:
                if not one(run(self.store, conn, "SELECT name FROM users WHERE name = ?",
                               [name])):
                    return name
        raise OidcRefused(f"no free gridlink user name for {claims['sub']!r}", 403,
                          claims["sub"], True)


_IDENTITIES = """
CREATE TABLE oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_sign_in TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
"""

MIGRATIONS = (("oidc_001_identities", _IDENTITIES, _IDENTITIES),)
