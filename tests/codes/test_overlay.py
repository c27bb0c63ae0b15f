"""A district's local code book: classes added within the standard's extension ranges,
renamed and retired, and local 12-digit grid codes as aliases — applied the same on
CPython and MicroPython, sealed by its content, every misfit refused by name."""

import copy
import json

import pytest
from gridlink.cli import main
from gridlink.firmware import codebooks
from gridlink.firmware.core.codebook import CodeBook, CodeError, apply_overlay
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython

STANDARD = "GB/T 47678.5-2026"


def base():
    return codebooks.book(STANDARD)


def overlay(**changes):
    doc = {"format": "gridlink-codebook-overlay/1", "id": "zz-410106",
           "title": "上街区本地扩展（示例）", "source": "上街区数字城管实施方案 附件2（示例）",
           "base": base().id, "districts": ["410106"],
           "majors": {"event": {"21": "扩展事项"}},
           "add": {"event": {"21001": "共享单车乱停放", "06901": "餐厨垃圾外溢"}},
           "rename": {"event": {"06010": "暴露垃圾（含桶外散落）"}},
           "retire": {"event": {"06052": "并入 06010"}},
           "grid_aliases": {"410106010101": "410106001001001"}}
    doc.update(changes)
    return codebooks.seal_overlay(doc)


def applied(doc=None):
    return CodeBook(apply_overlay(base().data, doc or overlay()))


def test_added_renamed_and_retired_classes_read_as_the_local_book_says():
    book = applied()
    std = base()
    added = book.lookup("event", "21001")
    assert (added.name, added.major_name, added.certainty) == ("共享单车乱停放", "扩展事项", "L")
    assert added.source == "上街区数字城管实施方案 附件2（示例）"
    assert added.local == {"change": "added", "book": "zz-410106",
                           "title": "上街区本地扩展（示例）"}
    assert book.lookup("event", "06901").name == "餐厨垃圾外溢"
    renamed = book.lookup("event", "06010")
    assert renamed.name == "暴露垃圾（含桶外散落）"
    assert renamed.local["standard_name"] == std.lookup("event", "06010").name
    assert renamed.certainty == std.lookup("event", "06010").certainty
    with pytest.raises(CodeError, match="class 06052 is retired by the local book zz-410106 "
                                        r"\(上街区本地扩展（示例）\): 并入 06010"):
        book.lookup("event", "06052")
    # every other class is the standard's, untouched
    untouched = [c for c in std.codes("event") if c not in ("06010", "06052")]
    assert all(book.lookup("event", c).as_dict() == std.lookup("event", c).as_dict()
               for c in untouched)
    assert book.codes("component") == std.codes("component")
    assert book.id == f"{std.id}+zz-410106.{overlay()['version']}"
    assert len(book.id) <= 64   # a status's codebook field
    assert book.grid_alias("410106010101") == "410106001001001"
    assert book.grid_alias("410106001001") is None
    assert std.local is None and std.lookup("event", "06052")   # the shipped book as it was


REFUSALS = [
    ({"base": "GB/T 47678.5-2026@000000000000"}, "it extends 'GB/T 47678.5-2026@000000000000'"),
    ({"majors": {"event": {"09": "x"}}}, "09 is a GB/T 47678.5-2026 major already"),
    ({"majors": {"event": {"11": "x"}}}, "local majors are 20-99"),
    ({"add": {"event": {"06053": "x"}}}, "local classes are 06900-06999 (the extension range)"),
    ({"add": {"event": {"06001": "x"}}}, "06001 is a GB/T 47678.5-2026 class already"),
    ({"add": {"event": {"22001": "x"}}}, "major 22 is neither"),
    ({"add": {"event": {"2100": "x"}}}, "class codes are 5 digits"),
    ({"add": {"event": {"21002": "x" * 31}}}, "the name has 31 characters; at most 30"),
    ({"add": {"event": {"21002": " "}}}, "add.event.21002: a name is needed"),
    ({"rename": {"event": {"06999": "x"}}}, "06999 is not a GB/T 47678.5-2026 event class"),
    ({"retire": {"event": {"06051": ""}}}, "retire.event.06051: say why it is retired"),
    ({"retire": {"event": {"06901": "x"}}}, "06901 is changed twice"),
    ({"add": {"case": {}}}, "add: kind 'case' is not one of component, event"),
    ({"id": "Zhengzhou City"}, "must be 1-20 of a-z, 0-9 and '-'"),
    ({"id": "z" * 21}, "must be 1-20"),
    ({"title": ""}, "title is missing"),
    ({"grid_aliases": {"41010601010": "410106001001001"}}, "a local grid code is 12 digits"),
    ({"grid_aliases": {"410106010101": "4101060010010"}}, "a 14- or 15-digit standard grid"),
    ({"grid_aliases": {"410106010101": "320508001001001"}}, "are in different districts"),
    ({"format": "gridlink-codebook/1"}, "format 'gridlink-codebook/1' is not"),
]


@pytest.mark.parametrize(("change", "message"), REFUSALS)
def test_a_local_book_that_does_not_fit_is_refused_by_name(change, message):
    doc = overlay(**change)
    if "retire" in change and "06901" in change["retire"]["event"]:
        doc = overlay(add={"event": {"06901": "x"}}, retire={"event": {"06901": "y"}})
    before = copy.deepcopy(base().data)
    with pytest.raises(CodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overlay(base().data, doc)
    assert base().data == before


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(900, 999).map(lambda n: f"06{n}"),
                       st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                               min_size=1, max_size=30).filter(str.strip), max_size=8),
       st.sets(st.sampled_from(base().codes("event")), max_size=5))
def test_any_fitting_book_changes_exactly_what_it_names(added, retired):
    retired = {c: "并入其他类别" for c in retired if c not in added}
    book = applied(overlay(majors={}, add={"event": added}, rename={},
                           retire={"event": retired}, grid_aliases={}))
    std = base()
    assert set(book.codes("event")) == (set(std.codes("event")) - set(retired)) | set(added)
    for code, name in added.items():
        assert book.lookup("event", code).name == name
    for code in retired:
        with pytest.raises(CodeError, match=f"class {code} is retired"):
            book.lookup("event", code)


def test_a_local_book_is_sealed_by_its_content_and_a_changed_one_refused(tmp_path, capsys):
    path = tmp_path / "local.json"
    doc = overlay()
    doc.pop("version")
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert main(["codes", "overlay", "seal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "event     21001  added    共享单车乱停放" in out
    assert "event     06010  renamed  暴露垃圾（含桶外散落） (standard: 暴露垃圾)" in out
    assert "event     06052  retired  并入 06010" in out
    assert "grid      410106010101  alias of 410106001001001" in out
    assert codebooks.load_overlay(path)["version"] == overlay()["version"]
    assert main(["codes", "overlay", "check", str(path)]) == 0
    sealed = json.loads(path.read_text(encoding="utf-8"))
    sealed["add"]["event"]["21001"] = "共享单车乱停放与损坏"     # edited after sealing
    path.write_text(json.dumps(sealed, ensure_ascii=False), encoding="utf-8")
    capsys.readouterr()
    assert main(["codes", "overlay", "check", str(path)]) == 2
    assert "does not match its content" in capsys.readouterr().err
    with pytest.raises(CodeError, match="does not match its content"):
        codebooks.load_books(overlays=[path])


def test_a_book_that_does_not_fit_is_not_sealed(tmp_path, capsys):
    path = tmp_path / "local.json"
    doc = overlay(add={"event": {"06053": "x"}})
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    before = path.read_bytes()
    assert main(["codes", "overlay", "seal", str(path)]) == 2
    assert "the extension range" in capsys.readouterr().err
    assert path.read_bytes() == before


@pytest.mark.micropython
def test_the_same_book_applies_the_same_under_micropython():
    doc = overlay()
    book_text = codebooks.path(STANDARD).read_text(encoding="utf-8")
    probes = ["21001", "06901", "06010", "06052", "06053", "06001"]
    script = f"""
import json
from gridcore.codebook import CodeBook, CodeError, apply_overlay
with open("/data/book.json") as f:
    book = CodeBook(apply_overlay(json.load(f), json.loads({json.dumps(json.dumps(doc))})))
out = [book.id, book.grid_alias("410106010101")]
for code in {probes!r}:
    try:
        out.append(["ok", book.lookup("event", code).as_dict()])
    except CodeError as exc:
        out.append(["error", str(exc)])
print(json.dumps(out))
"""
    got = json.loads(run_micropython(script, files={"/data/book.json": book_text},
                                     heapsize=8 * 1024 * 1024).strip().splitlines()[-1])
    book = applied(doc)
    want = [book.id, book.grid_alias("410106010101")]
    for code in probes:
        try:
            want.append(["ok", book.lookup("event", code).as_dict()])
        except CodeError as exc:
            want.append(["error", str(exc)])
    assert got == json.loads(json.dumps(want))
