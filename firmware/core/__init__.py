"""I/O-free, MicroPython-compatible core of a gridlink field device.

Everything here is pure functions over bytes and plain objects; clocks, files and links
are passed in.  The same files run on CPython (as ``gridlink.firmware.core``) and on a
microcontroller (as the package ``gridcore``), so modules import each other only
relatively and only from the allow-list checked by ``tests/test_import_rules.py``.
"""
