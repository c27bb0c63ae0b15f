"""The gateway's subscriptions and reply topics (parsing is the core's ``parse_topic``)."""

from gridlink.firmware.core import topics as core_topics

PREFIX = core_topics.PREFIX + "/"  # the core's topic tree, with the separator
SHARE_GROUP = "gridlink"

# What the gateway subscribes to (device → gateway), relative to the prefix.
INBOUND = ("+/+/report", "+/+/track", "+/+/status", "+/+/photo/+/+", "+/+/media/+/+",
           "+/+/task/result")

# A sensor node's requests for pieces of a release (protocol §3.9), QoS 0, when the
# gateway serves an update repository.
UPDATE_REQUEST_LEAF = "/ota/get"


def update_request_subscription(shared=True):
    plain = PREFIX + "+/+" + UPDATE_REQUEST_LEAF
    return f"$share/{SHARE_GROUP}/{plain}" if shared else plain


def ack_topic(district, device):
    return f"{PREFIX}{district}/{device}/ack"


def task_topic(district, device):
    return f"{PREFIX}{district}/{device}/task"


def subscriptions(shared=True, status="plain"):
    """Topic filters for one worker; ``status`` is "plain", "shared" or "none".

    Status is retained, and MQTT 5 never sends retained messages to a shared
    subscription, so one worker (worker 0) subscribes to status plainly — a fresh gateway
    then learns every device's last status at once — and the other workers not at all.
    """
    out = []
    for rel in INBOUND:
        plain = PREFIX + rel
        if rel.endswith("/status"):
            if status == "none":
                continue
            if status == "plain":
                out.append(plain)
                continue
        out.append(f"$share/{SHARE_GROUP}/{plain}" if shared else plain)
    return out
