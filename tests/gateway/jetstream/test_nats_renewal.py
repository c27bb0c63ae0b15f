"""Certificate renewal on a district-scoped NATS cluster (three real nats-server
processes, TLS, per-device and per-district permissions): a device's CSR goes only to
the workers holding the district CA — kept for them while none runs, never judged as
intake by a worker without it — and the signed certificate, or the refusal with its
reason, reaches the device over MQTT."""

import queue

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gridlink.firmware.core import messages
from gridlink.gateway.service import Gateway

from tests.support.gateway_rig import encode, grid_map_file, report, topic
from tests.support.nats_rig import DeviceLeaves, district_gateway, report_ids
from tests.support.renewal import ca_dir_of, csr_message, make_ca_dir
from tests.support.waiting import wait_until

pytestmark = pytest.mark.nats


def test_a_csr_waits_for_a_signer_and_the_answers_reach_the_device(district_cluster,
                                                                    tmp_path):
    _, n2, n3 = district_cluster.nodes  # the device is on node 1
    cadir = ca_dir_of(district_cluster.pki, tmp_path / "ca")
    signer = district_gateway(district_cluster, tmp_path, n3, ca_dir=cadir)
    assert signer.runtime.wait_ready(15)     # its consumer of the requests exists from now
    signer.stop()
    worker = district_gateway(district_cluster, tmp_path, n2)     # no CA
    dev = DeviceLeaves(district_cluster, "pv-0001", "410106", ("cert",))
    try:
        assert worker.runtime.wait_ready(15)
        key = ec.generate_private_key(ec.SECP256R1())
        dev.client.publish(*csr_message("pv-0001", key=key), qos=1)
        dev.client.publish(*csr_message("pv-0001", cn="pv-0002"), qos=1)   # not its own
        dev.client.publish(topic("pv-0001", "report"), encode(report("pv-0001", 1)), qos=1)
        # the worker without the CA takes the report after the requests, and never
        # judges them: nothing in dead_letters, no answer
        wait_until(lambda: report_ids(worker.store), 30, "the report after the requests")
        assert worker.store.fetchall("SELECT topic, reason FROM dead_letters") == []
        with pytest.raises(queue.Empty):
            dev.got.get(timeout=1)
        signer = district_gateway(district_cluster, tmp_path, n3, ca_dir=cadir)
        answers = [messages.decode_for("cert", payload) for leaf, payload, retained
                   in dev.take(2, timeout=30)]
        [signed] = [a for a in answers if "cert" in a]
        [refused] = [a for a in answers if "refused" in a]
        cert = x509.load_pem_x509_certificate(signed["cert"].encode())
        cert.verify_directly_issued_by(signer.renewals.ca.cert)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
        assert cert.subject.rfc4514_string() == "O=gridlink,CN=pv-0001"
        assert signer.renewals.ca.record.latest("pv-0001")["serial"] == \
            f"{cert.serial_number:X}"
        assert refused["refused"] == "csr: the request is for 'pv-0002', not for 'pv-0001'"
        assert signer.renewals.counters == {"signed": 1, "refused": 1, "pending": 0,
                                            "bad": 0}
        with pytest.raises(queue.Empty):    # each answered once
            dev.got.get(timeout=1)
        assert worker.store.fetchall("SELECT topic FROM dead_letters") == []
    finally:
        dev.close()
        signer.stop()
        worker.stop()


def test_a_gateway_of_every_district_signs_too(nats_cluster, tmp_path):
    """Without ``?district=`` the signers' consumer reads every district's requests."""
    signer = Gateway(broker=nats_cluster.nats_url, db=f"sqlite:///{tmp_path}/intake.sqlite",
                     grid=str(grid_map_file(tmp_path)), photos=str(tmp_path / "photos"),
                     ca_dir=make_ca_dir(tmp_path / "ca")).start()
    dev = DeviceLeaves(nats_cluster, "pv-0003", "410105", ("cert",))
    try:
        assert signer.runtime.wait_ready(15)
        dev.client.publish(*csr_message("pv-0003", district="410105"), qos=1)
        [(leaf, payload, retained)] = dev.take(1, timeout=30)
        assert (leaf, retained) == ("cert", False)
        assert "BEGIN CERTIFICATE" in messages.decode_for("cert", payload)["cert"]
    finally:
        dev.close()
        signer.stop()
