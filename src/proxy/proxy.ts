/**
 * Orchestration on top of a {@linkcode MeshRuntime} (leaf, roots, intentions, events, close):
 * the registration watch → configuration diff → listeners. Upstream listeners are opened and
 * closed one by one as the registration changes, without touching the others' connections; the
 * public listener follows its address; leaf and roots apply to new connections at once and
 * never drop established ones.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import { AgentError } from "../agent/errors.ts";
import type { ServiceRegistration } from "../agent/types.ts";
import type { AdminSubject } from "../admin/subject.ts";
import { type InboundGateway, startInbound } from "../inbound/gateway.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import type { EventHub } from "../events/hub.ts";
import type { LifecyclePhase, ProxyEvent } from "../events/lifecycle.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { formatAddress } from "../net/sockets.ts";
import { sleep } from "../net/timers.ts";
import { type OutboundTls, startUpstream, type UpstreamListener } from "../outbound/listener.ts";
import { describeFailure } from "../runtime/feed.ts";
import { MeshRuntime } from "../runtime/mesh_runtime.ts";
import type { TlsMaterial } from "../trust/material.ts";
import {
  type ProxyWorkers,
  shareableConfig,
  WorkerPool,
  type WorkerThread,
} from "../workers/pool.ts";
import { configFromService, type ProxyConfig, ProxyConfigError, upstreamKey } from "./config.ts";

/** Limits and timeouts of the proxy. */
export interface ProxyLimits {
  /** TLS handshake deadline (inbound). @default {10000} */
  handshakeTimeoutMs?: number;
  /** Authorize deadline; past it connections are refused. @default {5000} */
  authorizeTimeoutMs?: number;
  /** Use the agent's last answer for a caller this long when it cannot answer; 0 = never. */
  authorizeCacheTtlMs?: number;
  /**
   * Use the agent's last answer for a caller this long without asking again (forgotten on any
   * intention or roots change; needs the intentions watch, i.e. `revokeGraceMs` ≥ 0); 0 = always
   * ask. @default {0}
   */
  authorizeFreshMs?: number;
  /** Local application connect deadline, unless the registration sets one. @default {1000} */
  localConnectTimeoutMs?: number;
  /** Idle timeout for proxied connections; 0 = none. @default {0} */
  idleTimeoutMs?: number;
  /** Most concurrent inbound connections; 0 = unlimited. @default {0} */
  maxInbound?: number;
  /** Most concurrent connections per upstream; 0 = unlimited. @default {0} */
  maxOutbound?: number;
  /**
   * Re-check open inbound connections when intentions change, closing denied callers'
   * connections after this grace period; -1 turns re-checking off. @default {0}
   */
  revokeGraceMs?: number;
  /**
   * When the leaf is this close to expiry without a renewal, warn and ask the agent again (the
   * admin app's readiness uses the same margin). @default {10 % of its lifetime, at most 1 h}
   */
  leafExpiryMarginMs?: number;
  /**
   * The TLS stack of upstream (TCP) listeners (`-outbound-tls`): `node` (`node:net` +
   * `node:tls`), or `native` (`Deno.listen` + `Deno.connectTls`: less CPU per byte and per dial,
   * but Nagle stays on for the mesh side, ≈ 45 ms on a new connection's first write). See
   * `src/outbound/native_tls.ts`. @default {"node"}
   */
  outboundTls?: OutboundTls;
}

/** Registering ourselves, as `consul connect proxy -register` does. */
export interface SelfRegistration {
  /** The registered ID (`<service>-proxy[-<register-id>]`). */
  id: string;
  /** The registered name (`<service>-proxy`). */
  name: string;
  /** Heartbeat interval. @default {10000} */
  heartbeatMs?: number;
}

/** Options of {@linkcode startProxy}. Exactly one of `proxyId`, `sidecarFor`, `config`. */
export interface ProxyOptions {
  /** The agent client. */
  agent: AgentClient;
  /** Use this `connect-proxy` registration (watched). */
  proxyId?: string;
  /** Find the sidecar registered for this service instance ID (watched). */
  sidecarFor?: string;
  /** Run from flags, without a registration. */
  config?: ProxyConfig;
  /**
   * With `config`: register ourselves and keep a TTL check passing (needs its
   * `publicListener`: the address to register).
   */
  register?: SelfRegistration;
  /** Limits and timeouts. */
  limits?: ProxyLimits;
  /** Log sink. */
  log?: Logger;
  /** Connection events. */
  onEvent?: (event: ConnectionEvent) => void;
  /**
   * Serve the listeners from `count` threads (`-workers`): `count - 1` Deno workers run this
   * proxy's configuration beside it on the same ports (`SO_REUSEPORT`), their agent calls joined
   * with this proxy's in `relay` (which `agent` must send its calls through), their connection
   * events published in {@linkcode Proxy.events}. See `src/workers/pool.ts`.
   */
  workers?: ProxyWorkers;
  /**
   * A worker thread's proxy (set by `src/workers/worker_main.ts`): listeners bound with
   * `SO_REUSEPORT`, and only those threads can share (TCP on a fixed port).
   */
  dataPlane?: boolean;
}

/** The proxy's lifecycle state (the same as a Connect-native service's). */
export type ProxyPhase = LifecyclePhase;

/** Finds the single `connect-proxy` whose `DestinationServiceID` is `serviceId`. */
export async function findSidecar(agent: AgentClient, serviceId: string): Promise<string> {
  const services = await agent.services({ filter: "Kind == `connect-proxy`" });
  const matches = Object.values(services).filter((s) =>
    s.Kind === "connect-proxy" &&
    s.Proxy?.DestinationServiceID?.toLowerCase() === serviceId.toLowerCase()
  );
  const [match] = matches;
  if (!match) {
    // With ACLs on, the agent leaves out what the token cannot read, and says nothing.
    throw new ProxyConfigError(
      "-sidecar-for",
      `No sidecar proxy registered for ${serviceId} (or none this ACL token can see: it needs ` +
        "service:read on the sidecar's name)",
    );
  }
  if (matches.length > 1) {
    throw new ProxyConfigError(
      "-sidecar-for",
      `More than one sidecar proxy registered for ${serviceId} (${
        matches.map((m) => m.ID).join(", ")
      }); use -proxy-id`,
    );
  }
  return match.ID;
}

/** The public listener's settings, as applied to the live listener. */
interface PublicSettings {
  bind: { hostname: string; port: number };
  service: string;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/** A bind failure in one line: the address and what the system said. */
function bindFailure(bind: { hostname: string; port: number }, err: unknown): string {
  const code = (err as { code?: string }).code;
  const why = code === "EADDRINUSE"
    ? "address already in use"
    : code === "EACCES"
    ? "permission denied"
    : code === "EADDRNOTAVAIL"
    ? "address not available on this host"
    : (err as Error).message;
  return `cannot bind ${formatAddress(bind)}: ${why}`;
}

/** A wildcard bind address: registered as "" so that the agent fills in the node's address. */
const WILDCARD = new Set(["0.0.0.0", "::", "[::]"]);

/** A running proxy. */
export class Proxy implements AsyncDisposable, AdminSubject {
  readonly #o: ProxyOptions;
  readonly #log: Logger;
  /** Leaf, roots, intentions, events, problems, phase, loops and close: shared with native. */
  readonly #runtime: MeshRuntime;
  /** Public listeners replaced by a rebind, still draining their connections. */
  readonly #retired = new Set<InboundGateway>();
  readonly #upstreams = new Map<string, UpstreamListener>();
  #inbound?: InboundGateway;
  /** What the live public listener was started or updated with. */
  #inboundSettings?: PublicSettings;
  #config?: ProxyConfig;
  #applying: Promise<void> = Promise.resolve();
  readonly #ready = Promise.withResolvers<void>();
  #becomingReady = false;
  /** The self-registration loop (`register`), stopped by close before it deregisters. */
  #registration?: Promise<void>;
  #registerAttempted = false;
  /** The worker threads (`workers`), once started. */
  #pool?: WorkerPool;

  private constructor(options: ProxyOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#runtime = new MeshRuntime({
      agent: options.agent,
      log: this.#log,
      onEvent: options.onEvent,
      gateways: () => [...(this.#inbound ? [this.#inbound] : []), ...this.#retired],
      revokeGraceMs: options.limits?.revokeGraceMs,
      authorizeTimeoutMs: options.limits?.authorizeTimeoutMs,
      leafExpiryMarginMs: options.limits?.leafExpiryMarginMs,
    });
    this.#ready.promise.catch(() => {});
  }

  /** The live TLS material. */
  get material(): TlsMaterial {
    return this.#runtime.material;
  }

  /** Everything that happens in this proxy (connections and lifecycle), for metrics and admin. */
  get events(): EventHub<ProxyEvent> {
    return this.#runtime.events;
  }

  /** `Date.now()` when the proxy started. */
  get startedAt(): number {
    return this.#runtime.startedAt;
  }

  /** The most recent event of a type (e.g. the last leaf renewal), if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined {
    return this.#runtime.lastEvent(type);
  }

  /** The agent client the proxy watches through. */
  get agent(): AgentClient {
    return this.#o.agent;
  }

  /**
   * Why the proxy does not serve as configured, one line each, for `/ready`: no configuration
   * yet, what it is waiting for and what the agent answered (`leaf:
   * /v1/agent/connect/ca/leaf/web: HTTP 403: Permission denied`), a leaf or roots it refused, a
   * public listener it could not bind or that is not up, upstream listeners that are not up.
   */
  get problems(): string[] {
    const config = this.#config;
    const problems: string[] = [];
    if (!config) problems.push("no configuration yet");
    else if (config.publicListener && config.app && !this.#inbound) {
      problems.push("public listener is not up");
    }
    problems.push(...this.#runtime.problems);
    if (config && this.#upstreams.size < config.upstreams.length) {
      problems.push(
        `${config.upstreams.length - this.#upstreams.size} upstream listener(s) not up`,
      );
    }
    if (this.#pool) problems.push(...this.#pool.problems);
    return problems;
  }

  #problem(source: string, text: string | undefined): void {
    this.#runtime.problem(source, text);
  }

  /** Publishes a connection or lifecycle event (and passes connection events to `onEvent`). */
  get #emit(): MeshRuntime["emit"] {
    return this.#runtime.emit;
  }

  /**
   * Starts a proxy. Resolves at once (after finding the sidecar's registration for
   * `sidecarFor`, which fails fast as in Consul): configuration, leaf and roots load in the
   * background, retried with backoff, and {@linkcode Proxy.problems} says what it waits for.
   */
  static async start(options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(options);
    await proxy.#start();
    return proxy;
  }

  /** The lifecycle phase. */
  get phase(): ProxyPhase {
    return this.#runtime.phase;
  }

  /**
   * Resolves when leaf, roots and configuration are loaded and listeners are up (and, with
   * `register`, after the first registration attempt). Rejects when the public listener cannot
   * be bound at start (as `consul connect proxy` fails), or when the proxy closes first.
   */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** The current configuration. */
  get config(): ProxyConfig | undefined {
    return this.#config;
  }

  /** The service the proxy fronts, once configured. */
  get service(): string | undefined {
    return this.#config?.service;
  }

  /** The registration the proxy runs from (`proxyId`, or the one `sidecarFor` found). */
  get proxyId(): string | undefined {
    return this.#config?.proxyId;
  }

  /** The public listener, when up. */
  get inbound(): InboundGateway | undefined {
    return this.#inbound;
  }

  /** The public listener as a list (empty when down); one replaced by a rebind is not listed. */
  get inboundListeners(): InboundGateway[] {
    return this.#inbound ? [this.#inbound] : [];
  }

  /** The upstream listeners. */
  get upstreams(): UpstreamListener[] {
    return [...this.#upstreams.values()];
  }

  /** The worker threads serving beside this one (`workers`); empty without. */
  get workers(): readonly WorkerThread[] {
    return this.#pool?.threads ?? [];
  }

  /** Whether listeners bind with `SO_REUSEPORT` (threads share them). */
  get #reusePort(): boolean {
    return !!this.#o.dataPlane || (this.#o.workers?.count ?? 1) > 1;
  }

  get #signal(): AbortSignal {
    return this.#runtime.signal;
  }

  async #start(): Promise<void> {
    const o = this.#o;
    const modes = [o.proxyId, o.sidecarFor, o.config].filter((x) => x !== undefined).length;
    if (modes !== 1) {
      throw new ProxyConfigError("mode", "give exactly one of -proxy-id, -sidecar-for or -service");
    }
    if (o.proxyId === "") throw new ProxyConfigError("proxyId", "is empty");
    if (o.sidecarFor === "") throw new ProxyConfigError("sidecarFor", "is empty");
    // The agent refuses a connect-proxy without a port: the retries would never end (the CLI
    // says the same of -register without -listen).
    if (o.register && o.config && !o.config.publicListener) {
      throw new ProxyConfigError("register", "needs a public listener (the address to register)");
    }
    // Like `consul connect proxy`, a sidecar that cannot be found is an error at once; a
    // registration that does not exist yet (-proxy-id) is waited for.
    const id = o.sidecarFor !== undefined ? await findSidecar(o.agent, o.sidecarFor) : o.proxyId;
    if (o.workers) this.#startWorkers(o.workers, id);
    this.#runtime.watchRoots();
    if (o.config) {
      this.#runtime.spawn(
        this.#apply(o.config).catch((err) =>
          this.#log.log("error", "cannot apply the configuration", { error: String(err) })
        ),
      );
    } else {
      this.#problem("registration", `registration: waiting for /v1/agent/service/${id}`);
      this.#runtime.spawn(this.#watchService(id!));
    }
    this.#runtime.spawn(this.#whenMaterialReady());
  }

  /** Starts the worker threads of `workers` (none for a count of 1). */
  #startWorkers(workers: ProxyWorkers, proxyId: string | undefined): void {
    if (!Number.isInteger(workers.count) || workers.count < 1) {
      throw new ProxyConfigError("workers", `${workers.count} must be a whole number ≥ 1`);
    }
    if (this.#o.dataPlane) throw new ProxyConfigError("workers", "a worker starts no workers");
    if (workers.count === 1) return;
    this.#pool = new WorkerPool({
      ...workers,
      proxy: this.#o.config
        ? { config: this.#o.config, limits: this.#o.limits }
        : { proxyId, limits: this.#o.limits },
      logger: this.#log,
      // Stamped here: the main proxy's metrics, access log and admin app count every thread.
      emit: (event, worker) => this.#emit(Object.assign({}, event, { worker })),
    });
    this.#pool.start();
  }

  async #whenMaterialReady(): Promise<void> {
    if (await this.#runtime.until(this.material.ready)) await this.#markReady();
  }

  /** Turns `ready` once configuration, leaf, roots and the public listener are all there. */
  async #markReady(): Promise<void> {
    const config = this.#config;
    if (this.phase !== "starting" || this.#becomingReady || this.#signal.aborted) return;
    if (!config || !this.material.isReady) return;
    if (config.publicListener && config.app && !this.#inbound) return;
    this.#becomingReady = true;
    const reg = this.#o.register;
    if (reg) {
      // Registered once we can serve: clients are never sent to a proxy still waiting.
      const body = this.#registrationBody(config, reg);
      await this.#registerOnce(body, reg);
      this.#registration = this.#keepRegistered(body, reg);
    }
    if (!this.#runtime.markReady()) return;
    this.#ready.resolve();
    this.#log.log("info", "proxy ready", {
      service: config.service,
      public: this.#inbound ? formatAddress(this.#inbound.address) : "disabled",
      upstreams: this.#upstreams.size,
    });
  }

  /**
   * Follows the registration `id`: the first answer configures the proxy, later changes are
   * applied. Until the first usable answer, failures are retried with backoff (as Consul's
   * proxy does for a `-proxy-id` not registered yet) and reported as a problem.
   */
  async #watchService(id: string): Promise<void> {
    const signal = this.#signal;
    let last: string | undefined;
    try {
      for await (
        const { value } of this.#o.agent.watchService(id, {
          onError: (err, info) => {
            if (!this.#config) {
              this.#problem("registration", `registration: ${describeFailure(err)}`);
            }
            this.#log.log(
              "warn",
              this.#config
                ? "registration watch failed; keeping current configuration"
                : "cannot read the proxy registration yet; retrying",
              { proxyId: id, error: describeFailure(err), retryInMs: info.retryInMs },
            );
            this.#emit({
              type: "watch_error",
              watch: `service:${id}`,
              error: String(err),
              retryInMs: info.retryInMs,
            });
          },
        }).subscribe(signal)
      ) {
        const text = JSON.stringify(value);
        if (text === last) continue;
        const first = last === undefined;
        last = text;
        try {
          if (!first) this.#log.log("info", "proxy registration changed", { proxyId: id });
          const config = configFromService(value);
          this.#problem("registration", undefined);
          await this.#apply(config);
          if (!first) this.#emit({ type: "config", proxyId: id, detail: "registration changed" });
        } catch (err) {
          if (!this.#config) {
            this.#problem("registration", `registration: ${(err as Error).message}`);
          }
          this.#log.log("error", "ignoring unusable registration", {
            proxyId: id,
            error: String(err),
          });
        }
      }
    } catch (err) {
      if (!signal.aborted) {
        this.#log.log("error", "registration watch stopped", { error: String(err) });
      }
    }
  }

  /** Applies a configuration: diff upstreams, (re)bind the public listener. Serialized. */
  #apply(config: ProxyConfig): Promise<void> {
    const run = this.#applying.then(() => this.#applyNow(config));
    this.#applying = run.catch(() => {});
    return run;
  }

  async #applyNow(config: ProxyConfig): Promise<void> {
    if (this.#signal.aborted) return;
    const o = this.#o;
    // A worker thread leaves to the main thread the listeners threads cannot share.
    if (o.dataPlane) config = shareableConfig(config);
    const limits = o.limits ?? {};
    this.#runtime.watchLeaf(config.service);
    // Upstreams: close removed or changed ones, open new ones; others are not touched.
    const wanted = new Map(config.upstreams.map((u) => [upstreamKey(u), u]));
    for (const [key, listener] of this.#upstreams) {
      if (!wanted.has(key)) {
        this.#upstreams.delete(key);
        this.#log.log("info", "closing upstream listener", { upstream: listener.upstream.name });
        await listener.close(0);
      }
    }
    for (const [key, u] of wanted) {
      if (this.#upstreams.has(key)) continue;
      try {
        this.#upstreams.set(
          key,
          await startUpstream({
            agent: o.agent,
            material: this.material,
            upstream: u,
            maxConnections: limits.maxOutbound,
            idleTimeoutMs: limits.idleTimeoutMs,
            reusePort: this.#reusePort,
            outboundTls: limits.outboundTls,
            log: this.#log,
            onEvent: this.#emit,
            onEndpoints: (change) => this.#emit({ type: "endpoints", ...change }),
          }),
        );
      } catch (err) {
        this.#log.log("error", "cannot open upstream listener", {
          upstream: u.name,
          bind: formatAddress(u.bind),
          error: (err as Error).message,
        });
      }
    }
    this.#config = config;
    await this.#applyPublic(config);
    await this.#markReady();
  }

  /**
   * The public listener follows the configuration. Settings that need no new socket (service,
   * handshake and connect timeouts, application address) are applied to the live listener; a
   * new address gets a new listener while the old one drains its connections. Rebinding the
   * same port closes the old listening socket first (two sockets cannot listen on one port);
   * when the new bind fails, the old listener keeps (or resumes) serving and the failure is
   * logged and reported in {@linkcode Proxy.problems}.
   */
  async #applyPublic(config: ProxyConfig): Promise<void> {
    const limits = this.#o.limits ?? {};
    const live = this.#inbound;
    const had = this.#inboundSettings;
    if (!config.publicListener || !config.app) {
      this.#inbound = undefined;
      this.#inboundSettings = undefined;
      this.#problem("public listener", undefined);
      if (live) this.#retire(live, had);
      return;
    }
    const app = config.app;
    const want: PublicSettings = {
      bind: config.publicListener,
      service: config.service,
      handshakeTimeoutMs: config.handshakeTimeoutMs ?? limits.handshakeTimeoutMs,
      connectTimeoutMs: config.localConnectTimeoutMs ?? limits.localConnectTimeoutMs,
    };
    this.#runtime.watchIntentions(config.service);
    const inPlace = (gw: InboundGateway) => {
      gw.update(want);
      gw.setApp(app);
    };
    if (live && had && sameBind(had.bind, want.bind)) {
      inPlace(live);
      this.#inboundSettings = want;
      this.#problem("public listener", undefined);
      return;
    }
    if (!(await this.#runtime.until(this.material.ready))) return;
    // Two sockets cannot listen on one port (0.0.0.0:P and 127.0.0.1:P neither): the old one
    // stops accepting first; its open connections go on.
    const samePort = !!live && !!had && had.bind.port === want.bind.port;
    if (samePort) live!.pause();
    try {
      this.#inbound = await startInbound({
        material: this.material,
        service: config.service,
        // A 4xx from authorize (a 403: the token lacks service:write or intention:read on our
        // service) is not an outage: every caller is refused until the token changes, so
        // /ready says why until the agent answers again.
        authorize: async (req, opts) => {
          try {
            const result = await this.#o.agent.authorize(req, opts);
            this.#problem("authorize", undefined);
            return result;
          } catch (err) {
            if (err instanceof AgentError && !err.retryable) {
              const why = `authorize: ${describeFailure(err)}; every inbound connection is refused`;
              this.#problem("authorize", why);
            }
            throw err;
          }
        },
        intentions: () => this.#runtime.intentions,
        bind: want.bind,
        app,
        handshakeTimeoutMs: want.handshakeTimeoutMs,
        authorizeTimeoutMs: limits.authorizeTimeoutMs,
        authorizeCacheTtlMs: limits.authorizeCacheTtlMs,
        // Without the intentions watch nothing would forget a fresh answer: only with it.
        authorizeFreshMs: (limits.revokeGraceMs ?? 0) < 0 ? 0 : limits.authorizeFreshMs,
        connectTimeoutMs: want.connectTimeoutMs,
        idleTimeoutMs: limits.idleTimeoutMs,
        maxConnections: limits.maxInbound,
        reusePort: this.#reusePort,
        log: this.#log,
        onEvent: this.#emit,
      });
      this.#inboundSettings = want;
      this.#problem("public listener", undefined);
      if (live) this.#retire(live, had);
    } catch (err) {
      const failure = bindFailure(want.bind, err);
      if (!live) {
        this.#problem("public listener", `public listener: ${failure}`);
        // At start there is nothing to keep serving: fail like `consul connect proxy` (whoever
        // awaits `ready` reports it, once).
        if (this.phase === "starting") {
          this.#ready.reject(new Error(`public listener: ${failure}`));
        } else this.#log.log("error", "cannot start the public listener", { error: failure });
        return;
      }
      try {
        if (samePort) await live.resume();
      } catch (again) {
        const lost = bindFailure(had!.bind, again);
        this.#inbound = undefined;
        this.#inboundSettings = undefined;
        this.#retire(live, had);
        this.#problem("public listener", `public listener: ${failure}; old address: ${lost}`);
        this.#log.log("error", "public listener lost: cannot bind the new address or the old", {
          error: failure,
          old: lost,
        });
        return;
      }
      // The rest of the configuration still applies to the listener that stays.
      inPlace(live);
      this.#inboundSettings = { ...want, bind: had!.bind };
      const still = `still serving on ${formatAddress(had!.bind)}`;
      this.#problem("public listener", `public listener: ${failure}; ${still}`);
      this.#log.log("error", `cannot move the public listener; ${still}`, { error: failure });
    }
  }

  /**
   * A replaced public listener stops accepting at once; connections it accepted still finish
   * their handshake and authorization, then drain on their own.
   */
  #retire(old: InboundGateway, settings: PublicSettings | undefined): void {
    old.pause();
    this.#retired.add(old);
    const limits = this.#o.limits ?? {};
    const settling = (settings?.handshakeTimeoutMs ?? limits.handshakeTimeoutMs ?? 10_000) +
      (limits.authorizeTimeoutMs ?? 5000) +
      (settings?.connectTimeoutMs ?? limits.localConnectTimeoutMs ?? 1000);
    this.#runtime.spawn(
      sleep(settling, this.#signal)
        .then(() => old.close(24 * 3600_000))
        .finally(() => this.#retired.delete(old)),
    );
  }

  #registrationBody(config: ProxyConfig, reg: SelfRegistration): ServiceRegistration {
    const bind = config.publicListener;
    return {
      Kind: "connect-proxy",
      ID: reg.id,
      Name: reg.name,
      Address: bind && !WILDCARD.has(bind.hostname) ? bind.hostname : "",
      Port: bind?.port ?? 0,
      Proxy: { DestinationServiceName: config.service },
      Check: {
        CheckID: `${reg.id}-ttl`,
        Name: "proxy heartbeat",
        TTL: "30s",
        Notes: "meshgate heartbeats this check.",
        Status: "passing" as const,
      },
      Checks: null,
    };
  }

  /** One registration attempt; a failure is logged and reported, and retried by the loop. */
  async #registerOnce(body: ServiceRegistration, reg: SelfRegistration): Promise<boolean> {
    this.#registerAttempted = true;
    try {
      await this.#o.agent.register(body, { signal: this.#signal });
      this.#problem("register", undefined);
      this.#log.log("info", "registered proxy", { id: reg.id });
      return true;
    } catch (err) {
      if (this.#signal.aborted) return false;
      const why = describeFailure(err);
      this.#problem("register", `register ${reg.id}: ${why}`);
      this.#log.log("warn", "cannot register the proxy; retrying", { id: reg.id, error: why });
      return false;
    }
  }

  /**
   * Keeps the registration: heartbeats the TTL check, registers again when the agent lost it
   * (or the first attempt failed, as `consul connect proxy -register` retries), until close.
   */
  async #keepRegistered(body: ServiceRegistration, reg: SelfRegistration): Promise<void> {
    const agent = this.#o.agent;
    const signal = this.#signal;
    const checkId = `${reg.id}-ttl`;
    let registered = this.#runtime.problemOf("register") === undefined;
    for (let beats = 1; await sleep(reg.heartbeatMs ?? 10_000, signal); beats++) {
      if (!registered) {
        registered = await this.#registerOnce(body, reg);
        continue;
      }
      try {
        // Every third beat (30 s), make sure the agent still knows us (it may have restarted).
        if (beats % 3 === 0) {
          try {
            await agent.service(reg.id, { signal });
          } catch (err) {
            if (!(err instanceof AgentError && err.status === 404)) throw err;
            this.#log.log("warn", "agent lost our registration; registering again", {
              id: reg.id,
            });
            registered = await this.#registerOnce(body, reg);
            if (!registered) continue;
          }
        }
        await agent.setCheck(checkId, "pass", { signal });
      } catch (err) {
        if (signal.aborted) break;
        this.#log.log("warn", "heartbeat failed", { id: reg.id, error: describeFailure(err) });
      }
    }
  }

  /**
   * Graceful shutdown: deregister first if we registered (so that clients stop being sent
   * here), then stop accepting and drain open connections up to `drainMs`, stop every watch.
   * Idempotent: every caller awaits the same drain (the first caller's `drainMs`).
   */
  close(drainMs = 0): Promise<void> {
    return this.#runtime.close({
      drain: (stop) => this.#drain(drainMs, stop),
      stopped: () => this.#log.log("info", "proxy stopped"),
    });
  }

  async #drain(drainMs: number, stop: () => void): Promise<void> {
    this.#log.log("info", "proxy draining", { drainMs });
    stop();
    this.#ready.reject(new Error("proxy closed before it was ready"));
    await this.#registration;
    if (this.#o.register && this.#registerAttempted) await this.#deregister(this.#o.register);
    await this.#applying;
    await Promise.all([
      this.#pool?.close(drainMs),
      this.#inbound?.close(drainMs),
      ...[...this.#retired].map((l) => l.close(drainMs)),
      ...[...this.#upstreams.values()].map((u) => u.close(drainMs)),
    ]);
    this.#upstreams.clear();
  }

  async #deregister(reg: SelfRegistration): Promise<void> {
    for (let i = 0; i < 3; i++) {
      try {
        await this.#o.agent.deregister(reg.id);
        this.#log.log("info", "deregistered proxy", { id: reg.id });
        return;
      } catch (err) {
        if (err instanceof AgentError && err.status === 404) return; // not (or no longer) there
        this.#log.log("warn", "deregister failed", {
          error: describeFailure(err),
          attempt: i + 1,
        });
        if (i < 2) await sleep(500);
      }
    }
  }

  /** Same as {@linkcode Proxy.close} without draining. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function sameBind(
  a: { hostname: string; port: number },
  b: { hostname: string; port: number },
): boolean {
  return a.hostname === b.hostname && a.port === b.port;
}

/**
 * Starts a proxy.
 *
 * @example
 * ```ts
 * import { AgentClient, startProxy } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * // Usually from the sidecar's registration: startProxy({ agent, sidecarFor: "web-1" }).
 * // Here from settings, as the -service flags give them:
 * await using proxy = await startProxy({
 *   agent,
 *   config: {
 *     service: "web",
 *     publicListener: { hostname: "127.0.0.1", port: 0 }, // 0: any free port
 *     app: { hostname: "127.0.0.1", port: 8080 },
 *     upstreams: [{ type: "service", name: "db", bind: { hostname: "127.0.0.1", port: 0 } }],
 *   },
 * });
 * await proxy.ready;
 * console.log(proxy.phase, proxy.upstreams.map((u) => u.name)); // ready [ "upstream:db" ]
 * ```
 */
export function startProxy(options: ProxyOptions): Promise<Proxy> {
  return Proxy.start(options);
}
