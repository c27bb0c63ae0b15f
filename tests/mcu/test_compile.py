"""mpy-cross compiles every core module and every sensor-node module; sizes are printed."""


import pytest
from gridlink.flash import build as fb
from gridlink.flash.errors import FlashError

from tests.support.paths import ROOT

MODULES = sorted((ROOT / "firmware" / "core").glob("*.py")) + sorted(
    (ROOT / "firmware" / "mcu").rglob("*.py"))


@pytest.mark.parametrize("src", MODULES, ids=lambda p: str(p.relative_to(ROOT / "firmware")))
def test_mpy_cross_compiles(src, tmp_path):
    out = tmp_path / (src.stem + ".mpy")
    fb.compile_one(src, out, src.name)
    data = out.read_bytes()
    assert data[:1] == b"M" and data[1] == 6  # .mpy header: 'M', version 6
    print(f"{src.relative_to(ROOT)}: {src.stat().st_size} B source → {len(data)} B .mpy")


def test_a_module_that_does_not_compile_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def f(:\n    pass\n")
    with pytest.raises(FlashError, match=r"mpy-cross failed on .*broken\.py: SyntaxError"):
        fb.compile_one(bad, tmp_path / "broken.mpy", "broken.py")


def test_image_sizes(tmp_path, capsys):
    m = fb.build(tmp_path / "img", board="pico-w")
    sizes = {f["path"]: f["bytes"] for f in m["files"]}
    with capsys.disabled():
        print(f"\nboard image ({m['mpy_cross']}):")
        for path, n in sorted(sizes.items()):
            print(f"  {n:>7}  {path}")
        print(f"  {sum(sizes.values()):>7}  total")
    assert set(sizes) >= {"main.py", "lib/gridcore/report.mpy", "lib/gridnode/mqtt.mpy",
                          "lib/gridnode/node.mpy"}
