"""The broker dies and comes back without its store while it holds, for a gateway that is
down, reports, their photos and track batches it has PUBACKed.  The devices keep all
three until the gateway confirms them (its report ack, ``photo_stored``,
``track_stored``), so the gateway ends with every report, every photo whole and every
track point."""

import re

from hil_tests import single
from hil_tests.test_store_faults import sim_only  # noqa: F401 (a fixture)

KIND = "broker_lost_persistence"
TRACK_BATCH_S = 4   # batches every few seconds (the profile's 60 s would make none here)


def test_photos_and_track_survive_a_broker_that_lost_its_store(tmp_path, sim_only):  # noqa: F811
    plan = [(4, lambda p: p.broker_lost_persistence(), 3)]
    results, patrol = single.run(
        tmp_path, KIND, plan, 14, press_every=1.5, everything=True,
        vehicle_options=[{"track_batch_s": TRACK_BATCH_S}] * len(single.LINKS))
    single.assert_nothing_lost_or_doubled(results, KIND)
    assert results["rig"]["drained"], results
    assert results["photos_complete"] == results["photos_made"] > 0
    # every point written before the drain ended is at the gateway; of the last batch
    # the clean stop writes, what did not leave in time stays pending on its device (sent
    # at its next start)
    made, received = results["track_points_made"], results["track_points_received"]
    assert 0 < patrol.points_drained <= received <= made
    assert made - received <= results["track_points_pending"] <= made - patrol.points_drained
    # the fault hit photos waiting for the gateway: the devices found no session at the
    # broker and asked after them
    logs = "".join(v.log.read_text(encoding="utf-8") for v in patrol.vehicles)
    assert re.search(r"the broker kept no session for this device .* asking after [1-9]",
                     logs), logs[-3000:]
