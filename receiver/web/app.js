// The receiver's web view: plain JavaScript over the JSON API, no build step.
// Views are chosen by the URL's hash: #/ (executions), #/executions/ID, #/stats, #/config.
// Text from the API is only ever set as text (never as HTML).
"use strict";

const POLL_MS = 2000;
const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "rejected", "rolled_back", "rollback_failed"]);
const STATUSES = ["queued", "running", "waiting_approval", "rolling_back", ...TERMINAL];
let timer = null;   // the current view's refresh
let me = null;      // GET /api/v1/whoami: the token's name and role, once known
let view = 0;       // bumped on every navigation, so a late answer for an old view is dropped

// ---- helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function badge(status) {
  return h("span", { class: `badge s-${status}` }, status.replace("_", " "));
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return Math.round(s % 60) ? `${Math.floor(s / 60)} m ${Math.round(s % 60)} s` : `${Math.floor(s / 60)} m`;
  return `${(s / 3600).toFixed(1)} h`;
}

function elapsed(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return Math.max(0, (end - new Date(startIso)) / 1000);
}

function pct(x) {
  return x === null || x === undefined ? "–" : `${Math.round(x * 1000) / 10}%`;
}

function setLive(text) {
  document.getElementById("live").textContent = text;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem("receiver-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { ...options, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (resp.status === 401) {
    askToken(token ? "That token was not accepted; enter another." : "This receiver needs an API token.");
    throw new ApiError(401, body);
  }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

function askToken(why) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-why").textContent = why;
  if (!dialog.open) dialog.showModal();
}

// Call fn now and again every ms (or after the delay fn returns) until the view changes.
function refresh(fn, ms = POLL_MS) {
  const mine = view;
  const tick = async () => {
    if (mine !== view) return;
    let next = ms;
    try {
      next = (await fn(mine)) || ms;
      setLive(`updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (mine === view) setLive(e.status === 401 ? "waiting for a token" : `update failed: ${e.message}`);
    }
    if (mine === view) timer = setTimeout(tick, next);
  };
  tick();
}

function replace(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

// ---- executions list -------------------------------------------------------------------

function listQuery() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  params.set("limit", "100");
  return params;
}

function showList(main) {
  const params = listQuery();
  const field = (name, label, input) => h("label", {}, label, input);
  const text = (name, label) => field(name, label, h("input", { name, value: params.get(name) || "", size: 14 }));
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter executions",
    onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      location.hash = `#/?${q}`;
    } },
  field("status", "Status", status), text("alertname", "Alert"), text("rule", "Rule"), text("playbook", "Playbook"),
  field("since", "Since", h("input", { name: "since", value: params.get("since") || "", placeholder: "1h, 2026-11-24T10:00Z", size: 16 })),
  h("button", { type: "submit" }, "Filter"));
  const waiting = h("div", { id: "waiting" });
  const table = h("table", { id: "executions" },
    h("caption", {}, "Newest first; updates every 2 seconds."),
    h("thead", {}, h("tr", {}, ["Status", "Alert", "Rule", "Playbook", "Started", "Duration", "Recovered"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody"));
  replace(main, h("h1", {}, "Executions"), waiting, form, table);
  refresh(async (mine) => {
    const [page, wait] = await Promise.all([
      api(`/api/v1/executions?${params}`),
      api("/api/v1/executions?status=waiting_approval&limit=20"),
    ]);
    if (mine !== view) return;
    replace(waiting, wait.items.length ? h("div", { class: "notice", role: "status" },
      `${wait.items.length} waiting for approval: `,
      wait.items.map((e, i) => [i ? ", " : "", h("a", { href: `#/executions/${e.id}` }, `${e.alertname} (${e.playbook})`)])) : null);
    replace(table.tBodies[0], page.items.length ? page.items.map((e) => h("tr", { "data-id": e.id, "data-status": e.status },
      h("td", {}, badge(e.status)),
      h("td", {}, h("a", { href: `#/executions/${e.id}` }, e.alertname)),
      h("td", {}, e.rule), h("td", {}, e.playbook),
      h("td", {}, e.started_at ? when(e.started_at) : h("span", { class: "muted" }, `queued ${when(e.created_at)}`)),
      h("td", { class: "num" }, seconds(e.duration_s ?? elapsed(e.started_at, e.finished_at))),
      h("td", {}, e.recovered ? `yes, after ${seconds(e.recovered_after_s)}` : (e.resolved_at ? "resolved before" : "–")),
    )) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No executions match.")));
  });
}

// ---- one execution ---------------------------------------------------------------------

function layers(plan) {
  // Depth of each step: the longest chain of needs before it; steps of one depth form a column.
  const depth = {};
  const byId = Object.fromEntries(plan.map((s) => [s.id, s]));
  const visit = (id) => {
    if (depth[id] !== undefined) return depth[id];
    depth[id] = 0;
    depth[id] = Math.max(-1, ...byId[id].needs.map(visit)) + 1;
    return depth[id];
  };
  plan.forEach((s) => visit(s.id));
  const cols = [];
  for (const s of plan) (cols[depth[s.id]] ||= []).push(s);
  return cols;
}

function drawEdges(dag, plan) {
  const box = dag.getBoundingClientRect();
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("width", dag.scrollWidth);
  svg.setAttribute("height", dag.scrollHeight);
  for (const s of plan) {
    const to = dag.querySelector(`[data-step="${CSS.escape(s.id)}"]`);
    for (const n of s.needs) {
      const from = dag.querySelector(`[data-step="${CSS.escape(n)}"]`);
      if (!from || !to) continue;
      const a = from.getBoundingClientRect();
      const b = to.getBoundingClientRect();
      const x1 = a.right - box.left + dag.scrollLeft, y1 = a.top + a.height / 2 - box.top;
      const x2 = b.left - box.left + dag.scrollLeft, y2 = b.top + b.height / 2 - box.top;
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      const mid = (x1 + x2) / 2;
      path.setAttribute("d", `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", "#8c959f");
      path.setAttribute("stroke-width", "2");
      svg.append(path);
    }
  }
  dag.prepend(svg);
}

function stepDetail(step) {
  if (!step) return h("p", { class: "muted" }, "Not started.");
  return [
    h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, badge(step.status)),
      h("dt", {}, "Action"), h("dd", {}, step.action),
      h("dt", {}, "Attempts"), h("dd", {}, step.attempts),
      h("dt", {}, "Exit code"), h("dd", {}, step.exit_code ?? "–"),
      h("dt", {}, "Started"), h("dd", {}, when(step.started_at)),
      h("dt", {}, "Duration"), h("dd", {}, seconds(step.duration_s ?? elapsed(step.started_at, step.finished_at))),
      step.error ? [h("dt", {}, "Error"), h("dd", { class: "error" }, step.error)] : null,
      step.rollback ? [h("dt", {}, "Rollback"), h("dd", {}, badge(step.rollback.status), " ", step.rollback.error || "")] : null),
    step.stdout ? [h("h3", {}, "stdout"), h("pre", {}, step.stdout)] : null,
    step.stderr ? [h("h3", {}, "stderr"), h("pre", {}, step.stderr)] : null,
  ];
}

async function act(id, what, body) {
  try {
    await api(`/api/v1/executions/${encodeURIComponent(id)}/${what}`, { method: "POST", body });
    setLive(`${what}: done`);
  } catch (e) {
    alert(`${what} failed: ${e.message}`);
  }
}

function actions(e) {
  const out = [];
  if (me && me.role === "viewer") {
    return [h("span", { class: "muted" }, `Read-only: ${me.name} has a viewer's token; an operator's can act here.`)];
  }
  if (e.status === "waiting_approval") {
    const comment = h("input", { id: "comment", "aria-label": "Comment", placeholder: "comment (optional)", size: 30 });
    const decide = (verdict) => async () => {
      await act(e.id, verdict, { comment: comment.value });
      refreshNow();
    };
    out.push(comment,
      h("button", { class: "approve", onclick: decide("approve") }, "Approve"),
      h("button", { class: "reject", onclick: decide("reject") }, "Reject"));
  }
  if (["queued", "running", "waiting_approval"].includes(e.status)) {
    out.push(h("button", { class: "cancel", onclick: async () => {
      if (confirm("Cancel this execution? Running steps are stopped.")) { await act(e.id, "cancel"); refreshNow(); }
    } }, "Cancel"));
  }
  if (TERMINAL.has(e.status)) {
    out.push(h("button", { onclick: async () => {
      const r = await api(`/api/v1/executions/${encodeURIComponent(e.id)}/retry`, { method: "POST" }).catch((err) => alert(`retry failed: ${err.message}`));
      if (r) location.hash = `#/executions/${r.execution_id}`;
    } }, "Retry"));
  }
  return out;
}

let refreshNow = () => {};

function showExecution(main, id) {
  let selected = null;
  let last = null;
  const head = h("div");
  const bar = h("div", { class: "actions", role: "group", "aria-label": "Actions" });
  const dag = h("div", { class: "dag", role: "list", "aria-label": "Steps" });
  const detail = h("section");
  const about = h("div", { class: "two" });
  const timeline = h("ol", { class: "timeline" });
  replace(main, head, bar, h("h2", {}, "Steps"), dag, detail, about, h("h2", {}, "Timeline"), timeline);
  let shownStatus = null;
  const render = (e) => {
    last = e;
    const steps = Object.fromEntries(e.steps.map((s) => [s.id, s]));
    const plan = e.plan || e.steps.map((s, i) => ({ id: s.id, action: s.action, needs: i ? [e.steps[i - 1].id] : [] }));
    replace(head,
      h("h1", {}, e.alertname, " ", badge(e.status)),
      h("dl", { class: "facts" },
        h("dt", {}, "Rule"), h("dd", {}, e.rule),
        h("dt", {}, "Playbook"), h("dd", {}, e.playbook, e.playbook_version ? h("span", { class: "muted" }, ` @ ${e.playbook_version}`) : null),
        h("dt", {}, "Created"), h("dd", {}, when(e.created_at)),
        h("dt", {}, "Duration"), h("dd", {}, seconds(e.duration_s ?? elapsed(e.started_at, e.finished_at))),
        h("dt", {}, "Recovered"), h("dd", {}, e.recovered ? `yes, after ${seconds(e.recovered_after_s)}` : "no"),
        e.approval ? [h("dt", {}, "Approval"), h("dd", {}, e.approval.message || e.approval.step,
          e.approval.decision ? ` (${e.approval.decision.verdict} by ${e.approval.decision.by})` : ` (until ${when(e.approval.deadline)})`)] : null,
        e.retry_of ? [h("dt", {}, "Retry of"), h("dd", {}, h("a", { href: `#/executions/${e.retry_of}` }, e.retry_of))] : null,
        e.error ? [h("dt", {}, "Error"), h("dd", { class: "error" }, e.error)] : null));
    if (shownStatus !== e.status) {  // keep a half-typed comment while nothing changed
      replace(bar, actions(e));
      shownStatus = e.status;
    }
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.step : undefined;
    replace(dag, layers(plan).map((col) => h("div", { class: "col" }, col.map((s) => {
      const rec = steps[s.id];
      const status = rec ? rec.status : "pending";
      const time = rec && rec.started_at ? seconds(rec.duration_s ?? elapsed(rec.started_at, rec.finished_at)) : "";
      return h("button", { class: `node s-${status}`, "data-step": s.id, "data-status": status, role: "listitem",
        "aria-pressed": selected === s.id ? "true" : "false",
        onclick: () => { selected = selected === s.id ? null : s.id; render(last); } },
      h("div", { class: "id" }, s.id),
      h("div", { class: "meta" }, `${s.action} · `, h("span", { class: "step-status" }, status.replace("_", " ")), time ? ` · ${time}` : "",
        rec && rec.attempts > 1 ? ` · ${rec.attempts} attempts` : "",
        rec && rec.exit_code !== null && rec.exit_code !== undefined ? ` · exit ${rec.exit_code}` : ""));
    }))));
    if (focused !== undefined) {  // keep the keyboard where it was across refreshes
      const again = dag.querySelector(`[data-step="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    requestAnimationFrame(() => drawEdges(dag, plan));
    replace(detail, selected ? [h("h2", {}, `Step ${selected}`), stepDetail(steps[selected])] : h("p", { class: "muted" }, "Select a step to see its output."));
    const kv = (title, obj) => h("section", {}, h("h2", {}, title), h("table", {}, h("tbody", {},
      Object.entries(obj || {}).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))));
    replace(about, kv("Labels", e.alert.labels), kv("Annotations", e.alert.annotations));
    replace(timeline, e.timeline.map((t) => h("li", {}, `${when(t.at)} — ${t.event}`, t.step ? ` (${t.step})` : "", t.detail ? `: ${t.detail}` : "")));
  };
  const load = async (mine) => {
    if (!me) me = await api("/api/v1/whoami");
    const e = await api(`/api/v1/executions/${encodeURIComponent(id)}`);
    if (mine === view) render(e);
    return TERMINAL.has(e.status) ? 10000 : 1000;  // an ended one only changes when its alert resolves
  };
  refreshNow = () => load(view).catch((err) => setLive(`update failed: ${err.message}`));
  refresh(load, 1000);
}

// ---- stats -----------------------------------------------------------------------------

function showStats(main) {
  const since = new URLSearchParams(location.hash.split("?")[1] || "").get("since") || "24h";
  const pick = h("label", {}, "Since ", h("select", { onchange: (ev) => { location.hash = `#/stats?since=${ev.target.value}`; } },
    ["1h", "6h", "24h", "7d"].map((s) => h("option", { value: s, selected: s === since }, s))));
  const body = h("div");
  replace(main, h("h1", {}, "Stats"), pick, body);
  const rows = (items, key) => h("table", {},
    h("thead", {}, h("tr", {}, [key, "Executions", "Success", "Recovered", "Time to recover p50 / p90", "Suppressed", "Top failure"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((r) => h("tr", {},
      h("th", { scope: "row" }, r[key.toLowerCase()]),
      h("td", { class: "num" }, r.executions),
      h("td", { class: "num" }, pct(r.success_rate)),
      h("td", { class: "num" }, pct(r.recovery_rate)),
      h("td", { class: "num" }, `${seconds(r.time_to_recover_s.p50)} / ${seconds(r.time_to_recover_s.p90)}`),
      h("td", {}, Object.entries(r.suppressed).map(([k, v]) => `${k} ${v}`).join(", ") || "–"),
      h("td", {}, r.top_failures.length ? `${r.top_failures[0].step ? r.top_failures[0].step + ": " : ""}${r.top_failures[0].error} (${r.top_failures[0].count})` : "–")))));
  refresh(async (mine) => {
    const s = await api(`/api/v1/stats?since=${encodeURIComponent(since)}`);
    if (mine !== view) return;
    const t = s.totals;
    const card = (k, v) => h("div", { class: "card" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k));
    replace(body,
      h("div", { class: "cards" }, card("executions", t.executions), card("success rate", pct(t.success_rate)),
        card("recovery rate", pct(t.recovery_rate)), card("time to recover p50", seconds(t.time_to_recover_s.p50)),
        card("suppressed", Object.values(t.suppressed).reduce((a, b) => a + b, 0)), card("unrouted", s.unrouted)),
      s.truncated ? h("p", { class: "notice" }, `Only the newest ${s.executions_scanned} executions were read.`) : null,
      h("h2", {}, "By rule"), rows(s.rules, "Rule"),
      h("h2", {}, "By playbook"), rows(s.playbooks, "Playbook"));
  }, 30000);
}

// ---- rules and playbooks ---------------------------------------------------------------

function showConfig(main) {
  const body = h("div");
  replace(main, h("h1", {}, "Rules & playbooks"), body);
  refresh(async (mine) => {
    const [status, rules, playbooks] = await Promise.all([api("/api/v1/status"), api("/api/v1/rules"), api("/api/v1/playbooks")]);
    if (mine !== view) return;
    const c = status.config;
    const r = c.last_reload;
    replace(body,
      h("dl", { class: "facts" },
        h("dt", {}, "Receiver"), h("dd", {}, `${status.version} on ${status.store}`),
        h("dt", {}, "Config version"), h("dd", {}, c.version, " loaded ", when(c.loaded_at)),
        h("dt", {}, "Last reload"), h("dd", { class: r.ok ? "" : "error" }, `${r.trigger} at ${when(r.at)}: ${r.ok ? "ok" : "refused"}`,
          r.errors.length ? h("ul", {}, r.errors.map((x) => h("li", {}, x))) : null)),
      h("h2", {}, "Rules, in the order they are tried"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Rule", "Matchers", "Playbook", "Cooldown", "Breaker", "Source"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rules.rules.map((x) => h("tr", {}, h("th", { scope: "row" }, x.name), h("td", {}, h("code", {}, x.matchers.join(", "))),
          h("td", {}, x.playbook), h("td", {}, x.cooldown_s ? seconds(x.cooldown_s) : "none"), h("td", {}, x.circuit_open_until ? `open until ${when(x.circuit_open_until)}` : "closed"),
          h("td", { class: "muted" }, x.source))))),
      h("h2", {}, "Playbooks"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Playbook", "Version", "Steps", "Timeout", "Source"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, playbooks.playbooks.map((p) => h("tr", {}, h("th", { scope: "row" }, p.name, h("div", { class: "muted desc" }, p.description)),
          h("td", {}, h("code", {}, p.version)),
          h("td", {}, p.steps.map((s) => `${s.id} (${s.action}${s.needs.length ? " ← " + s.needs.join(", ") : ""})`).join(" → ")),
          h("td", {}, seconds(p.timeout_s)), h("td", { class: "muted" }, p.source))))));
  }, 10000);
}

// ---- routing ---------------------------------------------------------------------------

function route() {
  view += 1;
  clearTimeout(timer);
  setLive("");
  const main = document.getElementById("main");
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  let nav = "list";
  const m = path.match(/^\/executions\/([^/]+)$/);
  if (m) showExecution(main, decodeURIComponent(m[1]));
  else if (path === "/stats") { nav = "stats"; showStats(main); }
  else if (path === "/config") { nav = "config"; showConfig(main); }
  else showList(main);
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", () => {
    sessionStorage.setItem("receiver-token", document.getElementById("token-input").value.trim());
    me = null;
    route();
  });
  window.addEventListener("hashchange", route);
  route();
});
