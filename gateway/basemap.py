"""The board's optional base map: tiles from the district's own GIS (an XYZ or WMTS tile
URL) drawn under the grid map on the board and the 大屏 wall view.

The browser fetches the tiles straight from the configured server; the gateway only hands
the board the template (``/api/basemap``).  Two tile matrix sets: ``webmercator`` (XYZ, or
WMTS GoogleMapsCompatible: 2^z × 2^z tiles, EPSG:3857) and ``geographic`` (WMTS in
longitude and latitude, EPSG:4326 / CGCS2000 EPSG:4490 as 天地图's ``c`` sets: 2^z × 2^(z-1)
tiles, level 1 two tiles of 180°).  The tiles must be in the grid map's datum (WGS 84 or
CGCS2000, which agree to centimetres); GCJ-02-shifted tiles would sit some hundreds of
metres off.  No I/O here.
"""

import re
from urllib.parse import urlsplit

from .errors import GatewayError

MATRIX_SETS = ("webmercator", "geographic")
XYZ_KEYS = ("{z}", "{x}", "{y}")
WMTS_KEYS = ("{TileMatrix}", "{TileRow}", "{TileCol}")
MAX_ZOOM = 22
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{0,200}")


class BaseMapError(GatewayError, ValueError):
    """A base map setting that cannot be used; ``str()`` says which and why."""


class BaseMap:
    """A tile URL template with ``{z}/{x}/{y}`` (XYZ) or ``{TileMatrix}``, ``{TileRow}``,
    ``{TileCol}`` (WMTS, RESTful or KVP), its tile matrix set, the deepest level the
    server has and the attribution shown under the map."""

    def __init__(self, url, matrix="webmercator", max_zoom=18, attribution=""):
        if not isinstance(url, str) or not url:
            raise BaseMapError("a tile URL is required")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BaseMapError(f"an http(s) tile URL, not {url!r}")
        xyz = [k for k in XYZ_KEYS if k in url]
        wmts = [k for k in WMTS_KEYS if k in url]
        if xyz and wmts:
            raise BaseMapError("use {z}/{x}/{y} (XYZ) or {TileMatrix}/{TileRow}/"
                               "{TileCol} (WMTS), not both")
        keys = XYZ_KEYS if xyz or not wmts else WMTS_KEYS
        missing = [k for k in keys if k not in url]
        if missing:
            raise BaseMapError(f"the tile URL lacks {', '.join(missing)}")
        if matrix not in MATRIX_SETS:
            raise BaseMapError(f"tile matrix set {' or '.join(MATRIX_SETS)}, "
                               f"not {matrix!r}")
        if isinstance(max_zoom, bool) or not isinstance(max_zoom, int) or not (
                1 <= max_zoom <= MAX_ZOOM):
            raise BaseMapError(f"the deepest level is 1 to {MAX_ZOOM}, not "
                               f"{max_zoom!r}")
        if not isinstance(attribution, str) or not _TEXT.fullmatch(attribution):
            raise BaseMapError("the attribution is one line of at most 200 "
                               "characters")
        self.url, self.matrix, self.max_zoom, self.attribution = (
            url, matrix, max_zoom, attribution)
        self.kind = "wmts" if keys is WMTS_KEYS else "xyz"

    def as_json(self):
        return {"url": self.url, "kind": self.kind, "matrix": self.matrix,
                "max_zoom": self.max_zoom, "attribution": self.attribution}
