"""Issue 19 item 7: a gateway takes only its own district(s); another district's reports
are dead-lettered, never answered, never numbered as cases."""

import pytest
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.queue import MIGRATIONS as QUEUE_MIGRATIONS
from gridlink.gateway.queue import IntakeQueue
from gridlink.gateway.service import served_districts

from tests.support.gateway_rig import count, encode, report, topic
from tests.support.probing_rig import ack_topics, acks_of, start_gateway
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def test_another_districts_report_is_dead_lettered_unanswered(broker, store_url, tmp_path,
                                                               listener):
    gw = start_gateway(broker, store_url, tmp_path)
    try:
        listener.publish(topic("pv-0009", "report", district="410102"),
                         encode(report("pv-0009", 1, grid=None)))
        listener.publish(topic("pv-0001", "report"), encode(report("pv-0001", 1)))
        got = acks_of(listener, 1)
        wait_until(lambda: count(gw.store, "dead_letters") == 1, 10, "the dead letter")
        assert got == [("pv-0001:000000000001", "accepted", None)]
        assert count(gw.store, "reports") == 1
        assert count(gw.store, "reports", "district = ?", ("410102",)) == 0
        (dead,) = gw.store.fetchall("SELECT device, reason FROM dead_letters")
        assert dead["device"] == "pv-0009" and "district 410102 is not served" in dead["reason"]
        assert all("/410102/" not in t for t in ack_topics(listener))
        # the one case this gateway numbers is its own district's
        gw.store.migrate(extra=QUEUE_MIGRATIONS)
        case = IntakeQueue(gw.store).accept("pv-0001:000000000001", "op")["case_no"]
        assert case.startswith("410106")
    finally:
        gw.stop()


def test_a_gateway_given_districts_takes_those(broker, store_url, tmp_path, listener):
    gw = start_gateway(broker, store_url, tmp_path, grid=None, districts=["410102"])
    try:
        listener.publish(topic("pv-0009", "report", district="410102"),
                         encode(report("pv-0009", 1, grid=None)))
        listener.publish(topic("pv-0001", "report"), encode(report("pv-0001", 1)))
        assert acks_of(listener, 1) == [("pv-0009:000000000001", "accepted", None)]
        wait_until(lambda: count(gw.store, "dead_letters") == 1, 10, "the dead letter")
        assert [r["district"] for r in gw.store.fetchall("SELECT district FROM reports")] == \
            ["410102"]
    finally:
        gw.stop()


def test_served_districts_default_to_the_grid_maps_then_the_default():
    class Map:
        n_cells = 3

        def code(self, i):
            return ["410106001001001", "410102001001001", "410106001001002"][i]

    assert served_districts(None, Map()) == ["410102", "410106"]
    assert served_districts(["410103", " 410103"], Map()) == ["410103"]
    assert served_districts(None, None) == ["410106"]
    with pytest.raises(ConfigError, match="6-digit"):
        served_districts(["4101"], None)
