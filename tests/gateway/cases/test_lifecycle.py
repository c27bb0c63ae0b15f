"""The lifecycle table on its own (no store): random walks through it, the stage clocks and
the wording of a refusal."""

import pytest
from gridlink.gateway.cases import lifecycle as lc
from hypothesis import given
from hypothesis import strategies as st

MOVES = st.lists(st.tuples(st.sampled_from([*lc.ACTIONS, "archive"]),
                           st.sampled_from([*lc.STATES, "nowhere"])), max_size=30)


@given(MOVES)
def test_a_walk_stays_in_the_table_and_final_states_need_the_override(moves):
    state = lc.REGISTERED
    for action, target in moves:
        try:
            after = lc.check(action, state, target)
        except lc.Refused as refused:
            assert refused.state == state
            assert state in str(refused) or action not in lc.ACTIONS
            if action in lc.TRANSITIONS:
                assert state not in lc.TRANSITIONS[action][1]
                assert refused.allowed == lc.allowed_actions(state)
            continue
        assert after in lc.STATES
        if state in lc.TERMINAL:
            assert action == lc.OVERRIDE
        if action != lc.OVERRIDE:
            assert after == lc.TRANSITIONS[action][2]
        state = after


def test_a_refusal_names_the_state_where_the_move_is_allowed_and_what_is():
    with pytest.raises(lc.Refused) as refused:
        lc.check("start", lc.CLOSED)
    assert str(refused.value) == (
        "cannot start (开始处置): the case is 结案 (closed), and start is only from "
        "派遣 (dispatched), 返工 (rework); 结案 (closed) is final (only a 值班长 override "
        "reopens it)")
    with pytest.raises(lc.Refused, match="already"):
        lc.check(lc.OVERRIDE, lc.HANDLING, lc.HANDLING)


@pytest.mark.parametrize(("before", "after", "change"), [
    ("registered", "dispatched", ("dispatch", "handle")),
    ("dispatched", "handling", (None, None)),          # one stage: its clock runs on
    ("checking", "rework", ("check", "handle")),       # 返工: a new handling clock
    ("handling", "rework", ("handle", "handle")),      # (by override) a new clock too
    ("checking", "closed", ("check", None)),
    ("deferred", "registered", (None, "dispatch")),
])
def test_stage_clocks(before, after, change):
    assert lc.stage_change(before, after) == change


def test_on_time_is_up_to_and_including_the_due_time():
    due = "2026-11-28T10:00:00.000Z"
    assert lc.on_time(due, due) is True
    assert lc.on_time(due, "2026-11-28T10:00:00.001Z") is False
    assert lc.on_time(None, due) is None
