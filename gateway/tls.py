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

    def common_name(self):
        """The client certificate's CN (the identity the broker gives this client), or
        None without a certificate or without the ``cryptography`` package to read it."""
        if not self.cert:
            return None
        try:
            from cryptography import x509
            from cryptography.x509.oid import NameOID
        except ImportError:
            return None
        try:
            with open(self.cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"TLS certificate {self.cert}: {exc}") from exc
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None
