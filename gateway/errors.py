"""The gateway's exception base and its few specialisations."""


class GatewayError(Exception):
    """Base of every error the gateway raises on bad configuration or an unusable store."""


class StoreError(GatewayError):
    """The store cannot be opened, migrated or written."""


class ConfigError(GatewayError, ValueError):
    """A command-line option, URL or file given to the gateway is not usable."""
