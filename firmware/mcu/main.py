# Boot entry of the gridlink sensor node: one cycle (wake, read the tilt switch, deliver
# pending reports, wait for the gateway's acks), then deep sleep. State lives on flash.
import sys

from gridnode import config
from gridnode.board import Board
from gridnode.node import Node
from gridnode.store import open_outbox

DATA = "/gridlink/"
UNPROVISIONED_SLEEP_MS = 600000
CRASH_SLEEP_MS = 60000


def main():
    try:
        cfg = config.load(DATA + "config.json")
    except config.ConfigError as e:
        print("gridnode:", e)
        Board().deepsleep(UNPROVISIONED_SLEEP_MS)
        return
    b = cfg["broker"]
    board = Board(tls={"ca": b["ca"], "cert": b["cert"], "key": b["key"]} if b.get("tls") else None)
    if not board.unix_time()[1]:
        board.set_clock()
    node = Node(cfg, board, open_outbox(DATA + "outbox"), DATA + "rejected.jsonl",
                DATA + "state.json")
    try:
        ms = node.run_once()
    except Exception as e:  # never a crash loop: log, sleep, try again
        sys.print_exception(e)
        ms = CRASH_SLEEP_MS
    # wake early when the switch leaves its last settled level
    wake = node.active if not node.state.tilted else 1 - node.active
    print("gridnode: sleep", ms)
    board.deepsleep(ms, wake_pin=node.pin, wake_level=wake)


main()
