"use strict";
// What the board's other pages (statistics, updates, wall) share, loaded before each
// page's own script: $, Beijing time, and the API's JSON.  They have no sign-in form of
// their own: without a session (401) the error says to sign in on the intake board.

const $ = (id) => document.getElementById(id);
const BEIJING_MS = 8 * 3600 * 1000;
const SIGN_IN_FIRST = "未登录: 请先在受理台登录";

// "2026-11-28 10:00": an ISO time to the minute in Beijing time, whatever the browser's zone
function beijingMinute(iso) {
  return iso ? new Date(Date.parse(iso) + BEIJING_MS).toISOString().slice(0, 16)
    .replace("T", " ") : "";
}

async function getJson(url, signIn = SIGN_IN_FIRST) {
  const resp = await fetch(url, { credentials: "same-origin" });
  if (resp.status === 401) throw new Error(signIn);
  const body = await resp.json();
  if (!resp.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ")
      : body.detail;
    throw new Error(detail || `HTTP ${resp.status}`);
  }
  return body;
}
