"""Broker URLs and paho-mqtt client construction (MQTT 5, persistent session, TLS)."""

import ssl
from urllib.parse import unquote, urlsplit

from .errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS)."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
        self.url = url
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        try:
            self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r}: {exc}") from None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None


class TLSFiles:
    """A CA bundle and optionally a client certificate + key for mutual TLS."""

    def __init__(self, ca, cert=None, key=None, insecure=False):
        if (cert is None) != (key is None):
            raise ConfigError("TLS: give both --tls-cert and --tls-key, or neither")
        self.ca, self.cert, self.key, self.insecure = ca, cert, key, insecure

    def context(self):
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files: {exc}") from exc
        if self.insecure:
            ctx.check_hostname = False
        return ctx


def make_client(client_id, *, manual_ack=True, tls=None, broker=None):
    """A paho MQTT 5 client with a fixed id (its session outlives disconnects)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    if broker is not None and broker.username:
        client.username_pw_set(broker.username, broker.password)
    if tls is not None:
        client.tls_set_context(tls.context())
        if tls.insecure:
            client.tls_insecure_set(True)
    elif broker is not None and broker.tls:
        client.tls_set_context(ssl.create_default_context())
    return client


def connect_properties(session_expiry, receive_maximum):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    props.ReceiveMaximum = receive_maximum
    return props
