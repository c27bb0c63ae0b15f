"""The one guarded import of MicroPython-only names, so the core runs on CPython too."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


__all__ = ["const"]
