"""``python -m gridlink.firmware.device run …`` — the same as ``gridlink device run …``."""

import sys

from gridlink.cli import main

if __name__ == "__main__":
    sys.exit(main(["device", *sys.argv[1:]]))
