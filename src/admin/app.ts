/**
 * The admin app (hono): readiness, JSON state, open connections, Prometheus metrics, a live
 * event stream (SSE), a guarded drain, and the dashboard page. Mountable in any hono app.
 * @module
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { Context } from "hono";
import type { AdminSubject } from "./subject.ts";
import type { ProxyEvent } from "../events/lifecycle.ts";
import { dashboardPage } from "./dashboard.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./prometheus.ts";
import { createProxyMetrics, type ProxyMetrics } from "./proxy_metrics.ts";
import { decideByIntentions } from "../intentions/decide.ts";
import { sleep } from "../net/timers.ts";
import { formatSpiffeId, parseSpiffeId } from "../trust/spiffe.ts";
import { readinessProblems } from "./readiness.ts";
import { openConnections, proxyState } from "./state.ts";

/** Options of {@linkcode createAdminApp}. */
export interface AdminAppOptions {
  /** The proxy to show. */
  proxy: AdminSubject;
  /**
   * Bearer token for `POST /v1/drain` (`-admin-token`). Without one, drain is only allowed
   * while the admin listener is bound to loopback, addressed by a loopback host, and with the
   * header `X-Meshgate-Drain` (which no page of another origin can send). A foreign `Origin` is
   * refused either way.
   */
  token?: string;
  /** Whether the admin listener is bound to a loopback address. @default {true} */
  boundToLoopback?: boolean;
  /** What a drain does. @default {() => proxy.close(drainMs)} */
  onDrain?: () => void;
  /** Drain deadline used by the default `onDrain`. @default {10000} */
  drainMs?: number;
  /** Metrics to serve; created from the proxy when not given. */
  metrics?: ProxyMetrics;
  /** Interval of the `tick` SSE event (counters for the dashboard). @default {1000} */
  tickMs?: number;
  /** Ends open event streams when aborted (the server is shutting down). */
  signal?: AbortSignal;
  /** Not ready when the leaf expires within this (default: 10 % of its lifetime, ≤ 1 h). */
  leafExpiryMarginMs?: number;
}

/**
 * The admin app: a hono app seen through its fetch interface. Serve it with `Deno.serve`, or
 * mount it in your own hono app with `app.mount("/mesh", admin.fetch)`.
 */
export interface AdminApp {
  /** Answers one request; `env` is `Deno.serve`'s handler info (for the caller's address). */
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
  /** Answers a request without a server, as hono's `app.request()`. */
  request(
    input: string | Request | URL,
    init?: RequestInit,
    env?: unknown,
  ): Response | Promise<Response>;
}

function remoteHost(c: Context): string | undefined {
  // Deno.serve passes its ServeHandlerInfo as hono's env.
  const addr = (c.env as { remoteAddr?: { hostname?: string } } | undefined)?.remoteAddr;
  return addr?.hostname;
}

/**
 * Whether `host` is a loopback address.
 *
 * @example
 * ```ts
 * import { isLoopback } from "@meshgate/meshgate/admin";
 * console.log(isLoopback("127.0.0.1"), isLoopback("[::1]"), isLoopback("10.0.0.5")); // true true false
 * ```
 */
export function isLoopback(host: string | undefined): boolean {
  if (!host) return false;
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || h.startsWith("127.") || h === "::ffff:127.0.0.1";
}

/** Compares two strings in time independent of where they differ. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/**
 * The header `POST /v1/drain` needs when no admin token is set. A browser sends a custom header
 * to another origin only after a CORS preflight, which the admin app never allows.
 */
export const DRAIN_HEADER = "X-Meshgate-Drain";

/**
 * Why a request looks like it came from a page of another origin, if it does: a foreign
 * `Origin` (`null` included: sandboxed frames, `file:`), or `Sec-Fetch-Site: cross-site` or
 * `same-site` (another port or subdomain is another origin).
 */
function crossSiteProblem(c: Context): string | undefined {
  const origin = c.req.header("Origin");
  if (origin !== undefined) {
    let same = false;
    try {
      same = new URL(origin).origin === new URL(c.req.url).origin;
    } catch { /* "null" or garbage: foreign */ }
    if (!same) return `drain refused: Origin "${origin}" is not this admin page's origin`;
  }
  const site = c.req.header("Sec-Fetch-Site");
  if (site === "cross-site" || site === "same-site") {
    return `drain refused: the request comes from another site (Sec-Fetch-Site: ${site})`;
  }
  return undefined;
}

/** Lifecycle event types replayed to a new event-stream subscriber. */
const REPLAYED = new Set(["leaf", "roots", "config", "endpoints", "phase", "refused", "revoked"]);

/**
 * Creates the admin app of a proxy.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { createAdminApp } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * const app = new Hono();
 * const admin = createAdminApp({ proxy: api });
 * app.mount("/mesh", admin.fetch);
 * console.log((await app.request("/mesh/ready")).status); // 200
 * ```
 */
export function createAdminApp(options: AdminAppOptions): AdminApp {
  const { proxy } = options;
  const readiness = { leafExpiryMarginMs: options.leafExpiryMarginMs };
  const metrics = options.metrics ?? createProxyMetrics(proxy, readiness);
  const tickMs = options.tickMs ?? 1000;
  const app = new Hono();

  app.get("/", (c) => c.html(dashboardPage()));
  app.get("/healthz", (c) => c.text("ok"));
  app.get("/ready", (c) => {
    const problems = readinessProblems(proxy, Date.now(), readiness);
    return problems.length
      ? c.json({ ready: false, problems }, 503)
      : c.json({ ready: true, problems: [] });
  });
  app.get("/v1/state", (c) => c.json(proxyState(proxy)));
  app.get("/v1/connections", (c) => {
    const raw = c.req.query("limit");
    const limit = raw === undefined ? 100 : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
      return c.json({ error: "limit must be an integer from 1 to 10000" }, 400);
    }
    return c.json(openConnections(proxy, limit));
  });
  app.get("/metrics", (c) => {
    c.header("Content-Type", PROMETHEUS_CONTENT_TYPE);
    return c.body(metrics.registry.render());
  });
  app.get("/v1/events", (c) =>
    streamSSE(c, async (stream) => {
      const queue: ProxyEvent[] = proxy.events.recent((e) => REPLAYED.has(e.type)).slice(-50);
      let wake: (() => void) | undefined;
      const unsubscribe = proxy.events.subscribe((e) => {
        if (queue.length < 1000) queue.push(e); // a stalled client drops events, not memory
        wake?.();
      });
      let closed = false;
      const end = () => {
        closed = true;
        wake?.();
      };
      stream.onAbort(end);
      if (options.signal?.aborted) end();
      options.signal?.addEventListener("abort", end, { once: true });
      let lastTick = 0;
      try {
        while (!closed) {
          while (queue.length && !closed) {
            const e = queue.shift()!;
            await stream.writeSSE({ event: e.type, data: JSON.stringify(e) });
          }
          if (Date.now() - lastTick >= tickMs) {
            lastTick = Date.now();
            const s = proxyState(proxy);
            await stream.writeSSE({
              event: "tick",
              data: JSON.stringify({
                at: lastTick,
                phase: s.phase,
                connections: s.connections,
                bytes: metrics.totalBytes(),
                leafExpiresInSeconds: s.leaf?.expiresInSeconds ?? null,
              }),
            });
          }
          if (closed) break;
          // An event that arrived while the tick was written goes out now, not a tick later.
          if (queue.length) continue;
          // Sleep until the next event, the next tick, or the client leaving.
          const woken = new AbortController();
          wake = () => woken.abort();
          await sleep(Math.max(10, tickMs - (Date.now() - lastTick)), woken.signal);
          wake = undefined;
        }
      } finally {
        unsubscribe();
        options.signal?.removeEventListener("abort", end);
      }
    }));
  app.get("/v1/explain", async (c) => {
    const source = c.req.query("source");
    if (!source) return c.json({ error: "source is required: /v1/explain?source=<service>" }, 400);
    return c.json(await explain(proxy, source));
  });
  app.post("/v1/drain", (c) => {
    if (!isLoopback(remoteHost(c))) {
      return c.json({ error: "drain is only accepted from loopback" }, 403);
    }
    // A web page on this host must not be able to drain us (issue #14): browsers send `Origin`
    // on a cross-site POST, and never send a custom header cross-site without a CORS preflight,
    // which this app does not answer.
    const crossSite = crossSiteProblem(c);
    if (crossSite) return c.json({ error: crossSite }, 403);
    if (options.token) {
      const auth = c.req.header("Authorization") ?? "";
      const given = auth.startsWith("Bearer ") ? auth.slice(7) : "";
      if (!sameSecret(given, options.token)) {
        return c.json({ error: "missing or wrong admin token (Authorization: Bearer …)" }, 401);
      }
    } else if (options.boundToLoopback === false) {
      return c.json({
        error: "drain is disabled: the admin listener is not on loopback and has no -admin-token",
      }, 403);
    } else {
      // Without a token: the request must name us by a loopback host (a page whose own name was
      // rebound to 127.0.0.1 would otherwise be same-origin), and carry the custom header.
      const { host, hostname } = new URL(c.req.url);
      if (!isLoopback(hostname)) {
        return c.json({
          error: `drain without -admin-token must address a loopback host, not "${host}"`,
        }, 403);
      }
      if (c.req.header(DRAIN_HEADER) === undefined) {
        return c.json({ error: `drain needs the header "${DRAIN_HEADER}: 1"` }, 403);
      }
    }
    if (proxy.phase === "draining" || proxy.phase === "stopped") {
      return c.json({ draining: true, phase: proxy.phase }, 202);
    }
    const drainMs = options.drainMs ?? 10_000;
    (options.onDrain ?? (() => void proxy.close(drainMs)))();
    return c.json({ draining: true, drainMs }, 202);
  });
  return app;
}

/** The answer of `GET /v1/explain?source=<service>`. */
export interface Explanation {
  /** The calling service asked about. */
  source: string;
  /** Our service (the authorize target). */
  destination?: string;
  /** The SPIFFE ID a caller of that service presents. */
  sourceSpiffeId?: string;
  /** What the agent's authorize answers now, with Consul's reason (or why it could not). */
  authorize?: { authorized: boolean; reason: string } | { error: string };
  /** The intention that matches, from the intentions themselves (fresher than authorize). */
  intention?: { authorized: boolean; reason: string } | null;
  /**
   * What a new connection from `source` would meet, as the public listener decides: refused
   * when authorize cannot answer (fail closed) or denies, or when the matching intention denies.
   */
  verdict?: { allowed: boolean; why: string };
  /** Where a connection of ours to each upstream would go now: eligible endpoints per target. */
  upstreams: {
    name: string;
    targets: { id: string; endpoints: string[]; ejected: string[] }[];
  }[];
}

/** Explains what would happen to a connection from `source` now, and where ours would go. */
export async function explain(proxy: AdminSubject, source: string): Promise<Explanation> {
  const destination = proxy.service;
  const our = proxy.material.leaf?.info.uris[0];
  let sourceSpiffeId: string | undefined;
  let authorize: Explanation["authorize"];
  let intention: Explanation["intention"];
  if (our && destination) {
    const id = parseSpiffeId(our);
    if (id.kind === "service") {
      sourceSpiffeId = formatSpiffeId({ ...id, service: source });
      try {
        const r = await proxy.agent.authorize(
          { Target: destination, ClientCertURI: sourceSpiffeId },
          { timeoutMs: 5000 },
        );
        authorize = { authorized: r.Authorized, reason: r.Reason };
      } catch (err) {
        authorize = { error: String(err) };
      }
      try {
        const list = (await proxy.agent.intentionMatch("destination", destination)).value;
        const d = decideByIntentions(list, destination, { ...id, service: source });
        intention = d ? { authorized: d.authorized, reason: d.reason } : null;
      } catch (err) {
        intention = undefined;
        authorize ??= { error: String(err) };
      }
    }
  }
  const now = Date.now();
  const upstreams = proxy.upstreams.map((u) => {
    const r = u.resolver;
    const ids = r ? [...new Set(r.routes.flatMap((route) => route.targets))] : [];
    return {
      name: u.upstream.name,
      targets: ids.flatMap((tid) => {
        const t = r!.targets.get(tid);
        if (!t) return [];
        const isEjected = (eid: string) => (u.endpointHealth.get(eid)?.ejectedUntil ?? 0) > now;
        return [{
          id: tid,
          endpoints: t.endpoints.filter((e) => !isEjected(e.id)).map((e) =>
            `${e.address}:${e.port}`
          ),
          ejected: t.endpoints.filter((e) => isEjected(e.id)).map((e) => `${e.address}:${e.port}`),
        }];
      }),
    };
  });
  let verdict: Explanation["verdict"];
  if (authorize && "error" in authorize) {
    verdict = { allowed: false, why: `authorize failed (fail closed): ${authorize.error}` };
  } else if (authorize && !authorize.authorized) {
    verdict = { allowed: false, why: authorize.reason };
  } else if (authorize && intention && !intention.authorized) {
    verdict = { allowed: false, why: `${intention.reason} (the agent's allow lags behind)` };
  } else if (authorize) verdict = { allowed: true, why: authorize.reason };
  return { source, destination, sourceSpiffeId, authorize, intention, verdict, upstreams };
}
