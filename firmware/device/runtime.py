"""The Pi device runtime: a loaded profile, the parts its hardware backend builds
(``hardware.Hardware``: GNSS source, camera, inputs), the core and delivery.

    trigger ─▶ photo (camera) ─▶ core make_report (fix policy, grid) ─▶ outbox (fsync)
        ─▶ delivery (MQTT QoS 1) ─▶ gateway ack ─▶ dropped from the outbox

A report is never dropped for want of a fix: no fix gives ``fix: null`` + ``no_fix``, an
old one is kept with its age + ``stale_fix``; a fixed terminal reports its provisioned
position (``fixed_position``).  ``Device.start()`` brings everything up, ``stop()`` shuts
it down safely (no new triggers, the current outbox write finishes, offline status,
clean disconnect).
"""

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from .. import errors
from ..core import messages, topics
from ..core import track as coretrack
from ..core.checks import MessageError
from ..core.errors import CoreError
from ..core.messages import CLIP_TASK_S
from ..core.report import (
    DEFAULT_MAX_FIX_AGE,
    TEXT_MAX,
    ReportError,
    encode_report,
    make_report,
)
from ..core.timefmt import iso_utc
from ..maps import default_map
from . import camera as cam
from . import codebook
from . import health as checks
from .cliptasks import ClipTasks
from .hardware import Hardware
from .kiosk_form import choices
from .ota import ota_dir, update_device
from .sdnotify import notify, watchdog_period
from .shelf import MediaShelf
from .slots import Slots, commit_if_healthy, prepare_pi
from .store import REPORT, TASK_RESULT, TRACK, Store
from .tasks import RESULTS, TYPE_NAMES, Kiosk, TaskBoard, result_of
from .transcode import PhotoTranscoder
from .triggers import Pace
from .update import UpdateError, UpdateRefused

log = logging.getLogger("gridlink.device")
# The exit status after installing an update: the unit restarts the device
# (Restart=on-failure) and its launcher boots the new slot on trial.
RESTART_INTO_UPDATE = 75

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
SHELF_BYTES = 64 * 1024 * 1024   # the profile's clips.shelf_bytes default
UPLOAD_BYTES_PER_S = 64000       # the profile's clips.upload_bytes_per_s default
RESTARTED = ("the device restarted before the clip was written; the seconds asked for "
             "were in memory and are gone")


def _id_of(payload):
    try:
        return json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None


def firmware_version():
    try:
        from gridlink import __version__
    except ImportError:
        return "0.0.0"
    return __version__


def process_age():
    """Seconds since this process started (from /proc), or None off Linux."""
    try:
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start / os.sysconf("SC_CLK_TCK")


def _error_of(recorder):
    """Why a recorder stopped (its ``error``), or None."""
    error = getattr(recorder, "error", None)
    return None if error is None else str(error)


def cpu_temp(path=THERMAL):
    """CPU temperature in °C from /sys/class/thermal, or None where there is none."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class Device:
    """One running field device (patrol vehicle or fixed terminal).

    ``profile`` is a loaded (complete) profile; ``hardware`` builds the GNSS source,
    camera and inputs (default: ``Hardware(profile)``, the backend the profile names).
    """

    def __init__(self, profile, data_dir, broker, *, hardware=None, device_id=None,
                 district=None, tls_ca=None, tls_cert=None, tls_key=None, map_path=None,
                 cancel_grace=None, status_interval=None, kiosk_port=None, console=True,
                 reconnect_max=30.0, config_keys=None, update_repo=None,
                 health_deadline=120.0, prepare=prepare_pi, update_retry=300.0,
                 renew_check=600.0, renew_ask_every=3600.0):
        self.hardware = hardware or Hardware(profile)
        self.profile = profile
        self.kind = profile["kind"]
        self.device = device_id or profile.get("device_id")    # optional in a profile
        if not self.device:
            raise errors.DeviceError("no device id: pass --device-id (e.g. pv-0001)")
        self.district = district or profile["district"]
        try:
            topics.topic(self.district, self.device, "report")
        except MessageError as exc:
            raise errors.DeviceError(f"bad device id or district: {exc}") from None
        self.data_dir = Path(data_dir)
        self.broker = broker
        self._signalled = None   # catch_signals()'s event
        self.tls = (tls_ca, tls_cert, tls_key)
        self.renewal = None               # the certificate's renewal (renewal.py), with TLS
        self.renew_check, self.renew_ask_every = renew_check, renew_ask_every
        self.map_path = map_path
        self.cancel_grace = profile["press"]["cancel_grace_s"] if cancel_grace is None \
            else cancel_grace
        self._status_override = status_interval
        self.status_interval = status_interval or profile["status_interval_s"]
        self.kiosk_port = kiosk_port
        self.reconnect_max = reconnect_max
        self.config_keys = list(config_keys or ())
        self.desired = None
        self.console = console
        self.standard = profile["standard"]
        self.stale_after = profile["gnss"]["stale_after_s"] if "gnss" in profile \
            else DEFAULT_MAX_FIX_AGE
        self.fixed = None
        if "position" in profile:
            p = profile["position"]
            self.fixed = (p["lat"], p["lon"], p["alt"])
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.report_lock = threading.Lock()
        self.grace = {}                 # report id → monotonic time its cancel grace ends
        self.last_button = None
        self.timers = []
        self.store = self.shelf = self.cliptasks = None
        self.clips = self.recorder = None
        self._clip_for = {}              # clip name → ("report", id) | ("task", task)
        self._clip_lock = threading.Lock()
        self._withdrawn = set()          # reports cancelled: a memo still recording is not kept
        self.gnss = self.camera = self.delivery = self.triggers = None
        self.transcoder = None           # camera.format webp: WebPs made after the report
        self.kiosk = self.control = self.gridmap = None
        self.provisioned_map = None      # (GridMap, sha256) of the provisioned map, or None
        self.grid = profile.get("grid")  # a fixed terminal's grid code (its map may move it)
        self._fetching = threading.Lock()   # one fetch of a document's map or book at once
        self.thinner = self.batch = None
        self.track_lock = threading.Lock()
        self.counters = {"reports": 0, "cancelled": 0, "track_batches": 0, "errors": 0,
                         "failed": 0}
        self.last_error = None          # why the last report could not be made
        self.first_gnss_read = None
        self._last_sig = None
        # over-the-air updates (docs/ota.md): the A/B slots when the device has them
        self.update_repo = update_repo
        self.health_deadline = health_deadline
        self.update_retry = update_retry
        self.offer = None               # the last offer taken (a cut download is retried)
        self.prepare = prepare
        self.slots = None
        self.exit_code = 0
        self.done = threading.Event()
        self._updating = threading.Lock()

    # -- bring up / shut down ----------------------------------------------------------------

    def start(self):
        from .control import ControlServer
        from .delivery import Delivery

        # creates the data dir (or says why it cannot)
        self.store = Store(self.data_dir,
                           photo_keep_s=self.profile["camera"]["keep_delivered_s"])
        if os.path.islink(ota_dir(self.data_dir) / "current"):
            self.slots = Slots(ota_dir(self.data_dir))
        self.codebook = codebook.version(self.standard)
        self._open_map()
        self._open_desired()
        self._open_renewal()
        self.board = TaskBoard(self.store, console=self.console)
        clips = self.profile.get("clips", {})
        self.shelf = MediaShelf(self.data_dir / "media",
                                clips.get("shelf_bytes", SHELF_BYTES))
        self.transcoder = PhotoTranscoder(wake=lambda: self.delivery.kick())
        self.delivery = Delivery(
            self.broker, self.device, self.district, self.store, status_fn=self.status_fields,
            on_task=self._on_task, on_config=self._on_config, on_update=self._on_update,
            grace_until=self._hold_until, settle=self._settle_photos,
            tls_ca=self.tls[0], tls_cert=self.tls[1], tls_key=self.tls[2],
            reconnect_max=self.reconnect_max, shelf=self.shelf,
            media_rate=clips.get("upload_bytes_per_s", UPLOAD_BYTES_PER_S),
            on_cert=self._on_cert if self.renewal else None,
            on_chunk=self.desired.artifacts.on_chunk if self.config_keys else None).start()
        if self.kind == "patrol-vehicle":
            self.gnss = self.hardware.gnss(on_fix=self._on_fix).start()
            tr = self.profile["track"]
            self.thinner = coretrack.Thinner(tr["interval_s"], tr["distance_m"])
            self.batch = coretrack.Batch(self.device, tr["batch_points"],
                                         min(tr["batch_s"], coretrack.MAX_SPAN_S))
        self.camera = self.hardware.camera()
        self.cliptasks = ClipTasks(self.data_dir / "clip_tasks.json")
        if "clips" in self.profile:
            self._start_clips()
        if "memo" in self.profile:
            try:
                mic = self.hardware.microphone()
                log.info("voice memos of %s s from %s", self.profile["memo"]["seconds"],
                         mic.name)
            except errors.DeviceError as exc:   # each report's memo will say so again
                log.error("no voice memos: %s", exc)
        self.triggers = self.hardware.triggers(
            on_press=self._on_press, on_cancel=self._on_cancel, on_motion=self._on_motion,
            on_call=self._on_call, on_urgent=self._on_urgent,
            on_answer=lambda yes: self._guard(self.answer, None, None, yes))
        if "kiosk" in self.profile:
            k = self.profile["kiosk"]
            port = self.kiosk_port if self.kiosk_port is not None else k["port"]
            self.kiosk = Kiosk(self.device, self.board,
                               lambda task, result: self.answer(task, result),
                               bind=k["bind"], port=port,
                               offered=choices(k["classes"], self._class_name),
                               file_report=self._citizen_report,
                               camera=self.camera is not None,
                               gap_s=k["report_gap_s"]).start()
        self.control = ControlServer(self.data_dir / "control.sock", self.handle).start()
        self.timers.append(Pace(self.status_interval, self._tick_status, "status").start())
        self.timers.append(Pace(1.0, self._watch_change, "status-change").start())
        if self.renewal is not None:
            self.timers.append(Pace(self.renew_check, self._renew_if_due, "renewal").start())
        if self.slots is not None and self.update_repo:
            self.timers.append(Pace(self.update_retry, self._retry_update,
                                    "update-retry").start())
        period = watchdog_period()
        if period:
            self.timers.append(Pace(period, self._watchdog, "watchdog").start())
        notify(f"READY=1\nSTATUS=device {self.device} running")
        log.info("device %s (%s) started: data %s, broker %s%s", self.device, self.kind,
                 self.data_dir, self.broker, ", simulated hardware" if self.hardware.sim else "")
        self._guard(self._finish_clip_tasks)
        ota = self.slots.wire_status() if self.slots else None
        if ota and ota["pending"]:
            threading.Thread(target=self._commit_trial, name="health", daemon=True).start()
        return self

    def _start_clips(self):
        """The camera records into a ring; each report (and each ``clip`` task) cuts a
        clip from it, which goes on the media shelf for the delivery lane."""
        self.clips, self.recorder = self.hardware.recorder(self.data_dir / "clips",
                                                           self._on_clip)
        if self.recorder is not None:
            self.clips.on_missed = self._on_no_clip
            self.recorder.start()
            conf = self.profile["clips"]
            log.info("recording %dx%d at %d fps into a %.0f s ring (clips %s s before, %s s "
                     "after a report)", conf["width"], conf["height"], conf["fps"],
                     self.clips.ring.max_seconds, conf["pre_s"], conf["post_s"])
        else:
            self.clips = None

    def _on_clip(self, clip):
        """A clip is written (the recorder's thread): shelve it for its report, or answer
        the ``clip`` task that asked for it with a result report it follows."""
        with self._clip_lock:
            wanted = self._clip_for.pop(clip.name, None)
        if wanted is None:
            log.info("clip %s: its report was cancelled; removed", clip.name)
            clip.path.unlink(missing_ok=True)
            return
        what, value = wanted
        if what == "task":
            self._clip_of_task(value, clip.path)
            return
        try:
            rid = value
            self.shelf.add_file(clip.path, "clip", rid)
        except (errors.DeviceError, OSError) as exc:
            self.store.count_problem("media_dropped")
            log.error("clip %s (%d bytes) NOT kept: %s", clip.name, clip.bytes, exc)
            clip.path.unlink(missing_ok=True)
            return
        self.delivery.kick()
        log.info("clip %s of %s: %.1f s (%.1f s before the trigger), %d bytes", clip.name,
                 rid, clip.end_t - clip.start_t, clip.pre_s, clip.bytes)

    def _on_no_clip(self, name, reason):
        """A clip's window held no video (the recorder's thread): a ``clip`` task is
        answered ``no_clip`` with the reason at once; a report's clip is counted dropped."""
        with self._clip_lock:
            wanted = self._clip_for.pop(name, None)
        if wanted is None:
            return
        what, value = wanted
        if what == "task":      # unanswered (no report could be made): the next start
            if self._guard(self._answer_clip_task, value, "no_clip", reason):  # answers it
                self.cliptasks.done(value["task"])
            return
        self.store.count_problem("media_dropped")
        log.error("no clip for report %s: %s", value, reason)

    def _clip_of_report(self, report_id):
        if self.clips is None:
            return
        name = "r-" + report_id.replace(":", "-")
        with self._clip_lock:
            self._clip_for[name] = ("report", report_id)
        try:
            self.clips.trigger(name=name)
        except Exception as exc:  # the report stands without its clip, said so
            with self._clip_lock:
                self._clip_for.pop(name, None)
            self.store.count_problem("media_dropped")
            log.error("no clip for report %s: %s", report_id, exc)

    def _memo_of_report(self, report_id):
        """Record the report's voice memo (the crew speaks after the press) and shelve it;
        one that cannot be kept is counted in ``problems.media_dropped``."""
        from .memo import encode_memo

        seconds = self.profile["memo"]["seconds"]
        try:
            data = encode_memo(self.hardware.memo(seconds, seed=self.counters["reports"]))
            with self._clip_lock:
                if report_id in self._withdrawn:
                    return
                self.shelf.add(data, "memo", report_id)
        except (errors.DeviceError, OSError) as exc:
            self.store.count_problem("media_dropped")
            log.error("no voice memo for report %s: %s", report_id, exc)
            return
        self.delivery.kick()
        log.info("voice memo of %s: %s s, %d bytes", report_id, seconds, len(data))

    def _clip_task(self, task):
        """A ``clip`` task: the last CLIP_TASK_S seconds (as much as the ring holds), sent
        as the media of the task's result report; ``no_clip`` at once without a recorder.
        The task is written down (``cliptasks``) before its message is acknowledged, so a
        restart before its clip is written does not lose it (``_finish_clip_tasks``)."""
        if self.clips is None:
            if self.cliptasks.take(task, time.time(), 0):
                self._answer_clip_task(task, "no_clip", "this device records no clips")
                self.cliptasks.done(task["task"])
            return
        name = "t-" + task["task"]
        pre_s = min(CLIP_TASK_S, self.clips.ring.max_seconds)
        with self._clip_lock:
            if name in self._clip_for:
                return                       # the same task delivered again
            if not self.cliptasks.take(task, time.time(), pre_s):
                log.info("clip task %s again: already taken", task["task"])
                return
            self._clip_for[name] = ("task", task)
        try:
            self.clips.trigger(name=name, pre_s=pre_s, post_s=0)
        except Exception as exc:
            with self._clip_lock:
                self._clip_for.pop(name, None)
            log.error("clip task %s: %s", task["task"], exc)
            self._answer_clip_task(task, "no_clip", str(exc))
            self.cliptasks.done(task["task"])

    def _clip_of_task(self, task, path, report_id=None):
        """Answer ``task`` with its clip at ``path`` (result ``recorded``, unless
        ``report_id`` already answered it) and shelve the clip; then the task is done."""
        tid = task["task"]
        try:
            if report_id is None:
                report_id = self._answer_clip_task(task, "recorded")
                self.cliptasks.answering(tid, report_id)
            self.shelf.add_file(path, "clip", report_id)
        except (errors.DeviceError, OSError) as exc:
            if report_id is None:            # unanswered: the task and its clip wait for
                log.error("clip task %s not answered: %s", tid, exc)   # the next start
                return
            self.store.count_problem("media_dropped")
            log.error("clip of task %s NOT kept: %s", tid, exc)
            Path(path).unlink(missing_ok=True)
        self.cliptasks.done(tid)
        self.delivery.kick()
        log.info("clip of task %s shelved for report %s", tid, report_id)

    def _finish_clip_tasks(self):
        """At start-up: each clip task taken before a restart and not done gets its clip
        if it had been written (it waits in ``clips/``), else ``no_clip`` with the reason
        (the ring's seconds were in memory); one already answered gets its clip shelved."""
        for entry in self.cliptasks.pending():
            task = entry["task"]
            tid, rid = task["task"], entry.get("report")
            path = self.data_dir / "clips" / f"t-{tid}.mp4"
            if path.exists():
                log.info("clip task %s: its clip was written before the restart", tid)
                self._clip_of_task(task, path, rid)
            elif rid is not None:   # answered, and the clip left clips/ for the shelf
                self.cliptasks.done(tid)
            else:
                self._answer_clip_task(task, "no_clip", RESTARTED)
                self.cliptasks.done(tid)

    def _answer_clip_task(self, task, result, reason=None):
        cls = self.profile["task_result"]
        text = f"{TYPE_NAMES['clip']} {task['task']}: {result}"
        if reason:
            text = f"{text} ({reason})"[:TEXT_MAX]
        rep = self.report("task", cls["kind"], cls["code"], text, task=task["task"],
                          result=result, photo=False)
        log.info("clip task %s answered %s by report %s%s", task["task"], result, rep["id"],
                 f": {reason}" if reason else "")
        return rep["id"]

    def _open_map(self):
        from ..core.fsio import file_sha256
        from ..core.gridmap import GridMapError
        from ..maps import open_map

        path = self.map_path or default_map(self.district)
        if path is None:
            log.warning("no grid map for district %s: reports carry grid null (the gateway "
                        "fills it in)", self.district)
            return
        try:
            self.gridmap = open_map(path, mapped=True)
        except GridMapError as exc:
            raise errors.DeviceError(str(exc)) from None
        self.provisioned_map = (self.gridmap, file_sha256(path))
        log.info("grid map %s: %d cells", path, self.gridmap.n_cells)

    def _open_desired(self):
        """The applied configuration (desired state) over the provisioned profile; the
        maps and code books it names are fetched into the data dir's artifacts/."""
        from .artifacts import Artifacts
        from .desired import DesiredState

        artifacts = Artifacts(self.data_dir, ask=lambda request: self.delivery is not None
                              and self.delivery.ask_piece(request))
        self.desired = DesiredState(
            self.data_dir, self.device, self.config_keys, self.profile,
            map_sha256=self.provisioned_map[1] if self.provisioned_map else None,
            codebook=self.codebook, broker=self.broker, try_broker=self._try_broker,
            artifacts=artifacts)
        if self.desired.version is not None:
            self._use(self.desired.profile)
            self.broker = self.desired.broker
            log.info("configuration version %d in use", self.desired.version)
        else:
            self._use_artifacts()

    def _open_renewal(self):
        """With a client certificate, its renewal; a renewed identity in the data dir is
        used in place of the provisioned files."""
        if not self.tls[1]:
            return
        try:
            import cryptography  # noqa: F401
        except ImportError:
            log.warning("the cryptography package is not installed: this device cannot "
                        "renew its certificate (install gridlink[pi])")
            return
        from .delivery import trial_connect
        from .renewal import Renewal

        self.renewal = Renewal(
            self.data_dir, self.device, self.tls, self.profile["renew_before_days"],
            try_connect=lambda files: trial_connect(self.broker, self.device, files),
            ask_every_s=self.renew_ask_every)
        self.tls = self.renewal.files
        expires = self.renewal.expires()
        log.info("certificate %s, valid to %s", self.tls[1],
                 f"{expires:%Y-%m-%d}" if expires else "(unreadable)")

    def _renew_if_due(self):
        """Ask for a new certificate when the one in use runs out soon (renewal.py)."""
        if not self.delivery.connected:
            return
        csr = self.renewal.request()
        if csr is not None:
            self.delivery.send_csr(csr)

    def _on_cert(self, answer):
        """The centre's answer to a certificate request: tried and taken, or kept out
        (on a thread of its own: the trial connection must not hold the MQTT thread)."""
        def take():
            try:
                files = self.renewal.receive(answer)
                if files is not None:
                    self.tls = files
                    self.delivery.use_identity(files[1], files[2])
            except Exception:  # the device runs on with the old certificate
                log.exception("new certificate not taken")
                self.renewal.failed = "the new certificate could not be taken (see the log)"
            self.delivery.request_status()

        threading.Thread(target=take, name="renewal", daemon=True).start()

    def _try_broker(self, url):
        """None when the broker at ``url`` accepts this device, else why (a desired-state
        document's new broker is used only then)."""
        from .delivery import trial_connect

        return trial_connect(url, self.device, self.tls)

    def _use(self, profile):
        """Run on ``profile`` from now on: buttons, intervals, photo budget, fix age."""
        self.profile = profile
        if "gnss" in profile:
            self.stale_after = profile["gnss"]["stale_after_s"]
        settings = self.desired.doc["settings"] if self.desired.doc else {}
        self.status_interval = (profile["status_interval_s"] if "status_interval_s" in settings
                                else self._status_override or profile["status_interval_s"])
        for timer in self.timers:
            if timer.name == "status":
                timer.period = self.status_interval
        if self.thinner is not None:
            self.thinner.interval_s = profile["track"]["interval_s"]
        self._use_artifacts()

    def _use_artifacts(self):
        """Locate with the map, and check classes against the book, the applied document
        names (the provisioned ones when it names none)."""
        used = self.desired.used
        if used["map"] is not None:
            path, self.gridmap, grid = used["map"]
            self.grid = grid or self.profile.get("grid")
            log.info("grid map %s in use: %d cells", path.name, self.gridmap.n_cells)
        else:
            self.gridmap = self.provisioned_map[0] if self.provisioned_map else None
            self.grid = self.profile.get("grid")
        codebook.use_book(used["book"][1] if used["book"] else None)
        self.codebook = codebook.version(self.standard)

    def _on_config(self, message):
        """A configuration document from the centre: applied whole, or refused whole; one
        naming a map or code book the device lacks has them fetched first (a thread of
        its own: the pieces come on the MQTT thread)."""
        try:
            with self.report_lock:
                self._applied(self.desired.offer(message))
        except Exception:  # the device runs on: the MQTT thread must not die of it
            log.exception("configuration document not applied")
        if self.desired.needs is not None and not self._fetching.locked():
            threading.Thread(target=self._fetch_artifacts, name="artifacts",
                             daemon=True).start()
        self.delivery.request_status()

    def _applied(self, profile):
        if profile is not None:
            self._use(profile)
            if self.desired.broker != self.broker:
                self.broker = self.desired.broker
                self.delivery.switch(self.broker)

    def _fetch_artifacts(self):
        """Fetch what the waiting document names, then apply it (or refuse it)."""
        with self._fetching:
            while self.desired.needs is not None:   # a newer document may come meanwhile
                try:
                    message = self.desired.fetch()
                    if message is not None:
                        with self.report_lock:
                            self._applied(self.desired.offer(message))
                except Exception:  # the device runs on what it had
                    log.exception("configuration document not applied")
                self.delivery.request_status()

    def stop(self):
        """Safe shutdown: no new triggers, finish the current write, offline, disconnect."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        notify("STOPPING=1")
        log.info("device %s stopping", self.device)
        if self.control is not None:
            self.control.stop()
        if self.triggers is not None:
            self.triggers.close()
        for timer in self.timers:
            timer.stop()
        if self.recorder is not None:
            self.recorder.stop()
        with self.report_lock:        # a report being made is finished and stored first
            if self.gnss is not None:
                self.gnss.stop()
            self._flush_track()
        if self.delivery is not None:
            self.delivery.stop()
        if self.transcoder is not None:
            self.transcoder.stop()
        if self.kiosk is not None:
            self.kiosk.stop()
        if self.camera is not None:
            self.camera.close()
        self.hardware.close()
        if self.store is not None:
            self.store.close()
        log.info("device %s stopped", self.device)

    def catch_signals(self):
        """From now on SIGTERM/SIGINT ask for a safe stop (``run_forever`` makes it) instead
        of killing the process: call it before ``start``, so a stop that comes while the
        device starts still publishes its offline status."""
        if self._signalled is not None:
            return self._signalled
        self._signalled = threading.Event()

        def on_signal(signum, _frame):
            log.info("signal %s received", signal.Signals(signum).name)
            self._signalled.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return self._signalled

    def run_forever(self):
        """Run until SIGTERM/SIGINT, then stop safely."""
        done = self.catch_signals()
        while not done.wait(1.0) and not self.done.is_set():
            pass
        self.stop()
        return self.exit_code

    # -- triggers ----------------------------------------------------------------------------

    def _guard(self, fn, *args):
        """Run a trigger's action; a failure is logged and counted, never kills the device."""
        try:
            return fn(*args)
        except (errors.DeviceError, ReportError) as exc:
            self.counters["errors"] += 1
            log.error("%s", exc)
        except Exception:
            self.counters["errors"] += 1
            log.exception("trigger failed")
        return None

    def button(self, name):
        for b in self.profile.get("buttons", ()):
            if b["name"] == name:
                return b
        raise errors.DeviceError(f"no button {name!r}")

    def _on_press(self, name):
        b = self.button(name)
        self._guard(self.report, "button", b["kind"], b["code"], b["text"])

    def _on_motion(self):
        p = self.profile["pir"]
        self._guard(self.report, "sensor", p["kind"], p["code"], p["text"])

    def _on_call(self):
        c = self.profile["call_button"]
        self._guard(self.report, "operator", c["kind"], c["code"], c["text"])

    def _citizen_report(self, kind, code, text, photo):
        """A citizen's report from the kiosk's form (source ``citizen``)."""
        return self.report("citizen", kind, code, text, photo=photo)

    def _class_name(self, kind, code):
        try:
            return codebook.book(self.standard).lookup(kind, code).name
        except Exception:  # no book, or a class it lacks: the screen shows the code
            return None

    def _on_cancel(self, name):
        self._guard(self.cancel_last)

    def _on_urgent(self, name):
        """An urgent report (突发事件): the emergency button, or a long press on a class
        button when ``press.long_press`` is "urgent"."""
        b = self.profile["emergency_button"] if name == "emergency" else self.button(name)
        self._guard(self.report, "button", b["kind"], b["code"], b["text"], None, None, None,
                    True, True)

    # -- reports -----------------------------------------------------------------------------

    def fix_now(self):
        """(core Fix or None, age seconds or None) of the GNSS receiver."""
        if self.gnss is None:
            return None, None
        return self.gnss.snapshot()

    def report(self, source, kind, code, text="", object_id=None, task=None, result=None,
               photo=True, urgent=False):
        """Make one report and store it durably; returns the report dict.  ``urgent``, or a
        class the profile's ``urgent_classes`` lists, makes it urgent (突发事件): no
        cancel grace, and it leaves before anything else waiting in the outbox."""
        if self.stopping.is_set():
            raise errors.DeviceError("device is stopping; no new reports")
        urgent = bool(urgent) or code in self.profile.get("urgent_classes", ())
        with self.report_lock:
            try:
                return self._report(source, kind, code, text, object_id, task, result, photo,
                                    urgent)
            except (errors.DeviceError, ReportError) as exc:
                self.counters["failed"] += 1
                self.last_error = f"report NOT made: {exc}"
                self.store.count_problem("failed")
                raise errors.DeviceError(self.last_error) from None

    def _report(self, source, kind, code, text, object_id, task, result, photo, urgent):
        fix, age = self.fix_now()
        shot, dropped = None, False
        if photo and self.camera is not None:
            try:
                shot = self._photo(fix)
            except (OSError, errors.DeviceError) as exc:
                dropped = True
                self.store.count_problem("photos_dropped")
                log.error("%s; the report goes without it (flag photo_dropped)", exc)
        stored = False
        try:
            seq = self.store.next_seq()
            if self.fixed is not None:
                grid = self.grid
            elif fix is not None and self.gridmap is not None:
                grid = self.gridmap.locate(fix.lon, fix.lat)
            else:
                grid = None
            rep = make_report(
                self.device, seq, fix, time.time, kind, self.standard, code, grid=grid,
                object_id=object_id, source=source, photos=[shot[:2]] if shot else (),
                text=text, task=task, result=result, max_fix_age=self.stale_after,
                fixed_position=self.fixed, check_code=codebook.check_code, fix_age=age,
                photo_dropped=dropped, urgent=urgent)
            payload = encode_report(rep)
            # its WebP later, the report held until then; an urgent one (it leaves before
            # all else, past any hold) goes with its JPEG
            later = shot[3] if shot and not urgent else None
            with self.store.lock:
                if later:
                    self.transcoder.hold(rep["id"])
                try:
                    self.store.append(TASK_RESULT if source == "task" else REPORT, payload,
                                      urgent=urgent)
                except BaseException:
                    self.transcoder.release(rep["id"])
                    raise
                stored = True
                if shot and self._queue_photo(rep["id"], shot) and later:
                    self.transcoder.submit(rep["id"], later)
                else:
                    self.transcoder.release(rep["id"])
        except BaseException:
            if shot and not stored:
                self.store.remove_photo(shot[0])     # no report names it
            raise
        if source == "button" and not urgent:
            now = time.monotonic()   # a grace period in elapsed time: the clock may step
            self.grace = {k: v for k, v in self.grace.items() if v + 1 > now}
            self.grace[rep["id"]] = now + self.cancel_grace
            self.last_button = rep["id"]
        self.counters["reports"] += 1
        if source != "task":
            self._clip_of_report(rep["id"])
            if "memo" in self.profile:
                threading.Thread(target=self._guard, args=(self._memo_of_report, rep["id"]),
                                 name="memo", daemon=True).start()
        self.delivery.kick()
        log.info("report %s: %s%s %s (%s) grid %s flags %s%s", rep["id"],
                 "URGENT " if urgent else "", kind, code, source,
                 rep["grid"], ",".join(rep["flags"]) or "-",
                 f" photo {shot[1]} B" if shot else "")
        return rep

    def _queue_photo(self, report_id, shot):
        """Queue a stored report's photo for upload; if even that record cannot be stored,
        the report stands and the photo is dropped (counted)."""
        try:
            self.delivery.add_photo_job(report_id, shot[0], shot[1])
            return True
        except errors.DeviceError as exc:
            self.store.count_problem("photos_dropped")
            self.store.remove_photo(shot[0])
            log.error("report %s is stored but its photo cannot be queued (%s); the photo "
                      "is dropped", report_id, exc)
            return False

    def _photo(self, fix):
        """(sha256, bytes, path, later) of a new JPEG photo stored in the data dir;
        ``later(report_id)`` (camera.format webp) makes its WebP off the report's path and
        names it in the stored report (``_swap_photo``); if none fits, the JPEG goes."""
        conf = self.profile["camera"]
        when = time.time()
        fixd = None
        if self.fixed is not None:
            fixd = {"lat": self.fixed[0], "lon": self.fixed[1], "alt": self.fixed[2]}
        elif fix is not None:
            fixd = {"lat": fix.lat, "lon": fix.lon, "alt": fix.alt, "hdop": fix.hdop}
        img = self.camera.capture()
        exif = cam.exif_bytes(fixd, when, self.device)
        data, quality, picture = cam.fit_jpeg(img, (conf["width"], conf["height"]),
                                              conf["max_bytes"], exif)
        sha = hashlib.sha256(data).hexdigest()
        path = self.store.save_photo(sha, data)
        later = None
        if conf["format"] == "webp":
            def later(report_id):
                webp = cam.transcode_webp(picture, len(data), quality, exif)
                if webp is None:
                    log.info("report %s: no WebP within %.0f %% of its JPEG; the JPEG goes",
                             report_id, 100 * cam.WEBP_RATIO)
                    return
                wsha = hashlib.sha256(webp[0]).hexdigest()
                self.store.save_photo(wsha, webp[0])
                try:
                    self._swap_photo(report_id, wsha, len(webp[0]))
                except (errors.DeviceError, ReportError):
                    self.store.remove_photo(wsha)
                    raise
        return sha, len(data), path, later

    def _hold_until(self, report_id):
        """Until when the delivery holds ``report_id``: its cancel grace, or for ever
        while its WebP is being made."""
        if self.transcoder is not None and self.transcoder.holds(report_id):
            return float("inf")
        return self.grace.get(report_id, 0) + 0.5

    def _settle_photos(self):
        """(The delivery's thread, before it reads what to send.)  Let go the reports
        whose WebP is done: stored again naming it, or left with their JPEG."""
        for rid in self.transcoder.take_done():
            self.transcoder.release(rid)

    def _swap_photo(self, rid, sha, size):
        """Store report ``rid`` again naming photo ``sha`` (its WebP): the new record and
        its upload first, then the JPEG's settled, so a power cut in between leaves one
        whole pair (``Store`` keeps the one whose upload is the newest)."""
        from ..core.report import decode_report

        with self.store.lock:
            found = [(s, k, p) for s, k, p in self.store.pending((REPORT, TASK_RESULT))
                     if _id_of(p) == rid]
            if not found:                       # cancelled meanwhile
                self.store.remove_photo(sha)
                return
            oseq, kind, payload = found[0]
            old = decode_report(payload)
            jpeg = old["photos"][0]["sha256"]
            new_oseq = self.store.append(kind, encode_report(
                {**old, "photos": [{"sha256": sha, "bytes": size}]}))
            try:
                self.delivery.replace_photo_job(rid, sha, size)
            except errors.DeviceError:
                self.store.ack(new_oseq)        # the JPEG pair stands
                raise
            self.store.ack(oseq)
            self.store.remove_photo(jpeg)
        log.info("report %s: photo %d B as WebP (its JPEG was %d B)", rid, size,
                 old["photos"][0]["bytes"])

    def cancel_last(self):
        """Long press: take back the last button report while its grace period lasts."""
        rid = self.last_button
        if rid is None or time.monotonic() >= self.grace.get(rid, 0):
            log.warning("long press: no report within the %ss grace period to cancel",
                        self.cancel_grace)
            return None
        with self.store.lock:
            for oseq, _kind, payload in self.store.pending((REPORT,)):
                rep = json.loads(payload)
                if rep["id"] == rid:
                    self.store.append_line("cancelled.jsonl", {
                        "cancelled": iso_utc(time.time()), "report": rep})
                    self.store.ack(oseq)
                    break
            else:
                return None
        self.grace.pop(rid, None)
        self.last_button = None
        self.counters["cancelled"] += 1
        with self._clip_lock:               # its clip is not wanted either
            self._clip_for.pop("r-" + rid.replace(":", "-"), None)
            self._withdrawn.add(rid)
            self.shelf.withdraw(rid)
        log.warning("report %s cancelled by a long press (kept in cancelled.jsonl)", rid)
        return rid

    # -- tasks -------------------------------------------------------------------------------

    def _on_task(self, task):
        if task["type"] == "clip":
            self._guard(self._clip_task, task)
            return
        if self.board.add(task):
            self.delivery.request_status()

    def answer(self, task_id=None, result=None, yes=None):
        """Answer a task (the given one, else the oldest open) with a result report."""
        task = self.board.find(task_id) if task_id else self.board.current()
        if task is None:
            raise errors.DeviceError(f"no open task {task_id or ''}".rstrip())
        if result is None:
            if yes is None:
                raise errors.DeviceError("answer needs a result or yes/no")
            result = result_of(task["type"], yes)
        if result not in RESULTS[task["type"]]:
            raise errors.DeviceError(f"a {task['type']} task is answered with "
                                     f"{' or '.join(RESULTS[task['type']])}, not {result!r}")
        kind, code = self._result_class(task)
        rep = self.report("task", kind, code,
                          f"{TYPE_NAMES[task['type']]} {task['task']}: {result}",
                          task=task["task"], result=result)
        self.board.close(task["task"])
        log.info("task %s answered %s by report %s", task["task"], result, rep["id"])
        return rep["id"]

    def _result_class(self, task):
        """(kind, code) of a task's result: the class the task names (that of the report or
        case it is about) when this device's code book has it, else the profile's own."""
        if "kind" in task:
            try:
                codebook.check_code(self.standard, task["kind"], task["code"])
                return task["kind"], task["code"]
            except CoreError as exc:
                log.warning("task %s names class %s %s, not in %s (%s): the result is coded "
                            "with the profile's class", task["task"], task["kind"],
                            task["code"], self.standard, exc)
        cls = self.profile["task_result"]
        return cls["kind"], cls["code"]

    # -- over-the-air updates ----------------------------------------------------------------

    def _commit_trial(self):
        """First start of a version on trial: healthy within the deadline → it marks
        itself good; otherwise the device exits and the launcher's boot counter decides."""
        wait = self.health_deadline
        parts = {"broker": checks.patiently(checks.connected(self.delivery), wait),
                 "outbox": checks.outbox_reads(self.store)}
        if self.gnss is not None:
            parts["gnss"] = checks.patiently(checks.gnss_reading(self.gnss), wait)
        if self.camera is not None:
            parts["camera"] = checks.camera_captures(self.camera)
        version = self.slots.wire_status()["pending"]
        problems = commit_if_healthy(self.slots, parts, wait)
        if problems:
            log.error("update %s is not healthy (%s): exiting; the boot counter decides",
                      version, "; ".join(f"{n}: {p}" for n, p in problems))
            self.exit_code = 1
            self.done.set()
            return
        log.warning("update %s passed its health check and is kept", version)
        self.delivery.request_status()

    def ota_status(self):
        """The status's ``ota``, or None (no slots, or an update state the protocol cannot
        carry: then it is left out and said, so the rest of the status still goes)."""
        if self.slots is None:
            return None
        ota = self.slots.wire_status()
        try:
            return messages.validate_ota(ota)
        except MessageError as exc:
            log.error("the update state cannot go in the status (%s); left out", exc)
            return None

    def _on_update(self, offer):
        if self.slots is None or not self.update_repo:
            log.warning("rollout %s offers %s %s, but this device has %s", offer["rollout"],
                        offer["kind"], offer["version"],
                        "no update slots" if self.slots is None else "no --update-repo")
            return
        self.offer = offer
        if self._updating.locked():
            return
        threading.Thread(target=self.install_offer, args=(offer,), name="update",
                         daemon=True).start()

    def _retry_update(self):
        """Every ``update_retry`` seconds: an offer whose download was cut is tried again
        (resuming from the bytes kept); anything else waits for a new offer."""
        offer = self.offer
        if offer is None or self._updating.locked():
            return
        last = self.slots.last_failure(offer["version"])
        if last and last["reason"] == "download":
            log.info("retrying the download of %s (rollout %s)", offer["version"],
                     offer["rollout"])
            self.install_offer(offer)

    def install_offer(self, offer):
        """Install an offered release into the other slot, then exit to restart into it.
        Not again: the running version, during a trial, or a version that already failed
        here (but for a failed download).  Refusals show in the status."""
        with self._updating:
            version = offer["version"]
            ota = self.slots.wire_status()
            if ota["installed"] == version or ota["pending"]:
                return False
            if offer["kind"] != "pi":
                self.slots.record_failure(version, "wrong-kind", f"rollout {offer['rollout']}")
                self.delivery.request_status()
                return False
            last = self.slots.last_failure(version)
            if last and last["reason"] != "download":
                return False
            log.warning("rollout %s: installing %s from %s", offer["rollout"], version,
                        self.update_repo)
            try:
                slot = update_device(self.data_dir, self.update_repo, "pi", version,
                                     prepare=self.prepare, ca=self.tls[0])
            except UpdateRefused as exc:
                log.error("update %s refused: %s", version, exc)
                self.delivery.request_status()
                return False
            except (UpdateError, OSError) as exc:
                self.slots.record_failure(version, "install", None)
                log.error("update %s not installed: %s", version, exc)
                self.delivery.request_status()
                return False
            log.warning("update %s installed in slot %s: restarting into it", version, slot)
            self.exit_code = RESTART_INTO_UPDATE
            self.done.set()
            return True

    # -- track -------------------------------------------------------------------------------

    def _on_fix(self, fix):
        if self.first_gnss_read is None:
            self.first_gnss_read = time.monotonic()
        if self.thinner is None or fix.epoch is None:
            return
        with self.track_lock:
            t = fix.epoch
            if not self.thinner.offer(t, fix.lat, fix.lon):
                if self.batch.due(t):
                    self._flush_track_locked()
                return
            if not self.batch.fits(t):
                self._flush_track_locked()
            if self.batch.add(t, fix.lat, fix.lon, fix.speed):
                self._flush_track_locked()

    def _flush_track(self):
        if self.batch is not None:
            with self.track_lock:
                self._flush_track_locked()

    def _flush_track_locked(self):
        if not self.batch.pts:
            return
        try:
            # numbered with its outbox sequence: the gateway's track_stored ack names it
            self.store.append_numbered(TRACK, self.batch.take)
        except errors.DeviceError as exc:
            log.error("track batch not stored: %s", exc)
            return
        self.counters["track_batches"] += 1
        if self.delivery is not None:
            self.delivery.kick()

    # -- status ------------------------------------------------------------------------------

    def _status_fix(self):
        if self.fixed is not None:
            lat, lon, alt = self.fixed
            return {"lat": lat, "lon": lon, "alt": alt, "mode": 3 if alt is not None else 2,
                    "status": 0, "sats": None, "hdop": None, "age": 0}
        fix, age = self.fix_now()
        if fix is None:
            return None
        return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7),
                "alt": None if fix.alt is None else round(fix.alt, 2), "mode": fix.mode,
                "status": fix.status, "sats": fix.sats,
                "hdop": None if fix.hdop is None else round(fix.hdop, 2), "age": round(age, 3)}

    def status_fields(self):
        """The fields of the MQTT status message (``messages.make_status`` keywords)."""
        depth = self.store.depth()
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = None
        return {"time": iso_utc(time.time()), "fix": self._status_fix(),
                "reports": depth["reports"], "track": depth["track"], "disk_free": free,
                "cpu_temp": cpu_temp(), "uptime": round(time.monotonic() - self.started, 1),
                "firmware": firmware_version(), "codebook": self.codebook,
                "profile": self.profile["profile"], "problems": self.store.problems(),
                "config": self.desired.status() if self.desired else None,
                "ota": self.ota_status(),
                "cert": self.renewal.status() if self.renewal else None}

    def local_status(self):
        """Everything `gridlink device status` shows (MQTT status plus diagnostics)."""
        fields = self.status_fields()
        d = self.delivery
        out = {"device": self.device, "kind": self.kind, "pid": os.getpid(),
               "state": d.state() if d else "offline",
               "connected": bool(d and d.connected), **fields,
               "outbox": {"reports": fields.pop("reports"), "track": fields.pop("track")},
               "gnss": self.gnss.health() if self.gnss else None,
               "delivery": dict(d.counters) if d else None, "counters": dict(self.counters),
               "last_error": self.last_error,
               "tasks": self.board.open(), "inputs": self.triggers.names if self.triggers else [],
               "kiosk": f"http://127.0.0.1:{self.kiosk.port}/" if self.kiosk else None,
               "sim": self.hardware.sim, **self.hardware.status(), "alive": self.parts_alive(),
               "media": {"pending": len(self.shelf.pending()), "bytes": self.shelf.used(),
                         "recorder_error": _error_of(self.recorder)}
               if self.shelf is not None else None}
        age = process_age()
        if self.gnss is not None and self.gnss.first_read_at is not None and age is not None:
            out["first_gnss_read_s"] = round(age - (time.monotonic()
                                                    - self.gnss.first_read_at), 3)
        return out

    def parts(self):
        """{name: part} of every running part that answers ``is_alive()``."""
        named = {"store": self.store, "delivery": self.delivery, "gnss": self.gnss,
                 "camera": self.camera, "recorder": self.recorder,
                 "triggers": self.triggers, "kiosk": self.kiosk, "control": self.control}
        named.update((f"timer:{t.name}", t) for t in self.timers)
        return {name: part for name, part in named.items() if part is not None}

    def parts_alive(self):
        """{name: bool}: each part's own ``is_alive()``."""
        return {name: bool(part.is_alive()) for name, part in self.parts().items()}

    def alive(self):
        """True while every part is alive (what the systemd watchdog vouches for)."""
        return all(self.parts_alive().values())

    def _watchdog(self):
        alive = self.parts_alive()
        if all(alive.values()):
            notify("WATCHDOG=1")
        else:
            log.error("%s stopped; withholding the watchdog ping so systemd restarts the "
                      "device", ", ".join(name for name, ok in alive.items() if not ok))

    def _watch_change(self):
        """A status goes out on change too: GNSS state, fix mode, open tasks."""
        fix, _age = self.fix_now()
        sig = (self.gnss.health()["state"] if self.gnss else None,
               fix.mode if fix is not None else None, len(self.board.open()))
        if sig != self._last_sig:
            self._last_sig = sig
            self.delivery.request_status()

    def _tick_status(self):
        self.delivery.request_status()
        self.store.save_json("status.json", self.local_status())

    # -- control socket ----------------------------------------------------------------------

    def handle(self, req):
        cmd = req.get("cmd")
        if cmd == "status":
            return {"status": self.local_status()}
        if cmd == "press":
            before = (self.counters["reports"], self.counters["cancelled"],
                      self.counters["failed"])
            self.triggers.simulate(req["input"], hold=bool(req.get("hold")))
            if self.counters["failed"] > before[2]:
                raise errors.DeviceError(self.last_error)
            return {"reports": self.counters["reports"] - before[0],
                    "cancelled": self.counters["cancelled"] - before[1],
                    "last": self.last_button}
        if cmd == "report":
            b = self.button(req["input"])
            rep = self.report("button", b["kind"], b["code"], b["text"],
                              urgent=bool(req.get("urgent")))
            return {"report": rep["id"], "urgent": rep.get("urgent", False)}
        if cmd == "tasks":
            return {"tasks": self.board.open()}
        if cmd == "config":
            return {"config": self.desired.status(), "profile": {
                k: v for k, v in self.profile.items() if k != "_path"}}
        if cmd == "answer":
            return {"report": self.answer(req.get("task"), req.get("result"), req.get("yes"))}
        raise errors.DeviceError(f"unknown command {cmd!r} (status, press, report, tasks, "
                                 "answer, config)")

