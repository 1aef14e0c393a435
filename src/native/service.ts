/**
 * Connect-native services: `await connect({ service: "api" })` gives a handle that keeps its
 * leaf and roots current (blocking queries), serves mTLS (HTTP or raw TCP) with per-connection
 * authorization, and dials or fetches upstreams by name over verified mTLS — no sidecar.
 * @module
 */
import type tls from "node:tls";
import type { AgentClient } from "../agent/client.ts";
import type { AdminSubject, AdminUpstream } from "../admin/subject.ts";
import { createDenoAgentClient } from "../transport/agent_client.ts";
import {
  type AuthorizedConnection,
  type InboundGateway,
  startInbound,
} from "../inbound/gateway.ts";
import type { EventHub } from "../events/hub.ts";
import type { LifecyclePhase, ProxyEvent } from "../events/lifecycle.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { withTimeout } from "../net/timers.ts";
import { UpstreamConnector, type UpstreamTarget } from "../outbound/connector.ts";
import { MeshRuntime } from "../runtime/mesh_runtime.ts";
import type { TlsMaterial } from "../trust/material.ts";
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
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using svc = await connect({ service: "api", agent });
 * await using server = await svc.serve(
 *   (_req, { caller }) => new Response(`hello ${caller.id.service}`),
 *   { hostname: "127.0.0.1", port: 0 }, // 0: any free port
 * );
 * console.log(svc.spiffeId, server.address.port); // spiffe://…/svc/api 41234
 * ```
 */
export class ConnectService implements AsyncDisposable, AdminSubject {
  /** The service name. */
  readonly service: string;
  readonly #o: ConnectOptions;
  readonly #log: Logger;
  /** Leaf, roots, intentions, events, problems, phase, loops and close: shared with the proxy. */
  readonly #runtime: MeshRuntime;
  readonly #servers = new Set<InboundGateway>();
  readonly #connectors = new Map<
    string,
    { target: UpstreamTarget; connector: UpstreamConnector }
  >();
  #fetch?: MeshFetch;

  /** Use {@linkcode connect}. */
  constructor(options: ConnectOptions & { agent: AgentClient }, ownsAgent: boolean) {
    this.service = options.service;
    this.#o = options;
    this.#log = (options.log ?? silentLogger).with({ service: options.service });
    this.#runtime = new MeshRuntime({
      agent: options.agent,
      log: this.#log,
      ownsAgent,
      // Intentions bite on open connections here too (see reauthorize.ts).
      gateways: () => this.#servers,
      authorizeTimeoutMs: options.authorizeTimeoutMs,
    });
    this.#runtime.watchRoots();
    this.#runtime.watchLeaf(options.service);
    this.material.ready.then(() => {
      // Both are loaded (the feeds say so too, a moment after this resolves).
      this.#runtime.problem("roots", undefined);
      this.#runtime.problem("leaf", undefined);
      this.#runtime.markReady();
    }, () => {});
  }

  /** The live leaf and roots. */
  get material(): TlsMaterial {
    return this.#runtime.material;
  }

  /** Everything that happens (connections, leaf, roots), as for a proxy. */
  get events(): EventHub<ProxyEvent> {
    return this.#runtime.events;
  }

  /** `Date.now()` at creation. */
  get startedAt(): number {
    return this.#runtime.startedAt;
  }

  /** The agent client. */
  get agent(): AgentClient {
    return this.#runtime.agent;
  }

  /** `starting` until the first leaf and roots, then `ready`; `draining`/`stopped` on close. */
  get phase(): LifecyclePhase {
    return this.#runtime.phase;
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
    return this.#runtime.problems;
  }

  /** Our SPIFFE ID (from the current leaf), once loaded. */
  get spiffeId(): string | undefined {
    return this.material.leaf?.info.uris[0];
  }

  /** The mTLS listeners of {@linkcode ConnectService.serve} and {@linkcode ConnectService.listen}. */
  get inboundListeners(): InboundGateway[] {
    return [...this.#servers];
  }

  /**
   * The upstreams dialled so far ({@linkcode ConnectService.dial}, {@linkcode ConnectService.fetch}):
   * chain targets and endpoint health; their connections belong to the caller, not listed.
   */
  get upstreams(): AdminUpstream[] {
    return [...this.#connectors.values()].map(({ target, connector }) => ({
      upstream: target,
      name: connector.listenerName,
      resolver: connector.resolver,
      endpointHealth: connector.endpointHealth,
    }));
  }

  /** The most recent event of a type, if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined {
    return this.#runtime.lastEvent(type);
  }

  async #gateway(
    options: ServeOptions,
    handoff: (c: AuthorizedConnection) => void,
  ): Promise<InboundGateway> {
    if (this.#runtime.signal.aborted) throw new Error(`${this.service}: closed`);
    const gw = await startInbound({
      material: this.material,
      service: this.service,
      authorize: (req, opts) => this.agent.authorize(req, opts),
      bind: { hostname: options.hostname ?? "0.0.0.0", port: options.port },
      handoff,
      intentions: () => this.#runtime.intentions,
      handshakeTimeoutMs: this.#o.handshakeTimeoutMs,
      authorizeTimeoutMs: this.#o.authorizeTimeoutMs,
      maxConnections: options.maxConnections,
      log: this.#log,
      onEvent: this.#runtime.emit,
    });
    this.#servers.add(gw);
    this.#runtime.watchIntentions(this.service); // once: the same service again does nothing
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
      const connector = new UpstreamConnector({
        agent: this.agent,
        material: this.material,
        upstream: target,
        listener: `native:${target.name}`,
        log: this.#log,
        onEvent: this.#runtime.emit,
        onEndpoints: (change) => this.#runtime.emit({ type: "endpoints", ...change }),
      });
      c = { target, connector };
      this.#connectors.set(key, c);
    }
    return c.connector;
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

  /**
   * Stops serving (open connections get `drainMs`), closes pools and watches. Idempotent: every
   * caller awaits the same drain (the first caller's `drainMs`).
   */
  close(drainMs = 0): Promise<void> {
    return this.#runtime.close({
      drain: async (stop) => {
        await Promise.all([...this.#servers].map((s) => s.close(drainMs)));
        this.#servers.clear();
        this.#fetch?.close();
        stop();
        await Promise.all([...this.#connectors.values()].map((c) => c.connector.close()));
      },
    });
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
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * // Without `agent`, one is configured from CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, … as the CLI.
 * await using web = await connect({ service: "web", agent });
 * console.log(web.phase, web.spiffeId); // ready spiffe://…/svc/web
 * ```
 */
export async function connect(options: ConnectOptions): Promise<ConnectService> {
  const agent = options.agent ?? await createDenoAgentClient();
  const svc = new ConnectService({ ...options, agent }, !options.agent);
  const ms = options.readyTimeoutMs ?? 30_000;
  try {
    await withTimeout(svc.ready, ms, () => {
      // What the watches last heard from the agent, or that it never answered.
      const why = svc.problems;
      const missing = [
        ...(svc.material.leaf ? [] : ["leaf certificate"]),
        ...(svc.material.roots ? [] : ["roots"]),
      ].join(" and ") || "usable leaf certificate and roots";
      return new Error(
        `${options.service}: no ${missing} from the agent at ${agent.config.baseUrl} ` +
          `within ${ms} ms: ${why.length ? why.join("; ") : "no answer yet"}`,
      );
    });
  } catch (err) {
    await svc.close();
    throw err;
  }
  return svc;
}
