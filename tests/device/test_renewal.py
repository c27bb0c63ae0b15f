"""A device renews its certificate before it expires, over MQTT: its new key stays on the
device, the centre signs its CSR, and the new certificate is used only once it checks out
and the broker accepts it.  End to end against the shipped broker config over TLS; the
device's checks one by one on the module."""

import datetime as dt

import pytest
from cryptography import x509
from gridlink.firmware.core import messages
from gridlink.firmware.device.renewal import IDENTITY, NEW_KEY, Renewal
from gridlink.gateway.renewal import CertificateAuthority
from gridlink.gateway.tls import TLSFiles

from tests.support.device_rig import DeviceProc
from tests.support.pki import make_pki, shipped_broker
from tests.support.probing_rig import start_gateway
from tests.support.renewal import ca_dir_of, csr_pem, make_ca_dir
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The tests' CA (the devices' certificates of 2 days: within any renewal window; the
    CA's of ten years, so that a renewed certificate, which never outlives it, is not)."""
    return make_pki(tmp_path_factory.mktemp("pki"), ca_days=3650)


def renewal(tmp_path, pki, device="pv-0001", trial=None):
    return Renewal(tmp_path / "data", device, (str(pki / "ca.crt"), str(pki / f"{device}.crt"),
                                               str(pki / f"{device}.key")),
                   30, try_connect=trial)


def signed(ca, csr_pem, device="pv-0001"):
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return messages.make_cert(device, ca.sign(device, csr)[0])


@pytest.fixture
def data(tmp_path):
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def test_a_certificate_that_checks_out_is_tried_then_kept_with_its_key(tmp_path, pki, data):
    ca = CertificateAuthority(ca_dir_of(pki, tmp_path / "ca"))
    tried = []
    r = renewal(tmp_path, pki, trial=lambda files: tried.append(files) or None)
    assert r.due() and r.files[1].endswith("pv-0001.crt")
    csr = r.request()
    assert "BEGIN CERTIFICATE REQUEST" in csr and (data / NEW_KEY).exists()
    assert r.request() is None                            # asked: not again within the hour
    assert oct((data / NEW_KEY).stat().st_mode)[-3:] == "600"
    files = r.receive(signed(ca, csr))
    assert files == (str(pki / "ca.crt"), str(data / IDENTITY), str(data / IDENTITY))
    assert len(tried) == 1 and not (data / NEW_KEY).exists()
    assert r.failed is None and not r.due()               # 825 days ahead
    # the next start uses the renewed identity
    assert renewal(tmp_path, pki).files[1] == str(data / IDENTITY)
    # a damaged identity file is not used: the provisioned one is, and it is due again
    (data / IDENTITY).write_bytes((data / IDENTITY).read_bytes()[:-200])
    again = renewal(tmp_path, pki)
    assert again.files[1] == str(pki / "pv-0001.crt") and again.due()


def test_each_bad_answer_leaves_the_old_certificate(tmp_path, pki, data):
    ca = CertificateAuthority(ca_dir_of(pki, tmp_path / "ca"))
    other = CertificateAuthority(make_ca_dir(tmp_path / "other"))
    r = renewal(tmp_path, pki, trial=lambda files: "127.0.0.1:1 refused this device")
    assert r.receive(messages.make_cert("pv-0001", refused="retired")) is None
    assert r.failed == "refused by the centre: retired"
    assert r.receive(signed(ca, csr_pem("pv-0001"))) is None      # nothing asked for
    assert "asked for none" in r.failed
    csr = r.request()
    cases = [
        (signed(ca, csr_pem("pv-0001")), "not for this device's new key"),
        (signed(other, csr), "not signed by this device's CA"),
        (signed(ca, csr), "did not accept the new certificate"),   # the trial failed
    ]
    for answer, why in cases:
        assert r.receive(answer) is None
        assert why in r.failed, (why, r.failed)
        assert r.files[1] == str(pki / "pv-0001.crt") and not (data / IDENTITY).exists()
    assert (data / NEW_KEY).exists()                   # kept for the next request
    assert r.status() == {"expires": r.status()["expires"], "failed": r.failed}
    assert r.status()["expires"].endswith(".000Z")


def test_a_certificate_for_another_device_is_refused(tmp_path, pki, data):
    ca = CertificateAuthority(ca_dir_of(pki, tmp_path / "ca"))
    r = renewal(tmp_path, pki, trial=lambda files: None)
    csr = r.request()
    cert = ca.sign("pv-0002", x509.load_pem_x509_csr(csr.encode()))[0]
    assert r.receive(messages.make_cert("pv-0001", cert)) is None
    assert "not this device's" in r.failed


@pytest.fixture(scope="module")
def centre(pki, tmp_path_factory):
    """One shipped broker (TLS, the ACL) and one gateway holding the CA for the module's
    end-to-end tests; each test has a device of its own and sets the gateway's policy
    (``renew_mode``)."""
    folder = tmp_path_factory.mktemp("centre")
    tls = TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway-0.crt"),
                   str(pki / "gridlink-gateway-0.key"))
    with shipped_broker(folder / "broker", pki) as broker:
        gw = start_gateway(broker, f"sqlite:///{folder}/intake.sqlite", folder, tls=tls,
                           ca_dir=ca_dir_of(pki, folder / "ca"), renew="auto")
        try:
            yield broker, gw
        finally:
            gw.stop()


@pytest.fixture
def renew_mode(centre):
    """``set(mode)``: the shared gateway's policy for this test, "auto" again after it."""
    renewals = centre[1].renewals
    yield lambda mode: setattr(renewals, "mode", mode)
    renewals.mode = "auto"


def _device(tmp_path, broker, pki, device):
    return DeviceProc(tmp_path, broker, profile="fixed-terminal", device_id=device, extra=[
        "--sim", "--cancel-grace", "0", "--reconnect-max", "1", "--renew-check", "0.3",
        "--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / f"{device}.crt"),
        "--tls-key", str(pki / f"{device}.key")])


def _fleet_row(gw, device):
    from gridlink.gateway import fleet_view

    return next(d for d in fleet_view.devices(gw.store) if d["device"] == device)


def _expires(dev):
    return dt.datetime.fromisoformat(dev.status()["cert"]["expires"].replace("Z", "+00:00"))


def _reports_of(gw, device):
    return gw.store.fetchall("SELECT id FROM reports WHERE device = ?", [device])


@pytest.mark.broker
def test_a_running_device_renews_over_mqtt_and_reconnects_with_the_new_certificate(
        tmp_path, pki, centre, renew_mode):
    broker, gw = centre
    renew_mode("auto")
    signed = gw.renewals.counters["signed"]
    dev = _device(tmp_path, broker, pki, "pv-0001").start()
    try:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
        wait_until(lambda: _expires(dev) > soon, 30, "the renewed certificate in use")
        data = dev.data_dir
        kept = (data / IDENTITY).read_bytes()
        cert = x509.load_pem_x509_certificate(kept)
        assert b"PRIVATE KEY" in kept and not (data / NEW_KEY).exists()
        row = gw.renewals.ca.record.latest("pv-0001")
        assert row["serial"] == f"{cert.serial_number:X}"
        # reconnected with it: the link is up again and a report reaches the gateway
        wait_until(lambda: dev.status()["connected"], 30, "connected again")
        assert dev.status()["delivery"]["connects"] >= 2
        assert dev.status()["cert"]["failed"] is None
        assert "MQTT: reconnecting with a new certificate" in dev.log()
        dev.press("call")
        wait_until(lambda: _reports_of(gw, "pv-0001"), 30,
                   "the report through the new certificate")
        # a restart keeps the new identity
        dev.stop()
        dev.start()
        assert _expires(dev) > soon
        wait_until(lambda: dev.status()["connected"], 30, "connected after the restart")
        assert gw.renewals.counters["signed"] == signed + 1
    finally:
        dev.stop()


@pytest.mark.broker
def test_a_refused_request_leaves_the_device_on_its_old_certificate(tmp_path, pki, centre,
                                                                     renew_mode):
    broker, gw = centre
    renew_mode("approve")
    dev = _device(tmp_path, broker, pki, "pv-0002").start()
    try:
        before = _expires(dev)
        wait_until(lambda: gw.renewals.requests(), 30, "the request, pending")
        [pending] = gw.renewals.requests()
        assert pending["device"] == "pv-0002"
        gw.renewals.refuse(pending["id"], "retired", operator="tech")
        wait_until(lambda: dev.status()["cert"]["failed"], 30, "the refusal reported")
        assert dev.status()["cert"] == {"expires": f"{before:%Y-%m-%dT%H:%M:%S}.000Z",
                                        "failed": "refused by the centre: retired"}
        assert not (dev.data_dir / IDENTITY).exists()
        assert dev.status()["connected"]
        # the centre sees it too, in the fleet view
        wait_until(lambda: (_fleet_row(gw, "pv-0002")["cert"] or {}).get("failed"), 30,
                   "the refusal in the fleet view")
        dev.press("call")
        wait_until(lambda: _reports_of(gw, "pv-0002"), 30, "a report on the old certificate")
    finally:
        dev.stop()
