"""A small filesystem of its own for a test (a tmpfs; mounting needs root)."""

import contextlib
import subprocess

import pytest


@contextlib.contextmanager
def tmpfs(folder, size):
    """``folder`` (made here) with a tmpfs of ``size`` (e.g. ``"3m"``) mounted on it for the
    block; the test is skipped, with the reason, where it cannot be mounted."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a {size} tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def resize(folder, size):
    """Give the tmpfs mounted on ``folder`` a new ``size`` (space returning to a disk)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)
