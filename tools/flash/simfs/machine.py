# Stand-in for MicroPython's ``machine`` on the simulated board (WebAssembly port).
# Pin levels come from /.sim/pins.json ({"4": [1, 0, 0, ...]}: each read takes the next
# level, the last one stays), written by the rig; deepsleep records its duration in
# /.sim/sleep.json and ends the run as a real deep sleep ends the program.  WDT is a
# watchdog that resets the board (ends the run, the next start's reset_cause WDT_RESET,
# /.sim/wdt.json says it fired) when not fed in time; it is checked wherever the program
# meets the simulated board (every socket call, pin read and machine call), so a wake
# that hangs on the link or loops over it is cut there, as a hardware watchdog cuts it.
import json
import os
import time

if not hasattr(os, "urandom"):
    # the WebAssembly port has no random source; a board has its RNG: Node's here
    import binascii

    import js

    _crypto = js.process.getBuiltinModule("crypto")

    def _urandom(n):
        return binascii.unhexlify(_crypto.randomBytes(n).toString("hex"))

    os.urandom = _urandom

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_SIM = "/.sim/"


def _load(name, default):
    try:
        with open(_SIM + name) as f:
            return json.load(f)
    except OSError:
        return default


def _save(name, obj):
    with open(_SIM + name, "w") as f:
        json.dump(obj, f)


class Reset(BaseException):
    # the board restarts: the program ends here (flash keeps what it holds)
    pass


class DeepSleep(Reset):
    pass


class WatchdogReset(Reset):
    pass


_wdt = None


class WDT:
    def __init__(self, id=0, timeout=5000):
        global _wdt
        if timeout <= 0:
            raise ValueError("timeout")
        self.timeout = timeout
        self.fed = time.ticks_ms()
        _wdt = self
        _save("wdt.json", {"timeout_ms": timeout, "fired": False})

    def feed(self):
        _watch()
        self.fed = time.ticks_ms()


def _watch():
    if _wdt is None:
        return
    late = time.ticks_diff(time.ticks_ms(), _wdt.fed)
    if late > _wdt.timeout:
        board = _load("board.json", {})
        board["reset_cause"] = WDT_RESET
        _save("board.json", board)
        _save("wdt.json", {"timeout_ms": _wdt.timeout, "fired": True, "unfed_ms": late})
        print("machine: watchdog reset after", late, "ms unfed")
        raise WatchdogReset(late)


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, num, mode=IN, pull=None):
        self.num = num
        self.mode = mode
        self.pull = pull

    def value(self, v=None):
        _watch()
        pins = _load("pins.json", {})
        levels = pins.get(str(self.num))
        if v is not None:
            pins[str(self.num)] = [1 if v else 0]
            _save("pins.json", pins)
            return None
        if not levels:
            return 1 if self.pull == Pin.PULL_UP else 0
        if len(levels) > 1:
            pins[str(self.num)] = levels[1:]
            _save("pins.json", pins)
        return levels[0]

    def __call__(self, v=None):
        return self.value(v)


def reset_cause():
    _watch()
    return _load("board.json", {}).get("reset_cause", PWRON_RESET)


def unique_id():
    return b"\x5a\x1b\x00\x42"


def deepsleep(ms=0):
    _watch()
    board = _load("board.json", {})
    board["reset_cause"] = DEEPSLEEP_RESET
    _save("board.json", board)
    _save("sleep.json", {"ms": ms})
    raise DeepSleep(ms)


def reset():
    board = _load("board.json", {})
    board["reset_cause"] = SOFT_RESET
    _save("board.json", board)
    raise DeepSleep(0)
