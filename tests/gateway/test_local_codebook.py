"""The gateway with a district's local code book (``--codebook-overlay``): its classes are
taken, its retired ones refused, the queue names them with the book's source, and a local
12-digit grid code finds the reports of the standard grid it stands for."""

import json

import pytest
from gridlink.cli import main
from gridlink.firmware.codebooks import load_books
from gridlink.gateway.open311 import ClassNames
from gridlink.gateway.validate import Validator

from tests.codes.test_overlay import overlay
from tests.support.gateway_rig import encode, report, topic
from tests.support.intake_api import add_report

T = 1_795_000_000.0


@pytest.fixture
def local_file(tmp_path):
    path = tmp_path / "local-410106.json"
    path.write_text(json.dumps(overlay(), ensure_ascii=False), encoding="utf-8")
    return path


def test_a_local_class_is_taken_and_a_retired_one_refused(local_file):
    shipped = Validator(None, load_books())
    local = Validator(None, load_books(overlays=[local_file]))
    added = encode(report(seq=1, code="21001"))
    v = shipped.decode(topic("pv-0001", "report"), added, T)
    assert v.kind == "rejected" and "major 21 does not exist" in v.reason
    v = local.decode(topic("pv-0001", "report"), added, T)
    assert v.kind == "report" and v.data["code"] == "21001"
    retired = encode(report(seq=2, code="06052"))
    assert shipped.decode(topic("pv-0001", "report"), retired, T).kind == "report"
    v = local.decode(topic("pv-0001", "report"), retired, T)
    assert v.kind == "rejected"
    assert "class 06052 is retired by the local book zz-410106" in v.reason


def test_the_queue_names_local_classes_with_their_source_and_reads_grid_aliases(store,
                                                                              local_file):
    from gridlink.gateway.api import MIGRATIONS
    from gridlink.gateway.queue import IntakeQueue

    store.migrate(extra=MIGRATIONS)
    add_report(store, 1, code="21001", grid="410106001001001")
    add_report(store, 2, code="06010", grid="410106001001002")
    queue = IntakeQueue(store, codebooks=ClassNames.load(load_books(overlays=[local_file])))
    items = {i["code"]: i for i in queue.list(status="all")["items"]}
    assert items["21001"]["class_name"] == "共享单车乱停放"
    assert items["21001"]["class_local"] == {
        "change": "added", "book": "zz-410106", "title": "上街区本地扩展（示例）",
        "source": "上街区数字城管实施方案 附件2（示例）"}
    assert items["06010"]["class_local"]["standard_name"] == "暴露垃圾"
    # 410106010101 is the local plan's code of 410106001001001: its one report
    found = queue.list(status="all", grid="410106010101")["items"]
    assert [i["grid"] for i in found] == ["410106001001001"]
    # without the local book the same 12 digits are a prefix that matches nothing
    plain = IntakeQueue(store, codebooks=ClassNames.load(load_books()))
    assert plain.list(status="all", grid="410106010101")["items"] == []
    assert plain.list(status="all")["items"][0]["class_local"] is None


def test_gateway_run_refuses_a_changed_local_book_before_it_starts(local_file, tmp_path,
                                                                   capsys):
    doc = json.loads(local_file.read_text(encoding="utf-8"))
    doc["title"] = "改过"
    local_file.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert main(["gateway", "run", "--broker", "mqtt://127.0.0.1:9", "--db",
                 f"sqlite:///{tmp_path}/intake.sqlite", "--codebook-overlay",
                 str(local_file)]) == 2
    assert "does not match its content" in capsys.readouterr().err
    assert not (tmp_path / "intake.sqlite").exists()
