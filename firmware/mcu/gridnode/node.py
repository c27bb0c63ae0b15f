# The sensor node's cycle: wake, read the tilt switch, deliver pending reports, sleep.
# What must survive a deep sleep or a power cut lives on flash: the outbox (core, with
# its rejected file), the report sequence file (core) and state.json (last settled level
# of the switch, delivery failures in a row, reports reissued), each written crash-safe.
# Acks: accepted/duplicate drop the report, rejected moves it to the rejected file,
# id_reused (the gateway holds another report under that id) sends it again under a fresh
# id; any other status keeps it, to be sent again at the next wake.
import json

from gridcore import fsio, messages
from gridcore.desired import ConfigRefused
from gridcore.errors import CoreError
from gridcore.outbox import REPORT
from gridcore.report import make_report, renumber
from gridcore.seqfile import SequenceFile, time_floor
from gridcore.timefmt import iso_utc
from gridcore.topics import topic

from . import VERSION
from .books import Books
from .debounce import read_stable
from .desired import Desired, read_keys
from .health import Health
from .maps import Maps
from .mqtt import MQTTClient, MQTTError
from .pieces import Pieces, Stop
from .renewal import Renewal
from .update import Updater

BACKOFF_MIN_MS = 2000
BACKOFF_MAX_MS = 600000
CONNECT_TRIES = 3
ACK_WAIT_S = 10
MAX_PER_WAKE = 20  # reports published per wake: bounds the time awake after an outage
RESTART_MS = 1000  # after installing an update: wake into it at once


class State:
    # tilted: the last settled level was tilted; fails: delivery failures in a row.
    # Written new-then-rename; a lost or torn file means "upright, no failures".
    def __init__(self, path):
        self.path = path
        self.tilted = False
        self.fails = 0
        self.reissued = 0
        data = fsio.read_file(path)
        try:
            d = json.loads(data)
            self.tilted = d["tilted"] is True
            self.fails = int(d["fails"])
            self.reissued = int(d.get("reissued", 0))
        except (TypeError, ValueError, KeyError, AttributeError):
            pass

    def save(self):
        data = json.dumps({"tilted": self.tilted, "fails": self.fails,
                           "reissued": self.reissued}).encode()
        fsio.write_file(self.path, data, self.path.rpartition("/")[0])


def _report_seq(payload):
    return json.loads(payload)["seq"]


class Node:
    def __init__(self, cfg, board, outbox, data_dir, log=print):
        self.cfg = cfg
        self.board = board
        self.outbox = outbox
        self.log = log
        self.state = State(fsio.join(data_dir, "state.json"))
        self.health = Health(fsio.join(data_dir, "health.json"), board, self._now())
        self.seq = self._sequence(fsio.join(data_dir, "seq"))
        t = cfg["tilt"]
        self.pin = board.input_pin(t["pin"], t.get("pull", "up"))
        self.active = t.get("active", 0 if t.get("pull", "up") == "up" else 1)
        self.stable_reads = max(2, t.get("debounce_ms", 50) // 10)
        self.acked = {}      # report id -> (status, reason), from the gateway's acks
        self.settled = set()  # outbox seqs acked or rejected during this wake
        # desired state: the centre's signed configuration (gridnode/desired.py), and the
        # code book and grid map it may name, fetched when not held (gridnode/pieces.py)
        self.pieces = Pieces(feed=board.feed, log=log)
        self.books = Books(data_dir, cfg.get("codebook"), log=log)
        self.maps = Maps(data_dir, cfg.get("position"), log=log)
        self.desired = Desired(data_dir, cfg["device"],
                               read_keys(fsio.join(data_dir, "config-keys")),
                               self.books.held, self.maps.held)
        # updates: the targets keys that sign release manifests, /gridlink/update-keys
        # (64 hex digits a line); without them the node takes no update offers
        keys = read_keys(fsio.join(data_dir, "update-keys"))
        self.updater = Updater(fsio.join(data_dir, "ota"), keys, log=log,
                               clock=self._now, feed=board.feed) if keys else None
        self.restart = False
        # certificate renewal (gridnode/renewal.py): with a client certificate; a renewed
        # identity on flash is used in place of the provisioned files
        self.renewal = None
        if board.tls:
            self.renewal = Renewal(data_dir, cfg["device"], board.tls, board.random_bytes,
                                   cfg.get("renew_before_days"), cfg.get("renew_ask_every_s"),
                                   log=log, tick=board.feed)
            board.tls = self.renewal.files()
        self.csr_sent = False

    def _now(self):
        now, valid = self.board.unix_time()
        return now if valid else None

    def _sequence(self, path):
        # a lost or damaged counter goes on above every report the outbox still holds,
        # the last acknowledged one and the clock (when set): never an id used before
        top = 0
        for _, _, p in self.outbox.pending(REPORT):
            top = max(top, _report_seq(p))
        for _, _, p, _ in self.outbox.rejected():
            top = max(top, _report_seq(p))
        return SequenceFile(path, floor=top, now=self._now())

    def topic(self, leaf):
        return topic(self.cfg["district"], self.cfg["device"], leaf)

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
            t["code"], grid=self.maps.grid or cfg.get("grid"), object_id=t["object"],
            source="sensor", text=t.get("text", ""),
            fixed_position=(pos["lat"], pos["lon"], pos.get("alt")) if pos else None,
            urgent=t.get("urgent") is True)
        # an urgent one (tilt.urgent) is delivered before the rest at the next wake
        self.outbox.append(REPORT, messages.encode(rep), t.get("urgent") is True)
        self.log("captured", rep["id"])
        return rep

    def _clock(self):
        return self.board.unix_time()[0]

    # -- delivery
    def _on_msg(self, tp, msg):
        tp = bytes(tp).decode()
        if tp == self.topic("ota/chunk"):   # a piece of a release, a code book or a map
            if self.updater is not None:
                self.updater.on_chunk(msg)
            self.pieces.on_chunk(msg)
            return
        if self.updater is not None and tp == self.topic("update"):
            self.updater.on_offer(msg)
            return
        if self.renewal is not None and tp == self.topic("cert"):
            self.renewal.on_cert(msg)
            return
        if tp == self.topic("config"):
            if self.desired.offer(msg):
                self.log("configuration", self.desired.version, "applied")
            elif self.desired.refused:
                self.log("configuration refused:", self.desired.refused["reason"],
                         self.desired.refused["field"] or "")
            return
        try:
            ack = messages.decode(msg, messages.validate_received_ack, 1024)
        except CoreError as e:
            self.log("bad ack", e)
            return
        if not messages.answers_reports(ack):
            return  # about a photo or track: a node sends neither
        for rid in messages.ack_ids(ack):  # one id, or several (a grouped ack)
            if rid is not None:
                self.acked[rid] = (ack["status"], ack["reason"])

    def _client(self, tls=None):
        # tls: the identity files to connect with, when not the board's (a trial)
        cfg = self.cfg
        b = cfg["broker"]
        board = self.board
        c = MQTTClient(cfg["device"], b["host"], b["port"], keepalive=b.get("keepalive", 60),
                       user=b.get("user"), password=b.get("password"),
                       timeout=b.get("timeout", 10),
                       open_socket=lambda h, p, t: board.open_socket(h, p, t, tls))
        c.set_callback(self._on_msg)
        will = messages.encode(messages.will_status(cfg["device"]))
        c.set_last_will(self.topic("status"), will, retain=True, qos=1)
        return c

    def _connect(self):
        c = self._client()
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

    def _status(self, pending):
        cfg = self.cfg
        now, valid = self.board.unix_time()
        return messages.encode(messages.make_status(
            cfg["device"], "buffering" if pending else "online",
            time=iso_utc(now) if valid else None, reports=pending, firmware=VERSION,
            uptime=self.health.uptime(now if valid else None),
            codebook=self.books.held or "", profile=cfg.get("profile", "sensor-node"),
            problems={"lost": self.outbox.lost, "reissued": self.state.reissued},
            config=self.desired.status() if self.desired.keys else None,
            ota=self.updater.status() if self.updater is not None else None,
            health=self.health.status(),
            cert=self.renewal.status() if self.renewal is not None else None))

    def _pending(self):
        # [(outbox seq, report id, payload)] in capture order, the oldest MAX_PER_WAKE
        out = []
        for s, _, p in self.outbox.pending(REPORT):
            out.append((s, json.loads(p)["id"], p))
            if len(out) == MAX_PER_WAKE:
                break
        return out

    def deliver(self):
        # Publish the status and every pending report, wait for the gateway's acks.
        # True when the link worked (acks still missing are retried on the next wake).
        pending = self._pending()
        c = self._connect()
        if c is None:
            return False
        try:
            if self.desired.keys:
                # first: its retained document arrives while the ack subscription is made
                c.subscribe(self.topic("config"), 1)
            if self.updater is not None:  # the rollout's retained offer
                c.subscribe(self.topic("update"), 1)
            if self.updater is not None or self.desired.keys:  # pieces: releases, books
                c.subscribe(self.topic("ota/chunk"), 0)
            c.subscribe(self.topic("ack"), 1)
            renewing = self.renewal is not None and (self.renewal.waiting()
                                                     or self.renewal.due(self._now()))
            if renewing:   # the centre's answer, kept by the broker while the node sleeps
                c.subscribe(self.topic("cert"), 1)
            self.desired.changed = False
            self._publish_status(c)
            for _, rid, data in pending:
                if rid not in self.acked:
                    c.publish(self.topic("report"), data, qos=1)
            if renewing:
                self._ask(c)
            waited = 0
            wait = self.cfg.get("ack_wait_s", ACK_WAIT_S)
            while waited < wait and not (self._settle(pending) and not self._awaiting_cert()):
                if not c.check_msg(1):
                    waited += 1
                    self.board.feed()  # a second of quiet: the wait goes on, bounded
                # a stream of messages that never lets it end is a hang: not fed
            if self.desired.wanted:
                self._fetch(c)
            if self.updater is not None:
                self._update(c)
            trial = self._check_cert()
            if self.desired.changed or (self.updater is not None and self.updater.changed) \
                    or (self.renewal is not None and self.renewal.changed):
                # a document came, an update moved on, a renewal was refused: say so now
                self._publish_status(c)
            c.disconnect()
        except OSError as e:
            self.log("link lost", e)
            c.close()
            self._settle(pending)
            return False
        if trial is not None:
            self._try_identity(trial)
            self._settle(pending)
        return True

    # -- certificate renewal
    def _ask(self, c):
        # The CSR, when due and not asked recently (a new key: the watchdog is fed).
        if self.renewal.answer is not None:
            return   # the answer to an earlier request came first (kept while it slept)
        now = self._now()
        try:
            msg = self.renewal.request(now)
        except OSError as e:   # the flash, not the link: said in the status
            self.renewal.fail("the new key could not be written: " + str(e))
            return
        if msg is not None:
            c.publish(self.topic("csr"), msg, qos=1)
            self.renewal.asked_at(now)
            self.csr_sent = True

    def _awaiting_cert(self):
        return self.csr_sent and self.renewal.answer is None

    def _check_cert(self):
        # The centre's answer of this wake: checked; the new identity's files written
        # beside the one in use when it is to be tried, else None.
        if self.renewal is None or self.renewal.answer is None:
            return None
        self.csr_sent = False
        new = self.renewal.check(self._now())
        return None if new is None else self.renewal.trial_files(new)

    def _try_identity(self, files):
        # A connection with the new identity: when the broker accepts it, it is kept and
        # says so in the status; otherwise the old one stays and the status says why.
        c = self._client(files)
        try:
            c.connect(clean_session=False)
        except (OSError, MQTTError) as e:
            c.close()
            self.renewal.drop_trial(files, str(e) or "no answer")
            c = self._connect()
            if c is None:
                return
        else:
            self.renewal.take(files)
            self.board.tls = self.renewal.files()
        try:
            self._publish_status(c)
            c.disconnect()
        except OSError as e:
            self.log("link lost", e)
            c.close()

    def _publish_status(self, c):
        c.publish(self.topic("status"), self._status(self.outbox.depth(REPORT)), retain=True,
                  qos=1)

    def _fetch(self, c):
        # The code book and map a document names, each fetched and checked, then all put
        # in place, then the document applied (all or nothing).
        message, doc, wants = self.desired.wanted
        self.desired.wanted = None
        get = self.topic("ota/get")
        installs = []
        try:
            for kind in wants:
                if kind == "codebook":
                    installs.append(self.books.fetch(self.pieces, c, get, doc["codebook"],
                                                     doc["codebook_sha256"]))
                else:
                    installs.append(self.maps.fetch(self.pieces, c, get, doc["map"]))
        except Stop as e:
            self.log("configuration", doc["version"], "continues next wake:", e)
            return
        except ConfigRefused as e:
            for part in (self.books.part, self.maps.part):   # nothing of it is kept
                fsio.remove(part)
            self.desired.refuse_fetched(e, message)
            self.log("configuration refused:", e.reason, e.field or "")
            return
        for install in installs:
            install()
        self.desired.codebook, self.desired.map = self.books.held, self.maps.held
        if self.desired.offer(message):
            self.log("configuration", self.desired.version, "applied")

    def _update(self, c):
        # The link works (the broker answered): a new image on trial is kept; then the
        # offered release is fetched, as far as this wake goes.
        if self.updater.on_trial():
            self.updater.mark_good()
        elif self.updater.run(c, self.topic("ota/get")):
            self.restart = True

    def _settle(self, pending):
        # Apply the acks received so far; True when every pending report has one.
        done = True
        fresh = []
        top = 0
        for oseq, rid, data in pending:
            got = self.acked.get(rid)
            if got is None:
                done = False
            elif oseq in self.settled:
                continue
            else:
                action = messages.ack_action({"status": got[0]})
                if action == messages.KEEP:  # stays in the outbox: sent again next wake
                    self.log("kept", rid, got[0])
                    self.settled.add(oseq)
                    continue
                if action == messages.REJECT:
                    # kept in the outbox's rejected file with the reason, never retried
                    self.outbox.reject(oseq, got[1] or "rejected")
                    self.log("rejected", rid, got[1])
                elif action == messages.REISSUE:
                    self._reissue(oseq, rid, got[0])
                else:
                    fresh.append(oseq)
                    top = max(top, _report_seq(data))
                self.settled.add(oseq)
        if fresh:
            self.outbox.ack_many(fresh)
            self.seq.acknowledged(top)
        return done

    def _reissue(self, oseq, rid, why):
        # Not stored under this id: the same report goes again (next wake) under a fresh
        # one, stored before the old record is settled (a power cut can only send it twice).
        try:
            _, payload = self.outbox.get(oseq)
            old = json.loads(payload)
            self.seq.skip_past(max(old["seq"], time_floor(self._now())))
            new = renumber(old, self.seq.next())
            self.outbox.append(REPORT, messages.encode(new))
        except CoreError as e:
            self.log("reissue failed", rid, e)  # stays pending: sent again next wake
            return
        self.outbox.ack(oseq)
        self.state.reissued += 1
        self.state.save()
        self.log("reissued", rid, "as", new["id"], why)

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
        if fails:
            return min(BACKOFF_MIN_MS << min(fails - 1, 16), BACKOFF_MAX_MS)
        if self.restart:
            return RESTART_MS
        if self.outbox.depth(REPORT):
            return BACKOFF_MIN_MS * 5  # delivered but not yet acknowledged: ask again soon
        return int(self.desired.interval_s(self.cfg.get("status_interval_s", 300)) * 1000)
