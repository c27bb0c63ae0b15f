"""``gridlink demo --rollout V``: the simulated Pis start from 1.0 in update slot a through
the A/B launcher; the rollout of V begins through the API, each device installs it,
restarts into slot b, keeps it after its health check, the rollout finishes stage by stage
and the board's updates page serves it; nothing is left running."""

import json
import sqlite3
import urllib.request

import pytest
from gridlink.firmware.device.slots import Slots

from tests.demo.test_district import alive, read_board_url, start_demo

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("broker", [[], ["--cluster"]], ids=["mosquitto", "nats-cluster"])
def test_the_demo_rolls_a_new_version_out_to_its_fleet(tmp_path, broker):
    data = tmp_path / "demo"
    proc = start_demo(data, "--no-terminal", "--no-loop", "--task-every", "0",
                      "--rollout", "1.1", "--rollout-after", "2", "--duration", "35", *broker)
    url, _said = read_board_url(proc)
    page = urllib.request.urlopen(url + "/board/updates.html", timeout=10).read().decode()
    assert "远程升级" in page
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert [ln for ln in lines if ln.endswith(f" of pi 1.1 to the district started: "
                                              f"{url}/board/updates.html")], out
    assert lines[-1].startswith("stopped cleanly: "), out
    assert lines[-2].endswith(": pi 1.1 done, stage 2/2, 2 of 2 devices installed"), out
    for device in ("pv-0001", "pv-0002"):
        slots = Slots(data / "devices" / device / "ota")
        assert slots.status()["installed"] == "1.1" and slots.current() == "b"
        assert slots.release("a")["version"] == "1.0" and slots.state()["good"] == "b"
    with sqlite3.connect(data / "intake.sqlite") as db:
        assert db.execute("SELECT version, state FROM ota_rollouts").fetchall() == [
            ("1.1", "done")]
    events = [json.loads(x) for x in (data / "demo-events.jsonl").read_text().splitlines()]
    restarted = [e for e in events if e["event"] == "restarted"]
    assert sorted(e["name"] for e in restarted) == ["pv-0001", "pv-0002"]
    pids = [e["pid"] for e in events if e["event"] in ("started", "restarted")]
    assert not [pid for pid in pids if alive(pid)]
