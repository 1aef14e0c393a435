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
import { contentHash, type Store } from "./store.ts";
import type { SourceInput } from "./intentions.ts";

const KINDS = new Set([
  "service-resolver",
  "service-splitter",
  "service-router",
  "service-defaults",
  "proxy-defaults",
  "service-intentions",
]);
const L7 = new Set(["http", "http2", "grpc"]);

/** What config entries need from the intentions store (the double's `Intentions`). */
export interface IntentionsStore {
  /** A `service-intentions` entry written: validates and replaces the destination's sources. */
  replaceDestination(destination: string, sources: SourceInput[]): void;
  /** A `service-intentions` entry deleted. */
  deleteDestination(destination: string): void;
  /** Destinations with L7 (`Permissions`) intentions, which need an HTTP-like protocol. */
  l7Destinations(): string[];
}

/**
 * Consul CE's decoding of Enterprise keys in a config entry (`Namespace`, `Partition`, and in a
 * `service-intentions` entry each source's): one message per key as written.
 */
function enterpriseKeyErrors(entry: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const check = (object: Record<string, unknown>, prefix: string) => {
    for (const key of Object.keys(object)) {
      const k = key.toLowerCase();
      if (k === "namespace") {
        errors.push(
          `invalid config key "${prefix}${key}", namespaces are a consul enterprise feature`,
        );
      } else if (k === "partition") errors.push(`invalid config key "${prefix}${key}"`);
    }
  };
  const sources = Object.entries(entry).find(([k]) => k.toLowerCase() === "sources")?.[1];
  if (entry.Kind === "service-intentions" && Array.isArray(sources)) {
    sources.forEach((src, i) => {
      if (src && typeof src === "object") check(src as Record<string, unknown>, `Sources[${i}].`);
    });
  }
  check(entry, "");
  return errors;
}

/** Store topic of a service's config entries. */
export const configTopic = (name: string): string => `config:${name}`;

interface StoredEntry {
  entry: ConfigEntry;
  createIndex: number;
  modifyIndex: number;
}

/** A Go duration (string, or a number of nanoseconds) as integer nanoseconds; 0 when unset. */
function durationNs(value: unknown): number {
  if (typeof value === "number") return Math.trunc(value);
  if (typeof value !== "string" || value === "") return 0;
  try {
    return Math.round(parseGoDuration(value) * 1e6);
  } catch {
    return 0;
  }
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
    intentions?: IntentionsStore,
    virtualIp?: (service: string) => string | undefined,
  ) {
    this.#store = store;
    this.#datacenter = datacenter;
    this.#trustDomain = trustDomain;
    this.#intentions = intentions;
    this.#virtualIp = virtualIp;
  }

  readonly #intentions?: IntentionsStore;
  readonly #virtualIp?: (service: string) => string | undefined;

  /** `PUT /v1/config`. */
  put(body: unknown): void {
    if (!body || typeof body !== "object") throw new BadRequest("Request decoding failed: EOF");
    const entry = body as ConfigEntry;
    if (typeof entry.Kind !== "string" || !KINDS.has(entry.Kind)) {
      throw new BadRequest(`invalid config entry kind: ${entry.Kind}`);
    }
    const decodeErrors = enterpriseKeyErrors(entry);
    if (decodeErrors.length) {
      const n = decodeErrors.length;
      throw new BadRequest(
        `Request decoding failed: ${n} error${n > 1 ? "s" : ""} occurred:\n${
          decodeErrors.map((e) => `\t* ${e}`).join("\n")
        }\n\n`,
      );
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
      const sources = Array.isArray(entry.Sources) ? entry.Sources as SourceInput[] : [];
      this.#intentions?.replaceDestination(entry.Name, sources);
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
    this.#keepL7Protocols(key, existing, entry.Name);
    this.#store.bump(configTopic(entry.Name), configTopic("*"));
  }

  /**
   * Consul refuses a write that would leave an L7 intention's destination without an HTTP-like
   * protocol (`validateProposedConfigEntryInServiceGraph`): checked with the entry at `key`
   * already changed; on refusal it is put back as it was (`previous`).
   */
  #keepL7Protocols(key: string, previous: StoredEntry | undefined, name: string): void {
    if (!key.startsWith("service-defaults/") && !key.startsWith("proxy-defaults/")) return;
    const destinations = this.#intentions?.l7Destinations() ?? [];
    // The entry's own service first, as Consul checks it first.
    const order = [...destinations.filter((d) => d === name), ...destinations];
    for (const destination of order) {
      const protocol = this.#protocol(destination);
      if (L7.has(protocol)) continue;
      if (previous) this.#entries.set(key, previous);
      else this.#entries.delete(key);
      throw new BadRequest(
        `service "${destination}" has protocol "${protocol}", which is incompatible with L7 intentions permissions`,
        500,
      );
    }
  }

  /**
   * `GET /v1/config/:kind/:name`, with Consul's `Hash` (a uint64 of the entry's content; here
   * 52 bits of its FNV hash, so it stays exact in JSON).
   */
  get(
    kind: string,
    name: string,
  ): (ConfigEntry & { Hash: number; CreateIndex: number; ModifyIndex: number }) | undefined {
    const e = this.#entries.get(`${kind}/${name}`);
    return e && {
      ...e.entry,
      Hash: parseInt(contentHash(e.entry).padStart(16, "0").slice(-13), 16),
      CreateIndex: e.createIndex,
      ModifyIndex: e.modifyIndex,
    };
  }

  /** Whether any config entry was ever written (an unwritten table answers the raft index). */
  get anyWritten(): boolean {
    return this.#store.seen(configTopic("*"));
  }

  /** The index of the config-entries table: its last write, or the raft index if none. */
  get tableIndex(): number {
    return this.anyWritten ? this.#store.topicIndex(configTopic("*")) : this.#store.index;
  }

  /** `DELETE /v1/config/:kind/:name`: idempotent. */
  delete(kind: string, name: string): void {
    if (!KINDS.has(kind)) throw new BadRequest(`invalid config entry kind: ${kind}`);
    if (kind === "service-intentions") {
      // Deleting the entry deletes every intention of that destination (as Consul does).
      this.#intentions?.deleteDestination(name);
      return;
    }
    const key = `${kind}/${name}`;
    const previous = this.#entries.get(key);
    if (this.#entries.delete(key)) {
      this.#keepL7Protocols(key, previous, name);
      this.#store.bump(configTopic(name), configTopic("*"));
    }
  }

  #entry(kind: string, name: string): Record<string, unknown> | undefined {
    return this.#entries.get(`${kind}/${name}`)?.entry;
  }

  /**
   * The protocol of `name`'s discovery chain: its `service-defaults` `Protocol`, else the
   * global `proxy-defaults` `Config.protocol`, else `tcp` (lower-cased).
   */
  protocol(name: string): string {
    return this.#protocol(name);
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

  /**
   * Compiles the chain of `service` as Consul's `discoverychain.Compile` does, for the double's
   * datacenter or the one `compile-dc` names: each target carries the `ConnectTimeout` of its own
   * service's resolver (a failover target to another service gets that service's, 5 s by
   * default), resolver nodes carry `RequestTimeout` in nanoseconds, failover targets pass through
   * their own resolver's redirect and default subset without becoming nodes, and the chain
   * carries the service's virtual IP (`AutoVirtualIPs`) once the catalog assigned one.
   */
  compile(service: string, datacenter: string = this.#datacenter): CompiledDiscoveryChain {
    const dc = datacenter;
    const td = this.#trustDomain();
    const visited = new Set<string>([service]);
    const nodes: Record<string, DiscoveryGraphNode> = {};
    const targets: Record<string, DiscoveryTarget> = {};
    let isDefault = true;

    const targetId = (svc: string, subset: string, datacenter: string) =>
      `${subset ? subset + "." : ""}${svc}.default.default.${datacenter}`;

    const target = (svc: string, subset = "", datacenter = dc, timeout = "5s"): string => {
      const id = targetId(svc, subset, datacenter);
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

    /** Consul's `rewriteTarget`: another service resets the subset unless one is named. */
    const rewrite = (
      from: { svc: string; subset: string; dc: string },
      to: { Service?: string; ServiceSubset?: string; Datacenter?: string },
    ) => {
      const svc = to.Service && to.Service !== from.svc ? to.Service : from.svc;
      return {
        svc,
        subset: to.ServiceSubset || (svc !== from.svc ? "" : from.subset),
        dc: to.Datacenter || from.dc,
      };
    };

    /** Consul's `getResolverNode`: returns the resolved target's ID. */
    const resolve = (
      at: { svc: string; subset: string; dc: string },
      forFailover = false,
      depth = 0,
    ): string => {
      const { svc } = at;
      visited.add(svc);
      const resolver = this.#entry("service-resolver", svc);
      if (resolver) isDefault = false;
      const redirect = resolver?.Redirect as
        | { Service?: string; ServiceSubset?: string; Datacenter?: string }
        | undefined;
      if (redirect && depth < 8) {
        const next = rewrite(at, redirect);
        if (targetId(next.svc, next.subset, next.dc) !== targetId(svc, at.subset, at.dc)) {
          return resolve(next, forFailover, depth + 1);
        }
      }
      const defaultSubset = String(resolver?.DefaultSubset ?? "");
      if (!at.subset && defaultSubset && depth < 8) {
        return resolve({ ...at, subset: defaultSubset }, forFailover, depth + 1);
      }
      const timeoutMs = resolver?.ConnectTimeout
        ? parseGoDuration(String(resolver.ConnectTimeout))
        : 0;
      const timeout = formatGoDuration(timeoutMs > 0 ? timeoutMs : 5000);
      const id = target(svc, at.subset, at.dc, timeout);
      const key = `resolver:${id}`;
      if (nodes[key] || forFailover) return id;
      const requestTimeoutNs = durationNs(resolver?.RequestTimeout);
      const node: DiscoveryGraphNode = {
        Type: "resolver",
        Name: id,
        Resolver: {
          ...(resolver ? {} : { Default: true }),
          ConnectTimeout: timeout,
          ...(requestTimeoutNs ? { RequestTimeout: requestTimeoutNs } : {}),
          Target: id,
        },
        ...(resolver?.LoadBalancer ? { LoadBalancer: resolver.LoadBalancer } : {}),
      };
      // Recorded before the failover is followed, so a loop ends here (as Consul does).
      nodes[key] = node;
      const specs = resolver?.Failover as Record<string, FailoverSpec> | undefined;
      const failover = specs?.[at.subset] ?? specs?.["*"];
      if (!failover) return id;
      let candidates: { svc: string; subset: string; dc: string }[];
      if (failover.Datacenters?.length) {
        candidates = failover.Datacenters.map((d) =>
          rewrite(at, {
            Service: failover.Service,
            ServiceSubset: failover.ServiceSubset,
            Datacenter: d,
          })
        );
      } else if (failover.Targets?.length) {
        candidates = failover.Targets.map((t) => rewrite(at, t));
      } else {
        candidates = [rewrite(at, failover)];
      }
      const failoverTargets = candidates
        .filter((c) => targetId(c.svc, c.subset, c.dc) !== id) // never fail over to yourself
        .map((c) => resolve(c, true));
      if (failoverTargets.length) node.Resolver!.Failover = { Targets: failoverTargets };
      return id;
    };
    const resolverNode = (svc: string, subset = ""): string =>
      `resolver:${resolve({ svc, subset, dc })}`;

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
    const vip = this.#virtualIp?.(service);
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
      // Consul reads the service's virtual IP into the chain: none is `null`, one is `[ip]`
      // with an empty (not null) manual list.
      ...(vip
        ? { AutoVirtualIPs: [vip], ManualVirtualIPs: [] }
        : { AutoVirtualIPs: null, ManualVirtualIPs: null }),
    };
  }
}
