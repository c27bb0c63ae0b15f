"""The media route: a clip or voice memo by its SHA-256, with HTTP byte ranges (players
seek with them): 200 with the whole file, 206 with the asked range, 416 for a range beyond
the file; ``Accept-Ranges: bytes`` on each."""

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from ..media import MediaError, RangeNotSatisfiable, parse_range
from ..queue import NotFound
from .bodies import ErrorBody

CACHE = "private, max-age=31536000, immutable"  # content-addressed: never changes


def build_router(media_store):
    """``/api/media/{sha256}`` (route name ``media``) over a ``media.MediaStore`` (None:
    every request is 404)."""
    router = APIRouter(tags=["map"])

    @router.get("/api/media/{sha256}", name="media", summary="A report's clip or voice memo",
                response_class=Response,
                responses={200: {"content": {"video/mp4": {}, "audio/ogg": {}}},
                           206: {"description": "the byte range asked for (Range header)",
                                 "content": {"video/mp4": {}, "audio/ogg": {}}},
                           404: {"model": ErrorBody, "description": "no such media"},
                           416: {"description": "the range lies beyond the file"}})
    def media(request: Request, sha256: str = Path(..., pattern="^[0-9a-f]{64}$")):
        if media_store is None or not media_store.has(sha256):
            raise NotFound(f"no media {sha256}")
        try:
            size = media_store.size(sha256)
            ctype = media_store.content_type(sha256)
        except MediaError:
            raise NotFound(f"no media {sha256}") from None
        headers = {"Accept-Ranges": "bytes", "Cache-Control": CACHE}
        try:
            wanted = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            return Response(status_code=416, headers={**headers,
                                                      "Content-Range": f"bytes */{size}"})
        if wanted is None:
            return Response(media_store.read(sha256), media_type=ctype, headers=headers)
        start, end = wanted
        return Response(media_store.read(sha256, start, end), status_code=206,
                        media_type=ctype,
                        headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}"})

    return router
