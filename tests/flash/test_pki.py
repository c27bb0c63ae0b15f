"""Device certificates: the cryptography and openssl backends make certificates the other
accepts, and both refuse the same bad chains with the same clear reasons."""

import datetime as dt
import shutil

import pytest
from gridlink.flash import pki

BACKENDS = [b for b in ("cryptography", "openssl") if b != "openssl" or shutil.which("openssl")]
try:
    import cryptography  # noqa: F401
except ImportError:
    BACKENDS.remove("cryptography")


@pytest.fixture(params=BACKENDS)
def made_by(request, monkeypatch):
    monkeypatch.setenv("GRIDLINK_PKI", request.param)
    return request.param


@pytest.mark.parametrize("checked_by", BACKENDS)
def test_a_device_certificate_made_by_one_backend_checks_out_with_the_other(
        made_by, checked_by, tmp_path, monkeypatch):
    key, crt = pki.make_ca("district 410106 CA")
    (tmp_path / "ca.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(crt)
    dkey, dcrt = pki.sign_device("sn-0001", tmp_path / "ca.pem", tmp_path / "ca.key", days=30)
    monkeypatch.setenv("GRIDLINK_PKI", checked_by)
    ci = pki.verify_chain(dcrt, crt, dkey)
    now = dt.datetime.now(dt.UTC)
    assert ci.cn == "sn-0001"
    assert dt.timedelta(days=29) < ci.not_after - now <= dt.timedelta(days=30)
    with pytest.raises(pki.CertError, match="device certificate expired on"):
        pki.verify_chain(dcrt, crt, dkey, now=now + dt.timedelta(days=31))
    other_key, other_ca = pki.make_ca("another district")
    with pytest.raises(pki.CertError, match="device certificate is not signed by the CA"):
        pki.verify_chain(dcrt, other_ca, dkey)
    with pytest.raises(pki.CertError, match="device key does not belong to device certificate"):
        pki.verify_chain(dcrt, crt, other_key)
    with pytest.raises(pki.CertError, match="device certificate is not a PEM certificate"):
        pki.verify_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                         crt)


def extended_key_usage(cert_pem):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

    names = {EKU.SERVER_AUTH: "serverAuth", EKU.CLIENT_AUTH: "clientAuth"}
    cert = x509.load_pem_x509_certificate(cert_pem)
    return {names.get(u, u.dotted_string) for u in cert.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value}


@pytest.mark.skipif("cryptography" not in BACKENDS, reason="reads the certificate with it")
def test_a_server_serves_a_device_dials_and_a_peer_does_both(made_by, tmp_path):
    """A cluster node (a NATS route) both serves and dials the other nodes: ``peer``."""
    key, crt = pki.make_ca("district 410106 CA")
    (tmp_path / "ca.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(crt)
    ca = tmp_path / "ca.pem", tmp_path / "ca.key"
    made = {
        "server": pki.sign_device("broker", *ca, hosts=["127.0.0.1"])[1],
        "peer": pki.sign_device("node", *ca, hosts=["127.0.0.1"], peer=True)[1],
        "device": pki.sign_device("pv-0001", *ca)[1],
        "device, peer ignored": pki.sign_device("pv-0002", *ca, peer=True)[1],
    }
    assert {k: extended_key_usage(v) for k, v in made.items()} == {
        "server": {"serverAuth"}, "peer": {"serverAuth", "clientAuth"},
        "device": {"clientAuth"}, "device, peer ignored": {"clientAuth"}}


def test_a_missing_ca_file_is_named(made_by, tmp_path):
    with pytest.raises(pki.CertError, match=r"CA certificate .*nope\.pem: No such file"):
        pki.sign_device("sn-0001", tmp_path / "nope.pem", tmp_path / "nope.key")


def test_the_ca_command_makes_a_ca_and_a_broker_certificate_and_never_overwrites(tmp_path,
                                                                                 capsys):
    import stat

    from gridlink.cli import main

    d = tmp_path / "ca"
    assert main(["flash", "ca", str(d), "--cn", "410106 CA", "--broker-host", "127.0.0.1"]) == 0
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    ca = (d / "ca.pem").read_bytes()
    assert pki.info(ca).cn == "410106 CA"
    assert pki.verify_chain((d / "broker.pem").read_bytes(), ca,
                            (d / "broker.key").read_bytes()).cn == "broker"
    capsys.readouterr()
    assert main(["flash", "ca", str(d)]) == 2
    assert "ca.pem exists: a CA is never overwritten" in capsys.readouterr().err
    assert (d / "ca.pem").read_bytes() == ca
