"""The host tools' exception base (the CLI prints it as one clear line, exit 2)."""


class HostError(Exception):
    """Base of every error a host tool raises on bad input."""
