/**
 * Where an upstream's connections go: its discovery chain → targets (primary, then failover)
 * → healthy endpoints of each target, all watched with blocking queries and kept current.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import { parseGoDuration } from "../agent/duration.ts";
import type { CompiledDiscoveryChain, ServiceEntry } from "../agent/types.ts";
import { type Logger, silentLogger } from "../net/log.ts";
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
  /** Healthy endpoints. */
  endpoints: MeshEndpoint[];
}

/** A weighted route: a split of the chain, with its targets in failover order. */
export interface Route {
  /** Split weight (100 without a splitter). */
  weight: number;
  /** Target IDs, primary first, then failover. */
  targets: string[];
}

/** Turns health entries into dialable endpoints (never the `consul-virtual` address). */
export function endpointsOf(entries: ServiceEntry[]): MeshEndpoint[] {
  return entries.map((e) => ({
    address: e.Service.Address || e.Node.Address,
    port: e.Service.Port,
    service: e.Service.Kind === "connect-proxy"
      ? e.Service.Proxy?.DestinationServiceName ?? e.Service.Service
      : e.Service.Service,
    datacenter: e.Node.Datacenter,
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

/** Watches one upstream service's chain and endpoints. */
export class UpstreamResolver {
  readonly #agent: AgentClient;
  readonly #service: string;
  readonly #datacenter?: string;
  readonly #log: Logger;
  readonly #onEndpoints?: (target: ChainTarget) => void;
  readonly #controller = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  readonly #targets = new Map<string, ChainTarget & { stop: AbortController }>();
  #routes: Route[] = [];
  #ready = Promise.withResolvers<void>();
  /** `Date.now()` of the last change, for the admin state. */
  updatedAt = 0;

  /** Starts watching the chain of `service` (in `datacenter`, default the local one). */
  constructor(
    agent: AgentClient,
    service: string,
    options: {
      datacenter?: string;
      log?: Logger;
      /** Called after a target's endpoint list changed. */
      onEndpoints?: (target: ChainTarget) => void;
    } = {},
  ) {
    this.#agent = agent;
    this.#service = service;
    this.#datacenter = options.datacenter;
    this.#log = options.log ?? silentLogger;
    this.#onEndpoints = options.onEndpoints;
    this.#spawn(this.#watchChain());
  }

  /** Resolves once the chain and its targets' first endpoint lists are known. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** The current routes. */
  get routes(): readonly Route[] {
    return this.#routes;
  }

  /** The current targets by ID. */
  get targets(): ReadonlyMap<string, ChainTarget> {
    return this.#targets;
  }

  #spawn(p: Promise<void>): void {
    this.#loops.add(p);
    p.finally(() => this.#loops.delete(p));
  }

  async #watchChain(): Promise<void> {
    const signal = this.#controller.signal;
    try {
      for await (
        const { value: chain } of this.#agent.watchDiscoveryChain(this.#service).subscribe(signal)
      ) {
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
      const existing = this.#targets.get(id);
      if (existing) {
        existing.connectTimeoutMs = timeout;
        continue;
      }
      const target = {
        id,
        service: t.Service,
        datacenter: t.Datacenter,
        connectTimeoutMs: timeout,
        endpoints: [] as MeshEndpoint[],
        stop: new AbortController(),
      };
      this.#targets.set(id, target);
      this.#spawn(this.#watchTarget(target));
    }
    this.updatedAt = Date.now();
    this.#log.log("info", "upstream chain updated", {
      upstream: this.#service,
      targets: [...wanted].join(","),
    });
  }

  async #watchTarget(target: ChainTarget & { stop: AbortController }): Promise<void> {
    const signal = AbortSignal.any([this.#controller.signal, target.stop.signal]);
    const local = !this.#datacenter || target.datacenter === this.#datacenter;
    const dc = local ? undefined : target.datacenter;
    try {
      for await (
        const { value } of this.#agent.watchHealthConnect(target.service, { dc, passing: true })
          .subscribe(signal)
      ) {
        target.endpoints = endpointsOf(value).map((e) => ({ ...e, target: target.id }));
        this.updatedAt = Date.now();
        this.#ready.resolve();
        this.#onEndpoints?.(target);
        this.#log.log("debug", "upstream endpoints updated", {
          target: target.id,
          endpoints: target.endpoints.length,
        });
      }
    } catch (err) {
      if (!signal.aborted) this.#log.log("error", "health watch stopped", { error: String(err) });
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
    await Promise.all([...this.#loops]);
  }
}
