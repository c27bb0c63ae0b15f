"""The one broker-URL parser (core ``brokerurl``): what it accepts, what it refuses and
why, the same answers under MicroPython, and the gateway, device and flash tools using it."""

import json
from urllib.parse import unquote, urlsplit

import pytest
from gridlink.firmware.core import brokerurl
from gridlink.firmware.core.brokerurl import BrokerURL, BrokerURLError, format_url
from hypothesis import given
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

GOOD = [
    ("mqtt://10.0.0.2:1884", ("10.0.0.2", 1884, False, None, None)),
    ("mqtts://gw.example", ("gw.example", 8883, True, None, None)),
    ("tcp://broker", ("broker", 1883, False, None, None)),
    ("ssl://broker:18883", ("broker", 18883, True, None, None)),
    ("MQTTS://GW.Example/", ("gw.example", 8883, True, None, None)),
    ("127.0.0.1:1883", ("127.0.0.1", 1883, False, None, None)),      # no scheme: mqtt
    ("localhost", ("localhost", 1883, False, None, None)),
    ("mqtt://[::1]:1999", ("::1", 1999, False, None, None)),
    ("mqtts://[FE80::1]", ("fe80::1", 8883, True, None, None)),
    ("mqtts://gw:s%40fe%3A1@gw.example:8883", ("gw.example", 8883, True, "gw", "s@fe:1")),
    ("mqtt://%E5%B7%A1@h", ("h", 1883, False, "巡", None)),
    ("mqtt://:only-password@h", ("h", 1883, False, None, "only-password")),
    ("mqtt://u:@h", ("h", 1883, False, "u", None)),
]

BAD = [
    ("http://x", "scheme 'http'"),
    ("tls://x", "scheme 'tls'"),
    ("", "empty"),
    ("mqtt://", "no host"),
    ("mqtt://:1883", "no host"),
    ("mqtt://u@", "no host"),
    ("mqtt://h:0", "port '0'"),
    ("mqtt://h:65536", "port '65536'"),
    ("mqtt://h:", "port ''"),
    ("mqtt://h:x1", "port 'x1'"),
    ("mqtt://h:1:2", "port '1:2'"),
    ("mqtt://h/topic", "no path"),
    ("mqtt://h?keepalive=5", "no query"),
    ("mqtt://h#x", "no query or fragment"),
    ("mqtt://a b", "space or a control character"),
    ("mqtt://h\n", "space or a control character"),
    ("mqtt://ho$t", "bad host"),
    ("mqtt://[::1", "bad IPv6"),
    ("mqtt://[host]", "bad IPv6"),
    ("mqtt://[::1]1883", "after the IPv6 address"),
    ("mqtt://u%4@h", "two hex digits"),
    ("mqtt://u%FF@h", "not UTF-8"),
    (None, "not text"),
    (1883, "not text"),
]


def fields(b):
    return (b.host, b.port, b.tls, b.username, b.password)


@pytest.mark.parametrize("url, want", GOOD)
def test_good_urls(url, want):
    b = BrokerURL(url)
    assert fields(b) == want and b.url == url
    assert fields(BrokerURL(str(b))) == want


@pytest.mark.parametrize("url, words", BAD)
def test_bad_urls_say_what_is_wrong(url, words):
    with pytest.raises(BrokerURLError) as err:
        BrokerURL(url)
    assert str(err.value).startswith(f"{url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    assert words in str(err.value)


def test_repr_hides_the_password():
    b = BrokerURL("mqtts://gw:secret@gw.example")
    assert "secret" not in repr(b) and repr(b) == "BrokerURL('mqtts://gw:***@gw.example:8883')"


NAME = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?", fullmatch=True)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: str(a).lower())
SECRET = st.one_of(st.none(), st.text(min_size=1, max_size=20))


@given(st.one_of(NAME, IPV4, IPV6), st.one_of(st.none(), st.integers(1, 65535)),
       st.booleans(), SECRET, SECRET)
def test_formatted_fields_parse_back(host, port, tls, user, password):
    text = format_url(host, port, tls, user, password)
    b = BrokerURL(text)
    want_port = port or (8883 if tls else 1883)
    assert fields(b) == (host, want_port, tls, user, password)
    assert str(b) == text
    # and Python's own URL splitting reads the same (the gateway's parser before this one)
    parts = urlsplit(text)
    assert (parts.hostname, parts.port) == (host, want_port)
    assert (unquote(parts.username) if parts.username else None) == user
    assert (unquote(parts.password) if parts.password else None) == password


URLISH = st.text(alphabet=st.sampled_from([*"mqtsl:/@[]%?#.-_ 0123456789abAB\n", "é"]),
                 max_size=40)


@given(st.one_of(URLISH, st.text(max_size=40), URLISH.map(lambda s: "mqtt://" + s)))
def test_any_text_parses_or_gets_a_broker_url_error(text):
    try:
        b = BrokerURL(text)
    except BrokerURLError as exc:
        assert str(exc).startswith(repr(text))
        return
    assert fields(BrokerURL(str(b))) == fields(b)
    assert b.host and 1 <= b.port <= 65535


@pytest.mark.micropython
def test_same_answers_under_micropython():
    urls = [u for u, _ in GOOD] + [u for u, _ in BAD]
    driver = """
def outcomes(mod, urls):
    out = []
    for u in urls:
        try:
            b = mod.BrokerURL(u)
            out.append(["ok", [b.host, b.port, b.tls, b.username, b.password, str(b)]])
        except mod.BrokerURLError as exc:
            out.append(["error", str(exc)])
    return out
"""
    scope = {}
    exec(driver, scope)
    expected = json.loads(json.dumps(scope["outcomes"](brokerurl, urls)))
    script = driver + f"""
import json
from gridcore import brokerurl as mod
print(json.dumps(outcomes(mod, json.loads({json.dumps(json.dumps(urls))}))))
"""
    got = json.loads(run_micropython(script).strip().splitlines()[-1])
    for url, mine, theirs in zip(urls, got, expected, strict=True):
        assert mine == theirs, f"{url!r} differs under MicroPython"


def test_the_gateway_the_device_and_the_flash_tools_read_urls_alike(tmp_path):
    from gridlink.firmware.device.delivery import parse_broker
    from gridlink.firmware.errors import DeviceError
    from gridlink.flash.provision import SpecError
    from gridlink.flash.provision import parse_broker as flash_broker
    from gridlink.gateway.errors import ConfigError
    from gridlink.gateway.runtime import GatewayRuntime

    for url in ("tcp://10.0.0.2", "mqtts://u:p@gw.example:18883", "gw.example:1884"):
        b = BrokerURL(url)
        assert parse_broker(url) == flash_broker(url) == (b.host, b.port, b.tls)
    for url, words in (("http://x", "scheme 'http'"), ("mqtt://h:99999", "port '99999'")):
        with pytest.raises(DeviceError, match=words):
            parse_broker(url)
        with pytest.raises(SpecError, match=words):
            flash_broker(url)
        with pytest.raises(ConfigError, match=words):
            GatewayRuntime(broker_url=url, store=None, validator=None, photo_dir=None)
