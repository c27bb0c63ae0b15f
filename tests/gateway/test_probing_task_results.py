"""Issue 19 item 5: a task result counts only from the device the task was sent to."""

import pytest

from tests.support.gateway_rig import count, encode, report, topic
from tests.support.probing_rig import acks_of, http_json, start_gateway
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def result(device, seq, task, outcome="resolved"):
    return encode(report(device, seq, source="task", task=task, result=outcome))


def test_only_the_tasks_device_closes_it(broker, store_url, tmp_path, listener):
    gw = start_gateway(broker, store_url, tmp_path, http="127.0.0.1:0")
    try:
        task = http_json(gw, "/api/tasks", {"type": "check", "lat": 34.805,
                                                     "lon": 113.285, "device": "pv-0002"})
        assert task["device"] == "pv-0002" and task["state"] == "sent"
        listener.publish(topic("pv-0001", "task/result"), result("pv-0001", 7, task["id"]))
        listener.publish(topic("pv-0001", "task/result"), result("pv-0001", 8, "T-20261128-nope"))
        got = sorted(acks_of(listener, 2))
        assert [(rid, status) for rid, status, _ in got] == [
            ("pv-0001:000000000007", "rejected"), ("pv-0001:000000000008", "rejected")]
        assert got[0][2] == f"task: {task['id']} was sent to pv-0002, not pv-0001"
        assert got[1][2] == "task: no task T-20261128-nope was sent to pv-0001"
        assert count(gw.store, "reports") == 0 and count(gw.store, "dead_letters") == 2
        assert http_json(gw, f"/api/tasks/{task['id']}")["state"] == "sent"

        listener.publish(topic("pv-0002", "task/result"), result("pv-0002", 3, task["id"]))
        assert acks_of(listener, 3)[2] == ("pv-0002:000000000003", "accepted", None)
        wait_until(lambda: http_json(gw, f"/api/tasks/{task['id']}")["state"] == "done",
                 10, "the task closed by its device")
        done = http_json(gw, f"/api/tasks/{task['id']}")
        assert (done["result"], done["result_report"]) == ("resolved", "pv-0002:000000000003")
    finally:
        gw.stop()


def test_the_sweep_closes_a_task_only_with_its_devices_result(store):
    """A result row written by another process (no ingest check) still cannot close
    another device's task: the sweep matches the task's device too."""
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.queue import IntakeQueue
    from gridlink.gateway.tasks import TaskDesk
    from gridlink.gateway.validate import Validator

    store.migrate(extra=MIGRATIONS)
    desk = TaskDesk(store, IntakeQueue(store))
    task = desk.create(type="check", lat=34.805, lon=113.285, device="pv-0002")
    judge = Validator()
    for device in ("pv-0001", "pv-0002"):
        t = topic(device, "task/result")
        row = judge.decode(t, result(device, 4, task["id"]), 1_795_000_000.0).data
        row["committed_at"] = row["received_at"]
        cols = list(row)
        with store.connect() as conn:
            conn.execute(store.sql(f"INSERT INTO reports ({', '.join(cols)}) VALUES "
                                   f"({', '.join('?' * len(cols))})"), [row[c] for c in cols])
        desk.sync()
        assert desk.get(task["id"])["state"] == ("open" if device == "pv-0001" else "done")
    assert desk.get(task["id"])["result_report"] == "pv-0002:000000000004"
