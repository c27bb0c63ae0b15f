"use strict";
// The fleet's updates: each rollout's progress stage by stage (/api/rollouts) and each
// device's versions — running, the two slots, on trial, the last failure (/api/devices).
// Read only: a 技术员 acts through `gridlink fleet rollout …` or the API.  $, getJson and
// beijingMinute: page.js.

const OUTCOMES = ["installed", "failed", "skipped", "offered", "waiting", "withdrawn"];
const NAMES = { installed: "已安装", failed: "失败", skipped: "跳过", offered: "已下发",
                waiting: "等待", withdrawn: "已撤回" };
const STATES = { running: "进行中", paused: "已暂停", done: "已完成", aborted: "已中止" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function target(t) {
  if (t.district) return `区 ${t.district}`;
  if (t.profile) return `配置 ${t.profile}`;
  return `设备 ${(t.devices || []).join(", ")}`;
}

function stageRow(r, s) {
  const bar = el("div", { class: "bar", title: `${s.devices} devices` });
  for (const o of ["installed", "failed", "skipped", "offered"]) {
    if (s[o]) {
      bar.append(el("span", { class: o, style: `width:${(100 * s[o]) / s.devices}%` }));
    }
  }
  const counts = OUTCOMES.filter((o) => s[o]).map((o) => `${NAMES[o]} ${s[o]}`).join(" · ");
  return el("div", { class: "stage" + (s.stage === r.stage ? " current" : ""),
                     "data-stage": String(s.stage) },
    el("span", { class: "label", text: `第 ${s.stage} 批 (${s.percent}%) ${s.devices} 台` }),
    bar, el("span", { class: "counts", text: counts || "—" }));
}

function rolloutCard(r) {
  return el("div", { class: "rollout", "data-id": r.id },
    el("h3", {},
      el("span", { text: r.id }),
      el("span", { text: `${r.kind} ${r.version}` }),
      el("span", { class: `state ${r.state}`, text: STATES[r.state] || r.state }),
      el("span", { class: "muted", text: `${target(r.target)} · 第 ${r.stage}/${r.stages.length} 批 · `
        + `失败阈值 ${r.failure_threshold}%`
        + (r.stage_timeout_s ? ` · 每批时限 ${r.stage_timeout_s} 秒` : "")
        + ` · ${beijingMinute(r.created_at)} ${r.created_by || ""}` })),
    r.reason ? el("p", { class: "reason", text: r.reason }) : null,
    ...r.progress.map((s) => stageRow(r, s)));
}

function deviceRow(d) {
  const ota = d.ota;
  const failed = ota && ota.failed ? `${ota.failed.version}: ${ota.failed.reason}` : "";
  const cells = [d.device, d.profile || "", d.online ? "●" : "○",
                 ota ? ota.installed || "–" : "(无升级槽)", ota ? ota.slot || "–" : "",
                 ota ? ota.slots.a || "–" : "", ota ? ota.slots.b || "–" : "",
                 ota && ota.pending ? ota.pending : ""];
  const tr = el("tr", { "data-device": d.device },
    ...cells.map((c, i) => el("td", { class: i < 2 ? "key" : "", text: c })));
  tr.append(el("td", { class: "failed", text: failed }));
  return tr;
}

async function refresh() {
  try {
    const [rollouts, devices] = await Promise.all([getJson("/api/rollouts"),
                                                   getJson("/api/devices")]);
    rollouts.reverse();   // the newest first
    $("rollouts").replaceChildren(...rollouts.map(rolloutCard));
    $("rollouts-empty").hidden = rollouts.length > 0;
    $("rollouts-total").textContent = rollouts.length ? `(${rollouts.length})` : "";
    $("devices").tBodies[0].replaceChildren(...devices.map(deviceRow));
    $("devices-empty").hidden = devices.length > 0;
    $("error").textContent = "";
  } catch (err) {
    $("error").textContent = err.message;
  }
}

refresh();
setInterval(refresh, 3000);
