"""The ``gridlink`` command: one entry point, a subcommand per area.

Each area owns its subcommand in a module of its own that exposes
``register(subparsers)``; the module is imported only when its command runs or when
help is asked for, so ``gridlink nmea decode`` never imports the gateway's web stack.
"""

import argparse
import importlib
import sys

# command name → (module that registers it, one-line help)
COMMANDS = {
    "nmea": ("gridlink.host.nmea_cli", "decode NMEA 0183 captures into fixes"),
    "codes": ("gridlink.host.codes_cli", "explain and list grid, component and event codes"),
    "grid": ("gridlink.host.grid_cli", "compile grid maps and locate points on them"),
    "device": ("gridlink.firmware.device.cli", "check device profiles and run a field device"),
    "gateway": ("gridlink.gateway.cli", "run the district-centre gateway"),
    "users": ("gridlink.gateway.auth.cli:register_users",
              "the centre's operators: add, list, disable, reset passwords, API tokens"),
    "audit": ("gridlink.gateway.auth.cli:register_audit",
              "verify and export the centre's audit trail"),
    "demo": ("gridlink.demo.cli", "run the district demo: broker, gateway, simulated fleet"),
    "flash": ("gridlink.flash.cli", "build, flash, provision and self-test devices"),
    "fleet": ("gridlink.fleet.cli", "update keys, signed releases (TUF), desired state (config)"),
}


def _known_errors():
    """The packages' exception bases: these print as one clear line, not a traceback."""
    from gridlink.demo.errors import DemoError
    from gridlink.firmware.core.errors import CoreError
    from gridlink.firmware.errors import DeviceError
    from gridlink.flash.errors import FlashError
    from gridlink.fleet.errors import FleetError
    from gridlink.gateway.errors import GatewayError
    from gridlink.host.errors import HostError
    from gridlink.mosquitto import MosquittoError

    return (CoreError, DeviceError, GatewayError, FlashError, FleetError, HostError, DemoError,
            MosquittoError)


def build_parser(command=None):
    """The parser; only ``command``'s module is imported (none for the top-level help)."""
    parser = argparse.ArgumentParser(
        prog="gridlink",
        description="gridlink: field devices and the district gateway of a digital city "
                    "management (数字城管) system.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        module, _, function = module.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            parser.exit(2, f"gridlink {name}: needs the Python module {exc.name!r}, which is "
                           f"not installed (see the README's dependency table)\n")
        register = getattr(mod, function or "register")
        register(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _version():
    from gridlink import __version__

    return f"gridlink {__version__}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except _known_errors() as exc:
        print(f"gridlink {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
