"""Where the project's shared data is: ``$GRIDLINK_SHARED`` if set, else the ``shared/``
folder beside the checkout (``../shared`` from its root).

It holds real receiver captures (``data/nmea/``, each with gpsd's ``.chk``) and the
class-code table the code books are built from (``data/codes/classes.csv``).  It does not
ship in the wheel: an installed gridlink, or a checkout without it, simply has none, and
callers say what they looked for.
"""

import os
from pathlib import Path

ENV = "GRIDLINK_SHARED"


def shared_root():
    """The shared folder (it may not exist)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path(__file__).resolve().parents[2] / "shared"  # firmware/ → checkout → beside it


def shared_data(*parts):
    """A path under the shared folder's ``data/`` (it may not exist)."""
    return shared_root().joinpath("data", *parts)
