"""The import rules of every package, read from the source (the AST of every module,
imports inside functions included):

* the core (gridlink.firmware.core) runs on MicroPython: it imports only what MicroPython
  has (the allow-list below) and itself, relatively;
* the gateway never imports the device runtime, the simulators or any tool;
* the firmware never imports the gateway or any tool;
* only the tools (the ``gridlink`` command, flash, host, demo, mosquitto) import across;
  the data packages (device_profiles) import no other area.
"""

import ast
import tomllib

import pytest

from tests.support.paths import ROOT

CORE = ROOT / "firmware" / "core"
# Modules a MicroPython port ships (``u``-less names, 1.20+).  Nothing else, at run time.
ALLOWED = {"micropython", "struct", "binascii", "hashlib", "json", "math", "os", "errno",
           "gc", "sys", "io", "collections", "time"}
BANNED_HINT = "typing, dataclasses, enum, abc, re, datetime, pathlib, logging"

TOOLS = ("gridlink.cli", "gridlink.flash", "gridlink.fleet", "gridlink.host", "gridlink.demo",
         "gridlink.mosquitto")
# gridlink.cli imports an area only by name, when its command runs: a ``python -m`` shim
# may hand over to it (firmware/device/__main__.py does) without importing across.
CROSSING = tuple(t for t in TOOLS if t != "gridlink.cli")
# package → the modules it must never import (a name and everything under it)
FORBIDDEN = {
    "gridlink.gateway": ("gridlink.firmware.device", "gridlink.firmware.sim", *CROSSING),
    "gridlink.firmware": ("gridlink.gateway", *CROSSING),
    "gridlink.device_profiles": ("gridlink.gateway", "gridlink.firmware", *CROSSING),
}


def package_modules():
    """(module name, path) of every .py the wheel maps (pyproject's package-dir)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {}
    for top, folder in conf["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            # tools/flash is mapped twice (in gridlink and as gridlink.flash): one name
            found[".".join((top, *parts))] = path
    return sorted(found.items())


def imports_of(module, source, is_package=False):
    """(line, imported module, relative?) of every import in ``source``, relative ones
    resolved against ``module``; ``from a import b`` yields ``a`` and ``a.b``."""
    tree = ast.parse(source)
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, False
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module
            yield node.lineno, target, bool(node.level)
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}", bool(node.level)


def under(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def violations(module, source, is_package=False):
    """Every import of ``module`` (its ``source``) that breaks a rule, as readable lines."""
    bad = []
    if under(module, "gridlink.firmware.core"):
        for line, name, relative in imports_of(module, source, is_package):
            if relative and not under(name, "gridlink.firmware.core"):
                bad.append(f"{module}:{line} imports {name}: outside the core")
            elif not relative and name.split(".")[0] not in ALLOWED:
                bad.append(f"{module}:{line} imports {name}: not on MicroPython's list "
                           f"(no {BANNED_HINT} or others; itself only relatively)")
        return sorted(set(bad))
    for package, forbidden in FORBIDDEN.items():
        if not under(module, package):
            continue
        for line, name, _ in imports_of(module, source, is_package):
            for f in forbidden:
                if under(name, f):
                    bad.append(f"{module}:{line} imports {name}: {package} never imports {f}")
    return sorted(set(bad))


def check(name, path):
    return violations(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")


MODULES = package_modules()


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_the_micropython_allow_list(path):
    name = "gridlink.firmware.core" + ("" if path.stem == "__init__" else f".{path.stem}")
    assert not check(name, path)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_keeps_to_its_imports(package):
    modules = [(n, p) for n, p in MODULES if under(n, package)]
    assert modules, f"no modules found for {package}"
    bad = [v for n, p in modules for v in check(n, p)]
    assert not bad, "\n".join(bad)


def test_every_module_is_under_a_rule_or_a_tool():
    free = [n for n, _ in MODULES
            if not any(under(n, p) for p in (*FORBIDDEN, *TOOLS)) and n != "gridlink"]
    assert not free, f"modules under no import rule: {free}"


def test_the_core_uses_no_exception_chaining_or_asserts():
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise):
                assert node.cause is None, f"{path.name}:{node.lineno} chains an exception"
            if isinstance(node, ast.Assert):
                raise AssertionError(f"{path.name}:{node.lineno} uses assert (stripped on -O)")


# -- the checker itself fails on forbidden imports -----------------------------------------

@pytest.mark.parametrize("module, source, culprit", [
    ("gridlink.firmware.core.track", "import re\n", "re"),
    ("gridlink.firmware.core.track", "from typing import Any\n", "typing"),
    ("gridlink.firmware.core.track", "from .. import errors\n", "gridlink.firmware.errors"),
    ("gridlink.firmware.core.track", "from gridlink.firmware.core import fsio\n",
     "gridlink.firmware.core"),
    ("gridlink.gateway.ingest", "def f():\n    from gridlink.firmware.device import gnss\n",
     "gridlink.firmware.device"),
    ("gridlink.gateway.ingest", "from gridlink.firmware import sim\n", "gridlink.firmware.sim"),
    ("gridlink.gateway.store.sqlite", "from ...demo import district\n", "gridlink.demo"),
    ("gridlink.gateway.ingest", "import gridlink.flash.pki\n", "gridlink.flash.pki"),
    ("gridlink.firmware.device.runtime", "from gridlink.gateway.errors import GatewayError\n",
     "gridlink.gateway.errors"),
    ("gridlink.firmware.device.runtime", "from ...host import gridcompile\n", "gridlink.host"),
    ("gridlink.firmware.sim.replay", "class A:\n    def f(self):\n"
     "        import gridlink.mosquitto\n", "gridlink.mosquitto"),
])
def test_the_checker_finds_a_forbidden_import(module, source, culprit):
    bad = violations(module, source)
    assert bad and any(f"imports {culprit}" in v for v in bad), bad


@pytest.mark.parametrize("module, source", [
    ("gridlink.firmware.core.track", "import json\nfrom . import fsio\nfrom .errors import E\n"),
    ("gridlink.gateway.ingest", "from gridlink.firmware.core import messages\n"
     "from ..firmware import codebooks\nfrom .store import open_store\n"),
    ("gridlink.firmware.device.runtime", "from ..core import outbox\nimport paho.mqtt\n"),
    ("gridlink.demo.district", "from gridlink.gateway.service import Gateway\n"
     "from gridlink.firmware.device.control import request\n"),
    ("gridlink.host.grid_cli", "from gridlink.firmware.core.gridmap import GridMap\n"),
])
def test_the_checker_passes_allowed_imports(module, source):
    assert violations(module, source) == []
