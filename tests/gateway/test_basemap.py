"""The base map's settings (gateway/basemap.py): an XYZ or WMTS tile URL the board can use,
and a clear refusal of one it cannot; the gateway's --base-map options say which."""

import pytest
from gridlink.gateway.basemap import BaseMap, BaseMapError
from gridlink.gateway.errors import ConfigError
from gridlink.gateway.service import WebOptions


def test_xyz_and_wmts_templates_are_taken():
    xyz = BaseMap("https://gis.zz.example/tiles/{z}/{x}/{y}.png", attribution="郑州市 GIS")
    assert xyz.as_json() == {"url": "https://gis.zz.example/tiles/{z}/{x}/{y}.png",
                             "kind": "xyz", "matrix": "webmercator", "max_zoom": 18,
                             "attribution": "郑州市 GIS"}
    wmts = BaseMap("http://10.1.2.3/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=vec"
                   "&TILEMATRIXSET=c&TileMatrix={TileMatrix}&TileRow={TileRow}"
                   "&TileCol={TileCol}", matrix="geographic", max_zoom=20)
    assert (wmts.kind, wmts.matrix, wmts.max_zoom) == ("wmts", "geographic", 20)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": ""}, "a tile URL is required"),
    ({"url": "ftp://gis/{z}/{x}/{y}"}, r"an http\(s\) tile URL"),
    ({"url": "/tiles/{z}/{x}/{y}.png"}, r"an http\(s\) tile URL"),
    ({"url": "https://gis/tiles/{z}/{x}.png"}, r"lacks \{y\}"),
    ({"url": "https://gis/wmts?m={TileMatrix}&c={TileCol}"}, r"lacks \{TileRow\}"),
    ({"url": "https://gis/tiles.png"}, r"lacks \{z\}, \{x\}, \{y\}"),
    ({"url": "https://gis/{z}/{x}/{y}?r={TileRow}"}, "not both"),
    ({"url": "https://gis/{z}/{x}/{y}", "matrix": "gcj02"}, "webmercator or geographic"),
    ({"url": "https://gis/{z}/{x}/{y}", "max_zoom": 0}, "deepest level is 1 to 22"),
    ({"url": "https://gis/{z}/{x}/{y}", "max_zoom": "18"}, "deepest level"),
    ({"url": "https://gis/{z}/{x}/{y}", "attribution": "a\nb"}, "one line"),
])
def test_a_base_map_the_board_cannot_use_is_refused_saying_why(kwargs, message):
    with pytest.raises(BaseMapError, match=message):
        BaseMap(**kwargs)


def test_the_gateway_option_names_the_flag():
    with pytest.raises(ConfigError, match=r"--base-map: the tile URL lacks \{x\}"):
        WebOptions(base_map={"url": "https://gis/{z}/{y}.png"})
    assert WebOptions(base_map={"url": "https://gis/{z}/{x}/{y}.png"}).base_map.kind == "xyz"
    assert WebOptions().base_map is None
