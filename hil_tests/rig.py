"""The rig a HIL test runs on: a target board, a GNSS feed, a GPIO stimulus, a broker.

``SimRig`` builds everything here: the board is the MicroPython WebAssembly port
(gridlink.flash.simboard) with its console served over TCP for mpremote, the GNSS feed is
a real pty the capture is replayed into, the stimulus is a gpiozero MockFactory output
wired (by the rig) to the board's tilt pin, the broker a private Mosquitto.

``BenchRig`` drives real hardware: the board over mpremote on ``--port``, a USB-serial
adapter (``--gnss-feed``) wired to the port the receiver side reads (``--gnss-port``), a
relay on a GPIO of the bench Pi (``--stimulus-pin``) closing the tilt contact, a second
one (``--reset-pin``) on the board's RUN/EN pin, and the bench broker (``--broker-url``).
The wiring is in docs/flash.md.
"""

import contextlib
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.report_listener import ReportListener

SENSOR_PROFILE = "sensor-node"
TILT_PIN = json.loads((Path(__file__).resolve().parents[1] / "device_profiles" /
                       "sensor-node.json").read_text())["tilt"]["pin"]


class Feed:
    """A GNSS feed: ``port`` is what the receiver side opens; ``start()`` begins the
    replay; ``running()`` is true until the capture has been sent."""

    def __init__(self, port, start, running):
        self.port, self.start, self.running = port, start, running


@contextlib.contextmanager
def serial_feed(capture, feed_port, baud, read_port, speed=10.0):
    """Replay ``capture`` (its own times, paced by ``speed``) into serial port
    ``feed_port``; yields a Feed whose ``port`` is ``read_port``, the far end."""
    import serial
    from gridlink.firmware.sim.replay import epochs, find_capture, read_capture

    groups = epochs(read_capture(find_capture(capture)))
    out = serial.Serial(feed_port, baud)
    stop = threading.Event()

    def run():
        prev = None
        for tod, group in groups:
            if prev is not None and tod is not None and stop.wait(
                    min(max(tod - prev, 0), 1.0) / speed):
                return
            prev = tod if tod is not None else prev
            out.write(b"".join(group))
        out.flush()

    t = threading.Thread(target=run, name="gnss-feed", daemon=True)
    try:
        yield Feed(read_port, t.start, t.is_alive)
    finally:
        stop.set()
        if t.is_alive():
            t.join(5)
        out.close()


class SimRig:
    name = "sim"
    report_timeout = 30

    def __init__(self, workdir):
        from gpiozero import DigitalOutputDevice
        from gpiozero.pins.mock import MockFactory
        from gridlink.flash.simboard import SimBoard
        from gridlink.mosquitto import Mosquitto

        self.workdir = Path(workdir)
        self.broker = Mosquitto(self.workdir / "broker").start()
        self.broker_url = self.broker.url
        self.board = SimBoard(self.workdir / "board")
        # the relay on the bench Pi, here a MockFactory pin; the rig is the wire
        self.factory = MockFactory()
        self.relay = DigitalOutputDevice(17, pin_factory=self.factory)

    @property
    def board_url(self):
        """What ``gridlink flash`` and mpremote use: the board console's pyserial URL."""
        return self.board.serve_console()

    def console_done(self):
        self.board.stop_console()

    def tilt(self, on):
        self.relay.value = 1 if on else 0

    def wake(self):
        """One cycle of the board (a reset or a pin wake): runs main.py to its deep sleep."""
        self.board.stop_console()
        # relay closed → tilt contact closed → the pulled-up pin reads low
        self.board.set_pin(TILT_PIN, 0 if self.relay.value else 1)
        return self.board.run()

    @contextlib.contextmanager
    def gnss_feed(self, capture, speed=500.0):
        """Replay ``capture`` into a real pty; yields a Feed (``port`` to open, then
        ``start()``: bytes sent before the port is opened would be flushed by the open)."""
        from gridlink.firmware.sim.replay import Replayer

        # the capture's own times: the test compares them with gpsd's oracle
        rep = Replayer(capture, speed=speed, max_gap_s=1.0, retime=False)
        try:
            yield Feed(rep.path, rep.start, rep.is_alive)
        finally:
            rep.stop()

    def listener(self, ack=True):
        return ReportListener("127.0.0.1", self.broker.port, policy="accept" if ack else "silent",
                              client_id="hil-gateway")

    def close(self):
        self.relay.close()
        self.board.close()
        self.broker.stop()


class BenchRig:
    name = "bench"
    report_timeout = 90

    def __init__(self, workdir, opts):
        from gpiozero import DigitalOutputDevice

        self.workdir = Path(workdir)
        self.opts = opts
        self.board_url = opts["port"]
        self.broker_url = opts["broker_url"]
        self.relay = DigitalOutputDevice(opts["stimulus_pin"])
        self.reset = DigitalOutputDevice(opts["reset_pin"]) if opts.get("reset_pin") else None

    def console_done(self):
        pass

    def tilt(self, on):
        self.relay.value = 1 if on else 0

    def wake(self):
        """Pulse the board's RUN/EN line (the board boots main.py and runs one cycle)."""
        if self.reset is None:
            from gridlink.flash.targets import MpremoteTarget

            MpremoteTarget(self.board_url)._run("reset")
        else:
            self.reset.on()
            time.sleep(0.2)
            self.reset.off()
        return ""

    def gnss_feed(self, capture, speed=10.0):
        """Write ``capture`` into the feeding USB-serial adapter; yields a Feed on the port
        the receiver side reads (the adapters' TX→RX are wired together)."""
        return serial_feed(capture, self.opts["gnss_feed"], self.opts["gnss_baud"],
                           self.opts["gnss_port"], speed)

    def listener(self, ack=True):
        u = urlsplit(self.broker_url)
        tls = None
        if u.scheme == "mqtts":
            tls = {"ca_certs": self.opts.get("ca_cert")}
            if self.opts.get("ca_key"):
                # a broker that requires client certificates: the listener gets its own
                from gridlink.flash import pki

                key, crt = pki.sign_device("hil-gateway", self.opts["ca_cert"],
                                           self.opts["ca_key"], days=1)
                (self.workdir / "gw.key").write_bytes(key)
                (self.workdir / "gw.pem").write_bytes(crt)
                tls.update(certfile=str(self.workdir / "gw.pem"),
                           keyfile=str(self.workdir / "gw.key"))
        return ReportListener(u.hostname, u.port or (8883 if tls else 1883),
                              policy="accept" if ack else "silent", tls=tls,
                              client_id="hil-gateway")

    def close(self):
        self.relay.close()
        if self.reset is not None:
            self.reset.close()
