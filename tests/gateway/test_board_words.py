"""The board's words: one zh-CN vocabulary for an operator (gateway/board/)."""

from pathlib import Path

import pytest

BOARD = Path(__file__).parents[2] / "gateway" / "board"
DOMAIN_NOTES = Path(__file__).parents[3] / "shared" / "docs" / "domain-standards.md"

IT_TERMS = ("认领", "释放", "续期")


@pytest.mark.parametrize("name", ["board.js", "index.html"])
def test_the_board_speaks_one_vocabulary(name):
    """签收 / 退回 / 延长 for an operator's hold on a report, never the IT words; the
    workflow's words are those of the domain notes."""
    text = (BOARD / name).read_text(encoding="utf-8")
    assert [w for w in IT_TERMS if w in text] == []
    assert all(w in text for w in ("签收", "退回", "立案", "不予立案", "核实"))
    if DOMAIN_NOTES.exists():
        notes = DOMAIN_NOTES.read_text(encoding="utf-8")
        assert all(w in notes for w in ("待受理", "立案", "核实", "核查", "属实", "退回", "受理"))

