"""A rollout's stage timeout (SQLite and PostgreSQL): a stage whose devices do not all
report within the deadline pauses itself naming the silent ones; resuming counts them
skipped and goes on with a fresh clock; without a timeout a stage waits for ever."""

import datetime

import pytest
from gridlink.gateway.api import create_app
from gridlink.gateway.queue import Invalid
from gridlink.gateway.rollouts import Rollouts

from tests.support.rollouts import Wire, set_device, status

T0 = datetime.datetime(2026, 12, 6, 8, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += datetime.timedelta(seconds=seconds)


@pytest.fixture
def fleet(store):
    store.migrate(extra=create_app.__globals__["MIGRATIONS"])
    for i in range(4):
        set_device(store, f"pv-{i:04d}", status())
    clock = Clock()
    return Rollouts(store, publisher=Wire(), clock=clock), clock


def of_stage(r, stage):
    return [d for d in r["devices"] if d["stage"] == stage - 1]


def test_a_stage_whose_devices_stay_silent_pauses_at_its_deadline(fleet, store):
    rollouts, clock = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[50, 100], operator="tech", stage_timeout_s=600)
    assert r["stage_timeout_s"] == 600
    first = [d["device"] for d in of_stage(r, 1)]
    set_device(store, first[0], status(version="1.1"))        # one of two reports
    clock.advance(600)
    rollouts.sync()
    assert rollouts.get(r["id"])["state"] == "running"          # at the deadline: not past
    clock.advance(1)
    assert rollouts.sync() == [r["id"]]
    r = rollouts.get(r["id"])
    assert (r["state"], r["stage"]) == ("paused", 1)
    assert r["reason"] == (f"stage 1 (50%): 1 of 2 devices did not report within the stage "
                           f"timeout of 600 s: {first[1]}")
    assert rollouts.sync() == []                                # stays paused, offers nothing
    # resumed: the silent device counts skipped, the next stage gets the offer, new clock
    r = rollouts.resume(r["id"], operator="tech")
    assert (r["state"], r["stage"]) == ("running", 2)
    silent = next(d for d in r["devices"] if d["device"] == first[1])
    assert (silent["outcome"], silent["reason"]) == (
        "skipped", "no report within the stage timeout; resumed by tech")
    assert {d["outcome"] for d in of_stage(r, 2)} == {"offered"}
    clock.advance(300)
    for d in of_stage(r, 2):
        set_device(store, d["device"], status(version="1.1"))
    rollouts.sync()
    assert rollouts.get(r["id"])["state"] == "done"


def test_the_clock_of_each_stage_starts_when_the_stage_does(fleet, store):
    rollouts, clock = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stages=[50, 100], stage_timeout_s=600)
    clock.advance(500)
    for d in of_stage(r, 1):
        set_device(store, d["device"], status(version="1.1"))
    rollouts.sync()                                            # stage 2 begins at 500 s
    clock.advance(500)                                         # 1000 s in, 500 s of stage 2
    rollouts.sync()
    assert rollouts.get(r["id"])["state"] == "running"
    clock.advance(101)
    rollouts.sync()
    assert rollouts.get(r["id"])["state"] == "paused"


def test_without_a_timeout_a_stage_waits(fleet):
    rollouts, clock = fleet
    r = rollouts.create(kind="pi", version="1.1", target={"district": "410106"})
    clock.advance(365 * 86400)
    rollouts.sync()
    assert rollouts.get(r["id"])["state"] == "running"


@pytest.mark.parametrize("bad", [0, -5, True, "600", 91 * 86400])
def test_a_bad_stage_timeout_is_refused_and_nothing_stored(fleet, bad):
    rollouts, _ = fleet
    with pytest.raises(Invalid, match="stage_timeout_s"):
        rollouts.create(kind="pi", version="1.1", target={"district": "410106"},
                        stage_timeout_s=bad)
    assert rollouts.list() == []
