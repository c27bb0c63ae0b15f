"""The one poll-until helper of the tests."""

import time


def wait_until(predicate, timeout=20.0, what="condition", interval=0.02):
    """``predicate()``'s first true value; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
