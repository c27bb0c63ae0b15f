# The node's provisioned configuration (/gridlink/config.json, written by
# ``gridlink flash provision``), checked before anything touches the network.
import json

PATH = "/gridlink/config.json"


class ConfigError(Exception):
    pass


def _need(obj, key, kind, where):
    if key not in obj:
        raise ConfigError(f"{where}: {key} is missing")
    v = obj[key]
    if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
        raise ConfigError(f"{where}: {key} must be an integer, not {v!r}")
    if kind is str and (not isinstance(v, str) or not v):
        raise ConfigError(f"{where}: {key} must be a non-empty string, not {v!r}")
    if kind is dict and not isinstance(v, dict):
        raise ConfigError(f"{where}: {key} must be an object")
    return v


def _digits(s, n, where, key):
    if len(s) != n or any(c < "0" or c > "9" for c in s):
        raise ConfigError(f"{where}: {key} must be {n} digits, not {s!r}")


def check(cfg, where=PATH):
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: not a JSON object")
    if cfg.get("v") != 1:
        raise ConfigError("{}: v must be 1, not {!r}".format(where, cfg.get("v")))
    dev = _need(cfg, "device", str, where)
    if not 3 <= len(dev) <= 32 or any(not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-")
                                       for c in dev) or dev[0] == "-":
        raise ConfigError(f"{where}: device {dev!r} is not a device id ([a-z0-9][a-z0-9-]{{2,31}})")
    _digits(_need(cfg, "district", str, where), 6, where, "district")
    _need(cfg, "standard", str, where)
    b = _need(cfg, "broker", dict, where)
    _need(b, "host", str, where + " broker")
    port = _need(b, "port", int, where + " broker")
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: broker port {port} is out of range")
    if b.get("tls"):
        for k in ("ca", "cert", "key"):
            _need(b, k, str, where + " broker (tls)")
    t = _need(cfg, "tilt", dict, where)
    pin = _need(t, "pin", int, where + " tilt")
    if pin < 0:
        raise ConfigError(f"{where}: tilt pin must be >= 0")
    _digits(_need(t, "object", str, where + " tilt"), 17, where, "tilt.object")
    _digits(_need(t, "code", str, where + " tilt"), 5, where, "tilt.code")
    if "urgent" in t and not isinstance(t["urgent"], bool):
        raise ConfigError(f"{where}: tilt.urgent must be true or false, not {t['urgent']!r}")
    return cfg


def load(path=PATH):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise ConfigError(f"{path}: not provisioned (run gridlink flash provision)")  # noqa: B904
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})")  # noqa: B904
    return check(cfg, path)
