"""The same code vectors under real MicroPython and CPython give the same answers."""

import json

import pytest
from gridlink.firmware import codebooks
from gridlink.firmware.core import codes as core_codes

from tests.support.mpy_wasm import run_micropython

# (method, args): every entry point, good and bad input, all three books, the division table
VECTORS = [
    ("explain", ["410106001001001"]),
    ("explain", ["41010600100100"]),
    ("explain", ["410106005009001"]),
    ("explain", ["320508001001001"]),
    ("explain", ["0101"]),
    ("explain", ["01001"]),
    ("explain", ["06"]),
    ("explain", ["0303"]),
    ("explain", ["06999"]),
    ("explain", ["410106"]),
    ("explain", ["410106100"]),
    ("explain", ["410106100400"]),
    ("explain", ["3205080101000001"]),
    ("explain", ["41010601010000001"]),
    ("explain", ["4101060505"]),
    ("explain", ["41010606010"]),
    ("explain", ["1234567"]),
    ("explain", ["１２"]),
    ("explain", ["41\n"]),
    ("explain", [""]),
    ("explain", [None]),
    ("parse_grid_code", ["410199001001001"]),
    ("parse_grid_code", ["410106006001001"]),
    ("parse_grid_code", ["410106000001001"]),
    ("parse_grid_code", ["410106001000001"]),
    ("parse_grid_code", ["410106001001000"]),
    ("parse_grid_code", ["4101060010010"]),
    ("parse_grid_code", ["410106100223042"]),
    ("parse_grid_code", ["410106005009001", True]),
    ("parse_component_id", ["410106010100000"]),
    ("parse_component_id", ["41010601016000001"]),
    ("parse_component_id", ["41010601010000000"]),
    ("parse_event_code", ["41010611001"]),
    ("parse_event_code", ["4101060101", "GB/T 30428.2-2013"]),
    ("validate_class_code", ["GB/T 47678.5-2026", "event", "06010"]),
    ("validate_class_code", ["GB/T 47678.5-2026", "event", "06999"]),
    ("validate_class_code", ["GB/T 47678.5-2026", "event", "06031"]),
    ("validate_class_code", ["gb/t47678.5-2026", "component", "06001"]),
    ("validate_class_code", ["CJ/T 214-2007", "event", "0520"]),
    ("validate_class_code", ["GB/T 30428.2-2013", "component", "0101"]),
    ("validate_class_code", ["GB/T 47678.5-2026", "case", "06010"]),
    ("validate_class_code", ["GB/T 9999", "event", "06010"]),
]

# Runs unchanged on both: builds Codes from the JSON texts and answers every vector.
DRIVER = """
import json

def outcomes(mod, texts, vectors):
    books = [mod.CodeBook(json.loads(texts[name])) for name in sorted(texts)
             if name != "divisions.json"]
    codes = mod.Codes(books, mod.Divisions(json.loads(texts["divisions.json"])))
    out = []
    for method, args in vectors:
        try:
            value = getattr(codes, method)(*args)
            out.append(["ok", value if isinstance(value, dict) else value.as_dict()])
        except mod.CodeError as exc:
            out.append(["error", str(exc)])
    return out
"""


def data_texts():
    names = [*codebooks.FILES.values(), codebooks.DIVISIONS_FILE]
    return {n: (codebooks.HERE / n).read_text(encoding="utf-8") for n in names}


def cpython_outcomes():
    scope = {}
    exec(DRIVER, scope)
    return scope["outcomes"](core_codes, data_texts(), VECTORS)


def test_vectors_on_cpython_cover_good_and_bad_input():
    results = cpython_outcomes()
    kinds = [r[0] for r in results]
    assert kinds.count("ok") >= 15 and kinds.count("error") >= 20
    errors = [r[1] for r in results if r[0] == "error"]
    assert all(e and "\n" not in e for e in errors)


@pytest.mark.micropython
def test_same_vectors_same_answers_under_micropython():
    texts = data_texts()
    files = {f"/data/{name}": text for name, text in texts.items()}
    script = DRIVER + f"""
import os
from gridcore import codes as mod
texts = {{}}
for name in os.listdir("/data"):
    with open("/data/" + name) as f:
        texts[name] = f.read()
print(json.dumps(outcomes(mod, texts, json.loads({json.dumps(json.dumps(VECTORS))}))))
"""
    got = json.loads(run_micropython(script, files=files).strip().splitlines()[-1])
    expected = json.loads(json.dumps(cpython_outcomes()))
    assert len(got) == len(expected) == len(VECTORS)
    for vector, mine, theirs in zip(VECTORS, got, expected, strict=True):
        assert mine == theirs, f"{vector} differs under MicroPython"
