"""``gridlink demo``: its options, and the run from start to "stopped cleanly"."""

import signal
import threading

from .district import DEMO_OPERATOR, ORIGINS, District
from .errors import DemoError


def register(parser):
    parser.add_argument("--duration", type=float, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--data", metavar="DIR",
                        help="keep the store, photos and device state here (default: a temp "
                             "dir removed on exit)")
    parser.add_argument("--vehicles", type=int, default=3, help="simulated patrol vehicles (1-6)")
    parser.add_argument("--no-terminal", action="store_true", help="no fixed street terminal")
    parser.add_argument("--clips", type=int, default=1, metavar="N",
                        help="the first N vehicles record video: each report brings a clip "
                             "(8 s before the press, 4 s after) and a voice memo (default 1)")
    parser.add_argument("--http", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="where to serve the intake board (default: a free local port)")
    parser.add_argument("--press-every", type=float, default=4.0, metavar="S",
                        help="seconds between scripted button presses")
    parser.add_argument("--task-every", type=float, default=15.0, metavar="S",
                        help="seconds between scripted 核实 tasks (0: none)")
    parser.add_argument("--no-loop", action="store_true",
                        help="no simulated 派遣员 and department: reports stop at the queue")
    parser.add_argument("--speed", type=float, default=4.0,
                        help="NMEA replay speed factor of the vehicles")
    parser.add_argument("--map", help="compiled grid map (.glgm; default: the shipped 上街区 map)")
    parser.add_argument("--plain", action="store_true",
                        help="plain MQTT without certificates (default: mutual TLS with a "
                             "demo CA and the shipped ACL)")
    parser.add_argument("--cluster", action="store_true",
                        help="run over a three-node NATS JetStream cluster (nats-server) "
                             "instead of one Mosquitto")
    parser.add_argument("--rollout", metavar="V",
                        help="the Pis start from release 1.0 in update slot a; after "
                             "--rollout-after seconds release V is rolled out to the "
                             "district, canary first (watch it on the board's updates page)")
    parser.add_argument("--rollout-after", type=float, default=15.0, metavar="S",
                        help="seconds after the start the rollout begins (default 15)")
    parser.add_argument("--quiet", action="store_true", help="no live summary line")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args):
    if not 1 <= args.vehicles <= len(ORIGINS):
        raise DemoError(f"--vehicles: 1 to {len(ORIGINS)}")
    if not 0 <= args.clips <= args.vehicles:
        raise DemoError(f"--clips: 0 to the number of vehicles ({args.vehicles})")
    if args.press_every <= 0:
        raise DemoError("--press-every: more than 0 seconds")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with District(args) as district:
            print(f"sign in on the board as: {DEMO_OPERATOR}  password: {district.password}",
                  flush=True)
            print(f"read-only API token (Authorization: Bearer …): {district.token}", flush=True)
            print(f"fleet technician's API token (gridlink fleet config): "
                  f"{district.fleet_token}", flush=True)
            print(f"intake board: {district.board_url}/", flush=True)
            print(f"broker: {district.broker_url}  data: {district.data}", flush=True)
            if district.cluster is not None:
                print(f"cluster: {len(district.cluster.nodes)} nats-server nodes behind that "
                      f"front door; the gateway on {district.gateway_broker_url}", flush=True)
            if district.ota is not None:
                print(f"updates page: {district.board_url}/board/updates.html (rollout of pi "
                      f"{args.rollout} after {args.rollout_after:g} s)", flush=True)
            district.run(stop, duration=args.duration, live=not args.quiet)
            rollout = district.rollout_line()
            district.stop_devices()
            summary = district.summary()
            loop = district.loop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if loop is not None:
        ended = dict(loop.outcome, **dict.fromkeys(loop.stories, "unfinished"))
        print("supervision loop: " + ", ".join(f"{k} {v}" for k, v in ended.items()),
              flush=True)
    if rollout is not None:
        print(rollout, flush=True)
    print("stopped cleanly: " + summary.line(), flush=True)
    return 0
