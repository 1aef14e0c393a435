/**
 * The dashboard: one self-contained page (no build step, no external assets) that reads
 * `/v1/state` and `/v1/connections` and then follows `/v1/events` live.
 * @module
 */

const STYLE = `
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --mute:#57606a; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 12px 20px; display: flex; gap: 16px;
  align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
header .sub { color: #c9d1d9; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 14px;
  padding: 14px 20px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--mute);
  margin: 0 0 8px; }
.big { font-size: 26px; font-weight: 600; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.mute { color: var(--mute); } code { font-size: 12px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { color: var(--mute); font-weight: 500; }
.pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; color: #fff; }
.pill.ok { background: var(--ok); color: #fff; } .pill.bad { background: var(--bad); color: #fff; }
.pill.warn { background: var(--warn); color: #fff; }
ul.log { list-style: none; padding: 0; margin: 0; max-height: 260px; overflow: auto; font-size: 13px; }
ul.log li { padding: 3px 0; border-bottom: 1px solid #eaeef2; }
svg { width: 100%; height: 60px; background: #f6f8fa; border-radius: 4px; }
.wide { grid-column: 1 / -1; }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
// Works at "/" and when mounted under a prefix ("/mesh" or "/mesh/").
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
let state = null;
const samples = [];
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function ago(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}
function duration(s) {
  if (s <= 0) return "EXPIRED";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = Math.floor(s % 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
}
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function renderState() {
  if (!state) return;
  $("service").textContent = state.identity.service || "?";
  $("spiffe").textContent = state.identity.spiffeId || "(no certificate yet)";
  $("trust-domain").textContent = state.identity.trustDomain || "?";
  $("proxy-id").textContent = state.identity.proxyId || "(not registered)";
  const phase = $("phase");
  phase.textContent = state.phase;
  phase.className = "pill " + (state.phase === "ready" ? "ok" : state.phase === "starting" ? "warn" : "bad");
  const agent = $("agent");
  agent.textContent = state.agent.reachable ? "reachable" : "UNREACHABLE";
  agent.className = "pill " + (state.agent.reachable ? "ok" : "bad");
  $("agent-addr").textContent = state.agent.address;
  $("leaf-serial").textContent = state.leaf ? state.leaf.serial : "-";
  $("leaf-renewed").textContent = state.leaf ? ago(state.leaf.lastRenewalAt) : "-";
  $("roots").textContent = state.roots
    ? state.roots.roots.map((r) => (r.active ? "● " : "○ ") + r.name).join("  ")
    : "-";
  $("public").textContent = state.publicListener
    ? state.publicListener.address + " → " + state.publicListener.app
    : "none (client-only proxy)";
  $("conn-in").textContent = state.connections.inbound;
  $("conn-out").textContent = state.connections.outbound;
  const up = $("upstreams");
  up.replaceChildren();
  if (!state.upstreams.length) up.append(el("p", "No upstreams configured.", "mute"));
  for (const u of state.upstreams) {
    const box = el("div");
    const h = el("div");
    h.append(el("b", (u.listener || u.name).replace(/^upstream:/, "")), el("span", "  " + u.type + " on " + u.bind + " · " + u.connections + " open", "mute"));
    box.append(h);
    const t = el("table");
    const head = el("tr");
    for (const c of ["target", "endpoint", "health"]) head.append(el("th", c));
    t.append(head);
    if (!u.targets.length) {
      const r = el("tr"); r.append(el("td", u.type === "prepared_query" ? "resolved per connection" : "no targets yet", "mute")); t.append(r);
    }
    for (const target of u.targets) {
      if (!target.endpoints.length) {
        const r = el("tr");
        r.append(el("td", target.id), el("td", "no healthy endpoint", "bad"), el("td", target.aclWarning || "", "bad"));
        t.append(r);
      }
      for (const e of target.endpoints) {
        const r = el("tr");
        const health = el("td");
        const state = e.ejectedUntil ? "ejected" : e.lastError ? "failing" : "healthy";
        const p = el("span", state + (e.weight !== 1 ? " · w" + e.weight : "") + (e.connections ? " · " + e.connections + " open" : ""), "pill " + (state === "healthy" ? "ok" : state === "ejected" ? "bad" : "warn"));
        if (e.lastError) p.title = e.lastError;
        health.append(p);
        r.append(el("td", target.id), el("td", e.address), health);
        t.append(r);
      }
    }
    box.append(t);
    up.append(box);
  }
  const w = $("watches");
  w.replaceChildren();
  for (const x of state.watches) {
    const r = el("tr");
    const s = el("span", x.healthy ? "ok" : x.failures + " errors", "pill " + (x.healthy ? "ok" : "bad"));
    if (x.lastError) s.title = x.lastError;
    const c = el("td"); c.append(s);
    r.append(el("td", x.key), c, el("td", x.lastSuccessAgeSeconds === undefined ? "-" : x.lastSuccessAgeSeconds + " s ago"));
    w.append(r);
  }
  tickExpiry();
}
function tickExpiry() {
  const e = $("leaf-expiry");
  if (!state || !state.leaf) { e.textContent = "no certificate"; e.className = "big bad"; return; }
  const s = (Date.parse(state.leaf.notAfter) - Date.now()) / 1000;
  e.textContent = duration(s);
  e.className = "big " + (s <= 0 ? "bad" : s < 3600 ? "warn" : "ok");
}
async function loadState() {
  try {
    state = await (await fetch(base + "v1/state")).json();
    renderState();
    const ready = await (await fetch(base + "ready")).json();
    const banner = $("problems");
    banner.textContent = ready.problems.length ? "Not ready: " + ready.problems.join("; ") : "";
    banner.style.display = ready.problems.length ? "block" : "none";
  } catch (err) {
    $("phase").textContent = "admin unreachable";
    $("phase").className = "pill bad";
  }
}
let connTimer = null;
function loadConnections() {
  clearTimeout(connTimer);
  connTimer = setTimeout(async () => {
    const list = await (await fetch(base + "v1/connections?limit=50")).json();
    const t = $("connections");
    t.replaceChildren();
    if (!list.length) {
      const r = el("tr"); const td = el("td", "No open connections.", "mute"); td.colSpan = 5; r.append(td); t.append(r);
    }
    for (const c of list) {
      const r = el("tr");
      r.append(el("td", c.direction), el("td", c.peer), el("td", c.remote),
        el("td", bytes(c.bytesIn) + " / " + bytes(c.bytesOut)), el("td", Math.round(c.ageSeconds) + " s"));
      t.append(r);
    }
  }, 150);
}
function logEvent(list, text, cls) {
  const li = el("li", new Date().toLocaleTimeString() + "  " + text, cls);
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}
function sparkline() {
  const svg = $("sparkline");
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].at - samples[i - 1].at) / 1000 || 1;
    const d = (samples[i].bytes.in + samples[i].bytes.out) - (samples[i - 1].bytes.in + samples[i - 1].bytes.out);
    rates.push(Math.max(0, d / dt));
  }
  const max = Math.max(1, ...rates);
  const pts = rates.map((r, i) => (i * 300 / 59).toFixed(1) + "," + (58 - (r / max) * 56).toFixed(1));
  svg.querySelector("polyline").setAttribute("points", pts.join(" "));
  $("rate").textContent = rates.length ? bytes(rates[rates.length - 1]) + "/s" : "-";
}
function describe(e) {
  switch (e.type) {
    case "leaf": return (e.renewed ? "Leaf certificate renewed" : "Leaf certificate loaded") + " (serial " + e.serial + ")";
    case "roots": return e.rotated ? "CA root rotated; active root " + e.activeRootId : "CA roots loaded (" + e.rootIds.length + ")";
    case "config": return "Configuration changed: " + e.detail;
    case "endpoints": return "Upstream " + e.upstream + ": target " + e.target + " has " + e.endpoints.length + " healthy endpoint(s)";
    case "phase": return "Proxy is " + e.phase;
    case "watch_error": return "Watch " + e.watch + " failed: " + e.error;
    case "dial_failed": return "Could not reach " + e.endpoint + " (" + e.target + "): " + e.error;
    case "accepted": return (e.direction === "inbound" ? "Accepted " : "Connected to ") + e.peer;
    case "closed": return "Closed " + e.peer + " after " + Math.round(e.durationMs) + " ms";
    default: return e.type;
  }
}
function follow() {
  const es = new EventSource(base + "v1/events");
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "pill ok"; };
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "pill warn"; };
  es.addEventListener("tick", (m) => {
    const t = JSON.parse(m.data);
    samples.push(t);
    while (samples.length > 61) samples.shift();
    sparkline();
    $("conn-in").textContent = t.connections.inbound;
    $("conn-out").textContent = t.connections.outbound;
  });
  for (const type of ["leaf", "roots", "config", "endpoints", "phase", "watch_error", "dial_failed"]) {
    es.addEventListener(type, (m) => {
      const e = JSON.parse(m.data);
      logEvent($("events"), describe(e), type === "watch_error" || type === "dial_failed" ? "bad" : "");
      loadState();
    });
  }
  for (const type of ["accepted", "closed"]) {
    es.addEventListener(type, (m) => {
      logEvent($("events"), describe(JSON.parse(m.data)), "mute");
      loadConnections();
      loadState();
    });
  }
  es.addEventListener("revoked", (m) => {
    const e = JSON.parse(m.data);
    logEvent($("denials"), "revoked (open connection closed) — " + e.peer + ": " + e.reason, "bad");
    loadConnections();
    loadState();
  });
  es.addEventListener("refused", (m) => {
    const e = JSON.parse(m.data);
    const who = e.refusal.peer || e.refusal.remote || "unknown client";
    logEvent($("denials"), e.refusal.reason + " — " + who + ": " + e.refusal.detail, "bad");
  });
}
loadState();
loadConnections();
follow();
setInterval(tickExpiry, 1000);
`;

/** The dashboard page's HTML. */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshgate dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>meshgate · <span id="service" data-testid="service">…</span></h1>
  <span id="phase" class="pill warn" data-testid="phase">loading</span>
  <span class="sub">agent <span id="agent" class="pill warn">?</span> <code id="agent-addr"></code></span>
  <span class="sub">events <span id="live" class="pill warn">connecting</span></span>
</header>
<div id="problems" data-testid="problems" style="display:none;background:#cf222e;color:#fff;padding:8px 20px;font-weight:600"></div>
<main>
  <section>
    <h2>Identity</h2>
    <div>This proxy proves to the mesh that it is:</div>
    <code id="spiffe" data-testid="spiffe">…</code>
    <table>
      <tr><th>trust domain</th><td id="trust-domain"></td></tr>
      <tr><th>proxy ID</th><td id="proxy-id"></td></tr>
      <tr><th>public listener</th><td id="public"></td></tr>
    </table>
  </section>
  <section>
    <h2>Certificate expires in</h2>
    <div id="leaf-expiry" class="big" data-testid="leaf-expiry">…</div>
    <table>
      <tr><th>serial</th><td><code id="leaf-serial"></code></td></tr>
      <tr><th>last renewal</th><td id="leaf-renewed"></td></tr>
      <tr><th>CA roots (● active)</th><td id="roots"></td></tr>
    </table>
  </section>
  <section>
    <h2>Connections now</h2>
    <div><span class="big" id="conn-in" data-testid="conn-in">0</span> inbound ·
      <span class="big" id="conn-out" data-testid="conn-out">0</span> outbound</div>
    <div class="mute">throughput (last minute): <span id="rate">-</span></div>
    <svg id="sparkline" viewBox="0 0 300 60" preserveAspectRatio="none" data-testid="sparkline">
      <polyline fill="none" stroke="#0969da" stroke-width="2" points=""></polyline>
    </svg>
  </section>
  <section class="wide">
    <h2>Upstreams: where this service's outgoing connections go</h2>
    <div id="upstreams" data-testid="upstreams"></div>
  </section>
  <section class="wide">
    <h2>Open connections</h2>
    <table>
      <thead><tr><th>direction</th><th>peer</th><th>from</th><th>bytes in / out</th><th>age</th></tr></thead>
      <tbody id="connections" data-testid="connections"></tbody>
    </table>
  </section>
  <section>
    <h2>Refused connections (latest first)</h2>
    <ul class="log" id="denials" data-testid="denials"></ul>
  </section>
  <section>
    <h2>Events</h2>
    <ul class="log" id="events" data-testid="events"></ul>
  </section>
  <section>
    <h2>Watches on the Consul agent</h2>
    <table><tbody id="watches"></tbody></table>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>`;
}
