"""One over-the-air update of a Pi, end to end: fetch and verify (``update``), install into
the other slot and switch on trial (``slots``).  Refusals are recorded in the update
state, so the device's status can show them.

    DATA/ota/metadata/root.json   the trusted update root (provisioning)
    DATA/ota/download/            the release tar while it is fetched and installed
    DATA/ota/partial/             the bytes of a cut download, resumed by the next attempt
"""

import shutil
from pathlib import Path

from .slots import Slots
from .update import UpdateRefused, fetch_release


def ota_dir(data_dir):
    return Path(data_dir) / "ota"


def update_device(data_dir, repo, kind, version, prepare=None, free_bytes=None,
                  boots=3, on_step=None, ca=None):
    """Fetch, verify and install release ``version`` into the inactive slot and switch to
    it on trial; returns the slot.  ``prepare(slot_dir)`` finishes an unpacked release
    before it is placed (``slots.prepare_pi`` installs a Pi release's wheels).  A refusal
    (UpdateRefused) installs nothing and is recorded with its file and reason in the
    slots' state.  ``ca``: the CA of an https gateway's certificate."""
    on_step = on_step or (lambda _step: None)
    base = ota_dir(data_dir)
    slots = Slots(base)
    download = base / "download"
    try:
        tar, _info = fetch_release(base / "metadata", repo, kind, version, download,
                                   installed=slots.installed_version(),
                                   free_bytes=free_bytes, on_step=on_step,
                                   partial_dir=base / "partial", ca=ca)
        on_step("verified")
        return slots.install(tar, kind, version, prepare=prepare, boots=boots,
                             on_step=on_step)
    except UpdateRefused as exc:
        slots.record_failure(version, exc.reason, exc.file)
        raise
    finally:
        shutil.rmtree(download, ignore_errors=True)
