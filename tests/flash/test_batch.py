"""``gridlink flash provision --batch``: parallel, one line per device, a summary; bad rows
named and skipped without stopping the others; a rerun skips finished devices."""

import json

import pytest
from gridlink.flash import pki
from gridlink.flash.errors import FlashError
from gridlink.flash.provision import provision_batch, read_batch
from gridlink.flash.selftest import selftest


@pytest.fixture
def ca(tmp_path_factory):  # per test: the CA's issued.csv remembers every device id
    d = tmp_path_factory.mktemp("ca")
    key, crt = pki.make_ca("district 410106 CA")
    (d / "ca.key").write_bytes(key)
    (d / "ca.pem").write_bytes(crt)
    return {"ca_cert": str(d / "ca.pem"), "ca_key": str(d / "ca.key")}


def rows(tmp_path, n_pi=3, n_sn=3, extra=""):
    lines = ["device,district,profile,target,object"]
    for i in range(1, n_pi + 1):
        lines.append(f"pv-{i:04d},410106,patrol-vehicle,{tmp_path}/pi/{i},")
    for i in range(1, n_sn + 1):
        lines.append(f"sn-{i:04d},410106,sensor-node,{tmp_path}/sn/{i},41010601002{i:06d}")
    return "\n".join(lines) + "\n" + extra


def run(path, defaults, jobs=4):
    out = []
    counts = provision_batch(path, defaults, jobs=jobs, out=out.append)
    return counts, out


def test_a_batch_provisions_every_good_row_and_names_the_bad_ones(tmp_path, ca, broker):
    csv = tmp_path / "devices.csv"
    csv.write_text(rows(tmp_path, extra=(
        f"pv-0077,41010,patrol-vehicle,{tmp_path}/pi/77,\n"            # line 8: district
        f"sn-0001,410106,sensor-node,{tmp_path}/sn/99,41010601002000099\n"  # line 9: twice
        f"sn-0010,410106,sensor-node,{tmp_path}/sn/10,32050801002000010\n"  # line 10: object
        f"pv-0011,410106,patrol-vehicle\n")))                           # line 11: short
    defaults = dict(ca, broker=broker.url)
    (ok, skipped, failed), out = run(csv, defaults)
    assert (ok, skipped, failed) == (6, 0, 4)
    assert len(out) == 17 and out[10] == "10 devices: 6 provisioned, 0 skipped (done before), " \
        "4 failed"
    assert out[11] == f"report → {csv}.report.csv"
    # progress on every row's line; the failed rows again at the end, in row order
    assert sorted(line.rsplit(" ", 1)[1] for line in out[:10]) == sorted(
        f"[{k}/10]" for k in range(1, 11))
    assert out[12] == "failed rows (4):"
    assert [line.split(" ")[3] for line in out[13:]] == ["8", "9", "10", "11"]
    by_line = {line.split(" ")[1]: line for line in out[:10]}
    assert "district: '41010' is not a 6-digit GB/T 2260 code" in by_line["8"]
    assert "device: sn-0001 is also on row 5" in by_line["9"]
    assert "object: 32050801002000010 belongs to district 320508" in by_line["10"]
    assert "target: empty" in by_line["11"]
    for i in range(1, 4):      # each target a folder made here, and said to be
        assert by_line[str(i + 1)].startswith(f"row {i + 1} pv-{i:04d}: ok → {tmp_path}/pi/"
                                              f"{i} (a new folder: nothing was mounted there)")
        assert all(c.ok for c in selftest(tmp_path / "pi" / str(i), broker=False))
        cfg = json.loads((tmp_path / "sn" / str(i) / "gridlink" / "config.json").read_text())
        assert cfg["tilt"]["object"] == f"41010601002{i:06d}"
    assert not (tmp_path / "pi" / "77").exists() and not (tmp_path / "sn" / "10").exists()

    # the rerun skips what is done; after the sheet is corrected, only the fixed row runs
    (ok, skipped, failed), out = run(csv, defaults)
    assert (ok, skipped, failed) == (0, 6, 4)
    csv.write_text(csv.read_text().replace(",41010,", ",410106,"))
    (ok, skipped, failed), out = run(csv, defaults)
    assert (ok, skipped, failed) == (1, 6, 3)
    assert [line for line in out if ": ok" in line] == [
        next(line for line in out if line.startswith("row 8 pv-0077: ok"))]


def test_forty_before_noon(tmp_path, ca, broker):
    csv = tmp_path / "forty.csv"
    csv.write_text(rows(tmp_path, n_pi=20, n_sn=20))
    (ok, skipped, failed), out = run(csv, dict(ca, broker=broker.url), jobs=4)
    assert (ok, skipped, failed) == (40, 0, 0)
    assert len(out) == 42 and len({line.split(" ")[2] for line in out[:40]}) == 40
    devices = {json.loads(line)["device"] for line in (tmp_path / "forty.csv.done").open()}
    assert len(devices) == 40


def test_a_torn_journal_line_only_redoes_that_device(tmp_path, ca, broker):
    csv = tmp_path / "d.csv"
    csv.write_text(rows(tmp_path, n_pi=2, n_sn=0))
    run(csv, dict(ca, broker=broker.url))
    journal = tmp_path / "d.csv.done"
    journal.write_text(journal.read_text()[:-20])  # power cut while recording the last one
    (ok, skipped, failed), _ = run(csv, dict(ca, broker=broker.url))
    assert (ok, skipped, failed) == (1, 1, 0)


@pytest.mark.parametrize(("text", "message"), [
    ("device,district,profile\nx,410106,sensor-node\n", r"header lacks column\(s\) target"),
    ("device,district,profile,target,colour\n", r"unknown column\(s\) colour"),
])
def test_a_bad_header_refuses_the_whole_sheet(tmp_path, text, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(FlashError, match=message):
        read_batch(csv, {})


def test_the_cli_exit_status_says_whether_any_device_failed(tmp_path, ca, broker, capsys):
    from gridlink.cli import main

    csv = tmp_path / "d.csv"
    bad = f"PV-9,410106,patrol-vehicle,{tmp_path}/pv9,\n"
    csv.write_text(rows(tmp_path, n_pi=1, n_sn=1, extra=bad))
    args = ["flash", "provision", "--batch", str(csv), "--broker", broker.url,
            "--ca-cert", ca["ca_cert"], "--ca-key", ca["ca_key"]]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-4] == "3 devices: 2 provisioned, 0 skipped (done before), 1 failed"
    assert out[-2:] == ["failed rows (1):", "  row 4 PV-9: FAILED row 4: device: 'PV-9' is "
                        "not a device id ([a-z0-9][a-z0-9-]{2,31})"]
    assert main(["flash", "provision", "--batch", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: No such file or directory" in capsys.readouterr().err


def test_a_missing_or_mismatched_ca_refuses_the_batch_before_any_device(tmp_path, ca, broker):
    csv = tmp_path / "d.csv"
    csv.write_text(rows(tmp_path, n_pi=2, n_sn=0))
    with pytest.raises(FlashError, match=r"^--ca-cert /nowhere/ca.pem: no such file \(a "
                       r"district CA: 'gridlink flash ca DIR' makes DIR/ca.pem and DIR/ca.key\)$"):
        run(csv, dict(ca, ca_cert="/nowhere/ca.pem", broker=broker.url))
    other_key, _ = pki.make_ca("another district")
    (tmp_path / "other.key").write_bytes(other_key)
    with pytest.raises(FlashError, match=r"^--ca-key does not belong to --ca-cert$"):
        run(csv, dict(ca, ca_key=str(tmp_path / "other.key"), broker=broker.url))
    assert not (tmp_path / "pi").exists() and not (tmp_path / "d.csv.done").exists()


def test_a_wrong_profile_fails_its_row_only(tmp_path, ca, broker):
    csv = tmp_path / "d.csv"
    csv.write_text(rows(tmp_path, n_pi=1, n_sn=0,
                        extra=f"tr-0001,410106,tram,{tmp_path}/tram,\n"))
    (ok, skipped, failed), out = run(csv, dict(ca, broker=broker.url))
    assert (ok, skipped, failed) == (1, 0, 1)
    [bad] = [line for line in out if line.startswith("row") and "FAILED" in line]
    assert out[-1] == "  " + bad.rsplit(" ", 1)[0]  # listed again at the end
    assert bad.startswith("row 3 tr-0001: FAILED row 3: profile: tram: no such shipped profile")
