"""``gridlink flash provision``: give a device its identity, certificates and data.

One device: ``provision(spec)``.  Many: ``provision_batch(csv)`` — parallel, one result
line per device, a summary, resumable (a journal next to the CSV records finished
devices; a rerun skips them), and a failing device never stops the others.

Everything is checked and built in memory first (profile, codes, grid map, certificates);
only a complete bundle is written, through :mod:`targets` (staged, renamed, marker last).

What lands on the target:

* a Raspberry Pi (profile platform ``raspberry-pi``), under ``etc/gridlink/`` of the
  target (the Pi's root: ``/`` on the Pi itself, or its SD card's root file system mounted
  on the technician's machine), where ``firmware/systemd/gridlink-device.service`` reads
  them: ``device.env`` (GRIDLINK_PROFILE, GRIDLINK_BROKER, GRIDLINK_DEVICE_ID),
  ``ca.pem``, ``device.pem``, ``device.key``, ``profile.json``, ``codebook.json``,
  ``gridmap.glgm`` (the given or the district's map), ``config-keys`` (the centre's
  configuration keys, when given: GRIDLINK_CONFIG_KEYS), and ``identity.json`` (the marker);
* a MicroPython board, under ``/gridlink/`` on its flash (a directory target is a mirror of
  the flash, as for the simulated board): ``config.json`` (the marker; what the node
  reads), ``profile.json``, ``ca.pem``, ``device.pem``, ``device.key``, ``codebook.json``,
  ``gridmap.glgm`` (if given), ``config-keys`` (if given).
"""

import csv
import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import pki, targets
from .errors import FlashError
from .issued import IssuedRecord

DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,31}$")
DISTRICT = re.compile(r"^[1-9][0-9]{5}$")
CSV_REQUIRED = ("device", "district", "profile", "target")
CSV_OPTIONAL = ("broker", "object", "lat", "lon", "grid", "cert", "key")
TOOL = "gridlink-flash/0.1.0"
MCU_DIR = "gridlink/"         # on a board's flash
PI_DIR = "etc/gridlink/"      # under a Pi's root, where the systemd unit looks
TLS_FILES = {"ca": "ca.pem", "cert": "device.pem", "key": "device.key"}
# Identities the system's own clients use (the broker names a client after its
# certificate's CN): a device certificate with one of these names would take that
# client's place and rights.  gridlink-gateway-N are the gateway workers; "broker" is the
# CN `gridlink flash ca` gives the broker; hil-gateway is the HIL rig's listener.
RESERVED_PREFIX = "gridlink"
RESERVED_IDS = ("broker", "localhost", "hil-gateway")
MARKERS = ((MCU_DIR + "config.json", "micropython"), (PI_DIR + "identity.json", "pi"))


class SpecError(FlashError):
    """A bad value for one device; ``field`` names it (and ``row`` in a batch)."""

    def __init__(self, field, message, row=None):
        self.field, self.row, self.why = field, row, message
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}{field}: {message}")


class Spec:
    """What one device gets.  CA mode (``ca_cert`` + ``ca_key``: a key and certificate are
    made for the device) or given mode (``cert`` + ``key``, with ``ca_cert``)."""

    def __init__(self, device, district, profile, target, broker, ca_cert=None, ca_key=None,
                 cert=None, key=None, grid_map=None, object_id=None, lat=None, lon=None,
                 grid=None, row=None, wifi=None, replace=False, config_keys=None,
                 release=None, update_repo=None, update_root=None, update_url=None,
                 update_keys=None):
        self.device, self.district, self.profile = device, district, profile
        # ttyACM0 is the port /dev/ttyACM0, never a new folder
        self.target, self.broker = targets.port_path(target) if target else target, broker
        self.ca_cert, self.ca_key, self.cert, self.key = ca_cert, ca_key, cert, key
        self.grid_map, self.object_id, self.lat, self.lon, self.grid = (
            grid_map, object_id, lat, lon, grid)
        self.row = row
        self.wifi = wifi  # (ssid, psk) a board joins; a Pi brings its own network setup
        self.replace = replace  # may take the place of another identity or board
        # the centre's configuration keys (``gridlink fleet config key``'s FILE.pub)
        self.config_keys = config_keys
        # a Pi's first release (first_release.py): version, repository (folder or URL),
        # its trusted first root; and where the Pi fetches updates from (GRIDLINK_UPDATE_REPO)
        self.release, self.update_repo, self.update_root = release, update_repo, update_root
        self.update_url = update_url
        self.update_keys = update_keys   # a sensor node's: the targets keys (fleet node-keys)

    def fail(self, field, message):
        raise SpecError(field, message, self.row)


def parse_broker(url, spec=None):
    """(host, port, tls) of ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (the core's
    ``BrokerURL``, the parser the device uses too)."""
    from gridlink.firmware.core.brokerurl import BrokerURL, BrokerURLError

    def bad(msg):
        if spec is not None:
            spec.fail("broker", msg)
        raise SpecError("broker", msg)

    if not url:
        bad("missing: give mqtt://host[:port] or mqtts://host[:port]")
    try:
        b = BrokerURL(url)
    except BrokerURLError as exc:
        bad(str(exc))
    return b.host, b.port, b.tls


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _profile(spec):
    """The device's profile (checked) and the grid map bytes to install (or None)."""
    from gridlink.firmware.device import profile as profiles
    from gridlink.firmware.errors import ProfileError

    try:
        path = profiles.resolve(spec.profile)
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except ProfileError as exc:
        p = exc.problems[0]
        spec.fail("profile", f"{spec.profile}: {p.message}" + (f" ({p.fix})" if p.fix else ""))
    except (ValueError, OSError) as exc:
        spec.fail("profile", f"{spec.profile}: {exc}")
    if isinstance(obj, dict):
        obj.pop("$schema", None)
        obj["device_id"] = spec.device
        obj["district"] = spec.district
    _check_profile(spec, obj, early=True)  # the file's own faults: what follows reads it
    if spec.lat is not None or spec.lon is not None:
        if spec.lat is None or spec.lon is None:
            spec.fail("lat" if spec.lat is None else "lon", "give both lat and lon")
        obj["position"] = {"lat": spec.lat, "lon": spec.lon, "alt": None}
    if spec.object_id is not None:
        if "tilt" not in obj:
            spec.fail("object", f"profile {obj['profile']!r} has no tilt sensor to bind a "
                      "component id to")
        _bind_object(spec, obj)
    if spec.grid is not None:
        obj["grid"] = spec.grid
    gridmap = _grid(spec, obj)
    _check_profile(spec, obj)
    return obj, gridmap


SET_HERE = ("position", "grid", "tilt.object", "tilt.code")  # what the options may fill in


def _check_profile(spec, obj, early=False):
    """Fail naming the profile's first problem (its field, or the provisioning option that
    set it); ``early``, before the options are applied: not what they may fill in."""
    from gridlink.firmware.device import profile as profiles

    name = obj.get("profile") if isinstance(obj, dict) else None
    problems = profiles.validate(obj, f"profile {name or spec.profile}")
    if early:
        problems = [p for p in problems if not any(p.key == k or p.key.startswith(k + ".")
                                                   for k in SET_HERE)]
    if problems:
        p = problems[0]
        field = {"device_id": "device", "tilt.object": "object", "position.lat": "lat",
                 "position.lon": "lon"}.get(p.key, f"profile {p.key}".rstrip())
        spec.fail(field, p.message + (f" (fix: {p.fix})" if p.fix else ""))


def _bind_object(spec, obj):
    oid = spec.object_id
    std = obj["standard"]
    n = {"GB/T 47678.5-2026": 17, "CJ/T 214-2007": 16}.get(std)
    if n is None:
        spec.fail("object", f"the layout of {std} component ids is not known: use a profile "
                  "with GB/T 47678.5-2026 or CJ/T 214-2007")
    if not oid.isdigit() or len(oid) != n:
        spec.fail("object", f"{oid!r} is not a {n}-digit component id of {std}")
    if oid[:6] != spec.district:
        spec.fail("object", f"{oid} belongs to district {oid[:6]}, not {spec.district}")
    obj["tilt"]["object"] = oid
    obj["tilt"]["code"] = oid[6:11] if n == 17 else oid[6:10]


def _grid(spec, prof):
    """The grid map to install (bytes or None), checked; a fixed position gets its grid
    code from the map (the given one, else the district's shipped map)."""
    from gridlink.firmware.core.gridmap import GridMapError
    from gridlink.firmware.maps import default_map, open_map

    path = spec.grid_map or default_map(spec.district)
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        spec.fail("grid_map", f"{path}: {exc.strerror}")
    try:
        gm = open_map(data)
    except GridMapError as exc:
        spec.fail("grid_map", f"{path}: {exc}")
    pos = prof.get("position")
    if pos:
        code = gm.locate(pos["lon"], pos["lat"])
        if code is None:
            spec.fail("lat", f"position {pos['lat']}, {pos['lon']} is outside every cell of "
                      f"{path}")
        if spec.grid is not None and spec.grid != code:
            spec.fail("grid", f"{spec.grid} given, but the map puts the position in {code}")
        prof["grid"] = code
    # a board gets a map only when asked (flash is small); a Pi gets its district's map
    if spec.grid_map or prof["platform"] != "micropython":
        return data
    return None


def _tls(spec, tls):
    """(ca, cert, key) PEM bytes, made or given, checked as a chain."""
    if spec.cert or spec.key:
        if not (spec.cert and spec.key and spec.ca_cert):
            spec.fail("cert", "given certificates need cert, key and the CA certificate")
        ca = _file(spec, "ca_cert", spec.ca_cert)
        cert, key = _file(spec, "cert", spec.cert), _file(spec, "key", spec.key)
    elif spec.ca_cert or spec.ca_key:
        if not (spec.ca_cert and spec.ca_key):
            spec.fail("ca_key" if spec.ca_cert else "ca_cert",
                      "signing needs both the CA certificate and the CA key")
        ca = _file(spec, "ca_cert", spec.ca_cert)
        _file(spec, "ca_key", spec.ca_key)
        try:
            key, cert = pki.sign_device(spec.device, spec.ca_cert, spec.ca_key)
        except pki.CertError as exc:
            spec.fail("ca_key", str(exc))
    elif tls:
        spec.fail("ca_cert", "an mqtts:// broker needs certificates: give the district CA "
                  "(--ca-cert, --ca-key) or the device's own (--cert, --key, --ca-cert)")
    else:
        return None
    try:
        ci = pki.verify_chain(cert, ca, key)
    except pki.CertError as exc:
        spec.fail("cert", str(exc))
    if ci.cn != spec.device:
        spec.fail("cert", f"certificate is for {ci.cn!r}, not {spec.device!r}")
    return ca, cert, key, ci


CA_HINT = " (a district CA: 'gridlink flash ca DIR' makes DIR/ca.pem and DIR/ca.key)"


def _file(spec, field, path):
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        hint = (CA_HINT if field in ("ca_cert", "ca_key")
                and isinstance(exc, FileNotFoundError) else "")
        spec.fail(field, f"{path}: {exc.strerror or exc}{hint}")


def _codebook(spec, standard):
    """(the code book file's bytes, its id) of the profile's standard."""
    from gridlink.firmware import codebooks
    from gridlink.firmware.device import codebook
    from gridlink.firmware.errors import DeviceError

    try:
        book = codebook.book(standard)
    except DeviceError as exc:
        spec.fail("profile standard", str(exc))
    return codebooks.path(book.standard).read_bytes(), book.id


class Bundle:
    def __init__(self, files, marker, info):
        self.files, self.marker, self.info = files, marker, info


def make_bundle(spec):
    """Check everything about one device and build its files; SpecError names the field."""
    if not spec.device or not DEVICE_ID.match(spec.device):
        spec.fail("device", f"{spec.device!r} is not a device id ([a-z0-9][a-z0-9-]{{2,31}})")
    if spec.device.startswith(RESERVED_PREFIX) or spec.device in RESERVED_IDS:
        spec.fail("device", f"{spec.device!r} is reserved for the system's own clients "
                  f"(names starting {RESERVED_PREFIX!r}, {', '.join(RESERVED_IDS)}): a device "
                  "with that certificate would take their place at the broker")
    if not spec.district or not DISTRICT.match(spec.district):
        spec.fail("district", f"{spec.district!r} is not a 6-digit GB/T 2260 code")
    known = known_districts()
    if spec.district not in known:
        spec.fail("district", f"{spec.district} is not in the GB/T 2260 table the code books "
                  f"carry (divisions.json: {', '.join(sorted(known))}): no grid map or "
                  "division names for it")
    if not spec.target:
        spec.fail("target", "missing: a data directory, or a serial port / URL for a board")
    host, port, tls = parse_broker(spec.broker, spec)
    prof, gridmap = _profile(spec)
    mcu = prof["platform"] == "micropython"
    serial = targets.is_serial(spec.target)
    if serial and not mcu:
        spec.fail("target", f"{spec.target} is a serial port, but profile {prof['profile']!r} "
                  "is a Raspberry Pi: give the Pi's root directory (its SD card's root "
                  "file system mounted here, or / on the Pi itself)")
    book, book_id = _codebook(spec, prof["standard"])
    pem = _tls(spec, tls)
    prefix = MCU_DIR if mcu else PI_DIR
    if mcu and (spec.release or spec.update_url):
        spec.fail("release", "a sensor node's first image is the one flashed (gridlink flash "
                  "flash); it takes later ones from its gateway over MQTT")
    if spec.update_keys and not mcu:
        spec.fail("update-keys", "a Pi trusts its update repository's root metadata "
                  "(--release with --update-repo, --update-root), not a key list")
    if spec.release and not spec.update_repo:
        spec.fail("release", "give --update-repo, the repository to take it from")
    if spec.update_url and not spec.update_url.startswith(("http://", "https://")):
        spec.fail("update-url", f"{spec.update_url!r} is not an http(s) URL (e.g. "
                  "https://gateway:8443/ota)")
    files = {prefix + "profile.json": _json(prof), prefix + "codebook.json": book}
    if gridmap is not None:
        files[prefix + "gridmap.glgm"] = gridmap
    if spec.config_keys:
        files[prefix + "config-keys"] = _config_keys(spec)
    if spec.update_keys:
        files[prefix + "update-keys"] = _config_keys(spec, spec.update_keys, "update-keys")
    broker = {"url": spec.broker, "host": host, "port": port, "tls": tls}
    if pem:
        for name, data in zip(("ca", "cert", "key"), pem[:3], strict=True):
            rel = prefix + TLS_FILES[name]
            files[rel] = data
            broker[name] = "/" + rel
    if not mcu:
        files[prefix + "device.env"] = (
            "# written by gridlink flash provision (docs/flash.md); read by\n"
            "# firmware/systemd/gridlink-device.service\n"
            f"GRIDLINK_PROFILE=/{prefix}profile.json\nGRIDLINK_BROKER={spec.broker}\n"
            f"GRIDLINK_DEVICE_ID={spec.device}\n"
            + (f"GRIDLINK_CONFIG_KEYS=/{prefix}config-keys\n" if spec.config_keys else "")
            + (f"GRIDLINK_UPDATE_REPO={spec.update_url}\n" if spec.update_url else "")
            ).encode()
    provision = {"tool": TOOL, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "files": {rel: _sha(data) for rel, data in sorted(files.items())}}
    if mcu:
        marker = "gridlink/config.json"
        cfg = node_config(spec.device, spec.district, prof, broker, book_id, provision)
        if spec.wifi:
            cfg["wifi"] = {"ssid": spec.wifi[0], "psk": spec.wifi[1]}
        files[marker] = _json(cfg)
    else:
        marker = PI_DIR + "identity.json"
        files[marker] = _json({"v": 1, "device": spec.device, "district": spec.district,
                               "profile": prof["profile"], "broker": broker,
                               "codebook": book_id, "provision": provision})
    info = {"device": spec.device, "target": str(spec.target), "files": len(files),
            "cert_until": pem[3].not_after.strftime("%Y-%m-%d") if pem else None,
            "grid": prof.get("grid"), "codebook": book_id, "cert": pem[3] if pem else None}
    return Bundle(files, marker, info)


def _config_keys(spec, path=None, field="config-keys"):
    """A keys file, checked: one Ed25519 public key (64 hex digits) a line — what the
    device (``desired.read_keys``) and the node read: the centre's configuration keys, or
    a node's update keys."""
    from gridlink.firmware.device.desired import read_keys
    from gridlink.firmware.errors import DeviceError

    try:
        keys = read_keys(path or spec.config_keys)
    except DeviceError as exc:
        spec.fail(field, str(exc).replace("centre key file", "key file"))
    return "".join(k.hex() + "\n" for k in keys).encode()


def known_districts():
    """The district codes of the shipped GB/T 2260 table (firmware/codebooks)."""
    from importlib import resources

    table = resources.files("gridlink.firmware.codebooks").joinpath("divisions.json")
    return set(json.loads(table.read_text(encoding="utf-8"))["districts"])


def node_config(device, district, prof, broker, book_id, provision):
    """The sensor node's /gridlink/config.json (read by firmware/mcu/gridnode/config.py)."""
    cfg = {"v": 1, "device": device, "district": district, "profile": prof["profile"],
           "standard": prof["standard"], "codebook": book_id, "broker": dict(broker),
           "tilt": prof["tilt"], "status_interval_s": prof.get("status_interval_s", 300),
           "provision": provision}
    cfg["broker"].pop("url", None)
    if prof["tilt"]["code"] in prof.get("urgent_classes", ()):
        cfg["tilt"] = {**cfg["tilt"], "urgent": True}   # its reports are 突发事件
    if prof.get("position"):
        cfg["position"] = prof["position"]
    if prof.get("grid"):
        cfg["grid"] = prof["grid"]
    return cfg


def _json(obj):
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()


IMAGE_MANIFEST = "gridlink/image.json"  # what `flash flash` leaves on a board


def held_identity(target):
    """(device id the target was provisioned with or None, firmware version flashed onto
    it or None), read in one go."""
    found = target.read_many([rel for rel, _ in MARKERS] + [IMAGE_MANIFEST])
    firmware = None
    if found[IMAGE_MANIFEST] is not None:
        try:
            firmware = json.loads(found[IMAGE_MANIFEST]).get("firmware")
        except (ValueError, AttributeError):
            firmware = "?"
    for rel, _ in MARKERS:
        if found[rel] is not None:
            try:
                return json.loads(found[rel]).get("device"), firmware
            except (ValueError, AttributeError):
                return "?", firmware  # a damaged marker: someone's, not known whose
    return None, firmware


def provision(spec):
    """Provision one device; returns the bundle's info dict.

    Refused without ``spec.replace``: a target that holds another device's identity, and
    a device id the district's record (issued.csv beside the CA) has on another board —
    two boards with one id knock each other off the broker."""
    bundle = make_bundle(spec)
    target = targets.open_target(spec.target)
    held, firmware = held_identity(target)
    if held not in (None, spec.device) and not spec.replace:
        spec.fail("target", f"{target.name} holds device {held!r}; give --replace to "
                  f"overwrite it with {spec.device!r} (then retire {held})")
    record = IssuedRecord.beside(spec.ca_cert) if spec.ca_cert else None
    before = record.latest(spec.device) if record else None
    ci = bundle.info.pop("cert")
    if before is not None and held != spec.device and not spec.replace:
        spec.fail("device", f"{spec.device} was issued before (serial {before['serial']}, "
                  f"{before['time']}, target {before['target'] or '?'}); a second board with "
                  "the same id knocks the first off the broker: give --replace if this "
                  "board replaces it (and revoke the old serial)")
    first = _first_release(spec, target)
    # a folder made here: on a laptop, the sign of an SD card that is not mounted there
    bundle.info["new_folder"] = target.kind == "dir" and not target.root.exists()
    try:
        target.write(bundle.files, bundle.marker)
        if first is not None:
            first.place(target.root)
            bundle.info["release"] = first.version
    finally:
        if first is not None:
            first.close()
    if spec.ca_key and ci is not None:  # issued here: the district's record gets it
        record.append(spec.device, ci.serial, f"{ci.not_after:%Y-%m-%d}", spec.district,
                      target.name, before["serial"] if before else "")
    bundle.info["serial"] = ci.serial if ci else None
    bundle.info["firmware"] = firmware
    return bundle.info


def new_folder_note(info):
    """What the ok line says of a directory target that did not exist before."""
    return " (a new folder: nothing was mounted there)" if info.get("new_folder") else ""



def _first_release(spec, target):
    """The Pi's first release, fetched and checked before anything is written; None
    without ``--release``."""
    if not spec.release:
        return None
    from gridlink.firmware.device.update import UpdateError

    from . import first_release

    held = first_release.installed_version(target.root)
    if held is not None:
        spec.fail("release", f"{target.name} already runs {held} from its update slots; it "
                  "takes new versions through rollouts (gridlink fleet rollout start)")
    try:
        return first_release.FirstRelease(spec.update_repo, spec.release, spec.update_root)
    except (UpdateError, ValueError, OSError) as exc:
        spec.fail("release", f"{spec.release} from {spec.update_repo}: {exc}")


# -- batch --------------------------------------------------------------------------------

def read_batch(path, defaults):
    """Specs from a CSV (header row; columns CSV_REQUIRED + CSV_OPTIONAL), and the rows
    that could not even be read as (row, SpecError)."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise FlashError(f"{path}: {exc.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise FlashError(f"{path}: header lacks column(s) {', '.join(missing)} "
                             f"(needed: {', '.join(CSV_REQUIRED)})")
        unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
        if unknown:
            raise FlashError(f"{path}: unknown column(s) {', '.join(unknown)} "
                             f"(known: {', '.join(CSV_REQUIRED + CSV_OPTIONAL)})")
        specs, bad, seen, used = [], [], {}, {}
        for row in reader:
            n = reader.line_num
            try:
                spec = _spec_of_row(row, n, defaults, seen)
                if spec.target in used:
                    raise SpecError("target", f"{spec.target} is also the target of row "
                                    f"{used[spec.target]}", n)
                used[spec.target] = n
                specs.append(spec)
            except SpecError as exc:
                bad.append((n, row.get("device") or "?", exc))
        return specs, bad


def _spec_of_row(row, n, defaults, seen):
    if None in row:
        raise SpecError("row", f"{len(row[None])} more value(s) than columns", n)
    vals = {k: (v or "").strip() or None for k, v in row.items()}
    for k in CSV_REQUIRED:
        if not vals.get(k):
            raise SpecError(k, "empty", n)
    dev = vals["device"]
    if dev in seen:
        raise SpecError("device", f"{dev} is also on row {seen[dev]}", n)
    seen[dev] = n
    coords = {}
    for k in ("lat", "lon"):
        if vals.get(k) is not None:
            try:
                coords[k] = float(vals[k])
            except ValueError:
                raise SpecError(k, f"{vals[k]!r} is not a number", n) from None
    spec = Spec(dev, vals["district"], vals["profile"], vals["target"],
                vals.get("broker") or defaults.get("broker"),
                ca_cert=defaults.get("ca_cert"), ca_key=defaults.get("ca_key"),
                cert=vals.get("cert"), key=vals.get("key"),
                grid_map=defaults.get("grid_map"), object_id=vals.get("object"),
                wifi=defaults.get("wifi"), replace=bool(defaults.get("replace")),
                lat=coords.get("lat"), lon=coords.get("lon"), grid=vals.get("grid"), row=n,
                config_keys=defaults.get("config_keys"))
    spec.digest = row_digest(vals, defaults)
    return spec


def row_digest(vals, defaults):
    """What a row asks for (its values and the shared options that shape its files): a
    rerun redoes a finished row whose digest changed."""
    shared = {k: defaults.get(k) for k in ("broker", "ca_cert", "grid_map", "wifi")}
    if defaults.get("config_keys"):       # only when given: older journals stay valid
        shared["config_keys"] = defaults["config_keys"]
    text = json.dumps([sorted((k, v) for k, v in vals.items() if v), sorted(shared.items())],
                      ensure_ascii=False, default=str)
    return _sha(text.encode())[:16]


def _check_shared(defaults):
    """What every row shares (the CA, the grid map) is checked once, before any device:
    a missing CA is one clear error, not forty failed rows."""
    names = {"ca_cert": "--ca-cert", "ca_key": "--ca-key", "grid_map": "--grid-map",
             "config_keys": "--config-keys"}
    for key, opt in names.items():
        path = defaults.get(key)
        if path and not Path(path).is_file():
            raise FlashError(f"{opt} {path}: no such file" + (CA_HINT if key.startswith("ca_")
                                                               else ""))
    if bool(defaults.get("ca_cert")) != bool(defaults.get("ca_key")):
        raise FlashError("signing certificates needs both --ca-cert and --ca-key")
    if defaults.get("ca_cert"):
        try:
            pki.check_key_matches(Path(defaults["ca_cert"]).read_bytes(),
                                  Path(defaults["ca_key"]).read_bytes(),
                                  "--ca-cert", "--ca-key")
        except pki.CertError as exc:
            raise FlashError(str(exc)) from None


class Journal:
    """Finished devices, one JSON line each with the row's digest, appended and fsynced: a
    rerun skips a device whose row is unchanged and redoes one whose row changed."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.done = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    e = json.loads(line)
                    self.done[(e["device"], e["target"])] = e
                except (ValueError, KeyError):
                    continue  # a torn last line: that device is simply done again

    def state(self, spec):
        """"new", "done" (same row) or "changed" (finished, but its row changed since)."""
        e = self.done.get((spec.device, str(spec.target)))
        if e is None:
            return "new"
        return "done" if e.get("digest") in (None, getattr(spec, "digest", None)) else "changed"

    def entry(self, spec):
        return self.done.get((spec.device, str(spec.target)), {})

    def record(self, info):
        import os

        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(info, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[(info["device"], info["target"])] = info


def provision_batch(path, defaults, jobs=4, journal=None, out=print, report=None):
    """Provision every row; returns (provisioned, skipped, failed) counts.

    Each row's line carries the progress ([k/N]); the run ends with the summary, the
    report file (``report``, default ``<csv>.report.csv``: row, device, target, serial,
    firmware, result, detail) and the failed rows again."""
    _check_shared(defaults)
    specs, bad = read_batch(path, defaults)
    journal = Journal(journal or f"{path}.done")
    report = Path(report or f"{path}.report.csv")
    total = len(specs) + len(bad)
    results = {"ok": 0, "skipped": 0, "failed": 0, "redone": 0}
    rows, failures = [], []
    lock = threading.Lock()

    def say(kind, line, row):
        with lock:
            results[kind] += 1
            rows.append(row)
            if row["result"] == "failed":
                failures.append((row["row"], line))
            out(f"{line} [{len(rows)}/{total}]")

    for n, dev, exc in bad:
        say("failed", f"row {n} {dev}: FAILED {exc}",
            {"row": n, "device": dev, "result": "failed", "detail": str(exc)})

    def one(spec):
        base = {"row": spec.row, "device": spec.device, "target": str(spec.target)}
        state = journal.state(spec)
        if state == "done":
            e = journal.entry(spec)
            say("skipped", f"row {spec.row} {spec.device}: skipped, provisioned before",
                dict(base, serial=e.get("serial"), firmware=e.get("firmware"),
                     result="skipped", detail="provisioned before, row unchanged"))
            return
        try:
            info = provision(spec)
        except Exception as exc:  # one device's surprise must not stop the others
            if isinstance(exc, SpecError):
                msg = str(exc)
            elif isinstance(exc, FlashError):
                msg = f"row {spec.row}: {exc}"
            else:
                msg = f"{type(exc).__name__}: {exc}"
            say("failed", f"row {spec.row} {spec.device}: FAILED {msg}",
                dict(base, result="failed", detail=msg))
            return
        info["row"] = spec.row
        info["digest"] = getattr(spec, "digest", None)
        journal.record(info)
        cert = f", cert until {info['cert_until']}" if info["cert_until"] else ""
        redone = ", redone: its row changed" if state == "changed" else ""
        if redone:
            with lock:
                results["redone"] += 1
        say("ok", f"row {spec.row} {spec.device}: ok → {info['target']}{new_folder_note(info)} "
            f"({info['files']} files{cert}{redone})",
            dict(base, serial=info["serial"], firmware=info["firmware"],
                 result="redone" if redone else "ok", detail=f"{info['files']} files{cert}"))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, specs))
    redone = f" ({results['redone']} redone: row changed)" if results["redone"] else ""
    out(f"{total} devices: {results['ok']} provisioned{redone}, {results['skipped']} skipped "
        f"(done before), {results['failed']} failed")
    _write_report(report, sorted(rows, key=lambda r: r["row"]))
    out(f"report → {report}")
    if failures:
        out(f"failed rows ({len(failures)}):")
        for _, line in sorted(failures):
            out("  " + line)
    return results["ok"], results["skipped"], results["failed"]


REPORT_COLUMNS = ("row", "device", "target", "serial", "firmware", "result", "detail")


def _write_report(path, rows):
    """The batch's report, replaced whole (written beside, fsynced, renamed)."""
    import io
    import os

    buf = io.StringIO()
    w = csv.DictWriter(buf, REPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in REPORT_COLUMNS})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
