"""The fleet tools' one exception base (the CLI prints it as one clear line, exit 2)."""


class FleetError(Exception):
    """Base of every error ``gridlink fleet`` raises on bad input or a failed step."""
