"""A real OpenID Connect provider for the tests, built on Authlib's server side.

Authlib's ``AuthorizationServer`` with the authorization-code grant, its PKCE extension
(``CodeChallenge``, S256 demanded) and its OpenID Connect extension (``OpenIDCode``)
signs ID tokens with an RSA key of its own and publishes the public half as its JWKS.
It is served over HTTPS (the tests' CA) by the gateway's own ``BackgroundServer``, with
a discovery document, so the gateway talks to it exactly as to a city's provider.

Nobody types a password here: the provider signs in whoever ``user`` names (claims:
``sub``, ``preferred_username``, ``name``, ``groups``).  ``misbehave`` makes it issue a
bad ID token on purpose: ``"nonce"`` (another nonce), ``"signature"`` (signed with a key
not in its JWKS, under the published key id), ``"expired"`` (expired an hour ago),
``"issuer"`` (another issuer), ``"audience"`` (for another client, naming gridlink only
as ``azp``); ``"discovery"`` makes its discovery document name another issuer.
"""

import hmac
import time
from urllib.parse import parse_qsl

from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin
from authlib.oidc.core.grants import OpenIDCode
from gridlink.gateway.httpserver import BackgroundServer
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KID = "test-key-1"


class Client(ClientMixin):
    def __init__(self, client_id, secret, redirect_uris):
        self.client_id, self.secret, self.redirect_uris = client_id, secret, redirect_uris

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile"))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return hmac.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Code(AuthorizationCodeMixin):
    def __init__(self, code, request):
        data = request.payload.data
        self.code, self.client_id = code, request.client.get_client_id()
        self.redirect_uri, self.scope = data.get("redirect_uri"), request.scope
        self.nonce, self.user = data.get("nonce"), request.user
        self.code_challenge = data.get("code_challenge")
        self.code_challenge_method = data.get("code_challenge_method")
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time


class Request(OAuth2Request):
    """An Authlib request from what the Starlette endpoint has read (query and form)."""

    def __init__(self, method, uri, headers, query, form):
        super().__init__(method, uri, headers=headers)
        self._args, self._form = query, form
        self.payload = BasicOAuth2Payload({**query, **form})

    @property
    def args(self):
        return self._args

    @property
    def form(self):
        return self._form


class Provider:
    """The provider on ``url`` (``start()``/``stop()`` or a ``with`` block)."""

    def __init__(self, pki, client_id="gridlink", client_secret=None):
        self.client_id = client_id
        self.client_secret = client_secret or generate_token(32)
        self.redirect_uris = []
        self.key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig"})
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig"})
        self.user = {"sub": "u-0001", "preferred_username": "zhang.wei", "name": "张伟",
                     "groups": ["cgj-acceptors"]}
        self.misbehave = set()
        self.codes = {}
        self.tokens_issued = 0
        self.server = BackgroundServer(self._app(), certfile=str(pki / "broker.crt"),
                                       keyfile=str(pki / "broker.key"))
        self.url = self.server.url

    def client(self):
        return Client(self.client_id, self.client_secret, self.redirect_uris)

    # -- Authlib's server ----------------------------------------------------------------

    def _authorization_server(self):
        provider = self

        class Server(AuthorizationServer):
            def query_client(self, client_id):
                return provider.client() if client_id == provider.client_id else None

            def save_token(self, token, request):
                provider.tokens_issued += 1

            def create_oauth2_request(self, request):
                return request

            def handle_response(self, status, body, headers):
                if isinstance(body, dict):
                    return JSONResponse(body, status_code=status, headers=dict(headers))
                return Response(body, status_code=status, headers=dict(headers))

            def send_signal(self, name, *args, **kwargs):
                pass

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

            def save_authorization_code(self, code, request):
                provider.codes[code] = Code(code, request)

            def query_authorization_code(self, code, client):
                found = provider.codes.get(code)
                return found if found and found.client_id == client.get_client_id() else None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class OpenID(OpenIDCode):
            def exists_nonce(self, nonce, request):
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.rogue_key if "signature" in provider.misbehave else provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": KID}

            def get_client_claims(self, client):
                now = int(time.time())
                claims = {"iss": provider.url, "aud": [client.get_client_id()],
                          "iat": now, "exp": now + 300}
                if "expired" in provider.misbehave:
                    claims.update(iat=now - 7200, exp=now - 3600)
                if "issuer" in provider.misbehave:
                    claims["iss"] = "https://sso.elsewhere.example"
                if "audience" in provider.misbehave:  # azp alone must not pass it
                    claims.update(aud=["another-city-app"], azp=client.get_client_id())
                return claims

            def get_authorization_code_claims(self, authorization_code):
                claims = super().get_authorization_code_claims(authorization_code)
                if "nonce" in provider.misbehave:
                    claims["nonce"] = generate_token(32)
                return claims

            def generate_user_info(self, user, scope):
                return dict(user)

        server = Server(scopes_supported=["openid", "profile"])
        server.register_token_generator("default", BearerTokenGenerator(
            lambda **kw: generate_token(42)))
        server.register_grant(CodeGrant, [CodeChallenge(required=True), OpenID(require_nonce=True)])
        return server

    def _app(self):
        server = self._authorization_server()

        def discovery(request):
            return JSONResponse({
                "issuer": ("https://sso.elsewhere.example" if "discovery" in self.misbehave
                           else self.url),
                "authorization_endpoint": self.url + "/authorize",
                "token_endpoint": self.url + "/token",
                "jwks_uri": self.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "scopes_supported": ["openid", "profile"],
            })

        def jwks(request):
            return JSONResponse(KeySet([self.key]).as_dict(private=False))

        def authorize(request):
            query = dict(request.query_params)
            req = Request("GET", str(request.url), request.headers, query, {})
            if query.get("code_challenge_method") != "S256":  # PKCE, S256 only
                return JSONResponse({"error": "invalid_request",
                                     "error_description": "PKCE S256 required"}, 400)
            try:
                grant = server.get_consent_grant(req, end_user=dict(self.user))
            except OAuth2Error as exc:
                return JSONResponse(dict(exc.get_body()), 400)
            return server.create_authorization_response(req, grant_user=dict(self.user),
                                                        grant=grant)

        async def token(request):
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            req = Request("POST", str(request.url), request.headers, {}, form)
            return server.create_token_response(req)

        return Starlette(routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
        ])

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
