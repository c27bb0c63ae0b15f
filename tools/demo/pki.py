"""The demo's throw-away district CA (made with gridlink.flash.pki, kept in the data folder):
a CA folder as ``gridlink flash ca`` makes one, with the issued-ids record and the CRL, so
``gridlink fleet revoke DEVICE --ca <data>/pki`` cuts a demo device off."""

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
        self.crl = self.folder / "crl.pem"
        self._publish_crl()
        self.issue("broker", hosts=("127.0.0.1", "localhost"))

    def _publish_crl(self):
        """The CRL re-signed at each start (keeping its entries), so a kept ``--data``
        never has an expired one, which would make the broker refuse every device."""
        from gridlink.flash import pki

        if pki.backend() == "cryptography":
            from gridlink.fleet.revoke import publish

            publish(self.folder)
        elif not self.crl.exists():
            self.crl = None     # openssl only: no CRL, no revocation check

    def cert(self, cn):
        return self.folder / f"{cn}.pem"

    def key(self, cn):
        return self.folder / f"{cn}.key"

    def issue(self, cn, hosts=(), peer=False):
        """A certificate for ``cn`` (a device id, the gateway, a server on ``hosts``; a
        ``peer`` server also dials its peers), kept across runs and recorded in the
        folder's ``issued.csv``."""
        from gridlink.flash import pki
        from gridlink.flash.issued import IssuedRecord

        if not self.cert(cn).exists():
            key, crt = pki.sign_device(cn, self.ca, self.folder / "ca.key", hosts=hosts,
                                       peer=peer)
            info = pki.info(crt)   # recorded first: a certificate is never unrecorded
            IssuedRecord.beside(self.ca).append(cn, info.serial, f"{info.not_after:%Y-%m-%d}")
            _write_private(self.key(cn), key)
            self.cert(cn).write_bytes(crt)
        return self.cert(cn), self.key(cn)


def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
