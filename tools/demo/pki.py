"""The demo's throw-away district CA (made with gridlink.flash.pki, kept in the data folder)."""

import os
from pathlib import Path


class DemoPKI:
    """A throw-away district CA with certificates for the broker, gateway and devices."""

    def __init__(self, folder):
        from gridlink.flash import pki

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca = self.folder / "ca.pem"
        if not self.ca.exists():
            key, crt = pki.make_ca("gridlink demo CA")
            _write_private(self.folder / "ca.key", key)
            self.ca.write_bytes(crt)
        self.issue("broker", hosts=("127.0.0.1", "localhost"))

    def cert(self, cn):
        return self.folder / f"{cn}.pem"

    def key(self, cn):
        return self.folder / f"{cn}.key"

    def issue(self, cn, hosts=(), peer=False):
        """A certificate for ``cn`` (a device id, the gateway, a server on ``hosts``; a
        ``peer`` server also dials its peers), kept across runs."""
        from gridlink.flash import pki

        if not self.cert(cn).exists():
            key, crt = pki.sign_device(cn, self.ca, self.folder / "ca.key", hosts=hosts,
                                       peer=peer)
            _write_private(self.key(cn), key)
            self.cert(cn).write_bytes(crt)
        return self.cert(cn), self.key(cn)


def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
