# Stand-in for MicroPython's ``machine`` on the simulated board (WebAssembly port).
# Pin levels come from /.sim/pins.json ({"4": [1, 0, 0, ...]}: each read takes the next
# level, the last one stays), written by the rig; deepsleep records its duration in
# /.sim/sleep.json and ends the run as a real deep sleep ends the program.
import json

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


class DeepSleep(BaseException):
    pass


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
    return _load("board.json", {}).get("reset_cause", PWRON_RESET)


def unique_id():
    return b"\x5a\x1b\x00\x42"


def deepsleep(ms=0):
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
