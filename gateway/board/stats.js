"use strict";
// The statistics page: CJ/T 292 rates and patrol coverage from /api/evaluation/*, as
// tables with CSV export.  Dates are Beijing dates whatever the browser's zone.

const RATE_COLUMNS = [
  ["reported", "上报数"], ["accepted", "立案数"], ["valid_report_rate", "有效上报率", "pct"],
  ["verify_due", "应核实"], ["verify_on_time", "按时核实"],
  ["verify_on_time_rate", "按时核实率", "pct"],
  ["check_due", "应核查"], ["check_on_time", "按时核查"],
  ["check_on_time_rate", "按时核查率", "pct"],
  ["intake_median_s", "受理时长中位", "dur"], ["intake_p90_s", "受理时长P90", "dur"],
  ["verify_median_s", "核实时长中位", "dur"], ["verify_p90_s", "核实时长P90", "dur"],
  ["check_median_s", "核查时长中位", "dur"], ["check_p90_s", "核查时长P90", "dur"],
  ["duty_hours", "在岗小时"], ["reports_per_duty_hour", "每在岗小时上报"],
];
const KEY_LABELS = { supervisor: "监督员", device: "设备", grid: "单元网格", street: "街道",
                     period: "周期" };
const COVERAGE_COLUMNS = [
  ["supervisor", "监督员", "key"], ["shift", "班次", "key"], ["on_at", "上班", "time"],
  ["off_at", "下班", "time"], ["work_cells", "工作网格单元数"],
  ["visited_work_cells", "已巡查单元"], ["share", "覆盖率", "pct"],
  ["outside_s", "网格外在岗时长", "dur"], ["untracked_s", "无轨迹时长", "dur"],
];
const $ = (id) => document.getElementById(id);
const BEIJING_MS = 8 * 3600 * 1000;

function beijingDate(ms) {
  return new Date(ms + BEIJING_MS).toISOString().slice(0, 10);
}

function beijingTime(iso) {
  return iso ? new Date(Date.parse(iso) + BEIJING_MS).toISOString().slice(0, 16)
    .replace("T", " ") : "";
}

function shown(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "pct") return (value * 100).toFixed(1) + "%";
  if (kind === "dur") {
    if (value < 120) return value.toFixed(0) + " 秒";
    if (value < 7200) return (value / 60).toFixed(1) + " 分";
    return (value / 3600).toFixed(1) + " 时";
  }
  if (kind === "time") return beijingTime(value);
  return String(value);
}

function fill(table, columns, rows) {
  const head = document.createElement("tr");
  for (const [, label] of columns) {
    const th = document.createElement("th");
    th.textContent = label;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    for (const [key, , kind] of columns) {
      const td = document.createElement("td");
      td.textContent = row[key] === null && kind === "key" ? "(无监督员)" : shown(row[key], kind);
      if (kind === "key") td.className = "key";
      tr.append(td);
    }
    return tr;
  }));
}

async function getJson(url) {
  const resp = await fetch(url, { credentials: "same-origin" });
  if (resp.status === 401) throw new Error("未登录: 请先在受理台登录");
  const body = await resp.json();
  if (!resp.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ")
      : body.detail;
    throw new Error(detail || `HTTP ${resp.status}`);
  }
  return body;
}

async function query(event) {
  if (event) event.preventDefault();
  $("error").textContent = "";
  const by = $("f-by").value;
  const since = `${$("f-since").value}T00:00:00+08:00`;
  const untilMs = Date.parse(`${$("f-until").value}T00:00:00+08:00`) + 86400000;
  const until = new Date(untilMs).toISOString();
  const window = `since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`;
  const rates = `/api/evaluation/rates?by=${by}&period=${$("f-period").value}&${window}`;
  const coverage = `/api/evaluation/coverage?${window}`;
  $("csv-rates").href = rates + "&format=csv";
  $("csv-coverage").href = coverage + "&format=csv";
  try {
    const table = await getJson(rates);
    const keys = [[by, KEY_LABELS[by], "key"], ["period", KEY_LABELS.period, "key"]];
    fill($("rates"), keys.concat(RATE_COLUMNS.filter(([k]) => table.rows.length === 0
      || k in table.rows[0])), table.rows);
    $("rates-empty").hidden = table.rows.length > 0;
    const periods = await getJson(coverage);
    fill($("coverage"), COVERAGE_COLUMNS, periods);
    $("coverage-empty").hidden = periods.length > 0;
  } catch (err) {
    $("error").textContent = err.message;
  }
}

const now = Date.now();
$("f-until").value = beijingDate(now);
$("f-since").value = beijingDate(now - 29 * 86400000);
$("filters").addEventListener("submit", query);
query();
