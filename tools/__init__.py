"""gridlink: the field side of a digital city management (数字城管) system.

The distribution maps three fixed top-level folders under this one import name:
``gridlink.firmware`` (firmware/), ``gridlink.gateway`` (gateway/) and
``gridlink.flash`` (tools/flash/).  ``gridlink.cli`` is the ``gridlink`` command.
"""

__version__ = "0.1.0"
