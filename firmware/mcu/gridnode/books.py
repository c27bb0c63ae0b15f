# Code books as artifacts: a desired-state document that names a code book this node does
# not hold, with the sha256 of its file (codebook_sha256, signed with the document), has
# the file fetched (gridnode/pieces.py: file codebook/<sha256>) into codebook.json.part,
# checked — its sha256, then that it is a code book with the id the document names — and
# put in place of /gridlink/codebook.json by a rename; codebook.id (the id it holds)
# follows.  Only then is the document applied.  A file that does not hash, or is another
# book, is refused whole: the old book stays.
import json

from gridcore import fsio
from gridcore.desired import ConfigRefused

BOOK_MAX = 256 * 1024


class Books:
    def __init__(self, data_dir, provisioned_id, log=print):
        self.dir = data_dir.rstrip("/") or "/"
        self.path = fsio.join(self.dir, "codebook.json")
        self.part = self.path + ".part"
        self.id_path = fsio.join(self.dir, "codebook.id")
        held = fsio.read_file(self.id_path)
        self.held = held.decode().strip() if held else provisioned_id
        self.log = log

    def fetch(self, pieces, client, topic_get, book_id, sha):
        # Fetch and check the book into the .part file; ConfigRefused when it must be
        # refused (the old book stays), pieces.Stop when the link gave no answer (the .part
        # file is kept).  ``install`` then puts it in place.
        pieces.fetch(client, topic_get, "codebook", sha, book_id.rpartition("@")[2],
                     self.part, BOOK_MAX)
        try:
            self._check(book_id)
        except ConfigRefused:
            fsio.remove(self.part)
            raise
        return lambda: self._install(book_id)

    def _install(self, book_id):
        fsio.replace(self.part, self.path, self.dir)
        fsio.write_file(self.id_path, book_id.encode(), self.dir)
        self.held = book_id
        self.log("code book", book_id, "installed")

    def _check(self, book_id):
        try:
            with open(self.part) as f:
                book = json.load(f)
            held = book["standard"] + "@" + book["version"]
        except (ValueError, KeyError, TypeError, OSError):
            raise ConfigRefused("codebook", "the file is not a code book", "codebook")  # noqa: B904
        if book.get("format") != "gridlink-codebook/1" or held != book_id:
            raise ConfigRefused("codebook", "the file is the code book " + held
                                + ", not " + book_id, "codebook")
