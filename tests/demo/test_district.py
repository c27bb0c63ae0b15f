"""``gridlink demo`` end to end: real Mosquitto, the gateway, simulated vehicles and terminal.

The demo runs as a child process exactly as a user starts it; the test reads its output,
talks to the board it serves, then checks reports were committed to the store and that
every process it started is gone after it exits (bounded run and Ctrl-C alike).
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker


def start_demo(data, *extra):
    argv = [sys.executable, "-m", "gridlink.cli", "demo", "--data", str(data),
            "--vehicles", "2", "--press-every", "1.5", "--task-every", "6", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_board_url(proc, timeout=60):
    """(board URL, {printed label: value}) from the demo's first lines."""
    deadline = time.monotonic() + timeout
    lines, said = [], {}
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("sign in on the board as: "):
            said["user"], said["password"] = line.split()[6], line.split()[8]
        if line.startswith("read-only API token"):
            said["token"] = line.rsplit(" ", 1)[1].strip()
        if line.startswith("fleet technician's API token"):
            said["fleet_token"] = line.rsplit(" ", 1)[1].strip()
        if line.startswith("intake board: "):
            return line.split(": ", 1)[1].strip().rstrip("/"), said
    proc.kill()
    raise AssertionError("no board URL printed:\n" + "".join(lines) + proc.stderr.read())


def get_json(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=10) as resp:
        return json.loads(resp.read())


def sign_in(url, user, password):
    req = urllib.request.Request(url + "/api/session", method="POST",
                                 data=json.dumps({"user": user, "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def started_pids(data):
    events = [json.loads(line) for line in (data / "demo-events.jsonl").read_text().splitlines()]
    return {e["name"]: e["pid"] for e in events if e["event"] == "started"}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes only once reaped; the demo reaps its children
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def committed_reports(data):
    with sqlite3.connect(data / "intake.sqlite") as db:
        return db.execute("SELECT id, device, source FROM reports").fetchall()


def test_bounded_demo_commits_reports_and_leaves_nothing_running(tmp_path):
    data = tmp_path / "demo"
    proc = start_demo(data, "--duration", "30")
    url, said = read_board_url(proc)
    page = urllib.request.urlopen(url + "/board/", timeout=10).read().decode()
    assert "受理台" in page
    # the printed demo operator signs in (受理员 + 值班长); anonymous reads are refused
    session = sign_in(url, said["user"], said["password"])
    assert said["user"] == "demo" and {"acceptor", "shift_lead"} <= set(session["roles"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(url + "/api/summary")
    assert refused.value.code == 401
    # the demo's CA folder is a district's: the broker and the gateway read its CRL, so
    # 'gridlink fleet revoke DEVICE --ca <data>/pki' cuts a device off (tests/demo/test_pki.py)
    assert f"crlfile {data / 'pki' / 'crl.pem'}" in (data / "broker" / "mosquitto.conf").read_text()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        known = {d["device"]: d["identity"] for d in get_json(url + "/api/devices", said["token"])}
        if "pv-0001" in known:
            break
        time.sleep(0.5)
    assert known["pv-0001"]["revoked"] is None and known["pv-0001"]["certificate_expires"]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = out.strip().splitlines()[-1]
    assert final.startswith("stopped cleanly: "), out
    assert "devices online 0/3" in final  # each device went offline on the way out
    assert "cases: 立案 1 结案 2" in final
    assert "supervision loop: " in out and "unfinished" not in out, out

    reports = committed_reports(data)
    devices = {d for _, d, _ in reports}
    assert len(reports) >= 4 and {"pv-0001", "pv-0002"} <= devices
    pids = started_pids(data)
    assert set(pids) == {"mosquitto", "pv-0001", "pv-0002", "ft-0001"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    # mutual TLS by default: every client was known by its certificate, none was refused
    log = (data / "broker" / "mosquitto.log").read_text()
    for identity in ("gridlink-gateway-0", "pv-0001", "pv-0002", "ft-0001"):
        assert f"u'{identity}'" in log
    assert "denied" not in log.lower()
    with sqlite3.connect(data / "intake.sqlite") as db:
        states = dict(db.execute("SELECT device, state FROM devices").fetchall())
        done = db.execute(
            "SELECT t.device, t.result, r.source, r.task = t.id, i.state FROM tasks t"
            " JOIN reports r ON r.id = t.result_report JOIN intake i ON i.report_id = r.id"
            " WHERE t.state = 'done' AND t.type = 'verify'").fetchall()
    assert states == dict.fromkeys(("pv-0001", "pv-0002", "ft-0001"), "offline")
    # scripted 核实 tasks went to the vehicles, which answered; each result is attached
    assert done, "no verification task came back"
    assert all(dev.startswith("pv-") and result == "confirmed" and source == "task" and same
               and state == "attached" for dev, result, source, same, state in done)
    assert_supervision_loop(data)
    # each vehicle's 监督员 carried it on duty over a work grid: the rates have their figures
    from gridlink.gateway.rates import Rates
    from gridlink.gateway.store import open_store

    store = open_store(f"sqlite:///{data}/intake.sqlite")
    try:
        rows = {r["supervisor"]: r for r in Rates(store).table(period="all")["rows"]}
        grids = store.fetchall("SELECT g.supervisor, COUNT(*) AS n FROM eval_work_grids g"
                               " JOIN eval_work_cells c ON c.work_grid = g.id"
                               " GROUP BY g.supervisor ORDER BY g.supervisor")
    finally:
        store.close()
    assert [g["supervisor"] for g in grids] == ["jdy-01", "jdy-02"]
    for sid, device in (("jdy-01", "pv-0001"), ("jdy-02", "pv-0002")):
        assert rows[sid]["reported"] == sum(1 for _, d, src in reports
                                            if d == device and src != "task")
        assert rows[sid]["duty_hours"] > 0 and rows[sid]["reports_per_duty_hour"] > 0
    # pv-0001 records (--clips 1): its reports brought clips that start before the press,
    # and voice memos, through the shipped ACL; pv-0002 records nothing
    with sqlite3.connect(data / "intake.sqlite") as db:
        media = db.execute("SELECT m.kind, m.trigger_offset_s, m.sha256, r.report_id"
                           " FROM media m JOIN report_media r ON r.sha256 = m.sha256").fetchall()
    clips = [(at, sha) for kind, at, sha, _ in media if kind == "clip"]
    assert clips and max(at for at, _ in clips) > 2.0, media
    assert "memo" in {kind for kind, *_ in media}
    assert {rid.split(":")[0] for *_, rid in media} == {"pv-0001"}
    assert all((data / "media" / sha[:2] / f"{sha}.mp4").exists() for _, sha in clips)


def case_histories(data):
    """{case_no: (state, report's device, report's source, [(actor, action, to), …])}."""
    with sqlite3.connect(data / "intake.sqlite") as db:
        cases = db.execute("SELECT c.case_no, c.state, r.device, r.source FROM cases c"
                           " JOIN reports r ON r.id = c.report_id").fetchall()
        history = db.execute("SELECT case_no, actor, action, to_state, detail"
                             " FROM case_history ORDER BY case_no, n").fetchall()
    return {no: (state, device, source,
                 [(a, act, to, json.loads(d) if d else {}) for n, a, act, to, d in history
                  if n == no])
            for no, state, device, source in cases}


def assert_supervision_loop(data):
    """What the demo's simulated 值班长, department and vehicles did, read from the store:
    one vehicle report 立案 → … → 结案, one with a 返工 between, a 12345 complaint 立案
    after its 核实 came back confirmed."""
    cases = case_histories(data)
    steps = {no: [act for _, act, _, _ in h] for no, (_, _, _, h) in cases.items()}
    once = ["register", "dispatch", "start", "feedback", "check", "resolved"]
    twice = [*once[:-1], "unresolved", "start", "feedback", "check", "resolved"]
    closed = [no for no, s in steps.items() if s == once]
    reworked = [no for no, s in steps.items() if s == twice]
    assert len(closed) == 1 and len(reworked) == 1, steps
    for no in closed + reworked:
        state, device, source, history = cases[no]
        assert state == "closed" and device.startswith("pv-") and source == "button"
        by = {act: actor for actor, act, _, _ in history}
        # the department's moves in its own account's name; the 核查 results in the vehicle's
        assert by["start"] == by["feedback"] == "huanwei-system" and by["dispatch"] == "demo"
        assert [a for a, act, _, _ in history if act.endswith("resolved")] == \
            [f"device:{device}"] * (1 if no in closed else 2)
        feedback = [d for _, act, _, d in history if act == "feedback"]
        # each 处置反馈 names the photo the department uploaded, kept with the others
        assert all(len(d["photos"]) == 1 and re.fullmatch("[0-9a-f]{64}", d["photos"][0])
                   and list((data / "photos").glob(f"*/{d['photos'][0]}.*"))
                   for d in feedback)
    # each 派遣, 返工 and 结案 left through the bridge for the department's system, once
    with sqlite3.connect(data / "intake.sqlite") as db:
        sent = db.execute("SELECT case_no, destination, event, state, attempts, remote_id"
                          " FROM bridge_outbox ORDER BY case_no, seq").fetchall()
    moves = {no: ["dispatch", "close"] for no in closed}
    moves.update({no: ["dispatch", "rework", "close"] for no in reworked})
    assert [(no, dest, event, state, n) for no, dest, event, state, n, _ in sent] == [
        (no, "huanwei", event, "sent", 1) for no in sorted(moves) for event in moves[no]]
    assert all(remote.startswith(f"HW-{no}") for no, *_, remote in sent)
    hotline = [no for no, (_, device, source, _) in cases.items() if source == "12345"]
    assert len(hotline) == 1 and cases[hotline[0]][0] == "registered", cases
    with sqlite3.connect(data / "intake.sqlite") as db:
        verified = db.execute(
            "SELECT t.result, t.device, k.source FROM cases c JOIN tasks t"
            " ON t.report_id = c.report_id JOIN case_callers k ON k.report_id = c.report_id"
            " WHERE c.case_no = ? AND t.type = 'verify'", [hotline[0]]).fetchall()
    assert [(r, s) for r, _, s in verified] == [("confirmed", "12345")]
    assert verified[0][1].startswith("pv-")


def test_ctrl_c_stops_everything_cleanly(tmp_path):
    data = tmp_path / "demo"
    proc = start_demo(data, "--no-terminal", "--plain", "--no-loop")
    url, said = read_board_url(proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = get_json(url + "/api/summary", said["token"])
        if summary["reports"]["total"] >= 1:
            break
        time.sleep(0.5)
    assert summary["reports"]["total"] >= 1
    assert summary["devices"]["online"] == 2
    # the demo step of desired state: a button's class changed for the vehicles, with the
    # printed fleet token; both report the new version (docs/demo.md)
    fleet = [sys.executable, "-m", "gridlink.cli", "fleet", "config"]
    api = ["--api", url, "--token", said["fleet_token"]]
    done = subprocess.run([*fleet, "set", *api, "--profile", "patrol-vehicle",
                           "--button", "garbage=event:07001"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "signed for 2 device(s): pv-0001, pv-0002; 2 sent" in \
        done.stdout, done.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        diff = subprocess.run([*fleet, "diff", *api], capture_output=True, text=True,
                              timeout=60)
        if diff.returncode == 0:
            break
        time.sleep(1)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "pv-0002        desired 1     reported 1     ok" in diff.stdout
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("stopped cleanly: ")
    assert "[loop " not in out and "supervision loop" not in out  # --no-loop
    with sqlite3.connect(data / "intake.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM cases").fetchone() == (0,)
    pids = started_pids(data)
    assert set(pids) == {"mosquitto", "pv-0001", "pv-0002"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert len(committed_reports(data)) >= 1


@pytest.mark.nats
def test_the_demo_runs_over_a_three_node_nats_cluster_and_ends_cleanly(tmp_path):
    if not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        pytest.skip("nats-server not installed (apt install nats-server)")
    data = tmp_path / "demo"
    proc = start_demo(data, "--cluster", "--no-terminal", "--duration", "20")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert any(line.startswith("cluster: 3 nats-server nodes behind that front door; the "
                               "gateway on nats+tls://") for line in lines), out
    assert lines[-1].startswith("stopped cleanly: ") and "devices online 0/2" in lines[-1]
    # every vehicle's reports came through the cluster (the loop's hotline one is the centre's)
    assert {d for _, d, _ in committed_reports(data)} - {"centre"} == {"pv-0001", "pv-0002"}
    pids = started_pids(data)
    assert set(pids) == {"nats-n1", "nats-n2", "nats-n3", "pv-0001", "pv-0002"}
    assert not [name for name, pid in pids.items() if alive(pid)]
    # mutual TLS by default: the certificates the demo issued (CN=…, O=gridlink) are the
    # identities of the cluster's authorization; nobody was refused
    for log in sorted((data / "cluster").glob("n*/nats.log")):
        text = log.read_text()
        assert "authentication error" not in text and "Violation" not in text, log
    with sqlite3.connect(data / "intake.sqlite") as db:
        states = dict(db.execute("SELECT device, state FROM devices").fetchall())
    assert states == dict.fromkeys(("pv-0001", "pv-0002"), "offline")


@pytest.mark.parametrize("args, message", [
    (["--vehicles", "9"], "--vehicles: 1 to 6"),
    (["--clips", "4"], "--clips: 0 to the number of vehicles (3)"),
    (["--press-every", "0"], "--press-every"),
    (["--map", "/nonexistent/grid.glgm"], "grid map /nonexistent/grid.glgm"),
    (["--rollout", "1.x"], "--rollout: version '1.x' is not dotted numbers"),
    (["--rollout", "0.9"], "--rollout: 0.9 must be newer than the fleet's 1.0"),
])
def test_bad_options_are_one_clear_line_and_nothing_is_left_running(tmp_path, args, message):
    data = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "gridlink.cli", "demo", "--data", str(data),
                           "--duration", "5", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gridlink demo: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    if (data / "demo-events.jsonl").exists():  # it got as far as starting the broker
        assert not [n for n, pid in started_pids(data).items() if alive(pid)]
