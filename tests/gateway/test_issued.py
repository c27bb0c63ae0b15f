"""The CA folder's issued-ids record (gateway/issued.py): whole lines appended under a
lock, read back by provisioning (``rows``/``latest``) and by revocation
(``read_records``)."""

import threading

import pytest
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.issued import COLUMNS, IssuedRecord, read_records
from hypothesis import given, settings
from hypothesis import strategies as st


def test_a_new_record_gets_the_header_then_one_line_per_certificate(tmp_path):
    (tmp_path / "ca.pem").write_text("")
    record = IssuedRecord.beside(tmp_path / "ca.pem")
    assert record.path == tmp_path / "issued.csv" and record.latest("pv-0001") is None
    record.append("pv-0001", "1A", "2028-01-01")
    record.append("pv-0001", "2B", "2029-01-01", "410106", "renewal", "1A")
    record.append("pv-0002", "3C", "2029-02-01")
    lines = record.path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 4
    latest = record.latest("pv-0001")
    assert (latest["serial"], latest["district"], latest["target"], latest["replaces"]) == (
        "2B", "410106", "renewal", "1A")
    # revocation reads the same lines: serials as numbers, the certificate's end as written
    assert [(r["device"], r["serial"], r["not_after"]) for r in read_records(record.path)] == [
        ("pv-0001", 0x1A, "2028-01-01"), ("pv-0001", 0x2B, "2029-01-01"),
        ("pv-0002", 0x3C, "2029-02-01")]


def test_revocation_reads_when_each_certificate_was_issued_to_the_millisecond(tmp_path):
    # issued.csv writes its time to the second; the validator compares capture times
    # written to the millisecond, so the record's time is read as …SS.000Z
    record = IssuedRecord(tmp_path / "issued.csv")
    record.append("pv-0001", "1A", "2028-01-01")
    written = record.latest("pv-0001")["time"]
    assert len(written) == 20 and written.endswith("Z")
    (got,) = read_records(record.path)
    assert got["issued_at"] == written[:-1] + ".000Z"
    assert written[:-1] + ".001Z" > got["issued_at"] > written[:-1] + ".000"


def test_parallel_appends_leave_every_line_whole(tmp_path):
    record = IssuedRecord(tmp_path / "issued.csv")

    def issue(worker):
        for i in range(25):
            IssuedRecord(record.path).append(f"pv-{worker}", f"{worker:X}{i:04X}", "2029-01-01")

    threads = [threading.Thread(target=issue, args=(w,)) for w in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = record.rows()
    assert len(rows) == 150 and record.path.read_text().count("time,device") == 1
    assert {r["serial"] for r in rows} == {f"{w:X}{i:04X}" for w in range(1, 7)
                                           for i in range(25)}


def test_a_torn_line_is_skipped_and_the_whole_ones_stand(tmp_path):
    path = tmp_path / "issued.csv"
    IssuedRecord(path).append("pv-0001", "1A", "2028-01-01")
    with open(path, "a") as f:
        f.write("2026-12-01T00:00:00Z,pv-0001\n")       # a line cut short
    IssuedRecord(path).append("pv-0002", "2B", "2028-01-01")
    assert [r["device"] for r in IssuedRecord(path).rows()] == ["pv-0001", "pv-0002"]
    assert IssuedRecord(path).latest("pv-0001")["serial"] == "1A"


def test_an_unusable_record_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere/issued\.csv: cannot record the issued "
                                          r"certificate \(No such file or directory\)"):
        IssuedRecord(tmp_path / "nowhere" / "issued.csv").append("pv-0001", "1A", "2028-01-01")
    (tmp_path / "issued.csv").mkdir()
    with pytest.raises(ConfigError, match=r"issued\.csv: Is a directory"):
        IssuedRecord(tmp_path / "issued.csv").rows()


text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=60, deadline=None)
@given(device=text.filter(str.strip), district=text, target=text, replaces=text)
def test_any_text_comes_back_as_written(tmp_path_factory, device, district, target, replaces):
    path = tmp_path_factory.mktemp("rec") / "issued.csv"
    IssuedRecord(path).append(device, "1A", "2029-01-01", district, target, replaces)
    row = IssuedRecord(path).latest(device)
    assert (row["district"], row["target"], row["replaces"]) == (district, target, replaces)
