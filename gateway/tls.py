"""TLS of the gateway's broker connection: the CA bundle and client certificate files, and
the SSL context ``link`` connects with.  (Broker URLs are parsed by the core's
``brokerurl``, the same parser the devices use.)"""

import ssl

from .errors import ConfigError


def client_context(broker, tls=None):
    """The SSL context to connect to ``broker`` (a core ``BrokerURL``) with: ``tls``
    (:class:`TLSFiles`) if given, the system's CAs for an ``mqtts://`` URL without it, None
    for plain ``mqtt://``."""
    if tls is not None:
        return tls.context()
    return ssl.create_default_context() if broker.tls else None


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
