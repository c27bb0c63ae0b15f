"""The update repository's routes: TUF metadata and release files for the devices, read
only, open to read (``policy.PUBLIC``): everything served is signed or named by a
signed hash, and a device checks it against the root it was provisioned with.  Range
requests are answered (206) so an interrupted download resumes."""

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from ..queue import NotFound
from .bodies import ErrorBody

FILE = {200: {"content": {"application/octet-stream": {}, "application/json": {}}},
        206: {"description": "the requested byte range"},
        404: {"model": ErrorBody, "description": "no such file, or no repository served"}}
NAME = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def build_router(repository):
    """``/ota/metadata/{name}`` and ``/ota/targets/{kind}/{name}`` over an
    ``update_repo.UpdateRepository`` (or None: every request 404s saying so)."""
    router = APIRouter(tags=["updates"])

    def found(area, name, kind=None):
        if repository is None:
            raise NotFound("this gateway serves no update repository (--update-repo)")
        path = repository.repo_file(area, name, kind)
        media = "application/json" if path.suffix == ".json" else "application/octet-stream"
        # metadata changes in place (timestamp.json, root.json); release files never do
        cache = "no-cache" if area == "metadata" else "public, max-age=31536000, immutable"
        return FileResponse(path, media_type=media, headers={"Cache-Control": cache})

    @router.get("/ota/metadata/{name}", response_class=FileResponse, responses=FILE,
                summary="An update repository's TUF metadata file")
    def metadata(name: str = NAME):
        return found("metadata", name)

    @router.get("/ota/targets/{kind}/{name}", response_class=FileResponse, responses=FILE,
                summary="A release file (ranges answered)")
    def target(kind: str = Path(..., pattern="^(pi|mcu)$"), name: str = NAME):
        return found("targets", name, kind)

    return router
