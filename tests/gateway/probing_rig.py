"""Shared parts of the probing tests (issue 19): a gateway in-process against a private
Mosquitto, a device-side client listening to its acks and tasks, and their answers."""

from gridlink.gateway.service import Gateway

from tests.gateway_rig import answers, grid_map_file, wait_for


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

    wait_for(lambda: len(answered()) >= n, timeout, f"{n} acks")
    return answered()


def ack_topics(client):
    return [t for t, _ in list(client.messages) if t.endswith("/ack")]


def http_json(base, path, body=None):
    """GET (or POST ``body`` as JSON) on the gateway's HTTP side; the decoded answer."""
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)
