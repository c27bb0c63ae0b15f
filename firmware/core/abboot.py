"""The sensor node's A/B boot selector: which image directory to run, with a boot counter
on flash and the rule of the Pi (``firmware/device/slots.py``): a new image runs on trial,
marks itself good once healthy, and the previous image comes back when its boots run out.

One small state file (``ab.json``) holds everything, written new-then-renamed, so the
switch to a new image and its trial are one atomic step; after a cut on FAT (which
removes before it renames) the complete ``ab.json.new`` is read instead.

    {"slot": "a", "good": "a", "trial": null, "failed": []}
    trial: {"slot": "b", "version": "1.4", "boots_left": 3, "previous": "a"}
"""

import json

from . import fsio
from .errors import CoreError

SLOTS = ("a", "b")
STATE = "ab.json"


class BootError(CoreError):
    """A boot-selector request that cannot be honoured (e.g. a second trial)."""


def _default():
    return {"slot": "a", "good": "a", "trial": None, "failed": []}


def _parse(data):
    try:
        state = json.loads(data)
    except (ValueError, TypeError):
        return None
    if not isinstance(state, dict) or state.get("slot") not in SLOTS:
        return None
    return state


def load(root):
    """The state in directory ``root`` (the default when there is none yet)."""
    path = fsio.join(root, STATE)
    for candidate in (path, path + ".new"):
        data = fsio.read_file(candidate)
        state = _parse(data) if data is not None else None
        if state is not None:
            for key, value in _default().items():
                if key not in state:
                    state[key] = value
            return state
    return _default()


def _save(root, state):
    fsio.write_file(fsio.join(root, STATE), json.dumps(state).encode(), root)


def begin_trial(root, version, boots=3):
    """The new image is complete in the other slot: switch to it on trial.  Returns the
    slot."""
    state = load(root)
    if state["trial"]:
        raise BootError("version " + state["trial"]["version"] + " is still on trial")
    new = "b" if state["slot"] == "a" else "a"
    state["trial"] = {"slot": new, "version": version, "boots_left": boots,
                      "previous": state["slot"]}
    state["slot"] = new
    _save(root, state)
    return new


def choose(root):
    """At every boot: the slot to run.  A trial uses up one boot; when none is left the
    previous slot comes back and the version is recorded as failed."""
    state = load(root)
    trial = state["trial"]
    if trial and trial["boots_left"] <= 0:
        state["failed"] = (state["failed"] + [{"version": trial["version"],
                                               "reason": "not healthy within its boots"}])[-5:]
        state["slot"], state["trial"] = trial["previous"], None
        _save(root, state)
    elif trial:
        trial["boots_left"] -= 1
        _save(root, state)
    return state["slot"]


def record_failure(root, version, reason):
    """A release refused before any switch (its reason): kept with the rollbacks, the last
    five, so it is not fetched again and the status can name it."""
    state = load(root)
    state["failed"] = (state["failed"] + [{"version": version, "reason": reason}])[-5:]
    _save(root, state)


def mark_good(root):
    """The running trial is healthy: it stays.  False when there was no trial."""
    state = load(root)
    if not state["trial"]:
        return False
    state["good"], state["trial"] = state["slot"], None
    _save(root, state)
    return True
