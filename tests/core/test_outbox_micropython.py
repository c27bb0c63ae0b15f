"""The same outbox scenario under CPython and under MicroPython's VFS gives the same story."""

import sys

import pytest
from gridlink.firmware import core
from gridlink.firmware.core import outbox, records

from tests.support.mpy_wasm import run_micropython

SCENARIO = """
import os
from gridcore.outbox import Outbox, REPORT, TRACK, TASK_RESULT, OutboxFull

def show(ob):
    print("pending", [(s, k, p) for s, k, p in ob.pending()], "cursor", ob.cursor,
          "depth", ob.depth(), ob.depth(REPORT), ob.depth(TRACK))

ob = Outbox(D, 2048)
for i in range(12):
    ob.append((REPORT, TRACK, TASK_RESULT)[i % 3], ("p" + str(i)).encode() * (i + 1))
ob.ack(3)
ob.ack(1)
ob.ack(7)
show(ob)
ob.close()

# a power cut mid-append: the tail of the log is torn
f = open(D + "/outbox.log", "rb")
data = f.read()
f.close()
f = open(D + "/outbox.log", "wb")
f.write(data[:-5])
f.close()
ob = Outbox(D, 2048)
print("problems", ob.problems)
show(ob)
ob.ack(5)
ob.ack(4)
ob.close()

# one flipped byte in the middle of the log and one in the ack file
f = open(D + "/outbox.log", "rb")
data = bytearray(f.read())
f.close()
data[200] ^= 0x40
f = open(D + "/outbox.log", "wb")
f.write(data)
f.close()
f = open(D + "/outbox.acks", "rb")
acks = bytearray(f.read())
f.close()
acks[3] ^= 0x01
f = open(D + "/outbox.acks", "wb")
f.write(acks)
f.close()
ob = Outbox(D, 2048)
print("problems", ob.problems)
show(ob)

# fill it: track goes, reports stay, then a clear refusal
n = 0
try:
    while True:
        ob.append(REPORT, b"r" * 100)
        n += 1
except OutboxFull as exc:
    print("full after", n, "evicted", sorted(ob.evicted.items()), str(exc))
ob.reject(10, "rejected: test")
print("rejected", list(ob.rejected()))
ob.close()
ob = Outbox(D, 2048)
show(ob)
print("files", sorted(os.listdir(D)), ob.size)
ob.close()
"""


def test_scenario_runs_on_cpython(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gridcore", core)
    monkeypatch.setitem(sys.modules, "gridcore.outbox", outbox)
    exec(SCENARIO, {"D": str(tmp_path / "ob")})
    out = capsys.readouterr().out
    assert "full after" in out and "rejected: test" in out
    assert out.count("problems [(") == 2


@pytest.mark.micropython
def test_micropython_tells_the_same_story(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gridcore", core)
    monkeypatch.setitem(sys.modules, "gridcore.outbox", outbox)
    exec(SCENARIO, {"D": str(tmp_path / "ob")})
    expected = capsys.readouterr().out
    got = run_micropython("D = '/data/ob'\n" + SCENARIO)
    assert got == expected


@pytest.mark.micropython
def test_micropython_reads_a_log_written_by_cpython(tmp_path):
    ob = outbox.Outbox(str(tmp_path), 4096)
    for i in range(5):
        ob.append(outbox.REPORT, f'{{"n":{i},"t":"测试"}}'.encode())
    ob.ack(2)
    ob.close()
    files = {f"/data/ob/{p.name}": p.read_bytes() for p in tmp_path.iterdir()}
    got = run_micropython("""
from gridcore.outbox import Outbox
ob = Outbox('/data/ob', 4096)
for s, k, p in ob.pending():
    print(s, k, p.decode())
print(ob.append(1, b'x'), ob.problems)
""", files=files)
    assert got.splitlines() == [f'{i + 1} 1 {{"n":{i},"t":"测试"}}' for i in (0, 2, 3, 4)] + \
        ["6 []"]
    assert records.OVERHEAD == 19
