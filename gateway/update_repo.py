"""The update repository the gateway serves to its devices: a folder made by
``gridlink fleet release build`` (TUF metadata and release files), read only.

Only two kinds of path exist: ``metadata/<name>`` and ``targets/<kind>/<name>``.
``repo_file`` maps a request onto a file inside the folder and refuses anything else —
another folder, a dot file, a link out of the repository — with ``NotFound``.  Nothing
here is secret: every byte is signed metadata or a file whose hash the signed metadata
names, and the device checks both (``firmware/device/update.py``).
"""

import json
import re
from pathlib import Path

from .errors import ConfigError
from .queue import NotFound

KINDS = ("pi", "mcu")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class UpdateRepository:
    """A repository folder; ``repo_file(...)`` resolves the files devices may read."""

    def __init__(self, folder):
        self.dir = Path(folder).resolve()
        if not (self.dir / "metadata").is_dir():
            raise ConfigError(f"{folder} is not an update repository (no metadata folder); "
                              "make one with 'gridlink fleet release build'")

    def repo_file(self, area, name, kind=None):
        """The file for ``metadata/<name>`` (area "metadata") or ``targets/<kind>/<name>``
        (area "targets"); NotFound for anything that is not such a file."""
        if not NAME.fullmatch(name) or ".." in name:
            raise NotFound(f"{name!r} is not a repository file name")
        if area == "metadata":
            path = self.dir / "metadata" / name
        elif area == "targets" and kind in KINDS:
            path = self.dir / "targets" / kind / name
        else:
            raise NotFound(f"no repository area {area}/{kind or ''}".rstrip("/"))
        resolved = path.resolve()
        if not resolved.is_relative_to(self.dir) or not resolved.is_file():
            raise NotFound(f"{area}/{(kind + '/') if kind else ''}{name}: no such file "
                           "in the update repository")
        return resolved

    def newest_targets(self):
        """The ``signed`` part of the newest ``N.targets.json``, or None."""
        versions = []
        for path in (self.dir / "metadata").glob("*.targets.json"):
            head = path.name.split(".", 1)[0]
            if head.isdigit():
                versions.append((int(head), path))
        if not versions:
            return None
        try:
            return json.loads(max(versions)[1].read_text())["signed"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def has_release(self, kind, version):
        """Whether the newest targets metadata lists release ``version`` of ``kind`` (the
        names ``gridlink fleet release build`` gives: pi/gridlink-V.tar, mcu/image-V.tar)."""
        name = {"pi": f"pi/gridlink-{version}.tar", "mcu": f"mcu/image-{version}.tar"}.get(kind)
        signed = self.newest_targets()
        if name is None or not isinstance(signed, dict):
            return False
        return name in signed.get("targets", {})
