"use strict";
// The 大屏 wall view: today's counts, open cases by stage (a Chart.js chart, bundled in
// vendor/), the late cases and tasks (/api/wall), and the last 7 days' patrol coverage of the
// work grids on the grid map (/api/work-grids, /api/evaluation/unvisited), over the
// district's base map when one is configured.  Every time is Beijing time (Asia/Shanghai),
// whatever the zone of the browser driving the wall.  $ and getJson: page.js.

const SVG = "http://www.w3.org/2000/svg";
const ZONE = "Asia/Shanghai";
const SUMMARY_EVERY_MS = 10000;
const COVERAGE_EVERY_MS = 300000;
const COVERAGE_DAYS = 7;  // the coverage map: cells visited in the duty of the last 7 days
const COUNTS = [
  ["reported", "上报"], ["accepted", "立案"], ["rejected", "不予立案"], ["closed", "结案"],
  ["tasks_sent", "核实/核查派发"], ["tasks_done", "核实/核查完成"],
];
const TASK_LABELS = { verify: "核实", check: "核查", clip: "视频" };
const FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", '
  + '"WenQuanYi Micro Hei", system-ui, sans-serif';

const clockFormat = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const dayFormat = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, year: "numeric", month: "long", day: "numeric", weekday: "long" });
const dueFormat = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  hourCycle: "h23" });

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.setAttribute("class", v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

const SIGN_IN_WALL = "未登录: 请先在受理台 (/board/) 以大屏账号登录";
const wallJson = (url) => getJson(url, SIGN_IN_WALL);

function showError(err) {
  $("error").hidden = !err;
  $("error").textContent = err ? err.message : "";
}

function tick() {
  const now = new Date();
  $("clock").textContent = clockFormat.format(now);
  $("day").textContent = dayFormat.format(now);
}

// ------------------------------------------------------------------ today, cases, late

let openChart = null;

function drawSummary(s) {
  $("counts").replaceChildren(
    ...COUNTS.map(([k, label]) => el("div", { "data-count": k },
      el("dt", { text: label }), el("dd", { text: String(s.today[k]) }))),
    el("div", { "data-count": "pending", class: s.pending ? "warn" : "" },
      el("dt", { text: "待受理" }), el("dd", { text: String(s.pending) })));
  const labels = s.open_cases.map((c) => c.label), data = s.open_cases.map((c) => c.n);
  if (typeof Chart !== "undefined") {
    Chart.defaults.font.family = FONT;
    Chart.defaults.font.size = Math.max(14, Math.round(window.innerWidth / 90));
    Chart.defaults.color = "#e9f1fa";
    if (!openChart) {
      openChart = new Chart($("chart-open"), {
        type: "bar",
        data: { labels, datasets: [{ label: "在办案件", data, backgroundColor: "#4dabf7" }] },
        options: { indexAxis: "y", animation: false, responsive: true,
                   maintainAspectRatio: false, plugins: { legend: { display: false } },
                   scales: { x: { beginAtZero: true, ticks: { precision: 0 },
                                  grid: { color: "#24405f" } },
                             y: { grid: { display: false } } } },
      });
    } else {
      openChart.data.labels = labels;
      openChart.data.datasets[0].data = data;
      openChart.update();
    }
  }
  $("late-counts").textContent = `案件 ${s.late.cases} · 任务 ${s.late.tasks}`;
  const items = [
    ...s.late.case_items.map((c) => el("li", { "data-case": c.case_no },
      el("span", { class: "what", text: `${c.case_no} ${c.label}` }),
      el("span", { class: "due", text: `${c.stage_label || "时限"} ${dueFormat.format(new Date(c.stage_due))}` }))),
    ...s.late.task_items.map((t) => el("li", { "data-task": t.id },
      el("span", { class: "what", text: `${TASK_LABELS[t.type] || t.type}任务 ${t.device || ""}` }),
      el("span", { class: "due", text: `时限 ${dueFormat.format(new Date(t.deadline))}` }))),
  ];
  $("late").replaceChildren(...(items.length ? items : [el("li", { text: "无超期" })]));
  lateGrids = new Set(s.late.case_items.map((c) => c.grid));
  markLate();
}

// ------------------------------------------------------------------ the coverage map

let grid = null, view = null, lateGrids = new Set();

function ringsOf(geometry) {  // a Polygon's rings, or every part's of a MultiPolygon
  return geometry.type === "MultiPolygon" ? geometry.coordinates.flat() : geometry.coordinates;
}

function makeView(features) {
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
  for (const f of features) {
    for (const ring of ringsOf(f.geometry)) {
      for (const [x, y] of ring) {
        if (x < w) w = x; if (x > e) e = x; if (y < s) s = y; if (y > n) n = y;
      }
    }
  }
  const pad = Math.max((e - w), (n - s)) * 0.03;
  w -= pad; e += pad; s -= pad; n += pad;
  const k = Math.cos(((s + n) / 2) * Math.PI / 180), scale = 100000;
  const v = { x: (lon) => (lon - w) * k * scale, y: (lat) => (n - lat) * scale,
              width: (e - w) * k * scale, height: (n - s) * scale, bbox: [w, s, e, n] };
  $("map").setAttribute("viewBox", `0 0 ${v.width} ${v.height}`);
  return v;
}

function pathOf(rings) {  // one cell, every part of it (a multi-part cell draws each ring)
  return rings.map((ring) => "M" + ring.map(([x, y]) =>
    `${view.x(x).toFixed(1)},${view.y(y).toFixed(1)}`).join("L") + "Z").join("");
}

function markLate() {
  for (const p of document.querySelectorAll("#cells path")) {
    p.classList.toggle("late", lateGrids.has(p.dataset.grid));
  }
}

async function drawCoverage() {
  if (!grid) {
    grid = await wallJson("/api/grid");
    if (!grid.features.length) return;
    view = makeView(grid.features);
    $("cells").replaceChildren(...grid.features.map((f) => el("svg:path", {
      d: pathOf(ringsOf(f.geometry)), "data-grid": f.properties.code, class: "plain",
      "fill-rule": "evenodd" })));
    GridlinkBaseMap.draw($("basemap"), view);
  }
  const until = new Date(), since = new Date(until.getTime() - COVERAGE_DAYS * 86400000);
  const window = `since=${since.toISOString()}&until=${until.toISOString()}`;
  const [grids, unvisited] = await Promise.all([
    wallJson("/api/work-grids"), wallJson(`/api/evaluation/unvisited?${window}`)]);
  const never = new Set(unvisited.flatMap((g) => g.unvisited_cells));
  const inWork = new Set(grids.flatMap((g) => g.cells));
  let visited = 0;
  for (const p of document.querySelectorAll("#cells path")) {
    const code = p.dataset.grid;
    const state = !inWork.has(code) ? "plain" : never.has(code) ? "unvisited" : "visited";
    if (state === "visited") visited += 1;
    p.setAttribute("class", state);
  }
  markLate();
  $("coverage-note").textContent = inWork.size
    ? `工作网格单元 ${inWork.size} 个, 已巡查 ${visited} 个 (${(visited / inWork.size * 100).toFixed(1)}%)`
    : "尚未划定工作网格";
}

// ------------------------------------------------------------------ refresh

async function refreshSummary() {
  try {
    drawSummary(await wallJson("/api/wall"));
    showError(null);
  } catch (err) {
    showError(err);
  }
}

async function refreshCoverage() {
  try {
    await drawCoverage();
  } catch (err) {
    showError(err);
  }
}

tick();
setInterval(tick, 1000);
refreshSummary();
refreshCoverage();
setInterval(refreshSummary, SUMMARY_EVERY_MS);
setInterval(refreshCoverage, COVERAGE_EVERY_MS);
