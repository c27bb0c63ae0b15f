# The sensor node's program: one cycle (wake, read the tilt switch, deliver pending
# reports, wait for the gateway's acks, take an update), then deep sleep.  State lives on
# flash.  main.py's boot selector imports it from the image directory it chose.
import os
import sys

from gridcore.outbox import Outbox

from gridnode import config
from gridnode.board import Board
from gridnode.node import Node

DATA = "/gridlink/"
OUTBOX = DATA + "outbox"
OUTBOX_BYTES = 64 * 1024
UNPROVISIONED_SLEEP_MS = 600000
CRASH_SLEEP_MS = 60000
CONSOLE_WINDOW_S = 3


def main(slot="a"):
    print("gridnode: image", slot)
    board = Board()
    cfg = None
    try:
        cfg = config.load(DATA + "config.json")
    except config.ConfigError as e:
        print("gridnode:", e)
    if not board.woke_from_deepsleep():
        # after a power-on or reset, give a technician's console (mpremote sends Ctrl-C)
        # a moment to stop the program before it goes to sleep
        board.sleep_ms(int((cfg or {}).get("console_window_s", CONSOLE_WINDOW_S) * 1000))
    if cfg is None:
        board.deepsleep(UNPROVISIONED_SLEEP_MS)
        return
    b = cfg["broker"]
    if b.get("tls"):
        board.tls = {"ca": b["ca"], "cert": b["cert"], "key": b["key"]}
    board.wifi = cfg.get("wifi")
    if not board.unix_time()[1]:
        board.set_clock()
    try:  # noqa: SIM105 (no contextlib on MicroPython)
        os.mkdir(OUTBOX)
    except OSError:
        pass  # exists
    node = Node(cfg, board, Outbox(OUTBOX, max_bytes=OUTBOX_BYTES), DATA)
    try:
        ms = node.run_once()
    except Exception as e:  # never a crash loop: log, sleep, try again
        sys.print_exception(e)
        ms = CRASH_SLEEP_MS
    # wake early when the switch leaves its last settled level
    wake = node.active if not node.state.tilted else 1 - node.active
    print("gridnode: sleep", ms)
    board.deepsleep(ms, wake_pin=node.pin, wake_level=wake)

