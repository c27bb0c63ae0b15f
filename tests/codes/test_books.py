"""The shipped code books: rebuilt identically from their sources, counts as in the csv."""

import csv
import io
import json
import re

import pytest
from gridlink.firmware import codebooks
from gridlink.firmware.codebooks import build
from gridlink.firmware.core.codes import CodeBook, CodeError, Divisions

from tests.support.shared import shared_file

VENDORED_CSV = build.SOURCES / "classes.csv"
DATA_FILES = [*codebooks.FILES.values(), codebooks.DIVISIONS_FILE]


def csv_rows():
    return list(csv.DictReader(io.StringIO(VENDORED_CSV.read_text(encoding="utf-8"))))


def csv_standard(row):
    return re.match(r"(CJ/T|GB/T)\s?([\d.]+-\d{4})", row["source"]).group(0).replace(" ", "")


CANONICAL = {"CJ/T214-2007": "CJ/T 214-2007", "GB/T30428.2-2013": "GB/T 30428.2-2013",
             "GB/T47678.5-2026": "GB/T 47678.5-2026"}


def test_vendored_csv_is_the_shared_csv():
    shared = shared_file("codes", "classes.csv")
    assert VENDORED_CSV.read_bytes() == shared.read_bytes()


def test_shipped_files_equal_a_fresh_build():
    fresh = build.build_all(VENDORED_CSV.read_text(encoding="utf-8"),
                            (build.SOURCES / "divisions.csv").read_text(encoding="utf-8"))
    assert sorted(fresh) == sorted(DATA_FILES)
    for name, data in fresh.items():
        assert (codebooks.HERE / name).read_bytes() == data, f"{name} is stale: run build.py"


def test_build_check_mode_reports_fresh_files(capsys):
    assert build.main(["--check"]) == 0
    assert "0 stale" in capsys.readouterr().out


@pytest.mark.parametrize("name", DATA_FILES)
def test_version_is_the_content_hash(name):
    data = json.loads((codebooks.HERE / name).read_text(encoding="utf-8"))
    assert re.fullmatch(r"[0-9a-f]{12}", data["version"])
    assert build.content_version(data) == data["version"]
    changed = json.loads(json.dumps(data))
    changed["sources"].append("one more source")
    assert build.content_version(changed) != data["version"]


@pytest.mark.parametrize("standard", codebooks.STANDARDS)
def test_every_book_loads_and_its_counts_match_the_csv(standard):
    book = codebooks.book(standard)
    assert book.standard == standard
    assert book.id == f"{standard}@{book.version}"
    rows = [r for r in csv_rows() if CANONICAL[csv_standard(r)] == standard]
    assert rows, "the csv has rows for every shipped standard"
    for kind in ("component", "event"):
        minors = {r["minor_code"]: r for r in rows if r["kind"] == kind and r["minor_code"]}
        assert book.codes(kind) == sorted(minors)
        for code, row in minors.items():
            e = book.entry(kind, code)
            assert (e.name, e.major, e.source) == (row["minor_name"], row["major_code"],
                                                    row["source"])
            assert f"[{e.certainty}]" in row["source"]
            assert e.certainty in ("V", "T", "I", "M", "T?")
            assert (e.conflict is not None) == ("CONFLICT" in row["source"])
        majors = {r["major_code"]: r["major_name"] for r in rows
                  if r["kind"] == kind and not r["minor_code"] and r["major_code"]}
        for code, name in majors.items():
            assert book.major_name(kind, code) == name


def test_gbt47678_totals_match_the_stated_annex_totals():
    # domain-standards.md §2.3: Annex A 153 部件, Annex C 250 事项 (the csv agrees).
    book = codebooks.book("GB/T 47678.5-2026")
    assert len(book.codes("component")) == 153
    assert len(book.codes("event")) == 250
    per_major = {m: len(book.codes("component", m)) for m, _ in book.majors("component")}
    assert per_major == {"01": 76, "02": 44, "03": 16, "04": 14, "05": 3}
    events = {m: len(book.codes("event", m)) for m, _ in book.majors("event")}
    assert [events[m] for m in ("06", "07", "08", "09", "10")] == [51, 7, 16, 21, 2]


def test_conflicts_and_unplaced_majors_are_carried():
    cjt = codebooks.book("CJ/T 214-2007")
    flagged = [e.code for e in cjt.entries("event") if e.conflict]
    assert flagged == ["0205", "0303", "0304", "0305"]
    assert "无证消纳渣土" in cjt.entry("event", "0303").conflict
    raw = codebooks.load("CJ/T 214-2007")
    assert [u[1] for u in raw["unplaced"]] == ["扩展部件"]
    assert cjt.major_name("event", "21") == "扩展事件"
    gb2013 = codebooks.book("GB/T 30428.2-2013")
    assert gb2013.major_name("event", "06") is None  # the csv gives no name
    assert gb2013.partial == {"component": True, "event": True}


def test_division_table_has_shangjie_as_in_the_doc():
    div = Divisions(codebooks.load_divisions())
    assert div.district("410106")["name"] == "上街区"
    assert sorted(div.streets("410106")) == ["001", "002", "003", "004", "005", "100"]
    assert div.street("410106", "100")["name"] == "峡窝镇"
    # domain-standards.md §7: the community ranges it lists
    expected = {
        "001": [f"{i:03d}" for i in range(1, 10)],
        "002": [f"{i:03d}" for i in range(1, 14)] + ["202"],
        "003": [f"{i:03d}" for i in range(1, 6)],
        "004": ["001", "002", "003"],
        "005": ["001"],
        "100": ["001", "002", "003"] + [f"{i:03d}" for i in range(201, 224)] + ["400"],
    }
    for street, communities in expected.items():
        assert sorted(div.street("410106", street)["communities"]) == communities
    assert div.community_name("410106", "001", "001").startswith("中安街社区")
    assert div.community_name("410106", "100", "400") == "装备制造业基地管委会社区"
    assert div.district("320508")["name"] == "姑苏区"
    assert div.streets("320508") is None  # the doc lists no streets for it
    assert "Vonng/adcode" in div.source("410106")


def test_loader_accepts_spellings_and_names_unknown_standards():
    assert codebooks.load("gb/t47678.5-2026")["standard"] == "GB/T 47678.5-2026"
    with pytest.raises(CodeError, match=r"'GB/T 9999' has no shipped code book"):
        codebooks.path("GB/T 9999")


def test_a_book_in_the_wrong_format_is_refused():
    with pytest.raises(CodeError, match="format 'other/1' is not gridlink-codebook/1"):
        CodeBook({"format": "other/1"})
    with pytest.raises(CodeError, match="format 'list' is not gridlink-divisions/1"):
        Divisions([])


def test_a_bad_source_row_fails_the_build_and_leaves_the_books_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert build.main(["--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "classes.csv"
    text = VENDORED_CSV.read_text(encoding="utf-8")
    bad.write_text(text.replace("01,公用设施,0102,污水井盖,CJ/T214-2007 [I]",
                                "01,公用设施,0102,污水井盖,CJ/T214-2007"), encoding="utf-8")
    assert build.main(["--csv", str(bad), "--out", str(out)]) == 2
    assert "line 10" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_slim_book_for_a_sensor_node_validates_the_same_events():
    full = codebooks.load("GB/T 47678.5-2026")
    small = build.slim(full, kinds=("event",))
    assert len(build.dump(small)) < len(build.dump(full)) * 0.7
    book, whole = CodeBook(small), CodeBook(full)
    assert book.id == whole.id
    assert book.codes("event") == whole.codes("event")
    assert book.lookup("event", "06010").name == "暴露垃圾"
    assert book.lookup("event", "06010").source is None
    assert not book.has("component")
    with pytest.raises(CodeError, match="this book has no component classes"):
        book.lookup("component", "01001")


def test_one_loader_gives_the_shipped_books_or_the_given_files(tmp_path):
    shipped = codebooks.load_books()
    assert sorted(shipped) == sorted(codebooks.STANDARDS)
    assert shipped["CJ/T 214-2007"] is codebooks.book("cj/t214-2007")  # one object per book
    given = codebooks.load_books([codebooks.path("GB/T 47678.5-2026")])
    assert list(given) == ["GB/T 47678.5-2026"]
    assert given["GB/T 47678.5-2026"].id == shipped["GB/T 47678.5-2026"].id


@pytest.mark.parametrize("text, words", [
    ("{", "not JSON"),
    ('{"format": "gridlink-divisions/1"}', "format is not gridlink-codebook/1"),
    ('["a"]', "format is not gridlink-codebook/1"),
    ('{"format": "gridlink-codebook/1"}', "malformed"),
    (None, "No such file"),
])
def test_a_bad_code_book_file_is_named_in_a_clear_error(tmp_path, text, words):
    f = tmp_path / "book.json"
    if text is not None:
        f.write_text(text, encoding="utf-8")
    with pytest.raises(CodeError, match=f"code book {re.escape(str(f))}: .*{words}"):
        codebooks.load_books([f])
