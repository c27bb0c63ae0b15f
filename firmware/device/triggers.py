"""Buttons and sensors through gpiozero, built over the pin factory the hardware gives.

A short press (released before ``hold_s``) makes one report with the button's class.  A
long press (held ``hold_s``) cancels instead: the runtime drops the last button report if
it is still within its grace period — or, with the profile's ``press.long_press``
"urgent", files an urgent report (突发事件) of the button's class.  The emergency button
files an urgent report of its own class.  The PIR sensor makes a report on motion (at most
once per ``cooldown_s``), the call button an operator report, the operator buttons
answer the open task.  On gpiozero's ``MockFactory`` (the sim backend) ``simulate``
presses them from software.
"""

import logging
import threading
import time

log = logging.getLogger("gridlink.device.triggers")


class Triggers:
    """The profile's inputs wired to callbacks: ``on_press(name)``, ``on_cancel(name)``,
    ``on_motion()``, ``on_call()``, ``on_answer(yes)``, ``on_urgent(name)`` (a long press
    in ``long_press`` "urgent" mode, or ``"emergency"``: the emergency button);
    ``pin_factory`` None is gpiozero's default (lgpio on a Pi 5 / 4)."""

    def __init__(self, profile, *, pin_factory=None, on_press, on_cancel, on_motion, on_call,
                 on_answer, on_urgent=None):
        from gpiozero import Button, MotionSensor

        self.factory = pin_factory
        press = profile["press"]
        bounce = press["bounce_time_s"] or None
        self.hold_s = press["hold_s"]
        self.devices = {}
        self._held = {}
        self._closed = False
        kw = {"pin_factory": self.factory} if self.factory is not None else {}
        on_urgent = on_urgent or (lambda name: None)
        on_held = on_urgent if press.get("long_press") == "urgent" else on_cancel
        for b in profile.get("buttons", ()):
            btn = Button(b["pin"], pull_up=True, bounce_time=bounce, hold_time=self.hold_s, **kw)
            name = b["name"]
            btn.when_pressed = lambda n=name: self._held.__setitem__(n, False)
            btn.when_held = lambda n=name: self._on_held(n, on_held)
            btn.when_released = lambda n=name: self._on_released(n, on_press)
            self.devices[name] = btn
        if "operator_buttons" in profile:
            ops = profile["operator_buttons"]
            for name, yes in (("yes", True), ("no", False)):
                btn = Button(ops[name], pull_up=True, bounce_time=bounce, **kw)
                btn.when_pressed = lambda y=yes: on_answer(y)
                self.devices[name] = btn
        if "call_button" in profile:
            btn = Button(profile["call_button"]["pin"], pull_up=True, bounce_time=bounce, **kw)
            btn.when_pressed = lambda: on_call()
            self.devices["call"] = btn
        if "emergency_button" in profile:
            btn = Button(profile["emergency_button"]["pin"], pull_up=True, bounce_time=bounce,
                         **kw)
            btn.when_pressed = lambda: on_urgent("emergency")
            self.devices["emergency"] = btn
        if "pir" in profile:
            cooldown = profile["pir"]["cooldown_s"]
            pir = MotionSensor(profile["pir"]["pin"], pull_up=False, **kw)
            last = [None]

            def motion():
                now = time.monotonic()
                if last[0] is not None and now - last[0] < cooldown:
                    log.info("PIR: motion within the %ss cooldown, no new report", cooldown)
                    return
                last[0] = now
                on_motion()

            pir.when_motion = motion
            _ = pir.value        # blocks until the sampling queue is full: events armed
            time.sleep(2 * pir._queue.sample_wait)   # …and the first state is recorded
            self.devices["pir"] = pir

    def _on_held(self, name, on_cancel):
        self._held[name] = True
        on_cancel(name)

    def _on_released(self, name, on_press):
        if not self._held.pop(name, False) and not self._closed:
            on_press(name)

    @property
    def names(self):
        return sorted(self.devices)

    def simulate(self, name, hold=False):
        """Press (or hold) a button, or trip the PIR, on the mock pins (simulation only)."""
        from gpiozero.pins.mock import MockFactory

        from ..errors import DeviceError

        if not isinstance(self.factory, MockFactory):
            raise DeviceError("pressing buttons from software works only in simulation (--sim)")
        dev = self.devices.get(name)
        if dev is None:
            raise DeviceError(f"no input {name!r}; inputs: {', '.join(self.names)}")
        pin = dev.pin
        if name == "pir":
            pin.drive_high()
            time.sleep(0.4)   # MotionSensor samples at 10 Hz
            pin.drive_low()
            return
        pin.drive_low()
        time.sleep(self.hold_s + 0.3 if hold else 0.1)
        pin.drive_high()
        time.sleep(0.02)

    def is_alive(self):
        """True while every input is open (none was closed under the device)."""
        return not self._closed and not any(dev.closed for dev in self.devices.values())

    def close(self):
        """Close the inputs; their pin factory belongs to the hardware, which closes it."""
        self._closed = True
        for dev in self.devices.values():
            dev.close()


class Pace:
    """A tiny helper to run ``fn`` every ``period`` seconds in a daemon thread."""

    def __init__(self, period, fn, name):
        self.period, self.fn, self.name = period, fn, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def is_alive(self):
        return self._thread.is_alive()

    def _run(self):
        while not self._stop.wait(self.period):
            try:
                self.fn()
            except Exception:  # keep ticking; the failure is logged
                log.exception("periodic %s failed", self._thread.name)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
