"""Prometheus metrics of one gateway process (its own registry, so tests can run several)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
        self.latency = Histogram("gridlink_gateway_publish_to_commit_seconds", "Report publish "
                                 "(sent_at user property, else report time) to commit",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("gridlink_gateway_queue_depth", "Messages received but not "
                                 "yet committed (never acknowledged to the broker)", registry=r)
        self.commit_failures = Counter("gridlink_gateway_commit_failures", "Batches whose "
                                       "commit failed (retried; nothing acknowledged)",
                                       registry=r)
        self.connected = Gauge("gridlink_gateway_broker_connected", "1 while connected to the "
                               "broker", registry=r)
        self.devices_online = Gauge("gridlink_gateway_devices_online", "Devices whose last "
                                    "status is online or buffering", registry=r)

    def render(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
