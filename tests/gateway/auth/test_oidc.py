"""Signing in through the city's identity provider: the whole redirect flow against a real
OpenID Connect provider (Authlib's server side, over HTTPS with its own RSA key and
JWKS, ``tests/support/oidc_provider.py``), driven by an HTTP client that follows the
redirects as a browser does; one test per refusal, each showing its message, its audit
entry, and that nothing was signed in or lost."""

import os
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from gridlink.gateway.api import create_app
from gridlink.gateway.auth.accounts import Accounts
from gridlink.gateway.auth.oidc import PENDING_S, OidcSettings, PendingSeal
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.httpserver import BackgroundServer
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.intake_api import add_report
from tests.support.oidc_provider import Provider
from tests.support.pages import browser_page, needs_chromium
from tests.support.pki import make_pki

ROLES = {"cgj-acceptors": "acceptor", "cgj-leads": ["acceptor", "shift_lead"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), identities=())


@pytest.fixture(scope="module")
def provider(pki):
    with Provider(pki) as p:
        yield p


@pytest.fixture
def idp(provider):
    """The provider, behaving, with 张伟 (a 受理员 group) signed in."""
    provider.misbehave.clear()
    provider.user = {"sub": "u-0001", "preferred_username": "zhang.wei", "name": "张伟",
                     "groups": ["cgj-acceptors"]}
    return provider


def settings_for(provider, pki, **kw):
    return OidcSettings(provider.url, provider.client_id, provider.client_secret,
                        kw.pop("roles", ROLES), ca_file=pki / "ca.crt", **kw)


class Centre:
    """The gateway's app on a real port, configured for ``provider``."""

    def __init__(self, store, provider, pki, **kw):
        self.app = create_app(store, oidc=settings_for(provider, pki, **kw))
        self.server = BackgroundServer(self.app)
        self.url = self.server.url
        provider.redirect_uris[:] = [self.url + "/api/session/oidc/callback"]
        self.trail = self.app.state.audit

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

    def failures(self):
        return [e for e in self.trail.entries() if e["action"] == "session.failed"]

    def sessions(self, store):
        """The sessions still open."""
        return store.fetchall("SELECT user_name FROM sessions WHERE ended_at IS NULL")


@pytest.fixture
def centre(store, idp, pki):
    with Centre(store, idp, pki) as c:
        yield c


class Browser:
    """``requests`` following redirects one at a time, as a browser does, keeping
    cookies and trusting the tests' CA."""

    def __init__(self, ca):
        self.http = requests.Session()
        self.ca = str(ca)
        self.visited = []

    def go(self, url, *, stop=None):
        """Follows redirects from ``url``; stops before a URL ``stop(url)`` is true for
        (returning that URL) or at the first answer that is not a redirect."""
        while True:
            if stop and stop(url):
                return url
            self.visited.append(url)
            resp = self.http.get(url, allow_redirects=False, timeout=10, verify=self.ca)
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            url = urljoin(url, resp.headers["Location"])

    def sign_in(self, centre, *, tamper=None):
        """The whole flow from the board's button; ``tamper(url)`` may change the
        provider's answer before the browser brings it back."""
        back = self.go(centre.url + "/api/session/oidc",
                       stop=lambda u: u.startswith(centre.url + "/api/session/oidc/callback"))
        return self.go(tamper(back) if tamper else back)

    def session_cookie(self):
        return self.http.cookies.get("gridlink_session")


def test_providers_lists_the_configured_one_and_none_without(store, centre, idp):
    (shown,) = requests.get(centre.url + "/api/session/providers", timeout=10).json()
    assert shown == {"kind": "oidc", "label": "城市统一身份认证", "issuer": idp.url,
                     "start": "/api/session/oidc"}
    with BackgroundServer(create_app(store, migrate=False)) as plain:
        assert requests.get(plain.url + "/api/session/providers", timeout=10).json() == []
        resp = requests.get(plain.url + "/api/session/oidc", timeout=10,
                            allow_redirects=False)
    assert resp.status_code == 404 and "--oidc" in resp.json()["detail"]


@pytest.mark.browser
@needs_chromium
def test_the_board_signs_in_with_the_providers_button(store, centre):
    """In a real browser: the sign-in page offers the button; a click goes to the
    provider and back, and the board is signed in as the provider's person."""
    # the provider's certificate is from the tests' CA, which chromium does not know
    with browser_page(zone=None, locale=None, ignore_https_errors=True) as page:
        page.goto(centre.url + "/board/")
        page.wait_for_selector("#signin-pane:not([hidden])")
        button = page.wait_for_selector("#signin-providers a.provider")
        assert button.text_content() == "使用城市统一身份认证登录"
        button.click()
        page.wait_for_selector("#signin-pane", state="hidden", timeout=20000)
        assert page.url == centre.url + "/board/"
        page.wait_for_function(
            "document.getElementById('who').textContent.includes('张伟')", timeout=20000)
        assert page.text_content("#who") == "张伟 (受理员)"


def test_sign_in_through_the_provider_opens_a_normal_board_session(store, centre, idp, pki):
    rid = add_report(store, 1)
    browser = Browser(pki / "ca.crt")
    page = browser.sign_in(centre)
    assert page.status_code == 200 and page.url == centre.url + "/board/"
    # the provider was asked with state, nonce and a PKCE S256 challenge
    asked = parse_qs(urlsplit(browser.visited[1]).query)
    assert browser.visited[1].startswith(idp.url + "/authorize")
    assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
    assert asked["state"][0] and asked["nonce"][0] and asked["scope"] == ["openid profile"]
    # the same cookie as a password sign-in: signed, HttpOnly, SameSite=Strict
    set_cookie = next(c for c in browser.http.cookies if c.name == "gridlink_session")
    assert set_cookie.has_nonstandard_attr("HttpOnly")
    assert set_cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert "gridlink_oidc" not in browser.http.cookies  # the flow's secrets are spent
    me = browser.http.get(centre.url + "/api/session", timeout=10).json()
    assert (me["user"], me["display"], me["roles"], me["via"]) == (
        "zhang.wei", "张伟", ["acceptor"], "session")
    # CSRF as for any board session
    claim = centre.url + f"/api/reports/{rid}/claim"
    assert browser.http.post(claim, json={}, timeout=10).status_code == 403
    done = browser.http.post(claim, json={}, headers={"X-CSRF-Token": me["csrf"]}, timeout=10)
    assert done.status_code == 200 and done.json()["holder"] == "zhang.wei"
    (made,) = [e for e in centre.trail.entries() if e["action"] == "user.add"]
    assert (made["actor"], made["target"]) == (f"oidc:{idp.url}", "user:zhang.wei")
    assert made["after"]["roles"] == ["acceptor"] and made["after"]["subject"] == "u-0001"
    (opened,) = [e for e in centre.trail.entries() if e["action"] == "session.open"]
    assert opened["actor"] == "zhang.wei" and opened["target"] == "user:zhang.wei"
    assert opened["after"] == {"via": "oidc", "issuer": idp.url, "subject": "u-0001",
                               "groups": ["cgj-acceptors"], "roles": ["acceptor"]}


def test_the_next_sign_in_takes_the_roles_the_groups_give_now(store, centre, idp, pki):
    Browser(pki / "ca.crt").sign_in(centre)
    Browser(pki / "ca.crt").sign_in(centre)  # the same groups: no change to audit
    idp.user["groups"] = ["cgj-leads", "parks"]
    browser = Browser(pki / "ca.crt")
    assert browser.sign_in(centre).status_code == 200
    me = browser.http.get(centre.url + "/api/session", timeout=10).json()
    assert me["user"] == "zhang.wei" and me["roles"] == ["acceptor", "shift_lead"]
    assert [u["name"] for u in Accounts(store).list()] == ["zhang.wei"]
    changes = [e for e in centre.trail.entries() if e["action"].startswith("user.")]
    assert [e["action"] for e in changes] == ["user.add", "user.roles"]
    assert changes[1]["before"]["roles"] == ["acceptor"]
    assert changes[1]["after"]["roles"] == ["acceptor", "shift_lead"]


def test_a_local_account_of_the_same_name_is_never_taken_over(store, centre, idp, pki):
    local = Accounts(store)
    local.add("zhang.wei", "admin", "local-password-1")
    browser = Browser(pki / "ca.crt")
    assert browser.sign_in(centre).status_code == 200
    me = browser.http.get(centre.url + "/api/session", timeout=10).json()
    assert me["user"].startswith("zhang.wei-") and me["roles"] == ["acceptor"]
    assert local.get("zhang.wei")["roles"] == ["admin"]
    assert local.authenticate("zhang.wei", "local-password-1").name == "zhang.wei"


# ---------------------------------------------------------------- refusals


def refused(centre, store, resp, status, words):
    """The refusal answered ``status`` naming ``words``, is on the trail, and nobody was
    signed in; returns its audit entry."""
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"], resp.json()
    (entry,) = centre.failures()
    assert entry["actor"] == "anonymous" and entry["after"]["via"] == "oidc"
    assert words in entry["after"]["reason"]
    assert centre.sessions(store) == []
    return entry


def test_a_wrong_state_is_refused(store, centre, pki):
    def forge(url):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        return (f"{centre.url}{parts.path}?code={query['code'][0]}"
                "&state=forged-by-someone-else")

    browser = Browser(pki / "ca.crt")
    entry = refused(centre, store, browser.sign_in(centre, tamper=forge), 400,
                    "state does not match")
    assert entry["target"] == "oidc:?" and entry["after"]["subject"] is None
    assert Accounts(store).list() == []
    # and a browser that never started the flow cannot finish one
    other = Browser(pki / "ca.crt")
    resp = other.go(centre.url + "/api/session/oidc/callback?code=abc&state=xyz")
    assert resp.status_code == 400


def test_a_wrong_nonce_is_refused(store, centre, idp, pki):
    idp.misbehave.add("nonce")
    entry = refused(centre, store, Browser(pki / "ca.crt").sign_in(centre), 401,
                    "nonce does not match")
    assert entry["target"] == "oidc:u-0001" and entry["after"]["subject_verified"] is True
    assert Accounts(store).list() == []


def test_a_bad_signature_is_refused(store, centre, idp, pki):
    idp.misbehave.add("signature")
    entry = refused(centre, store, Browser(pki / "ca.crt").sign_in(centre), 401,
                    "signature does not verify")
    # the subject it claimed is recorded, marked as not verified
    assert entry["after"]["subject"] == "u-0001" and entry["after"]["subject_verified"] is False


def test_an_expired_token_is_refused(store, centre, idp, pki):
    idp.misbehave.add("expired")
    entry = refused(centre, store, Browser(pki / "ca.crt").sign_in(centre), 401, "expired at")
    assert entry["after"]["subject"] == "u-0001"


def test_a_token_for_another_audience_is_refused(store, centre, idp, pki):
    idp.misbehave.add("audience")
    refused(centre, store, Browser(pki / "ca.crt").sign_in(centre), 401,
            "not gridlink's client 'gridlink'")


def test_a_token_from_another_issuer_is_refused(store, centre, idp, pki):
    idp.misbehave.add("issuer")
    refused(centre, store, Browser(pki / "ca.crt").sign_in(centre), 401,
            "issued by 'https://sso.elsewhere.example'")


def test_groups_without_a_gridlink_role_are_refused_with_the_reason(store, centre, idp, pki):
    idp.user["groups"] = ["parks", "library"]
    resp = Browser(pki / "ca.crt").sign_in(centre)
    entry = refused(centre, store, resp, 403, "no gridlink role is mapped")
    assert "['parks', 'library']" in resp.json()["detail"]
    assert entry["target"] == "oidc:u-0001"
    assert Accounts(store).list() == []


def test_a_user_disabled_at_gridlink_is_refused(store, centre, idp, pki):
    Browser(pki / "ca.crt").sign_in(centre)
    Accounts(store).set_disabled("zhang.wei")
    resp = Browser(pki / "ca.crt").sign_in(centre)
    refused(centre, store, resp, 403, "disabled at gridlink")
    assert Accounts(store).get("zhang.wei")["disabled"] is True


def test_an_unreachable_provider_is_refused(store, pki):
    provider = Provider(pki).start()
    with Centre(store, provider, pki) as centre:
        browser = Browser(pki / "ca.crt")
        back = browser.go(centre.url + "/api/session/oidc",
                          stop=lambda u: u.startswith(centre.url + "/api/session/oidc/callback"))
        provider.stop()  # gone between its sign-in page and the code's exchange
        resp = browser.go(back)
        refused(centre, store, resp, 502, "identity provider unreachable (token endpoint)")


def test_a_provider_unreachable_at_discovery_is_refused(store, pki):
    provider = Provider(pki)  # never started: its port refuses
    provider.server.sock.close()
    with Centre(store, provider, pki) as centre:
        resp = Browser(pki / "ca.crt").go(centre.url + "/api/session/oidc")
        refused(centre, store, resp, 502, "identity provider unreachable (discovery")


def test_a_state_that_is_not_ascii_is_refused_not_a_server_error(store, centre, pki):
    def garble(url):
        code = parse_qs(urlsplit(url).query)["code"][0]
        return f"{centre.url}/api/session/oidc/callback?code={code}&state=%C3%A9t%C3%A9"

    refused(centre, store, Browser(pki / "ca.crt").sign_in(centre, tamper=garble), 400,
            "state does not match")


def test_a_discovery_document_naming_another_issuer_is_refused(store, centre, idp, pki):
    idp.misbehave.add("discovery")
    resp = Browser(pki / "ca.crt").go(centre.url + "/api/session/oidc")
    refused(centre, store, resp, 502, "discovery names issuer 'https://sso.elsewhere.example'")


# ---------------------------------------------------------------- the flow's cookie

PENDING = {"state": "s" * 43, "nonce": "n" * 43, "verifier": "v" * 86,
           "redirect_uri": "http://127.0.0.1:8080/api/session/oidc/callback"}


class Ticks:
    def __init__(self):
        self.t = 1_790_000_000.0

    def __call__(self):
        return self.t


def test_the_flow_cookie_opens_only_signed_fresh_and_unchanged():
    clock = Ticks()
    seal = PendingSeal(b"k" * 32, clock=clock)
    value = seal.seal(PENDING)
    assert seal.open(value) == {**PENDING, "at": int(clock.t)}
    assert PendingSeal(b"x" * 32, clock=clock).open(value) is None  # another gateway's key
    body, sig = value.split(".")
    assert seal.open(body[:-2] + "AA." + sig) is None
    assert seal.open(None) is None and seal.open("") is None
    clock.t += PENDING_S + 1
    assert seal.open(value) is None  # stale


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_cookie_text_opens_to_none_or_the_secrets(text):
    seal = PendingSeal(b"k" * 32)
    assert seal.open(text) is None
    # even a body signed with the key (as if it leaked) never raises
    opened = seal.open(text + "." + seal._sign(text))
    assert opened is None or isinstance(opened, dict)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5))
@settings(max_examples=200, deadline=None)
def test_sealed_secrets_come_back_as_they_went(pending):
    seal = PendingSeal(b"k" * 32)
    opened = seal.open(seal.seal(pending))
    assert opened == {**pending, "at": opened["at"]}


# ---------------------------------------------------------------- settings


def write(tmp_path, text, mode=0o600):
    path = tmp_path / "oidc.toml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


GOOD = """issuer = "https://sso.example.gov.cn/realms/city"
client_id = "gridlink"
client_secret = "s3cret"
role_claim = "roles"
[roles]
"cgj-acceptors" = "受理员"
"cgj-leads" = ["acceptor", "shift_lead"]
"""


def test_settings_load_from_toml_with_chinese_role_names(tmp_path):
    s = OidcSettings.load(write(tmp_path, GOOD))
    assert s.issuer == "https://sso.example.gov.cn/realms/city" and s.role_claim == "roles"
    assert s.roles == {"cgj-acceptors": ("acceptor",), "cgj-leads": ("acceptor", "shift_lead")}
    assert s.roles_for({"roles": ["cgj-leads", "x"]}) == (("acceptor", "shift_lead"),
                                                         ["cgj-leads", "x"])
    assert s.roles_for({"roles": "cgj-acceptors"})[0] == ("acceptor",)
    assert s.roles_for({})[0] == ()


@pytest.mark.parametrize("text, mode, words", [
    (GOOD, 0o644, "chmod 600"),
    (GOOD.replace("https://", "http://"), 0o600, "an https:// URL"),
    (GOOD.replace('"受理员"', '"mayor"'), 0o600, "unknown role 'mayor'"),
    (GOOD.replace('client_secret = "s3cret"\n', ""), 0o600, "missing ['client_secret']"),
    ('colour = "red"\n' + GOOD, 0o600, "unknown keys"),
    ("issuer = ", 0o600, "not TOML"),
])
def test_bad_settings_are_refused_with_the_reason(tmp_path, text, mode, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        OidcSettings.load(write(tmp_path, text, mode))


def test_the_gateway_takes_the_provider_from_its_oidc_option(tmp_path):
    from gridlink.gateway.service import WebOptions

    assert WebOptions().oidc is None
    assert WebOptions(oidc=write(tmp_path, GOOD)).oidc.client_id == "gridlink"
    with pytest.raises(ConfigError, match=r"[Nn]o such file"):
        WebOptions(oidc=tmp_path / "missing.toml")
