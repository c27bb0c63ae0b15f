"""Device profiles: load, check against ``device_profiles/schema.json``, then check meaning.

Like ESPHome's config validation, every problem names the file, the key, what is wrong
and the fix, and all problems are reported at once::

    device_profiles/x.json: buttons[1].pin: GPIO 5 is already used by buttons[0].pin
      fix: give each input its own GPIO pin

The schema part is a small interpreter of the JSON Schema keywords the schema uses
(type, enum, const, pattern, minimum/maximum, length, items, required,
additionalProperties, $ref, allOf, if/then), so the device needs no jsonschema package;
``x-fix`` in the schema is the hint printed with the error.  A loaded profile is
complete: every key left out that has a ``default`` in the schema is filled in
(``with_defaults``), so the schema is the one table of defaults.
"""

import copy
import json
import re
from pathlib import Path

from ..errors import ProfileError
from ..maps import default_map

REPO_PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"

# GPIO numbers a profile may use, per board (header pins only; UART0 checked separately).
BOARD_PINS = {
    "pi4": set(range(2, 28)),
    "pi5": set(range(2, 28)),
    "pico-w": set(range(0, 23)) | {26, 27, 28},   # GP23-25, GP29 drive the radio / LED
    "esp32": set(range(0, 40)) - set(range(6, 12)),  # GPIO6-11 are the SPI flash
}
PI_UART_PORTS = {"/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0"}
PI_UART_PINS = {14: "UART0 TXD", 15: "UART0 RXD"}
BOARDS_OF = {"raspberry-pi": {"pi4", "pi5"}, "micropython": {"pico-w", "esp32"}}


class Problem:
    """One thing wrong with a profile: where, what, and how to fix it."""

    def __init__(self, source, key, message, fix=None):
        self.source, self.key, self.message, self.fix = source, key, message, fix

    def __str__(self):
        text = f"{self.source}: {self.key or '(top level)'}: {self.message}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")

    def __repr__(self):
        return f"Problem({self.key!r}, {self.message!r})"


def profiles_dir():
    """The folder of shipped profiles (the repo's device_profiles/, or the installed copy)."""
    if REPO_PROFILES.is_dir():
        return REPO_PROFILES
    from importlib import resources

    return Path(str(resources.files("gridlink.device_profiles")))


def load_schema():
    return json.loads((profiles_dir() / "schema.json").read_text(encoding="utf-8"))


def shipped_profiles():
    """Paths of every profile shipped in device_profiles/."""
    return sorted(p for p in profiles_dir().glob("*.json") if p.name != "schema.json")


def resolve(name_or_path):
    """A profile path from a shipped name (``patrol-vehicle``) or a file path."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in str(name_or_path):
        if not path.exists():
            raise ProfileError([Problem(str(path), None, "no such file",
                                        "give a profile path or a shipped name: "
                                        + ", ".join(p.stem for p in shipped_profiles()))])
        return path
    candidate = profiles_dir() / f"{name_or_path}.json"
    if not candidate.exists():
        raise ProfileError([Problem(str(name_or_path), None, "no such shipped profile",
                                    "one of: " + ", ".join(p.stem for p in shipped_profiles()))])
    return candidate


def load_profile(name_or_path, codebook=None):
    """Read, validate and return a profile dict; raise ProfileError listing every problem."""
    path = resolve(name_or_path)
    source = _display(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError([Problem(source, None, f"not UTF-8 text ({exc.reason})",
                                    "save the file as UTF-8")]) from None
    except json.JSONDecodeError as exc:
        raise ProfileError([Problem(source, f"line {exc.lineno} column {exc.colno}",
                                    f"not valid JSON: {exc.msg}",
                                    "fix the JSON syntax (no comments, no trailing commas)")
                            ]) from None
    problems = validate(obj, source, codebook=codebook)
    if problems:
        raise ProfileError(problems)
    obj = with_defaults(obj)
    obj["_path"] = str(path)
    return obj


def validate(obj, source="<profile>", codebook=None):
    """Every problem of ``obj`` (a parsed profile) as a list of Problem; [] when it is good."""
    schema = load_schema()
    problems = []
    _check(obj, schema, schema, "", source, problems)
    if not problems:
        problems.extend(_meaning(obj, source, codebook))
    return problems


def with_defaults(obj):
    """A copy of a valid profile with every key the schema gives a ``default`` filled in
    (ESPHome-style), so device code reads ``profile["press"]["hold_s"]`` and needs no
    fallbacks of its own.  Sections that say a part exists (``gnss``, ``pir``, ``kiosk``,
    ``operator_buttons``, …) stay absent when absent; their keys are completed."""
    schema = load_schema()
    obj = copy.deepcopy(obj)
    _fill(obj, schema, schema)
    return obj


def _fill(value, schema, root):
    schema = _resolve_ref(root, schema)
    if isinstance(value, list) and "items" in schema:
        for item in value:
            _fill(item, schema["items"], root)
    if not isinstance(value, dict):
        return
    for sub in schema.get("allOf", []):       # the kind's and platform's defaults first
        if "if" in sub:
            trial = []
            _check(value, sub["if"], root, "", "", trial)
            if not trial and "then" in sub:
                _fill(value, sub["then"], root)
        else:
            _fill(value, sub, root)
    for name, sub in schema.get("properties", {}).items():
        if name not in value:
            default = sub.get("default", _resolve_ref(root, sub).get("default", _NONE))
            if default is _NONE:
                continue
            value[name] = copy.deepcopy(default)
        _fill(value[name], sub, root)


_NONE = object()


def _display(path):
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the JSON Schema subset -------------------------------------------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve_ref(root, schema):
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _key(path, child):
    if isinstance(child, int):
        return f"{path}[{child}]"
    return f"{path}.{child}" if path else child


def _check(value, schema, root, path, source, problems):
    schema = _resolve_ref(root, schema)
    fix = schema.get("x-fix")

    def bad(message):
        problems.append(Problem(source, path, message, fix))

    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            bad(f"expected {' or '.join(types)}, got {_json_type(value)} {_show(value)}")
            return
    if "const" in schema and value != schema["const"]:
        bad(f"must be {_show(schema['const'])} here, not {_show(value)}")
    if "enum" in schema and value not in schema["enum"]:
        bad(f"{_show(value)} is not one of {', '.join(_show(e) for e in schema['enum'])}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            bad(f"{_show(value)} does not have the expected form")
        if len(value) < schema.get("minLength", 0):
            bad(f"{_show(value)} is too short (at least {schema['minLength']} characters)")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            bad(f"too long ({len(value)} characters, at most {schema['maxLength']})")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            bad(f"{value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            bad(f"{value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            bad(f"needs at least {schema['minItems']} item(s), has {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            bad(f"at most {schema['maxItems']} items, has {len(value)}")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, _key(path, i), source, problems)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                sub = _resolve_ref(root, props.get(name, {}))
                problems.append(Problem(source, _key(path, name), "required key is missing",
                                        sub.get("x-fix") or f"add \"{name}\""))
        for name, item in value.items():
            if name in props:
                _check(item, props[name], root, _key(path, name), source, problems)
            elif schema.get("additionalProperties") is False:
                known = ", ".join(sorted(k for k in props if not k.startswith("$")))
                hint = _near(name, props)
                problems.append(Problem(source, _key(path, name), "unknown key",
                                        f"did you mean \"{hint}\"?" if hint
                                        else f"remove it; known keys: {known}"))
    for sub in schema.get("allOf", []):
        if "if" in sub:
            trial = []
            _check(value, sub["if"], root, path, source, trial)
            if not trial and "then" in sub:
                _check(value, sub["then"], root, path, source, problems)
        else:
            _check(value, sub, root, path, source, problems)


def _near(name, props):
    import difflib

    hits = difflib.get_close_matches(name, list(props), n=1, cutoff=0.7)
    return hits[0] if hits else None


def _json_type(value):
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _show(value):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# --- meaning: pins, boards, codes -------------------------------------------------------

def pins_of(profile):
    """(key, gpio) for every pin the profile claims, in file order."""
    out = []
    for i, button in enumerate(profile.get("buttons", [])):
        out.append((f"buttons[{i}].pin", button["pin"]))
    for name in ("yes", "no"):
        if name in profile.get("operator_buttons", {}):
            out.append((f"operator_buttons.{name}", profile["operator_buttons"][name]))
    for section in ("pir", "call_button", "emergency_button", "tilt"):
        if section in profile:
            out.append((f"{section}.pin", profile[section]["pin"]))
    return out


def class_refs(profile):
    """(key, kind, code) for every class code the profile names."""
    out = []
    for i, button in enumerate(profile.get("buttons", [])):
        out.append((f"buttons[{i}]", button["kind"], button["code"]))
    for section in ("pir", "call_button", "emergency_button", "task_result"):
        if section in profile:
            out.append((section, profile[section]["kind"], profile[section]["code"]))
    if "tilt" in profile:
        out.append(("tilt", "component", profile["tilt"]["code"]))
    for i, c in enumerate(profile.get("kiosk", {}).get("classes", [])):
        out.append((f"kiosk.classes[{i}]", c["kind"], c["code"]))
    return out


def _meaning(p, source, codebook):
    problems = []

    def bad(key, message, fix):
        problems.append(Problem(source, key, message, fix))

    board, platform = p["board"], p["platform"]
    if board not in BOARDS_OF[platform]:
        bad("board", f"{board} is not a {platform} board",
            f"use one of {', '.join(sorted(BOARDS_OF[platform]))}")
    allowed = BOARD_PINS[board]
    seen = {}
    uart = {}
    gnss = p.get("gnss", {})
    if platform == "raspberry-pi" and gnss.get("source") == "serial" \
            and gnss.get("port") in PI_UART_PORTS:
        uart = PI_UART_PINS
    for key, pin in pins_of(p):
        if pin not in allowed:
            bad(key, f"GPIO {pin} is not usable on {board}",
                f"pick one of GPIO {_ranges(allowed)}")
        elif pin in uart:
            bad(key, f"GPIO {pin} is the {uart[pin]} pin, taken by the GNSS receiver on "
                f"{gnss['port']}", "pick another GPIO, or move the receiver to USB")
        if pin in seen:
            bad(key, f"GPIO {pin} is already used by {seen[pin]}",
                "give each input its own GPIO pin")
        else:
            seen[pin] = key
    names = {}
    for i, button in enumerate(p.get("buttons", [])):
        if button["name"] in names:
            bad(f"buttons[{i}].name", f"\"{button['name']}\" is already the name of "
                f"buttons[{names[button['name']]}]", "give each button its own name")
        names.setdefault(button["name"], i)
    if gnss:
        if gnss["source"] == "serial" and "port" not in gnss:
            bad("gnss.port", "a serial receiver needs its port",
                "add \"port\": \"/dev/serial0\" (or a pyserial URL) and \"baud\"")
        if gnss["source"] == "serial" and "baud" not in gnss:
            bad("gnss.baud", "a serial receiver needs its baud rate",
                "add \"baud\": 9600 (the receiver's documented rate)")
    grid = p.get("grid")
    if grid and not grid.startswith(p["district"]):
        bad("grid", f"grid code {grid} is not in district {p['district']}",
            f"a unit-grid code starts with the district code {p['district']}")
    if grid and "position" in p:
        problems.extend(_check_grid(p, source))
    tilt = p.get("tilt")
    if tilt:
        obj = tilt["object"]
        if not obj.startswith(p["district"]):
            bad("tilt.object", f"component id {obj} is not in district {p['district']}",
                f"a component id starts with the district code {p['district']}")
        elif obj[6:6 + len(tilt["code"])] != tilt["code"]:
            bad("tilt.object", f"component id {obj} does not carry class {tilt['code']}",
                f"the id is district + class code + sequence, e.g. "
                f"{p['district']}{tilt['code']}000001")
    if "clips" in p:
        problems.extend(_check_clips(p, source))
    problems.extend(_check_codes(p, source, codebook))
    return problems


def _check_clips(p, source):
    """The ring must hold a clip's seconds (and the two GOPs it is cut on) at the bit
    rate, and clips need a camera."""
    c = _clip_values(p["clips"])
    problems = []
    if p.get("camera", {}).get("backend", "none") == "none":
        problems.append(Problem(source, "clips", "clips need a camera (camera.backend is none)",
                                "set camera.backend, or remove the clips section"))
    seconds = c["pre_s"] + c["post_s"] + 2 * c["gop_s"]
    needed = round(seconds * c["bit_rate"] / 8)
    if c["ring_bytes"] < needed:
        problems.append(Problem(
            source, "clips.ring_bytes", f"{c['ring_bytes']} bytes hold less than the "
            f"{seconds:g} s a clip needs at {c['bit_rate']} bit/s ({needed} bytes)",
            f"raise ring_bytes to at least {needed}, or lower bit_rate, pre_s or post_s"))
    return problems


def _clip_values(clips):
    defaults = {k: v["default"] for k, v in load_schema()["$defs"]["clips"]["properties"].items()
                if "default" in v}
    return {**defaults, **clips}


def _check_grid(p, source):
    """The provisioned grid code must be the one the shipped map gives the position."""
    from ..core.gridmap import GridMapError
    from ..maps import open_map

    path = default_map(p["district"])
    if path is None:
        return []
    pos = p["position"]
    try:
        code = open_map(path, mapped=True).locate(pos["lon"], pos["lat"])
    except GridMapError:
        return []
    if code == p["grid"]:
        return []
    where = f"in grid {code}" if code else "outside every grid cell"
    return [Problem(source, "grid", f"position {pos['lat']}, {pos['lon']} is {where} of "
                    f"the map {path.name}, not in {p['grid']}",
                    f"set \"grid\": \"{code}\"" if code else
                    "check the position (lat/lon in degrees, CGCS2000) and the district")]


def _check_codes(p, source, codebook):
    from .codebook import CodebookUnavailable, class_lookup

    problems = []
    try:
        lookup = codebook or class_lookup(p["standard"])
    except CodebookUnavailable as exc:
        return [Problem(source, "standard", str(exc), exc.fix)]
    for key, kind, code in class_refs(p):
        why = lookup(kind, code)
        if why is not None:
            problems.append(Problem(source, f"{key}.code", why,
                                    f"pick a {kind} class of {p['standard']} "
                                    "(see `gridlink codes list`)"))
    for i, code in enumerate(p.get("urgent_classes", [])):
        why = lookup("event", code) and lookup("component", code)
        if why:
            problems.append(Problem(source, f"urgent_classes[{i}]",
                                    f"{code} is no event or component class of {p['standard']}",
                                    "list class codes from the code book (see `gridlink "
                                    "codes list`)"))
    return problems


def _ranges(pins):
    pins = sorted(pins)
    spans, start = [], pins[0]
    for a, b in zip(pins, [*pins[1:], None], strict=True):
        if b != a + 1:
            spans.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(spans)
