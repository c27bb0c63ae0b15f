"""Broker URLs: ``mqtt://[user[:password]@]host[:port]``, or ``mqtts://…`` for TLS.

The one parser of them, for the gateway, the Pi device and the flash tools alike:

    b = BrokerURL("mqtts://gw:s%40fe@gw.example")
    (b.host, b.port, b.tls, b.username, b.password)  # ("gw.example", 8883, True, "gw", "s@fe")

Schemes (case does not matter): ``mqtt`` and ``tcp`` are plain (port 1883 unless given),
``mqtts`` and ``ssl`` are TLS (port 8883); a URL without ``scheme://`` is ``mqtt``.  The
host is a name or IPv4 address (kept lower-case) or an IPv6 address in brackets (kept
without them); user and password are percent-decoded (an empty one is None).  A path
other than ``/``, a query or a fragment is refused: the broker has nothing to read in
them.  Anything else raises BrokerURLError naming the URL and what is wrong.
"""

from .errors import CoreError

PLAIN_PORT = 1883
TLS_PORT = 8883
SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}  # scheme → TLS
FORM = "mqtt://host[:port] or mqtts://host[:port]"

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._"
_IPV6_CHARS = "0123456789abcdef:."
_HEX = "0123456789abcdefABCDEF"
# what a user or password may hold unescaped (RFC 3986 unreserved + sub-delims)
_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;="


class BrokerURLError(CoreError):
    """A broker URL that is not ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""


def _bad(url, why):
    return BrokerURLError(f"{url!r} is not {FORM}: {why}")


def _unquote(url, text):
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            h = text[i + 1:i + 3]
            if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
                raise _bad(url, "a % in the user or password is not followed by two hex digits")
            out.append(int(h, 16))
            i += 3
        else:
            out.extend(c.encode())
            i += 1
    try:
        return bytes(out).decode("utf-8")
    except ValueError:
        pass
    raise _bad(url, "the user or password is not UTF-8 once decoded")


def _quote(text):
    out = []
    for c in text:
        if c in _SAFE:
            out.append(c)
        else:
            for b in c.encode():
                out.append(f"%{b:02X}")
    return "".join(out)


def _host_port(url, text, default_port):
    if text.startswith("["):
        end = text.find("]")
        host = text[1:end].lower() if end > 0 else ""
        if not host or any(c not in _IPV6_CHARS for c in host) or ":" not in host:
            raise _bad(url, f"bad IPv6 address in {text!r}")
        rest = text[end + 1:]
        if rest and rest[0] != ":":
            raise _bad(url, f"unexpected {rest!r} after the IPv6 address")
        port = rest[1:] if rest else None
    else:
        colon = text.find(":")
        host, port = (text, None) if colon < 0 else (text[:colon], text[colon + 1:])
        host = host.lower()
        if not host:
            raise _bad(url, "no host")
        if any(c not in _NAME_CHARS for c in host):
            raise _bad(url, f"bad host {host!r}")
    if port is None:
        return host, default_port
    if not port or len(port) > 5 or any(c < "0" or c > "9" for c in port) or \
            not 1 <= int(port) <= 65535:
        raise _bad(url, f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)


class BrokerURL:
    """A parsed broker URL: ``host``, ``port``, ``tls``, ``username``, ``password`` and the
    ``url`` as given; ``str()`` is its canonical text (which parses to the same)."""

    __slots__ = ("host", "password", "port", "tls", "url", "username")

    def __init__(self, url):
        if not isinstance(url, str):
            raise _bad(url, f"not text but {type(url).__name__}")
        if not url:
            raise _bad(url, "empty")
        for c in url:
            if c <= " " or c == "\x7f":
                raise _bad(url, "it holds a space or a control character")
        sep = url.find("://")
        scheme, rest = ("mqtt", url) if sep < 0 else (url[:sep].lower(), url[sep + 3:])
        if scheme not in SCHEMES:
            raise _bad(url, f"scheme {scheme!r} (use mqtt, mqtts, tcp or ssl)")
        if "?" in rest or "#" in rest:
            raise _bad(url, "a broker URL has no query or fragment")
        slash = rest.find("/")
        if slash >= 0:
            if rest[slash:] != "/":
                raise _bad(url, f"a broker URL has no path ({rest[slash:]!r})")
            rest = rest[:slash]
        at = rest.rfind("@")
        user = password = None
        if at >= 0:
            info = rest[:at]
            rest = rest[at + 1:]
            colon = info.find(":")
            user, password = (info, "") if colon < 0 else (info[:colon], info[colon + 1:])
            user = _unquote(url, user) or None
            password = _unquote(url, password) or None
        self.tls = SCHEMES[scheme]
        self.host, self.port = _host_port(url, rest, TLS_PORT if self.tls else PLAIN_PORT)
        self.url, self.username, self.password = url, user, password

    def __str__(self):
        return format_url(self.host, self.port, self.tls, self.username, self.password)

    def __repr__(self):
        shown = self if self.password is None else \
            format_url(self.host, self.port, self.tls, self.username, "***")
        return f"BrokerURL({str(shown)!r})"


def format_url(host, port=None, tls=False, username=None, password=None):
    """The canonical text of a broker URL (``BrokerURL`` of it gives these fields back):
    ``mqtts://user:pass@host:8883``, user and password percent-encoded, port always shown."""
    auth = ""
    if username or password:
        auth = _quote(username or "") + (":" + _quote(password) if password else "") + "@"
    if ":" in host:
        host = "[" + host + "]"
    scheme = "mqtts" if tls else "mqtt"
    return f"{scheme}://{auth}{host}:{port or (TLS_PORT if tls else PLAIN_PORT)}"
