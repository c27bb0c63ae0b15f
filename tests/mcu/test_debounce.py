"""The tilt contact's debounce (firmware/mcu/gridnode/debounce.py) under real MicroPython,
against a reference model, on generated bounce patterns."""


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.mpy_wasm import run_micropython
from tests.support.paths import ROOT

SRC = ROOT / "firmware" / "mcu" / "gridnode" / "debounce.py"


def model(levels, stable, max_reads):
    """Settled level: the first run of ``stable`` equal reads within max_reads, else None.
    A pin reads its levels in order and then keeps the last one."""
    run, last = 0, None
    for i in range(max_reads):
        v = levels[min(i, len(levels) - 1)]
        run = run + 1 if v == last else 1
        last = v
        if run >= stable:
            return v
    return None


HARNESS = """
import json
from debounce import read_stable

class Pin:
    def __init__(self, levels):
        self.levels = levels
        self.i = 0
        self.reads = 0
    def value(self):
        v = self.levels[min(self.i, len(self.levels) - 1)]
        self.i += 1
        self.reads += 1
        return v

slept = []
out = []
for levels, stable, max_reads in CASES:
    p = Pin(levels)
    out.append([read_stable(p, slept.append, stable, 10, max_reads), p.reads])
print(json.dumps(out))
"""


def run(cases):
    import json

    script = f"CASES = {cases!r}\n" + HARNESS
    out = run_micropython(script, files={"/lib/debounce.py": SRC.read_text()}, core=False)
    return json.loads(out.strip().splitlines()[-1])


pytestmark = pytest.mark.micropython


@settings(max_examples=3, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=40),
                          st.integers(2, 8), st.integers(2, 30)), min_size=20, max_size=40))
def test_debounce_matches_the_model(cases):
    got = run([list(c) for c in cases])
    for (levels, stable, max_reads), (level, reads) in zip(cases, got, strict=True):
        assert level == model(levels, stable, max_reads), (levels, stable, max_reads)
        assert reads <= max_reads


def test_a_bounce_then_a_settled_contact_gives_the_settled_level():
    (level, reads), (never, _) = run([[[1, 0, 1, 0, 0, 0, 0, 0], 5, 100],
                                      [[0, 1] * 60, 5, 100]])
    assert (level, reads) == (0, 8)
    assert never is None
