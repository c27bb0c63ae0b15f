"""The centre's ``clip`` tasks the device has taken but not yet answered, kept on disk so a
restart loses none.

A task is written down (``take``) before its MQTT message is acknowledged, so after a
crash it is either here or sent again by the broker.  Its answer goes in two steps: the
result report is made (``answering`` keeps its id), then the clip is shelved and the task
is ``done``.  At start-up every task still here is finished by the device runtime: with
the clip if it had been written, else answered ``no_clip`` with the reason (the ring's
seconds were in memory).  Answered task ids are remembered (the last ``REMEMBER``) so a
task delivered again is not answered twice.  The file is replaced atomically and synced,
as the outbox is.
"""

import json
import logging
import threading

from ..core import fsio

log = logging.getLogger("gridlink.device.cliptasks")

REMEMBER = 256          # answered task ids kept to recognise a repeat


class ClipTasks:
    """Pending ``clip`` tasks in ``path`` (JSON): ``{"pending": [{"task", "asked",
    "pre_s", "report"?}], "answered": [task id, …]}``."""

    def __init__(self, path):
        self.path = str(path)
        self.dir = self.path.rpartition("/")[0]
        self._lock = threading.Lock()
        self._pending, self._answered = [], []
        raw = fsio.read_file(self.path)
        if raw is None:
            return
        try:
            data = json.loads(raw)
            pending = [dict(e) for e in data["pending"]]
            answered = [str(t) for t in data["answered"]]
            if not all(isinstance(e["task"]["task"], str) for e in pending):
                raise ValueError("an entry without its task id")
            self._pending, self._answered = pending, answered
        except (ValueError, KeyError, TypeError) as exc:
            # written atomically, so only a damaged medium gets here: said, and set aside
            bad = self.path + ".bad"
            fsio.replace(self.path, bad, self.dir)
            log.error("clip tasks file %s is damaged (%s): moved to %s; its tasks are "
                      "not answered", self.path, exc, bad)

    def _save(self):
        """Write the file; when it cannot be written (a full disk) the tasks are still
        answered from memory, and the log says a restart would lose them."""
        data = json.dumps({"pending": self._pending, "answered": self._answered[-REMEMBER:]},
                          ensure_ascii=False).encode()
        try:
            fsio.write_file(self.path, data, self.dir)
        except OSError as exc:
            log.error("clip tasks NOT kept on disk in %s (%s): a restart now would lose "
                      "%d of them", self.path, exc, len(self._pending))

    def take(self, task, asked, pre_s):
        """Write the task down; False when it is already pending or answered (a repeat)."""
        tid = task["task"]
        with self._lock:
            if tid in self._answered or any(e["task"]["task"] == tid for e in self._pending):
                return False
            self._pending.append({"task": task, "asked": asked, "pre_s": pre_s})
            self._save()
            return True

    def answering(self, task_id, report_id):
        """The task's result report ``report_id`` is made; its clip is still to be shelved."""
        with self._lock:
            for e in self._pending:
                if e["task"]["task"] == task_id:
                    e["report"] = report_id
                    self._save()
                    return

    def done(self, task_id):
        """The task is answered and its clip (if any) shelved: no longer pending."""
        with self._lock:
            self._pending = [e for e in self._pending if e["task"]["task"] != task_id]
            if task_id not in self._answered:
                self._answered.append(task_id)
            self._answered = self._answered[-REMEMBER:]
            self._save()

    def pending(self):
        """The tasks not yet done, oldest first (copies)."""
        with self._lock:
            return [dict(e) for e in self._pending]
