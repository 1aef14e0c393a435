/**
 * Config entries (`PUT /v1/config`) and the discovery-chain compiler of the double: the default
 * resolver, `service-resolver` with `ConnectTimeout`, `Redirect` and `Failover`, and
 * `service-splitter` for L7 protocols, with targets, node keys and SNIs named as Consul names
 * them.
 * @module
 */
import type {
  CompiledDiscoveryChain,
  ConfigEntry,
  DiscoveryGraphNode,
  DiscoveryTarget,
} from "../agent/types.ts";
import { formatGoDuration, parseGoDuration } from "../agent/duration.ts";
import { BadRequest } from "./strict.ts";
import type { Store } from "./store.ts";

const KINDS = new Set([
  "service-resolver",
  "service-splitter",
  "service-router",
  "service-defaults",
  "proxy-defaults",
  "service-intentions",
]);
const L7 = new Set(["http", "http2", "grpc"]);

/** Store topic of a service's config entries. */
export const configTopic = (name: string): string => `config:${name}`;

interface StoredEntry {
  entry: ConfigEntry;
  createIndex: number;
  modifyIndex: number;
}

interface FailoverSpec {
  Service?: string;
  ServiceSubset?: string;
  Datacenters?: string[];
  Targets?: { Service?: string; Datacenter?: string; ServiceSubset?: string }[];
}

/** Config entries and the compiled chains derived from them. */
export class ConfigEntries {
  readonly #store: Store;
  readonly #entries = new Map<string, StoredEntry>();
  readonly #datacenter: string;
  readonly #trustDomain: () => string;

  /** Creates it; see the class documentation. */
  constructor(
    store: Store,
    datacenter: string,
    trustDomain: () => string,
    onIntentions?: (destination: string, sources: Record<string, string>[]) => void,
  ) {
    this.#store = store;
    this.#datacenter = datacenter;
    this.#trustDomain = trustDomain;
    this.#onIntentions = onIntentions;
  }

  readonly #onIntentions?: (destination: string, sources: Record<string, string>[]) => void;

  /** `PUT /v1/config`. */
  put(body: unknown): void {
    if (!body || typeof body !== "object") throw new BadRequest("Request decoding failed: EOF");
    const entry = body as ConfigEntry;
    if (typeof entry.Kind !== "string" || !KINDS.has(entry.Kind)) {
      throw new BadRequest(`invalid config entry kind: ${entry.Kind}`);
    }
    if (typeof entry.Name !== "string" || !entry.Name) {
      throw new BadRequest("Name is required");
    }
    if (entry.Kind === "service-resolver" && entry.ConnectTimeout !== undefined) {
      try {
        parseGoDuration(String(entry.ConnectTimeout));
      } catch {
        throw new BadRequest(`invalid ConnectTimeout "${entry.ConnectTimeout}"`, 500);
      }
    }
    if (entry.Kind === "service-splitter") {
      const splits = (entry.Splits as { Weight?: number }[] | undefined) ?? [];
      const total = splits.reduce((a, s) => a + (s.Weight ?? 0), 0);
      if (Math.abs(total - 100) > 0.01) {
        throw new BadRequest(
          `Failed to apply config entry: the sum of all split weights must be 100, not ${total}`,
          500,
        );
      }
      const protocol = this.#protocol(entry.Name);
      for (const split of splits as { Service?: string }[]) {
        const other = this.#protocol(split.Service ?? entry.Name);
        if (other !== protocol) {
          throw new BadRequest(
            `discovery chain "${entry.Name}" uses inconsistent protocols; service "${split.Service}" has "${other}" which is not "${protocol}"`,
            500,
          );
        }
      }
      if (!L7.has(protocol)) {
        throw new BadRequest(
          `discovery chain "${entry.Name}" uses a protocol "${
            this.#protocol(entry.Name)
          }" that does not permit advanced routing or splitting behavior`,
          500,
        );
      }
    }
    if (entry.Kind === "service-intentions") {
      // Intentions live in their own store; this entry is another way to write them.
      this.#onIntentions?.(entry.Name, (entry.Sources as Record<string, string>[]) ?? []);
      return;
    }
    const key = `${entry.Kind}/${entry.Name}`;
    const existing = this.#entries.get(key);
    // Store first, then bump: waiters re-check their condition during the bump.
    const index = this.#store.index + 1;
    this.#entries.set(key, {
      entry: { ...entry },
      createIndex: existing?.createIndex ?? index,
      modifyIndex: index,
    });
    this.#store.bump(configTopic(entry.Name), configTopic("*"));
  }

  /** `GET /v1/config/:kind/:name`. */
  get(
    kind: string,
    name: string,
  ): (ConfigEntry & { CreateIndex: number; ModifyIndex: number }) | undefined {
    const e = this.#entries.get(`${kind}/${name}`);
    return e && { ...e.entry, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex };
  }

  /** `DELETE /v1/config/:kind/:name`: idempotent. */
  delete(kind: string, name: string): void {
    if (kind === "service-intentions") {
      // Deleting the entry deletes every intention of that destination (as Consul does).
      this.#onIntentions?.(name, []);
      return;
    }
    if (this.#entries.delete(`${kind}/${name}`)) {
      this.#store.bump(configTopic(name), configTopic("*"));
    }
  }

  #entry(kind: string, name: string): Record<string, unknown> | undefined {
    return this.#entries.get(`${kind}/${name}`)?.entry;
  }

  #protocol(name: string): string {
    const sd = this.#entry("service-defaults", name)?.Protocol;
    const pd = (this.#entry("proxy-defaults", "global")?.Config as Record<string, unknown>)
      ?.protocol;
    return String(sd ?? pd ?? "tcp").toLowerCase();
  }

  /** Topics a compiled chain depends on, for its blocking index. */
  #visited = new Map<string, Set<string>>();

  /** The blocking index of a chain: the last change of any entry it used. */
  chainIndex(service: string): number {
    const names = this.#visited.get(service) ?? new Set([service]);
    return this.#store.topicIndex(configTopic("*"), ...[...names].map(configTopic));
  }

  /**
   * A subset's definition in the service's resolver, as Consul puts it in the target:
   * `{Filter, OnlyPassing}`, each omitted when empty.
   */
  #subset(service: string, subset: string): { Filter?: string; OnlyPassing?: boolean } {
    const subsets = this.#entry("service-resolver", service)?.Subsets as
      | Record<string, Record<string, unknown>>
      | undefined;
    const def = subsets?.[subset] ?? {};
    const filter = String(def.Filter ?? def.filter ?? "");
    const onlyPassing = (def.OnlyPassing ?? def.only_passing) === true;
    return { ...(filter ? { Filter: filter } : {}), ...(onlyPassing ? { OnlyPassing: true } : {}) };
  }

  /** Compiles the chain of `service` for the double's datacenter. */
  compile(service: string): CompiledDiscoveryChain {
    const dc = this.#datacenter;
    const td = this.#trustDomain();
    const visited = new Set<string>([service]);
    const nodes: Record<string, DiscoveryGraphNode> = {};
    const targets: Record<string, DiscoveryTarget> = {};
    let isDefault = true;

    const target = (svc: string, subset = "", datacenter = dc, timeout = "5s"): string => {
      const id = `${subset ? subset + "." : ""}${svc}.default.default.${datacenter}`;
      const sni = `${subset ? subset + "." : ""}${svc}.default.${datacenter}.internal.${td}`;
      targets[id] ??= {
        ID: id,
        Service: svc,
        ...(subset ? { ServiceSubset: subset } : {}),
        Namespace: "default",
        Partition: "default",
        Datacenter: datacenter,
        MeshGateway: {},
        Subset: subset ? this.#subset(svc, subset) : {},
        TransparentProxy: {},
        ConnectTimeout: timeout,
        SNI: sni,
        Name: sni,
      };
      return id;
    };

    const resolverNode = (svc: string, subset = "", datacenter = dc, depth = 0): string => {
      visited.add(svc);
      const resolver = this.#entry("service-resolver", svc);
      if (resolver) isDefault = false;
      const redirect = resolver?.Redirect as
        | { Service?: string; ServiceSubset?: string; Datacenter?: string }
        | undefined;
      if (redirect && depth < 8) {
        return resolverNode(
          redirect.Service ?? svc,
          redirect.ServiceSubset ?? "",
          redirect.Datacenter ?? datacenter,
          depth + 1,
        );
      }
      const timeoutMs = resolver?.ConnectTimeout
        ? parseGoDuration(String(resolver.ConnectTimeout))
        : 0;
      const timeout = formatGoDuration(timeoutMs || 5000);
      const effectiveSubset = subset || String(resolver?.DefaultSubset ?? "");
      const id = target(svc, effectiveSubset, datacenter, timeout);
      const key = `resolver:${id}`;
      if (nodes[key]) return key;
      const failover = (resolver?.Failover as Record<string, FailoverSpec> | undefined)?.[
        effectiveSubset || "*"
      ] ?? (resolver?.Failover as Record<string, FailoverSpec> | undefined)?.["*"];
      const failoverTargets: string[] = [];
      if (failover) {
        if (failover.Targets?.length) {
          for (const t of failover.Targets) {
            failoverTargets.push(
              target(t.Service ?? svc, t.ServiceSubset ?? "", t.Datacenter ?? datacenter, timeout),
            );
          }
        } else if (failover.Datacenters?.length) {
          for (const d of failover.Datacenters) {
            failoverTargets.push(
              target(failover.Service ?? svc, failover.ServiceSubset ?? "", d, timeout),
            );
          }
        } else if (failover.Service || failover.ServiceSubset) {
          failoverTargets.push(
            target(failover.Service ?? svc, failover.ServiceSubset ?? "", datacenter, timeout),
          );
        }
        for (const t of failoverTargets) visited.add(targets[t].Service);
      }
      nodes[key] = {
        Type: "resolver",
        Name: id,
        Resolver: {
          ...(resolver ? {} : { Default: true }),
          ConnectTimeout: timeout,
          Target: id,
          ...(failoverTargets.length ? { Failover: { Targets: failoverTargets } } : {}),
        },
        ...(resolver?.LoadBalancer ? { LoadBalancer: resolver.LoadBalancer } : {}),
      };
      return key;
    };

    const protocol = this.#protocol(service);
    let start: string;
    const splitter = L7.has(protocol) ? this.#entry("service-splitter", service) : undefined;
    if (splitter) {
      isDefault = false;
      const splits =
        (splitter.Splits as { Weight: number; Service?: string; ServiceSubset?: string }[])
          .map((s) => ({
            Weight: s.Weight,
            NextNode: resolverNode(s.Service ?? service, s.ServiceSubset ?? ""),
          }));
      start = `splitter:${service}.default.default`;
      nodes[start] = { Type: "splitter", Name: `${service}.default.default`, Splits: splits };
    } else {
      start = resolverNode(service);
    }
    if (protocol !== "tcp") isDefault = false;
    this.#visited.set(service, visited);
    return {
      ServiceName: service,
      Namespace: "default",
      Partition: "default",
      Datacenter: dc,
      ...(isDefault ? { Default: true } : {}),
      Protocol: protocol,
      StartNode: start,
      Nodes: nodes,
      Targets: targets,
      AutoVirtualIPs: null,
      ManualVirtualIPs: null,
    };
  }
}
