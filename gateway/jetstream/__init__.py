"""The gateway's NATS JetStream path: a clustered broker that devices reach over MQTT.

``link.JetStreamLink`` is the transport (the Mosquitto path's is ``gateway.link``),
``cluster`` runs a cluster of real ``nats-server`` processes from the shipped template.
Importing this package needs no NATS client; ``link`` needs ``nats-py``.
"""

SCHEMES = ("nats", "nats+tls")


def is_nats_url(url):
    """True for a broker URL that selects the NATS JetStream transport
    (``nats://host:port[,host:port…]`` or ``nats+tls://…``)."""
    return str(url).partition("://")[0].lower() in SCHEMES
