/**
 * Orchestration: watches (registration, leaf, roots) → configuration diff → listeners. Upstream
 * listeners are opened and closed one by one as the registration changes, without touching the
 * others' connections; the public listener follows its address; leaf and roots apply to new
 * connections at once and never drop established ones.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import { AgentError } from "../agent/errors.ts";
import type { AgentService, Intention } from "../agent/types.ts";
import { type InboundGateway, startInbound } from "../inbound/gateway.ts";
import type { ConnectionEvent } from "../inbound/refusal.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { formatAddress } from "../net/sockets.ts";
import { startUpstream, type UpstreamListener } from "../outbound/listener.ts";
import { TlsMaterial } from "../trust/material.ts";
import { configFromService, type ProxyConfig, ProxyConfigError, upstreamKey } from "./config.ts";
import { EventHub, type LifecycleEvent, type ProxyEvent } from "./events.ts";
import { feedLeaf, feedRoots } from "./feed.ts";
import { reauthorizeOnChange } from "../inbound/reauthorize.ts";

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
  /** With `config`: register ourselves and keep a TTL check passing. */
  register?: SelfRegistration;
  /** Limits and timeouts. */
  limits?: ProxyLimits;
  /** Log sink. */
  log?: Logger;
  /** Connection events. */
  onEvent?: (event: ConnectionEvent) => void;
}

const CONNECTION_EVENTS = new Set(["accepted", "refused", "closed", "dial_failed", "revoked"]);

/** The proxy's lifecycle state. */
export type ProxyPhase = "starting" | "ready" | "draining" | "stopped";

/** Finds the single `connect-proxy` whose `DestinationServiceID` is `serviceId`. */
export async function findSidecar(agent: AgentClient, serviceId: string): Promise<string> {
  const services = await agent.services({ filter: "Kind == `connect-proxy`" });
  const matches = Object.values(services).filter((s) =>
    s.Kind === "connect-proxy" &&
    s.Proxy?.DestinationServiceID?.toLowerCase() === serviceId.toLowerCase()
  );
  if (matches.length === 0) {
    throw new ProxyConfigError("-sidecar-for", `No sidecar proxy registered for ${serviceId}`);
  }
  if (matches.length > 1) {
    throw new ProxyConfigError(
      "-sidecar-for",
      `More than one sidecar proxy registered for ${serviceId} (${
        matches.map((m) => m.ID).join(", ")
      }); use -proxy-id`,
    );
  }
  return matches[0].ID;
}

/** A running proxy. */
export class Proxy implements AsyncDisposable {
  /** The live TLS material. */
  readonly material: TlsMaterial = new TlsMaterial();
  /** Everything that happens in this proxy (connections and lifecycle), for metrics and admin. */
  readonly events: EventHub<ProxyEvent> = new EventHub<ProxyEvent>();
  /** `Date.now()` when the proxy started. */
  readonly startedAt: number = Date.now();
  readonly #o: ProxyOptions;
  readonly #log: Logger;
  readonly #controller = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  /** Public listeners replaced by a rebind, still draining their connections. */
  readonly #retired = new Set<InboundGateway>();
  readonly #upstreams = new Map<string, UpstreamListener>();
  #inbound?: InboundGateway;
  #config?: ProxyConfig;
  #leafService?: string;
  #leafStop?: AbortController;
  #reauthService?: string;
  /** The latest intentions of our service, from the re-authorization watch. */
  #intentions?: readonly Intention[];
  #reauthStop?: AbortController;
  #phase: ProxyPhase = "starting";
  #applying: Promise<void> = Promise.resolve();
  readonly #ready = Promise.withResolvers<void>();
  #heartbeat?: ReturnType<typeof setInterval>;

  private constructor(options: ProxyOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLogger;
    this.#ready.promise.catch(() => {});
  }

  readonly #last = new Map<ProxyEvent["type"], ProxyEvent>();

  /** The most recent event of a type (e.g. the last leaf renewal), if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined {
    return this.#last.get(type) as Extract<ProxyEvent, { type: K }> | undefined;
  }

  /** The agent client the proxy watches through. */
  get agent(): AgentClient {
    return this.#o.agent;
  }

  /** Publishes a connection or lifecycle event (and passes connection events to `onEvent`). */
  #emit = (event: ConnectionEvent | LifecycleEvent): void => {
    const stamped = { ...event, at: Date.now() };
    this.#last.set(event.type, stamped);
    this.events.publish(stamped);
    if (CONNECTION_EVENTS.has(event.type)) this.#o.onEvent?.(event as ConnectionEvent);
  };

  #setPhase(phase: ProxyPhase): void {
    this.#phase = phase;
    this.#emit({ type: "phase", phase });
  }

  /** Starts a proxy; resolves once its configuration is known (listeners come up after). */
  static async start(options: ProxyOptions): Promise<Proxy> {
    const proxy = new Proxy(options);
    await proxy.#start();
    return proxy;
  }

  /** The lifecycle phase. */
  get phase(): ProxyPhase {
    return this.#phase;
  }

  /** Resolves when leaf, roots and configuration are loaded and listeners are up. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** The current configuration. */
  get config(): ProxyConfig | undefined {
    return this.#config;
  }

  /** The public listener, when up. */
  get inbound(): InboundGateway | undefined {
    return this.#inbound;
  }

  /** The upstream listeners. */
  get upstreams(): UpstreamListener[] {
    return [...this.#upstreams.values()];
  }

  #spawn(p: Promise<void>): void {
    this.#loops.add(p);
    p.finally(() => this.#loops.delete(p));
  }

  async #start(): Promise<void> {
    const o = this.#o;
    const modes = [o.proxyId, o.sidecarFor, o.config].filter((x) => x !== undefined).length;
    if (modes !== 1) {
      throw new ProxyConfigError("mode", "give exactly one of -proxy-id, -sidecar-for or -service");
    }
    this.#spawn(feedRoots(this.#feed(this.#controller.signal)));
    if (o.config) {
      await this.#apply(o.config);
      if (o.register) await this.#registerSelf(o.config, o.register);
    } else {
      const id = o.proxyId ?? await findSidecar(o.agent, o.sidecarFor!);
      const first = await o.agent.service(id);
      await this.#apply(configFromService(first.value));
      this.#spawn(this.#watchService(id, first.value));
    }
    this.#spawn(this.#whenReady());
  }

  async #whenReady(): Promise<void> {
    await this.material.ready;
    await this.#applying;
    if (this.#phase === "starting") {
      this.#setPhase("ready");
      this.#ready.resolve();
      this.#log.log("info", "proxy ready", {
        service: this.#config?.service,
        public: this.#inbound ? formatAddress(this.#inbound.address) : "disabled",
        upstreams: this.#upstreams.size,
      });
    }
  }

  #feed(signal: AbortSignal) {
    return {
      agent: this.#o.agent,
      material: this.material,
      signal,
      log: this.#log,
      emit: this.#emit,
    };
  }

  #watchLeaf(service: string): void {
    if (this.#leafService === service) return;
    this.#leafStop?.abort();
    const stop = new AbortController();
    this.#leafStop = stop;
    this.#leafService = service;
    const signal = AbortSignal.any([this.#controller.signal, stop.signal]);
    this.#spawn(
      feedLeaf({
        ...this.#feed(signal),
        service,
        expiryMarginMs: this.#o.limits?.leafExpiryMarginMs,
      }),
    );
  }

  /** Re-authorizes open inbound connections when the intentions of `service` change. */
  #watchIntentions(service: string): void {
    const grace = this.#o.limits?.revokeGraceMs ?? 0;
    if (grace < 0 || this.#reauthService === service) return;
    this.#reauthStop?.abort();
    const stop = new AbortController();
    this.#reauthStop = stop;
    this.#reauthService = service;
    this.#intentions = undefined;
    this.#spawn(reauthorizeOnChange({
      agent: this.#o.agent,
      service,
      gateways: () => [...(this.#inbound ? [this.#inbound] : []), ...this.#retired],
      graceMs: grace,
      authorizeTimeoutMs: this.#o.limits?.authorizeTimeoutMs,
      signal: AbortSignal.any([this.#controller.signal, stop.signal]),
      log: this.#log,
      emit: this.#emit,
      onIntentions: (list) => {
        if (this.#reauthService === service) this.#intentions = list;
      },
    }));
  }

  async #watchService(id: string, first: AgentService): Promise<void> {
    const signal = this.#controller.signal;
    let last = JSON.stringify(first);
    try {
      for await (
        const { value } of this.#o.agent.watchService(id, {
          onError: (err, info) => {
            this.#log.log("warn", "registration watch failed; keeping current configuration", {
              proxyId: id,
              error: String(err),
            });
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
        last = text;
        try {
          this.#log.log("info", "proxy registration changed", { proxyId: id });
          await this.#apply(configFromService(value));
          this.#emit({ type: "config", proxyId: id, detail: "registration changed" });
        } catch (err) {
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
    if (this.#controller.signal.aborted) return;
    const o = this.#o;
    const limits = o.limits ?? {};
    this.#watchLeaf(config.service);
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
    // Public listener: rebind when its address changes; follow the application address.
    const prev = this.#config;
    this.#config = config;
    const samePublic =
      JSON.stringify(prev?.publicListener) === JSON.stringify(config.publicListener) &&
      prev?.service === config.service &&
      prev?.localConnectTimeoutMs === config.localConnectTimeoutMs &&
      prev?.handshakeTimeoutMs === config.handshakeTimeoutMs;
    if (this.#inbound && samePublic) {
      if (config.app) this.#inbound.setApp(config.app);
      return;
    }
    const old = this.#inbound;
    this.#inbound = undefined;
    if (config.publicListener && config.app) {
      this.#watchIntentions(config.service);
      await this.material.ready;
      if (this.#controller.signal.aborted) return;
      this.#inbound = await startInbound({
        material: this.material,
        service: config.service,
        authorize: (req, opts) => o.agent.authorize(req, opts),
        intentions: () => this.#intentions,
        bind: config.publicListener,
        app: config.app,
        handshakeTimeoutMs: config.handshakeTimeoutMs ?? limits.handshakeTimeoutMs,
        authorizeTimeoutMs: limits.authorizeTimeoutMs,
        authorizeCacheTtlMs: limits.authorizeCacheTtlMs,
        // Without the intentions watch nothing would forget a fresh answer: only with it.
        authorizeFreshMs: (limits.revokeGraceMs ?? 0) < 0 ? 0 : limits.authorizeFreshMs,
        connectTimeoutMs: config.localConnectTimeoutMs ?? limits.localConnectTimeoutMs,
        idleTimeoutMs: limits.idleTimeoutMs,
        maxConnections: limits.maxInbound,
        log: this.#log,
        onEvent: this.#emit,
      });
    }
    // The old listener stops accepting; its connections finish on their own.
    if (old) {
      this.#retired.add(old);
      this.#spawn(old.close(24 * 3600_000).finally(() => this.#retired.delete(old)));
    }
  }

  async #registerSelf(config: ProxyConfig, reg: SelfRegistration): Promise<void> {
    const agent = this.#o.agent;
    const checkId = `${reg.id}-ttl`;
    const body = {
      Kind: "connect-proxy",
      ID: reg.id,
      Name: reg.name,
      Address: config.publicListener?.hostname ?? "",
      Port: config.publicListener?.port ?? 0,
      Proxy: { DestinationServiceName: config.service },
      Check: {
        CheckID: checkId,
        Name: "proxy heartbeat",
        TTL: "30s",
        Notes: "meshgate heartbeats this check.",
        Status: "passing" as const,
      },
      Checks: null,
    };
    await agent.register(body);
    this.#log.log("info", "registered proxy", { id: reg.id });
    let beats = 0;
    this.#heartbeat = setInterval(async () => {
      try {
        // Every third beat (30 s), make sure the agent still knows us (it may have restarted).
        if (++beats % 3 === 0) {
          try {
            await agent.service(reg.id);
          } catch (err) {
            if (err instanceof AgentError && err.status === 404) {
              this.#log.log("warn", "agent lost our registration; registering again", {
                id: reg.id,
              });
              await agent.register(body);
            } else throw err;
          }
        }
        await agent.setCheck(checkId, "pass");
      } catch (err) {
        this.#log.log("warn", "heartbeat failed", { id: reg.id, error: String(err) });
      }
    }, reg.heartbeatMs ?? 10_000);
  }

  /**
   * Graceful shutdown: stop accepting, drain open connections up to `drainMs`, deregister if
   * we registered, stop every watch.
   */
  async close(drainMs = 0): Promise<void> {
    if (this.#phase === "stopped" || this.#phase === "draining") return;
    this.#setPhase("draining");
    this.#log.log("info", "proxy draining", { drainMs });
    clearInterval(this.#heartbeat);
    this.#controller.abort();
    this.#ready.reject(new Error("proxy closed before it was ready"));
    await this.#applying;
    await Promise.all([
      this.#inbound?.close(drainMs),
      ...[...this.#retired].map((l) => l.close(drainMs)),
      ...[...this.#upstreams.values()].map((u) => u.close(drainMs)),
    ]);
    this.#upstreams.clear();
    if (this.#o.register) {
      for (let i = 0; i < 3; i++) {
        try {
          await this.#o.agent.deregister(this.#o.register.id);
          break;
        } catch (err) {
          this.#log.log("warn", "deregister failed", { error: String(err), attempt: i + 1 });
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
    await Promise.all([...this.#loops]);
    this.#setPhase("stopped");
    this.#log.log("info", "proxy stopped");
  }

  /** Same as {@linkcode Proxy.close} without draining. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a proxy.
 *
 * @example
 * ```ts ignore
 * import { AgentClient, startProxy } from "@meshgate/meshgate";
 * await using proxy = await startProxy({ agent: new AgentClient(), sidecarFor: "web-1" });
 * await proxy.ready;
 * ```
 */
export function startProxy(options: ProxyOptions): Promise<Proxy> {
  return Proxy.start(options);
}
