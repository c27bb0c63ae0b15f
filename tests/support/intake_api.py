"""The intake API as its tests drive it: an HTTP client signed in with API tokens, a
hand-moved clock, report rows inserted as the ingest path writes them."""

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from gridlink.gateway.auth.accounts import Accounts

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand (leases expire without sleeping)."""

    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += timedelta(seconds=seconds)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def add_report(store, seq, *, device="pv-0001", code="06010", kind="event", grid=None,
               lat=34.8205, lon=113.2871, flags=(), grid_mismatch=0, source="button",
               task=None, result=None, captured=None, photos=(), text="test"):
    """Insert one committed report row as the ingest path would (contract columns)."""
    rid = f"{device}:{seq:012d}"
    captured = captured or T0 + timedelta(seconds=seq)
    grid = grid or "410106001001001"
    payload = {"v": 1, "id": rid, "device": device, "seq": seq}
    with store.connect() as conn:
        conn.execute(store.sql(
            "INSERT INTO reports (id, device, district, seq, captured_at, received_at,"
            " committed_at, time_source, lat, lon, fix_mode, fix_status, flags, grid,"
            " grid_device, grid_mismatch, street, kind, standard, code, object, source, task,"
            " result, text, photos, payload) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (rid, device, grid[:6], seq, iso(captured), iso(captured), iso(captured), "gnss",
             lat, lon, 3, 1, json.dumps(sorted(flags)), grid, grid, grid_mismatch, grid[:9],
             kind, "GB/T 47678.5-2026", code, None, source, task, result, text,
             json.dumps(list(photos)), json.dumps(payload)))
    return rid


class Tokens:
    """API tokens for the tests' operators, each user made in the app's store on first use,
    without a password (only its token signs it in; an argon2id hash is a second or more).

    A named operator is a 受理员 (acceptor) unless ``roles`` says otherwise; the unnamed
    default ``centre`` is 值班长 + 技术员 + 管理员 (tasks, assignments, the audit trail)."""

    DEFAULT = "centre"

    def __init__(self, store, roles=None):
        self.accounts = Accounts(store)
        self.roles = {self.DEFAULT: ("shift_lead", "technician", "admin"), **(roles or {})}
        self.secrets = {}
        self.lock = threading.Lock()

    def __call__(self, name=None):
        name = name or self.DEFAULT
        with self.lock:
            if name not in self.secrets:
                self.accounts.add(name, self.roles.get(name, ("acceptor",)), None)
                self.secrets[name], _ = self.accounts.issue_token(name, "tests")
            return self.secrets[name]


class Api:
    """JSON over HTTP.  With ``tokens`` every request carries ``Authorization: Bearer`` for
    the operator named in the body's ``operator`` key (taken out of the body: the server
    takes the actor from the token), or for the default operator; without, it is anonymous."""

    def __init__(self, base, tokens=None):
        self.base = base
        self.tokens = tokens

    def anonymous(self):
        return Api(self.base)

    def call(self, method, path, body=None, headers=None, user=None):
        """(status, JSON body); ``user`` signs in as that operator and sends ``body`` as is."""
        name = user
        if user is None and isinstance(body, dict) and "operator" in body:
            body = dict(body)
            name = body.pop("operator")
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.tokens is not None and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.tokens(name)}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body):
        return self.call("POST", path, body)

    def auth(self, name=None):
        """The Authorization header of ``name`` (or the default operator)."""
        return {"Authorization": f"Bearer {self.tokens(name)}"}
