"""The bridge out, on SQLite and PostgreSQL, against a real HTTP receiver on 127.0.0.1:
a 派遣 leaves through the outbox exactly once (the receiver keeps one per idempotency
key and counts every request) while the receiver fails, is down, and answers too late;
retries back off; a message that keeps failing is stuck and shows as such."""

import threading

import pytest
from gridlink.gateway.cases.outbox import Outbox
from gridlink.gateway.cases.sender import BridgeSender
from gridlink.gateway.metrics import Metrics
from gridlink.gateway.queue import Invalid

from tests.support.receiver import Receiver

PHOTO = "ab" * 32


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def wire(desk, receiver, adapter="webhook", city=None, **kw):
    """An outbox on the desk's book, the sanitation department reached at ``receiver``."""
    path = "/open311/v2/requests.json" if adapter == "open311" else "/cases"
    desk.book.put_department("sanitation", "环卫处", ["06"], system={
        "adapter": adapter, "url": receiver.url + path, "timeout_s": 1, "api_key": "k-1"})
    outbox = Outbox(desk.store, clock=desk.clock, city=city)
    desk.book.outbox = outbox
    metrics = Metrics()
    return outbox, BridgeSender(outbox, metrics=metrics, **kw), metrics


def dispatched(desk):
    case_no, _ = desk.case()
    desk.act(case_no, "dispatch", department="sanitation", deadline_s=3600)
    return case_no


def test_a_dispatch_survives_a_failing_down_and_slow_receiver(desk, receiver):
    outbox, sender, metrics = wire(desk, receiver)
    receiver.mode = "fail"
    case_no = dispatched(desk)
    (msg,) = outbox.list()["items"]
    assert (msg["id"], msg["key"], msg["state"]) == (f"sanitation:{case_no}", case_no, "pending")
    assert sender.round() == {"sent": 0, "failed": 1}          # 500
    assert sender.round() == {"sent": 0, "failed": 0}          # not due again yet: backoff
    msg = outbox.get(msg["id"])
    assert (msg["attempts"], msg["last_status"]) == (1, 500)
    assert msg["last_error"].startswith("HTTP 500")
    desk.clock.advance(2)
    receiver.stop()                                            # down: connection refused
    assert sender.round() == {"sent": 0, "failed": 1}
    assert "Refused" in outbox.get(msg["id"])["last_error"]
    desk.clock.advance(3.9)
    assert sender.round() == {"sent": 0, "failed": 0}          # 2 s, then 4 s
    desk.clock.advance(0.1)
    receiver.start()                                           # back, on the same port
    receiver.mode = "slow"                                     # keeps it, answers too late
    assert sender.round() == {"sent": 0, "failed": 1}
    assert list(receiver.kept) == [case_no]
    receiver.mode = "ok"
    desk.clock.advance(8)
    assert sender.round() == {"sent": 1, "failed": 0}
    msg = outbox.get(msg["id"])
    assert (msg["state"], msg["attempts"], msg["remote_id"]) == ("sent", 4, "w-1")
    assert receiver.hits[case_no] == 3                         # 500, slow, ok (refused: none)
    assert list(receiver.kept) == [case_no]                    # nothing doubled
    kept = receiver.kept[case_no]
    assert (kept["key"], kept["case_no"], kept["department"], kept["code"]) == (
        case_no, case_no, "sanitation", "06010")
    assert kept["deadline"] == desk.book.get(case_no)["stage_due"]
    desk.clock.advance(3600)
    assert sender.round() == {"sent": 0, "failed": 0}          # sent is sent
    assert metrics.bridge_pending._value.get() == 0


def test_many_cases_leave_once_each_through_open311(desk, receiver):
    outbox, sender, _ = wire(desk, receiver, adapter="open311", batch=4)
    receiver.mode = "fail"
    cases = [dispatched(desk) for _ in range(6)]
    sender.round()
    receiver.mode = "ok"
    desk.clock.advance(2)
    rounds = 0
    while outbox.counts()["pending"] and rounds < 5:
        sender.round()
        rounds += 1
    assert outbox.counts() == {"pending": 0, "stuck": 0}
    assert sorted(receiver.kept) == sorted(cases)
    form = receiver.kept[cases[0]]
    assert form["service_code"] == "06010" and form["attribute[case_no]"] == cases[0]
    assert form["api_key"] == "k-1" and cases[0] in form["description"]
    assert {m["remote_id"] for m in outbox.list(state="sent")["items"]} == {
        f"r-{n}" for n in range(1, 7)}


def test_a_message_that_keeps_failing_is_stuck_and_can_be_tried_now(desk, receiver):
    outbox, sender, metrics = wire(desk, receiver, cap_s=30)
    receiver.mode = "fail"
    case_no = dispatched(desk)
    for _ in range(5):
        sender.round()
        desk.clock.advance(30)
    assert outbox.counts() == {"pending": 1, "stuck": 1}
    assert metrics.bridge_stuck._value.get() == 1
    (stuck,) = outbox.list(state="stuck")["items"]
    assert stuck["stuck"] and stuck["attempts"] == 5 and stuck["case_no"] == case_no
    sender.round()
    assert outbox.get(stuck["id"])["next_at"] > outbox.get(stuck["id"])["created_at"]
    receiver.mode = "ok"
    assert sender.round() == {"sent": 0, "failed": 0}          # not due: 30 s cap
    outbox.retry_now(stuck["id"])
    assert sender.round() == {"sent": 1, "failed": 0}
    assert outbox.counts() == {"pending": 0, "stuck": 0}
    with pytest.raises(Invalid, match="sent already"):
        outbox.retry_now(stuck["id"])


def test_the_city_platform_gets_a_copy_and_a_redispatch_a_new_key(desk, receiver):
    with Receiver() as city:
        outbox, sender, _ = wire(desk, receiver, city={
            "adapter": "open311", "url": city.url + "/requests.json", "timeout_s": 1})
        case_no, rid = desk.case()
        desk.act(case_no, "dispatch", department="parks")      # parks has no system
        assert [m["destination"] for m in outbox.list()["items"]] == ["city"]
        desk.act(case_no, "start", "dept")
        desk.act(case_no, "feedback", "dept", photos=[PHOTO])
        task = desk.check(rid)["id"]
        desk.answer(task, "unresolved")                        # 返工
        desk.act(case_no, "dispatch", department="sanitation")
        assert sorted(m["id"] for m in outbox.list()["items"]) == [
            f"city:{case_no}", f"city:{case_no}-2", f"sanitation:{case_no}-2"]
        sender.round()
        assert sorted(city.kept) == [case_no, f"{case_no}-2"]
        assert list(receiver.kept) == [f"{case_no}-2"]


def test_a_refused_move_writes_no_message_and_no_system_sends_nothing(desk, receiver):
    outbox, _, _ = wire(desk, receiver)
    case_no, _ = desk.case("01010")                            # sanitation handles 06 only
    with pytest.raises(Exception, match="does not handle"):
        desk.act(case_no, "dispatch", department="sanitation")
    desk.act(case_no, "dispatch", department="parks")          # no system, no city
    assert outbox.list()["total"] == 0
    desk.book.put_department("sanitation", "环卫处", ["06"])    # system taken away
    other = dispatched(desk)
    assert outbox.list()["total"] == 0 and other


def test_a_system_setting_removed_after_the_message_keeps_it_pending(desk, receiver):
    outbox, sender, _ = wire(desk, receiver)
    case_no = dispatched(desk)
    desk.book.put_department("sanitation", "环卫处", ["06"])
    assert sender.round() == {"sent": 0, "failed": 1}
    msg = outbox.get(f"sanitation:{case_no}")
    assert "no system setting" in msg["last_error"] and msg["state"] == "pending"


def test_the_departments_system_setting_is_checked_and_its_key_not_shown(desk):
    for bad, why in (({"adapter": "fax", "url": "http://x"}, "adapter"),
                     ({"adapter": "webhook", "url": "ftp://x"}, "url"),
                     ({"adapter": "webhook", "url": "http://x", "timeout_s": 0}, "timeout_s"),
                     ({"adapter": "webhook", "url": "http://x", "port": 1}, "unknown"),
                     ("http://x", "object")):
        with pytest.raises(Invalid, match=why):
            desk.book.put_department("roads", "市政", ["02"], system=bad)
    assert "roads" not in [d["id"] for d in desk.book.departments()]
    done = desk.book.put_department("roads", "市政", ["02"], system={
        "adapter": "open311", "url": "https://roads.example/requests.json", "api_key": "s3"})
    assert done["system"]["api_key"] == "set"
    assert desk.book.department("roads")["system"] == {
        "adapter": "open311", "url": "https://roads.example/requests.json", "api_key": "set"}


def test_two_senders_at_once_send_each_message_once(desk, receiver):
    """Two gateway workers' senders over one store: the lease gives each message to one."""
    outbox, first, _ = wire(desk, receiver)
    second = BridgeSender(Outbox(desk.store, clock=desk.clock))
    cases = [dispatched(desk) for _ in range(8)]
    receiver.mode = "slow"
    receiver.slow_s = 0.05
    done = []
    threads = [threading.Thread(target=lambda s=s: done.append(s.round()))
               for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(d["sent"] for d in done) == 8 and sum(d["failed"] for d in done) == 0
    assert receiver.hits == dict.fromkeys(cases, 1)
    assert outbox.counts() == {"pending": 0, "stuck": 0}


def _send_all(sender, rounds=12):
    done = {"sent": 0, "failed": 0}
    for _ in range(rounds):
        step = sender.round()
        if step == {"sent": 0, "failed": 0}:
            break
        done = {k: done[k] + step[k] for k in done}
    return done


def _handled(desk, case_no, rid, result):
    """start, 处置反馈, a 核查 task and its result: the move's history number."""
    desk.act(case_no, "start", "dept")
    desk.act(case_no, "feedback", "dept", photos=[PHOTO])
    task = desk.check(rid)["id"]
    answer = desk.answer(task, result)
    return desk.book.get(case_no)["version"], task, answer


def test_later_moves_leave_once_each_in_order_to_the_department_and_the_city(desk, receiver):
    with Receiver() as city:
        outbox, sender, _ = wire(desk, receiver, city={
            "adapter": "webhook", "url": city.url + "/cases", "timeout_s": 1})
        receiver.mode = "fail"
        case_no, rid = desk.case()
        desk.act(case_no, "dispatch", department="sanitation", deadline_s=3600)
        rework, task, answer = _handled(desk, case_no, rid, "unresolved")     # 返工
        # the department's 派遣 failed: its 返工 waits behind it, the city's goes on
        assert sender.round() == {"sent": 2, "failed": 1}
        assert list(city.kept) == [case_no, f"{case_no}:{rework}"]
        receiver.mode = "ok"
        assert sender.round() == {"sent": 0, "failed": 0}              # 派遣 backs off 2 s
        assert receiver.kept == {}
        desk.clock.advance(2)
        desk.act(case_no, "dispatch", department="sanitation")        # again, after 返工
        closed, _, _ = _handled(desk, case_no, rid, "resolved")          # 结案
        assert _send_all(sender) == {"sent": 6, "failed": 0}
        keys = [case_no, f"{case_no}:{rework}", f"{case_no}-2", f"{case_no}:{closed}"]
        assert list(receiver.kept) == keys and list(city.kept) == keys   # in order, once
        assert receiver.hits == {case_no: 2, **dict.fromkeys(keys[1:], 1)}
        back = receiver.kept[f"{case_no}:{rework}"]
        assert (back["event"], back["state"], back["label"], back["from_state"]) == (
            "rework", "rework", "返工", "checking")
        assert back["check"]["task"] == task and back["check"]["result"] == "unresolved"
        assert back["check"]["report_id"] == answer and back["department"] == "sanitation"
        done = receiver.kept[f"{case_no}:{closed}"]
        assert (done["event"], done["state"], done["check"]["result"]) == (
            "close", "closed", "resolved")
        assert receiver.kept[f"{case_no}-2"]["event"] == "dispatch"
        msgs = outbox.list(case_no=case_no)["items"]
        assert [m["seq"] for m in msgs if m["destination"] == "sanitation"] == [
            2, rework, rework + 1, closed]


def test_void_defer_and_resume_leave_with_their_reason(desk, receiver):
    outbox, sender, _ = wire(desk, receiver)
    case_no = dispatched(desk)
    desk.act(case_no, "defer", reason="道路施工，暂缓")
    desk.act(case_no, "resume")
    desk.act(case_no, "void", reason="重复上报")
    never, _ = desk.case()
    desk.act(never, "void", reason="误报")                    # never dispatched: nothing
    assert _send_all(sender) == {"sent": 4, "failed": 0}
    assert [(m["event"], m["state"], m.get("reason")) for m in receiver.kept.values()] == [
        ("dispatch", "dispatched", None), ("defer", "deferred", "道路施工，暂缓"),
        ("resume", "registered", None), ("void", "voided", "重复上报")]
    assert list(receiver.kept)[1:] == [f"{case_no}:{n}" for n in (3, 4, 5)]
    assert outbox.list(case_no=never)["total"] == 0
    desk.act(case_no, "override", state="registered", reason="值班长复核")
    assert _send_all(sender) == {"sent": 1, "failed": 0}
    last = receiver.kept[f"{case_no}:6"]
    assert (last["event"], last["from_state"], last["state"]) == (
        "override", "voided", "registered")


def test_open311_takes_the_dispatch_only(desk, receiver):
    """GeoReport v2 creates requests and has no status update: a department reached by
    Open311 gets its 派遣 and nothing after; a move written for a webhook that became
    Open311 before it left is refused by the sender and stays pending, saying why."""
    outbox, sender, _ = wire(desk, receiver, adapter="open311")
    case_no = dispatched(desk)
    desk.act(case_no, "void", reason="重复上报")
    assert [m["event"] for m in outbox.list(case_no=case_no)["items"]] == ["dispatch"]
    other = dispatched(desk)
    desk.book.put_department("sanitation", "环卫处", ["06"], system={
        "adapter": "webhook", "url": receiver.url + "/cases"})
    desk.act(other, "defer", reason="等待材料")
    desk.book.put_department("sanitation", "环卫处", ["06"], system={
        "adapter": "open311", "url": receiver.url + "/requests.json"})
    assert _send_all(sender) == {"sent": 2, "failed": 1}
    stuck = outbox.get(f"sanitation:{other}:3")
    assert stuck["state"] == "pending" and "only new requests" in stuck["last_error"]
    assert sorted(receiver.kept) == sorted([case_no, other])
