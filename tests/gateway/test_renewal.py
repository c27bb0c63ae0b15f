"""The centre's side of certificate renewal: a CSR checked and signed by policy, or kept
for a technician; each refusal answered (SQLite and PostgreSQL: the ``store`` fixture)."""

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gridlink.firmware.core import messages
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.queue import Conflict, NotFound
from gridlink.gateway.renewal import MIGRATIONS, CertificateAuthority, Renewals
from gridlink.gateway.revocation import Revocations

from tests.support.renewal import csr_message, csr_pem, make_ca_dir


class Sent(list):
    def __call__(self, topic, payload, qos=1):
        self.append((topic, messages.decode_for("cert", payload)))


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority(make_ca_dir(tmp_path / "ca"))


def renewals(store, ca, mode="auto", revoked=None):
    store.migrate(extra=MIGRATIONS)
    sent = Sent()
    return Renewals(store, ca, mode, publisher=sent, revoked=revoked), sent


def test_renew_auto_signs_a_valid_request_and_records_it(store, ca, tmp_path):
    r, sent = renewals(store, ca)
    key = ec.generate_private_key(ec.SECP256R1())
    assert r.handle(*csr_message("pv-0001", key=key)) == "signed"
    [(topic, answer)] = sent
    assert topic == "gridlink/v1/410106/pv-0001/cert"
    cert = x509.load_pem_x509_certificate(answer["cert"].encode())
    cert.verify_directly_issued_by(ca.cert)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert cert.subject.rfc4514_string().startswith("O=gridlink,CN=pv-0001")
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 824 or \
        cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    row = ca.record.latest("pv-0001")
    assert row["serial"] == f"{cert.serial_number:X}" and row["target"] == "renewal"
    # the fleet view's expiry follows the issued-ids record (the CRL beside it is empty)
    crl = tmp_path / "ca" / "crl.pem"
    crl.write_bytes(_empty_crl(ca))
    identity = Revocations(crl).identity("pv-0001")
    assert identity["certificate_expires"] == f"{cert.not_valid_after_utc:%Y-%m-%d}"
    assert identity["renew_due"] is False


def _empty_crl(ca):
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now).next_update(now + dt.timedelta(days=30)).sign(ca.key,
                                                                            hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.PEM)


def _tampered(pem):
    body = "".join(pem.strip().splitlines()[1:-1])
    der = bytearray(base64.b64decode(body))
    der[-3] ^= 0x01                                # inside the signature
    b64 = base64.b64encode(bytes(der)).decode()
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + b64
            + "\n-----END CERTIFICATE REQUEST-----\n")


def _payload(device, csr):
    return json.dumps({"v": 1, "device": device, "csr": csr}).encode()


TOPIC = "gridlink/v1/410106/pv-0001/csr"


@pytest.mark.parametrize(("case", "payload", "why"), [
    ("other cn", _payload("pv-0001", csr_pem("pv-0002")), "not for 'pv-0001'"),
    ("other device", _payload("pv-0002", csr_pem("pv-0002")), "sent on 'pv-0001'"),
    ("forged", _payload("pv-0001", _tampered(csr_pem("pv-0001"))), "does not verify"),
    ("p-384", _payload("pv-0001", csr_pem("pv-0001", ec.generate_private_key(ec.SECP384R1()))),
     "EC P-256"),
])
def test_renew_refuses_each_bad_request_and_says_why(store, ca, case, payload, why):
    r, sent = renewals(store, ca)
    assert r.handle(TOPIC, payload) == "refused", case
    [(topic, answer)] = sent
    assert topic.endswith("/pv-0001/cert") and "cert" not in answer
    assert why in answer["refused"]
    assert ca.record.latest("pv-0001") is None            # nothing issued


def test_renew_refuses_a_revoked_device(store, ca):
    r, sent = renewals(store, ca, revoked=lambda d: "revoked: lost" if d == "pv-0001" else None)
    assert r.handle(*csr_message("pv-0001")) == "refused"
    assert sent[0][1]["refused"] == "revoked: revoked: lost"
    assert r.handle(*csr_message("pv-0002")) == "signed"


@pytest.mark.parametrize("payload", [b"not json", b'{"v":1,"device":"pv-0001"}',
                                     _payload("pv-0001", "-----BEGIN X-----")])
def test_renew_drops_a_malformed_message_unanswered(store, ca, payload):
    r, sent = renewals(store, ca)
    assert r.handle(TOPIC, payload) == "bad"
    assert sent == [] and r.counters["bad"] == 1


def test_renew_approve_keeps_requests_for_a_technician(store, ca):
    r, sent = renewals(store, ca, "approve")
    assert r.handle(*csr_message("pv-0001")) == "pending"
    assert r.handle(*csr_message("pv-0001")) == "pending"   # asked again: the newest stands
    assert r.handle(*csr_message("pv-0002")) == "pending"
    assert sent == []
    pending = r.requests()
    assert [p["device"] for p in pending] == ["pv-0002", "pv-0001"]
    done = r.approve(pending[1]["id"], operator="tech")
    assert done["state"] == "approved" and done["decided_by"] == "tech" and done["serial"]
    assert sent[-1][0].endswith("/pv-0001/cert") and "cert" in sent[-1][1]
    assert ca.record.latest("pv-0001")["serial"] == done["serial"]
    refused = r.refuse(pending[0]["id"], "not in service", operator="tech")
    assert refused["state"] == "refused" and sent[-1][1]["refused"] == "not in service"
    assert r.requests() == []
    assert len(r.requests(None)) == 2
    with pytest.raises(Conflict):
        r.approve(pending[1]["id"])
    with pytest.raises(Conflict):
        r.refuse(pending[0]["id"], "again")
    with pytest.raises(NotFound):
        r.approve(99999)


def test_renew_unknown_mode_and_missing_ca_are_refused(store, tmp_path):
    with pytest.raises(ConfigError, match=r"ca\.pem and ca\.key"):
        CertificateAuthority(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="--renew"):
        Renewals(store, None, "sometimes")

