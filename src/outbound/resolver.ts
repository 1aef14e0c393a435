/**
 * Where an upstream's connections go: its discovery chain → targets (primary, then failover)
 * → healthy endpoints of each target, all watched with blocking queries and kept current.
 * @module
 */
import type { BlockingQuery } from "../agent/blocking.ts";
import type { AgentClient } from "../agent/client.ts";
import { parseGoDuration } from "../agent/duration.ts";
import type { CompiledDiscoveryChain, ServiceEntry } from "../agent/types.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { deadline } from "../net/timers.ts";
import type { MeshEndpoint } from "./dialer.ts";

/** One chain target with its current endpoints. */
export interface ChainTarget {
  /** Consul's target ID, e.g. `db.default.default.dc1`. */
  id: string;
  /** The service. */
  service: string;
  /** The datacenter. */
  datacenter: string;
  /** Connect timeout from the resolver, in ms. */
  connectTimeoutMs: number;
  /** The subset's `Filter` (a Consul filter expression on the health query), if any. */
  filter?: string;
  /** The subset's `OnlyPassing`: only passing instances; otherwise warning ones too. */
  onlyPassing: boolean;
  /** Healthy endpoints. */
  endpoints: MeshEndpoint[];
  /** Whether the agent has answered the health query at least once. */
  isKnown: boolean;
  /**
   * The agent's last answer left out instances the ACL token may not read
   * (`X-Consul-Results-Filtered-By-ACLs: true`): with ACLs on, a token without `node:read` or
   * `service:read` on the target's proxies gets an empty list, not an error.
   */
  resultsFilteredByAcls: boolean;
  /** While `resultsFilteredByAcls` holds: the endpoint and what the token likely lacks. */
  aclWarning?: string;
}

/**
 * What an endpoint list filtered by ACLs means, in one line: the endpoint asked and the
 * permissions a token usually lacks then (measured on Consul 1.22.7: without `node:read`, or
 * without `service:read` on the sidecar, `/v1/health/connect/db` answers `[]` with the flag;
 * without `service:read` on `db` itself it answers 403).
 */
function aclFilterWarning(service: string, dc?: string): string {
  return `${healthPath(service, dc)}: results filtered by ACLs; the token likely lacks ` +
    `node:read and service:read on "${service}-sidecar-proxy"`;
}

function healthPath(service: string, dc?: string): string {
  return `/v1/health/connect/${encodeURIComponent(service)}` +
    (dc ? `?dc=${encodeURIComponent(dc)}` : "");
}

/** A weighted route: a split of the chain, with its targets in failover order. */
export interface Route {
  /** Split weight (100 without a splitter). */
  weight: number;
  /** Target IDs, primary first, then failover. */
  targets: string[];
}

/**
 * Turns health entries into dialable endpoints (never the `consul-virtual` address).
 * @param datacenter the datacenter their certificates must name; default: each node's own
 *   (only for answers whose datacenter we did not choose, such as a prepared query's)
 */
export function endpointsOf(entries: ServiceEntry[], datacenter?: string): MeshEndpoint[] {
  return entries.map((e) => ({
    address: e.Service.Address || e.Node.Address,
    port: e.Service.Port,
    service: e.Service.Kind === "connect-proxy"
      ? e.Service.Proxy?.DestinationServiceName ?? e.Service.Service
      : e.Service.Service,
    datacenter: datacenter ?? e.Node.Datacenter,
    id: `${e.Node.Node}/${e.Service.ID}`,
    // Consul's weights: Warning applies to instances with a warning check, Passing otherwise.
    weight: Math.max(
      0,
      (e.Checks?.some((c) => c.Status === "warning")
        ? e.Service.Weights?.Warning
        : e.Service.Weights?.Passing) ?? 1,
    ),
  }));
}

/** Routes of a compiled chain: splitter splits, each resolver's target then its failovers. */
export function routesOf(chain: CompiledDiscoveryChain): Route[] {
  const resolverTargets = (key: string): string[] => {
    const node = chain.Nodes[key];
    if (!node?.Resolver) return [];
    return [node.Resolver.Target, ...(node.Resolver.Failover?.Targets ?? [])];
  };
  const start = chain.Nodes[chain.StartNode];
  if (start?.Type === "splitter" && start.Splits?.length) {
    return start.Splits.map((s) => ({ weight: s.Weight, targets: resolverTargets(s.NextNode) }));
  }
  return [{ weight: 100, targets: resolverTargets(chain.StartNode) }];
}

/** Options of {@linkcode UpstreamResolver}. */
export interface UpstreamResolverOptions {
  /**
   * The upstream's datacenter: the chain is compiled for it (`compile-dc`). Default: the
   * agent's.
   */
  datacenter?: string;
  /**
   * The agent's own datacenter: health queries of targets there go without `dc`. Default:
   * learnt from the chain when `datacenter` is not set; otherwise every target is asked for
   * with its `dc`.
   */
  localDatacenter?: string;
  /** Log sink. */
  log?: Logger;
  /** Called after a target's endpoint list changed. */
  onEndpoints?: (target: ChainTarget) => void;
}

interface WatchedTarget extends ChainTarget {
  /** What the health watch depends on; a change restarts it. */
  key: string;
  stop: AbortController;
  query?: BlockingQuery<ServiceEntry[]>;
}

/** Watches one upstream service's chain and endpoints. */
export class UpstreamResolver {
  readonly #agent: AgentClient;
  readonly #service: string;
  readonly #datacenter?: string;
  #localDatacenter?: string;
  readonly #log: Logger;
  readonly #onEndpoints?: (target: ChainTarget) => void;
  readonly #controller = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  readonly #targets = new Map<string, WatchedTarget>();
  #routes: Route[] = [];
  #ready = Promise.withResolvers<void>();
  #chainQuery?: BlockingQuery<CompiledDiscoveryChain>;
  #isChainKnown = false;
  #changed = Promise.withResolvers<void>();
  /** `Date.now()` of the last change, for the admin state. */
  updatedAt = 0;

  /** Starts watching the chain of `service` (in `datacenter`, default the local one). */
  constructor(agent: AgentClient, service: string, options: UpstreamResolverOptions = {}) {
    this.#agent = agent;
    this.#service = service;
    this.#datacenter = options.datacenter || undefined;
    this.#localDatacenter = options.localDatacenter || undefined;
    this.#log = options.log ?? silentLogger;
    this.#onEndpoints = options.onEndpoints;
    this.#spawn(this.#watchChain());
  }

  /** Resolves once the chain and a first endpoint list of one of its targets are known. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Whether the agent has answered the discovery chain at least once. */
  get isChainKnown(): boolean {
    return this.#isChainKnown;
  }

  /** The current routes. */
  get routes(): readonly Route[] {
    return this.#routes;
  }

  /** The current targets by ID. */
  get targets(): ReadonlyMap<string, ChainTarget> {
    return this.#targets;
  }

  /** Why the chain watch's last request failed, while it fails. */
  get chainError(): string | undefined {
    return errorText(this.#chainQuery?.status.lastError);
  }

  /** Why the health watch of a target last failed, while it fails. */
  targetError(id: string): string | undefined {
    return errorText(this.#targets.get(id)?.query?.status.lastError);
  }

  /**
   * Waits until `ok()` holds, checking again after each change of the chain or of an endpoint
   * list. Resolves `false` after `timeoutMs`, when `signal` aborts, or when the resolver closes.
   */
  async waitFor(ok: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ok()) return true;
    const limit = deadline(timeoutMs, signal);
    const { promise: over, resolve } = Promise.withResolvers<void>();
    limit.signal.addEventListener("abort", () => resolve(), { once: true });
    try {
      while (!ok()) {
        if (limit.signal.aborted || this.#controller.signal.aborted) return false;
        await Promise.race([this.#changed.promise, over]);
      }
      return true;
    } finally {
      limit.clear();
    }
  }

  #notify(): void {
    const changed = this.#changed;
    this.#changed = Promise.withResolvers<void>();
    changed.resolve();
  }

  #spawn(p: Promise<void>): void {
    this.#loops.add(p);
    p.finally(() => this.#loops.delete(p));
  }

  async #watchChain(): Promise<void> {
    const signal = this.#controller.signal;
    // The chain is compiled for the upstream's datacenter (hashicorp/consul's proxycfg asks
    // with `compile-dc` too): its targets, timeouts and failover are that datacenter's.
    this.#chainQuery = this.#agent.watchDiscoveryChain(this.#service, {
      compileDc: this.#datacenter,
    });
    try {
      for await (const { value: chain } of this.#chainQuery.subscribe(signal)) {
        this.#applyChain(chain);
      }
    } catch (err) {
      if (!signal.aborted) {
        this.#log.log("error", "discovery chain watch stopped", { error: String(err) });
      }
    }
  }

  /**
   * The service-resolver's `LoadBalancer.Policy` as a policy of ours: `least_request` →
   * least connections; round robin otherwise (`ring_hash` and `maglev` need L7 hashing).
   */
  policy?: "round_robin" | "least_connections";

  #applyChain(chain: CompiledDiscoveryChain): void {
    // Compiled without compile-dc, the chain is compiled for the agent's own datacenter.
    if (!this.#datacenter) this.#localDatacenter ??= chain.Datacenter || undefined;
    this.#routes = routesOf(chain);
    const lb = (chain.Nodes[chain.StartNode]?.LoadBalancer as { Policy?: string } | undefined)
      ?.Policy;
    this.policy = lb === "least_request" ? "least_connections" : lb ? "round_robin" : undefined;
    if (lb && lb !== "least_request" && lb !== "round_robin" && lb !== "random") {
      this.#log.log("warn", "load-balancer policy not supported for L4; using round robin", {
        upstream: this.#service,
        policy: lb,
      });
    }
    const wanted = new Set(this.#routes.flatMap((r) => r.targets));
    for (const [id, t] of this.#targets) {
      if (!wanted.has(id)) {
        t.stop.abort();
        this.#targets.delete(id);
      }
    }
    for (const id of wanted) {
      const t = chain.Targets[id];
      if (!t) continue;
      let timeout = 5000;
      try {
        timeout = t.ConnectTimeout ? parseGoDuration(t.ConnectTimeout) || 5000 : 5000;
      } catch {
        this.#log.log("warn", "ignoring unparseable ConnectTimeout", {
          target: id,
          value: t.ConnectTimeout,
        });
      }
      const filter = t.Subset?.Filter || undefined;
      const onlyPassing = t.Subset?.OnlyPassing === true;
      const key = JSON.stringify([t.Service, t.Datacenter, filter ?? "", onlyPassing]);
      const existing = this.#targets.get(id);
      if (existing?.key === key) {
        existing.connectTimeoutMs = timeout;
        continue;
      }
      existing?.stop.abort(); // its service, datacenter or subset changed: ask again
      const target: WatchedTarget = {
        id,
        service: t.Service,
        datacenter: t.Datacenter,
        connectTimeoutMs: timeout,
        filter,
        onlyPassing,
        endpoints: [],
        isKnown: false,
        resultsFilteredByAcls: false,
        key,
        stop: new AbortController(),
      };
      this.#targets.set(id, target);
      this.#spawn(this.#watchTarget(target));
    }
    this.#isChainKnown = true;
    this.updatedAt = Date.now();
    this.#log.log("info", "upstream chain updated", {
      upstream: this.#service,
      targets: [...wanted].join(","),
    });
    this.#notify();
  }

  async #watchTarget(target: WatchedTarget): Promise<void> {
    const signal = AbortSignal.any([this.#controller.signal, target.stop.signal]);
    // Each target is looked up in its own datacenter (issue #15): a failover target in dc2 is
    // dc2's instances, not the local ones of the same name.
    const dc = target.datacenter && target.datacenter === this.#localDatacenter
      ? undefined
      : target.datacenter || undefined;
    // A subset's Filter narrows the instances; OnlyPassing leaves out warning ones too
    // (otherwise they serve, at their Warning weight, as Envoy does); critical ones never serve.
    target.query = this.#agent.watchHealthConnect(target.service, {
      dc,
      passing: target.onlyPassing,
      filter: target.filter,
    });
    try {
      for await (const { value, resultsFilteredByAcls } of target.query.subscribe(signal)) {
        const usable = target.onlyPassing
          ? value
          : value.filter((e) => !e.Checks?.some((c) => c.Status === "critical"));
        // The identity a peer must prove names the target's datacenter, never the answer's.
        target.endpoints = endpointsOf(usable, target.datacenter).map((e) => ({
          ...e,
          target: target.id,
        }));
        target.isKnown = true;
        this.#noteAclFilter(target, dc, resultsFilteredByAcls === true);
        this.updatedAt = Date.now();
        this.#ready.resolve();
        this.#onEndpoints?.(target);
        this.#log.log("debug", "upstream endpoints updated", {
          target: target.id,
          endpoints: target.endpoints.length,
        });
        this.#notify();
      }
    } catch (err) {
      if (!signal.aborted) this.#log.log("error", "health watch stopped", { error: String(err) });
    }
  }

  /**
   * Keeps the target's ACL filter flag; warns once when it turns on (and again only after it
   * turned off), since an upstream whose instances the token may not see has no endpoints and
   * no error either.
   */
  #noteAclFilter(target: WatchedTarget, dc: string | undefined, filtered: boolean): void {
    const was = target.resultsFilteredByAcls;
    target.resultsFilteredByAcls = filtered;
    target.aclWarning = filtered ? aclFilterWarning(target.service, dc) : undefined;
    if (filtered && !was) {
      this.#log.log("warn", "upstream endpoints filtered by ACLs", {
        upstream: this.#service,
        target: target.id,
        endpoint: healthPath(target.service, dc),
        visibleEndpoints: target.endpoints.length,
        likelyMissing: `node:read and service:read on "${target.service}-sidecar-proxy"`,
      });
    } else if (was && !filtered) {
      this.#log.log("info", "upstream endpoints no longer filtered by ACLs", {
        upstream: this.#service,
        target: target.id,
      });
    }
  }

  /** Picks a route by weight (100 % for a chain without splits). */
  pickRoute(random: () => number = Math.random): Route | undefined {
    const total = this.#routes.reduce((a, r) => a + r.weight, 0);
    let x = random() * total;
    for (const r of this.#routes) {
      if ((x -= r.weight) < 0) return r;
    }
    return this.#routes[0];
  }

  /** Stops every watch. */
  async close(): Promise<void> {
    this.#controller.abort();
    this.#notify(); // wakes waiters, which then see the abort
    await Promise.all([...this.#loops]);
  }
}

function errorText(err: unknown): string | undefined {
  if (err === undefined) return undefined;
  return err instanceof Error ? err.message : String(err);
}
