"""Shared parts of the probing tests (issue 19): a gateway in-process against a private
Mosquitto, a device-side client listening to its acks and tasks, and their answers."""

from gridlink.gateway.service import Gateway

from tests.support.gateway_rig import answers, grid_map_file
from tests.support.waiting import wait_until


def start_gateway(broker, store_url, folder, **kw):
    """A gateway worker on ``broker`` (grid map of district 410106), subscribed."""
    kw.setdefault("grid", grid_map_file(folder))
    gw = Gateway(broker=broker.url, db=store_url, photos=folder / "photos", **kw)
    gw.start()
    assert gw.runtime.wait_ready(10), "gateway did not subscribe"
    return gw


def acks_of(client, n, timeout=30):
    """(id, status, reason) of the first ``n`` reports answered on any ack topic."""
    def answered():
        return answers(p for t, p in list(client.messages) if t.endswith("/ack"))

    wait_until(lambda: len(answered()) >= n, timeout, f"{n} acks")
    return answered()


def ack_topics(client):
    return [t for t, _ in list(client.messages) if t.endswith("/ack")]


def http_json(gw, path, body=None):
    """GET (or POST ``body`` as JSON) on the gateway's HTTP side, signed in with an API
    token of a 值班长 (made in the gateway's store on first use); the decoded answer."""
    import json
    import urllib.request

    from tests.support.intake_api import Tokens

    if getattr(gw, "test_tokens", None) is None:
        gw.test_tokens = Tokens(gw.store)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(gw.http_url + path, data=data,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {gw.test_tokens()}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def scrape_metrics(gw):
    """``/metrics`` as Prometheus scrapes it: with a read-only (只读) user's API token."""
    import urllib.request

    from tests.support.intake_api import Tokens

    if getattr(gw, "scrape_tokens", None) is None:
        gw.scrape_tokens = Tokens(gw.store, roles={"prometheus": ("viewer",)})
    req = urllib.request.Request(gw.http_url + "/metrics", headers={
        "Authorization": f"Bearer {gw.scrape_tokens('prometheus')}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def cert_serial(pki, identity):
    from cryptography import x509

    return x509.load_pem_x509_certificate((pki / f"{identity}.crt").read_bytes()).serial_number


def write_crl(pki, path, revoked=(), next_update_days=30.0, last_update_days=-1.0):
    """A CRL signed by the test CA of ``pki`` (tests.gateway_rig.make_pki) revoking the
    certificates of ``revoked`` (identities), written atomically to ``path``."""
    import datetime as dt
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now + dt.timedelta(days=last_update_days))
               .next_update(now + dt.timedelta(days=next_update_days)))
    for identity in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert_serial(pki, identity))
            .revocation_date(now - dt.timedelta(minutes=1)).build())
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)
    return path


def write_issued(pki, path, identities, issued_at="2026-11-01T00:00:00.000Z"):
    """The issued-ids record (issued.json) of ``identities``' certificates."""
    import json

    path.write_text(json.dumps([{"device": i, "serial": format(cert_serial(pki, i), "X"),
                                 "issued_at": issued_at} for i in identities]))
    return path
