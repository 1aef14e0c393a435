/**
 * One outbound connection, top to bottom: pick the upstream's endpoints → dial → verify → pipe.
 * The next endpoint is tried only while nothing has flowed either way (the client's bytes wait
 * in its paused socket, no server has sent it anything); once piping starts the connection is
 * the client's, whatever happens to it. A refused connection is a value, counted and logged once.
 * @module
 */
import type net from "node:net";
import type { ConnectionEvent, Refusal } from "../events/connection.ts";
import type { Logger } from "../net/log.ts";
import { pipeConns } from "../net/native_pipe.ts";
import { type Pipe, pipeSockets } from "../net/pipe.ts";
import { socketAsConn } from "../net/socket_conn.ts";
import type { DialFailure, MeshEndpoint } from "./dialer.ts";
import {
  type NativeUpstreamConnection,
  refusalAfterDials,
  type UpstreamConnection,
  type UpstreamConnector,
} from "./connector.ts";

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

/** What {@linkcode serveOutbound} needs of its listener. */
export interface OutboundContext {
  /** Picks, dials and verifies the upstream's endpoints. */
  connector: UpstreamConnector;
  /** The listener's open connections; a new one is in it while it is open. */
  connections: Set<OutboundConnection>;
  /** Most open connections; a client past it is refused (`limit`). 0 = unlimited. */
  maxConnections?: number;
  /** Close a connection idle this long; 0 = never. */
  idleTimeoutMs?: number;
  /** Log sink (refusals, once each). */
  log: Logger;
  /** Connection events: `accepted`, `refused`, `closed` (`dial_failed` come from the connector). */
  emit: (event: ConnectionEvent) => void;
  /** Aborts when the listener stops: cuts a pick or dial in progress and open pipes. */
  signal: AbortSignal;
}

/**
 * What became of one client: an open connection (`closed` settles once it is closed and
 * reported), a refusal (the client is closed), or the client (or listener) went away first.
 */
export type OutboundResult =
  | { ok: true; connection: OutboundConnection; closed: Promise<void> }
  | { ok: false; refusal: Refusal }
  | { ok: false; refusal?: undefined; gone: true };

/**
 * Serves one accepted client socket (accepted paused, allowing half-open) of an upstream
 * listener. Never throws for a refusal: it is the value, already counted and logged.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { AgentClient } from "../agent/client.ts";
 * import { silentLogger } from "../net/log.ts";
 * import { TlsMaterial } from "../trust/material.ts";
 * import { type OutboundConnection, serveOutbound } from "./connection.ts";
 * import { UpstreamConnector } from "./connector.ts";
 *
 * const connector = new UpstreamConnector({
 *   agent: new AgentClient(),
 *   material: new TlsMaterial(), // fed by the leaf and roots watches
 *   upstream: { type: "service", name: "db" },
 * });
 * const stop = new AbortController();
 * const connections = new Set<OutboundConnection>();
 * const ctx = { connector, connections, log: silentLogger, emit: console.log, signal: stop.signal };
 * net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, async (client) => {
 *   const served = await serveOutbound(client, ctx);
 *   if (served.ok) await served.closed;
 *   else if (served.refusal) console.log(`refused: ${served.refusal.reason}`);
 * });
 * ```
 */
export async function serveOutbound(
  client: net.Socket,
  ctx: OutboundContext,
): Promise<OutboundResult> {
  client.pause();
  client.on("error", () => {});
  const remote = `${client.remoteAddress ?? "local"}:${client.remotePort ?? ""}`;
  const gone = () => client.destroyed || ctx.signal.aborted;
  if (ctx.maxConnections && ctx.connections.size >= ctx.maxConnections) {
    const detail = `${ctx.maxConnections} connections open`;
    return refuse(() => client.destroy(), ctx, { reason: "limit", detail, remote });
  }
  // Pick: the endpoints to try, in order, or why there are none.
  const picked = await ctx.connector.pick(ctx.signal);
  if (gone()) return leave(() => client.destroy());
  if (!picked.ok) return refuse(() => client.destroy(), ctx, { ...picked.refusal, remote });
  const failures: DialFailure[] = [];
  for (const candidate of picked.candidates) {
    // Dial → verify (chain to the mesh roots, the SPIFFE ID of the service meant).
    const dialed = await ctx.connector.dial(candidate, ctx.signal);
    if (gone()) {
      if (dialed.ok) dialed.connection.socket.destroy();
      return leave(() => client.destroy());
    }
    // Retry with the next endpoint: no byte has moved yet, so the client cannot tell.
    if (!dialed.ok) failures.push(dialed.failure);
    // Pipe: from here on the connection is the client's; it is never retried.
    else return pipe(client, dialed.connection, ctx, remote);
  }
  return refuse(() => client.destroy(), ctx, { ...refusalAfterDials(failures), remote });
}

/**
 * {@linkcode serveOutbound} for a client accepted with `Deno.listen` (`-outbound-tls native`):
 * the same steps, refusals, events and retry rule; the endpoint is dialled with
 * `Deno.connectTls` ({@linkcode UpstreamConnector.dialNative}, which falls back to `node:tls`
 * where the native leg cannot decide) and piped with {@linkcode pipeConns}. Nothing is read
 * from the client before the pipe starts (its bytes wait in the kernel).
 *
 * @example
 * ```ts
 * import { AgentClient } from "../agent/client.ts";
 * import { silentLogger } from "../net/log.ts";
 * import { TlsMaterial } from "../trust/material.ts";
 * import { type OutboundConnection, serveOutboundNative } from "./connection.ts";
 * import { UpstreamConnector } from "./connector.ts";
 *
 * const connector = new UpstreamConnector({
 *   agent: new AgentClient(),
 *   material: new TlsMaterial(), // fed by the leaf and roots watches
 *   upstream: { type: "service", name: "db" },
 * });
 * const stop = new AbortController();
 * const connections = new Set<OutboundConnection>();
 * const ctx = { connector, connections, log: silentLogger, emit: console.log, signal: stop.signal };
 * for await (const client of Deno.listen({ hostname: "127.0.0.1", port: 0 })) {
 *   client.setNoDelay(true);
 *   void serveOutboundNative(client, ctx).then((served) => served.ok ? served.closed : undefined);
 * }
 * ```
 */
export async function serveOutboundNative(
  client: Deno.TcpConn,
  ctx: OutboundContext,
): Promise<OutboundResult> {
  const addr = client.remoteAddr;
  const remote = `${addr.hostname}:${addr.port}`;
  const close = () => closeConn(client);
  if (ctx.maxConnections && ctx.connections.size >= ctx.maxConnections) {
    const detail = `${ctx.maxConnections} connections open`;
    return refuse(close, ctx, { reason: "limit", detail, remote });
  }
  // Pick: the endpoints to try, in order, or why there are none.
  const picked = await ctx.connector.pick(ctx.signal);
  if (ctx.signal.aborted) return leave(close);
  if (!picked.ok) return refuse(close, ctx, { ...picked.refusal, remote });
  const failures: DialFailure[] = [];
  for (const candidate of picked.candidates) {
    // Dial → verify (chain to the mesh roots, the SPIFFE ID of the service meant).
    const dialed = await ctx.connector.dialNative(candidate, ctx.signal);
    if (ctx.signal.aborted) {
      if (dialed.ok) closeMesh(dialed.connection);
      return leave(close);
    }
    // Retry with the next endpoint: no byte has moved yet, so the client cannot tell.
    if (!dialed.ok) failures.push(dialed.failure);
    // Pipe: from here on the connection is the client's; it is never retried.
    else return pipeNative(client, dialed.connection, ctx, remote);
  }
  return refuse(close, ctx, { ...refusalAfterDials(failures), remote });
}

function closeConn(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function closeMesh(mesh: NativeUpstreamConnection | UpstreamConnection): void {
  if ("conn" in mesh) {
    closeConn(mesh.conn);
    mesh.done();
  } else mesh.socket.destroy();
}

function refuse(close: () => void, ctx: OutboundContext, refusal: Refusal): OutboundResult {
  close();
  ctx.log.log("warn", "upstream connection failed", {
    reason: refusal.reason,
    detail: refusal.detail,
  });
  const listener = ctx.connector.listenerName;
  ctx.emit({ type: "refused", direction: "outbound", listener, refusal });
  return { ok: false, refusal };
}

function leave(close: () => void): OutboundResult {
  close();
  return { ok: false, gone: true };
}

/** Pipes the client to its verified mesh connection; reports it open, then closed. */
function pipe(
  client: net.Socket,
  mesh: UpstreamConnection,
  ctx: OutboundContext,
  remote: string,
): OutboundResult {
  const pipe = pipeSockets(client, mesh.socket, {
    idleTimeoutMs: ctx.idleTimeoutMs,
    held: { b: mesh.held.release() },
  });
  return opened(pipe, mesh.endpoint, mesh.connectMs, ctx, remote);
}

/** {@linkcode pipe} for a Deno client: to a native connection, or a `node:tls` fallback. */
function pipeNative(
  client: Deno.Conn,
  mesh: NativeUpstreamConnection | UpstreamConnection,
  ctx: OutboundContext,
  remote: string,
): OutboundResult {
  const options = { idleTimeoutMs: ctx.idleTimeoutMs };
  const pipe = "conn" in mesh ? pipeConns(client, mesh.conn, options) : pipeConns(
    client,
    socketAsConn(mesh.socket, { held: mesh.held.release() }) as Deno.Conn,
    options,
  );
  if ("conn" in mesh) void pipe.closed.then(mesh.done);
  return opened(pipe, mesh.endpoint, mesh.connectMs, ctx, remote);
}

/** An open connection: in `ctx.connections`, reported `accepted`, then `closed`. */
function opened(
  pipe: Pipe,
  endpoint: MeshEndpoint,
  connectMs: number,
  ctx: OutboundContext,
  remote: string,
): OutboundResult {
  const peer = `${endpoint.service}@${endpoint.address}:${endpoint.port}`;
  const listener = ctx.connector.listenerName; // settled: a dial means our leaf is loaded
  const target = endpoint.target ?? ctx.connector.upstream.name;
  const connection: OutboundConnection = { peer, remote, target, since: Date.now(), pipe };
  ctx.connections.add(connection);
  const handshakeMs = connectMs;
  ctx.emit({
    type: "accepted",
    direction: "outbound",
    listener,
    peer,
    remote,
    handshakeMs,
    target,
  });
  const cut = () => pipe.destroy(new Error("listener closing"));
  ctx.signal.addEventListener("abort", cut, { once: true });
  const closed = pipe.closed.then((stats) => {
    ctx.signal.removeEventListener("abort", cut);
    ctx.connections.delete(connection);
    ctx.emit({
      type: "closed",
      direction: "outbound",
      listener,
      peer,
      remote,
      bytesIn: stats.bToA,
      bytesOut: stats.aToB,
      durationMs: Date.now() - connection.since,
      error: stats.error?.message,
    });
  });
  return { ok: true, connection, closed };
}
