"""The report's ``urgent`` field (突发事件): true or absent; anything else is refused,
naming the field, by the core (device and gateway) and the gateway's fast path alike."""

import json

import pytest
from gridlink.firmware.core.report import (
    ReportError,
    decode_report,
    encode_report,
    make_report,
    validate_report,
)
from hypothesis import given
from hypothesis import strategies as st

STD = "GB/T 47678.5-2026"


def _report(**kw):
    return make_report("pv-0001", 7, None, 1_795_000_000.0, "event", STD, "06010", **kw)


def test_an_urgent_report_says_so_and_a_routine_one_carries_no_field():
    urgent = _report(urgent=True)
    assert urgent["urgent"] is True
    assert "urgent" not in _report()
    assert decode_report(encode_report(urgent))["urgent"] is True
    assert encode_report(urgent).endswith(b',"urgent":true}')   # what the gateway's lane reads


@given(st.one_of(st.just(False), st.none(), st.integers(), st.floats(allow_nan=False),
                 st.text(max_size=5), st.lists(st.booleans(), max_size=2)))
def test_any_other_value_is_refused_naming_the_field(value):
    obj = _report()
    obj["urgent"] = value
    with pytest.raises(ReportError) as exc:
        validate_report(obj)
    assert exc.value.field == "urgent"
    assert "must be true when present" in str(exc.value)
    with pytest.raises(ReportError, match="urgent"):
        decode_report(json.dumps(obj, ensure_ascii=False).encode())
