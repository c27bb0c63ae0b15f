"""A link shaper in user space: a TCP relay that gives a connection a mobile link's
delay, jitter, loss, bandwidth and outages (the kernel's netem is not available on the CI
machines).

``Shaper(target_port, profile)`` listens on ``port``; every connection to it is relayed
to ``target`` through two one-way links (up: client → target, down: target → client).
Each link is modelled as a bottleneck of ``rate_kbps`` followed by a propagation delay:

- a chunk read from one side is split into segments of ``MSS`` bytes; each waits for the
  link to be free, takes ``size·8/rate`` to send, then arrives ``delay_ms`` ± a uniform
  ``jitter_ms`` later;
- loss: TCP cannot lose bytes, so a lost segment (probability ``loss``) costs what TCP
  pays for it, a retransmission timeout (``max(200 ms, 3 × delay)``, Linux's minimum RTO
  against the round trip) added to that segment — and, bytes staying in order, to every
  segment behind it;
- order is kept: no segment arrives before the one sent ahead of it.

Outages: ``cut(mode="reset")`` drops every connection (both sides closed) and closes new
ones at once until ``restore()``: a modem that loses its bearer.  ``cut(mode="stall")`` keeps the
connections but holds every byte (and lets new connections hang) until ``restore()``,
when what was held flows on: a radio that goes dark in a tunnel, with TCP retransmitting
into the void; a peer's keepalive may still give up first.  ``cut(seconds=…)`` restores
by itself.

``bytes_up`` / ``bytes_down`` count what crossed the relay (TCP payload; ``segments``
counts the segments, for the 40 bytes of TCP/IP header each costs on the wire).

The relay runs an asyncio loop in a daemon thread; every public method is thread-safe.
With the ``lan`` profile (no delay, loss or limit) it is the plain relay the gateway tests
cut between the gateway and its database or broker (tests/gateway/test_faults.py,
test_link.py).
"""

import asyncio
import contextlib
import random
import threading
import time
from dataclasses import dataclass, replace

MSS = 1448           # TCP payload per segment on a 1500-byte MTU with timestamps
HEADER_BYTES = 40    # IPv4 + TCP header per segment (options not counted)


class ShaperError(Exception):
    """A shaper that cannot start or a profile that does not exist."""


@dataclass(frozen=True)
class Profile:
    """One link: one-way ``delay_ms`` ± ``jitter_ms``, segment ``loss`` (0–1), a
    ``rate_kbps`` bottleneck per direction (0: none), and for the tunnel profile an
    outage of ``cut_s`` seconds the patrol schedules."""

    name: str
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rate_kbps: float = 0.0
    cut_s: float = 0.0

    def rto_s(self):
        """The retransmission timeout a lost segment costs."""
        return max(0.2, 3 * self.delay_ms / 1000)


# Typical Chinese urban mobile links, one way (half the round trip).  4G: LTE in town;
# 3G: TD-SCDMA/WCDMA HSPA; weak: the 300 ms, 2 % loss at a cell edge; tunnel:
# a 3G link that goes dark for 30 s.
PROFILES = {
    "lan": Profile("lan"),
    "4G": Profile("4G", delay_ms=25, jitter_ms=10, loss=0.001, rate_kbps=10_000),
    "3G": Profile("3G", delay_ms=100, jitter_ms=40, loss=0.005, rate_kbps=1_000),
    "weak": Profile("weak", delay_ms=300, jitter_ms=100, loss=0.02, rate_kbps=200),
    "tunnel": Profile("tunnel", delay_ms=100, jitter_ms=40, loss=0.005, rate_kbps=1_000,
                      cut_s=30.0),
}


def profile(name_or_profile):
    if isinstance(name_or_profile, Profile):
        return name_or_profile
    try:
        return PROFILES[name_or_profile]
    except KeyError:
        raise ShaperError(f"no link profile {name_or_profile!r} (known: "
                          f"{', '.join(PROFILES)})") from None


class _Link:
    """One direction of one connection: segments timed by the profile, written in order."""

    def __init__(self, shaper, writer, direction):
        self.shaper, self.writer, self.direction = shaper, writer, direction
        self.queue = asyncio.Queue(maxsize=256)   # full: the reader stops reading (backpressure)
        self.free_at = 0.0                        # when the bottleneck is free again
        self.last_at = 0.0                        # arrival of the last segment (order)

    def schedule(self, data):
        """Arrival times of ``data``'s segments under the current profile."""
        p, rnd = self.shaper.profile, self.shaper.random
        now = time.monotonic()
        out = []
        for i in range(0, len(data), MSS):
            seg = data[i:i + MSS]
            start = max(now, self.free_at)
            sent = start + (len(seg) * 8 / (p.rate_kbps * 1000) if p.rate_kbps else 0.0)
            self.free_at = sent
            arrive = sent + (p.delay_ms + rnd.uniform(-p.jitter_ms, p.jitter_ms)) / 1000
            if p.loss and rnd.random() < p.loss:
                arrive += p.rto_s()
                self.shaper.count("retransmits", 1)
            arrive = max(arrive, self.last_at, now)
            self.last_at = arrive
            out.append((arrive, seg))
        return out

    async def pump(self):
        """Write queued segments at their arrival times (later while the link stalls)."""
        while True:
            item = await self.queue.get()
            if item is None:
                break
            arrive, seg = item
            delay = arrive - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.shaper._flowing.wait()
            self.writer.write(seg)
            await self.writer.drain()
            self.shaper.count(self.direction, len(seg))
            self.shaper.count("segments", 1)


class Shaper:
    """A shaped TCP relay to ``target_host:target_port`` on ``127.0.0.1:port``."""

    def __init__(self, target_port, link="lan", target_host="127.0.0.1", host="127.0.0.1",
                 port=0, seed=None):
        self.target = (target_host, target_port)
        self.profile = profile(link)
        self.random = random.Random(seed)
        self.counters = {"bytes_up": 0, "bytes_down": 0, "segments": 0, "retransmits": 0,
                         "connections": 0, "refused": 0, "dropped": 0}
        self._lock = threading.Lock()
        self._conns = set()
        self._accepting = True
        self._timer = None
        self._loop = asyncio.new_event_loop()
        self._flowing = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port, ready),
                                        name="link-shaper", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            raise ShaperError(f"link shaper could not listen on {host}:{port}: {self._error}")

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, host, port, ready):
        asyncio.set_event_loop(self._loop)
        self._server, self._error = None, None
        try:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, host, port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
        ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._loop.close()

    async def _serve(self, c_reader, c_writer):
        if not self._accepting:
            self.count("refused", 1)
            c_writer.transport.abort()
            return
        try:
            t_reader, t_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.count("refused", 1)
            c_writer.transport.abort()
            return
        self.count("connections", 1)
        up, down = _Link(self, t_writer, "bytes_up"), _Link(self, c_writer, "bytes_down")
        pumps = [asyncio.ensure_future(up.pump()), asyncio.ensure_future(down.pump())]
        tasks = [*pumps, asyncio.ensure_future(self._read(c_reader, up)),
                 asyncio.ensure_future(self._read(t_reader, down))]
        conn = (c_writer, t_writer, tuple(tasks))
        self._conns.add(conn)
        try:
            # one side closed and what it sent has arrived: the connection ends
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._conns.discard(conn)
            for t in tasks:
                t.cancel()
            for w in (c_writer, t_writer):
                w.transport.abort()

    async def _read(self, reader, link):
        """Read one side into its link; at its end (close or reset) the link ends."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for item in link.schedule(data):
                    await link.queue.put(item)
        except OSError:
            pass
        await link.queue.put(None)

    def _call(self, fn, *args):
        """Run ``fn`` on the loop and wait for it."""
        async def wrapper():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    # -- control ----------------------------------------------------------------------------

    def count(self, key, n):
        with self._lock:
            self.counters[key] += n

    @property
    def bytes_up(self):
        return self.counters["bytes_up"]

    @property
    def bytes_down(self):
        return self.counters["bytes_down"]

    def wire_bytes(self):
        """Bytes on the wire both ways: payload plus a TCP/IP header per segment."""
        c = self.counters
        return c["bytes_up"] + c["bytes_down"] + HEADER_BYTES * c["segments"]

    def set_profile(self, link):
        self.profile = profile(link)

    def cut(self, seconds=None, mode="reset"):
        """Take the link down (``reset`` or ``stall``, see the module); with ``seconds``
        it comes back by itself."""
        if mode not in ("reset", "stall"):
            raise ShaperError(f"cut mode {mode!r}: reset or stall")

        def down():
            if mode == "reset":
                self._accepting = False
                for c_writer, t_writer, tasks in list(self._conns):
                    self.count("dropped", 1)
                    for t in tasks:
                        t.cancel()
                    for w in (c_writer, t_writer):
                        w.transport.abort()
            else:
                self._flowing.clear()
        self._cancel_timer()
        self._call(down)
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.restore)
            self._timer.daemon = True
            self._timer.start()

    def restore(self):
        """The link is back: new connections accepted, held bytes flow."""
        def up():
            self._accepting = True
            self._flowing.set()
        if self._loop.is_running():
            self._call(up)

    def is_up(self):
        return self._accepting and self._flowing.is_set()

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self):
        self._cancel_timer()
        if not self._loop.is_running():
            return

        async def shut():
            self._server.close()
            for c_writer, t_writer, _tasks in list(self._conns):
                for w in (c_writer, t_writer):
                    w.transport.abort()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def with_profile(base, **changes):
    """A profile like ``base`` (name or Profile) with some values changed."""
    return replace(profile(base), **changes)
