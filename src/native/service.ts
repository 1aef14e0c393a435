/**
 * Connect-native services: `await connect({ service: "api" })` gives a handle that keeps its
 * leaf and roots current (blocking queries), serves mTLS (HTTP or raw TCP) with per-connection
 * authorization, and dials or fetches upstreams by name over verified mTLS — no sidecar.
 * @module
 */
import type tls from "node:tls";
import type { AgentClient } from "../agent/client.ts";
import type { Intention } from "../agent/types.ts";
import { createDenoAgentClient } from "../transport/agent_client.ts";
import {
  type AuthorizedConnection,
  type InboundGateway,
  startInbound,
} from "../inbound/gateway.ts";
import { reauthorizeOnChange } from "../inbound/reauthorize.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { UpstreamConnector } from "../outbound/connector.ts";
import type { UpstreamListener } from "../outbound/listener.ts";
import type { ProxyConfig } from "../proxy/config.ts";
import { EventHub } from "../events/hub.ts";
import type { LifecycleEvent, ProxyEvent } from "../events/lifecycle.ts";
import { feedLeaf, feedRoots } from "../proxy/feed.ts";
import type { ProxyPhase } from "../proxy/proxy.ts";
import { TlsMaterial } from "../trust/material.ts";
import { createMeshFetch, dialThrough, type MeshFetch } from "./http_client.ts";
import { httpOverConnections, type MeshHandler } from "./http_server.ts";
import { parseMeshHost } from "./names.ts";

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** The service this process is. */
  service: string;
  /** The agent; default: one configured from `CONSUL_HTTP_*` like the Consul CLI. */
  agent?: AgentClient;
  /** Log sink. */
  log?: Logger;
  /** Authorize deadline for inbound connections; past it they are refused. @default {5000} */
  authorizeTimeoutMs?: number;
  /** TLS handshake deadline for inbound connections. @default {10000} */
  handshakeTimeoutMs?: number;
  /** How long `connect()` waits for the first leaf and roots. @default {30000} */
  readyTimeoutMs?: number;
  /**
   * `fetch`: how long a pooled connection may stay idle before it is closed; keep it below
   * the servers' keep-alive timeout. @default {30000}
   */
  fetchIdleTimeoutMs?: number;
}

/** Where and how to serve. */
export interface ServeOptions {
  /** Port; 0 picks a free one. */
  port: number;
  /** Address to bind. @default {"0.0.0.0"} */
  hostname?: string;
  /** Most concurrent connections; 0 = unlimited. @default {0} */
  maxConnections?: number;
  /**
   * HTTP (`serve`): how long an idle keep-alive connection stays open before the server closes
   * it (advertised in `Keep-Alive: timeout=…`; Deno's node:http waits a second longer); 0 = no
   * limit. Clients should give up idle connections sooner (the mesh `fetch` does after 30 s,
   * or a second before the advertised timeout). @default {65000}
   */
  keepAliveTimeoutMs?: number;
}

/** A running mTLS server of a Connect-native service. */
export interface MeshServer extends AsyncDisposable {
  /** The bound address (register it as the service's port with `Connect.Native`). */
  readonly address: { hostname: string; port: number };
  /** Stops accepting; open connections get `drainMs`, then are closed. */
  close(drainMs?: number): Promise<void>;
}

/** A raw mTLS listener: authorized connections, one after another. */
export interface MeshListener extends MeshServer, AsyncIterable<AuthorizedConnection> {}

/**
 * A Connect-native service. Created by {@linkcode connect}.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@meshgate/meshgate";
 * await using svc = await connect({ service: "api" });
 * svc.serve((req, { caller }) => new Response(`hello ${caller.id.service}`), { port: 8443 });
 * ```
 */
export class ConnectService implements AsyncDisposable {
  /** The service name. */
  readonly service: string;
  /** The live leaf and roots. */
  readonly material: TlsMaterial = new TlsMaterial();
  /** Everything that happens (connections, leaf, roots), as for a proxy. */
  readonly events: EventHub<ProxyEvent> = new EventHub<ProxyEvent>();
  /** `Date.now()` at creation. */
  readonly startedAt: number = Date.now();
  readonly #agent: AgentClient;
  readonly #ownsAgent: boolean;
  readonly #o: ConnectOptions;
  readonly #log: Logger;
  readonly #controller = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  readonly #servers = new Set<InboundGateway>();
  readonly #connectors = new Map<string, UpstreamConnector>();
  readonly #last = new Map<ProxyEvent["type"], ProxyEvent>();
  #fetch?: MeshFetch;
  #reauthorizing = false;
  /** The latest intentions of our service, from the re-authorization watch. */
  #intentions?: readonly Intention[];
  #phase: ProxyPhase = "starting";
  /** The drain every {@linkcode ConnectService.close} call awaits, once started. */
  #closing?: Promise<void>;
  /** Why the leaf or the roots are missing, by feed, as the agent said it. */
  readonly #problems = new Map<"roots" | "leaf", string>();

  /** Use {@linkcode connect}. */
  constructor(options: ConnectOptions & { agent: AgentClient }, ownsAgent: boolean) {
    this.service = options.service;
    this.#agent = options.agent;
    this.#ownsAgent = ownsAgent;
    this.#o = options;
    this.#log = (options.log ?? silentLogger).with({ service: options.service });
    const feed = {
      agent: this.#agent,
      material: this.material,
      signal: this.#controller.signal,
      log: this.#log,
      emit: this.#emit,
    };
    const problem = (source: "roots" | "leaf") => (text: string | undefined) => {
      if (text === undefined) this.#problems.delete(source);
      else this.#problems.set(source, text);
    };
    this.#spawn(feedRoots({ ...feed, problem: problem("roots") }));
    this.#spawn(feedLeaf({ ...feed, service: options.service, problem: problem("leaf") }));
    this.material.ready.then(() => {
      // Both are loaded (the feeds say so too, a moment after this resolves).
      this.#problems.clear();
      if (this.#phase === "starting") this.#setPhase("ready");
    }, () => {});
  }

  #spawn(p: Promise<void>): void {
    this.#loops.add(p);
    p.finally(() => this.#loops.delete(p));
  }

  #emit = (event: ConnectionEvent | LifecycleEvent): void => {
    const stamped = { ...event, at: Date.now() };
    this.#last.set(event.type, stamped);
    this.events.publish(stamped);
  };

  #setPhase(phase: ProxyPhase): void {
    this.#phase = phase;
    this.#emit({ type: "phase", phase });
  }

  /** The agent client. */
  get agent(): AgentClient {
    return this.#agent;
  }

  /** `starting` until the first leaf and roots, then `ready`; `draining`/`stopped` on close. */
  get phase(): ProxyPhase {
    return this.#phase;
  }

  /** Resolves once the first leaf and roots are loaded. */
  get ready(): Promise<void> {
    return this.material.ready;
  }

  /**
   * What keeps the leaf or the roots away, as the agent said it (endpoint, status and Consul's
   * text, e.g. `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: Permission denied`); empty once
   * both are loaded. Shown on `/ready` by the admin app.
   */
  get problems(): string[] {
    return [...this.#problems.values()];
  }

  /** Our SPIFFE ID (from the current leaf), once loaded. */
  get spiffeId(): string | undefined {
    return this.material.leaf?.info.uris[0];
  }

  /** For the admin app: the service, without a public listener config. */
  get config(): ProxyConfig {
    return { service: this.service, upstreams: [] };
  }

  /** For the admin app: the first server, if serving. */
  get inbound(): InboundGateway | undefined {
    return this.#servers.values().next().value;
  }

  /** For the admin app: native clients have no upstream listeners. */
  get upstreams(): UpstreamListener[] {
    return [];
  }

  /** The most recent event of a type, if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined {
    return this.#last.get(type) as Extract<ProxyEvent, { type: K }> | undefined;
  }

  async #gateway(
    options: ServeOptions,
    handoff: (c: AuthorizedConnection) => void,
  ): Promise<InboundGateway> {
    if (this.#controller.signal.aborted) throw new Error(`${this.service}: closed`);
    const gw = await startInbound({
      material: this.material,
      service: this.service,
      authorize: (req, opts) => this.#agent.authorize(req, opts),
      bind: { hostname: options.hostname ?? "0.0.0.0", port: options.port },
      handoff,
      intentions: () => this.#intentions,
      handshakeTimeoutMs: this.#o.handshakeTimeoutMs,
      authorizeTimeoutMs: this.#o.authorizeTimeoutMs,
      maxConnections: options.maxConnections,
      log: this.#log,
      onEvent: this.#emit,
    });
    this.#servers.add(gw);
    if (!this.#reauthorizing) {
      // Intentions bite on open connections here too (see reauthorize.ts).
      this.#reauthorizing = true;
      this.#spawn(reauthorizeOnChange({
        agent: this.#agent,
        service: this.service,
        gateways: () => this.#servers,
        authorizeTimeoutMs: this.#o.authorizeTimeoutMs,
        signal: this.#controller.signal,
        log: this.#log,
        emit: this.#emit,
        onIntentions: (list) => (this.#intentions = list),
      }));
    }
    return gw;
  }

  /**
   * Serves HTTP over mTLS: every connection is verified (chain to the mesh roots, a service
   * SPIFFE ID of our trust domain) and authorized with the agent before `handler` sees a
   * request; the handler gets the caller's identity.
   */
  async serve(handler: MeshHandler, options: ServeOptions): Promise<MeshServer> {
    const http = httpOverConnections(handler, this.#log, {
      keepAliveTimeoutMs: options.keepAliveTimeoutMs,
    });
    const gw = await this.#gateway(options, (c) => http.accept(c));
    const close = async (drainMs = 0) => {
      await gw.close(drainMs);
      http.close();
      this.#servers.delete(gw);
    };
    return { address: gw.address, close, [Symbol.asyncDispose]: () => close() };
  }

  /** Listens for raw mTLS connections; iterate to receive the authorized ones. */
  async listen(options: ServeOptions): Promise<MeshListener> {
    const queue: AuthorizedConnection[] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    const gw = await this.#gateway(options, (c) => {
      queue.push(c);
      wake?.();
    });
    const close = async (drainMs = 0) => {
      closed = true;
      wake?.();
      for (const c of queue.splice(0)) c.socket.destroy();
      await gw.close(drainMs);
      this.#servers.delete(gw);
    };
    return {
      address: gw.address,
      close,
      [Symbol.asyncDispose]: () => close(),
      async *[Symbol.asyncIterator]() {
        while (true) {
          while (queue.length) yield queue.shift()!;
          if (closed) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
    };
  }

  #connector(host: string): UpstreamConnector {
    const target = parseMeshHost(host);
    const key = `${target.type}:${target.name}:${target.datacenter ?? ""}`;
    let c = this.#connectors.get(key);
    if (!c) {
      c = new UpstreamConnector({
        agent: this.#agent,
        material: this.material,
        upstream: target,
        listener: `native:${target.name}`,
        log: this.#log,
        onEvent: this.#emit,
        onEndpoints: (change) => this.#emit({ type: "endpoints", ...change }),
      });
      this.#connectors.set(key, c);
    }
    return c;
  }

  /**
   * Opens a raw mTLS connection to an upstream, by name (`"db"`) or mesh host name
   * (`"db.service.dc2.consul"`, `"nearest-db.query.consul"`). The server's certificate must
   * chain to the mesh roots and name the expected service.
   */
  async dial(upstream: string): Promise<tls.TLSSocket> {
    await this.material.ready;
    const host = upstream.includes(".") ? upstream : `${upstream}.service.consul`;
    return await dialThrough(this.#connector(host));
  }

  /**
   * `fetch` for mesh URLs: `http://api.service.consul/users` (or `….query.consul`, or with a
   * datacenter: `api.service.dc2.consul`). Connections are verified mTLS to a healthy endpoint
   * of the upstream, kept alive and reused.
   */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    this.#fetch ??= createMeshFetch(async (host) => {
      await this.material.ready;
      return await dialThrough(this.#connector(host));
    }, { idleTimeoutMs: this.#o.fetchIdleTimeoutMs });
    return this.#fetch.fetch(input, init);
  }

  /** Stops serving (open connections get `drainMs`), closes pools and watches. */
  close(drainMs = 0): Promise<void> {
    if (!this.#closing) {
      // Every caller awaits the same drain; set before it starts, which publishes `draining`
      // synchronously (a subscriber that closes the service then joins this one).
      const closing = Promise.withResolvers<void>();
      this.#closing = closing.promise;
      this.#close(drainMs).then(closing.resolve, closing.reject);
    }
    return this.#closing;
  }

  async #close(drainMs: number): Promise<void> {
    this.#setPhase("draining");
    await Promise.all([...this.#servers].map((s) => s.close(drainMs)));
    this.#servers.clear();
    this.#fetch?.close();
    this.#controller.abort();
    await Promise.all([...this.#connectors.values()].map((c) => c.close()));
    await Promise.all([...this.#loops]);
    if (this.#ownsAgent) await this.#agent.close();
    this.#setPhase("stopped");
  }

  /** Same as {@linkcode ConnectService.close} without draining. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Becomes a Connect-native service: watches its leaf and roots and resolves once both are
 * loaded.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@meshgate/meshgate";
 * await using web = await connect({ service: "web" });
 * const res = await web.fetch("http://api.service.consul/orders", { method: "POST" });
 * ```
 */
export async function connect(options: ConnectOptions): Promise<ConnectService> {
  const agent = options.agent ?? await createDenoAgentClient();
  const svc = new ConnectService({ ...options, agent }, !options.agent);
  const ms = options.readyTimeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      svc.ready,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // What the watches last heard from the agent, or that it never answered.
          const why = svc.problems;
          const missing = [
            ...(svc.material.leaf ? [] : ["leaf certificate"]),
            ...(svc.material.roots ? [] : ["roots"]),
          ].join(" and ") || "usable leaf certificate and roots";
          reject(
            new Error(
              `${options.service}: no ${missing} from the agent at ${agent.config.baseUrl} ` +
                `within ${ms} ms: ${why.length ? why.join("; ") : "no answer yet"}`,
            ),
          );
        }, ms);
      }),
    ]);
  } catch (err) {
    await svc.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return svc;
}
