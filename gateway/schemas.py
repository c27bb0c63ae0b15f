"""The protocol's JSON Schemas (docs/schemas/) as a second, machine-readable check.

The core's validators are authoritative (the devices run the same functions); the
schemas are the published contract, and the gateway holds status, track and photo chunk
headers to them as well, so the two can never drift apart unnoticed.  In a checkout they
are read from docs/schemas/; an installed wheel carries the same files as
``gridlink.schemas``.
"""

import json
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def _schema_dir():
    if SOURCE_DIR.is_dir():
        return SOURCE_DIR
    import importlib

    # a data-only (namespace) package: its one folder
    return Path(next(iter(importlib.import_module("gridlink.schemas").__path__)))


SCHEMA_DIR = _schema_dir()
CHECKED = {"status": "status.json", "track": "track.json",
           "photo": "photo-chunk-header.json", "media": "media-chunk-header.json"}


def load_schemas(folder=SCHEMA_DIR):
    """{message kind: jsonschema validator} for the kinds in CHECKED found in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    docs = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}
    resources = []
    for name, doc in docs.items():
        res = Resource.from_contents(doc)
        resources.append((name, res))
        if "$id" in doc:
            resources.append((doc["$id"], res))
    registry = Registry().with_resources(resources)
    return {kind: Draft202012Validator(docs[name], registry=registry)
            for kind, name in CHECKED.items() if name in docs}


def first_error(validator, obj):
    """'path: message' of the first schema violation, or None."""
    err = next(iter(validator.iter_errors(obj)), None)
    if err is None:
        return None
    path = ".".join(str(p) for p in err.absolute_path) or "message"
    return f"{path}: {err.message} (JSON Schema)"
