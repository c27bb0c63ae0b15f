# The node's health, as its status reports it (protocol §3.7 health): free heap, wakes and
# resets over its life, why it last started (a wake from deep sleep keeps the cause of the
# last real reset), and since when it runs (uptime).  Kept in health.json on flash,
# new-then-rename; a lost or torn file starts the counts again from this start.
import json

from gridcore import fsio


class Health:
    def __init__(self, path, board, now):
        # now: Unix seconds, or None while the clock was never set
        self.path = path
        self.board = board
        self.wakes, self.resets, self.cause, self.since = 0, 0, None, None
        try:
            d = json.loads(fsio.read_file(path) or b"null")
            self.wakes, self.resets = int(d["wakes"]), int(d["resets"])
            self.cause, self.since = d["cause"], d["since"]
        except (TypeError, ValueError, KeyError):
            pass
        self.wakes += 1
        cause = board.reset_cause()
        if cause != "deep_sleep" or self.cause is None:
            self.cause = cause
            if cause != "deep_sleep":
                self.resets += 1
            self.since = now
        elif self.since is None:
            self.since = now   # the clock was set after the last reset: count from here
        self.save()

    def save(self):
        data = json.dumps({"wakes": self.wakes, "resets": self.resets, "cause": self.cause,
                           "since": self.since}).encode()
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            fsio.write_file(self.path, data, self.path.rpartition("/")[0])
        except OSError:
            pass   # a full flash: reported from memory in this wake's status all the same

    def uptime(self, now):
        # seconds since the last reset (deep sleep included); 0 without a clock
        if now is None or self.since is None or now < self.since:
            return 0
        return now - self.since

    def status(self):
        return {"mem_free": self.board.mem_free(), "wakes": self.wakes,
                "resets": self.resets, "reset_cause": self.cause}
