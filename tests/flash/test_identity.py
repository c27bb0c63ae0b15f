"""Issue 19: a device id is one board's, and only a device's.  Provisioning refuses the
system's own names, districts outside the GB/T 2260 table, a target holding another
identity and an id already on another board (unless --replace), and keeps the district's
record of issued ids and certificate serials (issued.csv beside the CA)."""

import csv

import pytest
from gridlink.flash import pki
from gridlink.flash.provision import Spec, SpecError, provision
from gridlink.flash.selftest import selftest

BROKER = "mqtt://127.0.0.1:1883"  # provisioning never connects; selftest runs offline


@pytest.fixture
def ca(tmp_path):
    d = tmp_path / "ca"
    d.mkdir()
    key, crt = pki.make_ca("district 410106 CA")
    (d / "ca.key").write_bytes(key)
    (d / "ca.pem").write_bytes(crt)
    return d


def spec(ca, target, device="pv-0042", district="410106", **kw):
    return Spec(device, district, "patrol-vehicle", str(target), BROKER,
                ca_cert=str(ca / "ca.pem"), ca_key=str(ca / "ca.key"), **kw)


def issued(ca):
    with open(ca / "issued.csv", newline="") as f:
        return list(csv.DictReader(f))


def serial_on(target):
    return pki.info((target / "etc/gridlink/device.pem").read_bytes()).serial


@pytest.mark.parametrize("name", ["gridlink-gateway-0", "gridlink-gateway-12",
                                  "gridlink-demo", "broker", "hil-gateway"])
def test_the_systems_own_identities_are_refused(tmp_path, ca, name):
    with pytest.raises(SpecError, match=rf"^device: '{name}' is reserved for the system's "
                                        "own clients"):
        provision(spec(ca, tmp_path / "pi", device=name))
    assert not (tmp_path / "pi").exists() and not (ca / "issued.csv").exists()


def test_a_district_outside_the_gb2260_table_is_refused(tmp_path, ca):
    with pytest.raises(SpecError, match=r"^district: 999999 is not in the GB/T 2260 table the "
                                        r"code books carry \(divisions.json: 320508, 410106\)"):
        provision(spec(ca, tmp_path / "pi", district="999999"))
    assert not (tmp_path / "pi").exists()


def test_a_target_holding_another_device_is_kept_unless_replace(tmp_path, ca):
    pi = tmp_path / "pi"
    provision(spec(ca, pi, device="pv-0001"))
    before = {p: p.read_bytes() for p in pi.rglob("*") if p.is_file()}
    with pytest.raises(SpecError, match=rf"^target: {pi} holds device 'pv-0001'; give "
                                        r"--replace to overwrite it with 'pv-0002'"):
        provision(spec(ca, pi, device="pv-0002"))
    assert {p: p.read_bytes() for p in pi.rglob("*") if p.is_file()} == before
    assert [r["device"] for r in issued(ca)] == ["pv-0001"]
    # the same device again on its own target is a re-provisioning, not a second board
    provision(spec(ca, pi, device="pv-0001"))
    provision(spec(ca, pi, device="pv-0002", replace=True))
    assert all(c.ok for c in selftest(pi, broker=False))
    assert [r["device"] for r in issued(ca)] == ["pv-0001", "pv-0001", "pv-0002"]


def test_one_id_on_two_boards_is_refused_and_every_serial_is_recorded(tmp_path, ca):
    a, b = tmp_path / "a", tmp_path / "b"
    info = provision(spec(ca, a))
    assert info["serial"] == serial_on(a)
    with pytest.raises(SpecError, match=rf"^device: pv-0042 was issued before \(serial "
                                        rf"{info['serial']}, .*target {a}\); a second board "
                                        "with the same id knocks the first off the broker"):
        provision(spec(ca, b))
    assert not b.exists()
    provision(spec(ca, b, replace=True))   # b replaces a
    rows = issued(ca)
    assert [(r["device"], r["serial"], r["target"], r["replaces"]) for r in rows] == [
        ("pv-0042", serial_on(a), str(a), ""),
        ("pv-0042", serial_on(b), str(b), serial_on(a))]
    assert rows[0]["district"] == "410106"
    until = pki.info((b / "etc/gridlink/device.pem").read_bytes()).not_after
    assert rows[1]["not_after"] == f"{until:%Y-%m-%d}"


def test_gateway_worker_certificates_name_the_worker_and_are_recorded(tmp_path, capsys):
    from gridlink.cli import main

    d = tmp_path / "ca"
    assert main(["flash", "ca", str(d), "--gateway-workers", "2"]) == 0
    assert main(["flash", "gateway-certs", str(d), "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert "gridlink-gateway-0: kept" in out and "gridlink-gateway-2: certificate" in out
    ca = (d / "ca.pem").read_bytes()
    serials = []
    for i in range(3):
        ci = pki.verify_chain((d / f"gridlink-gateway-{i}.pem").read_bytes(), ca,
                              (d / f"gridlink-gateway-{i}.key").read_bytes())
        assert ci.cn == f"gridlink-gateway-{i}"
        serials.append(ci.serial)
    assert [(r["device"], r["serial"]) for r in issued(d)] == [
        (f"gridlink-gateway-{i}", s) for i, s in enumerate(serials)]
    assert main(["flash", "gateway-certs", str(tmp_path / "none"), "--workers", "1"]) == 2
    assert "no ca.pem and ca.key" in capsys.readouterr().err
