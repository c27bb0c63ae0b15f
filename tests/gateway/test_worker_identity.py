"""Each gateway worker has its own certificate, whose CN is its client id: the shipped
broker names a client after its certificate, so a shared or foreign certificate would
make one worker take another client's session.  A worker refuses to start with one."""

import argparse

import pytest
from gridlink.flash import pki
from gridlink.gateway.cli import _tls
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.service import Gateway
from gridlink.gateway.tls import TLSFiles


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    key, crt = pki.make_ca("district 410106 CA")
    (d / "ca.key").write_bytes(key)
    (d / "ca.pem").write_bytes(crt)
    for cn in ("gridlink-gateway", "gridlink-gateway-0", "gridlink-gateway-1", "pv-0001"):
        k, c = pki.sign_device(cn, d / "ca.pem", d / "ca.key")
        (d / f"{cn}.key").write_bytes(k)
        (d / f"{cn}.pem").write_bytes(c)
    return d


def tls(d, cn):
    return TLSFiles(str(d / "ca.pem"), str(d / f"{cn}.pem"), str(d / f"{cn}.key"))


@pytest.mark.parametrize(("cn", "worker"), [("gridlink-gateway", 0), ("pv-0001", 0),
                                            ("gridlink-gateway-0", 1)])
def test_a_worker_refuses_a_certificate_that_names_another_client(tmp_path, certs, cn, worker):
    with pytest.raises(ConfigError, match=rf"is for '{cn}', but this worker is "
                                          rf"'gridlink-gateway-{worker}'"):
        Gateway(broker="mqtts://127.0.0.1:8883", db=f"sqlite:///{tmp_path}/intake.sqlite",
                tls=tls(certs, cn), worker=worker)
    assert not (tmp_path / "intake.sqlite").exists()


def test_a_worker_with_its_own_certificate_is_built(tmp_path, certs):
    gw = Gateway(broker="mqtts://127.0.0.1:8883", db=f"sqlite:///{tmp_path}/intake.sqlite",
                 tls=tls(certs, "gridlink-gateway-1"), worker=1)
    assert gw.runtime.client_id == "gridlink-gateway-1"
    gw.store.close()


def test_worker_in_the_certificate_path_names_each_workers_files(certs):
    args = argparse.Namespace(tls_ca=str(certs / "ca.pem"), tls_insecure=False, worker_index=1,
                              tls_cert=str(certs / "gridlink-gateway-{worker}.pem"),
                              tls_key=str(certs / "gridlink-gateway-{worker}.key"))
    files = _tls(args)
    assert (files.cert, files.key) == (str(certs / "gridlink-gateway-1.pem"),
                                       str(certs / "gridlink-gateway-1.key"))
    assert files.common_name() == "gridlink-gateway-1"
