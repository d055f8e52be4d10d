//! The approvers' web page, `GET /approvals/ui` on the admin listener: one static HTML document with a
//! little vanilla JavaScript that calls the API ([`super::api`]) with the approver's token (kept in the
//! tab's `sessionStorage`). The page itself holds no data, so it needs no token to load; everything it
//! shows comes from the authenticated API and is inserted as text, never as HTML.

use axum::http::header;
use axum::response::IntoResponse;

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mcp-gateway approvals</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: .4em .5em; text-align: left; vertical-align: top; }
  th { background: #f4f4f4; }
  pre { margin: 0; white-space: pre-wrap; word-break: break-all; max-width: 32em; font-size: 12px; }
  .status-approved { color: #176117; } .status-denied { color: #a11; } .status-expired { color: #777; }
  #error { color: #a11; min-height: 1.2em; }
  input[type=text], input[type=password] { padding: .3em; }
  button { padding: .3em .8em; margin-right: .3em; cursor: pointer; }
  .empty { color: #777; font-style: italic; }
</style>
</head>
<body>
<h1>Calls waiting for approval</h1>
<form id="login">
  <label>Approver token <input type="password" id="token" autocomplete="off" size="40"></label>
  <button type="submit" id="save-token">Use token</button>
  <span id="whoami"></span>
</form>
<p id="error" role="alert"></p>
<table id="pending">
  <thead><tr><th>Approval</th><th>Route / tool</th><th>Arguments</th><th>Caller</th><th>Why</th><th>Age / expires</th><th>Decision</th></tr></thead>
  <tbody></tbody>
</table>
<p id="pending-empty" class="empty" hidden>Nothing is waiting.</p>
<h2>History</h2>
<table id="history">
  <thead><tr><th>Approval</th><th>Route / tool</th><th>Status</th><th>By</th><th>Comment</th><th>Decided</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
const token = () => sessionStorage.getItem("approver-token") || "";
function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function pre(v) { const p = document.createElement("pre"); p.textContent = v; return p; }
async function api(path, opts) {
  const resp = await fetch(path, Object.assign({ headers: {
    "Authorization": "Bearer " + token(), "Content-Type": "application/json" } }, opts || {}));
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}
function age(s) { return s < 120 ? s + "s" : Math.round(s / 60) + "m"; }
async function decide(id, action, comment) {
  $("#error").textContent = "";
  try {
    await api("/approvals/" + encodeURIComponent(id) + "/" + action,
              { method: "POST", body: JSON.stringify({ comment: comment || null }) });
  } catch (e) { $("#error").textContent = id + ": " + e.message; }
  await refresh();
}
async function refresh() {
  if (!token()) { $("#error").textContent = "Enter an approver token."; return; }
  let pending, history;
  try {
    pending = (await api("/approvals?status=pending")).approvals;
    history = (await api("/approvals?status=all&limit=50")).approvals.filter(a => a.status !== "pending");
  } catch (e) { $("#error").textContent = e.message; return; }
  const pb = $("#pending tbody"); pb.replaceChildren();
  for (const a of pending) {
    const tr = document.createElement("tr"); tr.dataset.id = a.id; tr.className = "pending-row";
    cell(tr, a.id);
    cell(tr, a.route + " / " + a.tool);
    cell(tr, pre(a.arguments !== undefined ? JSON.stringify(a.arguments, null, 1) : "sha256:" + a.args_digest));
    cell(tr, a.principal || "(not authenticated)");
    cell(tr, a.policy + ": " + a.reason);
    cell(tr, age(a.age_seconds) + " / " + a.expires);
    const td = cell(tr, "");
    const c = document.createElement("input"); c.type = "text"; c.placeholder = "comment"; c.className = "comment";
    const ok = document.createElement("button"); ok.textContent = "Approve"; ok.className = "approve";
    const no = document.createElement("button"); no.textContent = "Deny"; no.className = "deny";
    ok.onclick = () => decide(a.id, "approve", c.value);
    no.onclick = () => decide(a.id, "deny", c.value);
    td.append(c, ok, no);
    pb.appendChild(tr);
  }
  $("#pending-empty").hidden = pending.length > 0;
  const hb = $("#history tbody"); hb.replaceChildren();
  for (const a of history) {
    const tr = document.createElement("tr"); tr.dataset.id = a.id;
    cell(tr, a.id); cell(tr, a.route + " / " + a.tool);
    cell(tr, a.status, "status-" + a.status); cell(tr, a.approver || ""); cell(tr, a.comment || "");
    cell(tr, a.decided || "");
    hb.appendChild(tr);
  }
  document.body.dataset.loaded = "1";
}
$("#login").onsubmit = (e) => {
  e.preventDefault();
  sessionStorage.setItem("approver-token", $("#token").value.trim());
  $("#token").value = ""; $("#error").textContent = "";
  refresh();
};
refresh();
setInterval(() => {
  const f = document.activeElement;
  if (!(f && f.classList.contains("comment") && f.value)) refresh();  // do not wipe a comment being typed
}, 5000);
</script>
</body>
</html>
"##;
