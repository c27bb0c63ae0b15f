"use strict";
// The statistics page: CJ/T 292 rates and patrol coverage from /api/evaluation/*, as
// charts (Chart.js, bundled in vendor/) and tables with CSV export.  Dates are Beijing
// dates whatever the browser's zone.  $, getJson and beijingMinute: page.js.

const RATE_COLUMNS = [
  ["reported", "上报数"], ["accepted", "立案数"], ["valid_report_rate", "有效上报率", "pct"],
  ["verify_due", "应核实"], ["verify_on_time", "按时核实"],
  ["verify_on_time_rate", "按时核实率", "pct"],
  ["check_due", "应核查"], ["check_on_time", "按时核查"],
  ["check_on_time_rate", "按时核查率", "pct"],
  ["cases", "立案数 (按立案时间)"], ["close_due", "应结案"], ["closed", "结案"],
  ["closed_on_time", "按期结案"], ["close_rate", "结案率", "pct"],
  ["close_on_time_rate", "按期结案率", "pct"],
  ["intake_median_s", "受理时长中位", "dur"], ["intake_p90_s", "受理时长P90", "dur"],
  ["verify_median_s", "核实时长中位", "dur"], ["verify_p90_s", "核实时长P90", "dur"],
  ["check_median_s", "核查时长中位", "dur"], ["check_p90_s", "核查时长P90", "dur"],
  ["close_median_s", "立案至结案中位", "dur"], ["close_p90_s", "立案至结案P90", "dur"],
  ["duty_hours", "在岗小时"], ["reports_per_duty_hour", "每在岗小时上报"],
];
const KEY_LABELS = { supervisor: "监督员", device: "设备", grid: "单元网格", street: "街道",
                     department: "专业部门", period: "周期" };
const CHART_RATES = [["valid_report_rate", "有效上报率"], ["verify_on_time_rate", "按时核实率"],
  ["check_on_time_rate", "按时核查率"], ["close_rate", "结案率"],
  ["close_on_time_rate", "按期结案率"]];
const CHART_COUNTS = [["reported", "上报数"], ["accepted", "立案数"], ["closed", "结案数"]];
const COLOURS = ["#1c7ed6", "#37b24d", "#f59f00", "#e8590c", "#ae3ec9"];
const MAX_BARS = 40;
const FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", '
  + '"WenQuanYi Micro Hei", system-ui, sans-serif';
const COVERAGE_COLUMNS = [
  ["supervisor", "监督员", "key"], ["shift", "班次", "key"], ["on_at", "上班", "time"],
  ["off_at", "下班", "time"], ["work_cells", "工作网格单元数"],
  ["visited_work_cells", "已巡查单元"], ["share", "覆盖率", "pct"],
  ["outside_s", "网格外在岗时长", "dur"], ["untracked_s", "无轨迹时长", "dur"],
];

function beijingDate(ms) {
  return new Date(ms + BEIJING_MS).toISOString().slice(0, 10);
}

function shown(value, kind) {
  if (value === null || value === undefined) return "—";
  if (kind === "pct") return (value * 100).toFixed(1) + "%";
  if (kind === "dur") {
    if (value < 120) return value.toFixed(0) + " 秒";
    if (value < 7200) return (value / 60).toFixed(1) + " 分";
    return (value / 3600).toFixed(1) + " 时";
  }
  if (kind === "time") return beijingMinute(value);
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
      td.textContent = row[key] === null && kind === "key" ? noneLabel(key) : shown(row[key], kind);
      if (kind === "key") td.className = "key";
      tr.append(td);
    }
    return tr;
  }));
}

function noneLabel(key) {
  return key === "department" ? "(未派遣)" : key === "supervisor" ? "(无监督员)" : "(无)";
}

// ------------------------------------------------------------------ charts

const charts = {};

function chart(id, config) {
  if (typeof Chart === "undefined") return;  // the bundled library did not load
  if (charts[id]) charts[id].destroy();
  Chart.defaults.font.family = FONT;
  charts[id] = new Chart(document.getElementById(id), {
    ...config,
    options: { animation: false, responsive: true, maintainAspectRatio: false,
               plugins: { legend: { position: "bottom" } }, ...config.options },
  });
}

function rowLabel(row, by, period) {
  const key = row[by] === null ? noneLabel(by) : String(row[by]);
  return period === "all" ? key : `${key} ${row.period}`;
}

function drawCharts(table, periods) {
  const by = table.by[0], period = table.period, rows = table.rows.slice(0, MAX_BARS);
  const pct = { y: { min: 0, max: 100, ticks: { callback: (v) => v + "%" } } };
  chart("chart-rates", {
    type: "bar",
    data: { labels: rows.map((r) => rowLabel(r, by, period)),
            datasets: CHART_RATES.map(([k, label], i) => ({
              label, backgroundColor: COLOURS[i],
              data: rows.map((r) => (r[k] === null ? null : r[k] * 100)) })) },
    options: { scales: pct },
  });
  // counts over the periods (summed over the rows' keys), or per key for the whole window
  const groups = new Map();
  for (const r of table.rows) {
    const g = period === "all" ? rowLabel(r, by, period) : r.period;
    const sum = groups.get(g) || Object.fromEntries(CHART_COUNTS.map(([k]) => [k, 0]));
    for (const [k] of CHART_COUNTS) sum[k] += r[k] || 0;
    groups.set(g, sum);
  }
  const labels = [...groups.keys()].sort().slice(0, MAX_BARS);
  $("trend-caption").textContent = period === "all" ? `上报、立案、结案 (按${KEY_LABELS[by]})`
    : "上报、立案、结案 (按周期)";
  chart("chart-counts", {
    type: period === "all" ? "bar" : "line",
    data: { labels, datasets: CHART_COUNTS.map(([k, label], i) => ({
      label, backgroundColor: COLOURS[i], borderColor: COLOURS[i],
      data: labels.map((g) => groups.get(g)[k]) })) },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  const covered = periods.filter((p) => p.share !== null).slice(0, MAX_BARS);
  chart("chart-coverage", {
    type: "bar",
    data: { labels: covered.map((p) => `${p.supervisor} ${beijingMinute(p.on_at).slice(5, 10)}`),
            datasets: [{ label: "覆盖率", backgroundColor: COLOURS[1],
                         data: covered.map((p) => p.share * 100) }] },
    options: { scales: pct },
  });
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
    drawCharts(table, periods);
  } catch (err) {
    $("error").textContent = err.message;
  }
}

const now = Date.now();
$("f-until").value = beijingDate(now);
$("f-since").value = beijingDate(now - 29 * 86400000);
$("filters").addEventListener("submit", query);
query();
