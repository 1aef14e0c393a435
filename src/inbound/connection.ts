/**
 * One inbound connection, top to bottom in the fail-closed order: (the TLS handshake, done by
 * `node:tls`) → chain and identity → authorize → intention overrule → dial the application →
 * re-check → pipe (or hand off). No byte reaches the application before authorization, and the
 * application is dialled only for an authorized caller (Consul's built-in proxy dials it first;
 * we do not). A refusal is a value the gateway reports, never an exception.
 * @module
 */
import type net from "node:net";
import type tls from "node:tls";
import type { Intention } from "../agent/types.ts";
import type { Refusal } from "../events/connection.ts";
import { decideByIntentions } from "../intentions/decide.ts";
import type { Logger } from "../net/log.ts";
import { holdSocket, type Pipe, pipeSockets, type PipeStats } from "../net/pipe.ts";
import { connectPlain, peerChain, type SocketAddress } from "../net/sockets.ts";
import type { PeerVerdict, TlsMaterial } from "../trust/material.ts";
import type { ServiceSpiffeId } from "../trust/spiffe.ts";
import type { AuthorizeAnswer, AuthorizeCache, AuthorizeCaller } from "./authorize_cache.ts";

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

/**
 * What {@linkcode serveInbound} needs from its gateway. Fields are read at each step, so a
 * gateway that changes them (a new service name, application address or timeout) changes what
 * the next step of every connection uses.
 */
export interface InboundContext {
  /** The live leaf and roots: verifies the caller's chain and identity. */
  material: TlsMaterial;
  /** Authorize answers (fresh, joined, outage fallback) and the epoch of changes. */
  authz: AuthorizeCache;
  /** The service we front: the intentions' destination. */
  service: string;
  /**
   * The latest intentions that apply to `service` (highest precedence first): they can only
   * overrule the agent's allow, never its deny.
   */
  intentions?: () => readonly Intention[] | undefined;
  /** The local application to dial (`undefined` with `handoff`). */
  app?: SocketAddress;
  /** Instead of `app`: receives the authorized socket, unread. */
  handoff?: (connection: AuthorizedConnection) => void;
  /** Local application connect deadline, in ms. */
  connectTimeoutMs: number;
  /** Close a piped connection idle this long; 0 or unset = never. */
  idleTimeoutMs?: number;
  /**
   * The open connections: a connection joins it in the same step as its last re-check, so that
   * an intention or roots change either reaches that check or finds the connection here (and
   * re-checks it). Whoever reports its end removes it.
   */
  connections: Set<InboundConnection>;
  /** Aborts when the gateway closes: a connection not yet open stops waiting and is dropped. */
  signal: AbortSignal;
  /** For the warning when an outage answer is used. */
  log: Logger;
}

/** What became of one inbound connection (see {@linkcode serveInbound}). */
export type InboundOutcome =
  | {
    /** Authorized and piped (or handed off); in `ctx.connections`. */
    status: "open";
    /** The open connection; its `pipe.closed` settles when it ends. */
    connection: InboundConnection;
    /** The answer that let it open (its `source` tells fresh, joined, outage). */
    answer: AuthorizeAnswer;
    /** How long authorize took, in ms. */
    authorizeMs: number;
  }
  | {
    /** Refused: the gateway closes the socket and reports the refusal. */
    status: "refused";
    /** Why. */
    refusal: Refusal;
  }
  | {
    /**
     * The client left, or the gateway began closing, before the connection opened: nothing to
     * report; the gateway closes the socket.
     */
    status: "dropped";
    /** Which of the two. */
    detail: string;
  };

/**
 * Serves one inbound TLS connection whose handshake `node:tls` completed (with the client
 * certificate checked against the mesh roots by the TLS layer as defense in depth). Never
 * throws for a refusal: it returns it.
 *
 * @example
 * ```ts
 * import type tls from "node:tls";
 * import { type InboundContext, serveInbound } from "./connection.ts";
 * // What a gateway does with each connection its TLS server accepted.
 * async function onSecureConnection(socket: tls.TLSSocket, ctx: InboundContext) {
 *   const outcome = await serveInbound(socket, ctx);
 *   if (outcome.status === "refused") console.log(outcome.refusal.reason); // e.g. "denied"
 *   if (outcome.status === "open") await outcome.connection.pipe.closed;
 * }
 * ```
 */
export async function serveInbound(
  socket: tls.TLSSocket,
  ctx: InboundContext,
): Promise<InboundOutcome> {
  const remote = `${socket.remoteAddress}:${socket.remotePort}`;
  // Not one byte reaches the application before authorization: what the client sends meanwhile
  // is held (bounded), not paused (see holdSocket); a handed-off socket stays unread.
  const held = ctx.handoff ? undefined : holdSocket(socket);
  socket.on("error", () => {}); // errors surface through close; the pipe handles them later
  // 1. Chain and identity: our own check against the mesh roots; the caller is a service.
  const { der, chain } = peerChain(socket);
  const who = await ctx.material.verifyPeer(der, chain, "clientAuth");
  if (!who.ok) return refused({ reason: who.reason, detail: who.detail, remote });
  const caller: AuthorizeCaller = { uri: who.uri, serial: who.serial };
  // 2. Authorize: the agent's answer through the cache; no answer is a refusal (fail closed).
  const authorizeStarted = Date.now();
  let answer = await ask(ctx, caller);
  if (!answer) return dropped(ctx);
  const denied = agentRefusal(answer, who.uri, remote);
  if (denied) return refused(denied);
  // 3. Intention overrule: a deny from the intentions watch beats the agent's older allow.
  const overruled = intentionRefusal(ctx, who, remote);
  if (overruled) return refused(overruled);
  const authorizeMs = Date.now() - authorizeStarted;
  if (socket.destroyed) return dropped(ctx);
  // 4. Dial the application, only now.
  const app = ctx.handoff ? undefined : await dialApp(ctx);
  if (app instanceof Error) {
    if (ctx.signal.aborted) return dropped(ctx);
    return refused({ reason: "app_unreachable", detail: app.message, peer: who.uri, remote });
  }
  // 5. Re-check, right before the connection counts as open (nothing is awaited from here on):
  // an answer that an intention or roots change overtook while the agent answered or the
  // application was dialled is asked again — that change's re-check round could not see this
  // connection; once it is open, the next round does. Intentions may also have changed.
  while (answer?.ok && !ctx.authz.isCurrent(answer) && !socket.destroyed) {
    answer = await ask(ctx, caller, answer);
  }
  const late = answer &&
    (agentRefusal(answer, who.uri, remote) ?? intentionRefusal(ctx, who, remote));
  if (late || !answer || socket.destroyed || ctx.signal.aborted) {
    app?.destroy();
    return late ? refused(late) : dropped(ctx);
  }
  // 6. Pipe, or hand off: the connection is open.
  const connection = app
    ? {
      peer: who.uri,
      remote,
      since: Date.now(),
      pipe: pipeSockets(socket, app, {
        idleTimeoutMs: ctx.idleTimeoutMs,
        held: held && { a: held.release() },
      }),
    }
    : handOff(ctx, {
      socket,
      caller: { spiffeId: who.uri, id: who.id, serial: who.serial },
      remote,
    });
  ctx.connections.add(connection);
  return { status: "open", connection, answer, authorizeMs };
}

function refused(refusal: Refusal): InboundOutcome {
  return { status: "refused", refusal };
}

/** Why a connection that was not refused did not open. */
function dropped(ctx: InboundContext): InboundOutcome {
  const detail = ctx.signal.aborted ? "the gateway is closing" : "the client left";
  return { status: "dropped", detail };
}

/**
 * An answer no change has overtaken (see `AuthorizeCache.current`), starting from `prev`; or
 * `undefined` once the gateway begins closing (a shared call to the agent goes on for others).
 */
async function ask(
  ctx: InboundContext,
  caller: AuthorizeCaller,
  prev?: AuthorizeAnswer,
): Promise<AuthorizeAnswer | undefined> {
  const answer = await untilAborted(ctx.authz.current(caller, prev), ctx.signal);
  if (answer?.ok && answer.source === "outage" && answer !== prev) {
    ctx.log.log("warn", "agent did not answer authorize; using its recent answer", {
      peer: caller.uri,
      ageMs: answer.ageMs,
      authorized: answer.result.Authorized,
      error: String(answer.error),
    });
  }
  return answer;
}

/** Why the agent's `answer` refuses the caller, if it does: no answer, or its deny. */
function agentRefusal(answer: AuthorizeAnswer, peer: string, remote: string): Refusal | undefined {
  if (!answer.ok) return { reason: answer.reason, detail: answer.detail, peer, remote };
  if (!answer.result.Authorized) {
    return { reason: "denied", detail: answer.result.Reason, peer, remote };
  }
}

/**
 * Why the latest intentions refuse the caller, if they do: the agent's allow may predate a
 * change, or come from its lagging cache. An intention never allows what the agent denied.
 */
function intentionRefusal(
  ctx: InboundContext,
  who: PeerVerdict & { ok: true },
  remote: string,
): Refusal | undefined {
  const d = decideByIntentions(ctx.intentions?.() ?? [], ctx.service, who.id);
  if (d && !d.authorized) return { reason: "denied", detail: d.reason, peer: who.uri, remote };
}

/** A plain socket to the application, or why not (`connectTimeoutMs`; the gateway closing). */
async function dialApp(ctx: InboundContext): Promise<net.Socket | Error> {
  if (!ctx.app) return new Error("no application address");
  try {
    return await connectPlain(ctx.app, ctx.connectTimeoutMs, ctx.signal);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Gives an authorized socket to `ctx.handoff`, as an open connection whose pipe is the socket
 * itself (bytes read and written, closed when it closes).
 */
function handOff(ctx: InboundContext, connection: AuthorizedConnection): InboundConnection {
  const { socket } = connection;
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
  try {
    ctx.handoff!(connection);
  } catch (err) {
    ctx.log.log("error", "connection handler failed", { error: String(err) });
    socket.destroy();
  }
  return { peer: connection.caller.spiffeId, remote: connection.remote, since: Date.now(), pipe };
}

/** `promise`'s value, or `undefined` as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
