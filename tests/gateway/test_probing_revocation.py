"""Issue 19 item 8: the gateway refuses a revoked identity's messages itself (a session
opened before the revocation goes on at the broker), and the tools warn before the CRL's
next update."""

import datetime as dt
import json
import time

import pytest
from gridlink.cli import main
from gridlink.gateway.crl import CrlError, crl_info, read_crl
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.issued import read_issued
from gridlink.gateway.revocation import Revocations
from gridlink.gateway.tls import TLSFiles

from tests.support.gateway_rig import Publisher, answers, count, encode, report, topic
from tests.support.pki import client_tls, make_pki, shipped_broker
from tests.support.probing_rig import start_gateway, write_crl, write_issued
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.broker
def test_a_connected_device_is_refused_once_revoked(tmp_path, pki):
    crl = write_crl(pki, tmp_path / "district.crl")
    write_issued(pki, tmp_path / "issued.json", ["pv-0001", "pv-0002"])
    with shipped_broker(tmp_path / "broker", pki) as broker:
        gw = start_gateway(broker, f"sqlite:///{tmp_path}/intake.sqlite", tmp_path, crl=crl,
                           tls=TLSFiles(str(pki / "ca.crt"), str(pki / "gridlink-gateway-0.crt"),
                                        str(pki / "gridlink-gateway-0.key")))
        dev1 = Publisher(broker.port, client_id="pv-0001", tls=client_tls(pki, "pv-0001"))
        dev2 = Publisher(broker.port, client_id="pv-0002", tls=client_tls(pki, "pv-0002"))
        try:
            for dev, name in ((dev1, "pv-0001"), (dev2, "pv-0002")):
                dev.subscribe(f"gridlink/v1/410106/{name}/ack")
            dev1.publish(topic("pv-0001", "report"), encode(report("pv-0001", 1)))
            wait_until(lambda: answers(p for _, p in dev1.messages), 15, "pv-0001's ack")
            # pv-0001's certificate is revoked while its session stays open
            write_crl(pki, crl, revoked=["pv-0001"])
            time.sleep(1.1)  # the gateway looks at the files at most once a second
            dev1.publish(topic("pv-0001", "report"), encode(report("pv-0001", 2)))
            dev2.publish(topic("pv-0002", "report"), encode(report("pv-0002", 1)))
            wait_until(lambda: answers(p for _, p in dev2.messages), 15, "pv-0002's ack")
            wait_until(lambda: count(gw.store, "dead_letters") == 1, 15, "the refusal")
            (dead,) = gw.store.fetchall("SELECT device, reason FROM dead_letters")
            assert dead == {"device": "pv-0001", "reason":
                            "revoked: every certificate of pv-0001 is on the district CRL"}
            assert sorted(r["id"] for r in gw.store.fetchall("SELECT id FROM reports")) == [
                "pv-0001:000000000001", "pv-0002:000000000001"]
            time.sleep(0.5)
            assert len(answers(p for _, p in dev1.messages)) == 1  # no answer to a revoked one
        finally:
            dev1.close()
            dev2.close()
            gw.stop()


def test_a_device_with_a_new_certificate_is_not_revoked_by_its_old_one(tmp_path, pki):
    crl = write_crl(pki, tmp_path / "district.crl", revoked=["pv-0001"])
    issued = write_issued(pki, tmp_path / "issued.json", ["pv-0001", "pv-0002"])
    records = json.loads(issued.read_text())
    records.append({"device": "pv-0001", "serial": "0x1234", "issued_at": "2026-12-01"})
    issued.write_text(json.dumps(records))
    rev = Revocations(crl)
    assert rev.revoked("pv-0001") is None and rev.revoked("pv-0002") is None
    assert rev.provisioned("pv-0001") == "2026-11-01T00:00:00.000Z"


def test_a_device_provisioned_by_the_flash_tools_has_its_provisioning_time(tmp_path, pki):
    # issued.csv (as flash and the renewals write it) gives revocation each device's first
    # certificate time, which the validator uses to flag captures before provisioning
    crl = write_crl(pki, tmp_path / "district.crl", revoked=[])
    (tmp_path / "issued.csv").write_text(
        "time,device,serial,not_after,district,target,replaces\n"
        "2026-11-03T08:00:00Z,pv-0001,1A,2028-01-01,410106,,\n"
        "2026-12-01T09:30:00Z,pv-0001,2B,2029-01-01,410106,renewal,1A\n")
    rev = Revocations(crl, tmp_path / "issued.csv")
    assert rev.provisioned("pv-0001") == "2026-11-03T08:00:00.000Z"
    assert rev.provisioned("pv-0002") is None


def test_a_damaged_crl_on_reload_keeps_the_last_good_one(tmp_path, pki):
    crl = write_crl(pki, tmp_path / "district.crl", revoked=["pv-0002"])
    write_issued(pki, tmp_path / "issued.json", ["pv-0002"])
    clock = [0.0]
    rev = Revocations(crl, clock=lambda: clock[0])
    assert rev.revoked("pv-0002")
    crl.write_text("not a CRL")
    clock[0] += 2
    assert rev.revoked("pv-0002")  # logged, the previous list stands
    with pytest.raises(ConfigError, match="not a PEM CRL"):
        Revocations(crl)


def test_the_issued_record_reads_json_and_csv(tmp_path):
    (tmp_path / "issued.csv").write_text("device,serial,issued_at\npv-0001,1A:2B,\n"
                                         "pv-0002,serial=FF,2026-11-02\n")
    assert read_issued(tmp_path / "issued.csv") == [("pv-0001", 0x1A2B, None),
                                                    ("pv-0002", 0xFF, "2026-11-02")]
    (tmp_path / "issued.json").write_text('{"issued": [{"device": "pv-0003", "serial": 7}]}')
    assert read_issued(tmp_path / "issued.json") == [("pv-0003", 7, None)]
    (tmp_path / "bad.json").write_text('[{"device": "pv-0003"}]')
    with pytest.raises(ConfigError, match="entry 1 needs device and serial"):
        read_issued(tmp_path / "bad.json")


def test_a_crl_is_read_with_its_issuer_serials_and_next_update(tmp_path, pki):
    crl = write_crl(pki, tmp_path / "district.crl", revoked=["pv-0001", "pv-0002"],
                    next_update_days=3)
    got = crl_info(crl.read_bytes())
    assert got.issuer == "gridlink test CA"
    assert len(got.serials) == 2
    left = got.next_update - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=2.9) < left <= dt.timedelta(days=3)


@pytest.mark.parametrize("days, exit_code, words", [
    (30, 0, "ok"), (10, 1, "expires in 9 d "), (-1, 1, "EXPIRED")])
def test_crl_check_warns_well_before_the_next_update(tmp_path, pki, capsys, days, exit_code,
                                                     words):
    crl = write_crl(pki, tmp_path / "district.crl", next_update_days=days, last_update_days=-2)
    assert main(["flash", "crl-check", str(crl)]) == exit_code
    out = capsys.readouterr()
    assert words in (out.out + out.err)


def test_the_gateway_warns_of_its_crls_next_update(tmp_path, pki, caplog):
    crl = write_crl(pki, tmp_path / "district.crl", next_update_days=2)
    with caplog.at_level("WARNING", logger="gridlink.gateway"):
        Revocations(crl)
    assert any("expires in 1 d " in r.getMessage() for r in caplog.records)


def test_a_missing_crl_is_one_clear_line(tmp_path, capsys):
    argv = ["gateway", "run", "--broker", "mqtt://127.0.0.1:1", "--db",
            f"sqlite:///{tmp_path}/i.sqlite", "--crl", str(tmp_path / "none.crl")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gridlink gateway: error: CRL") and "none.crl" in err[-1]


def test_an_unreadable_or_malformed_crl_is_named(tmp_path):
    with pytest.raises(CrlError, match=r"nowhere\.crl"):
        read_crl(tmp_path / "nowhere.crl")
    (tmp_path / "bad.crl").write_bytes(b"-----BEGIN X509 CRL-----\nnope\n")
    with pytest.raises(CrlError, match="is not a PEM CRL"):
        read_crl(tmp_path / "bad.crl")
