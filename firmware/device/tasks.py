"""核实/核查 tasks from the supervision centre: keep, show, answer.

A task arrives on ``…/task``; it is stored in ``tasks.json`` (so a reboot keeps it),
logged, printed on the console, and on a fixed terminal shown on a kiosk page served on
localhost.  The operator answers with a button (patrol vehicle: ``yes``/``no``; kiosk:
the page's buttons; everywhere: ``gridlink device answer``): the device makes a result
report (source ``task``) with a photo and the task is closed.

Results: a 核实 (verify) task is ``confirmed`` or ``not_found``; a 核查 (check) task is
``resolved`` or ``unresolved``.  A ``clip`` task (the last 30 s of video) is answered by
the runtime itself, without an operator: ``recorded`` (the clip follows the result as its
media) or ``no_clip`` (no recorder).
"""

import html
import json
import logging
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from .kiosk_form import FORM_MAX_BYTES, FormError, Pacer, parse_form, render_form

log = logging.getLogger("gridlink.device.tasks")

RESULTS = {"verify": ("confirmed", "not_found"), "check": ("resolved", "unresolved"),
           "clip": ("recorded", "no_clip")}
TYPE_NAMES = {"verify": "核实", "check": "核查", "clip": "视频"}


def result_of(task_type, yes):
    """The result word for a yes/no answer to a task of ``task_type``."""
    return RESULTS[task_type][0 if yes else 1]


class TaskBoard:
    """Open tasks, persisted through the device store."""

    def __init__(self, store, console=True):
        self.store = store
        self.console = console
        self.lock = threading.Lock()
        self.tasks = self.store.load_json("tasks.json", [])

    def add(self, task):
        with self.lock:
            if any(t["task"] == task["task"] for t in self.tasks):
                return False
            self.tasks.append(task)
            self.store.save_json("tasks.json", self.tasks)
        line = (f"TASK {task['task']} {TYPE_NAMES[task['type']]} ({task['type']}): "
                f"{task['text'] or '(no text)'} at {task['lat']:.6f},{task['lon']:.6f} "
                f"grid {task['grid']} report {task['report']} deadline {task['deadline']}")
        log.warning("%s", line)
        if self.console:
            print(line, flush=True)
        return True

    def open(self):
        with self.lock:
            return list(self.tasks)

    def current(self):
        with self.lock:
            return self.tasks[0] if self.tasks else None

    def find(self, task_id):
        with self.lock:
            return next((t for t in self.tasks if t["task"] == task_id), None)

    def close(self, task_id):
        with self.lock:
            self.tasks = [t for t in self.tasks if t["task"] != task_id]
            self.store.save_json("tasks.json", self.tasks)


PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>gridlink {device}</title>
<style>body{{font-family:sans-serif;margin:2em}}.t{{border:1px solid #888;padding:1em;
margin:1em 0}}button{{font-size:1.4em;margin-right:1em}}</style></head><body>
<h1>{device} — 任务 (tasks)</h1>{body}</body></html>"""


REPORT_LINK = '<p><a href="/report">我要反映 report a problem</a></p>'


def render(device, tasks, reports=False):
    link = REPORT_LINK if reports else ""
    if not tasks:
        return PAGE.format(device=html.escape(device),
                           body=link + "<p>没有任务 (no open task)</p>")
    parts = []
    for t in tasks:
        yes, no = RESULTS[t["type"]]
        parts.append(
            f'<div class="t" id="{html.escape(t["task"])}"><h2>{TYPE_NAMES[t["type"]]} '
            f'{html.escape(t["task"])}</h2><p>{html.escape(t["text"])}</p>'
            f'<p>{t["lat"]:.6f}, {t["lon"]:.6f} · grid {html.escape(str(t["grid"]))} · '
            f'deadline {html.escape(str(t["deadline"]))}</p>'
            f'<form method="post" action="/answer"><input type="hidden" name="task" '
            f'value="{html.escape(t["task"])}"><button name="result" value="{yes}">{yes}'
            f'</button><button name="result" value="{no}">{no}</button></form></div>')
    return PAGE.format(device=html.escape(device), body=link + "".join(parts))


class Kiosk:
    """The fixed terminal's local page: open tasks with answer buttons (localhost only),
    and, given ``offered`` classes (``kiosk_form.choices``) and ``file_report(kind, code,
    text, photo)``, a citizen's report form on ``/report``."""

    def __init__(self, device, board, answer, bind="127.0.0.1", port=8088, *, offered=(),
                 file_report=None, camera=True, gap_s=10.0):
        kiosk = self
        self.offered = list(offered)
        self.file_report = file_report
        self.pacer = Pacer(gap_s)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log.debug("kiosk: " + fmt, *args)

            def _send(self, code, body, ctype="text/html; charset=utf-8"):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/tasks.json":
                    self._send(200, json.dumps(board.open(), ensure_ascii=False),
                               "application/json")
                elif self.path in ("/", "/index.html"):
                    self._send(200, render(device, board.open(), bool(kiosk.offered)))
                elif self.path == "/report" and kiosk.offered:
                    self._send(200, render_form(device, kiosk.offered, camera=camera))
                else:
                    self._send(404, "not found", "text/plain")

            def do_POST(self):
                if self.path == "/report" and kiosk.offered:
                    n = int(self.headers.get("Content-Length") or 0)
                    code, page = kiosk.citizen(self.rfile.read(min(n, FORM_MAX_BYTES + 1)))
                    self._send(code, page)
                    return
                if self.path != "/answer":
                    self._send(404, "not found", "text/plain")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(min(n, 4096)).decode("utf-8", "replace"))
                try:
                    rid = kiosk.answer(form.get("task", [""])[0], form.get("result", [""])[0])
                except Exception as exc:  # shown to the operator, the device goes on
                    self._send(400, f"<p>{html.escape(str(exc))}</p><a href='/'>back</a>")
                    return
                self._send(200, f"<p>answered: report {html.escape(rid)}</p>"
                                "<a href='/'>back</a>")

        self.answer = answer
        self.device, self.camera = device, camera
        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="kiosk",
                                        daemon=True)

    def citizen(self, body):
        """(HTTP status, page) for a submitted report form: filed, or why not."""
        form = partial(render_form, self.device, self.offered, camera=self.camera)
        try:
            chosen, text, photo = parse_form(body, self.offered)
        except FormError as exc:
            return 400, form(message=str(exc), error=True)
        wait = self.pacer.wait_s()
        if wait > 0:
            return 429, form(message=f"请稍候 {wait:.0f} 秒再提交 please wait {wait:.0f} s",
                             error=True)
        try:
            rep = self.file_report(chosen["kind"], chosen["code"], text, photo)
        except Exception as exc:  # shown to the citizen, the device goes on
            log.error("kiosk report not filed: %s", exc)
            return 503, form(message=f"未能提交 not filed: {exc}", error=True)
        self.pacer.filed()
        log.info("kiosk: citizen report %s (%s %s)", rep["id"], chosen["code"], chosen["label"])
        return 200, form(message=f"已提交 filed: {chosen['label']} · 编号 {rep['id']}")

    def start(self):
        self._thread.start()
        log.info("kiosk page on http://127.0.0.1:%d/", self.port)
        return self

    def is_alive(self):
        return self._thread.is_alive()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
