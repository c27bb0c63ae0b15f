"""The certificate renewal messages: ``csr`` (device → gateway) and ``cert`` (gateway →
device), and the status's ``cert``."""

import base64

import pytest
from gridlink.firmware.core import messages, topics
from gridlink.firmware.core.checks import MessageError
from hypothesis import given
from hypothesis import strategies as st


def pem(label, body=b"\x30\x82" + bytes(range(200))):
    b64 = base64.b64encode(body).decode()
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


CSR = pem("CERTIFICATE REQUEST")
CERT = pem("CERTIFICATE")


def test_the_leaves_are_in_the_topic_table_each_way():
    assert topics.LEAVES["csr"] == ("device", 1, False)
    assert topics.LEAVES["cert"] == ("gateway", 1, False)
    name = topics.topic("410106", "pv-0001", "csr")
    assert topics.parse_topic(name) == ("410106", "pv-0001", "csr", None)


def test_a_csr_and_a_cert_round_trip():
    csr = messages.make_csr("pv-0001", CSR)
    assert messages.decode_for("csr", messages.encode(csr)) == csr
    cert = messages.make_cert("pv-0001", CERT, chain=[CERT])
    assert messages.decode_for("cert", messages.encode(cert)) == cert
    refused = messages.make_cert("pv-0001", refused="revoked")
    assert messages.decode_for("cert", messages.encode(refused)) == refused


@pytest.mark.parametrize(("obj", "field"), [
    ({"v": 1, "device": "pv-0001"}, "csr"),
    ({"v": 1, "device": "PV", "csr": CSR}, "device"),
    ({"v": 1, "device": "pv-0001", "csr": CERT}, "csr"),           # a certificate, not a CSR
    ({"v": 1, "device": "pv-0001", "csr": "hello"}, "csr"),
    ({"v": 1, "device": "pv-0001", "csr": CSR.replace("MII", "M*I")}, "csr"),
    ({"v": 1, "device": "pv-0001", "csr": pem("CERTIFICATE REQUEST", bytes(4000))}, "csr"),
    ({"v": 1, "device": "pv-0001", "csr": CSR, "key": "x"}, "key"),
    ({"v": 2, "device": "pv-0001", "csr": CSR}, "v"),
])
def test_a_bad_csr_is_refused_naming_the_field(obj, field):
    with pytest.raises(MessageError) as e:
        messages.validate_csr(obj)
    assert e.value.field == field


@pytest.mark.parametrize(("obj", "field"), [
    ({"v": 1, "device": "pv-0001"}, "cert"),                           # neither
    ({"v": 1, "device": "pv-0001", "cert": CERT, "refused": "no"}, "cert"),  # both
    ({"v": 1, "device": "pv-0001", "cert": CSR}, "cert"),
    ({"v": 1, "device": "pv-0001", "cert": CERT, "chain": CERT}, "chain"),
    ({"v": 1, "device": "pv-0001", "cert": CERT, "chain": [CERT] * 3}, "chain"),
    ({"v": 1, "device": "pv-0001", "cert": CERT, "chain": ["x"]}, "chain[0]"),
    ({"v": 1, "device": "pv-0001", "refused": ""}, "refused"),
    ({"v": 1, "device": "pv-0001", "refused": "r" * 201}, "refused"),
    ({"v": 1, "device": "pv-0001", "refused": "no", "chain": [CERT]}, "chain"),
])
def test_a_bad_cert_message_is_refused_naming_the_field(obj, field):
    with pytest.raises(MessageError) as e:
        messages.validate_cert(obj)
    assert e.value.field == field


def test_the_status_carries_the_certificate_state():
    base = dict(device="pv-0001", state="online", firmware="0.1", codebook="x",
                profile="patrol-vehicle")
    ok = messages.make_status(**base, cert={"expires": "2027-01-01T00:00:00.000Z",
                                            "failed": None})
    assert ok["cert"]["expires"].startswith("2027")
    with pytest.raises(MessageError) as e:
        messages.make_status(**base, cert={"expires": "soon", "failed": None})
    assert e.value.field == "cert.expires"
    with pytest.raises(MessageError) as e:
        messages.make_status(**base, cert={"expires": None})
    assert e.value.field == "cert.failed"


@given(st.binary(min_size=1, max_size=2000))
def test_any_der_body_in_pem_armour_is_accepted(body):
    assert messages.validate_csr({"v": 1, "device": "pv-0001",
                                  "csr": pem("CERTIFICATE REQUEST", body)})


@given(st.text(max_size=300))
def test_arbitrary_text_is_never_taken_for_a_pem_block(text):
    try:
        messages.validate_cert({"v": 1, "device": "pv-0001", "cert": text})
    except MessageError as exc:
        assert exc.field == "cert"
    else:  # only real PEM armour with a base64 body passes
        assert text.strip().startswith("-----BEGIN CERTIFICATE-----")
        assert text.strip().endswith("-----END CERTIFICATE-----")


@given(st.binary(max_size=600))
def test_arbitrary_bytes_on_the_leaves_give_a_message_error_or_a_valid_message(data):
    for leaf in ("csr", "cert"):
        try:
            obj = messages.decode_for(leaf, data)
        except MessageError:
            continue
        assert obj["device"] and obj["v"] == 1
