"""The shared data (gridlink.firmware.shared_data) as the tests use it: a test whose data
is missing fails, saying where it looked — it never skips."""

from pathlib import Path

import pytest
from gridlink.firmware.shared_data import ENV, shared_data

NMEA = shared_data("nmea")


def require(path):
    """``path``, or the test fails naming it and how to provide it."""
    path = Path(path)
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (put the project's shared/ folder beside "
                    f"the checkout, or set {ENV})", pytrace=False)
    return path


def shared_file(*parts):
    """A file under the shared ``data/`` folder; the test fails if it is missing."""
    return require(shared_data(*parts))


def nmea_logs():
    """The shared real receiver logs, sorted; [] when the folder is missing (the tests that
    read them call :func:`require` on it)."""
    return sorted(NMEA.glob("*.log")) if NMEA.is_dir() else []
