"""Where the tests find the checkout's own files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/ → ../..
