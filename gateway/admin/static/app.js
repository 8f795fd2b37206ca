// DataGate SOC dashboard: polls the admin API with the SOC token and draws what it returns.
// Plain DOM code, no framework, no build step. Every value from the API is set as text
// (never as HTML): incident fields carry caller-controlled strings.
"use strict";

const TOKEN_KEY = "datagate.adminToken";
const REFRESH_MS = 5000;
const SLA_SOON_S = 30 * 60;
const HIGH_SCORE = 0.8;
const SVG_NS = "http://www.w3.org/2000/svg";
const SEVERITY = { 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical" }; // OCSF

class ApiError extends Error {
  constructor(method, path, status, code, message) {
    super(message);
    this.method = method;
    this.path = path;
    this.status = status;
    this.code = code;
  }

  describe() {
    const what = `${this.status} ${this.code}: ${this.message}`;
    if (this.status === 401) {
      return `The admin API refused the token (${what}). Enter a valid token.`;
    }
    if (this.status === 403) {
      return `This token may not use the SOC API (${what}). ` +
        "It needs the soc or security-officer role.";
    }
    if (this.status === 0) {
      return `${this.method} ${this.path}: ${this.message}`;
    }
    return `${this.method} ${this.path} failed (${what}).`;
  }
}

const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let timer = null;
let loading = false;
let again = false; // a refresh asked for while one was in flight (e.g. right after a click)
let lastGood = null;
let actionError = ""; // a failed click stays visible across refreshes until dismissed

// ---- the API ------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(method, path, 0, "network", `cannot reach the admin listener (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code = (data && data.error) || response.statusText || "error";
    const message = (data && data.message) || text.slice(0, 200) || "no details";
    throw new ApiError(method, path, response.status, code, message);
  }
  return data;
}

const listOf = (data, key) => (data && Array.isArray(data[key]) ? data[key] : []);

// ---- incident fields (OCSF Detection Finding; DataGate's own under `unmapped`, see docs/siem.md)

const incidentId = (inc) => inc.finding_info.uid;
const incidentStatus = (inc) => inc.unmapped.workflow.state; // new, acknowledged, resolved
const incidentTitle = (inc) => inc.finding_info.title;
const incidentPrincipal = (inc) => {
  const seen = (inc.evidences || [])[0];
  return (seen && seen.actor && seen.actor.user && seen.actor.user.uid) || "–";
};
const incidentDataset = (inc) => (inc.resources && inc.resources.length ? inc.resources[0].uid : "–");
const incidentSeen = (inc) => inc.finding_info.last_seen_time;
const incidentSla = (inc) => inc.unmapped.sla || {};
const incidentDue = (inc) => toMillis(incidentSla(inc).due_at);

// ---- small helpers ------------------------------------------------------------------------

function toMillis(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

function clock(value) {
  const ms = toMillis(value);
  if (ms === null) return "–";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}h ${pad(m)}m ${pad(s % 60)}s` : `${m}m ${pad(s % 60)}s`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 5) return 5;
  const step = 10 ** Math.floor(Math.log10(value));
  return [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((m) => m * step >= value) * step;
}

// ---- errors and the token -----------------------------------------------------------------

function showError(lines) {
  const box = $("error");
  box.textContent = lines.join("\n");
  box.hidden = lines.length === 0;
}

function askForToken(message) {
  clearInterval(timer);
  timer = null;
  $("board").hidden = true;
  $("refresh").hidden = true;
  $("signout").hidden = !token;
  $("login").hidden = false;
  showError(message ? [message] : []);
  $("token").focus();
}

function startBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("refresh").hidden = false;
  $("signout").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

// ---- refresh ------------------------------------------------------------------------------

async function refresh() {
  if (!token) return;
  if (loading) {
    again = true;
    return;
  }
  loading = true;
  try {
    // Open incidents only: resolved ones stay in the store but are not the SOC's queue.
    const [fresh, acknowledged, breakers, stats] = await Promise.allSettled([
      api("GET", "/incidents?status=new"),
      api("GET", "/incidents?status=acknowledged"),
      api("GET", "/breakers"),
      api("GET", "/stats"),
    ]);
    const failures = [fresh, acknowledged, breakers, stats]
      .filter((r) => r.status === "rejected")
      .map((r) => r.reason);
    const refused = failures.find((e) => e instanceof ApiError && (e.status === 401 || e.status === 403));
    if (refused) {
      askForToken(refused.describe());
      return;
    }
    if (fresh.status === "fulfilled" && acknowledged.status === "fulfilled") {
      renderIncidents([...listOf(fresh.value, "incidents"), ...listOf(acknowledged.value, "incidents")]);
    }
    if (breakers.status === "fulfilled") renderBreakers(breakers.value);
    if (stats.status === "fulfilled") renderStats(stats.value);
    if (failures.length === 0) lastGood = Date.now();
    const lines = failures.map((e) => (e instanceof ApiError ? e.describe() : String(e)));
    if (lines.length && lastGood) lines.push(`Other panels show data from ${clock(lastGood)}.`);
    if (actionError) lines.unshift(actionError);
    if (breakers.status === "fulfilled" && breakers.value && breakers.value.view_trusted === false) {
      lines.push("The admin listener's breaker view is stale (state backend unreachable?): " +
        "the gateway fails closed until it recovers.");
    }
    showError(lines);
    $("refreshed").textContent = `updated ${clock(Date.now())}`;
  } finally {
    loading = false;
    if (again && timer !== null) {
      again = false;
      refresh();
    }
  }
}

async function act(button, method, path, body) {
  button.disabled = true;
  try {
    await api(method, path, body);
    actionError = "";
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      askForToken(err.describe());
      return;
    }
    actionError = `${err instanceof ApiError ? err.describe() : String(err)} (click to dismiss)`;
  } finally {
    button.disabled = false;
  }
  await refresh();
}

function askNote(title, help) {
  const dialog = $("note-dialog");
  $("note-title").textContent = title;
  $("note-help").textContent = help;
  $("note").value = "";
  dialog.showModal();
  $("note").focus();
  return new Promise((resolve) => {
    const done = (value) => {
      $("note-form").onsubmit = null;
      $("note-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $("note-form").onsubmit = (event) => {
      event.preventDefault();
      const note = $("note").value.trim();
      if (note) done(note);
    };
    $("note-cancel").onclick = () => done(null);
    dialog.onclose = () => done(null);
  });
}

// ---- incidents ----------------------------------------------------------------------------

// The deadline is for acknowledgement (an incident still new when it passes is escalated):
// count down while new, then say whether it was met.
function slaCell(inc) {
  const due = incidentDue(inc);
  const acknowledged = toMillis(incidentSla(inc).acknowledged_at);
  if (due === null) return el("td", { class: "sla muted", text: "–" });
  if (acknowledged === null) return el("td", { class: "sla", "data-due": String(due) });
  if (acknowledged <= due) {
    return el("td", { class: "sla met", text: `met (acknowledged ${clock(acknowledged)})` });
  }
  return el("td", { class: "sla overdue", text: `missed by ${span((acknowledged - due) / 1000)}` });
}

function tickSla() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("td.sla[data-due]")) {
    const left = (Number(cell.dataset.due) - now) / 1000;
    cell.classList.toggle("overdue", left < 0);
    cell.classList.toggle("soon", left >= 0 && left < SLA_SOON_S);
    cell.textContent = left < 0 ? `overdue by ${span(-left)}` : `${span(left)} left`;
  }
}

function renderIncidents(open) {
  open.sort((a, b) =>
    (b.severity_id || 0) - (a.severity_id || 0) ||
    (incidentDue(a) || Infinity) - (incidentDue(b) || Infinity));
  const body = $("incidents").tBodies[0];
  body.replaceChildren(...open.map(incidentRow));
  $("incident-count").textContent = String(open.length);
  $("incidents-empty").hidden = open.length > 0;
  $("incidents").hidden = open.length === 0;
  tickSla();
}

function incidentRow(inc) {
  const id = incidentId(inc);
  const status = incidentStatus(inc);
  const severity = Number(inc.severity_id || 0);
  const path = `/incidents/${encodeURIComponent(id)}`;
  const actions = el("td", { class: "actions" });
  if (status === "new") {
    const ack = el("button", { type: "button", text: "Acknowledge", "data-action": "ack" });
    ack.onclick = () => act(ack, "POST", `${path}/ack`, {});
    actions.append(ack);
  }
  const resolve = el("button", { type: "button", class: "secondary", text: "Resolve", "data-action": "resolve" });
  resolve.onclick = async () => {
    const note = await askNote(`Resolve incident ${id}`, incidentTitle(inc));
    if (note !== null) await act(resolve, "POST", `${path}/resolve`, { note });
  };
  actions.append(resolve);
  const count = inc.count || 1;
  return el(
    "tr",
    { "data-incident": id, "data-status": status },
    el("td", {}, el("span", { class: `sev sev-${severity}`, text: SEVERITY[severity] || `severity ${severity}` })),
    el("td", {}, incidentTitle(inc), el("span", { class: "detail id", text: id })),
    el("td", { text: incidentPrincipal(inc) }),
    el("td", { text: incidentDataset(inc) }),
    el("td", {}, clock(incidentSeen(inc)), el("span", { class: "detail", text: count > 1 ? `${count} times` : "once" })),
    el(
      "td",
      { class: `status status-${status}` },
      status,
      incidentSla(inc).escalated_at ? el("span", { class: "detail escalated", text: "escalated" }) : "",
    ),
    slaCell(inc),
    actions,
  );
}

// ---- breakers -----------------------------------------------------------------------------

function renderBreakers(data) {
  const shown = listOf(data, "breakers"); // the API lists only breakers that are not closed
  const body = $("breakers").tBodies[0];
  body.replaceChildren(...shown.map(breakerRow));
  $("breaker-count").textContent = String(shown.length);
  $("breakers-empty").hidden = shown.length > 0;
  $("breakers").hidden = shown.length === 0;
}

function breakerRow(b) {
  const state = b.effective; // an expired open breaker is half-open
  const reset = el("button", { type: "button", class: "danger", text: "Reset", "data-action": "reset" });
  reset.onclick = async () => {
    const note = await askNote(
      `Reset breaker ${b.scope}:${b.key}`,
      "Lifts the suspension at once (forced-open included); the note goes to the audit log.",
    );
    if (note !== null) await act(reset, "POST", "/breakers/reset", { scope: b.scope, key: b.key, note });
  };
  return el(
    "tr",
    { "data-breaker": `${b.scope}:${b.key}`, "data-state": state },
    el("td", { text: b.scope }),
    el("td", { class: "id", text: b.key }),
    el("td", { class: `state state-${state}`, text: state.replace("_", "-") }),
    el("td", { text: b.until_at ? clock(b.until_at) : "–" }),
    el("td", { class: "num", text: String(b.trips || 0) }),
    el("td", { class: "id", text: b.incident_id || "–" }),
    el("td", { text: [b.reason, b.note].filter(Boolean).join(" — ") || "–" }),
    el("td", { text: b.by || "–" }),
    el("td", { class: "actions" }, reset),
  );
}

// ---- statistics ---------------------------------------------------------------------------

function renderStats(stats) {
  if (!stats) return;
  renderTraffic(stats.per_minute || [], stats.totals || {});
  renderScores(stats.scores || { edges: [], counts: [], total: 0 });
  renderPrincipals(stats.top_principals || []);
}

function renderTraffic(rows, totals) {
  const W = 640, H = 190, L = 40, R = 8, T = 10, B = 22;
  const plotW = W - L - R, plotH = H - T - B;
  const top = niceMax(Math.max(0, ...rows.map((r) => r.requests)));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests per minute" });
  chart.append(
    svg("line", { class: "axis", x1: L, y1: T + plotH, x2: W - R, y2: T + plotH }),
    svg("line", { class: "axis", x1: L, y1: T, x2: W - R, y2: T }),
    svg("text", { x: L - 4, y: T + 4, "text-anchor": "end" }, String(top)),
    svg("text", { x: L - 4, y: T + plotH, "text-anchor": "end" }, "0"),
  );
  const slot = plotW / Math.max(rows.length, 1);
  rows.forEach((row, i) => {
    const x = L + i * slot + 1;
    const w = Math.max(slot - 2, 1);
    const other = Math.max(row.requests - row.allow - row.deny, 0);
    const group = svg("g");
    group.append(svg("title", {}, `${clock(row.minute)}: ${row.requests} requests, ${row.allow} allow, ${row.deny} deny`));
    let y = T + plotH;
    for (const [cls, n] of [["allow", row.allow], ["deny", row.deny], ["other", other]]) {
      if (n <= 0) continue;
      const h = (n / top) * plotH;
      y -= h;
      group.append(svg("rect", { class: cls, x, y, width: w, height: h }));
    }
    chart.append(group);
  });
  if (rows.length) {
    chart.append(
      svg("text", { x: L, y: H - 6 }, clock(rows[0].minute)),
      svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "now"),
    );
  }
  $("traffic-chart").replaceChildren(chart);
  $("traffic-totals").textContent =
    ` · last ${rows.length} min: ${totals.requests || 0} requests, ${totals.allow || 0} allow, ${totals.deny || 0} deny`;
}

function renderScores(scores) {
  const W = 640, H = 170, L = 40, R = 8, T = 10, B = 22;
  const plotW = W - L - R, plotH = H - T - B;
  const counts = scores.counts || [];
  const edges = scores.edges || [];
  const top = niceMax(Math.max(0, ...counts));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "anomaly-score histogram" });
  chart.append(
    svg("line", { class: "axis", x1: L, y1: T + plotH, x2: W - R, y2: T + plotH }),
    svg("text", { x: L - 4, y: T + 4, "text-anchor": "end" }, String(top)),
    svg("text", { x: L - 4, y: T + plotH, "text-anchor": "end" }, "0"),
  );
  const slot = plotW / Math.max(counts.length, 1);
  counts.forEach((n, i) => {
    const lo = edges[i] ?? i / counts.length;
    const hi = edges[i + 1] ?? (i + 1) / counts.length;
    const h = (n / top) * plotH;
    const group = svg("g");
    group.append(
      svg("title", {}, `score ${lo.toFixed(2)}–${hi.toFixed(2)}: ${n}`),
      svg("rect", { class: lo >= HIGH_SCORE ? "bin high" : "bin", x: L + i * slot + 1, y: T + plotH - h, width: Math.max(slot - 2, 1), height: h }),
    );
    if (n > 0) group.append(svg("text", { x: L + (i + 0.5) * slot, y: T + plotH - h - 3, "text-anchor": "middle" }, String(n)));
    chart.append(group);
  });
  const every = Math.max(1, Math.round(edges.length / 6));
  for (let i = 0; i < edges.length - every / 2; i += every) {
    chart.append(svg("text", { x: L + i * slot, y: H - 6, "text-anchor": i ? "middle" : "start" }, edges[i].toFixed(1)));
  }
  if (edges.length) {
    chart.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, edges[edges.length - 1].toFixed(1)));
  }
  $("scores-chart").replaceChildren(chart);
  $("scores-total").textContent = `${scores.total || 0} scored requests in the window; red: score ≥ ${HIGH_SCORE}`;
}

function renderPrincipals(rows) {
  const body = $("principals").tBodies[0];
  body.replaceChildren(
    ...rows.map((p) => {
      const bar = el("span", { class: p.max_score >= HIGH_SCORE ? "scorebar high" : "scorebar" });
      bar.style.width = `${Math.round(p.max_score * 60)}px`;
      return el(
        "tr",
        { "data-principal": p.principal },
        el("td", { text: p.principal }),
        el("td", { text: p.department || "–" }),
        el("td", { class: "num" }, bar, p.max_score.toFixed(2)),
        el("td", { class: "num", text: p.mean_score.toFixed(2) }),
        el("td", { class: "num", text: String(p.requests) }),
        el("td", { text: clock(p.last_seen) }),
      );
    }),
  );
  $("principals-empty").hidden = rows.length > 0;
  $("principals").hidden = rows.length === 0;
}

// ---- wiring -------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    showError([]);
    startBoard();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = "";
    askForToken("");
  });
  $("refresh").addEventListener("click", refresh);
  $("error").addEventListener("click", () => {
    actionError = "";
    showError([]);
  });
  setInterval(tickSla, 1000);
  if (token) startBoard();
  else askForToken("");
});
