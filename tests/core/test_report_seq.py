"""The report sequence survives reboot and a power cut never makes it repeat a number."""

import pytest
from gridlink.firmware.core.seqfile import SequenceError, SequenceFile, _encode

from tests.support.mpy_wasm import run_micropython
from tests.support.power_cuts import Faults, PowerCut, install


def test_sequence_counts_from_one_and_survives_reopen(tmp_path):
    path = str(tmp_path / "seq")
    s = SequenceFile(path)
    assert [s.next() for _ in range(3)] == [1, 2, 3]
    assert SequenceFile(path).next() == 4          # no close: every number is already durable
    assert SequenceFile(path).peek() == 5


def test_block_reservation_skips_but_never_repeats(tmp_path):
    path = str(tmp_path / "seq")
    s = SequenceFile(path, block=10)
    assert [s.next() for _ in range(3)] == [1, 2, 3]
    assert SequenceFile(path, block=10).next() == 11     # 4..10 were reserved by the dead one


@pytest.mark.parametrize("fat_rename", [False, True])
def test_power_cut_at_every_step_never_reuses_a_number(tmp_path, monkeypatch, fat_rename):
    at = 0
    while True:
        at += 1
        path = str(tmp_path / f"seq{at}")
        handed_out = [SequenceFile(path).next() for _ in range(2)]
        faults = Faults(at, lose_unsynced=True, fat_rename=fat_rename)
        with monkeypatch.context() as m:
            install(m, faults)
            try:
                s = SequenceFile(path)
                for _ in range(3):
                    handed_out.append(s.next())
                finished = True
            except PowerCut:
                finished = False
        after = SequenceFile(path).next()
        assert after > max(handed_out), (at, handed_out, after)
        if finished:
            assert handed_out == [1, 2, 3, 4, 5] and after == 6
            break
    assert at > 6


def test_damaged_counter_is_a_clear_error_unless_a_floor_is_given(tmp_path):
    path = tmp_path / "seq"
    SequenceFile(str(path)).next()
    path.write_bytes(b"17 0badc0de\n")
    with pytest.raises(SequenceError, match=r"damaged.*floor="):
        SequenceFile(str(path))
    s = SequenceFile(str(path), floor=40)
    assert s.next() == 41
    assert SequenceFile(str(path)).next() == 42     # the repaired file is good again


def test_a_leftover_new_file_is_read_and_the_larger_value_wins(tmp_path):
    path = tmp_path / "seq"
    s = SequenceFile(str(path))
    s.next()
    s.next()                                        # the file now says 3
    (tmp_path / "seq.new").write_bytes(_encode(10))  # a crash after writing .new, before rename
    assert SequenceFile(str(path)).next() == 10
    (tmp_path / "seq.new").write_bytes(_encode(5))   # an older leftover does not pull it back
    assert SequenceFile(str(path)).next() == 11
    (tmp_path / "seq.new").write_bytes(b"12 ")       # a torn leftover is ignored
    assert SequenceFile(str(path)).next() == 12


@pytest.mark.micropython
def test_sequence_file_on_micropython():
    out = run_micropython("""
import os
os.mkdir('/data')
from gridcore.seqfile import SequenceFile
s = SequenceFile('/data/seq')
print(s.next(), s.next())
print(SequenceFile('/data/seq').next(), SequenceFile('/data/seq', block=5).next())
print(SequenceFile('/data/seq').next())
print(open('/data/seq').read().strip())
""")
    lines = out.splitlines()
    assert lines[:3] == ["1 2", "3 4", "9"]
    value, crc = lines[3].split()
    assert value == "10" and len(crc) == 8
