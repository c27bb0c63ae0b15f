# Artifacts over the piece path: a file a signed desired-state document names by its
# sha256 (a code book, a grid map) is fetched piece by piece over …/ota/get → …/ota/chunk
# (protocol §3.9, file <kind>/<sha256>) into a .part file on flash, and checked against
# that sha256 before anything uses it.  A fetch cut short goes on from the bytes in the
# .part file at the next wake.  Too large a file, one the gateway does not have, and one
# that does not hash are refused (ConfigRefused: the document is refused whole).
from gridcore import fsio, otachunk
from gridcore.desired import ConfigRefused

PIECE = 4096
REPLY_WAIT_S = 5
TRIES = 3
# the document's field a file that does not hash is refused under
HASH_FIELD = {"codebook": "codebook_sha256", "map": "map"}


class Stop(Exception):
    # no answer on the link: go on at the next wake
    pass


class Pieces:
    def __init__(self, feed=None, log=print):
        self.feed = feed or (lambda: None)
        self.log = log
        self.reply = None

    def on_chunk(self, msg):
        try:
            self.reply = otachunk.parse_reply(msg)
        except Exception as e:
            self.log("bad artifact piece", e)

    def _piece(self, client, topic_get, kind, version, name, offset):
        want = otachunk.make_request(version, name, offset, PIECE)
        for _ in range(TRIES):
            self.reply = None
            client.publish(topic_get, want, qos=0)
            waited = 0
            while waited < REPLY_WAIT_S:
                if not client.check_msg(1):
                    waited += 1
                got = self.reply
                if got and got[0].get("file") == name and got[0].get("offset") == offset:
                    head, data = got
                    if "error" in head:
                        raise ConfigRefused(kind, "the gateway has no such " + kind + ": "
                                            + str(head["error"])[:120], kind)
                    return head["size"], data
        raise Stop(name)

    def fetch(self, client, topic_get, kind, sha, version, part, most):
        # The file <kind>/<sha> into ``part``, checked; ConfigRefused when it must be
        # refused (``part`` removed), Stop when the link gave no answer (``part`` kept).
        name = kind + "/" + sha
        have = fsio.size(part) if fsio.exists(part) else 0
        size = None
        while size is None or have < size:
            total, data = self._piece(client, topic_get, kind, version, name, have)
            if total > most:
                fsio.remove(part)
                raise ConfigRefused(kind, "the " + kind + " is " + str(total)
                                    + " bytes, larger than a node holds ("
                                    + str(most) + ")", kind)
            if (size is not None and total != size) or (not data and have < total):
                fsio.remove(part)
                raise Stop("the " + kind + " changed on the gateway")
            size = total
            with open(part, "ab") as f:
                f.write(data)
            have += len(data)
            self.feed()
        got = fsio.file_sha256(part)
        if got != sha:
            fsio.remove(part)
            raise ConfigRefused("hash", "the " + kind + "'s file hashes to " + got[:12]
                                + ", not the " + sha[:12] + " the document names",
                                HASH_FIELD[kind])
