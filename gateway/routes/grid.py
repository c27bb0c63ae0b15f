"""The grid map's routes: its cells as GeoJSON for the board's map, and the base map
drawn under them (``basemap.BaseMap``, or none)."""

import json
import threading

from fastapi import APIRouter
from fastapi.responses import Response

from ..geojson import grid_geojson


def build_router(grid_map, base_map=None):
    """``/api/grid`` over a core ``GridMap`` (or None: no cells); ``/api/basemap``."""
    router = APIRouter(tags=["map"])
    built, lock = [], threading.Lock()

    @router.get("/api/grid", summary="The grid map's cells as GeoJSON",
                response_class=Response,
                responses={200: {"content": {"application/geo+json": {}}}})
    def grid():
        with lock:  # built once, on first use: a district map is thousands of cells
            if not built:
                built.append(json.dumps(grid_geojson(grid_map), ensure_ascii=False,
                                        separators=(",", ":")).encode())
        return Response(built[0], media_type="application/geo+json",
                        headers={"Cache-Control": "max-age=300"})

    @router.get("/api/basemap", summary="The tiles drawn under the map (the district's GIS)",
                description="url null: no base map is configured.")
    def basemap():
        return base_map.as_json() if base_map is not None else {"url": None}

    return router
