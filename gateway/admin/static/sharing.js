// DataGate data-sharing page: the data officers' queue of access requests, usage and
// utilisation, incident handling and data quality, drawn from the admin API with the token.
// Every value from the API is set as text, never as HTML.
"use strict";

const TOKEN_KEY = "datagate.adminToken";
const REFRESH_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let timer = null;
let rejecting = null; // the request id the note dialog is for

class ApiError extends Error {
  constructor(path, status, code, reason, message) {
    super(message);
    Object.assign(this, { path, status, code, reason });
  }
}

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
    throw new ApiError(path, 0, "network", "", `cannot reach the admin listener (${err.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(path, response.status, (data && data.error) || "error",
      (data && data.reason) || "", (data && data.message) || response.statusText);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child === null || child === undefined ? "" : child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (x) => (x === null || x === undefined ? "-" : `${Math.round(x * 1000) / 10}%`);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// A horizontal bar chart: rows of {label, parts: [{value, cls, title}]}, values 0..max.
function bars(container, rows, max, unit) {
  container.replaceChildren();
  // Drawn at the container's own width, so text keeps its size on wide and narrow cards.
  const rowH = 22;
  const width = Math.max(420, Math.round(container.clientWidth || 640));
  const left = 170;
  const height = rows.length * rowH + 24;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const scale = (width - left - 170) / (max || 1);
  rows.forEach((row, i) => {
    const y = 6 + i * rowH;
    chart.append(svg("text", { x: 0, y: y + 13 }, row.label));
    let x = left;
    for (const part of row.parts) {
      const w = Math.max(0, part.value * scale);
      const rect = svg("rect", { x, y, width: w, height: rowH - 6, class: `bar ${part.cls}` });
      rect.append(svg("title", {}, part.title));
      chart.append(rect);
      x += w;
    }
    chart.append(svg("text", { x: x + 4, y: y + 13 }, row.total === undefined ? "" : row.total));
  });
  chart.append(svg("line", { x1: left, y1: 2, x2: left, y2: height - 16, class: "axis" }));
  chart.append(svg("text", { x: left, y: height - 4 }, `0 ${unit}`));
  container.append(chart);
}

// ---- the queue ----------------------------------------------------------------------------

async function decide(id, step, note) {
  try {
    await api("POST", `/access-requests/${encodeURIComponent(id)}/${step}`, note ? { note } : {});
    showError("");
  } catch (err) {
    showError(`${step} ${id}: ${err.status} ${err.reason || err.code}: ${err.message}`);
  }
  await refresh();
}

function drawQueue(requests, all) {
  const body = $("queue").querySelector("tbody");
  body.replaceChildren();
  for (const r of requests) {
    const actions = el("td", { class: "actions" });
    if (r.state === "pending") {
      const approve = el("button", { type: "button", "data-action": "approve" }, "Approve");
      approve.addEventListener("click", () => decide(r.id, "approve"));
      const reject = el("button", { type: "button", class: "danger", "data-action": "reject" },
        "Reject");
      reject.addEventListener("click", () => {
        rejecting = r.id;
        $("note").value = "";
        $("note-dialog").showModal();
      });
      actions.append(approve, reject);
    }
    const fields = r.fields.length ? ` (clear: ${r.fields.join(", ")})` : "";
    body.append(el("tr", { "data-id": r.id },
      el("td", { class: "id" }, r.id),
      el("td", {}, `${r.requester} (${r.department})`),
      el("td", {}, `${r.dataset} (${r.owner})`),
      el("td", {}, r.actions.join(", ") + fields),
      el("td", {}, el("strong", {}, r.purpose), el("span", { class: "detail" }, r.justification)),
      el("td", { class: "num" }, `${Math.round(r.duration / 60)} min`),
      el("td", { class: `state state-${r.state}` }, r.state,
        r.grant_id ? el("span", { class: "detail id" }, `${r.grant_id} until ${r.grant_expires_at}`) : ""),
      el("td", {}, r.decide_by),
      actions));
  }
  $("queue-empty").hidden = requests.length > 0;
  $("queue-count").textContent = String(requests.length);
  const counts = {};
  for (const r of all) counts[r.state] = (counts[r.state] || 0) + 1;
  const states = Object.keys(counts).sort();
  const max = Math.max(1, ...Object.values(counts));
  bars($("queue-chart"), states.map((s) => ({
    label: s, total: counts[s], parts: [{ value: counts[s], cls: "bin", title: `${s}: ${counts[s]}` }],
  })), max, "requests");
}

// ---- the catalog ----------------------------------------------------------------------------

function drawCatalog(view) {
  const body = $("catalog").querySelector("tbody");
  body.replaceChildren(...view.datasets.map((d) => {
    const cells = ["read", "list", "export", "write"].map((action) => {
      const a = d.actions[action];
      return el("td", { class: `access access-${a.access}`, "data-action": action }, a.access,
        a.access === "refused" ? el("span", { class: "detail" }, a.reason) : "");
    });
    const read = d.actions.read.fields || null;
    const fields = d.fields.map((f, i) => {
      const seen = read ? read[i].access + (read[i].strategy ? ` (${read[i].strategy})` : "") : "-";
      return `${f.name} ${f.level}: ${seen}`;
    });
    return el("tr", { "data-dataset": d.id },
      el("td", {}, el("strong", {}, d.id), el("span", { class: "detail" }, d.title)),
      el("td", { class: "num" }, `${d.level} ${d.level_name}`), el("td", {}, d.sharing),
      el("td", {}, d.owner), ...cells, el("td", {}, fields.join("; ")));
  }));
  $("catalog-note").textContent =
    `${view.principal} (${view.department}), clearance ${view.clearance}, purpose ${view.purpose || "none"}; ` +
    "the gateway's own decision and mask plan for each action.";
}

// ---- the reports --------------------------------------------------------------------------

function unavailable(note, err) {
  note.textContent = err.status === 403
    ? "Not available to this token (it needs the soc or security-officer role)."
    : `Cannot load: ${err.status} ${err.code}: ${err.message}`;
}

function drawUsage(report) {
  const calls = {};
  for (const row of report.rows) {
    calls[row.dataset] = calls[row.dataset] || { served: 0, refused: 0 };
    calls[row.dataset].served += row.served;
    calls[row.dataset].refused += row.refused;
  }
  const rows = report.datasets.map((d) => {
    const c = calls[d.dataset] || { served: 0, refused: 0 };
    return {
      label: d.dataset, total: `${d.calls} calls, ${pct(d.utilisation)} used`,
      parts: [
        { value: c.served, cls: "allow", title: `${d.dataset}: ${c.served} served` },
        { value: c.refused, cls: "deny", title: `${d.dataset}: ${c.refused} refused` },
      ],
    };
  });
  bars($("usage-chart"), rows, Math.max(1, ...rows.map((r) => r.parts[0].value + r.parts[1].value)),
    "calls (served, refused)");
  const body = $("utilisation").querySelector("tbody");
  body.replaceChildren(...report.datasets.map((d) => el("tr", { "data-dataset": d.dataset },
    el("td", {}, d.dataset), el("td", {}, d.owner), el("td", {}, d.sharing),
    el("td", { class: "num" }, String(d.calls)),
    el("td", { class: "num utilisation" }, pct(d.utilisation)),
    el("td", {}, `${d.consumers_served.join(", ") || "none"} / ${d.catalogued_consumers.join(", ")}`))));
  $("never-called").textContent = `Never called: ${report.never_called.join(", ") || "none"}`;
  $("usage-note").textContent = `${report.from.slice(0, 10)} to ${report.to.slice(0, 16)} (UTC), counted live by this gateway process.`;
}

function drawHandling(report) {
  const t = report.total;
  const rows = [
    ["Incidents", t.incidents],
    ["Handled within the 2-hour deadline", `${t.handled_within_deadline} (${pct(t.share_within_deadline)})`],
    ["Missed the deadline", t.missed_deadline],
    ["Escalations", t.escalations],
    ["Minutes to acknowledge (median / p90)", `${t.minutes_to_acknowledge.median ?? "-"} / ${t.minutes_to_acknowledge.p90 ?? "-"}`],
    ["Minutes to resolve (median / p90)", `${t.minutes_to_resolve.median ?? "-"} / ${t.minutes_to_resolve.p90 ?? "-"}`],
  ];
  $("handling").querySelector("tbody").replaceChildren(...rows.map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", { class: "num" }, String(v)))));
  bars($("handling-chart"), report.periods.map((p) => ({
    label: p.day, total: p.incidents,
    parts: [
      { value: p.handled_within_deadline, cls: "allow", title: `${p.day}: ${p.handled_within_deadline} within` },
      { value: p.missed_deadline, cls: "deny", title: `${p.day}: ${p.missed_deadline} missed` },
      { value: p.incidents - p.handled_within_deadline - p.missed_deadline, cls: "other", title: `${p.day}: open` },
    ],
  })), Math.max(1, ...report.periods.map((p) => p.incidents)), "incidents");
  $("handling-note").textContent = "";
}

function drawQuality(report) {
  const fields = report.fields;
  bars($("quality-chart"), fields.map((f) => ({
    label: `${f.dataset}.${f.field}`,
    total: `${pct(f.empty_or_missing_share)} / ${pct(f.invalid_share)}`,
    parts: [
      { value: f.empty_or_missing_share || 0, cls: "deny", title: `empty or missing ${pct(f.empty_or_missing_share)}` },
      { value: f.invalid_share || 0, cls: "other", title: `invalid ${pct(f.invalid_share)}` },
    ],
  })), 2, "share");
  $("quality").querySelector("tbody").replaceChildren(...fields.map((f) =>
    el("tr", { "data-field": `${f.dataset}.${f.field}` },
      el("td", {}, `${f.dataset}.${f.field}`), el("td", {}, f.strategy),
      el("td", { class: "num" }, String(f.seen)), el("td", { class: "num" }, String(f.empty)),
      el("td", { class: "num" }, String(f.missing)), el("td", { class: "num" }, String(f.invalid)),
      el("td", { class: "id samples" }, f.sample_record_ids ? f.sample_record_ids.join(", ") || "none" : "owner only"))));
  $("quality-note").textContent = report.enabled
    ? (fields.length ? "" : "No classified values masked yet.")
    : "Quality counting is off (reports.quality: false).";
}

async function section(path, draw, note) {
  try {
    draw(await api("GET", path));
  } catch (err) {
    if (err.status === 401) throw err;
    unavailable(note, err);
  }
}

async function refresh() {
  try {
    const state = $("queue-state").value;
    const all = await api("GET", "/access-requests");
    const shown = state ? all.access_requests.filter((r) => r.state === state) : all.access_requests;
    drawQueue(shown, all.access_requests);
    await section("/catalog/access", drawCatalog, $("catalog-note"));
    await section("/reports/usage", drawUsage, $("usage-note"));
    await section("/reports/incidents", drawHandling, $("handling-note"));
    await section("/reports/quality", drawQuality, $("quality-note"));
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      stop();
      askForToken(`The admin API refused the token (${err.status} ${err.reason || err.code}: ${err.message}).`);
      return;
    }
    showError(`${err.path}: ${err.status} ${err.code}: ${err.message}`);
  }
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function askForToken(message) {
  $("board").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  showError(message || "");
}

function start() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  showError("");
  refresh();
  stop();
  timer = setInterval(refresh, REFRESH_MS);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = "";
  stop();
  askForToken("");
});
$("queue-state").addEventListener("change", refresh);
$("note-cancel").addEventListener("click", () => $("note-dialog").close());
$("note-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const note = $("note").value.trim();
  if (!note || rejecting === null) return;
  $("note-dialog").close();
  decide(rejecting, "reject", note);
  rejecting = null;
});

if (token) start(); else askForToken("");
