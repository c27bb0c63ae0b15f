# The grid map a node holds: a compiled map (.glgm, usually cut to the node's area with
# `gridlink grid cut`: a few kilobytes) a signed desired-state document names by its
# sha256.  Fetched (gridnode/pieces.py: file map/<sha256>) into gridmap.glgm.part, checked
# — its sha256, that it is a readable map, that it covers the node's provisioned position
# — and put in place of /gridlink/gridmap.glgm by a rename; map.id ("<sha256> <grid code>")
# follows.  The node's reports then carry the code the map gives its position, in place
# of the provisioned ``grid``.  A map that fails any check is refused whole: the old one
# stays.
from gridcore import fsio
from gridcore.desired import ConfigRefused
from gridcore.gridmap import GridMap, GridMapError, quantise

MAP_MAX = 64 * 1024


class Maps:
    def __init__(self, data_dir, position, log=print):
        self.dir = data_dir.rstrip("/") or "/"
        self.path = fsio.join(self.dir, "gridmap.glgm")
        self.part = self.path + ".part"
        self.id_path = fsio.join(self.dir, "map.id")
        self.position = position
        self.log = log
        self.held = self.grid = None
        held = (fsio.read_file(self.id_path) or b"").decode().split()
        if len(held) == 2:
            self.held, self.grid = held
        elif fsio.exists(self.path):   # provisioned with a map: learn what it is, once
            try:
                self.grid = self._locate(self.path)
                self.held = fsio.file_sha256(self.path)
                fsio.write_file(self.id_path, (self.held + " " + self.grid).encode(),
                                self.dir)
            except (ConfigRefused, OSError) as e:
                self.held = self.grid = None
                self.log("grid map not used:", e)

    def _locate(self, path):
        # the grid code of the node's position on the map at ``path``; ConfigRefused
        p = self.position
        if not p:
            raise ConfigRefused("map", "this node has no provisioned position to locate",
                                "map")
        try:
            with open(path, "rb") as f:
                code = GridMap(f).locate_e7(quantise(p["lon"]), quantise(p["lat"]))
        except GridMapError as e:
            raise ConfigRefused("map", "the file is not a grid map: " + str(e)[:100],  # noqa: B904
                                "map")
        if code is None:
            raise ConfigRefused("map", "no cell of the map covers the node's position",
                                "map")
        return code

    def fetch(self, pieces, client, topic_get, sha):
        # Fetch and check the map into the .part file; ConfigRefused when it must be
        # refused (the old map stays), pieces.Stop when the link gave no answer (the .part
        # file is kept).  Returns what installs it.
        pieces.fetch(client, topic_get, "map", sha, sha[:12], self.part, MAP_MAX)
        try:
            grid = self._locate(self.part)
        except ConfigRefused:
            fsio.remove(self.part)
            raise
        return lambda: self._install(sha, grid)

    def _install(self, sha, grid):
        fsio.replace(self.part, self.path, self.dir)
        fsio.write_file(self.id_path, (sha + " " + grid).encode(), self.dir)
        self.held, self.grid = sha, grid
        self.log("grid map", sha[:12], "installed: grid", grid)
