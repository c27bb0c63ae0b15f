"""The ``gridlink`` entry point: every area's subcommand registers and speaks clearly."""

import subprocess
import sys

import pytest
from gridlink.cli import COMMANDS, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "gridlink.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_top_level_help_lists_every_command():
    proc = run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_its_own_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: gridlink " + command)


def test_a_package_error_is_one_line_and_exit_2(capsys):
    assert main(["codes", "show", "4101990010010"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gridlink codes: error:")
