/**
 * The double's local services and checks: registration (with `Connect.SidecarService` sugar as
 * Consul applies it), deregistration, TTL and TCP checks, and the health entries
 * `/v1/health/connect/:service` returns.
 * @module
 */
import type {
  AgentService,
  CatalogNode,
  CheckDefinition,
  HealthCheck,
  ServiceEntry,
  ServiceRegistration,
} from "../agent/types.ts";
import { parseGoDuration } from "../agent/duration.ts";
import { type Timer, timer } from "../net/timers.ts";
import { BadRequest, type Schema, strictDecode } from "./strict.ts";
import type { Store } from "./store.ts";

const CHECK_SCHEMA: Schema = {
  CheckID: true,
  ID: true,
  Name: true,
  Notes: true,
  TTL: true,
  TCP: true,
  HTTP: true,
  Interval: true,
  Timeout: true,
  AliasService: true,
  AliasNode: true,
  Status: true,
  ServiceID: true,
  DeregisterCriticalServiceAfter: true,
  Method: true,
  Header: true,
  Body: true,
  TLSSkipVerify: true,
  TLSServerName: true,
  SuccessBeforePassing: true,
  FailuresBeforeCritical: true,
  FailuresBeforeWarning: true,
  Args: true,
  ScriptArgs: true,
  DockerContainerID: true,
  Shell: true,
  GRPC: true,
  GRPCUseTLS: true,
  H2PING: true,
  H2PingUseTLS: true,
  OutputMaxSize: true,
};
const UPSTREAM_SCHEMA: Schema = {
  DestinationType: true,
  DestinationNamespace: true,
  DestinationPartition: true,
  DestinationPeer: true,
  DestinationName: true,
  Datacenter: true,
  LocalBindAddress: true,
  LocalBindPort: true,
  LocalBindSocketPath: true,
  LocalBindSocketMode: true,
  Config: true,
  MeshGateway: true,
  CentrallyConfigured: true,
};
const PROXY_SCHEMA: Schema = {
  DestinationServiceName: true,
  DestinationServiceID: true,
  LocalServiceAddress: true,
  LocalServicePort: true,
  LocalServiceSocketPath: true,
  Mode: true,
  TransparentProxy: true,
  Config: true,
  Upstreams: UPSTREAM_SCHEMA,
  MeshGateway: true,
  Expose: true,
  AccessLogs: true,
  EnvoyExtensions: true,
};
const SERVICE_FIELDS: Schema = {
  Kind: true,
  ID: true,
  Name: true,
  Tags: true,
  Address: true,
  TaggedAddresses: true,
  Meta: true,
  Port: true,
  SocketPath: true,
  Check: CHECK_SCHEMA,
  Checks: CHECK_SCHEMA,
  Weights: true,
  Token: true,
  EnableTagOverride: true,
  Locality: true,
  Proxy: PROXY_SCHEMA,
};
/** What `PUT /v1/agent/service/register` accepts. */
export const REGISTRATION_SCHEMA: Schema = {
  ...SERVICE_FIELDS,
  Connect: { Native: true, SidecarService: SERVICE_FIELDS },
};

interface LocalCheck {
  check: HealthCheck;
  ttlMs?: number;
  tcp?: string;
  intervalMs?: number;
  aliasService?: string;
  /** The TTL's expiry, or the next TCP probe. */
  next?: Timer;
}

interface LocalService {
  service: AgentService;
  sidecarFor?: string;
  createIndex: number;
  modifyIndex: number;
}

/** Options of the catalog. */
export interface CatalogOptions {
  /** Node name. @default {"devagent"} */
  nodeName?: string;
  /** Node address. @default {"127.0.0.1"} */
  nodeAddress?: string;
  /** Datacenter. */
  datacenter: string;
  /** Overrides every TCP check's interval (tests use a short one). */
  tcpCheckIntervalMs?: number;
  /** Connects to `host:port` for TCP checks; resolves true when it answers. */
  probeTcp?: (hostPort: string) => Promise<boolean>;
}

/** A registration's check definitions: `Check`, then `Checks`. */
function checkDefinitions(body: ServiceRegistration): CheckDefinition[] {
  return [...(body.Check ? [body.Check] : []), ...(body.Checks ?? [])];
}

/** Topic names for the store. */
export const topics = {
  health: (name: string) => `health:${name}`,
  services: "services",
} as const;

/** Local services and checks of the double's single node. */
export class Catalog {
  /** The double's single node. */
  readonly node: CatalogNode;
  readonly #store: Store;
  readonly #options: CatalogOptions;
  readonly #services = new Map<string, LocalService>();
  readonly #checks = new Map<string, LocalCheck>();
  /** Virtual IPs by mesh service name, as Consul's catalog assigns them (240.0.0.0/4). */
  readonly #virtualIps = new Map<string, string>();
  readonly #freedVirtualIps: string[] = [];
  #virtualIpCounter = 0;
  /** Consul's `service_last_extinction` index: the last write that removed a name's last instance. */
  #lastExtinction?: number;
  #closed = false;

  /** Creates it; see the class documentation. */
  constructor(store: Store, options: CatalogOptions) {
    this.#store = store;
    this.#options = options;
    const name = options.nodeName ?? "devagent";
    const address = options.nodeAddress ?? "127.0.0.1";
    this.node = {
      ID: crypto.randomUUID(),
      Node: name,
      Address: address,
      Datacenter: options.datacenter,
      TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
      Meta: { "consul-network-segment": "", "consul-version": "1.22.7" },
      CreateIndex: 11,
      ModifyIndex: 11,
    };
  }

  /** A local service by instance ID. */
  get(id: string): AgentService | undefined {
    return this.#services.get(id)?.service;
  }

  /** All local services. */
  all(): AgentService[] {
    return [...this.#services.values()].map((s) => s.service);
  }

  /**
   * The virtual IP of a mesh service name: Consul's catalog gives one to the destination of each
   * registered connect proxy (and to each Connect-native service) on first registration, counting
   * up from 240.0.0.1, and frees it when the last instance named so is gone (freed IPs first).
   */
  virtualIp(name: string): string | undefined {
    return this.#virtualIps.get(name);
  }

  #assignVirtualIp(name: string): void {
    if (this.#virtualIps.has(name)) return;
    let ip = this.#freedVirtualIps.shift();
    if (!ip) {
      const n = ++this.#virtualIpCounter;
      ip = `${240 + (n >>> 24)}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
    }
    this.#virtualIps.set(name, ip);
  }

  /** The mesh name a service's health entry is listed under (destination for proxies). */
  #meshName(svc: AgentService): string | undefined {
    if (svc.Kind === "connect-proxy") return svc.Proxy?.DestinationServiceName;
    if (svc.Connect?.Native) return svc.Service;
    return undefined;
  }

  #touch(svc: AgentService, extra: string[] = []): void {
    const mesh = this.#meshName(svc);
    this.#store.bump(
      topics.services,
      `service:${svc.ID}`,
      ...(mesh ? [topics.health(mesh)] : []),
      topics.health(`plain:${svc.Service}`),
      ...extra,
    );
  }

  /** Registers a service as `PUT /v1/agent/service/register` does. */
  register(rawBody: unknown, opts: { replaceExistingChecks?: boolean } = {}): void {
    const body = strictDecode(rawBody, REGISTRATION_SCHEMA) as unknown as ServiceRegistration & {
      Connect?: { Native?: boolean; SidecarService?: Record<string, unknown> | null };
    };
    const parent = this.#validate(body);
    const sidecar = body.Connect?.SidecarService;
    let sidecarDef: ServiceRegistration | undefined;
    if (sidecar) {
      sidecarDef = this.#sidecarDefinition(parent, sidecar as Partial<ServiceRegistration>);
      this.#validate(sidecarDef);
    }
    // Every check is valid before anything is stored, so a refused registration leaves nothing
    // behind (Consul validates a registration's checks before it adds the service).
    for (const def of [body, ...(sidecarDef ? [sidecarDef] : [])].flatMap(checkDefinitions)) {
      this.#checkKind(def);
    }
    this.#store_(parent, body, opts.replaceExistingChecks ?? false);
    if (sidecarDef) {
      const sid = sidecarDef.ID!;
      this.#store_(this.#validate(sidecarDef), sidecarDef, false, parent.ID);
      this.#startChecks(sid);
    }
    this.#startChecks(parent.ID);
  }

  #validate(body: ServiceRegistration): AgentService {
    if (!body.Name) throw new BadRequest("Missing service name");
    if (body.Address === "0.0.0.0" || body.Address === "::" || body.Address === "[::]") {
      throw new BadRequest("Invalid service address");
    }
    if (body.Weights && (body.Weights.Passing ?? 0) < 1) {
      throw new BadRequest("Invalid Weights: Passing must be greater than 0");
    }
    const errors: string[] = [];
    if (body.Kind === "connect-proxy") {
      if (!body.Port && !body.SocketPath) {
        errors.push("Port or SocketPath must be set for a connect-proxy");
      }
      const dest = body.Proxy?.DestinationServiceName;
      if (!dest) errors.push("Proxy.DestinationServiceName must be set");
      else if (dest === "*") errors.push("Proxy.DestinationServiceName must not be a wildcard");
      if (body.Connect?.Native) errors.push("Connect.Native must not be set for a connect-proxy");
      const seen = new Set<string>();
      for (const u of body.Proxy?.Upstreams ?? []) {
        const type = u.DestinationType || "service";
        if (type !== "service" && type !== "prepared_query") {
          errors.push(`unknown upstream destination type: ${type}`);
        }
        if (!u.DestinationName) errors.push("upstream destination name must be set");
        else if (u.DestinationName === "*") {
          errors.push("upstream destination name must not be a wildcard");
        }
        if (!u.LocalBindPort === !u.LocalBindSocketPath) {
          errors.push(
            `upstream ${u.DestinationName}: exactly one of LocalBindPort or LocalBindSocketPath must be set`,
          );
        }
        const key = `${type}:${u.DestinationName}:${u.Datacenter ?? ""}`;
        if (seen.has(key)) errors.push(`upstreams cannot contain duplicates of ${key}`);
        seen.add(key);
      }
    }
    if (errors.length) {
      throw new BadRequest(
        `Validation failed: ${errors.length} error${errors.length > 1 ? "s" : ""} occurred:\n${
          errors.map((e) => `\t* ${e}`).join("\n")
        }\n\n`,
      );
    }
    const svc: AgentService = {
      ID: body.ID || body.Name,
      Service: body.Name,
      Tags: body.Tags ?? [],
      Meta: body.Meta ?? {},
      Port: body.Port ?? 0,
      Address: body.Address ?? "",
      Weights: { Passing: body.Weights?.Passing ?? 1, Warning: body.Weights?.Warning ?? 1 },
      EnableTagOverride: false,
      Datacenter: this.#options.datacenter,
    };
    if (body.Kind) svc.Kind = body.Kind;
    if (body.SocketPath) svc.SocketPath = body.SocketPath;
    if (body.Kind === "connect-proxy") {
      const p = body.Proxy ?? {};
      svc.Proxy = {
        DestinationServiceName: p.DestinationServiceName!,
        ...(p.DestinationServiceID ? { DestinationServiceID: p.DestinationServiceID } : {}),
        ...(p.LocalServiceAddress ? { LocalServiceAddress: p.LocalServiceAddress } : {}),
        ...(p.LocalServicePort ? { LocalServicePort: p.LocalServicePort } : {}),
        ...(p.LocalServiceSocketPath ? { LocalServiceSocketPath: p.LocalServiceSocketPath } : {}),
        ...(p.Mode ? { Mode: p.Mode } : {}),
        ...(p.Config && Object.keys(p.Config).length ? { Config: p.Config } : {}),
        ...(p.Upstreams?.length
          ? {
            Upstreams: p.Upstreams.map((u) => ({
              DestinationType: u.DestinationType || "service",
              ...u,
              MeshGateway: u.MeshGateway ?? {},
            })),
          }
          : {}),
        MeshGateway: p.MeshGateway ?? {},
        Expose: p.Expose ?? {},
      };
    }
    if (body.Connect?.Native) svc.Connect = { Native: true };
    return svc;
  }

  #sidecarDefinition(
    parent: AgentService,
    sc: Partial<ServiceRegistration>,
  ): ServiceRegistration {
    const id = `${parent.ID}-sidecar-proxy`;
    const existing = this.#services.get(id)?.service;
    let port = sc.Port || existing?.Port || 0;
    if (!port) {
      const used = new Set(this.all().filter((s) => s.ID !== id).map((s) => s.Port));
      for (let p = 21000; p <= 21255; p++) {
        if (!used.has(p)) {
          port = p;
          break;
        }
      }
      if (!port) {
        throw new BadRequest(
          "no port provided for sidecar_service and none left in the configured range [21000, 21255]",
          500,
        );
      }
    }
    const proxy = { ...(sc.Proxy ?? {}) };
    proxy.DestinationServiceName = parent.Service;
    proxy.DestinationServiceID = parent.ID;
    if (!proxy.LocalServiceSocketPath && !(proxy.LocalServiceAddress && proxy.LocalServicePort)) {
      if (parent.SocketPath) proxy.LocalServiceSocketPath = parent.SocketPath;
      else {
        proxy.LocalServiceAddress ??= "127.0.0.1";
        proxy.LocalServicePort ??= parent.Port;
      }
    }
    const address = sc.Address ?? parent.Address;
    const checks: CheckDefinition[] = sc.Check || sc.Checks?.length
      ? [...(sc.Check ? [sc.Check] : []), ...(sc.Checks ?? [])]
      : [
        {
          Name: "Connect Sidecar Listening",
          TCP: `${address || proxy.LocalServiceAddress || "127.0.0.1"}:${port}`,
          Interval: "10s",
        },
        { Name: `Connect Sidecar Aliasing ${parent.ID}`, AliasService: parent.ID },
      ];
    return {
      ...sc,
      Kind: "connect-proxy",
      ID: id,
      Name: sc.Name || `${parent.Service}-sidecar-proxy`,
      Address: address,
      Port: port,
      Tags: sc.Tags?.length ? sc.Tags : parent.Tags,
      Meta: sc.Meta && Object.keys(sc.Meta).length ? sc.Meta : parent.Meta,
      Proxy: proxy,
      Check: null,
      Checks: checks,
    };
  }

  #store_(
    svc: AgentService,
    body: ServiceRegistration,
    replaceChecks: boolean,
    sidecarFor?: string,
  ): void {
    const existing = this.#services.get(svc.ID);
    const index = this.#store.index + 1;
    this.#services.set(svc.ID, {
      service: svc,
      sidecarFor,
      createIndex: existing?.createIndex ?? index,
      modifyIndex: index,
    });
    const defs = checkDefinitions(body);
    const keep = new Set<string>();
    defs.forEach((def, i) => {
      const id = def.CheckID ||
        (defs.length === 1 ? `service:${svc.ID}` : `service:${svc.ID}:${i + 1}`);
      keep.add(id);
      this.#addCheck(svc, id, def);
    });
    if (replaceChecks || sidecarFor) {
      for (const [id, c] of this.#checks) {
        if (c.check.ServiceID === svc.ID && !keep.has(id)) this.#removeCheck(id);
      }
    }
    const mesh = this.#meshName(svc);
    if (mesh) this.#assignVirtualIp(mesh);
    this.#touch(svc);
  }

  /** A check definition's type and timings; a BadRequest with Consul's text for a bad one. */
  #checkKind(def: CheckDefinition): { type: string; ttlMs?: number; intervalMs?: number } {
    let type = "";
    let ttlMs: number | undefined;
    let intervalMs: number | undefined;
    try {
      if (def.TTL) {
        type = "ttl";
        ttlMs = parseGoDuration(def.TTL);
      } else if (def.TCP) {
        type = "tcp";
        intervalMs = parseGoDuration(def.Interval ?? "10s");
      } else if (def.AliasService) type = "alias";
    } catch (err) {
      throw new BadRequest(`Invalid check: ${(err as Error).message}`);
    }
    if (def.Status && !["passing", "warning", "critical"].includes(def.Status)) {
      throw new BadRequest("Status for checks must 'passing', 'warning', 'critical'");
    }
    return { type, ttlMs, intervalMs };
  }

  #addCheck(svc: AgentService, id: string, def: CheckDefinition): void {
    const { type, ttlMs, intervalMs } = this.#checkKind(def);
    const old = this.#checks.get(id);
    old?.next?.clear();
    const index = this.#store.index + 1;
    this.#checks.set(id, {
      check: {
        Node: this.node.Node,
        CheckID: id,
        Name: def.Name || `Service '${svc.Service}' check`,
        Status: def.Status ?? (type === "alias" ? "passing" : "critical"),
        Notes: def.Notes ?? "",
        Output: "",
        ServiceID: svc.ID,
        ServiceName: svc.Service,
        ServiceTags: [],
        Type: type,
        Interval: def.Interval ?? "",
        Timeout: "",
        ExposedPort: 0,
        Definition: {},
        CreateIndex: old?.check.CreateIndex ?? index,
        ModifyIndex: index,
      },
      ttlMs,
      tcp: def.TCP,
      intervalMs,
      aliasService: def.AliasService,
    });
  }

  #removeCheck(id: string): void {
    const c = this.#checks.get(id);
    c?.next?.clear();
    this.#checks.delete(id);
  }

  #startChecks(serviceId: string): void {
    for (const c of this.#checks.values()) {
      if (c.check.ServiceID !== serviceId) continue;
      if (c.ttlMs !== undefined) this.#armTtl(c);
      if (c.tcp) void this.#runTcp(c);
    }
  }

  #armTtl(c: LocalCheck): void {
    c.next?.clear();
    if (this.#closed) return;
    c.next = timer(c.ttlMs ?? 0, () => {
      const last = c.check.Output;
      this.#setStatus(
        c,
        "critical",
        last ? `TTL expired (last output before timeout follows): ${last}` : "TTL expired",
      );
    });
  }

  async #runTcp(c: LocalCheck): Promise<void> {
    if (this.#closed || this.#checks.get(c.check.CheckID) !== c) return;
    const probe = this.#options.probeTcp;
    const ok = probe ? await probe(c.tcp!) : false;
    if (this.#closed || this.#checks.get(c.check.CheckID) !== c) return;
    this.#setStatus(
      c,
      ok ? "passing" : "critical",
      ok ? `TCP connect ${c.tcp}: Success` : `dial tcp ${c.tcp}: connect: connection refused`,
    );
    c.next = timer(
      this.#options.tcpCheckIntervalMs ?? c.intervalMs ?? 10_000,
      () => void this.#runTcp(c),
    );
  }

  #setStatus(c: LocalCheck, status: string, output: string): void {
    if (c.check.Status === status && c.check.Output === output) return;
    const svc = this.#services.get(c.check.ServiceID)?.service;
    c.check = { ...c.check, Status: status, Output: output.slice(0, 4096) };
    if (svc) {
      c.check.ModifyIndex = this.#store.index + 1;
      this.#touch(svc);
      // Alias checks of sidecars follow their parent.
      for (const other of this.#checks.values()) {
        if (other.aliasService === svc.ID) this.#refreshAlias(other);
      }
    }
  }

  #refreshAlias(c: LocalCheck): void {
    const statuses = [...this.#checks.values()].filter((x) => x.check.ServiceID === c.aliasService)
      .map((x) => x.check.Status);
    const status = statuses.includes("critical")
      ? "critical"
      : statuses.includes("warning")
      ? "warning"
      : "passing";
    this.#setStatus(
      c,
      status,
      status === "passing" ? "All checks passing." : "Aliased checks failing.",
    );
  }

  /** `PUT /v1/agent/check/{pass,warn,fail}/:id` and `…/update/:id`. */
  updateCheck(id: string, status: "passing" | "warning" | "critical", output: string): void {
    const c = this.#checks.get(id);
    if (!c) {
      throw new BadRequest(
        `Unknown check ID "${id}". Ensure that the check ID is passed, not the check name.`,
        404,
      );
    }
    if (c.ttlMs === undefined) {
      throw new BadRequest(`CheckID "${id}" does not have associated TTL`, 500);
    }
    this.#setStatus(c, status, output);
    this.#armTtl(c);
  }

  /** Test hook: sets any check's status. */
  forceCheck(id: string, status: "passing" | "warning" | "critical", output = ""): void {
    const c = this.#checks.get(id);
    if (!c) throw new Error(`no check ${id}`);
    this.#setStatus(c, status, output);
  }

  /** `PUT /v1/agent/service/deregister/:id`; removes sidecars created by sugar too. */
  deregister(id: string): void {
    const entry = this.#services.get(id);
    if (!entry) {
      throw new BadRequest(
        `Unknown service ID "${id}". Ensure that the service ID is passed, not the service name.`,
        404,
      );
    }
    for (const [sid, s] of this.#services) {
      if (s.sidecarFor === id) this.#remove(sid);
    }
    this.#remove(id);
  }

  #remove(id: string): void {
    const entry = this.#services.get(id);
    if (!entry) return;
    this.#services.delete(id);
    for (const [cid, c] of this.#checks) if (c.check.ServiceID === id) this.#removeCheck(cid);
    const name = entry.service.Service;
    const extinct = ![...this.#services.values()].some((s) => s.service.Service === name);
    const ip = this.#virtualIps.get(name);
    if (ip && extinct) {
      this.#virtualIps.delete(name);
      this.#freedVirtualIps.push(ip);
    }
    // Set before the bump: a woken health read answers it.
    if (extinct) this.#lastExtinction = this.#store.index + 1;
    this.#touch(entry.service);
  }

  /** Whether `name` has mesh endpoints (sidecars of it or Connect-native instances), healthy or not. */
  hasMeshEndpoints(name: string): boolean {
    for (const { service } of this.#services.values()) {
      if (this.#meshName(service) === name) return true;
    }
    return false;
  }

  /**
   * The index Consul answers a health read of `name` with when the catalog holds no mesh
   * endpoint of it (`checkServiceNodesTxn` → `maxIndexAndWatchChForService` with no instances):
   * the service last-extinction index, which moves when any service name loses its last
   * instance and not when one registers; before any extinction, the index of the plain service
   * `name` if it has instances, else the catalog's last write (the raft index if none).
   */
  emptyHealthIndex(name: string): number {
    if (this.#lastExtinction !== undefined) return this.#lastExtinction;
    const plain = topics.health(`plain:${name}`);
    if ([...this.#services.values()].some((s) => s.service.Service === name)) {
      return this.#store.topicIndex(plain);
    }
    return this.#store.seen(topics.services)
      ? this.#store.topicIndex(topics.services)
      : this.#store.index;
  }

  /** Checks of a service. */
  checksOf(serviceId: string): HealthCheck[] {
    return [...this.#checks.values()].filter((c) => c.check.ServiceID === serviceId).map((c) =>
      c.check
    );
  }

  /** Health entries of the mesh endpoints of `name` (sidecars of it, native instances). */
  healthConnect(name: string, passingOnly: boolean): ServiceEntry[] {
    const serf: HealthCheck = {
      Node: this.node.Node,
      CheckID: "serfHealth",
      Name: "Serf Health Status",
      Status: "passing",
      Notes: "",
      Output: "Agent alive and reachable",
      ServiceID: "",
      ServiceName: "",
      ServiceTags: [],
      Type: "",
      Interval: "",
      Timeout: "",
      ExposedPort: 0,
      Definition: {},
      CreateIndex: 11,
      ModifyIndex: 11,
    };
    const entries: ServiceEntry[] = [];
    for (const { service: s, createIndex, modifyIndex } of this.#services.values()) {
      if (this.#meshName(s) !== name) continue;
      const checks = [serf, ...this.checksOf(s.ID)];
      if (passingOnly && checks.some((c) => c.Status !== "passing")) continue;
      entries.push({
        Node: this.node,
        Service: {
          ...(s.Kind ? { Kind: s.Kind } : {}),
          ID: s.ID,
          Service: s.Service,
          Tags: s.Tags,
          Address: s.Address,
          TaggedAddresses: {
            ...(this.#virtualIps.has(name)
              ? { "consul-virtual": { Address: this.#virtualIps.get(name)!, Port: s.Port } }
              : {}),
            ...s.TaggedAddresses,
          },
          // The catalog keeps an empty map as null (1.22.7).
          Meta: Object.keys(s.Meta).length ? s.Meta : null,
          Port: s.Port,
          Weights: s.Weights,
          EnableTagOverride: s.EnableTagOverride,
          Proxy: s.Proxy
            ? { ...s.Proxy, Mode: s.Proxy.Mode ?? "" }
            : { Mode: "", MeshGateway: {}, Expose: {} },
          Connect: s.Connect ?? {},
          PeerName: "",
          CreateIndex: createIndex,
          ModifyIndex: modifyIndex,
        },
        Checks: checks,
      });
    }
    // The streaming backend sorts by node name, then service ID.
    return entries.sort((a, b) => a.Service.ID.localeCompare(b.Service.ID));
  }

  /** Stops every check timer. */
  close(): void {
    this.#closed = true;
    for (const c of this.#checks.values()) c.next?.clear();
  }
}
