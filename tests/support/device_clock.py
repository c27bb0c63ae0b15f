"""A device clock of its own (the device tests, the simulated HIL rig): the device
process runs with the libfaketime that the ``libfaketime`` package bundles (LD_PRELOAD),
reading its offset from a file the test rewrites mid-run — the wall clock
(``time.time``) jumps, the monotonic clock does not, as when NTP or GNSS steps a Pi's
clock or its RTC comes up in the past.  The test process keeps the true time."""

import os
from pathlib import Path


def available():
    """None when a device clock can be moved here, else why not."""
    try:
        import libfaketime
    except ImportError:
        return "the libfaketime package is not installed (pip install libfaketime)"
    if not Path(libfaketime._get_shared_lib("libfaketime.so.1")).exists():
        return "the libfaketime package has no libfaketime.so.1 for this machine"
    return None


class DeviceClock:
    """``env`` for the device's process; ``offset = seconds`` moves its clock (0: true)."""

    def __init__(self, folder):
        import libfaketime

        self.file = Path(folder) / "faketime.rc"
        self.offset = 0
        self._write()
        self.env = {
            "LD_PRELOAD": libfaketime._get_shared_lib("libfaketime.so.1"),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",              # read the file at every call
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",   # timers, backoff, fix ages keep going
        }

    def set(self, seconds):
        self.offset = int(seconds)
        self._write()

    def _write(self):
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{self.offset:+d}\n")
        os.replace(tmp, self.file)             # never a half-written offset
