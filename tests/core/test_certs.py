"""The core's key file, certificate request and certificate reader, against
``cryptography`` and OpenSSL: the CSR verifies and names the device, the key file loads
(also as a TLS client key) and round-trips, a certificate's facts are what
``cryptography`` reads, and bytes that are not a certificate are refused with CertError;
under MicroPython too."""

import datetime as dt
import json
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gridlink.firmware.core import certs, p256
from gridlink.firmware.core.der import DerError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

scalars = st.integers(min_value=1, max_value=p256.N - 1)
device_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{2,31}", fullmatch=True)
PEM = serialization.Encoding.PEM


def certificate(public, cn, ca_key, not_before, not_after, issuer="test CA"):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(ca_key, hashes.SHA256())).public_bytes(PEM).decode()


@settings(max_examples=30, deadline=None)
@given(scalars, device_ids)
def test_the_csr_verifies_and_names_the_device_and_its_key(d, device):
    q = p256.public_key(d)
    csr = x509.load_pem_x509_csr(certs.csr_pem(d, q, device).encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "gridlink"
    assert csr.public_key().public_numbers().x == q[0]


@settings(max_examples=30, deadline=None)
@given(scalars)
def test_the_key_file_loads_with_cryptography_and_round_trips(d):
    q = p256.public_key(d)
    pem = certs.key_pem(d, q)
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert key.private_numbers().private_value == d
    assert certs.read_key(pem) == (d, q)
    sec1 = key.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    assert certs.read_key(sec1) == (d, q)


def test_openssl_takes_the_key_file_as_a_tls_client_key(tmp_path):
    d, q = p256.private_key(lambda n: bytes(range(1, 33)))
    key = serialization.load_pem_private_key(certs.key_pem(d, q).encode(), None)
    now = dt.datetime.now(dt.UTC)
    (tmp_path / "c.pem").write_text(certificate(key.public_key(), "sn-0007", key, now,
                                                now + dt.timedelta(days=1)))
    (tmp_path / "k.pem").write_text(certs.key_pem(d, q))
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tmp_path / "c.pem",
                                                            tmp_path / "k.pem")


times = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2200, 1, 1),
                     timezones=st.just(dt.UTC)).map(lambda t: t.replace(microsecond=0))


@settings(max_examples=40, deadline=None)
@given(scalars, device_ids, times, times)
def test_a_certificates_facts_are_what_cryptography_reads(d, device, t1, t2):
    start, end = min(t1, t2), max(t1, t2)
    ca = ec.derive_private_key(d, ec.SECP256R1())
    mine = ec.derive_private_key(p256.N - d, ec.SECP256R1())
    pem = certificate(mine.public_key(), device, ca, start, end)
    f = certs.facts(pem)
    n = mine.public_key().public_numbers()
    assert (f["cn"], f["public"]) == (device, (n.x, n.y))
    assert (f["not_before"], f["not_after"]) == (int(start.timestamp()), int(end.timestamp()))
    ca_facts = certs.facts(certificate(ca.public_key(), "test CA", ca, start, end))
    assert certs.signed_by(f, ca_facts) is True
    other = ec.derive_private_key(d % (p256.N - 1) + 1 if d != 1 else 2, ec.SECP256R1())
    if other.private_numbers().private_value != d:
        other_facts = certs.facts(certificate(other.public_key(), "x", other, start, end))
        assert certs.signed_by(f, other_facts) is False


def test_a_ca_that_is_not_p256_cannot_be_checked_here():
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    mine = ec.generate_private_key(ec.SECP256R1())
    f = certs.facts(certificate(mine.public_key(), "sn-0007", ca, now, now))
    ca_facts = certs.facts(certificate(ca.public_key(), "CA", ca, now, now))
    assert f["public"] is not None and ca_facts["public"] is None
    assert certs.signed_by(f, ca_facts) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_bytes_that_are_not_a_certificate_are_refused_with_a_clear_error(junk):
    pem = certs.der.pem("CERTIFICATE", junk)
    with pytest.raises(DerError):
        certs.facts(pem)


def test_a_cut_certificate_and_a_missing_block_are_refused():
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    der = x509.load_pem_x509_certificate(certificate(key.public_key(), "sn-0007", key, now,
                                                     now).encode()).public_bytes(
        serialization.Encoding.DER)
    for cut in (10, 100, len(der) - 1):
        with pytest.raises(DerError):
            certs.facts(certs.der.pem("CERTIFICATE", der[:cut]))
    with pytest.raises(DerError, match="no CERTIFICATE block"):
        certs.facts("")
    with pytest.raises(DerError, match="no EC PRIVATE KEY block"):
        certs.read_key("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")


MPY_SCRIPT = """
import json
from gridcore import certs, p256
d = 0x1234567890ABCDEF
q = p256.public_key(d)
f = certs.facts(CERT)
print(json.dumps({"csr": certs.csr_pem(d, q, "sn-0007"), "key": certs.key_pem(d, q),
                  "cn": f["cn"], "not_after": f["not_after"], "public": list(f["public"]),
                  "signed": certs.signed_by(f, f)}))
"""


@pytest.mark.micropython
def test_under_micropython_the_csr_key_and_facts_agree():
    key = ec.generate_private_key(ec.SECP256R1())
    end = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    pem = certificate(key.public_key(), "sn-0007", key, end - dt.timedelta(days=2), end,
                      issuer="sn-0007")
    got = json.loads(run_micropython(f"CERT = {pem!r}\n" + MPY_SCRIPT).strip().splitlines()[-1])
    csr = x509.load_pem_x509_csr(got["csr"].encode())
    assert csr.is_signature_valid
    assert serialization.load_pem_private_key(got["key"].encode(), None).private_numbers(
        ).private_value == 0x1234567890ABCDEF
    n = key.public_key().public_numbers()
    assert (got["cn"], got["not_after"], got["public"]) == ("sn-0007", int(end.timestamp()),
                                                           [n.x, n.y])
    assert got["signed"] is True
