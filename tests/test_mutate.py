"""The mutation tool (tests/mutate.py) makes the mutants it says, one change each."""

import ast

from tests import mutate

SOURCE = '''"""doc"""
CACHE = 4096  # pragma: no mutate
LIMIT = 10


def f(x, y):
    """doc"""
    return x < LIMIT and not y or x is None
'''


def test_each_mutant_changes_one_place_and_parses():
    mutants = mutate.mutants_of(SOURCE)
    whats = sorted(m.what for m in mutants)
    assert whats == sorted(["10 → 11", "10 → 9", "< → >= (flipped)", "< → <= (boundary)",
                            "and → or", "or → and", "not dropped", "is → is not (flipped)"])
    texts = {mutate.mutated_source(SOURCE, m) for m in mutants}
    assert len(texts) == len(mutants)                      # no two alike
    original = ast.dump(ast.parse(SOURCE))
    assert all(ast.dump(ast.parse(t)) != original for t in texts)


def test_a_marked_line_and_docstrings_are_left_alone():
    assert all(m.line != 2 for m in mutate.mutants_of(SOURCE))
    assert not any("doc" in m.what for m in mutate.mutants_of(SOURCE))


def test_dropping_not_keeps_the_truth_of_the_operand():
    (m,) = [m for m in mutate.mutants_of("def f(y):\n    return not y\n")]
    env = {}
    exec(mutate.mutated_source("def f(y):\n    return not y\n", m), env)
    assert env["f"](3) is True and env["f"](0) is False
