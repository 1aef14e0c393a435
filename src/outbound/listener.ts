/**
 * One upstream's local listener: accept → pick an endpoint (round robin, skipping ones that
 * just failed; the chain's failover targets next) → mTLS dial with identity check → pipe.
 * @module
 */
import net from "node:net";
import type { AgentClient } from "../agent/client.ts";
import type { ConnectionEvent, Refusal } from "../events/connection.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { type Pipe, pipeSockets } from "../net/pipe.ts";
import { formatAddress, type SocketAddress } from "../net/sockets.ts";
import type { TlsMaterial } from "../trust/material.ts";
import {
  type EndpointHealth,
  type LoadBalancingPolicy,
  type UpstreamConnectError,
  type UpstreamConnection,
  UpstreamConnector,
} from "./connector.ts";
import type { UpstreamResolver } from "./resolver.ts";

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

/** An open outbound connection. */
export interface OutboundConnection {
  /** `service@address:port` of the endpoint it reached. */
  peer: string;
  /** The local client's address. */
  remote: string;
  /** The chain target. */
  target: string;
  /** `Date.now()` when it was established. */
  since: number;
  /** The byte pipe. */
  pipe: Pipe;
}

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
  /** Stops accepting, waits up to `drainMs` for open connections, then closes them. */
  close(drainMs?: number): Promise<void>;
}

/**
 * Starts an upstream listener.
 *
 * @example
 * ```ts ignore
 * import { startUpstream } from "@meshgate/meshgate";
 * const up = await startUpstream({ agent, material, upstream: {
 *   type: "service", name: "db", bind: { hostname: "127.0.0.1", port: 9191 } } });
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
  const active = new Set<OutboundConnection>();

  const refuse = (client: net.Socket, refusal: Refusal) => {
    client.destroy();
    log.log("warn", "upstream connection failed", {
      reason: refusal.reason,
      detail: refusal.detail,
    });
    emit({ type: "refused", direction: "outbound", listener: connector.listenerName, refusal });
  };

  // The whole outbound path of one connection.
  async function handle(client: net.Socket): Promise<void> {
    client.pause();
    client.on("error", () => {});
    const remote = `${client.remoteAddress ?? "local"}:${client.remotePort ?? ""}`;
    if (o.maxConnections && active.size >= o.maxConnections) {
      return refuse(client, {
        reason: "limit",
        detail: `${o.maxConnections} connections open`,
        remote,
      });
    }
    let connected: UpstreamConnection;
    try {
      connected = await connector.connect(() => client.destroyed);
    } catch (err) {
      if (client.destroyed) return;
      const e = err as UpstreamConnectError;
      return refuse(client, { reason: e.reason ?? "no_endpoint", detail: e.message, remote });
    }
    const { socket: mesh, held: meshHeld, endpoint, connectMs } = connected;
    if (client.destroyed) {
      mesh.destroy();
      return;
    }
    const peer = `${endpoint.service}@${endpoint.address}:${endpoint.port}`;
    const listener = connector.listenerName; // settled: a dial means our leaf is loaded
    const pipe = pipeSockets(client, mesh, {
      idleTimeoutMs: o.idleTimeoutMs,
      held: { b: meshHeld.release() },
    });
    const target = endpoint.target ?? up.name;
    const conn = { peer, remote, target, since: Date.now(), pipe };
    active.add(conn);
    emit({
      type: "accepted",
      direction: "outbound",
      listener,
      peer,
      remote,
      handshakeMs: connectMs,
      target,
    });
    const stats = await pipe.closed;
    active.delete(conn);
    emit({
      type: "closed",
      direction: "outbound",
      listener,
      peer,
      remote,
      bytesIn: stats.bToA,
      bytesOut: stats.aToB,
      durationMs: Date.now() - conn.since,
      error: stats.error?.message,
    });
  }

  const server = net.createServer(
    // noDelay: a proxy must not hold small writes back (Nagle) waiting for an ACK.
    { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
    (c) => void handle(c),
  );
  if ("path" in up.bind) await Deno.remove(up.bind.path).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if ("path" in up.bind) server.listen(up.bind.path, done);
    else server.listen(up.bind.port, up.bind.hostname, done);
  });
  if ("path" in up.bind && up.socketMode !== undefined) {
    await Deno.chmod(up.bind.path, up.socketMode);
  }
  server.on("error", (err) => log.log("error", "upstream listener error", { error: err.message }));
  const a = server.address();
  const address: SocketAddress = typeof a === "string" || a === null
    ? { path: "path" in up.bind ? up.bind.path : String(a) }
    : { hostname: a.address, port: a.port };
  log.log("info", "upstream listener started", { bind: formatAddress(address), type: up.type });

  let closing: Promise<void> | undefined;
  // A later close() may shorten the drain.
  let deadline = Infinity;
  const close = (drainMs = 0): Promise<void> => {
    deadline = Math.min(deadline, Date.now() + drainMs);
    closing ??= (async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      while (active.size && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
      }
      for (const c of active) c.pipe.destroy(new Error("listener closing"));
      await Promise.all([...active].map((c) => c.pipe.closed));
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
    connections: active,
    get endpointFailures() {
      return connector.endpointFailures;
    },
    endpointHealth: connector.endpointHealth,
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}
