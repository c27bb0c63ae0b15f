"""How a case leaves for another system: a department's "how to reach us" setting, the
HTTP request each adapter makes of a case message, what an answer means, and the backoff
between tries.  No I/O here (``cases.sender`` sends, ``cases.outbox`` stores).

Two adapters:

- ``webhook``: ``POST url`` with the case message as JSON;
- ``open311``: GeoReport v2 ``POST url`` (the server's ``…/requests.json``), form-encoded
  ``service_code``, ``lat``, ``long``, ``description``, ``address_string``, ``api_key``
  and ``attribute[case_no]``.

The webhook carries every event (``dispatch`` and the later moves); Open311 only
``dispatch``: GeoReport v2 creates requests and has no status update (``carries``).  Both
send the idempotency key (the case number; ``case_no:n`` for a later move) as the
``Idempotency-Key`` header, and the webhook as the message's ``key`` too, so a receiver
that sees a message twice (a try whose answer was lost) can tell.
"""

import json
import re
from urllib.parse import urlencode

from ..queue import Invalid

ADAPTERS = ("webhook", "open311")
URL = re.compile(r"https?://[!-~]{1,490}")
API_KEY = re.compile(r"[!-~]{1,200}")
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 1.0, 120.0
DEFAULT_TIMEOUT_S = 10.0
KEY_HEADER = "Idempotency-Key"
USER_AGENT = "gridlink-bridge/1"


def parse_reach(value):
    """A department's system setting, checked: ``{"adapter", "url", "api_key"?,
    "timeout_s"?}``; None stays None (the department has no system: nothing is sent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("system: an object {adapter, url, api_key?, timeout_s?}")
    unknown = set(value) - {"adapter", "url", "api_key", "timeout_s"}
    if unknown:
        raise Invalid(f"system: unknown field(s) {', '.join(sorted(unknown))}")
    adapter, url = value.get("adapter"), value.get("url")
    if adapter not in ADAPTERS:
        raise Invalid(f"system.adapter: one of {', '.join(ADAPTERS)}, not {adapter!r}")
    if not isinstance(url, str) or not URL.fullmatch(url):
        raise Invalid(f"system.url: an http(s) URL of printable ASCII, not {url!r}")
    out = {"adapter": adapter, "url": url}
    api_key = value.get("api_key")
    if api_key is not None:
        if not isinstance(api_key, str) or not API_KEY.fullmatch(api_key):
            raise Invalid("system.api_key: 1 to 200 printable ASCII characters")
        out["api_key"] = api_key
    timeout = value.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                TIMEOUT_MIN_S <= timeout <= TIMEOUT_MAX_S):
            raise Invalid(f"system.timeout_s: {TIMEOUT_MIN_S:g} to {TIMEOUT_MAX_S:g} seconds")
        out["timeout_s"] = float(timeout)
    return out


def parse_target(text):
    """``ADAPTER=URL`` (the command line's city platform) as a reach setting."""
    adapter, sep, url = (text or "").partition("=")
    if not sep:
        raise Invalid(f"{text!r}: use ADAPTER=URL, e.g. open311=https://city.example/"
                      "open311/v2/requests.json")
    return parse_reach({"adapter": adapter.strip(), "url": url.strip()})


def shown(reach):
    """The setting as the API shows it: the API key's presence, never the key."""
    if reach is None:
        return None
    return {**reach, "api_key": "set"} if "api_key" in reach else dict(reach)


def carries(reach, message):
    """Whether ``reach``'s adapter can deliver ``message``: a webhook every event, Open311
    a 派遣 only (a new request)."""
    return reach["adapter"] == "webhook" or message.get("event") == "dispatch"


def request_for(reach, message):
    """(method, url, headers, body bytes) that deliver ``message`` (``outbox`` builds it)
    through ``reach``."""
    headers = {KEY_HEADER: message["key"], "User-Agent": USER_AGENT}
    if reach["adapter"] == "webhook":
        if "api_key" in reach:
            headers["Authorization"] = f"Bearer {reach['api_key']}"
        headers["Content-Type"] = "application/json"
        body = json.dumps(message, ensure_ascii=False, sort_keys=True).encode()
        return "POST", reach["url"], headers, body
    fields = [("service_code", message["code"] or ""), ("lat", _coord(message.get("lat"))),
              ("long", _coord(message.get("lon"))),
              ("description", _description(message)),
              ("attribute[case_no]", message["case_no"]),
              ("attribute[idempotency_key]", message["key"])]
    if message.get("address"):
        fields.append(("address_string", message["address"]))
    if "api_key" in reach:
        fields.append(("api_key", reach["api_key"]))
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    body = urlencode([(k, v) for k, v in fields if v != ""]).encode()
    return "POST", reach["url"], headers, body


def _coord(value):
    return "" if value is None else f"{float(value):.6f}"


def _description(message):
    parts = [f"案卷 {message['case_no']}", message.get("class_name") or message["code"] or ""]
    if message.get("department_name"):
        parts.append(f"派遣 {message['department_name']}")
    if message.get("deadline"):
        parts.append(f"处置时限 {message['deadline']}")
    if message.get("text"):
        parts.append(message["text"])
    return " · ".join(p for p in parts if p)[:4000]


def outcome(adapter, status, body):
    """What an HTTP answer means: ``("sent", remote id or None)`` — a 2xx, or a 409 (the
    receiver has the key already) — else ``("retry", why)``."""
    if 200 <= status < 300 or status == 409:
        return "sent", _remote_id(adapter, body)
    text = body[:200].decode("utf-8", "replace").strip() if body else ""
    return "retry", f"HTTP {status}" + (f": {text}" if text else "")


def _remote_id(adapter, body):
    """The receiver's id for what it took: Open311's ``service_request_id`` (or its
    ``token``), a webhook's ``id``; None when the answer names none."""
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        answer = answer[0]
    if not isinstance(answer, dict):
        return None
    for field in ("service_request_id", "token", "id"):
        value = answer.get(field)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)[:200]
    return None


def backoff(attempts, *, base_s=2.0, cap_s=600.0):
    """Seconds to wait after the ``attempts``-th failed try: ``base_s`` doubling per try,
    at most ``cap_s``."""
    if attempts < 1:
        return 0.0
    return min(cap_s, base_s * 2.0 ** min(attempts - 1, 62))
