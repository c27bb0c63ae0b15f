"""Prometheus metrics of one gateway process (its own registry, so tests can run several)."""

import threading
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                   60, 300)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.messages = Counter("gridlink_gateway_messages", "Inbound messages committed, by "
                                "kind and outcome", ["kind", "outcome"], registry=r)
        self.reports = Counter("gridlink_gateway_reports", "Reports committed, by outcome "
                               "(accepted, duplicate)", ["outcome"], registry=r)
        self.rejects = Counter("gridlink_gateway_rejects", "Messages dead-lettered, by reason",
                               ["reason"], registry=r)
        self.batch_size = Histogram("gridlink_gateway_batch_size", "Messages per committed "
                                    "batch", buckets=BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram("gridlink_gateway_commit_seconds", "Time to write and "
                                        "commit one batch", buckets=LATENCY_BUCKETS, registry=r)
        self.latency = BatchHistogram("gridlink_gateway_publish_to_commit_seconds", "Report "
                                      "publish (sent_at user property, else report time) to "
                                      "commit", LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("gridlink_gateway_queue_depth", "Messages received but not "
                                 "yet committed (never acknowledged to the broker)", registry=r)
        self.commit_failures = Counter("gridlink_gateway_commit_failures", "Batches whose "
                                       "commit failed (retried; nothing acknowledged)",
                                       registry=r)
        self.store_up = Gauge("gridlink_gateway_store_up", "0 from a failed commit until "
                              "the next one succeeds (the intake store is down or full), "
                              "else 1", registry=r)
        self.store_up.set(1)
        self.connected = Gauge("gridlink_gateway_broker_connected", "1 while connected to the "
                               "broker", registry=r)
        self.photo_resends = Counter("gridlink_gateway_photo_resends", "Resend acks asking a "
                                     "device for photo (or clip, memo) chunks again",
                                     registry=r)
        self.photos_expired = Counter("gridlink_gateway_photos_expired", "Unfinished photo "
                                      "transfers dropped by the sweep (no chunk for "
                                      "UNFINISHED_MAX_AGE_S)", registry=r)
        self.photo_bytes_waiting = Gauge("gridlink_gateway_photo_bytes_waiting", "Chunk bytes "
                                         "held in unfinished photos", registry=r)
        self.media_expired = Counter("gridlink_gateway_media_expired", "Unfinished clip and "
                                     "memo transfers dropped by the sweep", registry=r)
        self.media_bytes_waiting = Gauge("gridlink_gateway_media_bytes_waiting", "Chunk bytes "
                                         "held in unfinished clips and memos", registry=r)
        self.bridge_pending = Gauge("gridlink_gateway_bridge_pending", "Case messages waiting "
                                    "to leave for departments' systems and the city "
                                    "platform", registry=r)
        self.bridge_stuck = Gauge("gridlink_gateway_bridge_stuck", "Case messages that failed "
                                  "5 tries or more and are still being retried", registry=r)
        self.devices_online = Gauge("gridlink_gateway_devices_online", "Devices whose last "
                                    "status is online or buffering", registry=r)

    def render(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class BatchHistogram:
    """A Prometheus histogram fed a batch of values at a time.

    prometheus_client's ``Histogram.observe`` takes two locks per value; one value per
    committed report was ~8% of the gateway's writer thread at a backlog drain.  This
    counts a batch without a lock and adds it under one; it is exposed as the same
    ``_bucket``/``_count``/``_sum`` series (buckets are upper bounds, inclusive).
    """

    def __init__(self, name, documentation, buckets, registry=None):
        self.name, self.documentation = name, documentation
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values):
        counts, total, bounds = [0] * len(self._counts), 0.0, self.bounds
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum += total

    def collect(self):
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else _le(bound), running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                    sum_value=total)


def _le(bound):
    """The ``le`` label as prometheus_client writes it (0.5, 1.0, 10.0 …)."""
    return repr(float(bound))
