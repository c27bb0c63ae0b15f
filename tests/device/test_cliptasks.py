"""The clip tasks' file: a task taken is kept across a reopen until done, a repeat is
recognised, a damaged file is set aside and said."""

import json

from gridlink.firmware.device import cliptasks
from gridlink.firmware.device.cliptasks import ClipTasks


def task(n):
    return {"v": 1, "task": f"T-20261206-{n:04d}", "type": "clip", "text": ""}


def test_a_task_is_kept_until_done_and_a_repeat_is_refused(tmp_path):
    path = tmp_path / "clip_tasks.json"
    tasks = ClipTasks(path)
    assert tasks.take(task(1), 1000.0, 30) is True
    assert tasks.take(task(1), 1001.0, 30) is False                 # delivered again
    reopened = ClipTasks(path)                                        # a restart
    (entry,) = reopened.pending()
    assert entry == {"task": task(1), "asked": 1000.0, "pre_s": 30}
    reopened.answering(task(1)["task"], "pv-0001:7")
    assert ClipTasks(path).pending()[0]["report"] == "pv-0001:7"
    reopened.done(task(1)["task"])
    again = ClipTasks(path)
    assert again.pending() == []
    assert again.take(task(1), 1002.0, 30) is False                 # answered: remembered
    assert again.take(task(2), 1002.0, 30) is True


def test_only_the_last_answered_ids_are_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(cliptasks, "REMEMBER", 3)
    tasks = ClipTasks(tmp_path / "c.json")
    for n in range(5):
        tasks.take(task(n), 0.0, 1)
        tasks.done(task(n)["task"])
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["answered"] == [task(n)["task"] for n in (2, 3, 4)]
    assert tasks.take(task(0), 0.0, 1) is True and tasks.take(task(4), 0.0, 1) is False


def test_a_damaged_file_is_set_aside_and_said(tmp_path, caplog):
    path = tmp_path / "clip_tasks.json"
    for damage in (b'{"pending": [', b'{"pending": [{"asked": 1}], "answered": []}'):
        path.write_bytes(damage)
        tasks = ClipTasks(path)
        assert tasks.pending() == []
        assert (tmp_path / "clip_tasks.json.bad").read_bytes() == damage
        assert "damaged" in caplog.text and not path.exists()
        assert tasks.take(task(1), 0.0, 1) is True and path.exists()


def test_a_file_that_cannot_be_written_leaves_the_tasks_in_memory_and_says_so(
        tmp_path, caplog):
    folder = tmp_path / "gone"
    folder.mkdir()
    tasks = ClipTasks(folder / "clip_tasks.json")
    folder.rmdir()                                     # nowhere to write any more
    assert tasks.take(task(1), 0.0, 30) is True
    assert "NOT kept on disk" in caplog.text and "lose 1 of them" in caplog.text
    assert [e["task"]["task"] for e in tasks.pending()] == [task(1)["task"]]
    tasks.done(task(1)["task"])
    assert tasks.pending() == [] and tasks.take(task(1), 0.0, 30) is False
