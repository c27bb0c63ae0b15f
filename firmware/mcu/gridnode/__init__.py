# gridnode: the MicroPython sensor node (tilt switch under a manhole cover).
# Runs on the board only; the shared core is the package ``gridcore``.
VERSION = "0.1.0"
