"""The bridge's routes: the outbox of case messages leaving for departments' systems and
the city platform (what is pending, sent, stuck), and a try now for a stuck one; and the
photos a department uploads with its 处置反馈."""

import hashlib

from fastapi import APIRouter, Path, Query, Request

from ..auth import roles
from ..auth.errors import Forbidden
from ..clock import utc_now_iso
from ..photos import PhotoDir
from ..queue import Invalid
from ..store.sql import run
from .acting import Acting
from .bodies import BAD, ErrorBody

PHOTO_MAX_BYTES = 8 * 1024 * 1024
PHOTO_PATH = r"/api/cases/[^/]+/photos"  # its body may be that large (``webguard``)
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG
MSG_ID = Path(..., max_length=200, description="destination:key (GET /api/bridge/outbox)")
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such message"}}


def build_router(outbox, book, trail, store, photos_root):
    """``/api/bridge/outbox`` over an ``Outbox``; ``POST /api/cases/{no}/photos`` files
    a photo under ``photos_root`` (a Path, or None: refused) for a case's 处置反馈."""
    router = APIRouter(tags=["cases"])

    @router.get("/api/bridge/outbox", responses=BAD,
                summary="Case messages to departments' systems and the city platform")
    def list_outbox(state: str | None = Query(None, pattern="^(pending|sent|stuck)$",
                                              description="stuck: pending, failed many times"),
                    case_no: str | None = Query(None, max_length=40),
                    limit: int = Query(50, ge=1, le=500),
                    offset: int = Query(0, ge=0, le=2**31 - 1)):
        return {**outbox.list(state=state, case_no=case_no, limit=limit, offset=offset),
                **outbox.counts()}

    @router.get("/api/bridge/outbox/{msg_id}", responses=NOT_FOUND,
                summary="One outbox message: its tries, last error, the receiver's id")
    def get_message(msg_id: str = MSG_ID):
        return outbox.get(msg_id)

    @router.post("/api/bridge/outbox/{msg_id}/retry", responses={**NOT_FOUND, **BAD},
                 summary="Try a pending message now (after its system was mended)")
    def retry(request: Request, msg_id: str = MSG_ID):
        before, after = outbox.retry_now(msg_id)
        Acting(trail, request).append("bridge.retry", target=f"outbox:{msg_id}",
                                      before=_brief(before), after=_brief(after))
        return after

    @router.post("/api/cases/{case_no}/photos", status_code=201,
                 responses={**BAD, 404: {"model": ErrorBody, "description": "no such case"}},
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                     "image/png": {"schema": {"type": "string", "format": "binary"}}}}},
                 summary="Upload a photo for the case's 处置反馈: answers its sha256, to name "
                         "in POST /api/cases/{case_no}/feedback")
    async def upload_photo(request: Request, case_no: str = Path(..., max_length=40)):
        me = Acting(trail, request)
        book.get(case_no, history=False)  # 404 first
        if not me.principal.can(roles.CASE_LEAD) and not book.acts_for(case_no, me.name):
            raise Forbidden(f"{me.name} does not act for the department case {case_no} is "
                            "dispatched to")
        data = await request.body()
        sha = file_photo(store, photos_root, data)
        me.append("case.photo", target=f"case:{case_no}",
                                      after={"sha256": sha, "bytes": len(data)})
        return {"sha256": sha, "bytes": len(data), "url": f"/api/photos/{sha}"}

    return router


def file_photo(store, photos_root, data):
    """Store an uploaded image content-addressed, as a complete photo; its sha256."""
    if photos_root is None:
        raise Invalid("this gateway keeps no photos (no photos folder)")
    if not data:
        raise Invalid("photo: the request body is the image (JPEG or PNG); it was empty")
    if len(data) > PHOTO_MAX_BYTES:
        raise Invalid(f"photo: at most {PHOTO_MAX_BYTES} bytes")
    if not data.startswith(IMAGE_MAGIC):
        raise Invalid("photo: a JPEG or PNG image (its first bytes say neither)")
    sha = hashlib.sha256(data).hexdigest()
    path = PhotoDir(photos_root).write(sha, data)
    now = utc_now_iso()
    with store.connect() as conn:
        run(store, conn,
            "INSERT INTO photos (sha256, size, complete, path, completed_at) VALUES"
            " (?, ?, 1, ?, ?) ON CONFLICT (sha256) DO UPDATE SET complete = 1, path = ?,"
            " completed_at = ?",
            [sha, len(data), str(path), now, str(path), now])
    return sha


def _brief(m):
    return {k: m[k] for k in ("state", "attempts", "next_at", "last_error")}
