"""The sensor node renews its certificate over MQTT with no visit, as flashed (simulated
board, MicroPython WebAssembly), against the shipped broker config over TLS with client
certificates and a real gateway signing: new key on the node, CSR, the certificate tried
with a real TLS connection, then kept.  Each refusal leaves the old identity in use and
says why in the status."""

import datetime as dt
import json
import shutil
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gridlink.flash import simboard
from gridlink.gateway.tls import TLSFiles

from tests.mcu.conftest import flashed_node
from tests.mcu.test_node import PIN
from tests.support.pki import make_pki, shipped_broker
from tests.support.probing_rig import start_gateway
from tests.support.renewal import make_ca_dir
from tests.support.report_listener import ReportListener
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.broker,
    pytest.mark.skipif(not simboard.available(), reason="MicroPython WebAssembly port absent"),
]

NODE = "sn-0007"
CERT_TOPIC = f"gridlink/v1/410106/{NODE}/cert"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The tests' CA of ten years (a renewed certificate never outlives its CA); the
    node's provisioned certificate of 2 days: within its renewal window."""
    return make_pki(tmp_path_factory.mktemp("pki"), ca_days=3650,
                    identities=("gridlink-gateway-0", "gridlink-gateway-1", NODE))


@pytest.fixture
def broker(tmp_path, pki):
    with shipped_broker(tmp_path / "broker", pki) as b:
        yield b


@pytest.fixture
def node(tmp_path, image, broker, pki):
    board = flashed_node(tmp_path / "board", image, broker.url, cert=str(pki / f"{NODE}.crt"),
                         key=str(pki / f"{NODE}.key"), ca_cert=str(pki / "ca.crt"))
    board.set_pin(PIN, 1)   # upright: status-only wakes
    yield board
    board.close()


@pytest.fixture
def centre(broker, pki):
    """The centre's side as the broker's ACL allows it (gridlink-gateway-1): sees the
    node's status and may answer on its …/cert."""
    tls = {"ca_certs": str(pki / "ca.crt"), "certfile": str(pki / "gridlink-gateway-1.crt"),
           "keyfile": str(pki / "gridlink-gateway-1.key")}
    c = ReportListener("127.0.0.1", broker.port, tls=tls, client_id="gridlink-gateway-1")
    yield c
    c.close()


def gateway(tmp_path, broker, pki, renew):
    cadir = tmp_path / "ca"
    cadir.mkdir()
    shutil.copy(pki / "ca.crt", cadir / "ca.pem")
    shutil.copy(pki / "ca.key", cadir / "ca.key")
    tls = TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway-0.crt"),
                   str(pki / "gridlink-gateway-0.key"))
    return start_gateway(broker, f"sqlite:///{tmp_path}/intake.sqlite", tmp_path, tls=tls,
                         ca_dir=cadir, renew=renew)


def data(board):
    return board.flash / "gridlink"


def cert_status(centre):
    return (centre.status.get(f"gridlink/v1/410106/{NODE}") or {}).get("cert")


def fleet_row(gw):
    from gridlink.gateway import fleet_view

    return next(d for d in fleet_view.devices(gw.store) if d["device"] == NODE)


def expires(status):
    return dt.datetime.fromisoformat(status["expires"].replace("Z", "+00:00"))


def in_use(board):
    """The certificate the node connects with: the renewed one, else the provisioned."""
    own = data(board) / "identity.json"
    name = json.loads(own.read_text())["cert"] if own.exists() else "/gridlink/device.pem"
    return x509.load_pem_x509_certificate((board.flash / name.lstrip("/")).read_bytes())


def test_the_node_renews_and_connects_with_its_new_certificate(tmp_path, broker, pki, node,
                                                               centre):
    before = in_use(node)
    gw = gateway(tmp_path, broker, pki, "auto")
    try:
        out = node.run()
        assert "asked for a new one" in out and "new certificate in use" in out
        # the key never left the node: the certificate is for the key in its files
        own = json.loads((data(node) / "identity.json").read_text())
        key = serialization.load_pem_private_key(
            (node.flash / own["key"].lstrip("/")).read_bytes(), None)
        cert = in_use(node)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
        assert cert.serial_number != before.serial_number
        assert not (data(node) / "renew.key").exists()
        assert gw.renewals.ca.record.latest(NODE)["serial"] == f"{cert.serial_number:X}"
        # the status, sent over the new identity, says so
        st = wait_until(lambda: cert_status(centre), 10, "the node's cert status")
        assert st["failed"] is None
        assert expires(st) > dt.datetime.now(dt.UTC) + dt.timedelta(days=800)
        # the next wakes use it, report through it, and do not ask again
        node.set_pin(PIN, 0)
        out = node.run()
        assert "asked" not in out and "identity.json not used" not in out
        wait_until(lambda: gw.store.fetchall("SELECT id FROM reports"), 30,
                   "the report over the new certificate")
        assert gw.renewals.counters["signed"] == 1
        # renewed files that are damaged are not used: the provisioned ones are (and,
        # due again, it renews again)
        (node.flash / own["cert"].lstrip("/")).write_text("cut")
        out = node.run()
        assert "identity.json not used" in out and "new certificate in use" in out
        assert gw.renewals.counters["signed"] == 2
    finally:
        gw.stop()


def test_a_refusal_by_the_centre_leaves_the_old_certificate(tmp_path, broker, pki, node,
                                                            centre):
    gw = gateway(tmp_path, broker, pki, "approve")
    try:
        node.run()                                    # asks; the request waits
        wait_until(lambda: gw.renewals.requests(), 30, "the request, pending")
        [pending] = gw.renewals.requests()
        gw.renewals.refuse(pending["id"], "retired", operator="tech")
        out = node.run()                              # the answer was kept for it
        assert "refused by the centre: retired" in out
        st = wait_until(lambda: (cert_status(centre) or {}).get("failed"), 10, "the refusal")
        assert st == "refused by the centre: retired"
        wait_until(lambda: (fleet_row(gw)["cert"] or {}).get("failed"), 30,
                   "the refusal in the fleet view")
        assert not (data(node) / "identity.json").exists()
        assert (data(node) / "renew.key").exists()    # asked again with it later
        node.set_pin(PIN, 0)
        node.run()                                    # still delivers on the old one
        wait_until(lambda: gw.store.fetchall("SELECT id FROM reports"), 30,
                   "a report on the old certificate")
    finally:
        gw.stop()


@pytest.fixture
def csrs(broker, pki):
    """The node's CSRs as the centre receives them (as gridlink-gateway-0: no gateway
    runs in these tests)."""
    import paho.mqtt.client as mqtt

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gridlink-gateway-0")
    c.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "gridlink-gateway-0.crt"),
              keyfile=str(pki / "gridlink-gateway-0.key"))
    c.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload)["csr"])
    c.connect("127.0.0.1", broker.port)
    c.subscribe(f"gridlink/v1/410106/{NODE}/csr", 1)
    c.loop_start()
    yield got
    c.loop_stop()
    c.disconnect()


def test_an_unanswered_request_is_sent_again_after_renew_ask_every_s_with_the_same_key(
        node, centre, csrs):
    node.run()
    wait_until(lambda: len(csrs) == 1, 10, "the first request")
    assert "asked" not in node.run()                 # within the hour: not again
    cfg_path = data(node) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["renew_ask_every_s"] = 1
    cfg_path.write_text(json.dumps(cfg))
    time.sleep(1.1)
    assert "asked for a new one" in node.run()
    wait_until(lambda: len(csrs) == 2, 10, "the second request")
    first, second = (x509.load_pem_x509_csr(r.encode()) for r in csrs)
    assert first.is_signature_valid and second.is_signature_valid
    assert first.public_key() == second.public_key()  # one key until it is answered
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE
    # meanwhile the status says when the certificate in use ends, and nothing failed
    st = wait_until(lambda: cert_status(centre), 10, "the status")
    assert st["failed"] is None and expires(st) == in_use(node).not_valid_after_utc


def issue(public, cn, ca_cert_pem, ca_key_pem, server_only=False):
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_only else ExtendedKeyUsageOID.CLIENT_AUTH
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=400))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(serialization.load_pem_private_key(ca_key_pem, None), hashes.SHA256())
            ).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("case, why", [
    ("another key", "the certificate is not for this node's new key"),
    ("another device", "the certificate is not this node's (CN 'sn-0008')"),
    ("another CA", "the certificate is not signed by this node's CA"),
    ("broker refuses", "the broker did not accept the new certificate"),
])
def test_an_answer_the_node_must_not_take_leaves_the_old_certificate(
        tmp_path, pki, node, centre, case, why):
    before = in_use(node)
    node.run()                         # asks (no gateway here: no answer yet)
    mine = serialization.load_pem_private_key(
        (data(node) / "renew.key").read_bytes(), None).public_key()
    ca = (pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes()
    if case == "another key":
        cert = issue(ec.generate_private_key(ec.SECP256R1()).public_key(), NODE, *ca)
    elif case == "another device":
        cert = issue(mine, "sn-0008", *ca)
    elif case == "another CA":
        other = make_ca_dir(tmp_path / "other")
        cert = issue(mine, NODE, (other / "ca.pem").read_bytes(), (other / "ca.key").read_bytes())
    else:                              # the node's checks pass; the broker's TLS does not
        cert = issue(mine, NODE, *ca, server_only=True)
    centre.c.publish(CERT_TOPIC, json.dumps({"v": 1, "device": NODE, "cert": cert}),
                     qos=1).wait_for_publish(10)
    out = node.run()
    assert why in out
    st = wait_until(lambda: (cert_status(centre) or {}).get("failed"), 10, "the refusal")
    assert st.startswith(why)
    assert in_use(node).serial_number == before.serial_number
    assert not (data(node) / "identity.json").exists()
    assert [p.name for p in data(node).glob("id-*")] == []
    # the old identity still works: the next wake reaches the broker and reports
    node.set_pin(PIN, 0)
    node.run()
    wait_until(lambda: centre.reports, 30, "a report on the old certificate")


# A boot as the board does it (simboard.BOOT), with the power cut at the ``at``-th file
# operation of the renewal (gridnode.renewal's fsio.write_file and fsio.remove): the run
# ends there, the flash keeps what was written.
CUT_BOOT = """
import sys
sys.path.insert(0, "/.sim/lib")
import machine


class PowerCut(BaseException):
    pass


g = {{"__name__": "boot"}}
exec(open("/main.py").read(), g)
slot = g["select"]()
from gridcore import fsio
from gridnode import app, renewal


class Cutting:
    n = 0

    def __getattr__(self, name):
        real = getattr(fsio, name)
        if name not in ("write_file", "remove"):
            return real

        def step(*args):
            Cutting.n += 1
            if Cutting.n == {at}:
                raise {fault}(name + " " + args[0])
            return real(*args)
        return step


renewal.fsio = Cutting()
try:
    app.main(slot)
except machine.DeepSleep:
    pass
except PowerCut as e:
    print("POWER CUT at", e)
"""
FULL = "OSError"   # the flash is full at that step (the program goes on)
STEPS = 7   # renew.key, renewal.json (asked), id-1.key, id-1.pem, identity.json (the
            # switch), renew.key removed, renewal.json


def whole(board):
    """The identity the node would use is whole: its certificate is for its key."""
    own = data(board) / "identity.json"
    key = json.loads(own.read_text())["key"] if own.exists() else "/gridlink/device.key"
    key = serialization.load_pem_private_key((board.flash / key.lstrip("/")).read_bytes(), None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return in_use(board).public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


@pytest.mark.parametrize("at", range(1, STEPS + 2))
def test_a_power_cut_at_any_step_leaves_the_old_identity_or_the_new_one(
        tmp_path, broker, pki, node, centre, at):
    cfg_path = data(node) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["renew_ask_every_s"] = 0      # after a cut, ask again at the next wake
    cfg_path.write_text(json.dumps(cfg))
    before = in_use(node).serial_number
    gw = gateway(tmp_path, broker, pki, "auto")
    try:
        out = node.run(CUT_BOOT.format(at=at, fault="PowerCut"))
        assert ("POWER CUT" in out) == (at <= STEPS), out
        for _ in range(2):
            assert whole(node)
            out = node.run()
            assert "connect failed" not in out and "link lost" not in out, out
            if in_use(node).serial_number != before:
                break
        assert whole(node) and in_use(node).serial_number != before
        assert not (data(node) / "renew.key").exists()
        node.run()
        assert wait_until(lambda: cert_status(centre), 10, "the status")["failed"] is None
    finally:
        gw.stop()


@pytest.mark.parametrize("at, why", [
    (1, "the new key could not be written"),
    (3, "the new certificate could not be written"),
])
def test_a_full_flash_refuses_the_renewal_and_the_node_goes_on(tmp_path, broker, pki, node,
                                                                centre, at, why):
    before = in_use(node).serial_number
    gw = gateway(tmp_path, broker, pki, "auto")
    try:
        out = node.run(CUT_BOOT.format(at=at, fault=FULL))
        assert why in out and "link lost" not in out, out
        assert node.last_sleep_ms == 300 * 1000       # delivered: no backoff
        st = wait_until(lambda: (cert_status(centre) or {}).get("failed"), 10, "the refusal")
        assert st.startswith(why)
        assert in_use(node).serial_number == before
        assert [p.name for p in data(node).glob("id-*")] == []
        assert not (data(node) / "identity.json").exists()
    finally:
        gw.stop()
