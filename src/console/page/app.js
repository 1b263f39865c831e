// The console page: log in, then one view at a time (the log, a record, the
// access report, charts, figures, covenants, integrity). Filters live in the
// address bar so a view can be bookmarked and shared; the V-nummer never
// does: searches and reports by person are POSTs with it in the body.
"use strict";
const $ = (id) => document.getElementById(id);
// The session's CSRF token: the session itself is an HttpOnly cookie the
// page never sees; no token is kept in the browser.
let csrf = "";
let me = null;
let names = {};
let vkey = "";
let pages = [null];
let pageAt = 0;
let proofId = null;
let pilotList = [];
const PAGE_SIZE = 20;
const FILTERS = ["partner", "pilot", "purpose", "since", "until", "decision"];

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

class KpError extends Error {
  constructor(problem) { super(problem.title || "error"); this.problem = problem; }
}

/** An error as HTML: the problem's title in the page's language; the
 * server's detail after it, marked as English where the page is Dutch. */
function errHtml(e) {
  if (!(e instanceof KpError)) return esc(t("error") + ": " + e.message);
  const p = e.problem;
  const detail = p.detail ? `: <span lang="en">${esc(p.detail)}</span>` : "";
  return esc(problemTitle(p)) + detail;
}

function showErr(el, e) { el.innerHTML = `<span class="error">${errHtml(e)}</span>`; }

// Every call goes in the session (a same-origin cookie); a call that
// changes something carries the session's CSRF token.
async function api(path, opts = {}) {
  const headers = {};
  const method = opts.method || "GET";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  let body = opts.body;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
  const r = await fetch(path, {method, headers, body, credentials: "same-origin"});
  const type = r.headers.get("content-type") || "";
  if (r.status === 401 && !opts.quiet401) { logout(t("login.bad")); }
  if (!r.ok) {
    const p = type.includes("json") ? await r.json() : {title: await r.text()};
    throw new KpError(p);
  }
  return type.includes("json") ? r.json() : r.text();
}

function logout(msg) {
  csrf = "";
  me = null;
  document.querySelectorAll(".view").forEach((v) => v.classList.add("hidden"));
  $("nav").classList.add("hidden");
  $("logout-btn").classList.add("hidden");
  $("who").textContent = "";
  $("login").classList.remove("hidden");
  $("error").textContent = msg || "";
}

// The token form opens a session; the token is not kept.
async function login(ev) {
  if (ev) ev.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  const r = await fetch("/api/v1/session", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}), credentials: "same-origin"});
  const p = await r.json().catch(() => ({}));
  if (r.status !== 201) { $("error").innerHTML = errHtml(new KpError(p)); return; }
  start(p);
}

async function endSession() {
  try {
    await fetch("/api/v1/session", {method: "DELETE", headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"});
  } catch (e) { /* gone already */ }
  logout(t("logout.done"));
}

// On opening: the identity providers' links, then a session this browser
// has (cookie), else a personal certificate it presented, logs in without
// the form.
async function resume() {
  const providers = await fetch("/login/providers").then((r) => r.json()).catch(() => ({oidc: []}));
  $("oidc-links").replaceChildren();
  for (const p of providers.oidc || []) {
    const a = document.createElement("a");
    a.href = p.url;
    a.textContent = t("login.with") + " " + p.title;
    $("oidc-links").append(a, " ");
  }
  const r = await fetch("/api/v1/session", {credentials: "same-origin"});
  if (r.ok) return start(await r.json());
  const c = await fetch("/api/v1/session", {method: "POST", credentials: "same-origin"});
  if (c.status === 201) return start(await c.json());
  logout("");
}

function officer() { return me && me.role === "privacy-officer"; }

function start(who) {
  me = who;
  if (who.csrf) csrf = who.csrf;
  $("who").textContent = who.name + " · " + t("role." + who.role) + (who.partner ? " · " + who.partner : "");
  $("login").classList.add("hidden");
  $("nav").classList.remove("hidden");
  $("logout-btn").classList.remove("hidden");
  $("error").textContent = "";
  document.querySelectorAll("#nav li.officer").forEach((li) => li.classList.toggle("hidden", !officer()));
  $("editor").classList.toggle("hidden", who.role !== "policy-admin");
  $("rule-editor").classList.toggle("hidden", who.role !== "policy-admin");
  api("/api/v1/audit/head").then((h) => { vkey = h.vkey; }).catch(() => {});
  route(false);
}

// ---- views and the address bar ----

const loaded = {};

function params() { return new URLSearchParams(location.search); }

function setUrl(p, push) {
  const url = "?" + p.toString();
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

function show(view, focus) {
  document.querySelectorAll(".view").forEach((v) => v.classList.add("hidden"));
  $("view-" + view).classList.remove("hidden");
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.dataset.view === view || (view === "detail" && a.dataset.view === "records")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (focus) { const h = $("view-" + view).querySelector("h2"); if (h) h.focus(); }
}

function route(focus) {
  if (!me) return;
  const p = params();
  let view = p.get("view") || (officer() ? "records" : "admin");
  if (!officer() && ["records", "detail", "report", "figures"].includes(view)) view = "admin";
  show(view, focus);
  if (view === "records") { filtersFromUrl(); search(0); }
  if (view === "detail") showDetail(Number(p.get("record")));
  if (view === "charts") loadCharts();
  if (view === "figures" && !loaded.figures) { loaded.figures = true; loadFigurePilots(); }
  if (view === "admin" && !loaded.admin) { loaded.admin = true; loadPilots(); }
  if (view === "integrity") loadIntegrity();
}

function go(view, extra) {
  const p = params();
  p.set("view", view);
  p.delete("record");
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  setUrl(p, true);
  route(true);
}

// ---- the log ----

function filtersFromUrl() {
  const p = params();
  for (const k of FILTERS) $("q-" + k).value = p.get(k) || "";
}

function filters() {
  const out = {};
  for (const k of FILTERS) { const v = $("q-" + k).value.trim(); if (v) out[k] = v; }
  return out;
}

async function search(at) {
  pageAt = at;
  if (at === 0) pages = [null];
  const f = filters();
  const subject = $("q-subject").value.trim();
  const cursor = pages[at];
  $("rows").setAttribute("aria-busy", "true");
  try {
    let res;
    if (subject) {
      const body = Object.assign({subject, limit: PAGE_SIZE}, f);
      if (cursor !== null) body.cursor = cursor;
      res = await api("/api/v1/disclosures/search", {method: "POST", json: body});
    } else {
      const q = new URLSearchParams(Object.assign({limit: PAGE_SIZE}, f));
      if (cursor !== null) q.set("cursor", cursor);
      res = await api("/api/v1/disclosures?" + q.toString());
    }
    Object.assign(names, res.names || {});
    renderRows(res.records);
    pages[at + 1] = res.next_cursor;
    $("more").disabled = res.next_cursor === null || res.next_cursor === undefined;
    $("prev").disabled = at === 0;
    $("page-no").textContent = t("page.no", {n: at + 1});
    $("count").textContent = (subject || Object.keys(f).length) ? t("records.found") : t("records.latest");
  } catch (e) {
    $("rows").innerHTML = "";
    showErr($("count"), e);
  }
  $("rows").removeAttribute("aria-busy");
}

function nameOf(id) { return names[id] || id; }

function renderRows(records) {
  $("rows").innerHTML = records.length ? "" : `<tr><td colspan="9">${esc(t("records.none"))}</td></tr>`;
  for (const r of records) {
    const tr = document.createElement("tr");
    tr.className = "rec";
    const dec = r.decision === "refused" ? t("d.refused") : t("d.disclosed");
    tr.innerHTML = `<td><button type="button" class="link open" aria-label="${esc(t("c.open", {id: r.id}))}">${r.id}</button></td>` +
      `<td>${esc(r.time.replace("T", " ").slice(0, 19))}</td><td class="${r.decision}">${esc(dec)}${r.reason ? " (" + esc(r.reason) + ")" : ""}</td>` +
      `<td>${esc(r.pilot)}</td><td>${esc(nameOf(r.sender))}</td><td>${esc(nameOf(r.recipient))}</td><td>${esc(r.purpose)}</td>` +
      `<td>${esc(r.disclosed.join(", "))}</td><td>${esc(r.withheld.join(", "))}</td>`;
    tr.querySelector("button").addEventListener("click", () => go("detail", {record: r.id}));
    $("rows").appendChild(tr);
  }
}

function submitSearch(ev) {
  ev.preventDefault();
  const p = new URLSearchParams({view: "records"});
  for (const [k, v] of Object.entries(filters())) p.set(k, v);
  setUrl(p, true);
  search(0);
}

// ---- one record ----

async function showDetail(id) {
  proofId = id;
  $("detail-h").textContent = t("detail.h", {id});
  $("detail").innerHTML = "";
  $("proof-steps").innerHTML = `<li>${esc(t("proof.checking"))}</li>`;
  try {
    const a = await api("/api/v1/audit/proof?index=" + id);
    Object.assign(names, a.names || {});
    const r = a.record;
    const list = (xs) => xs.length ? `<ul>${xs.map((x) => `<li><code>${esc(x)}</code></li>`).join("")}</ul>` : esc(t("dt.nothing"));
    const rows = [
      ["dt.time", esc(r.time)],
      ["dt.kind", esc(t("kind." + r.kind) || r.kind)],
      ["dt.decision", `<span class="${r.decision}">${esc(r.decision === "refused" ? t("d.refused") : t("d.disclosed"))}</span>`],
      ...(r.reason ? [["dt.reason", esc(r.reason)]] : []),
      ["dt.from", esc(nameOf(r.sender)) + ` <span class="hint">(${esc(r.sender)})</span>`],
      ["dt.to", esc(nameOf(r.recipient)) + ` <span class="hint">(${esc(r.recipient)})</span>`],
      ["dt.pilot", esc(nameOf(r.pilot))],
      ["dt.purpose", esc(r.purpose)],
      ["dt.basis", esc(r.legal_basis)],
      ["dt.rule", esc(r.rule_id)],
      ["dt.service", esc(r.service)],
      ["dt.given", list(r.disclosed)],
      ["dt.withheld", list(r.withheld)],
      ["dt.undeclared", esc(r.withheld_undeclared)],
      ...(r.payload_sha256 ? [["dt.hash", `<code>${esc(r.payload_sha256)}</code>`]] : []),
      ...(r.processing_activity_id ? [["dt.activity", `<code>${esc(r.processing_activity_id)}</code>`]] : []),
      ...(r.fsc_transaction_id ? [["dt.fsc", `<code>${esc(r.fsc_transaction_id)}</code>`]] : []),
    ];
    $("detail").innerHTML = rows.map(([k, v]) => `<dt>${esc(t(k))}</dt><dd>${v}</dd>`).join("");
    $("proof").textContent = JSON.stringify(a.proof, null, 2) + "\n\n" + a.checkpoint;
    if (!vkey) vkey = (await api("/api/v1/audit/head")).vkey;
    const steps = await checkInclusion(a, vkey);
    $("proof-steps").innerHTML = steps.map((s) => {
      const mark = s.ok === true ? `<span class="disclosed">✓ ${esc(t("proof.ok"))}</span>`
        : s.ok === false ? `<span class="refused">✗ ${esc(t("proof.fail"))}</span>` : "";
      return `<li data-ok="${s.ok}">${esc(t(s.key, s.vars))} ${mark}</li>`;
    }).join("");
  } catch (e) {
    $("proof-steps").innerHTML = "";
    showErr($("detail"), e);
  }
}

async function downloadEvidence() {
  if (proofId === null) return;
  try {
    const text = await api("/api/v1/disclosures/" + proofId + "/evidence");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
    a.download = "record-" + proofId + ".tlog-proof";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) { showErr($("status"), e); }
}

// ---- the access report ----

async function report(ev) {
  if (ev) ev.preventDefault();
  const v = $("r-subject").value.trim();
  if (!/^\d{10}$/.test(v)) { $("report").innerHTML = `<p class="error">${esc(t("report.need"))}</p>`; $("r-subject").focus(); return; }
  $("report").textContent = t("busy");
  try {
    const lang = $("r-lang").value;
    const html = await api("/api/v1/subjects/report", {method: "POST", json: {vnummer: v, format: "html", lang}});
    const doc = new DOMParser().parseFromString(html, "text/html");
    // Under the page's own headings: the report's h1/h2 become h3/h4.
    for (const [from, to] of [["h2", "h4"], ["h1", "h3"]]) {
      doc.body.querySelectorAll(from).forEach((h) => { const n = doc.createElement(to); n.innerHTML = h.innerHTML; h.replaceWith(n); });
    }
    $("report").lang = lang;
    $("report").innerHTML = doc.body.innerHTML;
    $("print-btn").classList.remove("hidden");
  } catch (e) { showErr($("report"), e); }
}

function reportFromSearch() {
  $("r-subject").value = $("q-subject").value.trim();
  go("report");
  if ($("r-subject").value) report();
}

// ---- charts ----

async function loadCharts() {
  const box = $("charts");
  box.innerHTML = "";
  for (const by of ["day", "pilot", "partner", "purpose"]) {
    try {
      const s = await api("/api/v1/stats?by=" + by);
      let rows = s.rows.map((r) => ({label: r.name || r.key, disclosed: r.disclosed, refused: r.refused}));
      if (by === "day") rows = rows.slice(-31);
      box.appendChild(barChart("chart-" + by, t("chart." + by), rows));
    } catch (e) { const p = document.createElement("p"); showErr(p, e); box.appendChild(p); }
  }
}

// ---- figures ----

async function loadFigurePilots() {
  try {
    const res = await api("/api/v1/pilots");
    $("figures-pilot").innerHTML = res.pilots.map((p) => `<option value="${esc(p.id)}">${esc(p.name)}</option>`).join("");
    const now = new Date();
    const month = (d) => d.toISOString().slice(0, 7);
    $("figures-to").value = month(now);
    $("figures-from").value = month(new Date(now.getFullYear(), now.getMonth() - 11, 15));
    loadFigures();
  } catch (e) { showErr($("figures-table"), e); }
}

async function loadFigures(ev) {
  if (ev) ev.preventDefault();
  const pilot = $("figures-pilot").value;
  const p = new URLSearchParams({pilot, from: $("figures-from").value, to: $("figures-to").value});
  try {
    const f = await api("/api/v1/figures?" + p.toString());
    const rows = f.months;
    const reasons = rows.length ? Object.keys(rows[0].endings_by_reason) : [];
    const bands = rows.length ? Object.keys(rows[0].length_of_stay) : [];
    const th = (s) => `<th scope="col" class="n">${esc(s)}</th>`;
    let out = `<table><caption>${esc(t("fig.caption"))}</caption><thead><tr><th scope="col">${esc(t("fig.month"))}</th>` +
      th(t("fig.open")) + th(t("fig.intakes")) + th(t("fig.endings")) +
      reasons.map((r) => th(r)).join("") + bands.map((b) => th(t("band." + b))).join("") + `</tr></thead><tbody>`;
    for (const r of rows) {
      const td = (v) => `<td class="n">${esc(String(v))}</td>`;
      out += `<tr><th scope="row">${esc(r.month)}</th>${td(r.open)}${td(r.intakes)}${td(r.endings)}` +
        reasons.map((k) => td(r.endings_by_reason[k])).join("") + bands.map((k) => td(r.length_of_stay[k])).join("") + `</tr>`;
    }
    $("figures-table").innerHTML = out + `</tbody></table>`;
  } catch (e) { showErr($("figures-table"), e); }
  loadChecks(pilot);
}

async function loadChecks(pilot) {
  const from = $("figures-from").value, to = $("figures-to").value;
  const q = new URLSearchParams({pilot});
  if (from) q.set("since", from + "-01");
  if (to) { const [y, m] = to.split("-").map(Number); q.set("until", new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10)); }
  try {
    const c = await api("/api/v1/registrations/checks?" + q.toString());
    const th = (k) => `<th scope="col" class="n">${esc(t(k))}</th>`;
    const td = (v) => `<td class="n">${esc(String(v))}</td>`;
    $("checks-table").innerHTML = (c.complete ? "" : `<p>${esc(t("checks.partial"))}</p>`) + (c.partners.length
      ? `<table><caption>${esc(t("checks.caption"))}</caption><thead><tr><th scope="col">${esc(t("checks.partner"))}</th>` +
        th("checks.checks") + th("checks.limit") + th("checks.other") + th("checks.reg") + th("checks.end") + `</tr></thead><tbody>` +
        c.partners.map((r) => `<tr><th scope="row">${esc(r.name)}</th>${td(r.checks)}${td(r.refused_limit)}${td(r.refused_other)}${td(r.registrations)}${td(r.endings)}</tr>`).join("") +
        `</tbody></table>`
      : `<p>${esc(t("records.none"))}</p>`);
  } catch (e) { showErr($("checks-table"), e); }
}

// ---- covenants ----

async function loadPilots() {
  try {
    const res = await api("/api/v1/pilots");
    pilotList = res.pilots;
    $("pilot-select").innerHTML = res.pilots.map((p) => `<option value="${esc(p.id)}">${esc(p.name)}${p.editable ? "" : " (" + esc(t("admin.readonly")) + ")"}</option>`).join("");
    if (res.pilots.length) loadPolicy();
  } catch (e) { showErr($("policy-meta"), e); }
}

function pilot() { return $("pilot-select").value; }

async function loadPolicy() {
  try {
    const p = await api("/api/v1/pilots/" + pilot() + "/policy");
    $("policy-text").value = p.file;
    $("policy-meta").textContent = `${t("admin.version")} ${p.version.slice(7, 19)}… · ${t("admin.rules", {n: p.rules.length})}` +
      (p.last_changed ? ` · ${p.last_changed.time} · ${p.last_changed.by}` : "");
    $("flows").innerHTML = await api("/api/v1/pilots/" + pilot() + "/flows.svg");
    const svg = $("flows").querySelector("svg");
    if (svg) {
      svg.setAttribute("width", "100%"); svg.removeAttribute("height");
      svg.setAttribute("role", "img"); svg.setAttribute("aria-label", t("admin.flows", {p: pilot()}));
    }
    $("policy-result").textContent = "";
    loadHistory();
    loadCovenant();
    if (me && me.role === "policy-admin") loadRuleEditor();
  } catch (e) { showErr($("policy-meta"), e); }
}

async function putPolicy(dry) {
  $("policy-result").textContent = t("busy");
  try {
    const j = await api("/api/v1/pilots/" + pilot() + "/policy" + (dry ? "?dry_run=true" : ""),
      {method: "PUT", body: $("policy-text").value});
    const changes = j.changes.length ? j.changes.join("\n") : t("admin.nochange");
    const v = j.version.slice(7, 19) + "…";
    $("policy-result").textContent = t(j.applied ? "admin.applied" : "admin.valid", {v}) + "\n" + changes;
    if (j.applied) {
      await loadPolicy();
      const c = j.covenant || {in_force: true};
      const flows = Object.entries(c.flows || {}).map(([who, fs]) => fs.map((f) => who + ": " + f).join("\n")).join("\n");
      $("policy-result").textContent = (c.in_force ? t("admin.inforce") + "\n"
        : t("admin.pending", {who: (c.waiting_for || []).join(", ")}) + "\n" + flows + "\n") + changes;
    }
  } catch (e) {
    $("policy-result").textContent = t("admin.invalid") + " " + (e.problem ? (e.problem.detail || problemTitle(e.problem)) : e.message);
  }
}

async function explainRule() {
  let doc = null;
  const raw = $("ex-doc").value.trim();
  if (raw) { try { doc = JSON.parse(raw); } catch (e) { $("explain-result").textContent = t("ex.notjson"); return; } }
  try {
    const r = await api("/api/v1/pilots/" + pilot() + "/policy/explain", {method: "POST", json: {
      from: $("ex-from").value, to: $("ex-to").value, service: $("ex-service").value, purpose: $("ex-purpose").value, document: doc}});
    $("explain-result").textContent = r.explanation;
  } catch (e) { showErr($("explain-result"), e); }
}

async function loadHistory() {
  try {
    const h = await api("/api/v1/pilots/" + pilot() + "/history");
    $("history").innerHTML = h.versions.length ? h.versions.map((v) =>
      `<li><b>${esc(v.time)}</b> · ${esc(v.by)} · ${esc(t("admin.version"))} ${esc(v.version.slice(7, 19))}…` +
      ((v.signatures || []).length ? " · " + esc(t("admin.signed")) + " " + esc(v.signatures.map((s) => `${s.partner} (${s.decision} ${s.time})`).join(", ")) : "") +
      (v.changes.length ? `<pre>${esc(v.changes.join("\n"))}</pre>` : "") + "</li>").join("")
      : `<li>${esc(t("records.none"))}</li>`;
  } catch (e) { showErr($("history"), e); }
}

async function loadCovenant() {
  try {
    const c = await api("/api/v1/pilots/" + pilot() + "/covenant");
    const who = (l) => l.length ? l.map((s) => s.partner + " " + s.time).join(", ") : t("cov.nobody");
    const f = c.in_force;
    let html = f ? `<p>${esc(t("cov.inforce", {v: f.version.slice(7, 19) + "…", since: f.since || "?", who: who(f.signers)}))}` +
      (f.revoked.length ? ` · <b>${esc(t("cov.revoked", {who: who(f.revoked)}))}</b>` : "") + "</p>" : `<p><b>${esc(t("cov.none"))}</b></p>`;
    html += c.pending.map((p) => `<p>${esc(t("cov.pending", {v: p.version.slice(7, 19) + "…", who: (p.waiting_for || []).join(", ")}))}` +
      ` <button type="button" class="secondary withdraw" data-version="${esc(p.version.slice(7))}">${esc(t("cov.withdraw"))}</button></p>` +
      `<pre>${esc(Object.entries(p.flows || {}).map(([w, fs]) => fs.map((x) => w + ": " + x).join("\n")).join("\n"))}</pre>`).join("");
    $("covenant").innerHTML = html;
    $("covenant").querySelectorAll(".withdraw").forEach((b) => b.addEventListener("click", async () => {
      await api("/api/v1/pilots/" + pilot() + "/covenant/versions/" + b.dataset.version, {method: "DELETE"});
      loadPolicy();
    }));
  } catch (e) { showErr($("covenant"), e); }
}

// ---- integrity ----

async function loadIntegrity() {
  try {
    const h = await api("/api/v1/audit/head");
    vkey = h.vkey;
    $("checkpoint").textContent = h.published || (h.witnessed ? t("integrity.noquorum") : t("integrity.none"));
    $("unwitnessed").textContent = h.witnessed && h.checkpoint_size !== h.published_size ? t("integrity.waiting", {n: h.checkpoint_size}) : "";
    $("vkey").textContent = h.vkey;
    const v = await api("/api/v1/audit/verify");
    if (v.last) showVerify(v.last);
  } catch (e) { showErr($("checkpoint"), e); }
}

function showVerify(v) {
  $("verify-result").innerHTML = v.ok
    ? `<span class="disclosed">${esc(t("integrity.ok", {r: v.records, c: v.checkpoints, s: v.seconds.toFixed(2)}))}</span>`
    : `<span class="refused">${esc(t("integrity.bad"))}</span> <span lang="en">${esc(v.error)}</span>`;
}

async function verify() {
  $("verify-result").textContent = t("integrity.busy");
  try { showVerify(await api("/api/v1/audit/verify", {method: "POST"})); loadIntegrity(); }
  catch (e) { showErr($("verify-result"), e); }
}

// ---- wiring ----

function wire() {
  applyLang();
  $("r-lang").value = kpLang;
  $("lang-btn").addEventListener("click", () => {
    setLang(kpLang === "nl" ? "en" : "nl");
    $("r-lang").value = kpLang;
    if (me) { $("who").textContent = me.name + " · " + t("role." + me.role) + (me.partner ? " · " + me.partner : ""); route(false); }
  });
  $("logout-btn").addEventListener("click", endSession);
  $("login-form").addEventListener("submit", login);
  document.querySelectorAll("#nav a").forEach((a) => a.addEventListener("click", (e) => { e.preventDefault(); go(a.dataset.view); }));
  window.addEventListener("popstate", () => route(false));
  $("search-form").addEventListener("submit", submitSearch);
  $("clear-btn").addEventListener("click", () => { $("search-form").reset(); setUrl(new URLSearchParams({view: "records"}), true); search(0); });
  $("more").addEventListener("click", () => search(pageAt + 1));
  $("prev").addEventListener("click", () => search(Math.max(0, pageAt - 1)));
  $("back-btn").addEventListener("click", () => history.length > 1 ? history.back() : go("records"));
  $("evidence-btn").addEventListener("click", downloadEvidence);
  $("report-btn").addEventListener("click", reportFromSearch);
  $("report-form").addEventListener("submit", report);
  $("print-btn").addEventListener("click", () => window.print());
  $("figures-form").addEventListener("submit", loadFigures);
  $("pilot-select").addEventListener("change", loadPolicy);
  $("dry-run-btn").addEventListener("click", () => putPolicy(true));
  $("apply-btn").addEventListener("click", () => putPolicy(false));
  $("explain-btn").addEventListener("click", explainRule);
  wireRuleEditor();
  $("verify-btn").addEventListener("click", verify);
  resume();
}

wire();
