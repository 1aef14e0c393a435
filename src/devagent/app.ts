/**
 * The Consul test double as a hono app: `consul agent -dev` for everything a Connect proxy
 * touches, speaking the real HTTP contract (plain-text errors, strict bodies, blocking queries,
 * Consul's headers), plus `/v1/devagent/*` hooks for fault injection and CA rotation.
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { CAConfiguration } from "../agent/types.ts";
import { parseGoDuration } from "../agent/duration.ts";
import { ConnectCA, type RotationMaterial } from "./ca.ts";
import { Catalog, topics } from "./catalog.ts";
import { ConfigEntries } from "./chain.ts";
import { type Fault, Faults } from "./faults.ts";
import { compileFilter } from "./filter.ts";
import { Intentions, INTENTIONS_TOPIC } from "./intentions.ts";
import { Leaves } from "./leaves.ts";
import { contentHash, Store } from "./store.ts";
import { BadRequest, parseJsonBody, strictDecode } from "./strict.ts";

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

const MAX_WAIT = 600_000;
const ROOTS_TOPIC = "roots";

function json(c: Context, value: unknown, status = 200): Response {
  // An agent in -dev mode always pretty-prints; clients must not assume compact JSON.
  return c.body(JSON.stringify(value, null, 4), status as 200, {
    "Content-Type": "application/json",
  });
}

/** A duration in its largest whole unit, as Consul's configuration shows its defaults (`72h`). */
function shortDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

function text(c: Context, message: string, status: number): Response {
  return c.body(message, status as 400, { "Content-Type": "text/plain; charset=utf-8" });
}

// CE refuses namespaces and partitions (even `default`) where an endpoint reads enterprise
// metadata, and ignores them elsewhere (roots, leaf, self), as Consul 1.22 does.
const ENTERPRISE_META =
  /^\/v1\/(health|connect\/intentions|discovery-chain|agent\/services?\b|agent\/check|config|catalog)/;

function enterpriseRefusal(
  path: string,
  query: Record<string, string>,
  headers: Headers,
): string | undefined {
  if (!ENTERPRISE_META.test(path)) return undefined;
  if (query.ns !== undefined || headers.has("X-Consul-Namespace")) {
    return `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`;
  }
  if (query.partition !== undefined || headers.has("X-Consul-Partition")) {
    return `Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature`;
  }
  return undefined;
}

interface Route {
  pattern: RegExp;
  methods: Record<string, (c: Context, m: RegExpExecArray) => Promise<Response> | Response>;
}

/**
 * Creates the test double. Serve `agent.app.fetch` (see `startDevAgent`) or call
 * `agent.app.request()` directly.
 *
 * @example
 * ```ts ignore
 * import { createDevAgent } from "@meshgate/meshgate";
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
  const intentions = new Intentions(store, options.defaultAllow ?? true);
  const config = new ConfigEntries(
    store,
    datacenter,
    () => ca.trustDomain,
    (destination, sources) => intentions.replaceDestination(destination, sources),
    (service) => catalog.virtualIp(service),
  );
  const leaves = new Leaves(store, ca, { rotationJitterMs: options.rotationJitterMs });
  const faults = new Faults();
  const defaultWait = options.defaultWaitMs ?? 300_000;
  const jitter = options.blockingJitter ?? true;
  let caConfigIndex = store.index;
  /** When each service's leaf was last fetched (issued or revalidated), for `Age`. */
  const leafFetchedAt = new Map<string, number>();
  /** Authorize targets asked about before: Consul's intention-match cache then hits. */
  const authorizeCached = new Set<string>();
  const queries = new Map<
    string,
    { Name: string; Service: { Service: string; OnlyPassing: boolean } }
  >();

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
    caConfigIndex = index;
    leaves.onRotation();
  }

  // Consul's parseWait reads `wait` and `index` with `Query().Get`: an empty value is no value.
  function blockingParams(c: Context): { index: number; waitMs: number } {
    const q = c.req.query();
    let waitMs = defaultWait;
    if (q.wait) {
      try {
        waitMs = parseGoDuration(q.wait);
      } catch {
        throw new BadRequest("Invalid wait time");
      }
      if (waitMs <= 0) waitMs = defaultWait;
    }
    waitMs = Math.min(waitMs, MAX_WAIT);
    if (jitter) waitMs += Math.random() * (waitMs / 16);
    let index = 0;
    if (q.index) {
      if (!/^\d+$/.test(q.index)) throw new BadRequest("Invalid index");
      index = Number(q.index);
    }
    return { index, waitMs };
  }

  /**
   * Blocks while the resource's index is not above the requested one, then answers its index.
   * A resource no write ever touched (`seen` false) answers the raft index the request arrived
   * at, as Consul does (the table's index for a read, the snapshot's for a streaming one), not 1.
   */
  async function block(
    c: Context,
    current: () => number,
    seen: () => boolean = () => true,
  ): Promise<number> {
    const arrivedAt = store.index;
    const { index, waitMs } = blockingParams(c);
    if (index > 0) {
      await store.waitUntil(() => current() > index, waitMs, c.req.raw.signal);
    }
    return seen() ? current() : arrivedAt;
  }

  /** Options of {@linkcode meta}: what Consul's `setMeta` writes besides the index. */
  interface MetaOptions {
    /** `X-Consul-KnownLeader`; a streaming answer has none to report. @default {true} */
    knownLeader?: boolean;
    /** `X-Consul-Query-Backend`, set by endpoints that run a server query. */
    backend?: "blocking-query" | "streaming";
    /** `X-Consul-Effective-Consistency: leader`, set where the handler records the level. */
    consistency?: boolean;
  }

  function meta(c: Context, index: number, options: MetaOptions = {}): void {
    c.header("X-Consul-Index", String(Math.max(1, index)));
    c.header("X-Consul-KnownLeader", String(options.knownLeader ?? true));
    c.header("X-Consul-LastContact", "0");
    if (options.consistency) c.header("X-Consul-Effective-Consistency", "leader");
    if (options.backend) c.header("X-Consul-Query-Backend", options.backend);
  }

  /** A handler that returns nothing: Consul still sends its JSON content type. */
  function empty(c: Context): Response {
    return c.body(null, 200, { "Content-Type": "application/json; charset=utf-8" });
  }

  async function body(c: Context, prefix?: string): Promise<unknown> {
    return parseJsonBody(await c.req.text(), prefix);
  }

  const serviceView = (id: string) => {
    const svc = catalog.get(id);
    if (!svc) return undefined;
    const { Datacenter: _dc, ...hashed } = svc;
    const hash = contentHash(hashed);
    return { body: { ...svc, ContentHash: hash }, hash };
  };

  const routes: Route[] = [
    {
      pattern: /^\/v1\/agent\/self$/,
      methods: {
        GET: (c) =>
          json(c, {
            Config: {
              Datacenter: datacenter,
              PrimaryDatacenter: datacenter,
              NodeName: catalog.node.Node,
              NodeID: catalog.node.ID,
              Revision: "meshgate",
              Server: true,
              Version: "1.22.7",
              BuildDate: "2026-04-22T00:00:00Z",
              BindAddr: catalog.node.Address,
            },
            DebugConfig: {
              ConnectEnabled: true,
              ConnectSidecarMinPort: 21000,
              ConnectSidecarMaxPort: 21255,
              DefaultQueryTime: "5m0s",
              MaxQueryTime: "10m0s",
            },
            Coord: { Vec: [0, 0, 0, 0, 0, 0, 0, 0], Error: 1.5, Adjustment: 0, Height: 0.00001 },
            Member: {
              Name: catalog.node.Node,
              Addr: catalog.node.Address,
              Port: 8301,
              Tags: { dc: datacenter, role: "consul" },
              Status: 1,
            },
            Stats: {},
            Meta: {},
          }),
      },
    },
    {
      pattern: /^\/v1\/agent\/services$/,
      methods: {
        GET: (c) => {
          const filter = c.req.query("filter");
          let list = catalog.all();
          // Only the filter proxies use is understood: Kind == `connect-proxy`.
          const kind = filter && /Kind\s*==\s*[`"]([^`"]+)[`"]/.exec(filter)?.[1];
          if (kind) list = list.filter((s) => s.Kind === kind);
          return json(c, Object.fromEntries(list.map((s) => [s.ID, s])));
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/service\/register$/,
      methods: {
        PUT: async (c) => {
          const q = c.req.query("replace-existing-checks");
          catalog.register(await body(c), {
            replaceExistingChecks: q !== undefined && q !== "false",
          });
          return empty(c);
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/service\/deregister\/(.+)$/,
      methods: {
        PUT: (c, m) => {
          catalog.deregister(decodeURIComponent(m[1]));
          return empty(c);
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/service\/(.+)$/,
      methods: {
        GET: async (c, m) => {
          const id = decodeURIComponent(m[1]);
          // Consul parses `wait` and `index` first, with or without `hash`: `?wait=zz` is a 400.
          const { waitMs } = blockingParams(c);
          let view = serviceView(id);
          if (!view) return text(c, `unknown service ID: ${id}`, 404);
          const hash = c.req.query("hash");
          if (hash && hash === view.hash) {
            await store.waitUntil(
              () => serviceView(id)?.hash !== hash,
              waitMs,
              c.req.raw.signal,
            );
            view = serviceView(id);
            if (!view) return text(c, `unknown service ID: ${id}`, 404);
          }
          c.header("X-Consul-ContentHash", view.hash);
          return json(c, view.body);
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/check\/(pass|warn|fail|update)\/(.+)$/,
      methods: {
        PUT: async (c, m) => {
          const id = decodeURIComponent(m[2]);
          if (m[1] === "update") {
            const b = strictDecode(await body(c), { Status: true, Output: true }) as {
              Status?: string;
              Output?: string;
            };
            if (!["passing", "warning", "critical"].includes(b.Status ?? "")) {
              throw new BadRequest(`Invalid check status: '${b.Status ?? ""}'`);
            }
            catalog.updateCheck(id, b.Status as "passing", b.Output ?? "");
          } else {
            const status = m[1] === "pass" ? "passing" : m[1] === "warn" ? "warning" : "critical";
            catalog.updateCheck(id, status, c.req.query("note") ?? "");
          }
          return empty(c);
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/connect\/authorize$/,
      methods: {
        POST: async (c) => {
          const raw = await body(c);
          const result = intentions.authorize(raw);
          // Consul answers from its intention-match cache: the first question about a target
          // fetches (MISS), later ones hit the background-refreshed entry (HIT, Age 0). Errors
          // come before the cache and carry neither header.
          const target = String(
            Object.entries(raw as object).find(([k]) => k.toLowerCase() === "target")?.[1],
          );
          if (authorizeCached.has(target)) {
            c.header("X-Cache", "HIT");
            c.header("Age", "0");
          } else {
            authorizeCached.add(target);
            c.header("X-Cache", "MISS");
          }
          return json(c, result);
        },
      },
    },
    {
      pattern: /^\/v1\/(agent\/)?connect\/ca\/roots$/,
      methods: {
        GET: async (c, m) => {
          const index = await block(c, () => store.topicIndex(ROOTS_TOPIC));
          meta(c, index, { backend: "blocking-query" });
          // The agent's roots cache refreshes in the background: a read hits it (Age 0); a
          // blocking read waits for the next fetch (MISS).
          if (m[1] && blockingParams(c).index > 0) c.header("X-Cache", "MISS");
          else if (m[1]) c.header("X-Cache", "HIT"), c.header("Age", "0");
          const roots = ca.roots;
          return json(c, {
            ActiveRootID: ca.activeRoot.ID,
            TrustDomain: ca.trustDomain,
            Roots: roots,
          });
        },
      },
    },
    {
      pattern: /^\/v1\/agent\/connect\/ca\/leaf\/(.+)$/,
      methods: {
        GET: async (c, m) => {
          const service = decodeURIComponent(m[1]);
          const q = c.req.query();
          let waitMs = 600_000;
          if (q.wait) {
            try {
              waitMs = Math.min(parseGoDuration(q.wait), MAX_WAIT) || 600_000;
            } catch {
              throw new BadRequest("Invalid wait time");
            }
          }
          if (q.index && !/^\d+$/.test(q.index)) {
            throw new BadRequest("Invalid index");
          }
          const minIndex = Number(q.index ?? 0);
          let cert;
          // Consul's leaf manager: a read without an index revalidates (a MISS, no Age); a
          // blocking read whose index is already behind is served from the cache at once (a HIT
          // with the Age of the last fetch); one that has to wait is a MISS.
          if (minIndex > 0 && leaves.index(service) > minIndex) {
            cert = await leaves.current(service);
            const age = (Date.now() - (leafFetchedAt.get(service) ?? Date.now())) / 1000;
            c.header("X-Cache", "HIT");
            c.header("Age", age.toFixed(0));
          } else if (minIndex > 0) {
            if (leaves.index(service) === 0) await leaves.current(service);
            await store.waitUntil(
              () => leaves.index(service) > minIndex,
              waitMs,
              c.req.raw.signal,
            );
            cert = await leaves.current(service);
            leafFetchedAt.set(service, Date.now());
            c.header("X-Cache", "MISS");
          } else {
            cert = await leaves.current(service);
            leafFetchedAt.set(service, Date.now());
            c.header("X-Cache", "MISS");
          }
          c.header("X-Consul-Index", String(Math.max(1, cert.ModifyIndex)));
          return json(c, cert);
        },
      },
    },
    {
      pattern: /^\/v1\/connect\/ca\/configuration$/,
      methods: {
        GET: (c) =>
          json(c, {
            Provider: "consul",
            Config: {
              LeafCertTTL: shortDuration(ca.leafTtlMs),
              IntermediateCertTTL: "8760h",
              RootCertTTL: "87600h",
            },
            State: null,
            ForceWithoutCrossSigning: false,
            CreateIndex: 12,
            ModifyIndex: caConfigIndex,
          }),
        PUT: async (c) => {
          const b = strictDecode(await body(c), {
            Provider: true,
            Config: true,
            ForceWithoutCrossSigning: true,
            State: true,
            CreateIndex: true,
            ModifyIndex: true,
          }) as Partial<CAConfiguration>;
          const cfg = (b.Config ?? {}) as Record<string, unknown>;
          if (cfg.LeafCertTTL !== undefined) {
            try {
              ca.leafTtlMs = parseGoDuration(String(cfg.LeafCertTTL));
            } catch {
              throw new BadRequest(`Invalid LeafCertTTL: ${cfg.LeafCertTTL}`, 500);
            }
          }
          const newKey = typeof cfg.PrivateKey === "string" && typeof cfg.RootCert === "string";
          const keyChange = (cfg.PrivateKeyType !== undefined &&
            cfg.PrivateKeyType !== ca.activeRoot.PrivateKeyType) ||
            (cfg.PrivateKeyBits !== undefined &&
              Number(cfg.PrivateKeyBits) !== ca.activeRoot.PrivateKeyBits);
          if (newKey) {
            await rotateCA({
              privateKeyPem: cfg.PrivateKey as string,
              rootCertPem: cfg.RootCert as string,
            });
          } else if (keyChange) {
            await rotateCA({ keyBits: Number(cfg.PrivateKeyBits ?? 256) });
          } else {
            caConfigIndex = store.bump("ca-config");
          }
          return empty(c);
        },
      },
    },
    {
      pattern: /^\/v1\/connect\/intentions\/exact$/,
      methods: {
        GET: (c) => {
          const ixn = intentions.get(
            c.req.query("source") ?? null,
            c.req.query("destination") ?? null,
          );
          return ixn ? json(c, ixn) : text(c, "Intention not found", 404);
        },
        PUT: async (c) => {
          intentions.upsert(
            c.req.query("source") ?? null,
            c.req.query("destination") ?? null,
            await body(c),
          );
          return json(c, true);
        },
        DELETE: (c) => {
          intentions.delete(c.req.query("source") ?? null, c.req.query("destination") ?? null);
          return json(c, true);
        },
      },
    },
    {
      pattern: /^\/v1\/connect\/intentions\/match$/,
      methods: {
        GET: async (c) => {
          const by = c.req.queries("by") ?? [];
          if (by.length !== 1) throw new BadRequest("required query parameter 'by' not set", 500);
          if (by[0] !== "source" && by[0] !== "destination") {
            throw new BadRequest(`'by' parameter must be one of 'source' or 'destination'`, 500);
          }
          const names = c.req.queries("name") ?? [];
          if (!names.length) throw new BadRequest("required query parameter 'name' not set", 500);
          const index = await block(
            c,
            () => store.topicIndex(INTENTIONS_TOPIC),
            () => store.seen(INTENTIONS_TOPIC),
          );
          meta(c, index, { backend: "blocking-query", consistency: true });
          const all = intentions.list();
          const field = by[0] === "source" ? "SourceName" : "DestinationName";
          // A name nothing matches maps to `null` (a nil Go slice), as Consul 1.22.7 answers.
          return json(
            c,
            Object.fromEntries(names.map((n) => {
              const matched = all.filter((i) => i[field] === "*" || i[field] === n);
              return [n, matched.length ? matched : null];
            })),
          );
        },
      },
    },
    {
      pattern: /^\/v1\/connect\/intentions\/check$/,
      methods: {
        GET: (c) => {
          const source = c.req.query("source");
          const destination = c.req.query("destination");
          if (!source || !destination) {
            throw new BadRequest("required query parameter 'source' not set", 500);
          }
          const r = intentions.authorize({
            Target: destination,
            ClientCertURI: `spiffe://${ca.trustDomain}/ns/default/dc/${datacenter}/svc/${source}`,
          });
          return json(c, { Allowed: r.Authorized });
        },
      },
    },
    {
      pattern: /^\/v1\/connect\/intentions$/,
      methods: {
        GET: async (c) => {
          const index = await block(
            c,
            () => store.topicIndex(INTENTIONS_TOPIC),
            () => store.seen(INTENTIONS_TOPIC),
          );
          meta(c, index, { backend: "blocking-query" });
          let list = intentions.list();
          const filter = c.req.query("filter");
          const m = filter && /^(\w+)\s*==\s*["`]([^"`]*)["`]$/.exec(filter.trim());
          if (m) {
            list = list.filter((i) => (i as unknown as Record<string, unknown>)[m[1]] === m[2]);
          }
          return json(c, list);
        },
      },
    },
    {
      pattern: /^\/v1\/discovery-chain\/(.*)$/,
      methods: Object.fromEntries(
        ["GET", "POST"].map((method) => [method, async (c: Context, m: RegExpExecArray) => {
          const name = decodeURIComponent(m[1]);
          if (!name) throw new BadRequest("Missing chain name");
          if (method === "POST") {
            const b = parseJsonBody(await c.req.text(), "Request decoding failed");
            if (b && typeof b === "object") {
              const mode = (b as { OverrideMeshGateway?: { Mode?: string } }).OverrideMeshGateway
                ?.Mode;
              if (mode !== undefined && !["", "none", "local", "remote"].includes(mode)) {
                throw new BadRequest("Invalid OverrideMeshGateway.Mode parameter");
              }
            }
          }
          // Consul compiles for any `compile-dc` it is given (targets and SNIs in that dc).
          const dc = c.req.query("compile-dc") || datacenter;
          config.compile(name, dc);
          const index = await block(c, () => config.chainIndex(name), () => config.anyWritten);
          meta(c, index, { backend: "blocking-query", consistency: true });
          return json(c, { Chain: config.compile(name, dc) });
        }]),
      ),
    },
    {
      pattern: /^\/v1\/health\/connect\/(.+)$/,
      methods: {
        GET: async (c, m) => {
          const name = decodeURIComponent(m[1]);
          const p = c.req.query("passing");
          if (p !== undefined && !["", "true", "false", "1", "0", "t", "f"].includes(p)) {
            throw new BadRequest("Invalid value for ?passing");
          }
          const passing = p !== undefined && p !== "false" && p !== "0" && p !== "f";
          const dc = c.req.query("dc");
          if (dc && dc !== datacenter) {
            throw new BadRequest(`No path to datacenter`, 500);
          }
          // Subset filters (service-resolver `Subsets.*.Filter`) arrive here as `filter=`.
          const filter = c.req.query("filter");
          const matches = filter ? compileFilter(filter) : undefined;
          const topic = topics.health(name);
          const index = await block(c, () => store.topicIndex(topic), () => store.seen(topic));
          // Consul 1.22 answers a blocking read from its streaming backend (no leader to report)
          // and a plain read with a server query.
          const streaming = blockingParams(c).index > 0;
          meta(c, index, {
            consistency: true,
            backend: streaming ? "streaming" : "blocking-query",
            knownLeader: !streaming,
          });
          let entries = catalog.healthConnect(name, passing);
          // Only the streaming path filters by `tag`: the server's connect query ignores it.
          const tags = streaming ? c.req.queries("tag") ?? [] : [];
          if (tags.length) {
            entries = entries.filter((e) => tags.every((t) => e.Service.Tags.includes(t)));
          }
          if (matches) entries = entries.filter(matches);
          return json(c, entries);
        },
      },
    },
    {
      pattern: /^\/v1\/config$/,
      methods: {
        PUT: async (c) => {
          config.put(parseJsonBody(await c.req.text(), "Request decoding failed"));
          return json(c, true);
        },
      },
    },
    {
      pattern: /^\/v1\/config\/([^/]+)\/(.+)$/,
      methods: {
        GET: (c, m) => {
          const e = config.get(m[1], decodeURIComponent(m[2]));
          meta(c, config.tableIndex, { backend: "blocking-query" });
          return e ? json(c, e) : text(c, `Config entry not found for "${m[1]}" / "${m[2]}"`, 404);
        },
        DELETE: (c, m) => {
          config.delete(m[1], decodeURIComponent(m[2]));
          // Consul answers `{}` (the `Deleted` boolean only for a `cas` delete).
          return json(c, {});
        },
      },
    },
    {
      pattern: /^\/v1\/query$/,
      methods: {
        POST: async (c) => {
          const b = await body(c) as {
            Name?: string;
            Session?: string;
            Service?: { Service?: string; OnlyPassing?: boolean };
          };
          // Consul's PreparedQuery.Apply: parseQuery's checks, then the state store's.
          const name = b.Name ?? "";
          if (!name && !b.Session) {
            throw new BadRequest("Invalid prepared query: Must be bound to a session", 500);
          }
          if (!b.Service?.Service) {
            throw new BadRequest(
              "Invalid prepared query: Must provide a Service name to query",
              500,
            );
          }
          if (name && [...queries.values()].some((q) => q.Name === name)) {
            throw new BadRequest(
              `raft apply failed: name '${name}' aliases an existing query name`,
              500,
            );
          }
          if (queries.has(name)) {
            throw new BadRequest(
              `raft apply failed: name '${name}' aliases an existing query ID`,
              500,
            );
          }
          const id = crypto.randomUUID();
          queries.set(id, {
            Name: name,
            Service: { Service: b.Service.Service, OnlyPassing: b.Service.OnlyPassing === true },
          });
          store.bump("queries");
          return json(c, { ID: id });
        },
      },
    },
    {
      pattern: /^\/v1\/query\/([^/]+)$/,
      methods: {
        DELETE: (c, m) => {
          const id = decodeURIComponent(m[1]);
          if (id.length !== 36) {
            throw new BadRequest(
              "Prepared Query lookup failed: failed prepared query lookup: index error: UUID must be 36 characters",
              500,
            );
          }
          if (!queries.delete(id)) {
            throw new BadRequest(`Cannot modify non-existent prepared query: '${id}'`, 500);
          }
          store.bump("queries");
          return empty(c);
        },
      },
    },
    {
      pattern: /^\/v1\/query\/([^/]+)\/execute$/,
      methods: {
        GET: (c, m) => {
          const key = decodeURIComponent(m[1]);
          // Consul's execute answers index 1 (the RPC sets none) and, failing, knows no leader.
          const dc = c.req.query("dc");
          if (dc && dc !== datacenter) {
            meta(c, 1, { knownLeader: false, backend: "blocking-query" });
            throw new BadRequest("No path to datacenter", 500);
          }
          const q = queries.get(key) ?? [...queries.values()].find((x) => x.Name === key);
          if (!q) {
            meta(c, 1, { knownLeader: false, backend: "blocking-query" });
            return text(c, "Query not found", 404);
          }
          const service = q.Service.Service;
          const connect = c.req.query("connect");
          const entries = connect !== undefined && connect !== "false"
            ? catalog.healthConnect(service, false)
            : [];
          meta(c, 1, { consistency: true, backend: "blocking-query" });
          return json(c, {
            Service: service,
            // Unlike the health endpoint, execute leaves Go's nil slices as null.
            Nodes: entries.filter((e) =>
              e.Checks.every((ch) =>
                ch.Status !== "critical" && !(q.Service.OnlyPassing && ch.Status === "warning")
              )
            ).map((e) => ({
              ...e,
              Service: { ...e.Service, Tags: e.Service.Tags.length ? e.Service.Tags : null },
              Checks: e.Checks.map((ch) => ({
                ...ch,
                ServiceTags: ch.ServiceTags.length ? ch.ServiceTags : null,
              })),
            })),
            DNS: { TTL: "" },
            Datacenter: datacenter,
            PeerName: "",
            Failovers: 0,
            // The embedded QueryMeta.
            Index: 1,
            LastContact: 0,
            KnownLeader: true,
            ConsistencyLevel: "leader",
            NotModified: false,
            Backend: 0,
            ResultsFilteredByACLs: false,
          });
        },
      },
    },
    // ---- test hooks (not part of Consul's API) ----
    {
      pattern: /^\/v1\/devagent\/faults$/,
      methods: {
        POST: async (c) => {
          faults.add(await body(c) as Fault);
          return json(c, true);
        },
        DELETE: (c) => {
          faults.clear();
          return json(c, true);
        },
      },
    },
    {
      pattern: /^\/v1\/devagent\/rotate$/,
      methods: {
        POST: async (c) => {
          await rotateCA();
          return json(c, { ActiveRootID: ca.activeRoot.ID });
        },
      },
    },
  ];

  const app = new Hono();
  app.all("*", async (c) => {
    c.header("X-Consul-Default-ACL-Policy", intentions.defaultAllow ? "allow" : "deny");
    const path = new URL(c.req.url).pathname;
    const method = c.req.method;
    const route = routes.find((r) => r.pattern.test(path));
    if (!route) return text(c, `Invalid URL path: not a recognized HTTP API endpoint`, 404);
    const allowed = Object.keys(route.methods);
    if (method === "OPTIONS") {
      c.header("Allow", ["OPTIONS", ...allowed].join(","));
      return c.body(null, 200);
    }
    const handler = route.methods[method];
    if (!handler) {
      c.header("Allow", ["OPTIONS", ...allowed].join(","));
      return text(c, `method ${method} not allowed`, 405);
    }
    const q = c.req.query();
    const refusal = enterpriseRefusal(path, q, c.req.raw.headers);
    if (refusal) return text(c, refusal, 400);
    const fault = path.startsWith("/v1/devagent/") ? undefined : faults.match(method, path);
    if (fault?.latencyMs) {
      await store.waitUntil(() => false, fault.latencyMs, c.req.raw.signal);
    }
    if (fault?.drop) {
      // A body stream that errors makes the server abort the connection mid-response.
      return new Response(
        new ReadableStream({
          start(controller) {
            controller.error(new Error("devagent: dropped connection"));
          },
        }),
        { status: 200 },
      );
    }
    if (fault?.status) return text(c, fault.body ?? "injected fault", fault.status);
    let res: Response;
    try {
      res = await handler(c, route.pattern.exec(path)!);
    } catch (err) {
      if (err instanceof BadRequest) return text(c, err.message, err.status);
      throw err;
    }
    if (fault?.malformed) {
      res = new Response('{"broken": ', { status: res.status, headers: res.headers });
    }
    if (fault?.filteredByAcls && res.ok) {
      const text = await res.text();
      let list = false;
      try {
        list = Array.isArray(JSON.parse(text));
      } catch {
        // not JSON: only the header
      }
      res = new Response(list ? "[]" : text, { status: res.status, headers: res.headers });
      res.headers.delete("Content-Length");
      res.headers.set("X-Consul-Results-Filtered-By-ACLs", "true");
    }
    if (fault?.indexBackwards && res.headers.has("X-Consul-Index")) {
      res = new Response(res.body, { status: res.status, headers: res.headers });
      res.headers.set("X-Consul-Index", "1");
    }
    return res;
  });
  app.onError((err, c) => text(c, err instanceof Error ? err.message : String(err), 500));

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
