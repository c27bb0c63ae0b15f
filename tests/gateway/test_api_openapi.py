"""docs/openapi.json is the served OpenAPI document; this test exports it and fails if stale.

When the API changes, the run that notices rewrites the file and fails once, so the
change shows up in review; the next run passes.
"""

import json

from gridlink.gateway.api import create_app
from gridlink.gateway.store import open_store

from tests.support.paths import ROOT

DOC = ROOT / "docs" / "openapi.json"


def served_document(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/intake.db")
    try:
        return create_app(store).openapi()
    finally:
        store.close()


def render(doc):
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def test_exported_openapi_document_is_current(tmp_path):
    text = render(served_document(tmp_path))
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else None
    if old != text:
        DOC.write_text(text, encoding="utf-8")
    assert old == text, f"{DOC} was stale and has been rewritten: review and commit it"


def test_document_covers_the_queue_tasks_and_open311(tmp_path):
    paths = served_document(tmp_path)["paths"]
    for path, method in [
        ("/api/reports", "get"), ("/api/reports/{report_id}/claim", "post"),
        ("/api/reports/{report_id}/accept", "post"), ("/api/reports/{report_id}/reject", "post"),
        ("/api/devices", "get"), ("/api/dead-letters", "get"), ("/api/tasks", "post"),
        ("/api/assignments/{grid}", "put"),
        ("/api/grid", "get"), ("/open311/v2/services.json", "get"),
        ("/open311/v2/requests.json", "get"), ("/open311/v2/requests/{request_id}.json", "get"),
    ]:
        assert method in paths.get(path, {}), (path, method)
