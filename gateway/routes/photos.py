"""The photos' route: a report photo's file, by its SHA-256; as a JPEG on request."""

from typing import Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, Response

from ..photo_view import as_jpeg, media_type, photo_path
from .bodies import ErrorBody


def build_router(store, photos_root):
    """``/api/photos/{sha256}`` (route name ``photo``) over the store's ``photos`` rows
    and the reassembled files under ``photos_root`` (a Path, or None)."""
    router = APIRouter(tags=["map"])

    @router.get("/api/photos/{sha256}", name="photo", summary="A report photo",
                response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}, "image/webp": {},
                                             "image/png": {},
                                             "application/octet-stream": {}}},
                           404: {"model": ErrorBody, "description": "no complete photo"},
                           400: {"model": ErrorBody,
                                 "description": "asked as JPEG, and not an image"}})
    def photo(sha256: str = Path(..., pattern="^[0-9a-f]{64}$"),
              format: Literal["jpeg"] | None = Query(
                  None, description="jpeg: the photo as a JPEG with its EXIF (GNSS "
                                    "position, time), for systems that take only JPEG")):
        path = photo_path(store, photos_root, sha256)
        cache = {"Cache-Control": "public, max-age=31536000, immutable"}
        if format == "jpeg":
            return Response(as_jpeg(path), media_type="image/jpeg", headers=cache)
        return FileResponse(path, media_type=media_type(path), headers=cache)

    return router
