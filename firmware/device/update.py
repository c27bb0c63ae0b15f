"""Fetch and check a release as the device does it: TUF (``tuf.ngclient``) from the
device's trusted root metadata, then the device's own rules.

The device holds only public metadata (``metadata/root.json`` from provisioning, then the
newer metadata it has verified); it never holds a signing key.  ``fetch_release`` refuses
— installs nothing, keeps nothing it downloaded — when

* a metadata file is not signed by the keys its delegating role names (wrong key),
* metadata has expired, or is older than what the device already saw (freeze, rollback),
* the release file's length or sha256 differs from the signed targets metadata,
* the release is for another device kind, or not newer than the installed version,
* the data directory has too little free space for it (download plus unpacked copy).

Each refusal is an ``UpdateRefused`` naming the file and a short reason code.

Over HTTP(S) a release file's bytes are kept as they arrive (``partial_dir``), so after a
cut the next attempt asks the gateway only for the rest (a Range request) and TUF checks
the length and hash of the whole; a file that then does not match is dropped and fetched
afresh next time.  Any transfer error is a ``download`` refusal, never a raw exception.
"""

import hashlib
import os
import shutil
import urllib.parse
from pathlib import Path

from ..errors import DeviceError

NAMES = {"pi": "gridlink", "mcu": "image"}
# Free space needed: the tar, its unpacked copy, and a margin for the outbox.
SPACE_FACTOR = 2
SPACE_MARGIN = 16 * 1024 * 1024


class UpdateError(DeviceError):
    """An update step failed on the device (bad input or a broken slot)."""


class UpdateRefused(UpdateError):
    """A release was refused; ``file`` names what was wrong, ``reason`` is a short code:
    signature, expired, rollback-metadata, hash, unknown-release, wrong-kind,
    older-than-installed, disk, download."""

    def __init__(self, file, reason, detail):
        self.file, self.reason, self.detail = file, reason, detail
        super().__init__(f"{file}: refused ({reason}): {detail}")


def parse_version(text):
    """"1.4.2" → (1, 4, 2); UpdateError for anything but dotted numbers."""
    parts = str(text).split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise UpdateError(f"version {text!r} is not dotted numbers like 1.4 or 2.0.3")
    nums = [int(p) for p in parts]
    return tuple(nums + [0] * (4 - len(nums)))


def target_name(kind, version):
    if kind not in NAMES:
        raise UpdateError(f"unknown device kind {kind!r}; one of {', '.join(NAMES)}")
    parse_version(version)
    return f"{kind}/{NAMES[kind]}-{version}.tar"


def _tuf():
    try:
        from tuf.api import exceptions
        from tuf.ngclient import FetcherInterface, Updater, Urllib3Fetcher
    except ImportError:
        raise UpdateError("the Python package 'tuf' is not installed; "
                          "pip install 'gridlink[fleet]'") from None
    return exceptions, FetcherInterface, Updater, Urllib3Fetcher


def _fetchers():
    exceptions, fetcher_interface, _, _ = _tuf()

    class FolderFetcher(fetcher_interface):
        """Serves a repository folder for ``file://`` URLs (a USB stick, a test)."""

        def _fetch(self, url):
            parsed = urllib.parse.urlparse(url)
            path = Path(urllib.parse.unquote(parsed.path))
            if not path.is_file():
                raise exceptions.DownloadHTTPError(f"{path} not found", 404)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 16):
                    yield chunk

    class Recording(fetcher_interface):
        """Remembers the last URL fetched: the file a refusal is about."""

        def __init__(self, inner):
            self.inner, self.last = inner, None

        def _fetch(self, url):
            self.last = url
            return self.inner._fetch(url)

    class Resuming(fetcher_interface):
        """HTTP(S) with urllib3: metadata whole; a release file resumed from the bytes a
        previous attempt kept in ``partial_dir`` (``Range: bytes=N-``), each new byte
        kept as it arrives.  Transfer errors become ``DownloadError``."""

        def __init__(self, partial_dir, ca=None, timeout=30.0, chunk=1 << 16):
            import urllib3

            self.urllib3 = urllib3
            # HTTPS: the district's CA when given (the gateway's certificate is the
            # district's, like the broker's), else the system's
            self.pool = urllib3.PoolManager(retries=False, **(
                {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(ca)} if ca else {}))
            self.partial_dir = Path(partial_dir)
            self.timeout, self.chunk = timeout, chunk
            self.resumed = 0             # bytes taken from an earlier attempt

        def part_of(self, url):
            return self.partial_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".part")

        def forget(self):
            """Drop every kept partial file (after a success, or bytes that did not check)."""
            shutil.rmtree(self.partial_dir, ignore_errors=True)

        def _get(self, url, start=0):
            headers = {"Range": f"bytes={start}-"} if start else {}
            try:
                response = self.pool.request("GET", url, headers=headers,
                                             preload_content=False,
                                             timeout=self.urllib3.Timeout(self.timeout))
            except self.urllib3.exceptions.HTTPError as exc:
                raise exceptions.DownloadError(f"{url}: {exc}") from None
            if response.status >= 400 and response.status != 416:
                response.close()                   # its unread body leaves with it
                raise exceptions.DownloadHTTPError(f"HTTP error {response.status}",
                                                   response.status)
            return response

        def _fetch(self, url):
            if "/targets/" not in urllib.parse.urlparse(url).path:
                return self._stream(self._get(url), None, 0)
            part = self.part_of(url)
            have = part.stat().st_size if part.exists() else 0
            response = self._get(url, have)
            rng = response.headers.get("content-range", "")
            if have and not (response.status == 206 and rng.startswith(f"bytes {have}-")):
                if response.status == 416:        # the kept bytes are the whole file
                    response.close()
                    response = None
                else:                              # the server sent it all: start over
                    have = 0
            return self._stream(response, part, have)

        def _stream(self, response, part, have):
            if have:
                self.resumed += have
                with open(part, "rb") as kept:
                    while block := kept.read(self.chunk):
                        yield block
            if response is None:
                return
            out = None
            if part is not None:
                part.parent.mkdir(parents=True, exist_ok=True)
                out = open(part, "ab" if have else "wb")  # noqa: SIM115 (closed below)
            whole = False
            try:
                # read1: what has arrived, so a cut loses no byte already received
                while block := response.read1(self.chunk):
                    if out is not None:
                        out.write(block)
                    yield block
                whole = True
            except (self.urllib3.exceptions.HTTPError, OSError) as exc:
                raise exceptions.DownloadError(f"transfer cut: {exc}") from None
            finally:
                if whole:
                    response.release_conn()
                else:                              # never reuse a half-read connection
                    response.close()
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
                    out.close()

    return FolderFetcher, Recording, Resuming


def _short(url):
    """metadata/3.targets.json or targets/pi/<hash>.gridlink-1.2.tar, from a URL."""
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    for marker in ("/metadata/", "/targets/"):
        if marker in path:
            return marker.strip("/") + "/" + path.rsplit(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


def _base_urls(repo):
    repo = str(repo)
    if repo.startswith(("http://", "https://")):
        base = repo.rstrip("/")
        return f"{base}/metadata/", f"{base}/targets/", None
    folder = Path(repo.removeprefix("file://")).resolve()
    if not (folder / "metadata").is_dir():
        raise UpdateError(f"{folder} is not an update repository (no metadata folder)")
    return f"{folder.as_uri()}/metadata/", f"{folder.as_uri()}/targets/", "folder"


def _refusal(exc, last_file):
    exceptions = _tuf()[0]
    reason = "download"
    if isinstance(exc, exceptions.UnsignedMetadataError):
        reason = "signature"
    elif isinstance(exc, exceptions.ExpiredMetadataError):
        reason = "expired"
    elif isinstance(exc, exceptions.BadVersionNumberError):
        reason = "rollback-metadata"
    elif isinstance(exc, exceptions.LengthOrHashMismatchError
                    | exceptions.DownloadLengthMismatchError):
        reason = "hash"
    elif isinstance(exc, exceptions.RepositoryError):
        reason = "metadata"
    return UpdateRefused(last_file, reason, str(exc) or type(exc).__name__)


def fetch_release(metadata_dir, repo, kind, version, download_dir, installed=None,
                  free_bytes=None, on_step=None, partial_dir=None, ca=None):
    """Verify release ``version`` for ``kind`` from ``repo`` (an http(s) URL or a folder)
    against the trusted metadata in ``metadata_dir``; returns (path of the verified tar,
    its TargetFile).  UpdateRefused names the file and the reason; nothing is kept then,
    but for the bytes of a cut ``download`` (in ``partial_dir``, default beside
    ``download_dir``), which the next attempt resumes from.

    ``free_bytes(path)`` reports free space (default: the file system's); ``on_step(name)``
    is told of each step (metadata, download) before it starts; ``ca`` is the CA file
    that signed an https gateway's certificate (default: the system's CAs)."""
    on_step = on_step or (lambda _step: None)
    exceptions, _, updater_cls, _ = _tuf()
    folder_fetcher, recording, resuming = _fetchers()
    name = target_name(kind, version)
    meta_url, targets_url, mode = _base_urls(repo)
    download_dir = Path(download_dir)
    partial_dir = Path(partial_dir) if partial_dir else download_dir.parent / "partial"
    transport = folder_fetcher() if mode == "folder" else resuming(partial_dir, ca)
    fetcher = recording(transport)
    metadata_dir = Path(metadata_dir)
    if not (metadata_dir / "root.json").exists():
        raise UpdateError(f"{metadata_dir}: no trusted root.json (provision the device's "
                          "update root first)")
    download_dir.mkdir(parents=True, exist_ok=True)
    on_step("metadata")
    try:
        updater = updater_cls(str(metadata_dir), meta_url, str(download_dir), targets_url,
                              fetcher=fetcher, bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo(name)
    except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
        raise _refusal(exc, _short(fetcher.last)) from None
    except ValueError as exc:          # unreadable metadata file in metadata_dir
        raise UpdateRefused(_short(fetcher.last), "metadata", str(exc)) from None
    if info is None:
        raise UpdateRefused(name, "unknown-release",
                            "the signed targets metadata lists no such release")
    check_policy(info, kind, version, installed, download_dir, free_bytes)
    dest = download_dir / f"{NAMES[kind]}-{version}.tar"
    partial = dest.with_name(dest.name + ".part")
    on_step("download")
    try:
        updater.download_target(info, str(partial))
    except (exceptions.RepositoryError, exceptions.DownloadError) as exc:
        partial.unlink(missing_ok=True)
        refusal = _refusal(exc, _short(fetcher.last))
        if refusal.reason != "download" and mode != "folder":
            transport.forget()               # kept bytes that did not check: start afresh
        raise refusal from None
    if mode != "folder":
        transport.forget()
    os.replace(partial, dest)
    return dest, info


def check_policy(info, kind, version, installed, download_dir, free_bytes=None):
    """The device's own rules on a signed release (TUF has checked the signatures)."""
    custom = info.custom or {}
    if custom.get("kind") != kind:
        raise UpdateRefused(info.path, "wrong-kind",
                            f"release is for {custom.get('kind')!r}, this device is {kind!r}")
    if custom.get("version") != version:
        raise UpdateRefused(info.path, "metadata",
                            f"signed version {custom.get('version')!r} is not {version!r}")
    if installed is not None and parse_version(version) <= parse_version(installed):
        raise UpdateRefused(info.path, "older-than-installed",
                            f"{version} is not newer than the installed {installed}")
    free = (free_bytes or _free_bytes)(download_dir)
    need = info.length * SPACE_FACTOR + SPACE_MARGIN
    if free < need:
        raise UpdateRefused(info.path, "disk",
                            f"needs {need} bytes free in {download_dir}, has {free}")


def _free_bytes(path):
    return shutil.disk_usage(path).free
