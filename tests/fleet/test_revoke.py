"""``gridlink fleet revoke``: a device's certificates onto the district CRL, which the
shipped broker config checks (a revoked device's next connection is refused, a reload
drops no one) and the gateway reads (its fleet view shows the device revoked)."""

import csv
import datetime as dt
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from gridlink.cli import main
from gridlink.flash import pki
from gridlink.flash.issued import IssuedRecord
from gridlink.fleet.revoke import RevokeError, publish, revoke
from gridlink.gateway.crl import read_crl
from gridlink.mosquitto import BrokerTLS, Mosquitto

from tests.support.waiting import wait_until

DEVICES = ("pv-0001", "pv-0002")


def issue(ca_dir, cn):
    key, crt = pki.sign_device(cn, ca_dir / "ca.pem", ca_dir / "ca.key")
    (ca_dir / f"{cn}.key").write_bytes(key)
    (ca_dir / f"{cn}.pem").write_bytes(crt)
    info = pki.info(crt)
    IssuedRecord.beside(ca_dir / "ca.pem").append(cn, info.serial, f"{info.not_after:%Y-%m-%d}")
    return int(info.serial, 16)


@pytest.fixture
def ca(tmp_path):
    d = tmp_path / "ca"
    assert main(["flash", "ca", str(d), "--broker-host", "127.0.0.1"]) == 0
    return d


def test_flash_ca_publishes_an_empty_crl_the_gateway_reads(ca):
    info = read_crl(ca / "crl.pem")
    assert info.serials == frozenset()
    assert info.issuer == "gridlink district CA"
    assert dt.timedelta(days=29) < info.next_update - dt.datetime.now(dt.UTC) <= \
        dt.timedelta(days=30)


def test_revoke_puts_every_certificate_of_the_device_on_the_crl_and_logs_it(ca, capsys):
    first = issue(ca, "pv-0001")
    second = issue(ca, "pv-0001")   # re-provisioned once
    other = issue(ca, "pv-0002")
    assert main(["fleet", "revoke", "pv-0001", "--reason", "stolen", "--ca", str(ca),
                 "--note", "vehicle 7 broken into"]) == 0
    assert "2 certificate(s) revoked" in capsys.readouterr().out
    crl = x509.load_pem_x509_crl((ca / "crl.pem").read_bytes())
    assert {e.serial_number for e in crl} == {first, second}
    assert other not in {e.serial_number for e in crl}
    reasons = {e.extensions.get_extension_for_class(x509.CRLReason).value.reason for e in crl}
    assert reasons == {x509.ReasonFlags.key_compromise}
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())
    (row,) = csv.DictReader((ca / "revocations.csv").open())
    assert (row["device"], row["reason"], row["note"]) == ("pv-0001", "stolen",
                                                           "vehicle 7 broken into")
    assert set(row["serials"].split()) == {format(first, "X"), format(second, "X")}


def test_revoking_again_logs_only_certificates_not_revoked_before(ca, capsys):
    first = issue(ca, "pv-0001")
    args = ["fleet", "revoke", "pv-0001", "--reason", "stolen", "--ca", str(ca)]
    assert main(args) == 0
    assert main(args) == 0
    assert "pv-0001: already revoked, all 1 certificate(s)" in capsys.readouterr().out
    assert len(list(csv.DictReader((ca / "revocations.csv").open()))) == 1
    second = issue(ca, "pv-0001")          # re-provisioned, then lost again
    assert main([*args[:4], "lost", *args[5:]]) == 0
    assert f"1 certificate(s) revoked ({format(second, 'X')})" in capsys.readouterr().out
    rows = list(csv.DictReader((ca / "revocations.csv").open()))
    assert [(r["serials"], r["reason"]) for r in rows] == [
        (format(first, "X"), "stolen"), (format(second, "X"), "lost")]
    assert read_crl(ca / "crl.pem").serials == {first, second}


def test_a_second_revocation_keeps_the_first_and_crl_resigns_both(ca):
    a, b = issue(ca, "pv-0001"), issue(ca, "pv-0002")
    revoke(ca, "pv-0001", "retired")
    revoke(ca, "pv-0002", "lost")
    assert read_crl(ca / "crl.pem").serials == {a, b}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)
    assert publish(ca, days=30, now=later) == {a, b}
    info = read_crl(ca / "crl.pem")
    assert info.serials == {a, b}
    assert info.next_update.date() == (later + dt.timedelta(days=30)).date()


@pytest.mark.parametrize("case", ["unknown device", "bad reason", "foreign crl", "no ca",
                                  "no ca folder", "damaged crl"])
def test_a_revocation_that_cannot_be_made_is_refused_and_changes_nothing(ca, tmp_path,
                                                                        case, capsys):
    issue(ca, "pv-0001")
    args = ["fleet", "revoke", "pv-0001", "--reason", "stolen", "--ca", str(ca)]
    if case == "unknown device":
        args[2], want = "pv-0009", "'pv-0009' has no certificate in"
    elif case == "bad reason":
        with pytest.raises(RevokeError, match="reason: one of"):
            revoke(ca, "pv-0001", "because")
        assert read_crl(ca / "crl.pem").serials == frozenset()
        return
    elif case == "foreign crl":
        other = tmp_path / "other"
        assert main(["flash", "ca", str(other)]) == 0
        (ca / "crl.pem").write_bytes((other / "crl.pem").read_bytes())
        want = "was not signed by this folder's CA; it is left as it is"
    elif case == "no ca":
        (ca / "ca.key").unlink()
        want = "no ca.key"
    elif case == "no ca folder":     # a mistyped --ca: named as such, not as a record
        args[-1] = str(tmp_path / "nowhere")
        want = "nowhere: no ca.pem (a CA folder made by 'gridlink flash ca'"
    else:
        (ca / "crl.pem").write_bytes(b"-----BEGIN X509 CRL-----\nAAAA\n")
        want = "is not a PEM CRL"
    before = (ca / "crl.pem").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    assert want in capsys.readouterr().err
    assert (ca / "crl.pem").read_bytes() == before
    assert not (ca / "revocations.csv").exists()


class Client:
    """A device's MQTT connection over TLS with its certificate from the CA folder."""

    def __init__(self, ca, cn, port):
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.drops = 0
        ctx = ssl.create_default_context(cafile=str(ca / "ca.pem"))
        ctx.load_cert_chain(str(ca / f"{cn}.pem"), str(ca / f"{cn}.key"))
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cn,
                             protocol=mqtt.MQTTv311)
        self.c.tls_set_context(ctx)
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_disconnect = self._dropped
        try:
            self.c.connect("127.0.0.1", port, keepalive=30)
        except (ssl.SSLError, OSError):
            self.refused.set()
            return
        self.c.loop_start()

    def _dropped(self, *a):
        if self.connected.is_set():
            self.drops += 1
        else:
            self.refused.set()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def refused(ca, cn, port):
    """True when ``cn``'s new connection is refused; one let in is closed again (the
    broker may not have taken its reload yet)."""
    c = Client(ca, cn, port)
    wait_until(lambda: c.refused.is_set() or c.connected.is_set(), 10, f"{cn}'s answer")
    if c.connected.is_set():
        c.close()
        return False
    c.close()
    return True


@pytest.mark.broker
def test_the_shipped_broker_refuses_a_revoked_device_after_a_reload_that_drops_no_one(
        ca, tmp_path):
    for cn in DEVICES:
        issue(ca, cn)
    tls = BrokerTLS(ca / "ca.pem", ca / "broker.pem", ca / "broker.key", ca / "crl.pem")
    with Mosquitto(tmp_path / "broker", shipped=True, tls=tls) as broker:
        assert f"crlfile {ca / 'crl.pem'}" in broker.conf.read_text()
        clients = {cn: Client(ca, cn, broker.port) for cn in DEVICES}
        try:
            for c in clients.values():
                assert c.connected.wait(10)
            assert main(["fleet", "revoke", "pv-0001", "--reason", "retired",
                         "--ca", str(ca)]) == 0
            broker.reload()
            wait_until(lambda: refused(ca, "pv-0001", broker.port), 10, "pv-0001 refused")
            # the reload dropped no one: pv-0002's connection carries on
            kept = clients["pv-0002"]
            sent = kept.c.publish("gridlink/v1/410106/pv-0002/status", b"{}", qos=1)
            sent.wait_for_publish(10)
            assert sent.is_published() and kept.drops == 0
            # and its next connection passes the CRL check
            kept.close()
            assert not refused(ca, "pv-0002", broker.port)
        finally:
            for c in clients.values():
                c.close()


def test_the_gateways_fleet_view_shows_a_revoked_device_and_a_renewal_due(ca, tmp_path,
                                                                          broker):
    from tests.support.gateway_rig import Publisher, count, encode, report, topic
    from tests.support.probing_rig import http_json, start_gateway

    issue(ca, "pv-0001")
    # pv-0002's only certificate runs out in 10 days (as recorded when it was issued)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%d")
    IssuedRecord.beside(ca / "ca.pem").append("pv-0002", "7F", soon)
    gw = start_gateway(broker, f"sqlite:///{tmp_path}/intake.sqlite", tmp_path,
                       crl=str(ca / "crl.pem"), http="127.0.0.1:0")
    dev = Publisher(broker.port, client_id="pv-0002")
    try:
        for cn in DEVICES:
            dev.publish(topic(cn, "report"), encode(report(cn, 1)))
        wait_until(lambda: len(http_json(gw, "/api/devices")) == 2, 15, "both devices")
        ids = {d["device"]: d["identity"] for d in http_json(gw, "/api/devices")}
        assert ids["pv-0001"]["revoked"] is None
        assert ids["pv-0002"] == {"revoked": None, "certificate_expires": soon,
                                  "renew_due": True}
        revoke(ca, "pv-0001", "stolen")
        wait_until(lambda: {d["device"]: d["identity"] for d in http_json(
            gw, "/api/devices")}["pv-0001"]["revoked"], 15, "pv-0001 shown revoked")
        dev.publish(topic("pv-0001", "report"), encode(report("pv-0001", 2)))
        wait_until(lambda: count(gw.store, "dead_letters") == 1, 15, "the refusal")
        assert sorted(r["id"] for r in gw.store.fetchall("SELECT id FROM reports")) == [
            "pv-0001:000000000001", "pv-0002:000000000001"]
    finally:
        dev.close()
        gw.stop()
