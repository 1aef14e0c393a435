/**
 * The public mTLS listener's lifecycle: the `node:tls` server (a client certificate chaining to
 * the mesh roots is required), secure-context swaps when the leaf or roots change, the
 * connection limit, refusal while our leaf is expired, the one place that reports connection
 * events and logs refusals, and the live connection handlers, which `close` awaits. The path of
 * one connection — identity → authorize → intention overrule → dial the application → re-check
 * → pipe — is {@linkcode serveInbound} (`./connection.ts`); TLS-layer handshake failures are
 * classified in `./handshake.ts`.
 * @module
 */
import type net from "node:net";
import tls from "node:tls";
import type { AuthorizeRequest, AuthorizeResult, Intention } from "../agent/types.ts";
import type { ConnectionEvent, Refusal } from "../events/connection.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { formatAddress, type SocketAddress } from "../net/sockets.ts";
import { sleep } from "../net/timers.ts";
import type { TlsMaterial } from "../trust/material.ts";
import { AuthorizeCache } from "./authorize_cache.ts";
import {
  type AuthorizedConnection,
  type InboundConnection,
  type InboundContext,
  serveInbound,
} from "./connection.ts";
import { classifyHandshakeError, isProbeRefusal } from "./handshake.ts";

export type { AuthorizedConnection, Caller, InboundConnection } from "./connection.ts";

/** Options of {@linkcode startInbound}. */
export interface InboundOptions {
  /** The live leaf and roots. */
  material: TlsMaterial;
  /** The service we front: authorize's `Target`. */
  service: string;
  /** Calls `/v1/agent/connect/authorize` (e.g. `agent.authorize`). */
  authorize: (req: AuthorizeRequest, opts: { signal: AbortSignal }) => Promise<AuthorizeResult>;
  /** Where to listen. */
  bind: { hostname: string; port: number };
  /** The local application to pipe authorized connections to. */
  app?: SocketAddress;
  /**
   * Instead of `app`: receives each authorized TLS socket, still paused, with the verified
   * caller (Connect-native servers feed it to an HTTP server or their own protocol).
   */
  handoff?: (connection: AuthorizedConnection) => void;
  /** TLS handshake deadline. @default {10000} */
  handshakeTimeoutMs?: number;
  /** Authorize deadline; past it the connection is refused. @default {5000} */
  authorizeTimeoutMs?: number;
  /**
   * When the agent cannot answer authorize (unreachable, timeout, 5xx), use its last answer for
   * the same caller if it is at most this old; 0 = never (strictly fail closed). Answers are
   * forgotten when intentions change (`forgetAuthorizations`). @default {0}
   */
  authorizeCacheTtlMs?: number;
  /**
   * Answer authorize from the agent's last answer for the same caller when it is at most this
   * old, without asking (the agent round trip leaves the connection path). Answers are
   * forgotten when intentions change (the proxy's intentions watch calls
   * `forgetAuthorizations`) and when the roots change. 0 = always ask. @default {0}
   */
  authorizeFreshMs?: number;
  /**
   * The latest intentions that apply to `service`, from a watch (highest precedence first). A
   * caller the agent allowed is still refused when the one of them that matches denies it: the
   * agent's answer may predate a change, or come from its lagging cache. They can only deny,
   * never allow. Checked again right before the connection counts as open, so that a change
   * either reaches this check or finds the connection open (and re-checks it).
   */
  intentions?: () => readonly Intention[] | undefined;
  /** Local application connect deadline (`local_connect_timeout_ms`). @default {1000} */
  connectTimeoutMs?: number;
  /** Close connections idle this long; 0 = never. @default {0} */
  idleTimeoutMs?: number;
  /** Most concurrent connections; excess is refused. 0 = unlimited. @default {0} */
  maxConnections?: number;
  /**
   * Bind with `SO_REUSEPORT`, so that listeners in other threads (`-workers`) share the port and
   * the kernel spreads connections across them. @default {false}
   */
  reusePort?: boolean;
  /** Log sink. */
  log?: Logger;
  /** Connection events (metrics, admin). */
  onEvent?: (event: ConnectionEvent) => void;
}

/** A running public listener. */
export interface InboundGateway extends AsyncDisposable {
  /** The bound address. */
  readonly address: { hostname: string; port: number };
  /** Open, authorized connections. */
  readonly connections: ReadonlySet<InboundConnection>;
  /** The local application address new connections go to (none with `handoff`). */
  readonly app: SocketAddress | undefined;
  /**
   * Forgets cached authorize answers (intentions changed); an answer still in flight is not
   * stored, and its connection is asked about again before it opens.
   */
  forgetAuthorizations(): void;
  /** Points new connections at another local application address. */
  setApp(app: SocketAddress): void;
  /** Applies settings that need no new socket; new connections get them at once. */
  update(settings: InboundSettings): void;
  /**
   * Stops accepting (the listening socket closes, accepted connections go on) so that another
   * listener can bind the same address; {@linkcode InboundGateway.resume} listens again.
   */
  pause(): void;
  /** Listens again on the same address after {@linkcode InboundGateway.pause}. */
  resume(): Promise<void>;
  /**
   * Stops accepting and drops connections not yet open; waits up to `drainMs` for open ones,
   * then closes them. Resolves once every connection's handler has ended (its `closed` event
   * reported). Safe to call again: every call gets the same promise, and a shorter `drainMs`
   * ends the drain sooner.
   */
  close(drainMs?: number): Promise<void>;
}

/** The settings of a live listener that {@linkcode InboundGateway.update} changes in place. */
export interface InboundSettings {
  /** The service we front (authorize's `Target`); cached answers are forgotten on a change. */
  service: string;
  /** TLS handshake deadline. @default {10000} */
  handshakeTimeoutMs?: number;
  /** Local application connect deadline. @default {1000} */
  connectTimeoutMs?: number;
}

/**
 * How the public listener's TLS layer treats clients: a certificate is required and must chain
 * to the mesh roots (`ca` of the secure context), or the handshake is refused — defense in
 * depth under our own check (`verifyPeer`), which still runs on every accepted connection and
 * decides identity. Refusals of the TLS layer reach `tlsClientError` and are counted with their
 * reason (`no_cert`, `bad_chain`) like ours. They belong to the server, not to its secure
 * context: a new leaf or new roots (`setSecureContext`) keep them.
 */
const VERIFY_CLIENTS = { requestCert: true, rejectUnauthorized: true } as const;

/**
 * Starts the public mTLS listener.
 *
 * @example
 * ```ts
 * import { AgentClient, TlsMaterial } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * import { startInbound } from "./gateway.ts";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const material = new TlsMaterial(); // db's leaf and the roots (a proxy watches both)
 * await material.setRoots((await agent.roots()).value);
 * await material.setLeaf((await agent.leaf("db")).value);
 * const gw = await startInbound({
 *   material,
 *   service: "db",
 *   authorize: (req, o) => agent.authorize(req, o),
 *   bind: { hostname: "127.0.0.1", port: 0 }, // a sidecar's public port, e.g. 0.0.0.0:21000
 *   app: { hostname: "127.0.0.1", port: 5432 },
 * });
 * console.log(gw.address); // { hostname: "127.0.0.1", port: … }
 * await gw.close(10_000); // drain for up to 10 s
 * ```
 */
export async function startInbound(options: InboundOptions): Promise<InboundGateway> {
  const o = { ...options };
  const log = (o.log ?? silentLogger).with({ listener: "inbound" });
  const emit = o.onEvent ?? (() => {});
  if (!o.app === !o.handoff) throw new Error("startInbound: give exactly one of app or handoff");
  let listenerName = `inbound:${o.service}`;
  /** Aborted on close: connections not yet open stop waiting and are dropped. */
  const stopping = new AbortController();
  // What every connection's path reads; `update` and `setApp` change it for new steps.
  const ctx: InboundContext = {
    material: o.material,
    // Fresh answers, the outage fallback, joined calls; forgotten on intention and roots changes.
    authz: new AuthorizeCache({
      ask: (caller, opts) =>
        o.authorize(
          { Target: ctx.service, ClientCertURI: caller.uri, ClientCertSerial: caller.serial },
          opts,
        ),
      timeoutMs: o.authorizeTimeoutMs,
      freshMs: o.authorizeFreshMs,
      cacheTtlMs: o.authorizeCacheTtlMs,
    }),
    service: o.service,
    intentions: o.intentions,
    app: o.app,
    handoff: o.handoff,
    connectTimeoutMs: o.connectTimeoutMs ?? 1000,
    idleTimeoutMs: o.idleTimeoutMs,
    connections: new Set<InboundConnection>(),
    signal: stopping.signal,
    log,
  };
  const forget = () => ctx.authz.forget();
  const open = ctx.connections;
  /** One promise per connection past its handshake, settled once its end is reported. */
  const live = new Set<Promise<void>>();
  // Every accepted TCP socket, for the connection limit; on close, those still in the
  // handshake are destroyed (the others belong to their handler).
  const sockets = new Set<net.Socket>();
  const served = new WeakSet<net.Socket>();
  const acceptedAt = new WeakMap<net.Socket, number>();
  await o.material.ready;

  const server = tls.createServer({
    ...o.material.serverOptions(),
    ...VERIFY_CLIENTS,
    allowHalfOpen: true,
    noDelay: true,
    handshakeTimeout: o.handshakeTimeoutMs ?? 10_000,
  });
  const unsubscribe = o.material.onChange((change) => {
    // New connections use the new leaf and roots at once; established ones keep theirs.
    server.setSecureContext(o.material.serverOptions());
    if (change === "roots") forget();
  });

  /** Closes a refused connection and reports it: the one place refusals are logged. */
  const refuse = (socket: net.Socket, refusal: Refusal) => {
    destroy(socket);
    log.log(
      isProbeRefusal(refusal) ? "debug" : refusal.reason === "denied" ? "info" : "warn",
      "inbound connection refused",
      {
        reason: refusal.reason,
        detail: refusal.detail,
        peer: refusal.peer,
        remote: refusal.remote,
      },
    );
    emit({ type: "refused", direction: "inbound", listener: listenerName, refusal });
  };

  server.on("connection", (raw: net.Socket) => {
    const remote = `${raw.remoteAddress}:${raw.remotePort}`;
    if (o.maxConnections && sockets.size >= o.maxConnections) {
      return refuse(raw, {
        reason: "limit",
        detail: `${o.maxConnections} connections open`,
        remote,
      });
    }
    if (o.material.leafExpired) {
      // Never serve an expired certificate: refuse until the renewal arrives.
      return refuse(raw, {
        reason: "leaf_expired",
        detail: `our leaf certificate expired at ${o.material.leaf!.cert.ValidBefore}`,
        remote,
      });
    }
    sockets.add(raw);
    acceptedAt.set(raw, Date.now());
    raw.once("close", () => sockets.delete(raw));
  });

  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
    const raw = parentOf(socket);
    const remote = `${socket.remoteAddress ?? raw?.remoteAddress}:${
      socket.remotePort ?? raw?.remotePort
    }`;
    refuse(socket, { ...classifyHandshakeError(err, socket), remote });
  });

  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const handler: Promise<void> = serve(socket)
      .catch((err) => {
        log.log("error", "inbound connection handler failed", { error: String(err) });
        destroy(socket);
      })
      .finally(() => live.delete(handler));
    live.add(handler);
  });

  /** One connection: its path ({@linkcode serveInbound}), then what is reported of it. */
  async function serve(socket: tls.TLSSocket): Promise<void> {
    const secureAt = Date.now();
    const raw = parentOf(socket);
    if (raw) served.add(raw);
    const handshakeMs = secureAt - (raw ? acceptedAt.get(raw) ?? secureAt : secureAt);
    const outcome = await serveInbound(socket, ctx);
    if (outcome.status === "refused") return refuse(socket, outcome.refusal);
    if (outcome.status === "dropped") return destroy(socket);
    const { connection: conn, answer } = outcome; // in `open` already
    emit({
      type: "accepted",
      direction: "inbound",
      listener: listenerName,
      peer: conn.peer,
      remote: conn.remote,
      authorizeMs: outcome.authorizeMs,
      handshakeMs,
      ...(answer.ok && (answer.source === "fresh" || answer.source === "outage")
        ? { authorizeCached: answer.source }
        : {}),
      ...(answer.ok && answer.source === "joined" ? { authorizeJoined: true } : {}),
    });
    if (!ctx.handoff) {
      log.log("debug", "inbound connection authorized", { peer: conn.peer, remote: conn.remote });
    }
    const stats = await conn.pipe.closed;
    open.delete(conn);
    emit({
      type: "closed",
      direction: "inbound",
      listener: listenerName,
      peer: conn.peer,
      remote: conn.remote,
      bytesIn: stats.aToB,
      bytesOut: stats.bToA,
      durationMs: Date.now() - conn.since,
      error: stats.error?.message,
    });
  }

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port, host: o.bind.hostname, reusePort: o.reusePort ?? false }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  await listen(o.bind.port);
  server.on("error", (err) => log.log("error", "inbound listener error", { error: err.message }));
  const addr = server.address() as net.AddressInfo;
  const address = { hostname: addr.address, port: addr.port };
  log.log("info", "inbound listener started", {
    bind: formatAddress(address),
    app: ctx.app ? formatAddress(ctx.app) : "in-process handler",
    service: o.service,
  });

  let closing: Promise<void> | undefined;
  // The drain ends when the last connection does, or at the earliest deadline a close() gave
  // (a retired listener draining when the proxy stops gets the proxy's shorter one).
  const drained = new AbortController();
  const drainTimers: Promise<unknown>[] = [];
  const close = (drainMs = 0): Promise<void> => {
    if (drainMs > 0) {
      const ms = Math.min(drainMs, MAX_TIMER_MS);
      drainTimers.push(sleep(ms, drained.signal).then((slept) => slept && drained.abort()));
    } else drained.abort();
    closing ??= (async () => {
      unsubscribe();
      const closed = new Promise<void>((r) => server.close(() => r()));
      stopping.abort(); // connections not yet open are dropped
      for (const s of sockets) if (!served.has(s)) s.destroy(); // still in the handshake
      await Promise.race([Promise.allSettled(live), whenAborted(drained.signal)]);
      for (const c of open) c.pipe.destroy(new Error("proxy shutting down"));
      await Promise.allSettled(live);
      drained.abort(); // clears the drain timers
      await Promise.all(drainTimers);
      await closed;
    })();
    return closing;
  };
  return {
    address,
    connections: open,
    get app() {
      return ctx.app;
    },
    forgetAuthorizations: forget,
    setApp(next) {
      ctx.app = next;
    },
    update(next) {
      if (next.service !== ctx.service) {
        ctx.service = next.service;
        listenerName = `inbound:${ctx.service}`;
        forget(); // answers were for another target
      }
      ctx.connectTimeoutMs = next.connectTimeoutMs ?? 1000;
      // Deno's node:tls reads the deadline from the server for each new connection.
      (server as unknown as { _handshakeTimeout: number })._handshakeTimeout =
        next.handshakeTimeoutMs ?? 10_000;
    },
    pause() {
      if (server.listening) server.close();
    },
    resume: () => (server.listening || closing ? Promise.resolve() : listen(address.port)),
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}

/** The longest delay a timer takes (a longer one fires at once): a drain this long is endless. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The TCP socket under a TLS socket (Deno's `node:tls` keeps it as `_parent`). */
function parentOf(socket: tls.TLSSocket): net.Socket | undefined {
  return (socket as unknown as { _parent?: net.Socket })._parent;
}

/** Destroys a socket, and the TCP socket under it. */
function destroy(socket: net.Socket): void {
  socket.destroy();
  // Deno's node:tls does not always close the TCP connection under a failed handshake.
  (socket as { _parent?: net.Socket })._parent?.destroy();
}

/** Resolves when `signal` aborts (at once if it has). */
function whenAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
