"""``gridlink users`` and ``gridlink audit`` as a technician or administrator runs them."""

import io
import sqlite3

import pytest
from gridlink.cli import main


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/intake.sqlite"


def run(monkeypatch, capsys, *argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_first_administrator_then_people_and_a_token(monkeypatch, capsys, db, tmp_path):
    code, out, _ = run(monkeypatch, capsys, "users", "add", "admin", "--role", "管理员",
                       "--password-stdin", "--db", db, stdin="a good password 1\n")
    assert code == 0 and "added admin: admin" in out
    run(monkeypatch, capsys, "users", "add", "zhang", "--role", "acceptor,shift_lead",
        "--display", "张三", "--password-stdin", "--db", db, stdin="another password 2\n")
    code, out, _ = run(monkeypatch, capsys, "users", "list", "--db", db)
    assert "张三" in out and "受理员、值班长" in out and "active" in out
    # the columns line up whatever the names' scripts: a Chinese character is two columns
    lines = [line for line in out.splitlines() if line.startswith(("admin", "zhang"))]
    assert len(lines) == 2
    columns = [sum(2 if "\u4e00" <= c <= "\u9fff" or c == "、" else 1
                   for c in line[:line.index("active")]) for line in lines]
    assert columns[0] == columns[1], lines
    code, out, err = run(monkeypatch, capsys, "users", "token", "zhang", "--label", "wall",
                         "--role", "acceptor", "--db", db)
    assert code == 0 and out.startswith("glt_") and "shown once" in err
    code, out, _ = run(monkeypatch, capsys, "audit", "verify", "--db", db)
    assert code == 0 and "3 entries" in out
    code, out, _ = run(monkeypatch, capsys, "audit", "export", "--format", "csv", "--db", db)
    assert [line.split(",")[4] for line in out.splitlines()[1:]] == [
        "user.add", "user.add", "token.issue"]
    assert out.count("os:") == 3


def test_a_weak_password_or_unknown_role_is_a_clear_error(monkeypatch, capsys, db):
    code, _, err = run(monkeypatch, capsys, "users", "add", "li", "--role", "acceptor",
                       "--password-stdin", "--db", db, stdin="short\n")
    assert code == 2 and "at least 10 characters" in err
    code, _, err = run(monkeypatch, capsys, "users", "add", "li", "--role", "boss",
                       "--password-stdin", "--db", db, stdin="a good password 1\n")
    assert code == 2 and "unknown role 'boss'" in err


def test_audit_verify_fails_on_an_edited_entry(monkeypatch, capsys, db, tmp_path):
    for name in ("li", "wang"):
        run(monkeypatch, capsys, "users", "add", name, "--role", "viewer", "--password-stdin",
            "--db", db, stdin="a good password 1\n")
    with sqlite3.connect(tmp_path / "intake.sqlite") as conn:
        conn.execute("UPDATE audit SET actor = 'nobody' WHERE n = 1")
    code, _, err = run(monkeypatch, capsys, "audit", "verify", "--db", db)
    assert code == 1 and "entry 1: its content was changed" in err and "BROKEN" in err
