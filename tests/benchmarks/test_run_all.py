"""The README's benchmark table is the one ``benchmarks/run_all.py`` prints."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_latest_results_as_run_all_prints_them(run_all):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert run_all.readme_with_table(text, run_all.markdown_table()) == text, (
        "README's benchmark table differs from benchmarks/results/*.json: "
        "run `.venv/bin/python benchmarks/run_all.py --readme`")


def test_every_headline_has_a_result(run_all):
    missing = [f"{name}: {label}" for name, label, value, _ in run_all.headlines()
               if value is None]
    assert not missing, f"headlines with no value in benchmarks/results: {missing}"


@pytest.mark.parametrize(("value", "goal", "met"), [
    (2.47, "≥ 2×", True), (1.9, "≥ 2×", False), (100, "≤ 100", True), (101, "≤ 100", False),
    (20000, "≥ 20000", True), (7518, "≥ 40 before noon", True), (5, "", None),
    (None, "≥ 2×", None), (32768, "≤ 32768", True), (1_000, "≥ 1,500", False)])
def test_goals_are_read_from_their_text(run_all, value, goal, met):
    assert run_all.meets(value, goal) is met


def test_a_missed_goal_is_named_under_the_table(run_all, monkeypatch):
    monkeypatch.setattr(run_all, "headlines",
                        lambda: iter([("nmea", "sentences/s vs pynmea2", 1.5, "≥ 2×")]))
    table = run_all.markdown_table()
    assert "Goals not met in the latest run: nmea: sentences/s vs pynmea2 (1.50, goal ≥ 2×)." \
        in table


def test_a_missed_goal_whose_label_names_its_benchmark_names_it_once(run_all, monkeypatch):
    monkeypatch.setattr(run_all, "headlines", lambda: iter([
        ("evaluation", "evaluation: a month, slowest table, ms (SQLite)", 1500.0, "≤ 1000")]))
    table = run_all.markdown_table()
    assert ("Goals not met in the latest run: evaluation: a month, slowest table, ms "
            "(SQLite) (1,500, goal ≤ 1000).") in table


def test_the_hil_budgets_are_printed_with_what_was_not_met(run_all, tmp_path, capsys,
                                                          monkeypatch):
    path = tmp_path / "hil_tests" / "results" / "latest.json"
    run_all.hil_budgets(path)
    assert "no run yet" in capsys.readouterr().out
    path.parent.mkdir(parents=True)
    path.write_text('{"budgets": {"lost": {"limit": "== 0", "measured": 2, "ok": false},'
                    ' "wall_s": {"limit": "<= 180", "measured": 97.5, "ok": true}}}')
    monkeypatch.setattr(run_all, "HERE", tmp_path / "benchmarks")  # shown from the top
    run_all.hil_budgets(path)
    out = capsys.readouterr().out
    lost, wall = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert lost.split()[:2] == ["lost", "2"] and lost.endswith("NOT MET")
    assert wall.split()[:2] == ["wall_s", "97.50"] and wall.endswith("met")
