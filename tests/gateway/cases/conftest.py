"""A case desk over the real store (SQLite and PostgreSQL, ``store`` from the gateway's
conftest): the intake queue opening cases at 立案, the task desk sending 核查 tasks, the
audit trail, a department and the grid's assigned patrol device."""

import pytest
from gridlink.gateway.api import MIGRATIONS
from gridlink.gateway.auth.audit import AuditTrail
from gridlink.gateway.cases.book import CaseBook
from gridlink.gateway.cases.sources import OperatorReports
from gridlink.gateway.open311 import ClassNames
from gridlink.gateway.queue import IntakeQueue
from gridlink.gateway.tasks import TaskDesk

from tests.support.intake_api import Clock, add_report

GRID = "410106001001001"
DEVICE = "pv-0001"


class Desk:
    """The parts wired as ``create_app`` wires them, and the moves a test needs."""

    def __init__(self, store):
        store.migrate(extra=MIGRATIONS)
        self.store = store
        self.clock = Clock()
        self.trail = AuditTrail(store)
        self.book = CaseBook(store, clock=self.clock, trail=self.trail)
        self.queue = IntakeQueue(store, clock=self.clock, on_accept=self.book.register)
        self.desk = TaskDesk(store, self.queue, clock=self.clock, cases=self.book)
        self.desk.assign(GRID, DEVICE)
        self.book.put_department("sanitation", "环卫处", ["06"])
        self.book.put_department("parks", "园林局", ["01", "06"])
        self.sources = OperatorReports(store, ClassNames.load(), clock=self.clock)
        self.seq = 0

    def report(self, **kw):
        self.seq += 1
        return add_report(self.store, self.seq, grid=GRID, **kw)

    def case(self, code="06010"):
        """(case number, report id) of a new case at 立案."""
        rid = self.report(code=code)
        decision = self.queue.accept(rid, "op-a")
        return decision["case_no"], rid

    def record(self, actor):
        def audit(conn, action, **kw):
            return self.trail.record(conn, actor, action, **kw)
        return audit

    def act(self, case_no, action, actor="lead", **kw):
        return self.book.act(case_no, action, actor, audit=self.record(actor), **kw)

    def check(self, rid, actor="lead"):
        return self.desk.create(type="check", report_id=rid, operator=actor,
                                audit=self.record(actor))

    def answer(self, task_id, result):
        """The device's 核查 result, committed and handed to the after-commit hook."""
        self.seq += 1
        rid = add_report(self.store, self.seq, grid=GRID, source="task", task=task_id,
                         result=result)
        self.desk.on_report([{"id": rid, "device": DEVICE, "source": "task", "task": task_id,
                              "result": result}])
        return rid


@pytest.fixture
def desk(store):
    return Desk(store)
