/**
 * The public mTLS listener: accept → handshake (timeout) → identity from the verified peer
 * certificate → authorize (timeout, fail closed) → dial the local application (timeout) → pipe.
 * No byte reaches the application before authorization, and the application is dialled only
 * for an authorized client (Consul's built-in proxy dials it first; we do not).
 * @module
 */
import type net from "node:net";
import tls from "node:tls";
import type { AuthorizeRequest, AuthorizeResult, Intention } from "../agent/types.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { holdSocket, type Pipe, pipeSockets, type PipeStats } from "../net/pipe.ts";
import { connectPlain, formatAddress, peerChain, type SocketAddress } from "../net/sockets.ts";
import type { TlsMaterial } from "../trust/material.ts";
import type { ServiceSpiffeId } from "../trust/spiffe.ts";
import { type AuthorizeAnswer, AuthorizeCache } from "./authorize_cache.ts";
import { decideByIntentions } from "../intentions/decide.ts";
import type { ConnectionEvent, Refusal, RefusalReason } from "../events/connection.ts";

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
  /** Log sink. */
  log?: Logger;
  /** Connection events (metrics, admin). */
  onEvent?: (event: ConnectionEvent) => void;
}

/** The verified, authorized caller of an inbound connection. */
export interface Caller {
  /** Its SPIFFE ID as presented (first URI SAN). */
  spiffeId: string;
  /** The parsed service identity (service, namespace, partition, datacenter). */
  id: ServiceSpiffeId;
  /** Its certificate's serial (colon hex). */
  serial: string;
}

/** An inbound connection handed over after authorization (see `handoff`). */
export interface AuthorizedConnection {
  /** The TLS socket; nothing has been read from it yet. */
  socket: tls.TLSSocket;
  /** Who is calling. */
  caller: Caller;
  /** The client's address. */
  remote: string;
}

/** One open inbound connection. */
export interface InboundConnection {
  /** The client's SPIFFE ID. */
  peer: string;
  /** The client's address. */
  remote: string;
  /** `Date.now()` when it was authorized. */
  since: number;
  /** The byte pipe. */
  pipe: Pipe;
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
  /** Stops accepting, waits up to `drainMs` for open connections, then closes them. */
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
 * Why a handshake failed, as a refusal. A client certificate that the TLS layer refused against
 * the mesh roots shows in Deno's `node:tls` as "socket hang up" on a socket whose
 * `authorizationError` names the refusal (its client-certificate verifier lets the handshake
 * finish and the socket is then destroyed, as Node does); a missing certificate fails the
 * handshake itself ("peer sent no certificates").
 */
function classifyHandshakeError(
  err: Error & { code?: string },
  socket: tls.TLSSocket,
): { reason: RefusalReason; detail: string } {
  const refusedCert = socket.authorizationError;
  if (refusedCert) {
    return {
      reason: "bad_chain",
      detail: `client certificate refused by the TLS layer against the mesh roots (${
        String(refusedCert)
      })`,
    };
  }
  if (err.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") {
    return { reason: "no_cert", detail: `no client certificate (${err.message})` };
  }
  return { reason: handshakeReason(err), detail: err.message };
}

function handshakeReason(err: Error): RefusalReason {
  const m = err.message;
  if (/handshake timeout/i.test(m)) return "handshake_timeout";
  if (
    /CertificateRequired|certificate required|did not return a certificate|sent no certificates/i
      .test(m)
  ) {
    return "no_cert";
  }
  if (/UnknownIssuer|unknown ca|BadCertificate|certificate|verify|Expired/i.test(m)) {
    return "bad_chain";
  }
  return "handshake";
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
 * ```ts ignore
 * import { AgentClient, startInbound, TlsMaterial } from "@meshgate/meshgate";
 * const agent = new AgentClient();
 * const material = new TlsMaterial(); // fed by the leaf and roots watches
 * const gw = await startInbound({
 *   material, service: "db", authorize: (req, o) => agent.authorize(req, o),
 *   bind: { hostname: "0.0.0.0", port: 21000 }, app: { hostname: "127.0.0.1", port: 5432 },
 * });
 * ```
 */
export async function startInbound(options: InboundOptions): Promise<InboundGateway> {
  const o = { ...options }; // `update` changes service and timeouts in place
  const log = (o.log ?? silentLogger).with({ listener: "inbound" });
  const emit = o.onEvent ?? (() => {});
  if (!o.app === !o.handoff) throw new Error("startInbound: give exactly one of app or handoff");
  let app = o.app;
  let listenerName = `inbound:${o.service}`;
  const active = new Set<InboundConnection>();
  // Every accepted TCP socket, for the connection limit; those still before authorization are
  // closed at once on shutdown, authorized ones drain.
  const sockets = new Set<net.Socket>();
  const piped = new WeakSet<net.Socket>();
  const acceptedAt = new WeakMap<net.Socket, number>();
  // Fresh answers, the outage fallback, joined calls; forgotten on intention and roots changes.
  const authz = new AuthorizeCache({
    ask: (caller, opts) =>
      o.authorize(
        { Target: o.service, ClientCertURI: caller.uri, ClientCertSerial: caller.serial },
        opts,
      ),
    timeoutMs: o.authorizeTimeoutMs,
    freshMs: o.authorizeFreshMs,
    cacheTtlMs: o.authorizeCacheTtlMs,
  });
  const forget = () => authz.forget();
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

  const refuse = (socket: net.Socket, refusal: Refusal) => {
    socket.destroy();
    // Deno's node:tls does not always close the TCP connection under a failed handshake.
    (socket as { _parent?: net.Socket })._parent?.destroy();
    // Consul's TCP health checks connect and close without a handshake, every 10 s; Deno's
    // node:tls only notices at the handshake timeout. Keep those out of the warnings.
    const quiet =
      (refusal.reason === "handshake_timeout" && refusal.detail === "TLS handshake timeout") ||
      // A connect-and-close without a handshake (a TCP health check, a port scan).
      (refusal.reason === "handshake" && refusal.detail === "socket hang up");
    log.log(
      quiet ? "debug" : refusal.reason === "denied" ? "info" : "warn",
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
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    const remote = `${socket.remoteAddress ?? raw?.remoteAddress}:${
      socket.remotePort ?? raw?.remotePort
    }`;
    refuse(socket, { ...classifyHandshakeError(err, socket), remote });
  });

  server.on("secureConnection", (socket: tls.TLSSocket) => void handle(socket));

  // The whole inbound path of one connection.
  async function handle(socket: tls.TLSSocket): Promise<void> {
    const secureAt = Date.now();
    const rawSocket = (socket as unknown as { _parent?: net.Socket })._parent;
    const handshakeMs = secureAt - (rawSocket ? acceptedAt.get(rawSocket) ?? secureAt : secureAt);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // Not one byte reaches the application before authorization; what the client sends
    // meanwhile is held (bounded), not paused (see holdSocket).
    // A handed-off socket stays unread (its new owner reads it from the first byte).
    const held = o.handoff ? undefined : holdSocket(socket);
    socket.on("error", () => {}); // errors surface through close; the pipe handles them later
    const { der, chain } = peerChain(socket);
    const verdict = await o.material.verifyPeer(der, chain, "clientAuth");
    if (!verdict.ok) return refuse(socket, { ...verdict, remote });
    const caller = { uri: verdict.uri, serial: verdict.serial };
    const authorizeStarted = Date.now();
    /** An answer no change has overtaken (see AuthorizeCache.current), starting from `prev`. */
    const ask = async (prev?: AuthorizeAnswer) => {
      const answer = await authz.current(caller, prev);
      if (answer.ok && answer.source === "outage" && answer !== prev) {
        log.log("warn", "agent did not answer authorize; using its recent answer", {
          peer: verdict.uri,
          ageMs: answer.ageMs,
          authorized: answer.result.Authorized,
          error: String(answer.error),
        });
      }
      return answer;
    };
    /** Why `answer` refuses the caller, if it does (the agent, or a newer deny intention). */
    const refusalOf = (answer: AuthorizeAnswer): Refusal | undefined => {
      const peer = verdict.uri;
      if (!answer.ok) return { reason: answer.reason, detail: answer.detail, peer, remote };
      if (!answer.result.Authorized) {
        return { reason: "denied", detail: answer.result.Reason, peer, remote };
      }
      // The agent's answer may predate a change, or come from its lagging cache.
      const d = decideByIntentions(o.intentions?.() ?? [], o.service, verdict.id);
      if (d && !d.authorized) return { reason: "denied", detail: d.reason, peer, remote };
    };
    let answer = await ask();
    const refused = refusalOf(answer);
    if (refused) return refuse(socket, refused);
    const authorizeMs = Date.now() - authorizeStarted;
    if (socket.destroyed) return;
    let appSocket: net.Socket | undefined;
    if (!o.handoff) {
      try {
        appSocket = await connectPlain(app!, o.connectTimeoutMs ?? 1000);
      } catch (err) {
        return refuse(socket, {
          reason: "app_unreachable",
          detail: (err as Error).message,
          peer: verdict.uri,
          remote,
        });
      }
      if (socket.destroyed) {
        appSocket.destroy();
        return;
      }
    }
    // Right before the connection counts as open (nothing is awaited from this check on): an
    // answer that an intention or roots change overtook, while the agent answered or the
    // application was dialled, is asked again — the re-check round of that change could not see
    // this connection; once it is open, the next round does.
    while (answer.ok && !authz.isCurrent(answer)) answer = await ask(answer);
    // Intentions may also have changed meanwhile.
    const late = refusalOf(answer);
    if (late || socket.destroyed) {
      appSocket?.destroy();
      return late ? refuse(socket, late) : undefined;
    }
    const accepted: ConnectionEvent = {
      type: "accepted",
      direction: "inbound",
      listener: listenerName,
      peer: verdict.uri,
      remote,
      authorizeMs,
      handshakeMs,
      ...(answer.ok && (answer.source === "fresh" || answer.source === "outage")
        ? { authorizeCached: answer.source }
        : {}),
      ...(answer.ok && answer.source === "joined" ? { authorizeJoined: true } : {}),
    };
    if (o.handoff) {
      return handOff(socket, rawSocket, {
        socket,
        caller: { spiffeId: verdict.uri, id: verdict.id, serial: verdict.serial },
        remote,
      }, accepted);
    }
    if (rawSocket) piped.add(rawSocket);
    const pipe = pipeSockets(socket, appSocket!, {
      idleTimeoutMs: o.idleTimeoutMs,
      held: { a: held!.release() },
    });
    const conn: InboundConnection = { peer: verdict.uri, remote, since: Date.now(), pipe };
    active.add(conn);
    emit(accepted);
    log.log("debug", "inbound connection authorized", { peer: verdict.uri, remote });
    await finished(conn);
  }

  /** Reports a connection's close, with its bytes. */
  async function finished(conn: InboundConnection): Promise<void> {
    const stats = await conn.pipe.closed;
    active.delete(conn);
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
      server.listen(port, o.bind.hostname, () => {
        server.off("error", reject);
        resolve();
      });
    });
  await listen(o.bind.port);
  /** Gives an authorized socket to `handoff`, tracked like a piped connection. */
  function handOff(
    socket: tls.TLSSocket,
    raw: net.Socket | undefined,
    connection: AuthorizedConnection,
    accepted: ConnectionEvent,
  ): void {
    if (raw) piped.add(raw);
    const { promise, resolve } = Promise.withResolvers<PipeStats>();
    const stats: PipeStats = { aToB: 0, bToA: 0 };
    const read = () => {
      stats.aToB = socket.bytesRead;
      stats.bToA = socket.bytesWritten;
      return stats;
    };
    socket.once("close", () => resolve(read()));
    const pipe: Pipe = {
      closed: promise,
      get stats() {
        return read();
      },
      destroy(reason?: Error) {
        if (reason && !stats.error) stats.error = reason;
        socket.destroy();
      },
    };
    const conn: InboundConnection = {
      peer: connection.caller.spiffeId,
      remote: connection.remote,
      since: Date.now(),
      pipe,
    };
    active.add(conn);
    emit(accepted);
    void finished(conn);
    try {
      o.handoff!(connection);
    } catch (err) {
      log.log("error", "connection handler failed", { error: String(err) });
      socket.destroy();
    }
  }

  server.on("error", (err) => log.log("error", "inbound listener error", { error: err.message }));
  const addr = server.address() as net.AddressInfo;
  const address = { hostname: addr.address, port: addr.port };
  log.log("info", "inbound listener started", {
    bind: formatAddress(address),
    app: app ? formatAddress(app) : "in-process handler",
    service: o.service,
  });

  let closing: Promise<void> | undefined;
  // A later close() may shorten the drain (a retired listener draining when the proxy stops).
  let deadline = Infinity;
  const close = (drainMs = 0): Promise<void> => {
    deadline = Math.min(deadline, Date.now() + drainMs);
    closing ??= (async () => {
      unsubscribe();
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) if (!piped.has(s)) s.destroy();
      while (active.size && Date.now() < deadline) {
        await Promise.race([
          Promise.all([...active].map((c) => c.pipe.closed)),
          new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now())))),
        ]);
      }
      for (const c of active) c.pipe.destroy(new Error("proxy shutting down"));
      await Promise.all([...active].map((c) => c.pipe.closed));
      await closed;
    })();
    return closing;
  };
  return {
    address,
    connections: active,
    get app() {
      return app;
    },
    forgetAuthorizations: forget,
    setApp(next) {
      app = next;
    },
    update(next) {
      if (next.service !== o.service) {
        o.service = next.service;
        listenerName = `inbound:${o.service}`;
        forget(); // answers were for another target
      }
      o.connectTimeoutMs = next.connectTimeoutMs;
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
