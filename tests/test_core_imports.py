"""The core runs on MicroPython: it may import only what MicroPython has."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "firmware" / "core"

# Modules a MicroPython port ships (``u``-less names, 1.20+).  Nothing else, at run time.
ALLOWED = {"micropython", "struct", "binascii", "hashlib", "json", "math", "os", "errno",
           "gc", "sys", "io", "collections", "time"}
BANNED_HINT = "typing, dataclasses, enum, abc, re, datetime, pathlib, logging"


def imports_of(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_the_micropython_allow_list(path):
    bad = [(line, name) for line, name in imports_of(path) if name not in ALLOWED]
    assert not bad, f"{path.name} imports {bad}; the core may not use {BANNED_HINT} or others"


def test_core_uses_no_exception_chaining_or_dataclasses():
    for path in CORE.glob("*.py"):
        src = path.read_text(encoding="utf-8")
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise):
                assert node.cause is None, f"{path.name}:{node.lineno} chains an exception"
            if isinstance(node, ast.Assert):
                raise AssertionError(f"{path.name}:{node.lineno} uses assert (stripped on -O)")
