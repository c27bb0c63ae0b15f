"""Grid codes, component ids, event and class codes: parse, validate, explain."""

import pytest
from gridlink.firmware import codebooks
from gridlink.firmware.core.codes import CodeError, Codes, format_grid_code
from hypothesis import given, settings
from hypothesis import strategies as st

CODES = codebooks.codes()
BARE = Codes()  # no books, no division table: shapes only
DIV = CODES.divisions


# -- grid codes ----------------------------------------------------------------------

def test_15_digit_grid_code_parts_and_names():
    g = CODES.parse_grid_code("410106100203007")
    assert (g.district, g.street, g.community, g.sequence) == ("410106", "100", "203", "007")
    assert (g.district_name, g.street_name) == ("上街区", "峡窝镇")
    assert g.community_name == DIV.community_name("410106", "100", "203")
    assert g.street_type == "镇"
    assert g.standard.startswith("GB/T 30428.1-2013") and g.certainty == "I"
    assert not g.community_grid and g.warnings == []
    assert str(g) == g.format() == "410106100203007"


def test_14_digit_grid_code_and_the_community_grid():
    g = CODES.parse_grid_code("41010600200105")
    assert (g.standard, g.sequence, g.community_grid) == ("CJ/T 213-2005", "05", False)
    whole = CODES.parse_grid_code("41010600200100")
    assert whole.community_grid  # "00" = the community polygon itself
    assert whole.community_name == DIV.community_name("410106", "002", "001")


def test_unlisted_community_under_a_listed_street_is_a_warning_unless_strict():
    g = CODES.parse_grid_code("410106005009001")
    assert g.community_name is None
    assert len(g.warnings) == 1 and "community 009 is not listed under 410106005" in g.warnings[0]
    with pytest.raises(CodeError, match=r"grid code 410106005009001: community 009 is not "
                                        r"listed under 410106005 矿山街道办事处 \(listed: 001\)"):
        CODES.parse_grid_code("410106005009001", strict=True)


def test_district_without_a_street_list_is_accepted_with_a_warning():
    g = CODES.parse_grid_code("320508001001001")
    assert g.district_name == "姑苏区" and g.street_name is None
    assert "streets of 320508 姑苏区 are not in the table" in g.warnings[0]


def test_without_a_division_table_only_shapes_are_checked():
    g = BARE.parse_grid_code("410199001001001")
    assert g.district_name is None and g.warnings == []


@pytest.mark.parametrize(("code", "message"), [
    ("410199001001001", "grid code 410199001001001: district 410199 is not in the GB/T 2260 "
                        "table (divisions@"),
    ("410106006001001", "grid code 410106006001001: street 006 is not in the table for 410106 "
                        "上街区 (streets: 001, 002, 003, 004, 005, 100)"),
    ("410106000001001", "grid code 410106000001001: street 000 is not a street or township"),
    ("410106001000001", "grid code 410106001000001: community 000 is not a community"),
    ("410106001001000", "grid code 410106001001000: grid sequence 000 is not used"),
    ("000106001001001", "grid code 000106001001001: district 000106 has province 00, outside "
                        "GB/T 2260 (11–82)"),
    ("4101060010010", "grid code 4101060010010 has 13 digits; CJ/T 213-2005 grid codes have 14 "
                      "(6 district + 3 street + 3 community + 2 grid), GB/T 30428.1-2013 / "
                      "GB/T 47678 ones 15 (6+3+3+3)"),
    ("41010600100100A", "grid code '41010600100100A': character 15 'A' is not a digit"),
    ("", "grid code is empty"),
])
def test_grid_code_errors_name_the_part(code, message):
    with pytest.raises(CodeError) as err:
        CODES.parse_grid_code(code)
    assert message in str(err.value)


def test_format_grid_code_checks_each_part():
    assert format_grid_code("410106", "001", "001", "01") == "41010600100101"
    with pytest.raises(CodeError, match="grid code street 01 has 2 digits, not 3"):
        format_grid_code("410106", "01", "001", "001")
    with pytest.raises(CodeError, match="grid code sequence 0001 has 4 digits"):
        format_grid_code("410106", "001", "001", "0001")


# -- component ids and event codes ----------------------------------------------------

def test_component_ids_of_both_standards():
    old = CODES.parse_component_id("3205080101000001")  # the Suzhou ObjID, doc §2.1
    assert (old.standard, old.district, old.major, old.minor, old.serial) == (
        "CJ/T 214-2007", "320508", "01", "01", "000001")
    assert (old.district_name, old.entry.name) == ("姑苏区", "上水井盖")
    new = CODES.parse_component_id("41010601010000001")
    assert (new.standard, new.class_code, new.entry.name) == ("GB/T 47678.5-2026", "01010",
                                                               "热力井盖")
    assert new.format() == "41010601010000001"
    assert new.as_dict()["class"]["major_name"] == "市政公用设施"


def test_event_codes_of_both_standards():
    e = CODES.parse_event_code("41010606010")
    assert (e.standard, e.class_code, e.entry.name) == ("GB/T 47678.5-2026", "06010", "暴露垃圾")
    old = CODES.parse_event_code("4101060505")
    assert (old.standard, old.entry.name, old.entry.major_name) == (
        "CJ/T 214-2007", "机动车乱停放", "街面秩序")


@pytest.mark.parametrize(("call", "code", "message"), [
    ("parse_component_id", "410106010100000",
     "component id 410106010100000 has 15 digits; CJ/T 214-2007 component ids have 16 "
     "(6 district + 2 major + 2 minor + 6 serial), GB/T 47678.5-2026 ones 17 "
     "(6 district + 2 major + 3 minor + 6 serial)"),
    ("parse_component_id", "41010601016000001",
     "component id 41010601016000001: class 01016 is not in GB/T 47678.5-2026 components; "
     "nearest major 01 市政公用设施 has 01001–01077 (76 classes; 01016 is a gap"),
    ("parse_component_id", "41010601010000000",
     "component id 41010601010000000: serial 000000 is not used (serials start at 000001)"),
    ("parse_component_id", "41019901010000001",
     "component id 41019901010000001: district 410199 is not in the GB/T 2260 table"),
    ("parse_event_code", "41010611001",
     "event code 41010611001: class 11001 is not in GB/T 47678.5-2026 events: major 11 does "
     "not exist (majors: 01, 02, 03, 04, 05, 06, 07, 08, 09, 10)"),
    ("parse_event_code", "410106060", "event code 410106060 has 9 digits; CJ/T 214-2007 event "
     "codes have 10 (6 district + 2 major + 2 minor)"),
])
def test_id_errors_name_the_part(call, code, message):
    with pytest.raises(CodeError) as err:
        getattr(CODES, call)(code)
    assert message in str(err.value)


def test_ids_need_a_book_with_that_layout():
    with pytest.raises(CodeError, match="no loaded code book has a component id layout"):
        BARE.parse_component_id("41010601010000001")
    with pytest.raises(CodeError, match=r"event code 4101060101: GB/T 30428\.2-2013 has no "
                                        r"event code layout"):
        CODES.parse_event_code("4101060101", standard="GB/T 30428.2-2013")


# -- class codes ------------------------------------------------------------------------

def test_validate_class_code_returns_the_entry():
    e = CODES.validate_class_code("GB/T 47678.5-2026", "event", "06010")
    assert (e.name, e.major, e.major_name, e.certainty) == ("暴露垃圾", "06", "市容环境类", "T")
    assert CODES.validate_class_code("gb/t47678.5-2026", "component", "01001").name == "供水井盖"


@pytest.mark.parametrize(("standard", "kind", "code", "message"), [
    ("GB/T 47678.5-2026", "event", "06999",
     "class 06999 is not in GB/T 47678.5-2026 events; nearest major 06 市容环境类 has "
     "06001–06052 (51 classes)"),
    ("GB/T 47678.5-2026", "event", "06031", "06031 is a gap in its numbering"),
    ("GB/T 47678.5-2026", "event", "0601",
     "class code 0601 has 4 digits; GB/T 47678.5-2026 class codes have 5 (2 major + 3 minor)"),
    ("GB/T 47678.5-2026", "component", "06001",
     "class 06001 is not in GB/T 47678.5-2026 components: major 06 does not exist "
     "(majors: 01, 02, 03, 04, 05)"),
    ("CJ/T 214-2007", "event", "0520", "nearest major 05 街面秩序 has 0501–0599 (14 classes)"),
    ("GB/T 30428.2-2013", "event", "0102",
     "(this GB/T 30428.2-2013 table is partial)"),
    ("GB/T 30428.2-2013", "component", "0101",
     "this book has no component classes (this GB/T 30428.2-2013 table is partial)"),
    ("GB/T 47678.5-2026", "case", "06010", "kind 'case' is not one of component, event"),
    ("GB/T 9999", "event", "06010", "standard 'GB/T 9999' has no loaded code book"),
    ("GB/T 47678.5-2026", "event", "06 10", "class code '06 10': character 3 ' ' is not a digit"),
    ("GB/T 47678.5-2026", "event", 6010, "class code must be a string of digits, not int"),
])
def test_class_errors_name_the_part(standard, kind, code, message):
    with pytest.raises(CodeError) as err:
        CODES.validate_class_code(standard, kind, code)
    assert message in str(err.value)


# -- explain ----------------------------------------------------------------------------

def test_explain_lists_every_reading_of_an_ambiguous_code():
    readings = CODES.explain("0101")["readings"]
    seen = [(r["standard"], r["class"]["kind"], r["class"]["name"]) for r in readings]
    assert seen == [("CJ/T 214-2007", "component", "上水井盖"),
                    ("CJ/T 214-2007", "event", "私搭乱建"),
                    ("GB/T 30428.2-2013", "event", "私搭乱建")]
    both = CODES.explain("01001")["readings"]
    assert [r["class"]["name"] for r in both] == ["供水井盖", "供水井盖异常"]


@pytest.mark.parametrize(("code", "what", "standard"), [
    ("410106001001001", "grid code", "GB/T 30428.1-2013 / GB/T 47678-2026"),
    ("41010600100101", "grid code", "CJ/T 213-2005"),
    ("3205080101000001", "component id", "CJ/T 214-2007"),
    ("41010601010000001", "component id", "GB/T 47678.5-2026"),
    ("4101060505", "event code", "CJ/T 214-2007"),
    ("41010606010", "event code", "GB/T 47678.5-2026"),
    ("410106", "district", "GB/T 2260"),
    ("410106100", "street", "GB/T 10114"),
    ("410106100400", "community", "NBS 统计用区划代码"),
    ("10", "major class", "GB/T 47678.5-2026"),
])
def test_explain_works_out_what_a_code_is(code, what, standard):
    (reading,) = CODES.explain(code)["readings"]
    assert (reading["what"], reading["standard"]) == (what, standard)
    assert "".join(value for _, value, _ in reading["parts"]) == code


def test_explain_grid_gives_district_street_community_names():
    (r,) = CODES.explain("410106100400001")["readings"]
    names = [name for _, _, name in r["parts"][:3]]
    assert names == ["上街区", "峡窝镇", "装备制造业基地管委会社区"]


@pytest.mark.parametrize(("code", "message"), [
    ("1234567", "code 1234567 has 7 digits; known lengths: 2 (major class), 4 (CJ/T 214-2007 "
                "class code / GB/T 30428.2-2013 class code), 5 (GB/T 47678.5-2026 class code)"),
    ("06999", "code 06999 fits no reading: class 06999 is not in GB/T 47678.5-2026 components"),
    ("410199", "district code 410199: district 410199 is not in the GB/T 2260 table"),
    ("41010601016000001", "component id 41010601016000001: class 01016 is not in"),
    ("abc", "code 'abc': character 1 'a' is not a digit"),
    ("１２３４", "code '１２３４': character 1 '１' is not a digit"),
    ("41\n", "code '41\\u000a': character 3 '\\u000a' is not a digit"),
])
def test_explain_errors(code, message):
    with pytest.raises(CodeError) as err:
        CODES.explain(code)
    assert message in str(err.value)


# -- properties -------------------------------------------------------------------------

ANY_TEXT = st.one_of(st.text(max_size=24), st.text(alphabet="0123456789", max_size=20),
                     st.text(alphabet="0123456789１٣ \n-", max_size=18),
                     st.none(), st.integers(), st.binary(max_size=8))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_every_entry_point_raises_only_code_error(value):
    calls = [CODES.explain, CODES.parse_grid_code, CODES.parse_component_id,
             CODES.parse_event_code, BARE.parse_grid_code, BARE.explain,
             lambda v: CODES.validate_class_code("GB/T 47678.5-2026", "event", v),
             lambda v: CODES.validate_class_code("CJ/T 214-2007", "component", v)]
    for call in calls:
        try:
            call(value)
        except CodeError as exc:
            assert str(exc) and "\n" not in str(exc)


def table_grid_codes():
    """Grid codes built from the division table's own streets and communities."""
    places = [(d, s, c) for d in DIV.district_codes() for s in (DIV.streets(d) or {})
              for c in DIV.street(d, s)["communities"]]
    return st.builds(lambda p, seq: p[0] + p[1] + p[2] + seq, st.sampled_from(places),
                     st.one_of(st.integers(0, 99).map("{:02d}".format),
                               st.integers(1, 999).map("{:03d}".format)))


@settings(max_examples=200, deadline=None)
@given(table_grid_codes())
def test_valid_grid_codes_round_trip(code):
    g = CODES.parse_grid_code(code, strict=True)
    assert g.format() == code and g.warnings == []
    assert None not in (g.district_name, g.street_name, g.community_name)
    (reading,) = CODES.explain(code)["readings"]
    assert "".join(value for _, value, _ in reading["parts"]) == code


def class_ids(layout_key, kind):
    books = [b for b in CODES.books if b.layout.get(layout_key) and b.has(kind)]
    pairs = [(b, c) for b in books for c in b.codes(kind)]
    serial = st.integers(1, 999999).map("{:06d}".format)
    tail = serial if layout_key == "component_id" else st.just("")
    return st.builds(lambda d, pair, s: (pair[0], pair[1], d + pair[1] + s),
                     st.sampled_from(DIV.district_codes()), st.sampled_from(pairs), tail)


@settings(max_examples=200, deadline=None)
@given(class_ids("component_id", "component"))
def test_valid_component_ids_round_trip(case):
    book, class_code, cid = case
    c = CODES.parse_component_id(cid)
    assert (c.standard, c.class_code, c.format()) == (book.standard, class_code, cid)
    assert c.entry.name == book.entry("component", class_code).name


@settings(max_examples=200, deadline=None)
@given(class_ids("event_code", "event"))
def test_valid_event_codes_round_trip(case):
    book, class_code, code = case
    e = CODES.parse_event_code(code)
    assert (e.standard, e.class_code, e.format()) == (book.standard, class_code, code)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([(b, k, c) for b in CODES.books for k in ("component", "event")
                        for c in b.codes(k)]))
def test_every_class_validates_and_explains(case):
    book, kind, code = case
    assert CODES.validate_class_code(book.standard, kind, code).code == code
    readings = CODES.explain(code)["readings"]
    assert any(r["standard"] == book.standard and r["class"]["kind"] == kind for r in readings)
