// Sluice dashboard: renders the pages from the data API (/api/...) and
// polls it every two seconds. Data goes into the page as text, never HTML.
"use strict";

const POLL_MS = 2000;
const NO_TEAM = "_none";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const teamName = (t) => (t === NO_TEAM ? "no team" : t);
const when = (t) => (t ? new Date(t).toLocaleTimeString() : "");
const pct = (f) => (f < 0 ? "–" : (Math.round(f * 10000) / 100) + "%");
const phaseLabel = {
  Idle: "● Idle", Progressing: "▶ Progressing", Paused: "⏸ Paused", Promoting: "⇪ Promoting",
  Succeeded: "✓ Succeeded", RolledBack: "✗ Rolled back",
};
const verdictLabel = { Pass: "✓ PASS", Fail: "✗ FAIL", Inconclusive: "… WAIT" };

// A dashboard served for many people asks for a bearer token (401); it
// stays in this tab's session storage only.
class NeedToken extends Error {}

async function get(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem("sluice-token");
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { headers });
  if (r.status === 401) throw new NeedToken("This dashboard needs your bearer token.");
  if (r.status === 403) throw new Error("You may not see this: you have no right to get rollouts there.");
  if (r.status === 404) throw new Error("Not found.");
  if (!r.ok) throw new Error("The dashboard could not read the API server (" + r.status + ").");
  return r.json();
}

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.map((p) => (p.href ? el("a", { href: p.href }, p.text) : el("span", {}, p.text))));
}

function phase(p) {
  return el("span", { class: "phase phase-" + p, "data-phase": p }, phaseLabel[p] || p);
}

function splitBar(s) {
  const bar = el("div", { class: "split", role: "img",
    "aria-label": "traffic: stable " + s.stable.weight + (s.canary ? ", canary " + s.canary.weight : "") });
  const sb = s.stable.basisPoints, cb = s.canary ? s.canary.basisPoints : 0;
  // Widths through the CSSOM: the Content-Security-Policy forbids inline style attributes.
  const part = (cls, bp, label) => { const d = el("div", { class: cls }, label); d.style.width = bp / 100 + "%"; return d; };
  if (sb > 0) bar.append(part("stable", sb, "stable " + s.stable.weight));
  if (cb > 0) bar.append(part("canary", cb, "canary " + s.canary.weight));
  return bar;
}

function versions(s) {
  const row = (track, v) => el("tr", { "data-track": track },
    el("td", { class: "track-" + track }, track),
    el("td", {}, v.version || "?"),
    el("td", { class: "muted" }, v.revision || "–"),
    el("td", { class: "num" }, v.weight),
    el("td", { class: "num" }, v.errorRate ? v.errorRate + (v.requests ? " of " + v.requests : "") : "not measured"));
  return el("table", { class: "versions" },
    el("tr", {}, el("th", {}, "track"), el("th", {}, "version"), el("th", {}, "revision"), el("th", {}, "traffic"),
      el("th", {}, "error rate")),
    row("stable", s.stable), s.canary ? row("canary", s.canary) : null);
}

function stepList(s) {
  if (!s.steps.length) return null;
  return el("div", { class: "steps", "aria-label": "steps" }, s.steps.map((st) =>
    el("span", { class: st.state, title: st.state }, "step " + (st.index + 1) + ": " + st.weight)));
}

function verdicts(vs) {
  if (!vs || !vs.length) return el("p", { class: "muted" }, "No analysis yet.");
  return el("table", { class: "verdicts" },
    el("tr", {}, ["metric", "value", "limit", "samples", "verdict", "step", "at"].map((h) => el("th", {}, h))),
    vs.map((v) => el("tr", {},
      el("td", {}, v.metric), el("td", { class: "num" }, v.value), el("td", { class: "num" }, v.threshold),
      el("td", { class: "num" }, v.samples),
      el("td", { class: "verdict verdict-" + v.verdict }, verdictLabel[v.verdict] || v.verdict),
      el("td", { class: "num" }, v.step + 1), el("td", {}, when(v.time)))));
}

function recent(ds) {
  if (!ds || !ds.length) return el("p", { class: "muted" }, "No rollouts recorded in the Events kept.");
  return el("table", { class: "recent" },
    el("tr", {}, ["revision", "outcome", "took", "why"].map((h) => el("th", {}, h))),
    ds.map((d) => el("tr", {},
      el("td", {}, d.revision || "?"),
      el("td", { class: "outcome-" + d.outcome.replace(" ", "-") }, d.outcome),
      el("td", { class: "num" }, d.duration || (d.started ? "since " + when(d.started) : "")),
      el("td", {}, d.why || ""))));
}

// callersTable: who calls a service (from their own load reports), each
// caller's requests and errors, and what the canary revision served them.
function callersTable(s) {
  if (!s.callers || !s.callers.length) return el("p", { class: "muted" }, "No load reported by callers yet.");
  return el("table", { class: "callers", "aria-label": "callers" },
    el("tr", {}, ["caller namespace", "team", "requests", "errors", "error rate", "now", "canary served", "canary error rate"].map((h) => el("th", {}, h))),
    s.callers.map((c) => el("tr", { "data-caller": c.namespace },
      el("td", {}, c.namespace + (c.legacy ? " (legacy)" : "")),
      el("td", {}, c.team ? teamName(c.team) : "–"),
      el("td", { class: "num" }, c.requests), el("td", { class: "num" }, c.errors),
      el("td", { class: "num" }, c.errorRate),
      el("td", { class: "num" }, c.requestRate ? c.requestRate + (c.recentErrorRate ? ", " + c.recentErrorRate + " errors" : "") : "–"),
      el("td", { class: "num" }, c.canary ? c.canary.requests : (s.canary ? "✗ none" : "–")),
      el("td", { class: "num" }, c.canary ? c.canary.errorRate : "–"))),
    s.callersSince ? el("caption", { class: "muted" }, "counted since " + when(s.callersSince)) : null);
}

// dependsOn: services of other teams the team calls, their state and how
// the team's own requests to them fare.
function dependsOn(ds) {
  if (!ds || !ds.length) return el("p", { class: "muted" }, "No calls to other teams' services reported (among those you may see).");
  return el("table", { class: "depends", "aria-label": "depends on" },
    el("tr", {}, ["team", "service", "state", "our requests", "our error rate", "our canary requests", "all callers' error rate"].map((h) => el("th", {}, h))),
    ds.map((d) => el("tr", { "data-dependency": d.namespace + "/" + d.name },
      el("td", {}, teamName(d.team)),
      el("td", {}, el("a", { href: "/rollout/" + encodeURIComponent(d.namespace) + "/" + encodeURIComponent(d.name) }, (d.service || d.name) + "." + d.namespace)),
      el("td", {}, phase(d.phase)),
      el("td", { class: "num" }, d.caller.requests), el("td", { class: "num" }, d.caller.errorRate),
      el("td", { class: "num" }, d.caller.canary ? d.caller.canary.requests + " (" + d.caller.canary.errorRate + " errors)" : "–"),
      el("td", { class: "num" }, d.allErrorRate + " of " + d.allRequests))));
}

// externalTable: gRPC services outside the cluster the team's clients call
// through Sluice's routes, measured by those clients' own load reports.
function externalTable(es) {
  if (!es || !es.length) return el("p", { class: "muted" }, "No external dependencies declared (a Service of type ExternalName annotated sluice.dev/external: grpc).");
  return el("table", { class: "external", "aria-label": "external dependencies" },
    el("tr", {}, ["dependency", "target", "address", "requests", "errors", "error rate", "now"].map((h) => el("th", {}, h))),
    es.map((e) => el("tr", { "data-external": e.namespace + "/" + e.name,
      title: e.callers.length ? "callers: " + e.callers.map((c) => c.namespace + " " + c.requests + "/" + c.errors).join(", ") : "no load reported yet" },
      el("td", {}, e.name), el("td", {}, el("code", {}, e.target)), el("td", {}, e.address),
      el("td", { class: "num" }, e.requests), el("td", { class: "num" }, e.errors), el("td", { class: "num" }, e.errorRate),
      el("td", { class: "num" }, e.requestRate ? e.requestRate + (e.recentErrorRate ? ", " + e.recentErrorRate + " errors" : "") : "–"))));
}

function serviceCard(s, withLink) {
  return el("section", { class: "card service", "data-service": s.name, "data-namespace": s.namespace },
    el("div", { class: "card-head" },
      el("h2", {}, s.service || s.name), el("span", { class: "ns" }, s.namespace + " · " + s.mode), phase(s.phase),
      withLink ? el("a", { class: "more", href: "/rollout/" + encodeURIComponent(s.namespace) + "/" + encodeURIComponent(s.name) }, "rollout details →") : null),
    el("p", { class: "msg" }, s.message || ""),
    splitBar(s), versions(s), stepList(s),
    el("h3", {}, "Verdicts"), verdicts(s.verdicts),
    s.evidence ? el("p", { class: "evidence", title: "evidence of the latest analysis" }, s.evidence) : null,
    s.proxies.nacked ? el("p", { class: "error" }, "✗ " + s.proxies.nacked + " proxies rejected the routes: " + s.proxies.lastNack) : null,
    el("p", { class: "muted" }, "proxies: " + s.proxies.acked + " acknowledged, " + s.proxies.nacked + " rejected, " + s.proxies.stale + " stale"),
    el("h3", {}, "Called by"), callersTable(s),
    el("h3", {}, "Recent rollouts"), recent(s.recent));
}

function problems(ps) {
  if (!ps || !ps.length) return null;
  return el("ul", { class: "problems", role: "status" }, ps.map((p) => el("li", { class: "error" }, "⚠ " + p)));
}

function eventsTable(es, cls) {
  return el("table", { class: "timeline " + (cls || "") },
    el("tr", {}, ["time", "type", "reason", "object", "message"].map((h) => el("th", {}, h))),
    es.map((e) => el("tr", { class: "type-" + e.type },
      el("td", {}, when(e.time)), el("td", {}, e.type), el("td", {}, e.reason),
      el("td", {}, e.kind + "/" + e.object), el("td", {}, e.message + (e.count > 1 ? " (×" + e.count + ")" : "")))));
}

// chart draws the error rate of each version and the analysis bound over
// time. Lines differ by dash pattern and marker shape, not only colour.
function chart(series) {
  if (!series.length) return el("p", { class: "muted" }, "No error-rate measurements for this canary yet.");
  const W = 1000, H = 260, L = 60, R = 20, T = 14, B = 34;
  // One point sits in the middle of a minute.
  let t0 = new Date(series[0].time).getTime(), t1 = new Date(series[series.length - 1].time).getTime();
  if (t1 - t0 < 1000) { t0 -= 30000; t1 += 30000; }
  let ymax = 0;
  for (const p of series) ymax = Math.max(ymax, p.canary, p.stable, p.bound);
  ymax = Math.max(ymax * 1.15, 0.01);
  const x = (t) => L + (new Date(t).getTime() - t0) / (t1 - t0) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const g = svg("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, role: "img",
    "aria-label": "error rate per version and the analysis bound" });
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    g.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e1e5ea" }),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, pct(v)));
  }
  g.append(svg("text", { x: L, y: H - 8 }, when(series[0].time)),
    svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, when(series[series.length - 1].time)));
  const line = (key, attrs, marker) => {
    const pts = series.filter((p) => p[key] >= 0);
    if (!pts.length) return;
    g.append(svg("polyline", Object.assign({ fill: "none", points: pts.map((p) => x(p.time) + "," + y(p[key])).join(" ") }, attrs)));
    if (marker) for (const p of pts) g.append(marker(x(p.time), y(p[key])));
  };
  // The bound is a step line across the whole chart, labelled.
  const bounds = series.filter((p) => p.bound >= 0);
  if (bounds.length) {
    const pts = [[L, bounds[0].bound]];
    for (const p of bounds) pts.push([x(p.time), pts[pts.length - 1][1]], [x(p.time), p.bound]);
    pts.push([W - R, bounds[bounds.length - 1].bound]);
    g.append(svg("polyline", { fill: "none", stroke: "#b3261e", "stroke-width": 2, "stroke-dasharray": "2 4", class: "bound",
      points: pts.map(([px, v]) => px + "," + y(v)).join(" ") }),
      svg("text", { x: W - R, y: y(bounds[bounds.length - 1].bound) - 4, "text-anchor": "end" },
        "limit " + pct(bounds[bounds.length - 1].bound)));
  }
  line("stable", { stroke: "#2a6fb0", "stroke-width": 2, "stroke-dasharray": "8 4", class: "stable" },
    (cx, cy) => svg("rect", { x: cx - 3, y: cy - 3, width: 6, height: 6, fill: "#2a6fb0" }));
  line("canary", { stroke: "#c06a00", "stroke-width": 2, class: "canary" },
    (cx, cy) => svg("circle", { cx, cy, r: 3.5, fill: "#c06a00" }));
  const legend = el("p", { class: "legend" },
    el("span", {}, "● ── canary"), el("span", {}, "■ ─ ─ stable"), el("span", {}, "··· analysis bound (max error rate)"));
  return el("div", {}, g, legend);
}

function stepsTable(steps) {
  if (!steps.length) return el("p", { class: "muted" }, "No weighted steps (cohort or experiment mode).");
  return el("table", { class: "steps-detail" },
    el("tr", {}, ["step", "weight", "state", "acknowledged by every proxy"].map((h) => el("th", {}, h))),
    steps.map((s) => el("tr", { class: "step-" + s.state },
      el("td", {}, s.index + 1), el("td", { class: "num" }, s.weight),
      el("td", {}, { done: "✓ done", current: "▶ current", pending: "○ pending" }[s.state]),
      el("td", {}, s.ackedAt ? when(s.ackedAt) : "–"))));
}

const pages = {
  async index() {
    crumbs();
    const teams = await get("/api/teams");
    if (!teams.length) return [el("h1", {}, "Teams"), el("p", { class: "muted" }, "You may see no namespace's rollouts.")];
    return [el("h1", {}, "Teams"), el("ul", { class: "teams" }, teams.map((t) =>
      el("li", {}, el("a", { href: "/team/" + encodeURIComponent(t.team) }, teamName(t.team)),
        el("span", { class: "muted" }, " — " + t.namespaces.join(", ")))))];
  },
  async team(team) {
    crumbs({ text: "team " + teamName(team) });
    const t = await get("/api/teams/" + encodeURIComponent(team));
    return [el("h1", {}, "Team " + teamName(t.team)),
      el("p", { class: "muted" }, "namespaces: " + t.namespaces.join(", ")),
      problems(t.problems),
      t.services.length ? el("div", { class: "grid" }, t.services.map((s) => serviceCard(s, true)))
        : el("p", { class: "muted" }, "No services delivered by Sluice here."),
      el("h3", {}, "Depends on (other teams' services)"), dependsOn(t.dependsOn),
      el("h3", {}, "External dependencies"), externalTable(t.external),
      el("h3", {}, "Policy violations and warnings"),
      t.warnings.length ? eventsTable(t.warnings, "warnings") : el("p", { class: "muted" }, "None in the Events kept.")];
  },
  async rollout(ns, name) {
    const r = await get("/api/rollouts/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name));
    crumbs({ text: "rollout " + ns + "/" + name });
    return [el("h1", {}, "Rollout " + (r.service || r.name) + " ", phase(r.phase)),
      el("p", { class: "msg", id: "rollout-message" }, r.message || ""),
      problems(r.problems),
      splitBar(r),
      el("div", { class: "two" },
        el("div", {}, el("h3", {}, "Versions"), versions(r), el("h3", {}, "Steps"), stepsTable(r.steps)),
        el("div", {}, el("h3", {}, "Verdicts"), verdicts(r.verdicts),
          r.evidence ? el("p", { class: "evidence" }, r.evidence) : null)),
      el("h3", {}, "Called by"), callersTable(r),
      el("h3", {}, "Error rate per version"), chart(r.series),
      el("h3", {}, "Timeline"), eventsTable(r.timeline),
      el("h3", {}, "Recent rollouts"), recent(r.recent)];
  },
};

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "team" && parts.length === 2) return () => pages.team(parts[1]);
  if (parts[0] === "rollout" && parts.length === 3) return () => pages.rollout(parts[1], parts[2]);
  return () => pages.index();
}

async function refresh(render) {
  const main = document.getElementById("main");
  try {
    // Sections with nothing to say are null: leave them out.
    main.replaceChildren(...(await render()).filter((c) => c !== null && c !== undefined && c !== false));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    main.dataset.state = "ok";
  } catch (e) {
    if (e instanceof NeedToken) {
      if (!document.getElementById("token")) main.replaceChildren(tokenForm(render));
      main.dataset.state = "token";
      return;
    }
    main.replaceChildren(el("p", { class: "error", role: "alert" }, "✗ " + e.message));
    main.dataset.state = "error";
  }
}

function tokenForm(render) {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", size: 60,
    "aria-label": "bearer token" });
  const form = el("form", {},
    el("p", {}, "This dashboard shows what your Kubernetes identity may see. Paste a bearer token, e.g. from ",
      el("code", {}, "kubectl create token <service-account>"), ":"),
    input, " ", el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("sluice-token", input.value.trim());
    refresh(render);
  });
  return form;
}

document.addEventListener("DOMContentLoaded", () => {
  const render = route();
  refresh(render);
  setInterval(() => refresh(render), POLL_MS);
});
