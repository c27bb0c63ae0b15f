"""Issue 19 item 10: capture times far from the receive time are flagged, not dropped;
the queue lists them by their receive time, and the board shows the flag."""

import time

import pytest
from gridlink.gateway.clock import wire_time
from gridlink.gateway.validate import Validator

from tests.support.board import add_operator, sign_in
from tests.support.gateway_rig import encode, report, topic
from tests.support.pages import browser_page, needs_chromium
from tests.support.probing_rig import acks_of, http_json, start_gateway

NOW = 1_796_000_000.0  # 2026-11-30T00:53:20Z


def at(t):
    return wire_time(t)


@pytest.mark.parametrize("captured, flag", [
    (at(NOW - 5), None),
    (at(NOW + 300), None),                  # a device clock a few minutes fast
    (at(NOW - 20 * 86400), None),           # a backlog three weeks old
    (at(NOW + 86400), "ahead"),
    ("2099-01-01T00:00:00.000Z", "ahead"),
    ("2019-06-01T00:00:00.000Z", "old"),
    ("1970-01-01T00:00:00.000Z", "old"),
])
def test_far_capture_times_are_flagged(captured, flag):
    v = Validator().decode(topic("pv-0001", "report"),
                           encode(report(time=captured)), NOW)
    assert v.kind == "report" and v.data["time_flag"] == flag
    assert v.data["captured_at"] == captured  # the device's time is kept as it said


def test_a_time_before_provisioning_is_flagged_when_known():
    judge = Validator(provisioned={"pv-0001": at(NOW - 86400)}.get)
    early = judge.decode(topic("pv-0001", "report"),
                         encode(report(time=at(NOW - 2 * 86400))), NOW)
    assert early.data["time_flag"] == "before_provisioning"
    other = judge.decode(topic("pv-0002", "report"),
                         encode(report("pv-0002", time=at(NOW - 2 * 86400))), NOW)
    assert other.data["time_flag"] is None


def publish_probes(listener):
    now = time.time()
    times = {1: at(now - 60), 2: "2099-01-01T00:00:00.000Z", 3: at(now + 86400),
             4: "2019-06-01T00:00:00.000Z", 5: "1970-01-01T00:00:00.000Z", 6: at(now + 60)}
    for seq, t in times.items():
        listener.publish(topic("pv-0001", "report"), encode(report(seq=seq, time=t)))
        time.sleep(0.05)  # distinct receive times, in seq order
    acks_of(listener, len(times))


@pytest.mark.broker
def test_the_queue_lists_flagged_reports_by_receive_time(broker, store_url, tmp_path,
                                                         listener):
    gw = start_gateway(broker, store_url, tmp_path, http="127.0.0.1:0")
    try:
        publish_probes(listener)
        page = http_json(gw, "/api/reports?limit=10")
        got = [(r["seq"], r["time_flag"]) for r in page["items"]]
        # newest first: by receive time for the flagged ones, capture time for the others
        assert got == [(6, None), (5, "old"), (4, "old"), (3, "ahead"), (2, "ahead"),
                       (1, None)]
        flagged = http_json(gw, "/api/reports?flag=capture_time")
        assert sorted(r["seq"] for r in flagged["items"]) == [2, 3, 4, 5]
    finally:
        gw.stop()


@pytest.mark.broker
@pytest.mark.browser
@needs_chromium
def test_the_board_shows_the_flag(broker, tmp_path, listener):
    gw = start_gateway(broker, f"sqlite:///{tmp_path}/intake.sqlite", tmp_path,
                       http="127.0.0.1:0")
    try:
        publish_probes(listener)
        with browser_page(zone=None, locale=None) as page:
            add_operator(gw.store, "slw-01")
            page.goto(gw.http_url + "/")
            sign_in(page, "slw-01")
            page.wait_for_selector('#reports li[data-id="pv-0001:000000000002"]')
            badge = page.locator('#reports li[data-id="pv-0001:000000000002"] .badge.time-flag')
            assert badge.count() == 1 and "capture time" in badge.inner_text()
            assert "采集时间晚于接收时间" in badge.get_attribute("title")
            plain = page.locator('#reports li[data-id="pv-0001:000000000001"] .badge.time-flag')
            assert plain.count() == 0
    finally:
        gw.stop()


def test_the_queue_order_is_read_from_an_index(store):
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.queue import QUEUE_TIME

    store.migrate(extra=MIGRATIONS)
    if store.dialect != "sqlite":
        pytest.skip("the plan is checked on SQLite")
    plan = store.fetchall(f"EXPLAIN QUERY PLAN SELECT r.id FROM reports r ORDER BY "
                          f"{QUEUE_TIME.replace('time_flag', 'r.time_flag')} DESC, r.id DESC "
                          f"LIMIT 50")
    assert any("intake_reports_queue_order" in r["detail"] for r in plan), plan
