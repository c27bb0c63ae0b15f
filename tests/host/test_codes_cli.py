"""``gridlink codes``: show, list, books; a wrong code is one clear line and exit 2."""

import json

from gridlink import cli
from gridlink.firmware import codebooks


def run(capsys, *argv):
    status = cli.main(["codes", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_show_grid_code_names_district_street_community(capsys):
    status, out, _ = run(capsys, "show", "410106002202003")
    assert status == 0
    assert "grid code" in out and "[I]" in out
    for name in ("上街区", "中心路街道办事处 (街道)", "任庄村委会"):
        assert name in out


def test_show_json_lists_every_reading(capsys):
    status, out, _ = run(capsys, "show", "0101", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["code"] == "0101"
    assert [(r["standard"], r["class"]["kind"]) for r in result["readings"]] == [
        ("CJ/T 214-2007", "component"), ("CJ/T 214-2007", "event"),
        ("GB/T 30428.2-2013", "event")]


def test_show_marks_conflicts_and_certainty(capsys):
    _, out, _ = run(capsys, "show", "4101060303")
    assert "event code" in out and "施工废弃料 [T]" in out
    assert "CONFLICT   Beijing app 200303 无证消纳渣土" in out


def test_wrong_code_is_one_line_and_exit_2(capsys):
    status, out, err = run(capsys, "show", "410199001001001")
    assert status == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "district 410199 is not in the GB/T 2260 table" in err


def test_a_wrong_code_leaves_the_shipped_books_untouched(capsys):
    before = {n: (codebooks.HERE / n).read_bytes() for n in codebooks.FILES.values()}
    assert run(capsys, "show", "06999")[0] == 2
    assert run(capsys, "show", "06010")[0] == 0  # the next good code still explains
    assert {n: (codebooks.HERE / n).read_bytes() for n in before} == before


def test_show_with_another_division_table(capsys, tmp_path):
    table = codebooks.load_divisions()
    table["districts"]["410102"] = {"name": "中原区", "parent": None, "source": 0,
                                    "streets": None}
    path = tmp_path / "divisions.json"
    path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    assert run(capsys, "show", "410102")[0] == 2
    status, out, _ = run(capsys, "show", "410102", "--divisions", str(path))
    assert status == 0 and "中原区" in out


def test_list_one_standard_and_kind(capsys):
    status, out, _ = run(capsys, "list", "--standard", "GB/T 47678.5-2026", "--kind", "event")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == len(codebooks.book("GB/T 47678.5-2026").codes("event"))
    assert any("06010 暴露垃圾 [T]" in line for line in lines)


def test_list_json_carries_source_and_certainty(capsys):
    status, out, _ = run(capsys, "list", "--standard", "CJ/T 214-2007", "--json")
    rows = json.loads(out)
    book = codebooks.book("CJ/T 214-2007")
    assert status == 0
    assert len(rows) == len(book.codes("component")) + len(book.codes("event"))
    assert {r["certainty"] for r in rows} <= {"V", "T", "I", "M", "T?"}
    assert all(r["source"].startswith("CJ/T214-2007") for r in rows)


def test_list_unknown_standard_exit_2(capsys):
    status, _, err = run(capsys, "list", "--standard", "GB/T 1")
    assert status == 2 and "has no loaded code book" in err


def test_books_reports_ids_the_device_puts_in_status(capsys):
    status, out, _ = run(capsys, "books", "--json")
    rows = json.loads(out)
    assert status == 0
    ids = [r["id"] for r in rows]
    assert ids[:3] == [codebooks.book(s).id for s in codebooks.STANDARDS]
    assert rows[2]["components"] == 153 and rows[2]["events"] == 250
