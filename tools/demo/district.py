"""The district of ``gridlink demo``: a whole district on one machine — broker, gateway,
simulated fleet.

Starts Mosquitto on a free local port, the gateway on SQLite with the intake board, several
simulated patrol vehicles replaying a real NMEA capture moved onto 上街区 (410106) and a
fixed street terminal (each a ``gridlink device run --sim`` child process), then presses
their buttons on a schedule and sends a 核实 task now and then, which the vehicle answers.
The supervision loop (``loop.py``) takes reports on through the case states with a
simulated 值班长 and department acting over HTTP.  A live summary line shows reports
triggered / committed, the pending queue, devices online and cases by state.  Stopping
stops everything: devices first (their outboxes flush or persist), then the gateway, then
the broker; no child is left behind.

With ``--cluster`` the broker is a three-node NATS JetStream cluster instead
(gateway/jetstream/cluster.py): the devices reach its nodes' MQTT listeners through one
front door (a TCP relay that spreads connections over the nodes), the gateway consumes
the replicated stream from all three nodes.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gridlink.mosquitto import BrokerTLS, Mosquitto

from .department import DepartmentSystem
from .errors import DemoError
from .loop import DEPARTMENT_ACCOUNT, Api, SupervisionLoop
from .pki import DemoPKI

DISTRICT = "410106"
# Starting points of the simulated vehicles inside 上街区 (lat, lon): 济源路, 中心路, 新安路,
# 工业路 streets and 矿山 — spread so the grid map shows them apart.
ORIGINS = [(34.8063, 113.2914), (34.8032, 113.2862), (34.8158, 113.2795), (34.7985, 113.3018),
           (34.8201, 113.2920), (34.7940, 113.2890)]
PATROL_BUTTONS = ("garbage", "flyposting", "parking", "road")
# Real receiver captures, one per vehicle where available (bundled or the gpsd set);
# a vehicle whose capture is missing replays the profile's bundled one.
CAPTURES = ("nmea-rtk.log", "ublox-8.log", "ublox-zed-f9p-nmea.log", "quectel-eg25-g.log",
            "st-teseo-liv4f.log", "beidou-bd.log")
# two shifts cover the day; each vehicle's 监督员 is on duty in both over its start's community
SHIFTS = (("day", "08:00", "20:00"), ("night", "20:00", "08:00"))
RESTART_INTO_UPDATE = 75  # a device that installed an update exits so (EX_TEMPFAIL)
LOOP_STEP_S = 0.5  # the supervision loop's actors take a step at most this often
LATE_EVERY = 3  # every third 核实 task gets a 15 s deadline and its answer 30 s later: late
GATEWAY_CLIENT_ID = "gridlink-gateway"  # worker 0 is gridlink-gateway-0
DEMO_OPERATOR = "demo"  # 受理员 + 值班长: signs in on the board with a password printed at start
DEMO_ROLES = ("acceptor", "shift_lead", "viewer", "technician")
GATEWAY_IDENTITY = f"{GATEWAY_CLIENT_ID}-0"  # its certificate's CN, granted by the shipped ACL
# A vehicle that records (``--clips``): small frames, so several fit on a laptop's cores;
# the clip (8 s before the press, 4 s after) and a 5 s memo follow each report.
DEMO_CLIPS = {"pre_s": 8, "post_s": 4, "width": 640, "height": 360, "fps": 10,
              "bit_rate": 300000, "upload_bytes_per_s": 125000}
DEMO_MEMO = {"seconds": 5}


def clip_profile(folder):
    """The shipped patrol-vehicle profile with a ``clips`` and a ``memo`` section, written
    into ``folder`` (the device takes a profile name or a file); its path."""
    from gridlink.firmware.device.profile import resolve

    raw = json.loads(Path(resolve("patrol-vehicle")).read_text(encoding="utf-8"))
    raw.pop("$schema", None)
    raw.update(profile="patrol-vehicle", clips=DEMO_CLIPS, memo=DEMO_MEMO)
    raw["sim"]["clips"] = True          # the shipped profile records none in simulation
    path = Path(folder) / "patrol-vehicle-clips.json"
    path.write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------- pieces


def _die_with_parent():
    """In the child before exec: get SIGTERM if the demo dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgid(0, 0)  # own process group: the terminal's Ctrl-C reaches only the demo


def spawn(argv, log_path):
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the child in stop_child
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    except OSError as exc:
        log.close()
        raise DemoError(f"cannot start {argv[0]}: {exc}") from exc
    proc.log_file = log
    return proc


def stop_child(proc, timeout=10.0):
    """SIGTERM, wait, SIGKILL if it will not go; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.log_file.close()


def capture_path(name):
    """The path of a real NMEA capture by name, or None when this install lacks it."""
    from gridlink.firmware.errors import DeviceError
    from gridlink.firmware.sim.replay import find_capture

    try:
        return find_capture(name)
    except DeviceError:
        return None


def default_map():
    from gridlink.firmware.maps import default_map as shipped

    return shipped(DISTRICT)


class Summary:
    def __init__(self, elapsed, triggered, counts, devices, tasks, cases=None):
        self.elapsed, self.triggered, self.counts = elapsed, triggered, counts
        self.devices, self.tasks, self.cases = devices, tasks, cases or {}

    def line(self):
        from gridlink.gateway.cases.lifecycle import LABELS, STATES

        d, c = self.devices, self.counts
        tasks = " ".join(f"{k} {v}" for k, v in sorted(self.tasks.items())) or "none"
        cases = " ".join(f"{LABELS.get(k, k)} {v}" for k, v in sorted(
            self.cases.items(), key=lambda kv: STATES.index(kv[0])
            if kv[0] in STATES else len(STATES))) or "none"
        return (f"t={self.elapsed:5.0f}s  reports triggered {self.triggered}, committed "
                f"{c['total'] - c['attached']} (+{c['attached']} task results)  pending "
                f"{c['pending']}  accepted {c['accepted']}  devices online "
                f"{d['online']}/{d['total']}  tasks: {tasks}  cases: {cases}")

    def as_dict(self):
        return {"elapsed": round(self.elapsed, 1), "triggered": self.triggered,
                "reports": self.counts, "devices": self.devices, "tasks": self.tasks,
                "cases": self.cases}


class District:
    """The running demo: ``with District(args) as d: d.run(stop)``."""

    def __init__(self, args):
        self.args = args
        self._tmp = None
        if args.data:
            self.data = Path(args.data).resolve()
            self.data.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.mkdtemp(prefix="gridlink-demo-")
            self.data = Path(self._tmp)
        self.broker = None
        self.cluster = self.front = None  # --cluster: the NATS nodes and the devices' door
        self.pki = None
        self.gateway = None
        self.department_system = None  # the loop's simulated department's system
        self.devices = {}  # device id → (Popen, data dir, buttons)
        self.triggered = 0
        self.answered = set()
        self.late = {}  # task id → when it was made, for the tasks answered late on purpose
        self.tasks_made = 0
        self.started = time.monotonic()
        self.map_path = args.map or default_map()
        self.ota = None         # --rollout: the run's update repository and rollout
        self.argvs = {}         # device id → its command line (restarted after an update)
        self.restarts = 0
        self._rollout_line = None
        self.events = open(self.data / "demo-events.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    # ------------------------------------------------------------ start and stop

    def __enter__(self):
        try:
            if getattr(self.args, "rollout", None):
                from .rollout import DemoRollout

                self.ota = DemoRollout(self.data, self.args.rollout, self.args.rollout_after)
            self._start_broker()
            self._start_gateway()
            self._start_devices()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _start_broker(self):
        self.pki = None if self.args.plain else DemoPKI(self.data / "pki")
        if self.args.cluster:
            self._start_cluster()
            return
        workdir = self.data / "broker"
        workdir.mkdir(exist_ok=True)
        tls = None
        if self.pki is not None:
            tls = BrokerTLS(self.pki.ca, self.pki.cert("broker"), self.pki.key("broker"),
                            crl=self.pki.crl)
        broker = Mosquitto(workdir, shipped=True, tls=tls, preexec_fn=_die_with_parent)
        self.broker = broker.start()  # on failure it has reaped its child already
        self.broker_pid = broker.proc.pid
        self._event("started", name="mosquitto", pid=self.broker_pid)

    def _start_cluster(self):
        """Three nats-server nodes with JetStream and MQTT; with TLS, each device may use
        only its own topics (the certificate is the identity, as with the Mosquitto ACL)."""
        from gridlink.gateway.jetstream.cluster import (
            ClusterError,
            FrontDoor,
            NatsCluster,
            NodeTLS,
        )

        tls = devices = None
        if self.pki is not None:
            cert, key = self.pki.issue("nats-node", hosts=("127.0.0.1", "localhost"),
                                       peer=True)  # serves, and dials the other nodes
            tls = NodeTLS(str(self.pki.ca), str(cert), str(key))
            devices = [device for device, *_ in self._plan()]
        self.cluster = NatsCluster(self.data / "cluster", tls=tls, devices=devices,
                                   preexec_fn=_die_with_parent)
        try:
            self.cluster.start()  # close() stops whatever started
        except ClusterError as exc:
            raise DemoError(str(exc)) from exc
        finally:
            for n in self.cluster.nodes:
                if n.proc is not None:
                    self._event("started", name=f"nats-{n.name}", pid=n.proc.pid)
        self.front = FrontDoor([n.mqtt_address for n in self.cluster.nodes])

    @property
    def broker_url(self):
        """Where the devices connect: the broker, or the cluster's front door."""
        if self.cluster is not None:
            scheme = "mqtts" if self.pki is not None else "mqtt"
            return f"{scheme}://{self.front.host}:{self.front.port}"
        return self.broker.url

    @property
    def gateway_broker_url(self):
        """Where the gateway connects: the broker, or every node of the cluster (its
        NATS listeners, and its MQTT listeners for retained messages)."""
        if self.cluster is not None:
            nodes = self.cluster.nats_url.partition("://")[2]
            mqtt = ",".join(f"{h}:{p}" for h, p in (n.mqtt_address for n in self.cluster.nodes))
            return f"{'nats+tls' if self.pki is not None else 'nats'}://{nodes}?mqtt={mqtt}"
        return self.broker.url

    def _start_gateway(self):
        from gridlink.gateway.service import Gateway, WebOptions
        from gridlink.gateway.tls import TLSFiles

        tls = None
        if self.pki is not None:  # on NATS the certificate names the user all workers share
            cert, key = self.pki.issue(GATEWAY_CLIENT_ID if self.cluster else GATEWAY_IDENTITY)
            tls = TLSFiles(str(self.pki.ca), str(cert), str(key))
        self.gateway = Gateway(broker=self.gateway_broker_url, db=f"sqlite:///{self.data}/intake.sqlite",
                               grid=str(self.map_path) if self.map_path else None,
                               http=self.args.http, photos=str(self.data / "photos"),
                               client_id=GATEWAY_CLIENT_ID, tls=tls,
                               config_key=str(self._config_key()),
                               crl=str(self.pki.crl) if self.pki and self.pki.crl else None,
                               web=WebOptions(update_repo=self.ota.path if self.ota else None))
        self.gateway.start()
        self.board_url = self.gateway.http_url
        self.app = self.gateway.app
        self._demo_operator()

    def _config_key(self):
        """The demo centre's configuration key (desired state), made on first use; the
        devices get its public half (``--config-keys``)."""
        from gridlink.fleet.config import make_key

        key = self.data / "config.pem"
        if not key.exists():
            make_key(key)
        return key

    def _demo_operator(self):
        """The demo's operator ``demo`` (受理员 + 值班长 + 技术员) with a fresh random
        password, a read-only API token for scripts and a fleet technician's token for
        ``gridlink fleet config``; all printed at start, valid for this run."""
        from gridlink.gateway.auth.errors import AccountError

        accounts = self.app.state.accounts
        self.password = secrets.token_urlsafe(9)
        try:
            accounts.add(DEMO_OPERATOR, DEMO_ROLES, self.password, display="演示受理员")
        except AccountError:  # a kept --data dir: the operator is there already
            accounts.reset_password(DEMO_OPERATOR, self.password)
            accounts.set_roles(DEMO_OPERATOR, DEMO_ROLES)
        self.token, _ = accounts.issue_token(DEMO_OPERATOR, "demo scripts", roles=("viewer",),
                                             days=1)
        self.fleet_token, _ = accounts.issue_token(DEMO_OPERATOR, "demo fleet",
                                                   roles=("technician",), days=1)
        self.loop = None
        if not getattr(self.args, "no_loop", False):
            self.loop = self._supervision_loop(accounts)

    def _supervision_loop(self, accounts):
        """The loop's actors, each with its own token: the operator as 值班长 (立案, 派遣,
        核查, 核实) and the department's system as a 专业部门 account."""
        from gridlink.gateway.auth.errors import AccountError

        try:
            accounts.add(DEPARTMENT_ACCOUNT, ("department",), secrets.token_urlsafe(18),
                         display="环卫中心系统")
        except AccountError:  # a kept --data dir: the account is there already
            accounts.set_roles(DEPARTMENT_ACCOUNT, ("department",))
        lead, _ = accounts.issue_token(DEMO_OPERATOR, "demo loop", roles=("shift_lead",),
                                       days=1)
        dept, _ = accounts.issue_token(DEPARTMENT_ACCOUNT, "demo department system", days=1)
        self.department_system = DepartmentSystem().start()
        return SupervisionLoop(Api(self.board_url, lead), Api(self.board_url, dept),
                               say=self._say, event=self._event,
                               system=self.department_system)

    def _say(self, line):
        """A step's line, on its own line even under the live summary."""
        print(("\r\033[K" if sys.stdout.isatty() else "") + line, flush=True)

    def _roster(self):
        """A 监督员 for each vehicle, carrying it, on duty yesterday and today in both
        shifts, over the community (work grid) where the vehicle starts; what cannot be
        set (a kept --data dir has it already, two starts in one community) is logged."""
        from datetime import datetime, timedelta

        from gridlink.firmware.maps import open_map
        from gridlink.gateway.clock import CENTRE_TIME
        from gridlink.gateway.queue import Conflict, Invalid

        if not self.map_path:
            return
        grid_map = open_map(self.map_path, mapped=True)
        roster = self.app.state.roster
        for name, starts, ends in SHIFTS:
            roster.put_shift(name, starts, ends)
        today = datetime.now(CENTRE_TIME).date()
        days = (str(today - timedelta(days=1)), str(today))
        for n, device in enumerate(d for d in self.devices if d.startswith("pv-")):
            sid = f"jdy-{n + 1:02d}"
            roster.put_supervisor(sid, f"监督员{n + 1}")
            cell = grid_map.locate(ORIGINS[n][1], ORIGINS[n][0])
            steps = [lambda s=sid, d=device: roster.carry(s, d)]
            for name, _, _ in SHIFTS:
                if cell:
                    steps.append(lambda s=sid, sh=name, c=cell: roster.put_work_grid(
                        f"{s}-{sh}", supervisor=s, shift=sh, cells=[c[:12]]))
                steps.append(lambda s=sid, sh=name: roster.schedule(s, sh, *days))
            for step in steps:
                try:
                    step()
                except (Conflict, Invalid) as exc:
                    self._event("roster", supervisor=sid, error=str(exc))
            self._event("roster", supervisor=sid, device=device, community=cell and cell[:12])

    def _device_argv(self, profile, device, ddir, origin=None, capture=None):
        # with --rollout: through the A/B launcher, as the device's unit starts it
        start = (["-m", "gridlink.firmware.device.launch", str(ddir), "--"] if self.ota
                 else ["-m", "gridlink.cli"])
        argv = [sys.executable, *start, "device", "run", "--profile", profile,
                "--data-dir", str(ddir), "--broker", self.broker_url, "--sim",
                "--device-id", device, "--district", DISTRICT, "--cancel-grace", "1",
                "--status-interval", "5", "--config-keys", str(self.data / "config.pem.pub")]
        if origin is not None:
            argv += ["--sim-origin", f"{origin[0]},{origin[1]}", "--sim-speed",
                     str(self.args.speed)]
        if capture is not None:
            argv += ["--sim-capture", str(capture)]
        if profile == "fixed-terminal":
            argv += ["--kiosk-port", "0"]  # its kiosk page on any free port, never a clash
        if self.pki is not None:
            cert, key = self.pki.issue(device)
            argv += ["--tls-ca", str(self.pki.ca), "--tls-cert", str(cert), "--tls-key", str(key)]
        if self.map_path:
            argv += ["--map", str(self.map_path)]
        if self.ota is not None:
            argv += self.ota.device_args(self.board_url)
        return argv

    def _plan(self):
        """(device id, profile, origin, capture, buttons) of every device to start; the
        first ``--clips`` vehicles record clips and memos."""
        clips = getattr(self.args, "clips", 0)
        recording = str(clip_profile(self.data)) if clips else None
        plan = [(f"pv-{n + 1:04d}", recording if n < clips else "patrol-vehicle",
                 ORIGINS[n], capture_path(CAPTURES[n]), PATROL_BUTTONS)
                for n in range(self.args.vehicles)]
        if not self.args.no_terminal:
            plan.append(("ft-0001", "fixed-terminal", None, None, ("call", "pir")))
        return plan

    def _start_devices(self):
        for device, profile, origin, capture, buttons in self._plan():
            ddir = self.data / "devices" / device
            ddir.mkdir(parents=True, exist_ok=True)
            if self.ota is not None:
                self.ota.provision(ddir)
            argv = self._device_argv(profile, device, ddir, origin, capture)
            self.argvs[device] = argv
            proc = spawn(argv, ddir / "device.log")
            self.devices[device] = (proc, ddir, buttons)
            self._event("started", name=device, pid=proc.pid, capture=capture and capture.name)
        self._wait_devices()
        self._roster()

    def _wait_devices(self, timeout=60.0):
        """Until every device answers on its control socket (or one dies, or time is up)."""
        waiting = set(self.devices)
        deadline = time.monotonic() + timeout
        while waiting:
            self._check_children()
            for device in sorted(waiting):
                if self._control(self.devices[device][1], {"cmd": "status"}).get("ok"):
                    waiting.discard(device)
                    self._event("ready", name=device)
            if waiting and time.monotonic() > deadline:
                late = ", ".join(sorted(waiting))
                raise DemoError(f"devices not up after {timeout:.0f}s: {late}")
            time.sleep(0.2)

    def stop_devices(self):
        """Stop the fleet (each device sends its offline status) and let the gateway see it."""
        self._stop_fleet()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and self.summary().devices["online"]:
            time.sleep(0.1)

    def _stop_fleet(self):
        """SIGTERM every device at once (they go offline in parallel), then reap each."""
        for device, (proc, _, _) in self.devices.items():
            if proc.poll() is None:
                proc.terminate()
                self._event("stopping", name=device, pid=proc.pid)
        for device, (proc, _, _) in self.devices.items():
            if not proc.log_file.closed:
                stop_child(proc)
                self._event("stopped", name=device, pid=proc.pid, status=proc.returncode)

    def close(self):
        """Devices first, then the gateway, then the broker; every child reaped."""
        self._stop_fleet()
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.department_system is not None:
            self.department_system.stop()
            self.department_system = None
        if self.broker is not None:
            self.broker.stop()
            self._event("stopped", name="mosquitto", pid=self.broker_pid)
            self.broker = None
        if self.front is not None:
            self.front.close()
            self.front = None
        if self.cluster is not None:
            started = [(n.name, n.proc.pid) for n in self.cluster.nodes if n.proc is not None]
            self.cluster.stop()
            for name, pid in started:
                self._event("stopped", name=f"nats-{name}", pid=pid)
            self.cluster = None
        self.events.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _event(self, what, **fields):
        self.events.write(json.dumps({"t": round(time.monotonic() - self.started, 3),
                                      "event": what, **fields}) + "\n")
        self.events.flush()

    # ------------------------------------------------------------ running

    def run(self, stop, duration=None, live=True):
        end = None if duration is None else time.monotonic() + duration
        next_press = time.monotonic() + 1.0  # let the vehicles get a first fix
        next_task = time.monotonic() + (self.args.task_every or 0)
        turn = 0
        last_line = last_answer = last_step = 0.0
        if self.loop is not None:
            self.loop.setup()
        while not stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            self._check_children()
            if now >= next_press:
                self._press(turn)
                turn += 1
                next_press = now + self.args.press_every
            if self.args.task_every and now >= next_task:
                self._task()
                next_task = now + self.args.task_every
            if now - last_answer >= 1.0:
                last_answer = now
                self._answer_tasks()
            if self.loop is not None and not self.loop.done and now - last_step >= LOOP_STEP_S:
                last_step = now
                self.loop.tick()
            if self.ota is not None:
                self._rollout_step(now)
            if now - last_line >= 1.0:
                last_line = now
                if live:
                    end_char = "\r" if sys.stdout.isatty() else "\n"
                    print(self.summary().line(), end=end_char, flush=True)
            stop.wait(0.2)
        if live and sys.stdout.isatty():
            print()

    def _rollout_step(self, now):
        """Start the rollout when its time comes; say each change of its progress."""
        api = Api(self.board_url, self.fleet_token)
        try:
            if self.ota.rollout is None:
                # the rollout's group is the devices known when it starts: wait for all
                # (over NATS a status comes through the stream, a moment after connecting)
                if now - self.started < self.ota.after_s or not self._fleet_online():
                    return
                r = self.ota.start(api)
                self._say(f"rollout {r['id']} of pi {r['version']} to the district started: "
                          f"{self.board_url}/board/updates.html")
                self._event("rollout", id=r["id"], version=r["version"])
            line = self.ota.line(api)
        except DemoError as exc:   # the API refused: said once, the demo goes on
            line = f"rollout: {exc}"
        if line != self._rollout_line:
            self._rollout_line = line
            self._say(line)

    def _fleet_online(self):
        """Whether every device of the district has said it is online."""
        with self.gateway.store.connect() as conn:
            cur = conn.execute("SELECT COUNT(*) FROM devices WHERE state IN"
                               " ('online', 'buffering')")
            return cur.fetchone()[0] >= len(self.devices)

    def rollout_line(self):
        """The rollout's last progress line (None without --rollout)."""
        if self.ota is None or self.ota.rollout is None:
            return None
        try:
            return self.ota.line(Api(self.board_url, self.fleet_token))
        except DemoError as exc:
            return f"rollout: {exc}"

    def _check_children(self):
        if self.cluster is not None:
            for n in self.cluster.nodes:
                if not n.running():
                    raise DemoError(f"nats-server {n.name} exited; see {n.log}")
        elif not self.broker.alive():
            raise DemoError(f"mosquitto exited ({self.broker.proc.returncode}); see "
                            f"{self.broker.log_path}")
        for device, (proc, ddir, buttons) in list(self.devices.items()):
            if proc.poll() == RESTART_INTO_UPDATE and self.ota is not None:
                # installed an update: started again, as its unit does (Restart=on-failure)
                proc.log_file.close()
                again = spawn(self.argvs[device], ddir / "device.log")
                self.devices[device] = (again, ddir, buttons)
                self.restarts += 1
                self._event("restarted", name=device, pid=again.pid, why="update installed")
                continue
            if proc.poll() is not None:
                tail = (ddir / "device.log").read_text(errors="replace")[-800:]
                raise DemoError(f"device {device} exited ({proc.returncode}):\n{tail}")

    def _control(self, ddir, request):
        from gridlink.firmware.device.control import request as ask

        try:
            return ask(ddir, request, timeout=5.0)
        except Exception as exc:  # not up yet, or busy: the script tries again later
            return {"ok": False, "error": str(exc)}

    def _press(self, turn):
        devices = list(self.devices)
        device = devices[turn % len(devices)]
        _, ddir, buttons = self.devices[device]
        button = buttons[(turn // len(devices)) % len(buttons)]
        answer = self._control(ddir, {"cmd": "press", "input": button, "hold": False})
        if answer.get("ok"):
            self.triggered += 1
        self._event("press", device=device, input=button, ok=bool(answer.get("ok")),
                    error=answer.get("error"))

    def _task(self):
        """Ask for a 核实 of the newest pending report; the desk routes it to a vehicle."""
        desk = self.app.state.tasks
        page = self.app.state.queue.list(status="pending", limit=20, source="button")
        for report in page["items"]:
            if report["lat"] is not None and not desk.list(report_id=report["id"]):
                late = self.tasks_made % LATE_EVERY == LATE_EVERY - 1
                task = desk.create(type="verify", report_id=report["id"],
                                   operator=DEMO_OPERATOR, text="请核实 (demo)",
                                   deadline_s=15 if late else 600)
                self.tasks_made += 1
                if late:
                    self.late[task["id"]] = time.monotonic()
                self.app.state.audit.append(DEMO_OPERATOR, "task.create",
                                            target=f"task:{task['id']}", after=task)
                self._event("task", task=task["id"], device=task["device"],
                            state=task["state"], report=report["id"])
                return

    def _answer_tasks(self):
        """Vehicles answer their open tasks as an officer would: "yes" (属实 / 已处理), or
        what the supervision loop wants of its 核查 ("no": still there, 返工)."""
        for device, (_, ddir, _) in self.devices.items():
            if not device.startswith("pv-"):
                continue
            for task in self._control(ddir, {"cmd": "tasks"}).get("tasks") or []:
                task_id = task.get("task")
                if task_id in self.answered or time.monotonic() - self.late.get(
                        task_id, -1e9) < 30:
                    continue
                yes = self.loop.verdicts.get(task_id, True) if self.loop is not None else True
                answer = self._control(ddir, {"cmd": "answer", "task": task_id, "yes": yes})
                if answer.get("ok"):
                    self.answered.add(task_id)
                self._event("answer", device=device, task=task_id, ok=bool(answer.get("ok")),
                            error=answer.get("error"))

    def summary(self):
        app = self.app
        counts = app.state.queue.counts()
        with self.gateway.store.connect() as conn:
            cur = conn.execute("SELECT state, COUNT(*) FROM devices GROUP BY state")
            states = dict(cur.fetchall())
            cur = conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            tasks = dict(cur.fetchall())
            cur = conn.execute("SELECT state, COUNT(*) FROM cases GROUP BY state")
            cases = dict(cur.fetchall())
        online = sum(n for s, n in states.items() if s in ("online", "buffering"))
        return Summary(time.monotonic() - self.started, self.triggered, counts,
                       {"online": online, "total": len(self.devices)}, tasks, cases)
