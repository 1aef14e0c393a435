/**
 * One upstream's local listener, lifecycle only: the `node:net` server (TCP or a unix socket
 * with its file mode), the connection limit, and the handlers it started — each client is
 * served by {@linkcode serveOutbound}; `close()` stops accepting and awaits them all.
 * @module
 */
import net from "node:net";
import type { AgentClient } from "../agent/client.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { formatAddress, type SocketAddress } from "../net/sockets.ts";
import { deadline, sleep } from "../net/timers.ts";
import type { TlsMaterial } from "../trust/material.ts";
import {
  type OutboundConnection,
  type OutboundContext,
  type OutboundResult,
  serveOutbound,
  serveOutboundNative,
} from "./connection.ts";
import { type EndpointHealth, type LoadBalancingPolicy, UpstreamConnector } from "./connector.ts";
import { nativeTlsSupport } from "./native_tls.ts";
import type { UpstreamResolver } from "./resolver.ts";

export type { OutboundConnection } from "./connection.ts";

/** An upstream as the proxy configures it. */
export interface UpstreamConfig {
  /** `service` or `prepared_query`. */
  type: "service" | "prepared_query";
  /** Service or query name. */
  name: string;
  /** Datacenter; empty for the local one. */
  datacenter?: string;
  /** The local listener. */
  bind: SocketAddress;
  /** Upstream `Config.connect_timeout_ms`, overriding the chain's `ConnectTimeout`. */
  connectTimeoutMs?: number;
  /** File mode of a unix-socket listener (`LocalBindSocketMode`, e.g. `0o700`). */
  socketMode?: number;
  /** Upstream `Config.lb_policy`: `round_robin` (weighted) or `least_connections`. */
  policy?: LoadBalancingPolicy;
}

/** Which TLS stack upstream connections use (`-outbound-tls`). */
export type OutboundTls = "node" | "native";

/** Options of {@linkcode startUpstream}. */
export interface UpstreamOptions {
  /** The agent, for chain, health and prepared-query reads. */
  agent: AgentClient;
  /** The live leaf and roots. */
  material: TlsMaterial;
  /** What to listen for and where it goes. */
  upstream: UpstreamConfig;
  /** Most concurrent connections; excess is refused. 0 = unlimited. @default {0} */
  maxConnections?: number;
  /** Close connections idle this long; 0 = never. @default {0} */
  idleTimeoutMs?: number;
  /** How long an endpoint that failed is skipped. @default {10000} */
  failureCooldownMs?: number;
  /**
   * Bind a TCP listener with `SO_REUSEPORT`, so that listeners in other threads (`-workers`)
   * share the port; a unix socket cannot be shared. @default {false}
   */
  reusePort?: boolean;
  /**
   * How a TCP listener's connections reach the mesh: `node` (`node:net` in, `node:tls` out) or
   * `native` (`Deno.listen` in, `Deno.connectTls` out, see `native_tls.ts`: less CPU per byte
   * and per dial, but Nagle stays on for the TLS side). A unix-socket listener is always
   * `node`. @default {"node"}
   */
  outboundTls?: OutboundTls;
  /** Log sink. */
  log?: Logger;
  /** Connection events (metrics, admin). */
  onEvent?: (event: ConnectionEvent) => void;
  /** Called when a chain target's healthy endpoints change. */
  onEndpoints?: (change: { upstream: string; target: string; endpoints: string[] }) => void;
}

/** A running upstream listener. */
export interface UpstreamListener extends AsyncDisposable {
  /** The upstream it serves. */
  readonly upstream: UpstreamConfig;
  /**
   * Its name in events, metrics and the admin app: `upstream:<name>`, or `upstream:<name>@<dc>`
   * for an upstream in another datacenter (see {@linkcode upstreamListenerName}).
   */
  readonly name: string;
  /** The bound address. */
  readonly address: SocketAddress;
  /** The chain and endpoints (service upstreams). */
  readonly resolver?: UpstreamResolver;
  /** Open connections. */
  readonly connections: ReadonlySet<OutboundConnection>;
  /** Endpoints whose last dial failed (cleared by a success), by endpoint ID. */
  readonly endpointFailures: ReadonlyMap<string, { at: number; error: string }>;
  /** Dial health (consecutive failures, ejection, open connections) by endpoint ID. */
  readonly endpointHealth: ReadonlyMap<string, Readonly<EndpointHealth>>;
  /**
   * Stops accepting, waits up to `drainMs` for open connections and dials in progress, then
   * cuts them and awaits their end. Safe to call again; a later call may shorten the drain.
   */
  close(drainMs?: number): Promise<void>;
}

/**
 * Starts an upstream listener.
 *
 * @example
 * ```ts
 * import { AgentClient, TlsMaterial } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * import { startUpstream } from "./listener.ts";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const material = new TlsMaterial(); // web's leaf and the roots (a proxy watches both)
 * await material.setRoots((await agent.roots()).value);
 * await material.setLeaf((await agent.leaf("web")).value);
 * await using up = await startUpstream({
 *   agent,
 *   material,
 *   upstream: { type: "service", name: "db", bind: { hostname: "127.0.0.1", port: 0 } },
 * });
 * console.log(up.name, up.address); // upstream:db { hostname: "127.0.0.1", port: … }
 * ```
 */
export async function startUpstream(options: UpstreamOptions): Promise<UpstreamListener> {
  const o = options;
  const up = o.upstream;
  const log = (o.log ?? silentLogger).with({
    upstream: up.name,
    ...(up.datacenter ? { datacenter: up.datacenter } : {}),
  });
  const emit = o.onEvent ?? (() => {});
  const connector = new UpstreamConnector({
    agent: o.agent,
    material: o.material,
    upstream: up,
    failureCooldownMs: o.failureCooldownMs,
    policy: up.policy,
    log,
    onEvent: emit,
    onEndpoints: o.onEndpoints,
  });
  const connections = new Set<OutboundConnection>();
  // Aborted when the drain ends: cuts every pick, dial and pipe still running.
  const stop = new AbortController();
  const ctx: OutboundContext = {
    connector,
    connections,
    maxConnections: o.maxConnections,
    idleTimeoutMs: o.idleTimeoutMs,
    log,
    emit,
    signal: stop.signal,
  };
  // Every handler until its connection is closed and reported.
  const live = new Set<Promise<void>>();
  const track = (served: Promise<OutboundResult>, drop: () => void) => {
    const handler = served
      .then((served) => served.ok ? served.closed : undefined)
      .catch((err) => {
        drop();
        log.log("error", "upstream connection failed unexpectedly", { error: String(err) });
      })
      .finally(() => live.delete(handler));
    live.add(handler);
  };
  const serve = (client: net.Socket) => track(serveOutbound(client, ctx), () => client.destroy());

  let nativeListen = o.outboundTls === "native" && !("path" in up.bind);
  if (nativeListen && o.reusePort && !unstableNet()) {
    // `Deno.listen({ reusePort })` exits the process without `--unstable-net`: share the port
    // with node:net instead (this upstream's connections then use node:tls too).
    nativeListen = false;
    log.log("warn", "-outbound-tls native with a shared port (-workers) needs --unstable-net", {
      using: "node",
    });
  }
  const native = nativeListen && !("path" in up.bind)
    ? listenNative(up.bind, o.reusePort ?? false, log, (client) => {
      client.setNoDelay(true); // a proxy must not hold small writes back (Nagle)
      track(serveOutboundNative(client, ctx), () => closeQuietly(client));
    })
    : undefined;
  const server = native ? undefined : await listenNode(up, o.reusePort ?? false, serve);
  if ("path" in up.bind && up.socketMode !== undefined) {
    await Deno.chmod(up.bind.path, up.socketMode);
  }
  server?.on("error", (err) => log.log("error", "upstream listener error", { error: err.message }));
  const a = native ? native.listener.addr : server!.address();
  const address: SocketAddress = typeof a === "string" || a === null
    ? { path: "path" in up.bind ? up.bind.path : String(a) }
    : "transport" in a
    ? { hostname: (a as Deno.NetAddr).hostname, port: (a as Deno.NetAddr).port }
    : { hostname: a.address, port: a.port };
  log.log("info", "upstream listener started", {
    bind: formatAddress(address),
    type: up.type,
    ...(native ? { outboundTls: "native", tlsLayerRoots: nativeTlsLayerRoots() } : {}),
  });

  let closing: Promise<void> | undefined;
  const close = (drainMs = 0): Promise<void> => {
    // Each call sets a drain deadline; the first to expire ends the drain for all.
    const drain = deadline(drainMs, stop.signal);
    drain.signal.addEventListener("abort", () => stop.abort(), { once: true });
    closing ??= (async () => {
      const closed = native ? native.close() : new Promise<void>((r) => server!.close(() => r()));
      const cut = new Promise<void>((r) => stop.signal.addEventListener("abort", () => r()));
      while (live.size && !stop.signal.aborted) await Promise.race([Promise.allSettled(live), cut]);
      stop.abort(); // clears the deadlines too
      await Promise.allSettled(live);
      await connector.close();
      await closed;
      if ("path" in up.bind) await Deno.remove(up.bind.path).catch(() => {});
    })();
    return closing;
  };
  return {
    upstream: up,
    get name() {
      return connector.listenerName;
    },
    address,
    resolver: connector.resolver,
    connections,
    get endpointFailures() {
      return connector.endpointFailures;
    },
    endpointHealth: connector.endpointHealth,
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}

/** The `node:net` server of a listener (TCP or a unix socket), listening. */
async function listenNode(
  up: UpstreamConfig,
  reusePort: boolean,
  serve: (client: net.Socket) => void,
): Promise<net.Server> {
  const server = net.createServer(
    // noDelay: a proxy must not hold small writes back (Nagle) waiting for an ACK.
    { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
    serve,
  );
  if ("path" in up.bind) await Deno.remove(up.bind.path).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if ("path" in up.bind) server.listen(up.bind.path, done);
    else server.listen({ port: up.bind.port, host: up.bind.hostname, reusePort }, done);
  });
  return server;
}

/**
 * A `Deno.listen` TCP listener and its accept loop (`-outbound-tls native`); `close()` stops
 * accepting and resolves once the loop has ended.
 */
function listenNative(
  bind: { hostname: string; port: number },
  reusePort: boolean,
  log: Logger,
  serve: (client: Deno.TcpConn) => void,
): { listener: Deno.TcpListener; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: bind.hostname, port: bind.port, reusePort });
  const loop = (async () => {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch (err) {
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
          return; // closed
        }
        // Out of file descriptors and the like: say so, and keep accepting after a pause.
        log.log("error", "upstream listener error", { error: (err as Error).message });
        await sleep(100);
        continue;
      }
      serve(client);
    }
  })();
  return {
    listener,
    async close() {
      closeQuietly(listener);
      await loop;
    },
  };
}

/**
 * Whether this process runs with `--unstable-net` (which `Deno.listen({ reusePort })` needs):
 * `Deno.listenDatagram`, an API of that flag, is only there with it.
 */
function unstableNet(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // already closed
  }
}

/**
 * What the TLS layer of a native dial trusts, for the operator: `mesh-only` only in a process
 * started with an empty `DENO_TLS_CA_STORE` (our own check admits mesh roots alone either way).
 */
function nativeTlsLayerRoots(): string {
  const support = nativeTlsSupport();
  return support.available ? support.tlsLayerRoots : `native leg unavailable: ${support.reason}`;
}
