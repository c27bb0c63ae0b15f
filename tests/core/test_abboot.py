"""The sensor node's A/B boot selector: trial, boot counter, mark good, rollback; a power
cut at every file-system step (also losing unsynced bytes, also FAT's remove-then-rename)
leaves a readable state naming the old image or the new one; the same story under
MicroPython."""

import json

import pytest
from gridlink.firmware.core import abboot
from gridlink.firmware.core.abboot import BootError, begin_trial, choose, load, mark_good

from tests.support.mpy_wasm import run_micropython
from tests.support.power_cuts import Faults, PowerCut, install

SCENARIO = """
print(choose(R), load(R)["trial"])
print(begin_trial(R, "1.4", boots=2))
for _ in range(3):
    print(choose(R))
print(load(R)["failed"], load(R)["good"])
print(begin_trial(R, "1.5", boots=2), choose(R), mark_good(R), choose(R), load(R)["good"])
"""


def story(root):
    lines = []
    env = {"choose": choose, "load": load, "begin_trial": begin_trial,
           "mark_good": mark_good, "R": str(root),
           "print": lambda *a: lines.append(" ".join(str(x) for x in a))}
    exec(SCENARIO, env)
    return lines


def test_trial_rollback_and_a_good_version(tmp_path):
    assert story(tmp_path) == [
        "a None", "b", "b", "b", "a",
        "[{'version': '1.4', 'reason': 'not healthy within its boots'}] a",
        "b b True b b"]


def test_no_second_trial_and_mark_good_without_one(tmp_path):
    begin_trial(str(tmp_path), "1.4")
    with pytest.raises(BootError, match="still on trial"):
        begin_trial(str(tmp_path), "1.5")
    assert mark_good(str(tmp_path)) is True
    assert mark_good(str(tmp_path)) is False


def test_a_corrupt_state_falls_back_to_the_complete_copy_or_the_first_slot(tmp_path):
    root = str(tmp_path)
    (tmp_path / "ab.json").write_bytes(b"{torn")
    assert load(root)["slot"] == "a"
    (tmp_path / "ab.json.new").write_text(json.dumps({"slot": "b", "good": "b"}))
    assert load(root) == {"slot": "b", "good": "b", "trial": None, "failed": []}


@pytest.mark.parametrize("lose_unsynced, fat_rename", [(False, False), (True, False),
                                                       (True, True)])
def test_a_power_cut_at_every_step_leaves_the_old_or_the_new_image(tmp_path, monkeypatch,
                                                                  lose_unsynced, fat_rename):
    at = 0
    while True:
        at += 1
        root = tmp_path / f"cut{at}"
        root.mkdir()
        abboot.mark_good(str(root))                      # nothing yet: the first image, a
        with monkeypatch.context() as m:
            install(m, Faults(at, lose_unsynced, fat_rename))
            try:
                begin_trial(str(root), "1.4", boots=2)
                choose(str(root))
                mark_good(str(root))
                finished = True
            except PowerCut:
                finished = False
        state = load(str(root))
        assert state["slot"] in ("a", "b"), at
        if state["slot"] == "b":
            assert state["trial"] or state["good"] == "b", at
        else:
            assert state["trial"] is None and state["good"] == "a", at
        # from here the node boots on and reaches a consistent end
        slot = choose(str(root))
        if load(str(root))["trial"]:
            mark_good(str(root))
        end = load(str(root))
        assert end["trial"] is None and end["good"] == end["slot"] == slot, at
        if finished:
            assert end["slot"] == "b"
            break
    assert at > 6


@pytest.mark.micropython
def test_the_same_story_under_micropython(tmp_path):
    script = ("from gridcore.abboot import choose, load, begin_trial, mark_good\n"
              "import os\nos.mkdir('/ab')\nR = '/ab'\n" + SCENARIO)
    assert run_micropython(script).strip().splitlines() == story(tmp_path)
