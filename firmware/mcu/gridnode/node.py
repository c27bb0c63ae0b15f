# The sensor node's cycle: wake, read the tilt switch, deliver pending reports, sleep.
# Everything that must survive a deep sleep or a power cut lives on flash: the outbox
# (core), the sequence number and the switch's last level (state.json, written by rename).
import json

from gridcore import fsio, messages
from gridcore.errors import CoreError
from gridcore.report import make_report
from gridcore.seqfile import SequenceError, SequenceFile
from gridcore.timefmt import iso_utc
from gridcore.topics import topic

from . import VERSION
from .debounce import read_stable
from .mqtt import MQTTClient

BACKOFF_MIN_MS = 2000
BACKOFF_MAX_MS = 600000
CONNECT_TRIES = 3
ACK_WAIT_S = 10


class State:
    # tilted: the last settled level was tilted; fails: delivery failures in a row.
    # Written new-then-rename; a lost or torn file means "upright, no failures".
    def __init__(self, path):
        self.path = path
        self.tilted = False
        self.fails = 0
        data = fsio.read_file(path)
        try:
            d = json.loads(data)
            self.tilted = d["tilted"] is True
            self.fails = int(d["fails"])
        except (TypeError, ValueError, KeyError):
            pass

    def save(self):
        data = json.dumps({"tilted": self.tilted, "fails": self.fails}).encode()
        fsio.write_file(self.path, data, self.path.rpartition("/")[0])


class Node:
    def __init__(self, cfg, board, outbox, data_dir, log=print):
        self.cfg = cfg
        self.board = board
        self.outbox = outbox
        self.rejected_path = fsio.join(data_dir, "rejected.jsonl")
        self.state = State(fsio.join(data_dir, "state.json"))
        self.seq = self._sequence(fsio.join(data_dir, "seq"))
        self.log = log
        t = cfg["tilt"]
        self.pin = board.input_pin(t["pin"], t.get("pull", "up"))
        self.active = t.get("active", 0 if t.get("pull", "up") == "up" else 1)
        self.stable_reads = max(2, t.get("debounce_ms", 50) // 10)
        self.acked = {}

    def _sequence(self, path):
        try:
            return SequenceFile(path)
        except SequenceError:
            # damaged counter: go on above every number the outbox or rejected file holds
            return SequenceFile(path, floor=self._highest_seq())

    def _highest_seq(self):
        top = 0
        for rid, _ in self.outbox.pending():
            top = max(top, int(rid.rpartition(":")[2]))
        data = fsio.read_file(self.rejected_path) or b""
        for line in data.split(b"\n"):
            try:  # noqa: SIM105 (no contextlib on MicroPython)
                top = max(top, int(json.loads(line)["id"].rpartition(":")[2]))
            except (ValueError, KeyError, TypeError):
                pass
        return top

    # -- sensing
    def read_tilt(self):
        level = read_stable(self.pin, self.board.sleep_ms, self.stable_reads, 10)
        return None if level is None else level == self.active

    def capture(self):
        # A settled tilt → a component report in the outbox (the sequence file is written
        # first, so a power cut can skip a number but never reuse one).
        cfg = self.cfg
        t = cfg["tilt"]
        pos = cfg.get("position")
        rep = make_report(
            cfg["device"], self.seq.next(), None, self._clock, "component", cfg["standard"],
            t["code"], grid=cfg.get("grid"), object_id=t["object"], source="sensor",
            text=t.get("text", ""),
            fixed_position=(pos["lat"], pos["lon"], pos.get("alt")) if pos else None)
        self.outbox.append(rep["id"], rep)
        self.log("captured", rep["id"])
        return rep

    def _clock(self):
        return self.board.unix_time()[0]

    # -- delivery
    def _on_msg(self, tp, msg):
        try:
            ack = messages.decode(msg, messages.validate_ack, 1024)
        except CoreError as e:
            self.log("bad ack", e)
            return
        if ack["id"] is not None:
            self.acked[ack["id"]] = (ack["status"], ack["reason"])

    def _connect(self):
        cfg = self.cfg
        b = cfg["broker"]
        c = MQTTClient(cfg["device"], b["host"], b["port"], keepalive=b.get("keepalive", 60),
                       user=b.get("user"), password=b.get("password"),
                       timeout=b.get("timeout", 10), open_socket=self.board.open_socket)
        c.set_callback(self._on_msg)
        will = messages.encode(messages.will_status(cfg["device"]))
        c.set_last_will(self.topic("status"), will, retain=True, qos=1)
        delay = 250
        for i in range(CONNECT_TRIES):
            try:
                # persistent session: acks sent while the node slept are kept for it
                c.connect(clean_session=False)
                return c
            except OSError as e:
                c.close()
                self.log("connect failed", e)
                if i + 1 < CONNECT_TRIES:
                    self.board.sleep_ms(delay)
                    delay *= 4
        return None

    def topic(self, leaf):
        return topic(self.cfg["district"], self.cfg["device"], leaf)

    def _status(self, pending):
        cfg = self.cfg
        now, valid = self.board.unix_time()
        return messages.encode(messages.make_status(
            cfg["device"], "online" if not pending else "buffering",
            time=iso_utc(now) if valid else None, reports=pending, firmware=VERSION,
            codebook=cfg.get("codebook", ""), profile=cfg.get("profile", "sensor-node")))

    def deliver(self):
        # True when the outbox is empty afterwards.
        pending = self.outbox.pending()
        c = self._connect()
        if c is None:
            return False
        try:
            c.subscribe(self.topic("ack"), 1)
            c.publish(self.topic("status"), self._status(len(pending)), retain=True, qos=1)
            for rid, data in pending:
                if rid not in self.acked:
                    c.publish(self.topic("report"), data, qos=1)
            waited = 0
            while waited < ACK_WAIT_S and not self._settle(pending):
                if not c.check_msg(1):
                    waited += 1
            self._settle(pending)
            c.disconnect()
        except OSError as e:
            self.log("link lost", e)
            c.close()
            self._settle(pending)
            return False
        return not self.outbox.pending()

    def _settle(self, pending):
        # Apply the acks received so far; True when every pending report has one.
        done = True
        for rid, data in pending:
            got = self.acked.get(rid)
            if got is None:
                done = False
                continue
            status, reason = got
            if not self.outbox.has(rid):
                continue
            if status == "rejected":
                # kept, never retried: written (durably) before it leaves the outbox
                with open(self.rejected_path, "a") as f:
                    f.write(json.dumps({"id": rid, "reason": reason,
                                        "report": data.decode()}) + "\n")
                    fsio.durable(f)
                self.log("rejected", rid, reason)
            self.outbox.ack(rid)
        return done

    # -- one wake
    def run_once(self):
        # Returns how long to sleep (ms) before the next cycle.
        tilted = self.read_tilt()
        if tilted is not None:
            if tilted and not self.state.tilted:
                self.capture()
            if tilted != self.state.tilted:
                self.state.tilted = tilted
                self.state.save()
        # every wake also refreshes the retained status: the node's heartbeat
        fails = 0 if self.deliver() else self.state.fails + 1
        if fails != self.state.fails:
            self.state.fails = fails
            self.state.save()
        if self.state.fails:
            return min(BACKOFF_MIN_MS << min(self.state.fails - 1, 16), BACKOFF_MAX_MS)
        return int(self.cfg.get("status_interval_s", 300) * 1000)
