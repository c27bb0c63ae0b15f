# Code books as artifacts: a desired-state document that names a code book this node does
# not hold, with the sha256 of its file (codebook_sha256, signed with the document), has
# the file fetched piece by piece over …/ota/get → …/ota/chunk (protocol §3.9, file
# codebook/<sha256>) into codebook.json.part, checked — its sha256, then that it is a code
# book with the id the document names — and put in place of /gridlink/codebook.json by a
# rename; codebook.id (the id it holds) follows.  Only then is the document applied.  A
# file that does not hash, or is another book, is refused whole: the old book stays.
# A fetch cut short goes on from the bytes in the .part file at the next wake.
import binascii
import hashlib
import json

from gridcore import fsio, otachunk
from gridcore.desired import ConfigRefused

PIECE = 4096
REPLY_WAIT_S = 5
TRIES = 3
BOOK_MAX = 256 * 1024


class Stop(Exception):
    # no answer on the link: go on at the next wake
    pass


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()


class Books:
    def __init__(self, data_dir, provisioned_id, feed=None, log=print):
        self.dir = data_dir.rstrip("/") or "/"
        self.path = fsio.join(self.dir, "codebook.json")
        self.part = self.path + ".part"
        self.id_path = fsio.join(self.dir, "codebook.id")
        held = fsio.read_file(self.id_path)
        self.held = held.decode().strip() if held else provisioned_id
        self.feed = feed or (lambda: None)
        self.log = log
        self.reply = None

    def on_chunk(self, msg):
        try:
            self.reply = otachunk.parse_reply(msg)
        except Exception as e:
            self.log("bad code book piece", e)

    def _piece(self, client, topic_get, version, name, offset):
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
                        raise ConfigRefused("codebook", "the gateway has no such code book: "
                                            + str(head["error"])[:120], "codebook")
                    return head["size"], data
        raise Stop(name)

    def fetch(self, client, topic_get, book_id, sha):
        # Fetch, check and install the book; ConfigRefused when it must be refused (the
        # old book stays), Stop when the link gave no answer (the .part file is kept).
        name = "codebook/" + sha
        version = book_id.rpartition("@")[2]
        have = fsio.size(self.part) if fsio.exists(self.part) else 0
        size = None
        while size is None or have < size:
            total, data = self._piece(client, topic_get, version, name, have)
            if total > BOOK_MAX:
                raise ConfigRefused("codebook", "the code book is larger than a node holds",
                                    "codebook")
            if (size is not None and total != size) or (not data and have < total):
                fsio.remove(self.part)
                raise Stop("the code book changed on the gateway")
            size = total
            with open(self.part, "ab") as f:
                f.write(data)
            have += len(data)
            self.feed()
        try:
            self._check(book_id, sha)
        except ConfigRefused:
            fsio.remove(self.part)
            raise
        fsio.replace(self.part, self.path, self.dir)
        fsio.write_file(self.id_path, book_id.encode(), self.dir)
        self.held = book_id
        self.log("code book", book_id, "installed")

    def _check(self, book_id, sha):
        got = file_sha256(self.part)
        if got != sha:
            raise ConfigRefused("hash", "the code book's file hashes to " + got[:12]
                                + ", not the " + sha[:12] + " the document names",
                                "codebook_sha256")
        try:
            with open(self.part) as f:
                book = json.load(f)
            held = book["standard"] + "@" + book["version"]
        except (ValueError, KeyError, TypeError, OSError):
            raise ConfigRefused("codebook", "the file is not a code book", "codebook")  # noqa: B904
        if book.get("format") != "gridlink-codebook/1" or held != book_id:
            raise ConfigRefused("codebook", "the file is the code book " + held
                                + ", not " + book_id, "codebook")

