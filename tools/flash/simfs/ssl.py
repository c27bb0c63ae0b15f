# Stand-in for MicroPython's ``ssl`` on the simulated board (the WebAssembly port has
# none): the context reads the CA, certificate and key files from the board's flash as a
# board does, and wrap_socket has the socket relay run the TLS handshake on its real TCP
# socket with them (OpenSSL on the host, where a board uses mbedTLS), so the node meets a
# broker that requires client certificates.  A handshake the broker refuses raises OSError.
import binascii
import socket

PROTOCOL_TLS_CLIENT = 16
CERT_NONE = 0
CERT_REQUIRED = 2


def _hex(path):
    with open(path, "rb") as f:
        return binascii.hexlify(f.read()).decode()


class SSLContext:
    def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
        self.verify_mode = CERT_REQUIRED
        self.ca = self.cert = self.key = None

    def load_verify_locations(self, cafile=None, cadata=None):
        self.ca = _hex(cafile)

    def load_cert_chain(self, certfile, keyfile=None):
        self.cert, self.key = _hex(certfile), _hex(keyfile or certfile)

    def wrap_socket(self, sock, server_side=False, server_hostname=None):
        socket._call(" ".join(("tls", sock.id, server_hostname or "-", self.ca or "-",
                               self.cert or "-", self.key or "-")))
        return sock
