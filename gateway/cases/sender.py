"""The bridge's sender: takes due messages from the outbox and delivers them over HTTP.

One round claims what is due (a lease, so several senders never send one message at the
same time), sends each through its destination's adapter (``cases.reach``) and marks it
sent, or due again after a backoff; a case's messages to one destination leave in the
order of its moves (``Outbox.claim``).  A try that times out may have been taken by the
receiver all the same: the next try carries the same idempotency key, and the receiver
keeps one.  ``run(stop)`` loops until ``stop`` (a ``threading.Event``) is set; the
gateway runs it (``gridlink gateway run``).
"""

import logging
import urllib.error
import urllib.request

from . import reach as rc

log = logging.getLogger("gridlink.gateway.bridge")
ANSWER_MAX = 64 * 1024


def http_send(method, url, headers, body, timeout):
    """(status, answer bytes) of one request; raises OSError when no answer came
    (refused, reset, timed out)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(ANSWER_MAX)
    except urllib.error.HTTPError as err:
        return err.code, err.read(ANSWER_MAX)


class BridgeSender:
    """Delivers an :class:`~.outbox.Outbox`'s messages.  ``send`` is the transport
    (``http_send``); ``metrics`` (``gateway.metrics.Metrics``) gets the pending and stuck
    counts after each round."""

    def __init__(self, outbox, *, send=http_send, metrics=None, interval_s=1.0, base_s=2.0,
                 cap_s=600.0, batch=20):
        self.outbox = outbox
        self.send = send
        self.metrics = metrics
        self.interval_s = interval_s
        self.base_s, self.cap_s = base_s, cap_s
        self.batch = batch

    def round(self, passes=10):
        """What is due, sent: {"sent": n, "failed": n}.  A case's later message waits
        until the one before it (to the same destination) is sent, so while a pass sent
        something another pass follows (at most ``passes``)."""
        done = {"sent": 0, "failed": 0}
        lease = rc.TIMEOUT_MAX_S + 30.0
        for _ in range(passes):
            sent = 0
            for msg_id, destination, message in self.outbox.claim(lease, self.batch):
                ok = self._deliver(msg_id, destination, message)
                done["sent" if ok else "failed"] += 1
                sent += ok
            if not sent:
                break
        self._gauge()
        return done

    def _deliver(self, msg_id, destination, message):
        target = self.outbox.reach(destination)
        if target is None:
            self._failed(msg_id, f"{destination} has no system setting (how to reach it)")
            return False
        if not rc.carries(target, message):
            self._failed(msg_id, f"{destination} is reached by {target['adapter']} now, "
                                 f"which takes only new requests, not a {message['event']}")
            return False
        method, url, headers, body = rc.request_for(target, message)
        try:
            status, answer = self.send(method, url, headers, body,
                                       target.get("timeout_s", rc.DEFAULT_TIMEOUT_S))
        except (OSError, ValueError) as exc:  # refused, reset, timed out; a bad URL
            cause = getattr(exc, "reason", exc)  # urllib wraps the socket's error
            self._failed(msg_id, f"{type(cause).__name__}: {cause}")
            return False
        verdict, detail = rc.outcome(target["adapter"], status, answer)
        if verdict == "sent":
            self.outbox.sent(msg_id, detail, status)
            log.info("bridge: %s sent (HTTP %s)", msg_id, status)
            return True
        self._failed(msg_id, detail, status)
        return False

    def _failed(self, msg_id, why, status=None):
        attempts = self.outbox.failed(msg_id, why, status, base_s=self.base_s, cap_s=self.cap_s)
        log.warning("bridge: %s not delivered (try %s): %s", msg_id, attempts, why)

    def _gauge(self):
        if self.metrics is None:
            return
        counts = self.outbox.counts()
        self.metrics.bridge_pending.set(counts["pending"])
        self.metrics.bridge_stuck.set(counts["stuck"])

    def run(self, stop):
        """Rounds every ``interval_s`` until ``stop`` is set; a failing store is logged and
        tried again next round."""
        while not stop.is_set():
            try:
                self.round()
            except Exception:  # the store is away for a moment: the next round tries again
                log.exception("bridge round failed")
            stop.wait(self.interval_s)
