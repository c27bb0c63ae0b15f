"""The flash tools' one exception base (the CLI prints it as one clear line, exit 2)."""


class FlashError(Exception):
    """Base of every error ``gridlink flash`` raises on bad input or a failed step."""
