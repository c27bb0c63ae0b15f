"""The report counter never hands out an id twice: not after its file is damaged or lost
(a re-flash), and not below an id the gateway acknowledged; boundaries of its file."""

import pytest
from gridlink.firmware.core import fsio
from gridlink.firmware.core.seqfile import (
    CLOCK_VALID_AFTER,
    SEQ_MAX,
    SequenceError,
    SequenceFile,
    _decode,
    _encode,
    time_floor,
)

from tests.support.mpy_wasm import run_micropython

NOW = 1796500000.7          # a set clock (2026)


def test_a_new_counter_starts_at_the_clock_so_a_reflashed_device_never_repeats(tmp_path):
    path = str(tmp_path / "seq")
    first = SequenceFile(path, now=NOW)
    used = [first.next() for _ in range(50)]
    assert used[0] == int(NOW) + 1 and used == list(range(used[0], used[0] + 50))
    for name in ("seq", "seq.new", "seq.acked"):     # a re-flash wipes every file
        (tmp_path / name).unlink(missing_ok=True)
    again = SequenceFile(path, now=NOW + 60)          # a minute later, fresh flash
    assert again.restarted and again.next() > max(used)


def test_a_damaged_counter_restarts_above_the_clock_floor_and_last_ack(tmp_path):
    path = tmp_path / "seq"
    s = SequenceFile(str(path))
    for _ in range(5):
        s.next()
    s.acknowledged(5)
    path.write_bytes(b"\x00\x00garbage")              # damaged counter
    # the clock is set: above it, without the caller's floor
    assert SequenceFile(str(path), now=NOW).next() == int(NOW) + 1


def test_a_damaged_counter_with_no_clock_restarts_above_the_last_acknowledged_id(tmp_path):
    path = tmp_path / "seq"
    s = SequenceFile(str(path))
    for _ in range(30):
        s.next()
    s.acknowledged(30)                     # the outbox has forgotten 1..30 (compacted)
    path.write_bytes(b"7 00000000\n")      # damaged: a wrong crc
    # the outbox still holds report 12 only (floor 12); the clock was never set (1970)
    restarted = SequenceFile(str(path), floor=12, now=3.0)
    assert restarted.restarted and restarted.next() == 31


def test_a_lost_counter_without_clock_or_floor_still_stays_above_the_last_ack(tmp_path):
    path = tmp_path / "seq"
    s = SequenceFile(str(path))
    for _ in range(3):
        s.next()
    s.acknowledged(3)
    s.acknowledged(2)                      # an older ack never lowers it
    assert SequenceFile(str(path)).last_acknowledged == 3
    path.unlink()
    assert SequenceFile(str(path)).next() == 4


def test_a_new_counter_has_nothing_acknowledged_and_an_ack_left_half_written_counts(
        tmp_path):
    path = tmp_path / "seq"
    s = SequenceFile(str(path))
    assert (s.last_acknowledged, s.next()) == (0, 1)
    s.acknowledged(5)
    (tmp_path / "seq.acked").rename(tmp_path / "seq.acked.new")  # a crash before the rename
    again = SequenceFile(str(path))
    assert again.last_acknowledged == 5
    path.unlink()
    assert SequenceFile(str(path)).next() == 6


def test_a_good_counter_is_not_moved_by_the_clock(tmp_path):
    path = str(tmp_path / "seq")
    s = SequenceFile(path)
    s.next()
    again = SequenceFile(path, now=NOW)
    assert not again.restarted and again.next() == 2


def test_the_damaged_counter_error_still_comes_without_a_floor_or_a_set_clock(tmp_path):
    path = tmp_path / "seq"
    path.write_bytes(b"12 nonsense\n")
    with pytest.raises(SequenceError, match="damaged"):
        SequenceFile(str(path), now=CLOCK_VALID_AFTER - 1)
    assert SequenceFile(str(path), now=CLOCK_VALID_AFTER).next() == CLOCK_VALID_AFTER + 1


def test_time_floor_boundaries():
    assert time_floor(None) == 0
    assert time_floor(CLOCK_VALID_AFTER - 0.5) == 0
    assert time_floor(CLOCK_VALID_AFTER) == CLOCK_VALID_AFTER
    assert time_floor(CLOCK_VALID_AFTER + 0.99) == CLOCK_VALID_AFTER
    assert time_floor(10.0 ** 13) == SEQ_MAX


def test_skip_past_moves_only_forward_and_is_persisted_before_the_next_number(tmp_path):
    path = str(tmp_path / "seq")
    s = SequenceFile(path)
    assert s.next() == 1
    s.skip_past(1)                          # the number already handed out: no change
    assert s.peek() == 2
    s.skip_past(40)
    assert s.peek() == 41
    s.skip_past(20)                         # never backwards
    assert s.peek() == 41
    assert s.next() == 41
    assert SequenceFile(path).next() == 42


def test_counter_file_format_and_its_damage_checks():
    assert _encode(7) == b"7 " + b"%08x\n" % __import__("binascii").crc32(b"7")
    assert _decode(_encode(1)) == 1 and _decode(_encode(SEQ_MAX)) == SEQ_MAX
    for bad in (None, b"", b"0 " + _encode(0)[2:], _encode(12)[:-3], b"12",
                b"\xff\xfe 00000000", _encode(12).replace(b"12", b"13"), b"-1 00000000",
                _encode(5) + b" extra"):
        assert _decode(bad) is None, bad
    assert _decode(_encode(0)) is None      # 0 is never a used sequence


def test_block_and_the_last_numbers_of_the_twelve_digits(tmp_path):
    with pytest.raises(SequenceError, match="block"):
        SequenceFile(str(tmp_path / "a"), block=0)
    s = SequenceFile(str(tmp_path / "b"), block=1)
    assert [s.next(), s.next()] == [1, 2]
    assert SequenceFile(str(tmp_path / "b")).next() == 3   # block 1 reserves nothing more
    near = SequenceFile(str(tmp_path / "c"), floor=SEQ_MAX - 2, block=10)
    assert [near.next(), near.next()] == [SEQ_MAX - 1, SEQ_MAX]
    with pytest.raises(SequenceError, match="exhausted"):
        near.next()
    assert SequenceFile(str(tmp_path / "c")).peek() == SEQ_MAX + 1


def test_floor_zero_and_negative_floors_start_at_one(tmp_path):
    assert SequenceFile(str(tmp_path / "a"), floor=0).next() == 1
    assert SequenceFile(str(tmp_path / "b"), floor=-5).next() == 1
    assert SequenceFile(str(tmp_path / "c"), floor=1).next() == 2


@pytest.mark.micropython
def test_the_floor_from_clock_and_last_ack_on_micropython():
    out = run_micropython("""
import os
os.mkdir('/data')
from gridcore.seqfile import SequenceFile
s = SequenceFile('/data/seq')
print(s.next(), s.next())
s.acknowledged(2)
f = open('/data/seq', 'wb'); f.write(b'junk'); f.close()
print(SequenceFile('/data/seq', floor=1).next())
os.remove('/data/seq'); os.remove('/data/seq.acked')
print(SequenceFile('/data/seq', now=1796500000).next())
""")
    assert out.split() == ["1", "2", "3", "1796500001"]


def test_the_literal_limits_twelve_digits_and_2024():
    assert SEQ_MAX == 999_999_999_999 and CLOCK_VALID_AFTER == 1_704_067_200  # 2024-01-01Z
    assert time_floor(1_704_067_199.9) == 0 and time_floor(1_704_067_200) == 1_704_067_200


def test_a_block_is_used_up_before_the_next_write(tmp_path):
    path = str(tmp_path / "seq")
    s = SequenceFile(path, block=3)
    assert [s.next(), s.next(), s.next()] == [1, 2, 3]
    assert SequenceFile(path).next() == 4            # 1..3 was one reservation, no waste
    assert _decode((tmp_path / "seq").read_bytes()) == 5


def test_skip_past_the_very_next_number(tmp_path):
    s = SequenceFile(str(tmp_path / "seq"))
    assert s.peek() == 1
    s.skip_past(1)
    assert s.next() == 2


def test_a_floor_of_one_is_a_floor(tmp_path):
    path = tmp_path / "seq"
    path.write_bytes(b"damaged")
    assert SequenceFile(str(path), floor=1).next() == 2


def test_the_damage_message_shows_the_first_forty_bytes(tmp_path):
    path = tmp_path / "seq"
    path.write_bytes(b"A" * 40 + b"B" * 20)
    with pytest.raises(SequenceError) as err:
        SequenceFile(str(path))
    assert repr(b"A" * 40) in str(err.value) and "B" not in str(err.value).split("damaged")[1][:60]


def test_writes_are_made_durable_in_the_counters_folder(tmp_path, monkeypatch):
    synced, writes = [], []
    real_write = fsio.write_file
    monkeypatch.setattr(fsio, "sync_dir", synced.append)
    monkeypatch.setattr(fsio, "write_file", lambda *a: (writes.append(a[0]), real_write(*a)))
    s = SequenceFile(str(tmp_path / "seq"))
    s.next()
    s.acknowledged(1)
    s.acknowledged(1)                                  # not higher: not written again
    s.acknowledged(0)
    assert writes == [str(tmp_path / "seq"), str(tmp_path / "seq.acked")]
    assert synced == [str(tmp_path)] * 2
    assert SequenceFile(str(tmp_path / "other"), dir_path="d")._dir == "d"
    assert SequenceFile(str(tmp_path / "third"))._dir == str(tmp_path)
