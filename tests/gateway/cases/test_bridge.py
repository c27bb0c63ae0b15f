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
