// The intake board: live queue, grid map, report detail with claim / accept / reject,
// device presence.  Plain DOM, no libraries, nothing loaded from outside the gateway.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const FLAG_NAMES = {
  grid_mismatch: "网格不符 grid mismatch", no_fix: "无定位 no fix", stale_fix: "定位过期 stale fix",
  clock_fallback: "系统时钟 clock fallback", fixed_position: "固定位置 fixed position",
  capture_time: "时间可疑 capture time",
};
const TIME_FLAG_NAMES = {
  ahead: "capture time ahead of receipt: listed by receive time",
  old: "capture time long before receipt: listed by receive time",
  before_provisioning: "capture time before the device was provisioned: listed by receive time",
};
// how the task desk chose a task's device (gateway/tasks.py CHOSEN_BY)
const CHOSEN_NAMES = {
  work_grid: "工作网格在岗监督员", nearest_on_duty: "最近在岗设备", assignment: "网格指定设备", nearest: "最近设备",
};
const taskDevice = (t) => t.device
  ? `${t.device}${t.chosen_by ? ` · ${CHOSEN_NAMES[t.chosen_by] || t.chosen_by}` : ""}`
  : "no device online yet";
const STATE_NAMES = { pending: "待受理", accepted: "立案", rejected: "不予立案", attached: "任务结果" };

const ACTION_NAMES = {
  "report.claim": "认领", "report.release": "释放", "report.accept": "立案", "report.reject": "不予立案",
  "task.create": "派任务", "task.dispatch": "重发任务",
};

const board = {
  selected: null, reports: [], devices: [], grid: null, seen: new Set(), first: true,
  view: null, refreshing: null, again: false, session: null, started: false,
};

// ------------------------------------------------------------------ helpers

// Every call rides on the session cookie; a change also sends the session's CSRF token.
// A 401 (signed out, idle too long) brings the sign-in form back.
async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && board.session && board.session.csrf) {
    init.headers["X-CSRF-Token"] = board.session.csrf;
  }
  const resp = await fetch(path, init);
  const data = resp.status === 204 ? null : await resp.json();
  if (resp.status === 401 && path !== "/api/session") showSignIn(data && data.detail);
  if (!resp.ok) {
    const detail = data && data.detail;
    const text = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw Object.assign(new Error(text || resp.statusText), { status: resp.status, data });
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function localTime(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString("zh-CN", { hour12: false });
}

function me() {
  return board.session ? board.session.user : null;
}

function mayOverride() {  // 值班长: may act on another operator's claim
  return Boolean(board.session && board.session.roles.includes("shift_lead"));
}

function say(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = kind || "";
}

function visualState(r) {
  return r.state === "pending" && r.holder ? "held" : r.state;
}

function className(r) {
  return r.class_name ? `${r.class_name} ${r.code}` : `${r.kind === "component" ? "部件" : "事件"} ${r.code}`;
}

// ------------------------------------------------------------------ map projection

function bboxOf(points) {
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
  for (const [x, y] of points) {
    if (x < w) w = x; if (x > e) e = x; if (y < s) s = y; if (y > n) n = y;
  }
  return Number.isFinite(w) ? [w, s, e, n] : null;
}

function makeView(bbox) {
  let [w, s, e, n] = bbox;
  const padX = Math.max((e - w) * 0.04, 0.002), padY = Math.max((n - s) * 0.04, 0.002);
  w -= padX; e += padX; s -= padY; n += padY;
  const k = Math.cos(((s + n) / 2) * Math.PI / 180);
  const scale = 100000;  // SVG units per degree of latitude
  const view = {
    x: (lon) => (lon - w) * k * scale,
    y: (lat) => (n - lat) * scale,
    width: (e - w) * k * scale, height: (n - s) * scale,
  };
  view.unit = Math.max(view.width, view.height) / 75;  // marker size
  $("map").setAttribute("viewBox", `0 0 ${view.width} ${view.height}`);
  return view;
}

function cellPath(view, rings) {
  return rings.map((ring) => "M" + ring.map(([x, y]) => `${view.x(x).toFixed(1)},${view.y(y).toFixed(1)}`)
    .join("L") + "Z").join("");
}

function drawCells() {
  const g = $("cells");
  g.replaceChildren();
  if (!board.grid || !board.view) return;
  for (const f of board.grid.features) {
    const path = el("svg:path", { d: cellPath(board.view, f.geometry.coordinates), "data-grid": f.properties.code,
      "fill-rule": "evenodd" });
    path.addEventListener("mouseenter", () => { $("cell-name").textContent = `网格 ${f.properties.code}`; });
    path.append(el("svg:title", { text: f.properties.code }));
    g.append(path);
  }
}

function ensureView() {
  if (board.grid && board.grid.features.length) {
    if (!board.view) {
      const pts = board.grid.features.flatMap((f) => f.geometry.coordinates.flat());
      board.view = makeView(bboxOf(pts));
      drawCells();
    }
    return;
  }
  // no grid map: frame whatever we have to show
  const pts = board.reports.filter((r) => r.lat !== null).map((r) => [r.lon, r.lat])
    .concat(board.devices.filter((d) => d.last_fix).map((d) => [d.last_fix.lon, d.last_fix.lat]));
  const bbox = bboxOf(pts);
  if (bbox) board.view = makeView(bbox);
}

function drawMap() {
  ensureView();
  const points = $("points"), cars = $("cars");
  points.replaceChildren();
  cars.replaceChildren();
  const view = board.view;
  if (!view) return;
  for (const c of document.querySelectorAll("#cells path.hit")) c.classList.remove("hit");
  for (const r of board.reports) {
    if (r.lat === null || r.lon === null) continue;
    const circle = el("svg:circle", {
      cx: view.x(r.lon), cy: view.y(r.lat), r: view.unit * 0.6, "data-id": r.id,
      class: `${visualState(r)}${r.id === board.selected ? " selected" : ""}`,
      onclick: () => select(r.id),
    }, el("svg:title", { text: `${className(r)} · ${r.grid || "no grid"}` }));
    points.append(circle);
    const cell = r.grid && document.querySelector(`#cells path[data-grid="${r.grid}"]`);
    if (cell && r.state === "pending") cell.classList.add("hit");
  }
  for (const d of board.devices) {
    if (!d.last_fix) continue;
    const x = view.x(d.last_fix.lon), y = view.y(d.last_fix.lat), u = view.unit;
    cars.append(el("svg:g", { "data-device": d.device },
      el("svg:rect", { x: x - u / 2, y: y - u / 2, width: u, height: u, class: d.online ? "" : "offline" }),
      el("svg:text", { x: x + u * 0.8, y: y + u * 0.3, text: d.device, style: `font-size:${u * 1.1}px` })));
  }
}

// ------------------------------------------------------------------ lists

function renderCounts(summary) {
  $("n-pending").textContent = summary.reports.pending;
  $("n-accepted").textContent = summary.reports.accepted;
  $("n-rejected").textContent = summary.reports.rejected;
  $("n-online").textContent = summary.devices.online;
  $("n-devices").textContent = summary.devices.total;
  const urgent = summary.reports.urgent_pending || 0;   // 突发事件 nobody has decided yet
  $("n-urgent").textContent = urgent;
  $("urgent-alert").hidden = urgent === 0;
}

function renderReports(page) {
  board.reports = page.items;
  $("list-total").textContent = page.total;
  const list = $("reports");
  list.replaceChildren();
  for (const r of page.items) {
    const flags = (r.flags || []).map((f) => el("span", { class: "badge", text: FLAG_NAMES[f] || f }));
    if (r.grid_mismatch && !(r.flags || []).includes("grid_mismatch")) {
      flags.push(el("span", { class: "badge", text: FLAG_NAMES.grid_mismatch }));
    }
    if (r.time_flag) {
      flags.push(el("span", { class: "badge time-flag", title: TIME_FLAG_NAMES[r.time_flag] || r.time_flag,
                              text: FLAG_NAMES.capture_time }));
    }
    if (r.urgent) flags.unshift(el("span", { class: "badge urgent", text: "突发" }));
    if ((r.likely_same || []).length) {
      flags.push(el("span", { class: "badge likely-same", title: r.likely_same.join("\n"),
                              text: `疑似重复 ${r.likely_same.length}` }));
    }
    if (r.repeats) flags.push(el("span", { class: "badge repeats", text: `重复报警 ×${r.repeats + 1}` }));
    const holder = r.holder ? el("span", { class: "badge holder", text: `认领 ${r.holder}` }) : null;
    const fresh = !board.first && !board.seen.has(r.id);
    board.seen.add(r.id);
    const li = el("li", {
      "data-id": r.id, class: [visualState(r), r.urgent ? "urgent" : "", r.id === board.selected ? "selected" : "",
                               fresh ? "fresh" : ""]
        .filter(Boolean).join(" "),
      onclick: () => select(r.id),
    },
    el("div", { class: "r-top" }, el("span", { class: "r-class", text: className(r) }),
      el("span", { class: "r-meta", text: localTime(r.captured_at) })),
    el("div", { class: "r-meta" }, `${r.grid || "no grid"} · ${r.device} · ${r.source}`,
      ...flags, holder,
      r.state !== "pending" ? el("span", { class: "badge", text: STATE_NAMES[r.state] || r.state }) : null),
    r.text ? el("div", { class: "r-meta", text: r.text }) : null);
    list.append(li);
  }
  board.first = false;
}

function renderCases(page) {
  // the newest cases and the state each is in (立案, 派遣, 处置中, 处置反馈, 核查, 结案, 返工 …)
  $("cases-total").textContent = page.total ? `(${page.total})` : "";
  const ul = $("cases");
  ul.replaceChildren();
  for (const c of page.items) {
    ul.append(el("li", { "data-case": c.case_no, class: `case ${c.state}${c.overdue ? " overdue" : ""}`,
                         onclick: () => select(c.report_id) },
      el("b", { text: c.case_no }), " ",
      el("span", { class: "badge case-state", text: c.label || c.state }),
      el("div", { class: "r-meta", text: `${c.code || ""} · ${c.department || "未派遣"}`
        + `${c.overdue ? " · 超期 overdue" : ""} · ${localTime(c.updated_at)}` })));
  }
}

function renderDevices(devices) {
  board.devices = devices;
  const ul = $("devices");
  ul.replaceChildren();
  for (const d of devices) {
    const fix = d.last_fix ? `${d.last_fix.lat.toFixed(5)}, ${d.last_fix.lon.toFixed(5)}` : "no fix";
    ul.append(el("li", { "data-device": d.device, class: d.online ? "online" : "offline" },
      el("span", { class: `presence ${d.state || ""}` }),
      el("b", { text: d.device }), ` ${d.state || "unknown"} · ${d.profile || ""}`,
      el("div", { class: "r-meta", text: `${fix} · outbox ${d.outbox_reports ?? "–"} · fw ${d.firmware || "–"} · seen ${localTime(d.last_seen)}` }),
      d.refused ? el("div", { class: "r-meta refused", title: d.last_refused.reason,
                              text: `refused ${d.refused}, last ${localTime(d.last_refused.at)}: ${d.last_refused.reason}` }) : null,
      d.id_reused ? el("div", { class: "r-meta refused id-reused",
                                text: `id reused ${d.id_reused}: counter restarted? reports refused, kept on the device` }) : null,
      configLine(d.config),
      d.ota ? el("div", { class: "r-meta ota", text: otaText(d.ota) }) : null));
  }
}

// desired state: the configuration version desired against the one the device reports
function configLine(c) {
  if (!c || (c.desired == null && c.reported == null && !c.last_refused)) return null;
  const drift = c.drift ? ` · drift: ${c.differences.map((x) => x.field).join(", ") || "version"}` : "";
  const refused = c.last_refused
    ? ` · refused v${c.last_refused.version ?? "?"}: ${c.last_refused.reason}${c.last_refused.field ? " " + c.last_refused.field : ""}`
    : "";
  return el("div", { class: "r-meta config" + (c.drift ? " drift" : "") + (c.last_refused ? " refused" : ""),
                     title: c.last_refused ? c.last_refused.message : "",
                     text: `config desired v${c.desired ?? "–"} · reported v${c.reported ?? "–"}${drift}${refused}` });
}

// A device's update slots: the version it runs, both slots, the trial, the last failure.
function otaText(ota) {
  const slots = ota.slots || {};
  let text = `版本 ${ota.installed || "–"} (slot ${ota.slot || "–"}; a ${slots.a || "–"}, b ${slots.b || "–"})`;
  if (ota.pending) text += ` · on trial ${ota.pending}`;
  if (ota.failed) text += ` · failed ${ota.failed.version}: ${ota.failed.reason}`;
  return text;
}

function filterQuery() {
  const q = new URLSearchParams({ status: $("f-status").value, limit: "200" });
  for (const [id, key] of [["f-code", "code"], ["f-grid", "grid"], ["f-flag", "flag"]]) {
    const v = $(id).value.trim();
    if (v) q.set(key, v);
  }
  return q.toString();
}

async function refresh() {
  // one refresh at a time; a change during one schedules exactly one more
  if (board.refreshing) { board.again = true; return board.refreshing; }
  board.refreshing = (async () => {
    try {
      const [summary, page, devices, cases] = await Promise.all([
        api("GET", "/api/summary"), api("GET", "/api/reports?" + filterQuery()), api("GET", "/api/devices"),
        api("GET", "/api/cases?limit=20")]);
      renderCounts(summary);
      renderReports(page);
      renderDevices(devices);
      renderCases(cases);
      drawMap();
      if (board.selected) await showDetail(board.selected, true);
      $("reports").dataset.loaded = "1";
    } catch (err) {
      say(`refresh failed: ${err.message}`, "error");
    } finally {
      board.refreshing = null;
      if (board.again) { board.again = false; refresh(); }
    }
  })();
  return board.refreshing;
}

// ------------------------------------------------------------------ detail and actions

async function select(id) {
  board.selected = id;
  for (const li of document.querySelectorAll("#reports li")) li.classList.toggle("selected", li.dataset.id === id);
  for (const c of document.querySelectorAll("#points circle")) c.classList.toggle("selected", c.dataset.id === id);
  say("");
  await showDetail(id, false);
}

async function showDetail(id, quiet) {
  let r;
  try {
    r = await api("GET", `/api/reports/${encodeURIComponent(id)}`);
  } catch (err) {
    if (!quiet) say(err.message, "error");
    return;
  }
  if (board.selected !== id) return;
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-body").dataset.id = id;
  $("d-title").textContent = className(r);
  const rows = [
    ["状态 state", `${STATE_NAMES[r.state] || r.state}${r.holder ? ` · 认领 ${r.holder} until ${localTime(r.lease_until)}` : ""}`],
    ["案卷号 case", r.case_no], ["案卷状态 case state", r.case && `${r.case.label} (${r.case.state})${r.case.department ? " · " + r.case.department : ""}`],
    ["原因 reason", r.reason],
    ["大类 major", r.major_name], ["上报 id", r.id], ["采集 time", `${localTime(r.captured_at)} (${r.time_source})${r.time_flag ? ` · received ${localTime(r.received_at)}: ${TIME_FLAG_NAMES[r.time_flag] || r.time_flag}` : ""}`],
    ["网格 grid", r.grid + (r.grid_mismatch ? ` (device said ${r.grid_device})` : "")],
    ["位置 fix", r.lat === null ? "no fix" : `${r.lat.toFixed(6)}, ${r.lon.toFixed(6)}`],
    ["设备 device", `${r.device} · ${r.source}`], ["标准 std", `${r.standard} ${r.kind}`],
    ["部件 object", r.object], ["描述 text", r.text],
    ["标记 flags", (r.flags || []).map((f) => FLAG_NAMES[f] || f).join(", ")],
    ["任务 tasks", (r.tasks || []).map((t) => `${t.id} ${t.type} ${t.state} → ${taskDevice(t)}${t.result ? " " + t.result : ""}`).join("; ")],
  ];
  const dl = $("d-fields");
  dl.replaceChildren();
  for (const [k, v] of rows) if (v) dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  const photos = $("d-photos");
  const want = (r.photos || []).map((p) => p.sha256).join();
  if (photos.dataset.for !== id + want) {
    photos.dataset.for = id + want;
    photos.replaceChildren(...(r.photos || []).map((p) => el("img", {
      src: `/api/photos/${p.sha256}`, alt: `photo ${p.sha256.slice(0, 12)}`, loading: "lazy",
      onerror: (ev) => { ev.target.replaceWith(el("div", { class: "hint", text: `photo ${p.sha256.slice(0, 12)}… not complete yet` })); },
    })));
  }
  // the report's own media, then what its clip tasks brought back
  showMedia(id, [...(r.media || []), ...(r.tasks || []).flatMap((t) => (t.media || []).map((m) => ({ ...m, task: t.id })))]);
  const pending = r.state === "pending";
  const mine = r.holder && r.holder === me();
  const blocked = r.holder && !mine && !mayOverride();  // another's claim
  $("b-claim").disabled = !pending || blocked;
  $("b-claim").textContent = mine ? "续期 Renew claim" : r.holder ? "接管 Take over" : "认领 Claim";
  $("b-release").disabled = !r.holder || blocked;
  $("b-accept").disabled = !pending || blocked;
  $("b-reject").disabled = !pending || blocked;
  showHistory(id);
  // 核实 (verify) before 立案; 核查 (check) once the department reported back (处置反馈)
  board.taskType = r.state === "accepted" ? "check" : "verify";
  const checkable = r.case && (r.case.state === "reported" || r.case.state === "checking");
  $("b-task").textContent = board.taskType === "check" ? "派核查 Send check task" : "派核实 Send verify task";
  $("b-task").disabled = r.lat === null || r.state === "rejected" || r.state === "attached"
    || (board.taskType === "check" && !checkable);
  $("b-clip").disabled = r.lat === null;
}

// A clip plays with its pre-trigger part marked: the timeline under it shades the seconds
// recorded before the button press (trigger_offset_s, from the clip's MP4 comment) and
// marks the press; while the playhead is before it the caption says so.  Memos play as audio.
function showMedia(id, media) {
  const box = $("d-media");
  const want = id + media.map((m) => m.sha256).join();
  if (box.dataset.for === want) return;
  box.dataset.for = want;
  box.replaceChildren(...media.map((m) => (m.kind === "clip" ? clipFigure(m) : memoFigure(m))));
}

function clipFigure(m) {
  const src = `/api/media/${m.sha256}`;
  const video = el("video", { src, controls: "", preload: "metadata", "data-sha256": m.sha256 });
  const at = m.trigger_offset_s;
  const seconds = m.seconds || 0;
  const caption = el("figcaption", {});
  const timeline = el("div", { class: "timeline" });
  if (at !== null && at !== undefined && seconds > 0) {
    const pct = Math.min(100, (100 * at) / seconds);
    timeline.append(el("div", { class: "pre", style: `width:${pct}%`, title: `${at.toFixed(1)} s before the press` }),
      el("div", { class: "at", style: `left:${pct}%`, title: "按键 press" }));
  }
  const now = el("div", { class: "now", style: "left:0%" });
  timeline.append(now);
  const [zh, en] = m.task ? ["请求", "request"] : ["按键", "press"];
  const describe = () => {
    const t = video.currentTime || 0;
    if (seconds > 0) now.style.left = `${Math.min(100, (100 * t) / seconds)}%`;
    const before = at !== null && at !== undefined && t < at;
    caption.replaceChildren(
      el("span", { class: before ? "before" : "", text: before ? `${zh}前 before the ${en} (−${(at - t).toFixed(1)} s)` : `${zh}后 after the ${en}` }),
      ` · ${m.task ? `任务 ${m.task} ` : ""}视频 clip ${seconds.toFixed(1)} s${at !== null && at !== undefined ? `, ${at.toFixed(1)} s before the ${en}` : ""}`);
  };
  video.addEventListener("timeupdate", describe);
  video.addEventListener("seeked", describe);
  describe();
  return el("figure", { class: "clip" }, video, timeline, caption);
}

function memoFigure(m) {
  return el("figure", { class: "memo" },
    el("audio", { src: `/api/media/${m.sha256}`, controls: "", preload: "metadata", "data-sha256": m.sha256 }),
    el("figcaption", { text: `语音 voice memo ${(m.seconds || 0).toFixed(1)} s` }));
}

async function showHistory(id) {
  let h;
  try {
    h = await api("GET", `/api/reports/${encodeURIComponent(id)}/history`);
  } catch (err) {
    return;
  }
  if (board.selected !== id) return;
  $("d-history").replaceChildren(...h.entries.map((e) => el("li", { "data-action": e.action,
    text: `${localTime(e.at)} ${e.actor} ${ACTION_NAMES[e.action] || e.action}`
      + `${e.target.startsWith("task:") ? " " + e.target.slice(5) : ""}`
      + `${e.after && e.after.case_no ? " " + e.after.case_no : ""}`
      + `${e.after && e.after.reason ? " " + e.after.reason : ""}` })));
}

async function act(label, fn) {
  const id = board.selected;
  if (!id) return;
  try {
    const out = await fn(id);
    say(`${label}: ${out}`, "done");
  } catch (err) {
    say(`${label} failed: ${err.message}`, "error");
  }
  await refresh();
}

function wireActions() {
  const path = (id, verb) => `/api/reports/${encodeURIComponent(id)}/${verb}`;
  $("b-claim").addEventListener("click", () => act("认领 claim", async (id) => {
    const c = await api("POST", path(id, "claim"), {});
    return `held until ${localTime(c.lease_until)}`;
  }));
  $("b-release").addEventListener("click", () => act("释放 release", async (id) => {
    await api("POST", path(id, "release"), {});
    return "released";
  }));
  $("b-accept").addEventListener("click", () => act("立案 accept", async (id) => {
    const body = {};
    const caseNo = $("case-no").value.trim();
    if (caseNo) body.case_no = caseNo;
    const d = await api("POST", path(id, "accept"), body);
    $("case-no").value = "";
    return `case ${d.case_no}`;
  }));
  $("b-reject").addEventListener("click", () => act("不予立案 reject", async (id) => {
    const reason = $("reason").value.trim();
    if (!reason) throw new Error("give a reason (不予立案原因)");
    await api("POST", path(id, "reject"), { reason });
    $("reason").value = "";
    return reason;
  }));
  $("b-clip").addEventListener("click", () => act("调视频 clip", async (id) => {
    const t = await api("POST", "/api/tasks", { type: "clip", report_id: id });
    return `${t.id} → ${taskDevice(t)} (${t.state})`;
  }));
  $("b-task").addEventListener("click", () => act("task", async (id) => {
    const type = board.taskType || "verify";
    const t = await api("POST", "/api/tasks", { type, report_id: id });
    return `${type === "check" ? "核查" : "核实"} ${t.id} → ${taskDevice(t)} (${t.state})`;
  }));
}

// ------------------------------------------------------------------ start

function listen() {
  if (!window.EventSource) return;
  const source = new EventSource("/api/events");
  source.addEventListener("change", () => refresh());
  source.onopen = () => { $("live").className = "live on"; };
  source.onerror = () => { $("live").className = "live off"; };
}

// ------------------------------------------------------------------ signing in

function showSession() {
  const s = board.session;
  $("who").textContent = s ? `${s.display} (${s.labels.join("、")})` : "";
  $("b-signout").hidden = !s;
}

function showSignIn(why) {
  board.session = null;
  showSession();
  $("si-error").textContent = why && why !== "sign in first (the board) or send an API token" ? why : "";
  $("signin-pane").hidden = false;
  $("si-user").focus();
  offerProviders();
}

// The city's identity provider, when the gateway has one: a button to its sign-in page
// (the gateway sends the browser there and back, then to this page, signed in).
async function offerProviders() {
  let providers = [];
  try {
    const resp = await fetch("/api/session/providers", { credentials: "same-origin" });
    if (resp.ok) providers = await resp.json();
  } catch (err) {
    providers = [];
  }
  $("signin-providers").replaceChildren(...providers.map((p) => {
    const a = document.createElement("a");
    a.className = "provider";
    a.href = p.start;
    a.textContent = `使用${p.label}登录`;
    return a;
  }));
}

async function signIn(ev) {
  ev.preventDefault();
  try {
    board.session = await api("POST", "/api/session",
      { user: $("si-user").value.trim(), password: $("si-pass").value });
  } catch (err) {
    $("si-error").textContent = err.status === 401 ? "用户名或密码错误 wrong user name or password"
      : err.message;
    return;
  }
  $("si-pass").value = "";
  $("signin-pane").hidden = true;
  showSession();
  await boot();
}

async function signOut() {
  try {
    await api("DELETE", "/api/session");
  } finally {
    board.selected = null;
    $("detail-body").hidden = true;
    $("detail-body").dataset.id = "";
    $("d-fields").replaceChildren();
    $("d-history").replaceChildren();
    showSignIn();
  }
}

async function boot() {
  if (board.started) { await refresh(); return; }
  board.started = true;
  try {
    board.grid = await api("GET", "/api/grid");
  } catch (err) {
    say(`grid map unavailable: ${err.message}`, "error");
  }
  await refresh();
  listen();
  setInterval(() => { if (board.session) refresh(); }, 15000);  // if a proxy cuts the stream
}

async function start() {
  for (const id of ["f-status", "f-code", "f-grid", "f-flag"]) $(id).addEventListener("change", () => refresh());
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
  $("signin").addEventListener("submit", signIn);
  $("b-signout").addEventListener("click", signOut);
  wireActions();
  try {
    board.session = await api("GET", "/api/session");  // still signed in (a reload)
  } catch (err) {
    showSignIn();
    return;
  }
  showSession();
  await boot();
}

start();
