"""The core's one exception base."""


class CoreError(Exception):
    """Base of every error the device core raises on bad input."""
