/**
 * The Consul test double as a hono app: `consul agent -dev` for everything a Connect proxy
 * touches, speaking the real HTTP contract (plain-text errors, strict bodies, blocking queries,
 * Consul's headers), plus `/v1/devagent/*` hooks for fault injection and CA rotation.
 *
 * This module only composes: the state (CA, catalog, intentions, config entries, leaves, store),
 * one route module per API area under `./routes/`, the fault middleware (`./faults.ts`), and the
 * answers every path shares (the ACL policy header, `404` for unknown paths, plain-text errors).
 * @module
 */
import { Hono } from "hono";
import { ConnectCA, type RotationMaterial } from "./ca.ts";
import { Catalog } from "./catalog.ts";
import { ConfigEntries } from "./chain.ts";
import { Faults, injectFaults } from "./faults.ts";
import { Blocking, text } from "./http.ts";
import { Intentions } from "./intentions.ts";
import { Leaves } from "./leaves.ts";
import { Store } from "./store.ts";
import { BadRequest } from "./strict.ts";
import { agentRoutes } from "./routes/agent.ts";
import { authorizeRoutes } from "./routes/authorize.ts";
import { configEntryRoutes } from "./routes/config_entries.ts";
import { connectCaRoutes, ROOTS_TOPIC } from "./routes/connect_ca.ts";
import type { RouteContext } from "./routes/context.ts";
import { devagentRoutes } from "./routes/devagent.ts";
import { healthRoutes } from "./routes/health.ts";
import { intentionRoutes } from "./routes/intentions.ts";
import { preparedQueryRoutes } from "./routes/prepared_queries.ts";

/** Options of the test double. */
export interface DevAgentOptions {
  /** Datacenter. @default {"dc1"} */
  datacenter?: string;
  /** Node name. @default {"devagent"} */
  nodeName?: string;
  /** Cluster ID (trust domain `<id>.consul`). Default: random. */
  clusterId?: string;
  /** Leaf lifetime in ms (tests go down to seconds). @default {72 hours} */
  leafTtlMs?: number;
  /** Authorize answer when no intention matches (dev mode allows). @default {true} */
  defaultAllow?: boolean;
  /** Upper bound of the delay before leaves are re-issued after a rotation. @default {30000} */
  rotationJitterMs?: number;
  /** Default `wait` of blocking queries. @default {300000} */
  defaultWaitMs?: number;
  /** Interval of every TCP check (Consul's default is the check's own, 10 s). */
  tcpCheckIntervalMs?: number;
  /** Probes `host:port` for TCP checks. Default: no probe (TCP checks stay critical). */
  probeTcp?: (hostPort: string) => Promise<boolean>;
  /** Add Consul's random wait/16 jitter to blocking waits. @default {true} */
  blockingJitter?: boolean;
}

/** The web-standard face of the double's hono app. */
export interface DevAgentApp {
  /** Answers one request (pass it to `Deno.serve`). */
  fetch(request: Request): Response | Promise<Response>;
  /** Answers a request without a server, as hono's `app.request()`. */
  request(input: string | Request | URL, init?: RequestInit): Response | Promise<Response>;
}

/** The double's state, for tests to drive directly. */
export interface DevAgent {
  /** The hono app; serve it or call `app.request()`. */
  app: DevAgentApp;
  /** The Connect CA. */
  ca: ConnectCA;
  /** Services and checks. */
  catalog: Catalog;
  /** Intentions and authorize. */
  intentions: Intentions;
  /** Config entries and chains. */
  config: ConfigEntries;
  /** Leaf certificates. */
  leaves: Leaves;
  /** Fault injection rules. */
  faults: Faults;
  /** Index bookkeeping. */
  store: Store;
  /** Rotates the CA root now (as a CA configuration change would). */
  rotateCA(material?: RotationMaterial): Promise<void>;
  /** Drops the inactive roots now (Consul does it 2 × the leaf TTL after a rotation). */
  pruneRoots(): void;
  /** Stops timers and releases blocked requests. */
  close(): Promise<void>;
}

/**
 * The path as the request spelled it, still percent-encoded: routes match it as the double
 * always has (hono would decode it first), and path parameters are decoded once, by hono.
 */
function rawPath(request: Request): string {
  return new URL(request.url).pathname;
}

/**
 * Creates the test double. Serve `agent.app.fetch` (see `startDevAgent`) or call
 * `agent.app.request()` directly.
 *
 * @example
 * ```ts
 * import { createDevAgent } from "@meshgate/meshgate/devagent";
 * const agent = await createDevAgent({ leafTtlMs: 60_000 });
 * const res = await agent.app.request("/v1/agent/connect/ca/roots");
 * console.log((await res.json()).TrustDomain);
 * await agent.close();
 * ```
 */
export async function createDevAgent(options: DevAgentOptions = {}): Promise<DevAgent> {
  const datacenter = options.datacenter ?? "dc1";
  const store = new Store();
  const ca = await ConnectCA.create({
    clusterId: options.clusterId,
    datacenter,
    leafTtlMs: options.leafTtlMs,
  });
  const rootIndex = store.bump(ROOTS_TOPIC);
  for (const r of ca.roots) r.CreateIndex = r.ModifyIndex = rootIndex;
  const catalog = new Catalog(store, {
    datacenter,
    nodeName: options.nodeName,
    tcpCheckIntervalMs: options.tcpCheckIntervalMs,
    probeTcp: options.probeTcp,
  });
  const intentions: Intentions = new Intentions(
    store,
    options.defaultAllow ?? true,
    (service: string): string => config.protocol(service),
  );
  const config: ConfigEntries = new ConfigEntries(
    store,
    datacenter,
    () => ca.trustDomain,
    intentions,
    (service) => catalog.virtualIp(service),
  );
  const leaves = new Leaves(store, ca, { rotationJitterMs: options.rotationJitterMs });
  const faults = new Faults();

  function pruneRoots() {
    ca.pruneInactive();
    const index = store.bump(ROOTS_TOPIC);
    for (const r of ca.roots) r.ModifyIndex = index;
  }

  async function rotateCA(material?: RotationMaterial) {
    const root = await ca.rotate(material);
    const index = store.bump(ROOTS_TOPIC);
    root.CreateIndex = index;
    for (const r of ca.roots) r.ModifyIndex = index;
    ctx.caConfigIndex = index;
    leaves.onRotation();
  }

  const ctx: RouteContext = {
    datacenter,
    store,
    ca,
    catalog,
    intentions,
    config,
    leaves,
    faults,
    blocking: new Blocking(store, {
      defaultWaitMs: options.defaultWaitMs ?? 300_000,
      jitter: options.blockingJitter ?? true,
    }),
    injectFaults: injectFaults(faults, store),
    caConfigIndex: store.index,
    rotateCA,
  };

  const app = new Hono({ getPath: rawPath });
  app.use(async (c, next) => {
    c.header("X-Consul-Default-ACL-Policy", intentions.defaultAllow ? "allow" : "deny");
    await next();
  });
  // Order matters only where paths overlap, and they overlap only inside a module.
  app.route("/", agentRoutes(ctx));
  app.route("/", authorizeRoutes(ctx));
  app.route("/", connectCaRoutes(ctx));
  app.route("/", intentionRoutes(ctx));
  app.route("/", configEntryRoutes(ctx));
  app.route("/", healthRoutes(ctx));
  app.route("/", preparedQueryRoutes(ctx));
  app.route("/", devagentRoutes(ctx));
  app.notFound((c) => text(c, `Invalid URL path: not a recognized HTTP API endpoint`, 404));
  app.onError((err, c) =>
    err instanceof BadRequest ? text(c, err.message, err.status) : text(c, err.message, 500)
  );

  return {
    app,
    ca,
    catalog,
    intentions,
    config,
    leaves,
    faults,
    store,
    rotateCA,
    pruneRoots,
    async close() {
      store.close();
      catalog.close();
      await leaves.close();
    },
  };
}
