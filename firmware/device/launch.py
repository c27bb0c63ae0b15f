"""Start the application from the current A/B slot — what a unit's ExecStart runs:

    python3 -m gridlink.firmware.device.launch /var/lib/gridlink -- device run --profile …

``Slots.boot()`` first (a trial uses up one boot; when its boots ran out, the previous
slot comes back), then this process becomes ``python -m gridlink.cli ARGS`` with the
chosen slot's ``site/`` (the release's installed wheels) first on the import path.  The
slot's real folder is used, not the ``current`` link, so a switch during the run never
changes the code under a running process.  A device without update slots (no
``DATA/ota/slots`` and no ``current``) runs the installed code as it is.  The process
keeps its id across the exec, so systemd's ``Type=notify`` sees the device's READY.
"""

import os
import sys
from pathlib import Path

from ..errors import DeviceError
from .slots import Slots


def command(data_dir, args, module="gridlink.cli"):
    """(argv, environment) that start the current slot's application."""
    ota = Path(data_dir) / "ota"
    argv = [sys.executable, "-m", module, *args]
    if not (ota / "slots").exists() and not (ota / "current").is_symlink():
        return argv, dict(os.environ)            # no slots: the installed code
    slot = Slots(ota).boot()
    site = (ota / "slots" / slot / "site").resolve()
    if not site.is_dir():
        raise DeviceError(f"slot {slot} has no site/ folder: not an installed Pi release")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env["GRIDLINK_SLOT"] = slot
    return argv, env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: python -m gridlink.firmware.device.launch DATA_DIR "
                 "[--module M] -- ARGS…")
    data_dir, rest = argv[0], argv[1:]
    module = "gridlink.cli"
    if rest[:1] == ["--module"] and len(rest) > 1:
        module, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    try:
        args, env = command(data_dir, rest, module)
    except DeviceError as exc:
        sys.exit(f"gridlink launch: error: {exc}")
    os.execve(args[0], args, env)


if __name__ == "__main__":
    main()
