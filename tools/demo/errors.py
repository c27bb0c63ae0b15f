"""The demo's exception base."""


class DemoError(Exception):
    """The demo cannot start or carry on: a bad option, a child that died, devices not up."""
