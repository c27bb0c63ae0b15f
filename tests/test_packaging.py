"""Every package folder and the data it loads ship in the wheel."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
MAPPING = CONF["package-dir"]


def folder_of(package):
    best = max((name for name in MAPPING if package == name or package.startswith(name + ".")),
               key=len)
    rest = package[len(best):].lstrip(".")
    return ROOT / MAPPING[best] / Path(*rest.split(".")) if rest else ROOT / MAPPING[best]


def test_every_package_folder_is_listed():
    listed = set(CONF["packages"])
    found = set()
    for top, folder in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join((top, *rel.parts)) if rel.parts else top
            # firmware/mcu/ runs on the board: it ships as data (see package-data)
            if "node_modules" not in init.parts and "mcu" not in rel.parts:
                found.add(name)
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    for name in listed:
        assert folder_of(name).is_dir(), f"{name} is listed but has no folder"


def test_package_data_patterns_match_files():
    for package, patterns in CONF.get("package-data", {}).items():
        folder = folder_of(package)
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing in {folder}"


def test_wheel_carries_code_and_data(tmp_path):
    """A real wheel build: what a Pi or the centre installs, not the editable checkout."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("gridlink-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("gridlink/cli.py", "gridlink/firmware/core/nmea.py",
                     "gridlink/firmware/codebooks/gbt47678.5-2026.json",
                     "gridlink/firmware/maps/shangjie.glgm", "gridlink/firmware/mcu/main.py",
                     "gridlink/gateway/board/index.html", "gridlink/gateway/broker/mosquitto.conf",
                     "gridlink/gateway/board/wall.html",
                     "gridlink/gateway/board/vendor/chart.umd.min.js",
                     "gridlink/device_profiles/patrol-vehicle.json",
                     "gridlink/firmware/systemd/gridlink-device.service",
                     "gridlink/schemas/report.json", "gridlink/flash/simfs/machine.py",
                     "gridlink/fleet/cli.py", "gridlink/firmware/device/slots.py"):
        assert expected in names, f"{expected} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "firmware/", "gateway/")) for n in names)

    # Installed (not editable), the code finds its data through the package, not the checkout.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    probe = (
        "import gridlink.gateway.schemas as s, gridlink.firmware.device.profile as p\n"
        "assert 'site' in s.__file__, s.__file__\n"
        "print(sorted(s.load_schemas()), len(p.shipped_profiles()))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, cwd=tmp_path, env={"PYTHONPATH": str(target)}).stdout
    # the same message kinds and profiles as the checkout's own (read through the checkout)
    import gridlink.firmware.device.profile as profile
    import gridlink.gateway.schemas as schemas

    kinds, profiles = sorted(schemas.load_schemas()), len(profile.shipped_profiles())
    assert kinds and profiles
    assert out.strip() == f"{kinds} {profiles}"
