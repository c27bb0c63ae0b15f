"""The photos' route: a report photo's file, by its SHA-256."""

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from ..photo_view import media_type, photo_path
from .bodies import ErrorBody


def build_router(store, photos_root):
    """``/api/photos/{sha256}`` (route name ``photo``) over the store's ``photos`` rows
    and the reassembled files under ``photos_root`` (a Path, or None)."""
    router = APIRouter(tags=["map"])

    @router.get("/api/photos/{sha256}", name="photo", summary="A report photo",
                response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}, "image/png": {},
                                             "application/octet-stream": {}}},
                           404: {"model": ErrorBody, "description": "no complete photo"}})
    def photo(sha256: str = Path(..., pattern="^[0-9a-f]{64}$")):
        path = photo_path(store, photos_root, sha256)
        return FileResponse(path, media_type=media_type(path),
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    return router
