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


def _undescribed(parser, path):
    """``command option`` for each argument under ``parser`` that its --help leaves bare
    (or hides, though it is required)."""
    import argparse

    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _undescribed(sub, [*path, name])
        elif not isinstance(action, argparse._HelpAction) and (
                not action.help or (action.help == argparse.SUPPRESS and action.required)):
            out.append(" ".join([*path, (action.option_strings or [action.dest])[0]]))
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_says_what_it_is_in_the_help(command):
    from gridlink.cli import build_parser

    parser = build_parser(command)._subparsers._group_actions[0].choices[command]
    assert _undescribed(parser, [command]) == []
