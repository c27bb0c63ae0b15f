"""Urgent records (突发事件) leave the outbox first: kept on disk, across reopening,
compaction and eviction, on CPython and MicroPython alike."""

import sys

import pytest
from gridlink.firmware import core
from gridlink.firmware.core import outbox
from gridlink.firmware.core.outbox import (
    PHOTO_PROGRESS,
    REPORT,
    TASK_RESULT,
    TRACK,
    Outbox,
    OutboxError,
)

from tests.support.mpy_wasm import run_micropython


def _seqs(ob, kind=None):
    return [s for s, _k, _p in ob.pending(kind)]


def test_urgent_records_come_first_and_stay_first_after_reopening(tmp_path):
    ob = Outbox(str(tmp_path), 64 * 1024, sync=False)
    for i in range(5):
        ob.append(REPORT, b"r%d" % i)
    u1 = ob.append(REPORT, b"fire", urgent=True)
    ob.append(TASK_RESULT, b"t")
    u2 = ob.append(TASK_RESULT, b"flood", urgent=True)
    assert _seqs(ob) == [u1, u2, 1, 2, 3, 4, 5, 7]
    assert _seqs(ob, REPORT) == [u1, 1, 2, 3, 4, 5]
    ob.close()
    ob = Outbox(str(tmp_path), 64 * 1024, sync=False)
    assert ob.problems == []
    assert _seqs(ob) == [u1, u2, 1, 2, 3, 4, 5, 7]
    assert ob.is_urgent(u1) and not ob.is_urgent(1)
    ob.ack(u1)
    assert _seqs(ob) == [u2, 1, 2, 3, 4, 5, 7]
    ob.close()


def test_compaction_and_eviction_keep_the_mark(tmp_path):
    ob = Outbox(str(tmp_path), 4096, sync=False)
    for _ in range(40):
        ob.append(TRACK, b"t" * 60)
    urgent = ob.append(REPORT, b"u" * 50, urgent=True)
    for _ in range(40):                      # evicts track points: the log is rewritten
        ob.append(REPORT, b"r" * 20)
    assert ob.evicted[TRACK] > 0
    assert _seqs(ob, REPORT)[0] == urgent
    ob.ack(_seqs(ob, REPORT)[1])
    ob.compact()
    assert _seqs(ob)[0] == urgent and ob.is_urgent(urgent)
    ob.close()
    ob = Outbox(str(tmp_path), 4096, sync=False)
    assert _seqs(ob)[0] == urgent and ob.problems == []
    ob.close()


@pytest.mark.parametrize("kind", [TRACK, PHOTO_PROGRESS])
def test_only_reports_and_task_results_can_be_urgent(tmp_path, kind):
    ob = Outbox(str(tmp_path), 4096, sync=False)
    with pytest.raises(OutboxError, match="cannot be urgent"):
        ob.append(kind, b"x", urgent=True)
    assert ob.depth() == 0 and ob.next_seq == 1     # nothing stored, no number spent
    ob.close()


SCENARIO = """
from gridcore.outbox import Outbox, REPORT, TRACK

ob = Outbox(D, 2048)
for i in range(6):
    ob.append((REPORT, TRACK)[i % 2], ("p" + str(i)).encode())
ob.append(REPORT, b"urgent", True)
ob.append(REPORT, b"after")
print("pending", [(s, k, p) for s, k, p in ob.pending()])
print("reports", [s for s, k, p in ob.pending(REPORT)][:3])
ob.close()
ob = Outbox(D, 2048)
print("reopened", [s for s, k, p in ob.pending()], ob.is_urgent(7), ob.is_urgent(1))
ob.ack(7)
print("acked", [s for s, k, p in ob.pending()])
ob.close()
"""


def test_scenario_on_cpython(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gridcore", core)
    monkeypatch.setitem(sys.modules, "gridcore.outbox", outbox)
    exec(SCENARIO, {"D": str(tmp_path / "ob")})
    out = capsys.readouterr().out
    assert "reports [7, 1, 3]" in out
    assert "reopened [7, 1, 2, 3, 4, 5, 6, 8] True False" in out
    assert "acked [1, 2, 3, 4, 5, 6, 8]" in out


@pytest.mark.micropython
def test_the_sensor_nodes_outbox_gives_urgent_first_too(tmp_path, monkeypatch, capsys):
    """The MicroPython node delivers from the core's outbox (its oldest pending reports
    each wake): urgent ones come first there as well."""
    monkeypatch.setitem(sys.modules, "gridcore", core)
    monkeypatch.setitem(sys.modules, "gridcore.outbox", outbox)
    exec(SCENARIO, {"D": str(tmp_path / "ob")})
    expected = capsys.readouterr().out
    assert run_micropython("D = '/data/ob'\n" + SCENARIO) == expected
