"""The tests' one certificate authority: a CA, a broker certificate for 127.0.0.1 and
localhost, and a client certificate per identity (its CN, as the shipped ACL reads it),
made with the openssl command — independent of gridlink.flash.pki, which has tests of its own.
Files: ``ca.crt``, ``<name>.crt`` and ``<name>.key`` in one folder."""

import ssl
import subprocess
from pathlib import Path

IDENTITIES = ("gridlink-gateway-0", "pv-0001", "pv-0002")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder, identities=IDENTITIES, ca_days=2):
    """The CA (valid ``ca_days``), ``broker`` and each identity's key and certificate (valid
    2 days) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(ca_days),
            "-subj", "/CN=gridlink test CA", cwd=folder)
    # the broker's certificate serves, and as a NATS cluster node also connects to its
    # peers (routes): both usages
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "extendedKeyUsage=serverAuth,clientAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("broker", *identities):
        subject = "localhost" if name == "broker" else name
        ext = "server.ext" if name == "broker" else "client.ext"
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={subject}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext,
                cwd=folder)
    return folder


def client_tls(pki, identity):
    """An SSL context presenting ``identity``'s certificate and trusting the CA."""
    ctx = ssl.create_default_context(cafile=str(Path(pki) / "ca.crt"))
    ctx.load_cert_chain(str(Path(pki) / f"{identity}.crt"), str(Path(pki) / f"{identity}.key"))
    return ctx


def shipped_broker(workdir, pki):
    """Mosquitto with the shipped configuration (TLS, the ACL) on a free port."""
    from gridlink.mosquitto import BrokerTLS, Mosquitto

    pki = Path(pki)
    return Mosquitto(workdir, shipped=True,
                     tls=BrokerTLS(pki / "ca.crt", pki / "broker.crt", pki / "broker.key"))
