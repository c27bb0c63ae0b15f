"""Every case move from every state, legal and illegal, on SQLite and PostgreSQL.

The expected table is written out here (not read from ``lifecycle``), so a change to the
lifecycle's table shows up as a failing test.  A refused move leaves the case, its history
and its audit trail as they were, and says why."""

import pytest
from gridlink.gateway.queue import Conflict

STATES = ("registered", "dispatched", "handling", "reported", "checking", "closed", "rework",
          "voided", "deferred")
# action → {state it may leave: state it enters}
LEGAL = {
    "dispatch": {"registered": "dispatched", "rework": "dispatched"},
    "start": {"dispatched": "handling", "rework": "handling"},
    "feedback": {"handling": "reported"},
    "check": {"reported": "checking", "checking": "checking"},
    "resolved": {"checking": "closed"},
    "unresolved": {"checking": "rework"},
    "defer": {s: "deferred" for s in ("registered", "dispatched", "handling", "rework")},
    "resume": {"deferred": "registered"},
    "void": {s: "voided" for s in STATES if s not in ("closed", "voided")},
}
PHOTO = "ab" * 32


def drive(d, state):
    """A new case brought to ``state`` by legal moves; (case number, report id, 核查 task)."""
    case_no, rid = d.case()
    task = None
    path = {"registered": [], "dispatched": ["dispatch"], "handling": ["dispatch", "start"],
            "reported": ["dispatch", "start", "feedback"],
            "checking": ["dispatch", "start", "feedback", "check"],
            "closed": ["dispatch", "start", "feedback", "check", "resolved"],
            "rework": ["dispatch", "start", "feedback", "check", "unresolved"],
            "voided": ["void"], "deferred": ["defer"]}[state]
    for action in path:
        task = move(d, case_no, rid, action, task) or task
    assert d.book.get(case_no)["state"] == state
    return case_no, rid, task


def move(d, case_no, rid, action, task=None, department="sanitation"):
    """Make ``action``; returns the 核查 task it sent, if any."""
    if action == "check":
        return d.check(rid)["id"]
    if action in ("resolved", "unresolved"):
        d.answer(task, action)
        return None
    kw = {"dispatch": {"department": department}, "feedback": {"photos": [PHOTO]},
          "defer": {"reason": "雨季暂缓"}, "void": {"reason": "重复立案"}}.get(action, {})
    d.act(case_no, action, **kw)
    return None


@pytest.mark.parametrize("state", STATES)
def test_every_move_from_a_state(desk, state):
    for action, legal in LEGAL.items():
        case_no, rid, task = drive(desk, state)
        before = desk.book.get(case_no)
        audited = len(desk.trail.entries(target=f"case:{case_no}"))
        tasks = len(desk.desk.list(report_id=rid))
        if action in ("resolved", "unresolved") and task is None:
            # a 核查 result needs a 核查 task; one sent elsewhere names no case
            task = desk.desk.create(type="check", lat=34.82, lon=113.28, operator="lead")["id"]
        if state in legal:
            move(desk, case_no, rid, action, task)
            after = desk.book.get(case_no)
            assert after["state"] == legal[state], (state, action)
            last = after["history"][-1]
            assert (last["action"], last["from_state"], last["to_state"]) == (
                action, state, legal[state])
            entry = desk.trail.entries(target=f"case:{case_no}")[-1]
            assert entry["action"] == f"case.{action}"
            assert entry["before"]["state"] == state and entry["after"]["state"] == legal[state]
            continue
        if action in ("resolved", "unresolved"):
            # a result for a task that is not the case's current 核查 moves nothing
            desk.answer(task, action)
        else:
            with pytest.raises(Conflict) as refused:
                move(desk, case_no, rid, action, task, department="parks")
            text = str(refused.value)
            assert f"cannot {action}" in text or "核查" in text, text
            assert state in text, text
            assert refused.value.details["state"] == state
        after = desk.book.get(case_no)
        assert after == before, (state, action)
        assert len(desk.trail.entries(target=f"case:{case_no}")) == audited
        assert len(desk.desk.list(report_id=rid)) == tasks  # a refused 核查 sent nothing


@pytest.mark.parametrize("state", STATES)
def test_the_shift_lead_may_set_any_other_state_with_a_reason(desk, state):
    case_no, _, _ = drive(desk, state)
    target = "handling" if state != "handling" else "closed"
    after = desk.act(case_no, "override", actor="zhang", state=target, reason="电话确认")
    assert after["state"] == target
    last = after["history"][-1]
    assert (last["actor"], last["action"], last["reason"]) == ("zhang", "override", "电话确认")
    with pytest.raises(Conflict, match="already"):
        desk.act(case_no, "override", state=target, reason="again, other words")
