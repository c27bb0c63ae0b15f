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
  ahead: "采集时间晚于接收时间 capture time ahead of receipt",
  old: "采集时间远早于接收时间 capture time long before receipt",
  before_provisioning: "采集时间早于设备开通 capture time before the device was provisioned",
};
// how the task desk chose a task's device (gateway/tasks.py CHOSEN_BY)
const CHOSEN_NAMES = {
  work_grid: "工作网格在岗监督员", nearest_on_duty: "最近在岗设备", assignment: "网格指定设备", nearest: "最近设备",
  operator: "受理员指定",
};
const taskDevice = (t) => t.device
  ? `${t.device}${t.chosen_by ? ` · ${CHOSEN_NAMES[t.chosen_by] || t.chosen_by}` : ""}`
  : "暂无在线设备 no device online yet";
const STATE_NAMES = { pending: "待受理", accepted: "立案", rejected: "不予立案", attached: "任务结果" };
// the board's one vocabulary (签收 / 退回 / 延长, not the IT words for a lock)
const ACTION_NAMES = {
  "report.claim": "签收", "report.release": "退回", "report.accept": "立案", "report.reject": "不予立案",
  "task.create": "派任务", "task.dispatch": "重发任务",
};
const TASK_NAMES = { verify: "核实", check: "核查", clip: "调视频" };
const TASK_STATES = { open: "待发送", sent: "已派发", done: "已完成", expired: "已超时" };
const RESULT_NAMES = {
  confirmed: "属实", not_found: "不属实", resolved: "已处置", unresolved: "未处置", recorded: "已录像",
  no_clip: "无视频",
};
const DEVICE_STATES = { online: "在线", buffering: "在线·缓存", offline: "离线" };
const REJECT_REASONS = ["重复上报", "不属于城管职责范围", "信息不全，无法定位", "现场未发现问题", "已自行处置"];
const TZ = "Asia/Shanghai";  // the centre's time, whatever the browser's zone
const LEASE_WARN_S = 60;     // warn this long before one's own 签收 lapses

const board = {
  selected: null, reports: [], devices: [], grid: null, seen: new Set(), first: true,
  view: null, refreshing: null, again: false, rebuild: false, listKey: null, session: null,
  started: false, lease: null, pendingDecision: null,
};

// ------------------------------------------------------------------ helpers

// Every call rides on the session cookie; a change also sends the session's CSRF token.
// A 401 (signed out, idle too long) brings the sign-in form back, unless another session
// has begun since the call went out (a late answer to the one signed out).
async function api(method, path, body) {
  const asked = board.session;
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
  if (resp.status === 401 && path !== "/api/session" && board.session === asked) {
    showSignIn(data && data.detail);
  }
  if (!resp.ok) {
    const detail = data && data.detail;
    const text = typeof detail === "string" ? detail
      : Array.isArray(detail) ? detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ")
        : JSON.stringify(detail);
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
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString("zh-CN", { hour12: false, timeZone: TZ });
}

// "N 秒前 / 分钟前 / 小时前 / 天前" of an ISO time (a span that the ticker keeps current)
function agoText(iso) {
  const t = Date.parse(iso);
  if (!iso || Number.isNaN(t)) return "";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s} 秒前`;
  if (s < 3600) return `${Math.floor(s / 60)} 分钟前`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时前`;
  return `${Math.floor(s / 86400)} 天前`;
}

function ago(iso) {
  return el("span", { class: "ago", "data-at": iso || "", text: agoText(iso) });
}

function tickAgo() {
  for (const span of document.querySelectorAll(".ago[data-at]")) span.textContent = agoText(span.dataset.at);
  warnLease();
}

// A 409 in the centre's words and time: who holds or decided it, and until / when.
function conflictText(err) {
  const d = err.data || {};
  if (d.holder) return `${d.holder} 已签收，至 ${localTime(d.lease_until)}`;
  if (d.state === "accepted") return `已由 ${d.decided_by || "他人"} 立案 ${d.case_no || ""}`;
  if (d.state === "rejected") return `已由 ${d.decided_by || "他人"} 不予立案：${d.reason || ""}`;
  if (d.state === "attached") return "这是任务结果，不受理";
  if (d.case_no && d.report_id) return `案卷号 ${d.case_no} 已属上报 ${d.report_id}`;
  return err.message;
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

function className(r, full = false) {
  const name = r.class_name ? `${r.class_name} ${r.code}` : `${r.kind === "component" ? "部件" : "事件"} ${r.code}`;
  // a class the district's local code book adds or renames says so (in full: with the
  // book's title and source, and the standard's own name of a renamed class)
  const local = r.class_local;
  if (!local) return name;
  const what = local.change === "renamed" ? `本地更名，标准名称：${local.standard_name}` : "本地类别";
  return full ? `${name}（${what}；${local.title}；来源：${local.source}）` : `${name}（本地）`;
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
    width: (e - w) * k * scale, height: (n - s) * scale, bbox: [w, s, e, n],
  };
  view.unit = Math.max(view.width, view.height) / 75;  // marker size
  $("map").setAttribute("viewBox", `0 0 ${view.width} ${view.height}`);
  return view;
}

// a cell's rings, whether its geometry is a Polygon or a MultiPolygon (a cell in parts)
function cellRings(geometry) {
  return geometry.type === "MultiPolygon" ? geometry.coordinates.flat(1) : geometry.coordinates;
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
    const path = el("svg:path", { d: cellPath(board.view, cellRings(f.geometry)), "data-grid": f.properties.code,
      "fill-rule": "evenodd" });
    path.addEventListener("mouseenter", () => { $("cell-name").textContent = `网格 ${f.properties.code}`; });
    path.append(el("svg:title", { text: f.properties.code }));
    g.append(path);
  }
}

function ensureView() {
  if (board.grid && board.grid.features.length) {
    if (!board.view) {
      const pts = board.grid.features.flatMap((f) => cellRings(f.geometry).flat());
      board.view = makeView(bboxOf(pts));
      drawCells();
      GridlinkBaseMap.draw($("basemap"), board.view);
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
  const spots = new Map();  // reports at one spot (to a tenth of a marker): one count
  for (const r of board.reports) {
    if (r.lat === null || r.lon === null) continue;
    const circle = el("svg:circle", {
      cx: view.x(r.lon), cy: view.y(r.lat), r: view.unit * 0.6, "data-id": r.id,
      class: `${visualState(r)}${r.id === board.selected ? " selected" : ""}`,
      onclick: () => select(r.id),
    }, el("svg:title", { text: `${className(r)} · ${r.grid || "无网格"}` }));
    points.append(circle);
    const key = `${Math.round(view.x(r.lon) / (view.unit / 10))},${Math.round(view.y(r.lat) / (view.unit / 10))}`;
    const spot = spots.get(key) || { x: view.x(r.lon), y: view.y(r.lat), n: 0 };
    spot.n += 1;
    spots.set(key, spot);
    const cell = r.grid && document.querySelector(`#cells path[data-grid="${r.grid}"]`);
    if (cell && r.state === "pending") cell.classList.add("hit");
  }
  for (const spot of spots.values()) {
    if (spot.n < 2) continue;
    points.append(el("svg:text", { class: "stack", x: spot.x + view.unit * 0.5, y: spot.y - view.unit * 0.5,
                                   "data-count": spot.n, style: `font-size:${view.unit * 1.1}px`,
                                   text: `${spot.n}` }, el("svg:title", { text: `此处 ${spot.n} 条上报` })));
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

// A fixed terminal's surveyed position: one calm badge instead of the clock, fixed-position
// and no-fix warnings its every report carries.
const FIXED_QUIET = new Set(["fixed_position", "clock_fallback", "no_fix"]);

function flagBadges(r) {
  const fixed = (r.flags || []).includes("fixed_position");
  const flags = fixed ? [el("span", { class: "badge calm fixed", title: "固定终端，位置为测绘点位 surveyed position",
                                      text: "固定点位" })] : [];
  for (const f of r.flags || []) {
    if (fixed && FIXED_QUIET.has(f)) continue;
    flags.push(el("span", { class: "badge", text: FLAG_NAMES[f] || f }));
  }
  return flags;
}

function reportRow(r) {
  const flags = flagBadges(r);
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
  const holder = r.holder ? el("span", { class: "badge holder", text: `${r.holder} 已签收` }) : null;
  const fresh = !board.first && !board.seen.has(r.id);
  board.seen.add(r.id);
  const outcome = r.task ? el("span", { class: `badge outcome ${r.result || ""}`,
                                        text: RESULT_NAMES[r.result] || r.result || "" }) : null;
  return el("li", {
    "data-id": r.id, class: [visualState(r), r.urgent ? "urgent" : "", r.id === board.selected ? "selected" : "",
                             fresh ? "fresh" : ""]
      .filter(Boolean).join(" "),
    onclick: () => select(r.id),
  },
  el("div", { class: "r-top" }, el("span", { class: "r-class", text: className(r) }),
    el("span", { class: "r-meta received", title: `采集 captured ${localTime(r.captured_at)}` },
      `接收 ${localTime(r.received_at)} · `, ago(r.received_at))),
  el("div", { class: "r-meta" }, `${r.grid || "无网格"} · ${r.device} · ${r.source}`,
    ...flags, holder, outcome,
    r.state !== "pending" ? el("span", { class: "badge", text: STATE_NAMES[r.state] || r.state }) : null),
  r.state === "rejected" && r.reason ? el("div", { class: "r-meta reason", text: `不予立案原因：${r.reason}` }) : null,
  r.text ? el("div", { class: "r-meta", text: r.text }) : null);
}

// The whole list, in the order the server gives (a filter change, a load of new reports,
// the operator's own decision).
function renderReports(page) {
  board.reports = page.items;
  board.listKey = filterQuery();
  $("list-total").textContent = page.total;
  $("reports").replaceChildren(...page.items.map(reportRow));
  showNewCount(0);
  board.first = false;
}

// A live update: rows stay where they are (changed in place; one that left the filter is
// dimmed, not removed) and new reports wait behind "N 条新上报".
function updateReports(page) {
  board.reports = page.items;
  $("list-total").textContent = page.total;
  const byId = new Map(page.items.map((r) => [r.id, r]));
  const shown = new Set();
  for (const li of [...$("reports").children]) {
    const r = byId.get(li.dataset.id);
    shown.add(li.dataset.id);
    if (r) li.replaceWith(reportRow(r));
    else li.classList.add("gone");
  }
  const fresh = page.items.filter((r) => !shown.has(r.id));
  // an urgent report (突发事件) does not wait behind the button: the list is loaded at
  // once so that it stands first, as the header's alert says
  if (fresh.some((r) => r.urgent)) renderReports(page);
  else showNewCount(fresh.length);
}

function showNewCount(n) {
  const b = $("new-reports");
  b.hidden = n === 0;
  b.dataset.count = n;
  b.textContent = `${n} 条新上报 · 点击载入`;
}

function renderCases(page) {
  // the newest cases and the state each is in (立案, 派遣, 处置中, 处置反馈, 核查, 结案, 返工 …)
  $("cases-total").textContent = page.total ? `(${page.total})` : "";
  const ul = $("cases");
  ul.replaceChildren();
  for (const c of page.items) {
    const picked = c.case_no === board.caseNo ? " selected" : "";
    ul.append(el("li", { "data-case": c.case_no, class: `case ${c.state}${c.overdue ? " overdue" : ""}${picked}`,
                         onclick: () => { openCase(c.case_no); select(c.report_id); } },
      el("b", { text: c.case_no }), " ",
      el("span", { class: "badge case-state", text: c.label || c.state }),
      el("div", { class: "r-meta", text: `${c.code || ""} · ${c.department || "未派遣"}`
        + `${c.overdue ? " · 超期 overdue" : ""} · ${localTime(c.updated_at)}` })));
  }
}

// ------------------------------------------------------------------ case moves (派遣, 挂账, 作废, 改状态)

const CASE_STATES = {
  registered: "立案", dispatched: "派遣", handling: "处置中", reported: "处置反馈", checking: "核查",
  closed: "结案", rework: "返工", deferred: "挂账", voided: "作废",
};

function mayCase(action) {  // the permission the move's route needs (auth/policy.py)
  const roles = (board.session && board.session.roles) || [];
  if (action === "dispatch") return roles.includes("shift_lead") || roles.includes("dispatcher");
  return roles.includes("shift_lead");
}

function caseSay(text, kind) {
  $("cp-message").textContent = text;
  $("cp-message").className = kind || "";
}

async function openCase(caseNo, quiet) {
  board.caseNo = caseNo;
  for (const li of document.querySelectorAll("#cases li")) li.classList.toggle("selected", li.dataset.case === caseNo);
  let c, depts;
  try {
    [c, depts] = await Promise.all([api("GET", `/api/cases/${encodeURIComponent(caseNo)}`),
      api("GET", "/api/departments")]);
  } catch (err) {
    if (!quiet) caseSay(err.message, "error");
    return;
  }
  if (board.caseNo !== caseNo) return;
  $("case-panel").hidden = false;
  $("case-panel").dataset.case = caseNo;
  $("cp-title").textContent = `案卷 ${c.case_no}`;
  $("cp-state").textContent = `${c.label} (${c.state}) · ${c.code || ""} · ${c.department || "未派遣"}`
    + `${c.stage_due ? ` · 时限 ${localTime(c.stage_due)}` : ""}${c.overdue ? " · 超期 overdue" : ""}`;
  const fits = depts.filter((d) => d.classes.some((p) => (c.code || "").startsWith(p)));
  const dept = $("cp-dept");
  const was = dept.value;
  dept.replaceChildren(...fits.map((d) => el("option", { value: d.id, text: `${d.name} (${d.id})` })));
  if (fits.some((d) => d.id === was)) dept.value = was;
  const can = (a) => c.actions.includes(a) && mayCase(a);
  $("cp-dispatch").disabled = !can("dispatch") || !fits.length;
  $("cp-defer").disabled = !can("defer");
  $("cp-resume").disabled = !can("resume");
  $("cp-void").disabled = !can("void");
  const to = $("cp-to");
  to.replaceChildren(...Object.entries(CASE_STATES).filter(([s]) => s !== c.state)
    .map(([s, label]) => el("option", { value: s, text: `${label} ${s}` })));
  $("cp-override").disabled = !mayCase("override");
}

async function caseMove(label, verb, body) {
  const caseNo = board.caseNo;
  if (!caseNo) return;
  try {
    const c = await api("POST", `/api/cases/${encodeURIComponent(caseNo)}/${verb}`, body);
    caseSay(`${label}: ${c.label} (${c.state})`, "done");
    $("cp-reason").value = "";
  } catch (err) {
    caseSay(`${label} failed: ${err.message}`, "error");
  }
  await refresh();
}

function wireCaseMoves() {
  const reason = () => $("cp-reason").value.trim();
  $("cp-dispatch").addEventListener("click", () => {
    const body = { department: $("cp-dept").value };
    const hours = parseFloat($("cp-hours").value);
    if (hours > 0) body.deadline_s = Math.round(hours * 3600);
    caseMove("派遣 dispatch", "dispatch", body);
  });
  $("cp-defer").addEventListener("click", () => caseMove("挂账 defer", "defer", { reason: reason() }));
  $("cp-resume").addEventListener("click", () => caseMove("恢复 resume", "resume", {}));
  $("cp-void").addEventListener("click", () => caseMove("作废 void", "void", { reason: reason() }));
  $("cp-override").addEventListener("click", () => caseMove("改状态 override", "override",
    { state: $("cp-to").value, reason: reason() }));
}

// messages to departments' systems that keep failing (the bridge's outbox)
function renderBridge(stuck) {
  $("bridge-stuck").hidden = !stuck.stuck;
  $("n-stuck").textContent = stuck.stuck;
  $("bridge-stuck").title = stuck.items.map((m) => `${m.id}: ${m.last_error || ""}`).join("\n");
}

function renderDevices(devices) {
  board.devices = devices;
  const ul = $("devices");
  ul.replaceChildren();
  for (const d of devices) {
    const fix = d.last_fix ? `${d.last_fix.lat.toFixed(5)}, ${d.last_fix.lon.toFixed(5)}` : "无定位";
    ul.append(el("li", { "data-device": d.device, class: d.online ? "online" : "offline" },
      el("span", { class: `presence ${d.state || ""}` }),
      el("b", { text: d.device }), ` ${DEVICE_STATES[d.state] || d.state || "未知"} · ${d.profile || ""}`,
      el("div", { class: "r-meta seen" }, "最后通信 ", ago(d.last_seen),
        el("span", { class: "outbox", title: "设备上尚未送达中心的上报 reports waiting on the device",
                     text: ` · 待发 ${d.outbox_reports ?? "–"} 条` })),
      el("div", { class: "r-meta fix" }, `${fix}`,
        d.last_fix && d.last_fix.at ? el("span", { class: "fix-at", text: ` · 定位时间 ${localTime(d.last_fix.at)}` }) : null),
      el("div", { class: "r-meta versions",
                  text: `固件 ${d.firmware || "–"} · 代码本 ${d.codebook || "–"}` }),
      d.refused ? el("div", { class: "r-meta refused", title: d.last_refused.reason,
                              text: `refused ${d.refused}, last ${localTime(d.last_refused.at)}: ${d.last_refused.reason}` }) : null,
      d.id_reused ? el("div", { class: "r-meta refused id-reused",
                                text: `id reused ${d.id_reused}: counter restarted? reports refused, kept on the device` }) : null,
      configLine(d.config),
      identityLine(d.identity),
      healthLine(d.health),
      d.ota ? el("div", { class: "r-meta ota", text: otaText(d.ota) }) : null));
  }
}

// The device's certificate (with --crl): revoked, or its end and whether renewal is due.
function identityLine(id) {
  if (!id) return null;
  if (id.revoked) return el("div", { class: "r-meta identity revoked", title: id.revoked, text: "证书已吊销 revoked" });
  if (!id.certificate_expires) return null;
  return el("div", { class: "r-meta identity" + (id.renew_due ? " renew-due" : ""),
                     text: `证书到期 ${id.certificate_expires}${id.renew_due ? " · 需换发 renew now" : ""}` });
}

// a sensor node's health: free memory, wakes, resets and why it last restarted
function healthLine(h) {
  if (!h) return null;
  const mem = h.mem_free == null ? "–" : `${Math.round(h.mem_free / 1024)} KiB`;
  return el("div", { class: "r-meta health" + (h.reset_cause === "watchdog" ? " refused" : ""),
                     text: `内存 ${mem} · 唤醒 ${h.wakes} · 重启 ${h.resets} (${h.reset_cause})` });
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
  const q = new URLSearchParams({ status: $("f-status").value, limit: "200", sort: "received" });
  for (const [id, key] of [["f-code", "code"], ["f-grid", "grid"], ["f-flag", "flag"]]) {
    const v = $(id).value.trim();
    if (v) q.set(key, v);
  }
  return q.toString();
}

// A filter the server refuses: said beside the filters, and the list it no longer matches
// emptied (not left standing as if it answered the new filter).
function filterError(err) {
  $("filter-error").textContent = err ? `筛选有误：${err.message}` : "";
  $("filter-error").hidden = !err;
  if (err) {
    board.reports = [];
    board.listKey = null;
    $("reports").replaceChildren();
    $("list-total").textContent = "–";
    showNewCount(0);
  }
}

async function refresh(rebuild) {
  // one refresh at a time; a change during one schedules exactly one more
  if (rebuild) board.rebuild = true;
  if (board.refreshing) { board.again = true; return board.refreshing; }
  board.refreshing = (async () => {
    try {
      const full = board.rebuild || board.listKey !== filterQuery();
      board.rebuild = false;
      const listed = api("GET", "/api/reports?" + filterQuery()).then((page) => ({ page }), (err) => ({ err }));
      const [summary, devices, cases, stuck, list] = await Promise.all([
        api("GET", "/api/summary"), api("GET", "/api/devices"), api("GET", "/api/cases?limit=20"),
        api("GET", "/api/bridge/outbox?state=stuck&limit=5"), listed]);
      renderBridge(stuck);
      renderCounts(summary);
      if (list.err && (list.err.status === 400 || list.err.status === 422)) filterError(list.err);
      else if (list.err) throw list.err;
      else {
        filterError(null);
        if (full) renderReports(list.page);
        else updateReports(list.page);
      }
      renderDevices(devices);
      renderCases(cases);
      drawMap();
      if (board.selected) await showDetail(board.selected, true);
      if (board.caseNo) await openCase(board.caseNo, true);
      $("reports").dataset.loaded = "1";
    } catch (err) {
      say(`刷新失败 refresh failed: ${err.message}`, "error");
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
  $("d-title").textContent = className(r, true);
  const rows = [
    ["状态 state", `${STATE_NAMES[r.state] || r.state}${r.holder ? ` · ${r.holder} 已签收，至 ${localTime(r.lease_until)}` : ""}`],
    ["决定 decided", r.decided_by && `${r.decided_by} ${STATE_NAMES[r.state] || r.state} · ${localTime(r.decided_at)}`],
    ["案卷号 case", r.case_no], ["案卷状态 case state", r.case && `${r.case.label} (${r.case.state})${r.case.department ? " · " + r.case.department : ""}`],
    ["原因 reason", r.reason],
    ["大类 major", r.major_name], ["上报 id", r.id],
    ["接收 received", `${localTime(r.received_at)} · ${agoText(r.received_at)}`],
    ["采集 captured", `${localTime(r.captured_at)} (${r.time_source})${r.time_flag ? ` · ${TIME_FLAG_NAMES[r.time_flag] || r.time_flag}` : ""}`],
    ["网格 grid", r.grid + (r.grid_mismatch ? ` (device said ${r.grid_device})` : "")],
    ["位置 fix", r.lat === null ? "no fix" : `${r.lat.toFixed(6)}, ${r.lon.toFixed(6)}`],
    ["设备 device", `${r.device} · ${r.source}`], ["标准 std", `${r.standard} ${r.kind}`],
    ["部件 object", r.object], ["描述 text", r.text],
    ["标记 flags", flagBadges(r).map((b) => b.textContent).join("、")],
    ["任务结果 result", r.task && `${RESULT_NAMES[r.result] || r.result} · 任务 ${r.task}`],
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
  showTasks(id, r.tasks || []);
  showOrigin(id, r);
  const pending = r.state === "pending";
  const mine = r.holder && r.holder === me();
  const blocked = r.holder && !mine && !mayOverride();  // another's claim
  board.lease = mine ? { id, until: r.lease_until } : null;
  warnLease();
  if (board.pendingDecision && board.pendingDecision.id !== id) cancelDecision();
  showHistory(id);
  // 核实 (verify) before 立案; 核查 (check) once the department reported back (处置反馈)
  board.taskType = r.state === "accepted" ? "check" : "verify";
  const checkable = r.case && (r.case.state === "reported" || r.case.state === "checking");
  $("b-task").textContent = board.taskType === "check" ? "派核查 Send check task" : "派核实 Send verify task";
  $("b-claim").textContent = mine ? "延长 Extend" : r.holder ? "接管 Take over" : "签收 Sign for";
  if (board.busy) return;  // a request in flight keeps the buttons off
  $("b-claim").disabled = !pending || blocked;
  $("b-release").disabled = !r.holder || blocked;
  $("b-accept").disabled = !pending || blocked;
  $("b-reject").disabled = !pending || blocked;
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

// The tasks sent for a report: type, state, device, instruction and deadline, and what
// came back (属实 / 不属实 …) with the result's photos and a link to the result report.
function showTasks(id, tasks) {
  const box = $("d-tasks");
  const want = id + JSON.stringify(tasks.map((t) => [t.id, t.state, t.result_report]));
  if (box.dataset.for === want) return;
  box.dataset.for = want;
  box.replaceChildren(...tasks.map((t) => {
    const li = el("li", { "data-task": t.id, class: `task ${t.state}` },
      el("b", { text: `${TASK_NAMES[t.type] || t.type} ${t.id}` }),
      ` ${TASK_STATES[t.state] || t.state} → ${taskDevice(t)}`,
      t.result ? el("span", { class: `badge outcome ${t.result}`, text: RESULT_NAMES[t.result] || t.result }) : null,
      t.text ? el("div", { class: "r-meta instruction", text: `要求：${t.text}` }) : null,
      t.deadline ? el("div", { class: "r-meta deadline", text: `时限 ${localTime(t.deadline)}` }) : null,
      t.result_report ? el("a", { href: "#", class: "report-link", "data-report": t.result_report,
                                  onclick: (ev) => { ev.preventDefault(); select(t.result_report); },
                                  text: `查看结果上报 ${t.result_report}` }) : null);
    if (t.result_report) {
      api("GET", `/api/reports/${encodeURIComponent(t.result_report)}`).then((res) => {
        for (const p of res.photos || []) {
          li.append(el("img", { class: "result-photo", src: `/api/photos/${p.sha256}`,
                                alt: `结果照片 ${p.sha256.slice(0, 12)}`, loading: "lazy" }));
        }
      }, () => {});
    }
    return li;
  }));
}

// A task result links back to the report its task answers.
async function showOrigin(id, r) {
  const box = $("d-origin");
  if (!r.task) { box.replaceChildren(); return; }
  if (box.dataset.for === id) return;
  box.dataset.for = id;
  box.replaceChildren();
  let task;
  try {
    task = await api("GET", `/api/tasks/${encodeURIComponent(r.task)}`);
  } catch (err) {
    return;
  }
  if (board.selected !== id || !task.report_id) return;
  box.replaceChildren(`${TASK_NAMES[task.type] || task.type}任务 ${task.id} 的结果 · 原上报 `,
    el("a", { href: "#", class: "report-link", "data-report": task.report_id,
              onclick: (ev) => { ev.preventDefault(); select(task.report_id); }, text: task.report_id }));
}

// One's own 签收 about to lapse: say so, with the 延长 button beside it.
function warnLease() {
  const w = $("lease-warn");
  const l = board.lease;
  const left = l && l.until ? Math.round((Date.parse(l.until) - Date.now()) / 1000) : null;
  if (left === null || left > LEASE_WARN_S || l.id !== board.selected) { w.hidden = true; return; }
  w.hidden = false;
  w.textContent = left > 0 ? `签收将在 ${left} 秒后失效，请延长` : "签收已失效，他人可签收此上报";
}

const ACTION_BUTTONS = ["b-claim", "b-release", "b-accept", "b-reject", "b-task", "b-clip", "b-confirm"];

async function act(label, fn) {
  const id = board.selected;
  if (!id || board.busy) return;
  board.busy = true;
  const was = ACTION_BUTTONS.map((b) => [b, $(b).disabled]);
  for (const b of ACTION_BUTTONS) $(b).disabled = true;  // no second click while it runs
  try {
    const out = await fn(id);
    say(`${label}: ${out}`, "done");
  } catch (err) {
    say(`${label}未成功：${err.status === 409 ? conflictText(err) : err.message}`, "error");
  } finally {
    board.busy = false;
    for (const [b, d] of was) $(b).disabled = d;
  }
  await refresh(true);
}

// 立案 / 不予立案 go through a confirmation naming the report and the decision.
function askDecision(kind) {
  const id = board.selected;
  if (!id) return;
  const r = board.reports.find((x) => x.id === id);
  const what = r ? `${className(r)} (${id})` : id;
  if (kind === "reject" && !$("reason").value.trim()) {
    say("不予立案须写明原因（可从常用原因中选）", "error");
    return;
  }
  board.pendingDecision = { id, kind };
  $("confirm-text").textContent = kind === "accept"
    ? `确认立案 ${what}${$("case-no").value.trim() ? "，案卷号 " + $("case-no").value.trim() : ""}？`
    : `确认不予立案 ${what}，原因：${$("reason").value.trim()}？`;
  $("b-confirm").textContent = kind === "accept" ? "确认立案" : "确认不予立案";
  $("b-confirm").className = kind === "accept" ? "ok" : "no";
  $("confirm").hidden = false;
}

function cancelDecision() {
  board.pendingDecision = null;
  $("confirm").hidden = true;
}

function wireActions() {
  const path = (id, verb) => `/api/reports/${encodeURIComponent(id)}/${verb}`;
  $("b-claim").addEventListener("click", () => act("签收", async (id) => {
    const c = await api("POST", path(id, "claim"), {});
    return `已签收，至 ${localTime(c.lease_until)}`;
  }));
  $("b-release").addEventListener("click", () => act("退回", async (id) => {
    await api("POST", path(id, "release"), {});
    return "已退回待受理";
  }));
  $("b-accept").addEventListener("click", () => askDecision("accept"));
  $("b-reject").addEventListener("click", () => askDecision("reject"));
  $("b-cancel").addEventListener("click", cancelDecision);
  $("reason-pick").replaceChildren(el("option", { value: "", text: "常用原因…" }),
    ...REJECT_REASONS.map((x) => el("option", { value: x, text: x })));
  $("reason-pick").addEventListener("change", () => {
    if ($("reason-pick").value) $("reason").value = $("reason-pick").value;
    $("reason-pick").value = "";
  });
  $("b-confirm").addEventListener("click", () => {
    const d = board.pendingDecision;
    if (!d || d.id !== board.selected) { cancelDecision(); return; }
    $("confirm").hidden = true;
    board.pendingDecision = null;
    if (d.kind === "accept") {
      act("立案", async (id) => {
        const body = {};
        const caseNo = $("case-no").value.trim();
        if (caseNo) body.case_no = caseNo;
        const out = await api("POST", path(id, "accept"), body);
        $("case-no").value = "";
        return `案卷 case ${out.case_no}`;
      });
    } else {
      act("不予立案", async (id) => {
        const reason = $("reason").value.trim();
        await api("POST", path(id, "reject"), { reason });
        $("reason").value = "";
        return reason;
      });
    }
  });
  $("b-clip").addEventListener("click", () => act("调视频 clip", async (id) => {
    const t = await api("POST", "/api/tasks", { type: "clip", report_id: id });
    return `${t.id} → ${taskDevice(t)} (${t.state})`;
  }));
  $("b-task").addEventListener("click", () => act("派任务", async (id) => {
    const type = board.taskType || "verify";
    const body = { type, report_id: id };
    const text = $("task-text").value.trim();
    if (text) body.text = text;
    if ($("task-deadline").value) body.deadline_s = Number($("task-deadline").value);
    const t = await api("POST", "/api/tasks", body);
    $("task-text").value = "";
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
  $("config-form").hidden = !(s && s.roles.includes("technician"));   // 技术员 only
}

// A fleet technician changes a button's class for a group: signed by the gateway and sent
// to every device it reaches, which reports the version it applied (the devices list).
async function sendConfig(ev) {
  ev.preventDefault();
  const msg = $("cf-message");
  const scope = $("cf-scope").value;
  const raw = $("cf-target").value.trim();
  const body = {
    scope, target: scope === "list" ? raw.split(",").map((x) => x.trim()).filter(Boolean) : raw,
    settings: { buttons: { [$("cf-button").value.trim()]: { kind: "event", code: $("cf-code").value.trim() } } },
  };
  $("cf-send").disabled = true;
  try {
    const done = await api("POST", "/api/fleet/config", body);
    msg.className = "done";
    msg.textContent = `配置 v${done.version} 已下发 ${done.sent.length}/${done.devices.length} 台设备`;
    refresh();
  } catch (err) {
    msg.className = "error";
    msg.textContent = `未下发 not sent: ${err.message}`;
  } finally {
    $("cf-send").disabled = false;
  }
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
    say(`网格地图不可用 grid map unavailable: ${err.message}`, "error");
  }
  await refresh(true);
  listen();
  setInterval(() => { if (board.session) refresh(); }, 15000);  // if a proxy cuts the stream
}

async function start() {
  for (const id of ["f-status", "f-code", "f-grid", "f-flag"]) $(id).addEventListener("change", () => refresh(true));
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(true); });
  $("new-reports").addEventListener("click", () => refresh(true));
  setInterval(tickAgo, 1000);
  $("signin").addEventListener("submit", signIn);
  $("b-signout").addEventListener("click", signOut);
  $("config-form").addEventListener("submit", sendConfig);
  wireActions();
  wireCaseMoves();
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
