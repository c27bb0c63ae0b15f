"""The list filters' one rule (gateway/store/sql.py): conditions only for the filters
given, a choice outside its set refused by name, a page of 1 to MAX_PAGE rows."""

import pytest
from gridlink.gateway.queue import Invalid
from gridlink.gateway.store.sql import MAX_PAGE, Filters, one_of, page_limit


def test_only_the_given_filters_make_conditions():
    f = Filters(Invalid)
    assert f.clause == ""
    f.choice("state", None, ("open", "sent"))
    f.equal("device", None)
    assert (f.clause, f.params) == ("", [])
    f.choice("kind", "event", ("event", "component"), column="r.kind")
    f.equal("device", "pv-0001")
    f.add("r.captured_at >= ?", "2026-12-01T00:00:00Z")
    assert f.clause == " WHERE r.kind = ? AND device = ? AND r.captured_at >= ?"
    assert f.params == ["event", "pv-0001", "2026-12-01T00:00:00Z"]


def test_a_value_outside_the_choices_is_refused_by_name():
    with pytest.raises(Invalid, match=r"^state: one of open, sent, not 'done'$"):
        Filters(Invalid).choice("state", "done", ("open", "sent"))
    with pytest.raises(Invalid, match=r"^order: asc or desc, not 'up'$"):
        one_of("order", "up", ("asc", "desc"), Invalid, said="asc or desc")
    assert one_of("order", "asc", ("asc", "desc"), Invalid) == "asc"


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
def test_a_page_is_1_to_max_page_rows(limit):
    with pytest.raises(Invalid, match=rf"^limit: 1 to {MAX_PAGE}$"):
        page_limit(limit, Invalid)
    assert page_limit("7", Invalid) == 7 and page_limit(MAX_PAGE, Invalid) == MAX_PAGE
