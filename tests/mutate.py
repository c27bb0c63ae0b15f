"""Mutation testing for the code that judges input and keeps data.

    .venv/bin/python -m tests.mutate gateway/validate.py [--sample 40] [--seed 1]
                                     [--tests tests/gateway/test_validate.py …] [--min 0.9]

Each mutant changes one place of the module — a comparison flipped (``<`` ↔ ``>=``,
``==`` ↔ ``!=``, ``in`` ↔ ``not in``, ``is`` ↔ ``is not``), a boolean operator swapped
(``and`` ↔ ``or``), a ``not`` dropped, a number shifted by one, ``True`` ↔ ``False`` —
is written over the module, and the module's tests run (``pytest -x``).  A mutant the
tests fail on is killed; one they pass survives: a missing test, or dead code.  The
module is restored after every mutant, and on Ctrl-C.  A line that ends with
``# pragma: no mutate`` (mutmut's marker) is left alone: a cache's size or the length of a
message's excerpt changes nothing a test could see — say why beside it.

Why our own and not mutmut: mutmut 3 copies the tree into ``mutants/`` and imports it from
there, which the ``package-dir`` mapping of ``gridlink.*`` (docs/packaging.md) defeats —
the tests keep importing the unmutated, installed package.  An editable install imports
from the working tree, so mutating the file in place is what the tests see.
"""

import argparse
import ast
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module → the tests that speak for it (besides its mirror, tests/<area>/test_<name>.py)
TESTS = {
    "gateway/validate.py": ["tests/gateway/test_fastreport.py",
                            "tests/gateway/test_probing_reused_ids.py",
                            "tests/gateway/test_probing_districts.py",
                            "tests/gateway/test_probing_capture_times.py",
                            "tests/gateway/test_probing_task_results.py",
                            "tests/gateway/test_probing_photos.py"],
    "gateway/photos.py": ["tests/gateway/test_probing_photos.py", "tests/gateway/test_ingest.py"],
    "firmware/core/outbox.py": ["tests/core/test_outbox_model.py",
                                "tests/core/test_outbox_records.py",
                                "tests/core/test_outbox_losses.py"],
    "firmware/core/seqfile.py": ["tests/core/test_report_seq.py"],
}

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
        ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
        ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
          ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}


class Mutant:
    """One change: ``apply(tree)`` makes it on a fresh tree; ``line`` and ``what`` say it."""

    def __init__(self, index, line, what, apply):
        self.index, self.line, self.what, self.apply = index, line, what, apply

    def __repr__(self):
        return f"line {self.line}: {self.what}"


def _docstring_nodes(tree):
    """Constant nodes that are docstrings: shifting them is no mutant."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
    return skip


def mutants_of(source):
    """Every mutant of ``source``, in source order (each re-parses, so they stay apart),
    but on lines marked ``# pragma: no mutate``."""
    tree = ast.parse(source)
    docs = _docstring_nodes(tree)
    skip = {n for n, line in enumerate(source.splitlines(), 1) if "pragma: no mutate" in line}
    found = []

    def at(node_index, change):
        def apply(fresh):
            change(list(ast.walk(fresh))[node_index])
            return fresh
        return apply

    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                for table, label in ((FLIP, "flipped"), (BOUNDARY, "boundary")):
                    new = table.get(type(op))
                    if new is None:
                        continue

                    def change(n, k=k, new=new):
                        n.ops[k] = new()
                    found.append((node.lineno, f"{SYMBOL[type(op)]} → {SYMBOL[new]} ({label})",
                                  at(i, change)))
        elif isinstance(node, ast.BoolOp):
            name, other = ("and", ast.Or) if isinstance(node.op, ast.And) else ("or", ast.And)

            def change(n, other=other):
                n.op = other()
            found.append((node.lineno, f"{name} → {'or' if name == 'and' else 'and'}",
                          at(i, change)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            def change(n):
                n.operand = ast.UnaryOp(op=ast.Not(), operand=n.operand)  # not not x
            found.append((node.lineno, "not dropped", at(i, change)))
        elif isinstance(node, ast.Constant) and id(node) not in docs:
            value = node.value
            if isinstance(value, bool):
                def change(n):
                    n.value = not n.value
                found.append((node.lineno, f"{value} → {not value}", at(i, change)))
            elif isinstance(value, int | float):
                for delta in (1, -1):
                    def change(n, delta=delta):
                        n.value = n.value + delta
                    found.append((node.lineno, f"{value!r} → {value + delta!r}",
                                  at(i, change)))
    found = [m for m in found if m[0] not in skip]
    found.sort(key=lambda m: m[0])
    return [Mutant(n, line, what, apply) for n, (line, what, apply) in enumerate(found)]


def mutated_source(source, mutant):
    tree = mutant.apply(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def default_tests(module):
    """The module's mirror test file(s) and the ones listed in TESTS, those that exist."""
    rel = Path(module)
    area = rel.parts[-2] if rel.parts[0] == "firmware" else rel.parts[0]
    mirror = ROOT / "tests" / area / f"test_{rel.stem}.py"
    paths = [mirror, *(ROOT / t for t in TESTS.get(module, ()))]
    return sorted({str(p.relative_to(ROOT)) for p in paths if p.exists()})


def clear_bytecode(path):
    """Drop the module's cached bytecode: a mutant of the same size written in the same
    second as the last one would otherwise run as the last one."""
    for pyc in path.parent.joinpath("__pycache__").glob(f"{path.stem}.*.pyc"):
        pyc.unlink(missing_ok=True)


def run_tests(tests, timeout):
    """True when the tests pass (the mutant survives)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "--timeout", str(int(timeout)), *tests]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout * 2,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return False  # hung on the mutant: the tests noticed it
    return done.returncode == 0


def check_installed():
    """The tests must import this working tree, or mutating it proves nothing."""
    import gridlink.firmware

    where = Path(gridlink.firmware.__file__).resolve().parent
    if where != ROOT / "firmware":
        raise SystemExit(f"mutate: gridlink is imported from {where}, not from this tree "
                         f"({ROOT}); run with this tree's .venv (bash .ci/setup)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="path from the repository root, e.g. gateway/validate.py")
    ap.add_argument("--tests", nargs="*", help="test files (default: the module's mirror tests)")
    ap.add_argument("--sample", type=int, default=0,
                    help="run this many mutants drawn at random (default: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a test run may take")
    ap.add_argument("--min", type=float, default=0.9,
                    help="fail (exit 1) below this share of mutants killed")
    ap.add_argument("--list", action="store_true", help="list the mutants and run nothing")
    args = ap.parse_args(argv)

    path = ROOT / args.module
    if not path.is_file():
        ap.error(f"{args.module}: no such file under {ROOT}")
    source = path.read_text(encoding="utf-8")
    mutants = mutants_of(source)
    if args.sample and args.sample < len(mutants):
        mutants = sorted(random.Random(args.seed).sample(mutants, args.sample),
                         key=lambda m: m.index)
    if args.list:
        for m in mutants:
            print(m)
        return 0
    check_installed()
    tests = args.tests or default_tests(args.module)
    if not tests:
        ap.error(f"no tests found for {args.module}: name them with --tests")
    if not run_tests(tests, args.timeout):
        raise SystemExit("mutate: the tests fail on the unmutated code; fix that first")

    print(f"{args.module}: {len(mutants)} mutants, tests: {' '.join(tests)}", flush=True)
    survivors = []
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    start = time.monotonic()
    try:
        for n, m in enumerate(mutants, 1):
            path.write_text(mutated_source(source, m), encoding="utf-8")
            clear_bytecode(path)
            survived = run_tests(tests, args.timeout)
            if survived:
                survivors.append(m)
            print(f"  [{n}/{len(mutants)}] {'SURVIVED' if survived else 'killed  '} {m}",
                  flush=True)
    finally:
        path.write_text(source, encoding="utf-8")
        signal.signal(signal.SIGTERM, previous)
        clear_bytecode(path)
    killed = len(mutants) - len(survivors)
    share = killed / len(mutants) if mutants else 1.0
    print(f"{args.module}: {killed}/{len(mutants)} killed ({share:.0%}) in "
          f"{time.monotonic() - start:.0f} s")
    for m in survivors:
        print(f"  survivor: {m}")
    return 0 if share >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
