"""The supervision loop of ``gridlink demo``: simulated people who act through the HTTP API.

A simulated 派遣员/值班长 (the demo operator's token) and a simulated 专业部门 (an account
with the ``department`` role and its own token, as a department's system would hold) take
reports the vehicles file through the case states after 立案 (``docs/cases.md``):

* one case goes 立案 → 派遣 (it leaves through the gateway's bridge for the department's
  system, ``department.DepartmentSystem``) → 处置中 → 处置反馈 (a photo the department
  uploads) → 核查 → 结案;
* one goes the same way, its first 核查 answers unresolved (返工), the department handles
  it again once its system was told of the 返工, the second 核查 answers resolved → 结案
  (each 返工 and 结案 leaves through the bridge too);
* a 12345 hotline complaint is filed (``POST /api/reports``), a 核实 task confirms it and
  it is 立案.

Each story is a generator advanced one step per tick; a step that has to wait (for a
report, a task's answer, a case's move) yields and is asked again next tick.  The 核查 and
核实 tasks are answered by the simulated vehicles through the real device task path: the
district asks :attr:`SupervisionLoop.verdicts` how to answer each task.
"""

import json
import time
import urllib.error
import urllib.request

from .department import spot_photo
from .errors import DemoError

DEPARTMENT = "huanwei"  # the simulated department: it handles 市容环境 (06…) events
DEPARTMENT_NAME = "上街区环卫中心"
DEPARTMENT_CLASSES = ("06",)
DEPARTMENT_ACCOUNT = "huanwei-system"
# where the hotline caller says the problem is: 济源路, near the first vehicle's start
HOTLINE_POINT = (34.8066, 113.2920)
HOTLINE_CODE = "06010"  # 暴露垃圾
HANDLE_DEADLINE_S = 4 * 3600
TASK_DEADLINE_S = 600


class Refused(DemoError):
    """The API said no: ``status`` and the detail it gave."""

    def __init__(self, status, detail):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class Api:
    """JSON over HTTP to the gateway with one bearer token: an actor's system."""

    def __init__(self, base, token, timeout=10.0):
        self.base, self.token, self.timeout = base.rstrip("/"), token, timeout

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = exc.reason
            raise Refused(exc.code, detail) from None
        except OSError as exc:
            raise Refused(0, str(exc)) from None
        return json.loads(raw) if raw else None

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, body=None):
        return self.call("POST", path, {} if body is None else body)

    def put(self, path, body):
        return self.call("PUT", path, body)

    def upload(self, path, data, content_type="image/jpeg"):
        """POST raw bytes (a photo); the JSON answer."""
        req = urllib.request.Request(self.base + path, data=data, method="POST", headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise Refused(exc.code, exc.reason) from None
        except OSError as exc:
            raise Refused(0, str(exc)) from None


class SupervisionLoop:
    """The three stories; ``tick()`` advances each by at most one step.  ``say(text)``
    prints a step's line, ``event(what, **fields)`` logs it."""

    def __init__(self, operator, department, *, say, event, system=None):
        self.operator, self.department = operator, department
        self.system = system  # the department's system the bridge sends its cases to
        self.say, self.event = say, event
        self.verdicts = {}  # task id → True (resolved/confirmed) or False
        self.taken = set()  # report ids a story has picked
        self.outcome = {}  # story → what it ended with
        self.stories = {"closed": self._case(checks=(True,)),
                        "rework": self._case(checks=(False, True)),
                        "hotline": self._hotline()}

    @property
    def done(self):
        return not self.stories

    def setup(self):
        """The department the cases go to, set up by the 值班长 through the API."""
        body = {"name": DEPARTMENT_NAME, "classes": list(DEPARTMENT_CLASSES),
                "accounts": [DEPARTMENT_ACCOUNT]}
        if self.system is not None:
            body["system"] = {"adapter": "webhook", "url": self.system.url}
        self.operator.put(f"/api/departments/{DEPARTMENT}", body)
        self._line("setup", f"department {DEPARTMENT} {DEPARTMENT_NAME} handles "
                   f"{', '.join(c + '…' for c in DEPARTMENT_CLASSES)}; its system acts as "
                   f"{DEPARTMENT_ACCOUNT} (专业部门)")

    def tick(self):
        for name, story in list(self.stories.items()):
            try:
                result = next(story)
            except StopIteration as stop:
                self.outcome[name] = stop.value
                del self.stories[name]
                continue
            except Refused as exc:
                self.outcome[name] = f"stopped: {exc}"
                self._line(name, f"stopped: {exc}")
                del self.stories[name]
                continue
            if result is not None:
                self._line(name, result)

    def _line(self, story, text):
        self.say(f"[loop {story}] {text}")
        self.event("loop", story=story, text=text)

    # ------------------------------------------------------------ stories

    def _case(self, checks):
        """A vehicle's report through 立案 … 结案; ``checks``: each 核查's answer in turn."""
        report = None
        while report is None:
            report = self._pick()
            if report is None:
                yield None
        self.taken.add(report["id"])
        accepted = self.operator.post(f"/api/reports/{report['id']}/accept", {})
        no = accepted["case_no"]
        yield (f"report {report['id']} ({report['code']} {report.get('text') or ''}) "
               f"→ 立案 case {no}")
        dispatched = self.operator.post(f"/api/cases/{no}/dispatch", {
            "department": DEPARTMENT, "deadline_s": HANDLE_DEADLINE_S,
            "note": "请按时处置"})
        yield f"case {no} → 派遣 to {DEPARTMENT} (处置时限 {dispatched['stage_due']})"
        if self.system is not None:
            while not self.system.has(no):
                yield None
            yield f"case {no} → received by {DEPARTMENT}'s system through the bridge (key {no})"
        for n, resolved in enumerate(checks, 1):
            self.department.post(f"/api/cases/{no}/start", {"note": "已到场处置"})
            yield f"case {no} → 处置中 ({DEPARTMENT_ACCOUNT})"
            photo = self.department.upload(f"/api/cases/{no}/photos", spot_photo(n))["sha256"]
            self.department.post(f"/api/cases/{no}/feedback", {
                "note": f"第{n}次处置完毕", "photos": [photo]})
            yield f"case {no} → 处置反馈 with photo {photo[:12]}…"
            sent = self.operator.post(f"/api/cases/{no}/check", {
                "text": "请核查处置结果", "deadline_s": TASK_DEADLINE_S})
            task = sent["task"]
            self.verdicts[task["id"]] = resolved
            yield (f"case {no} → 核查: task {task['id']} to {task['device'] or '(no device yet)'}"
                   f", which will answer {'resolved' if resolved else 'unresolved'}")
            goal = "closed" if resolved else "rework"
            while True:
                case = self.operator.get(f"/api/cases/{no}")
                if case["state"] == goal:
                    break
                if case["state"] != "checking":
                    raise Refused(409, f"case {no} went to {case['state']}, not {goal}")
                if not task["device"]:
                    task = self.operator.post(f"/api/tasks/{task['id']}/dispatch")
                yield None
            yield (f"case {no} → {case['label']} ({goal}): the vehicle's 核查 came back "
                   f"{'resolved' if resolved else 'unresolved'}")
            if self.system is not None:  # the department hears of it before acting again
                key = f"{no}:{case['version']}"
                while not self.system.has(key):
                    yield None
                yield (f"case {no} → {DEPARTMENT}'s system told of the {case['label']} "
                       f"through the bridge (key {key})")
        return case["state"]

    def _hotline(self):
        """A 12345 complaint: filed, confirmed by a 核实 task, then 立案."""
        while not self.taken:  # the vehicles are out and reporting
            yield None
        filed = self.operator.post("/api/reports", {
            "source": "12345", "code": HOTLINE_CODE, "lat": HOTLINE_POINT[0],
            "lon": HOTLINE_POINT[1], "text": "济源路口垃圾堆放多日无人清理",
            "caller_name": "王女士", "caller_phone": "138 0000 0000",
            "address": "济源路与中心路交叉口", "key": f"12345-demo-{int(time.time())}"})
        rid = filed["id"]
        yield f"12345 hotline complaint filed as report {rid} ({HOTLINE_CODE} 暴露垃圾)"
        task = self.operator.post("/api/tasks", {
            "type": "verify", "report_id": rid, "text": "市民热线投诉, 请核实",
            "deadline_s": TASK_DEADLINE_S})
        self.verdicts[task["id"]] = True
        yield f"report {rid} → 核实 task {task['id']} to {task['device'] or '(no device yet)'}"
        while True:
            task = self.operator.get(f"/api/tasks/{task['id']}")
            if task["state"] == "done":
                break
            if task["state"] == "expired":
                raise Refused(409, f"核实 task {task['id']} expired")
            if not task["device"]:
                task = self.operator.post(f"/api/tasks/{task['id']}/dispatch")
            yield None
        yield f"report {rid}: 核实 came back {task['result']} from {task['device']}"
        accepted = self.operator.post(f"/api/reports/{rid}/accept", {})
        yield f"report {rid} (12345) → 立案 case {accepted['case_no']}"
        return "registered"

    def _pick(self):
        """The oldest pending vehicle report the department's classes cover, with a
        position and no task about it still out (a 核实 that came back is fine); None
        while there is none."""
        for code in DEPARTMENT_CLASSES:
            page = self.operator.get(f"/api/reports?status=pending&source=button&code={code}"
                                     "&order=asc&limit=20")
            for item in page["items"]:
                if (item["id"] in self.taken or item["lat"] is None
                        or not item["device"].startswith("pv-")):
                    continue
                tasks = self.operator.get(f"/api/reports/{item['id']}")["tasks"]
                if all(t["state"] in ("done", "expired") for t in tasks):
                    return item
        return None
