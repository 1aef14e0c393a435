/**
 * Copies bytes both ways between two sockets, once and for all: backpressure (pause the reader
 * while the writer drains), half-close passed on (`end` on one side ends writing on the other), both sides
 * destroyed on error, byte counts kept, and one callback when both are closed.
 * @module
 */
import type { Duplex } from "node:stream";
import { idleTimer, type Timer, timer } from "./timers.ts";

/** Bytes moved by a finished pipe. */
export interface PipeStats {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
  /** The first error seen on either side, if any. */
  error?: Error;
}

/**
 * Stops reading from a socket. For a TLS socket, Deno 2.9's node:tls keeps reading the TCP
 * connection underneath even while the TLS socket is paused (measured: 128 MiB offered by a
 * fast writer all ended up buffered in the process), so the TCP handle's reading is stopped
 * too; the sender then meets TCP flow control.
 */
export function stopReading(socket: Duplex): void {
  socket.pause();
  tcpHandle(socket)?.readStop?.();
}

/** Undoes {@linkcode stopReading}: the TLS socket flows first, then TCP reading restarts. */
export function startReading(socket: Duplex): void {
  socket.resume();
  tcpHandle(socket)?.readStart?.();
}

function tcpHandle(
  socket: Duplex,
): { readStop?: () => void; readStart?: () => void } | undefined {
  const raw = (socket as { _parent?: { _handle?: unknown } })._parent;
  return raw?._handle as { readStop?: () => void; readStart?: () => void } | undefined;
}

/** What a held socket received before it was piped. */
export interface HeldData {
  /** Chunks read so far, in order. */
  chunks: Uint8Array[];
  /** Whether the peer already ended its side. */
  ended: boolean;
}

/** A socket whose early bytes are being kept until it is piped. */
export interface HeldSocket {
  /** Stops holding and hands over what arrived. Call right before piping. */
  release(): HeldData;
}

/**
 * Keeps a socket flowing while it waits (authorization, dialing), storing what arrives, up to
 * `maxBytes` (past that it is paused). We do not `pause()` TLS sockets for this up front:
 * Deno 2.9's node:tls loses an end-of-stream that arrives while paused, which would leave a
 * refused or half-closed connection hanging.
 */
export function holdSocket(socket: Duplex, maxBytes = 4 * 1024 * 1024): HeldSocket {
  const held: HeldData = { chunks: [], ended: false };
  let bytes = 0;
  const onData = (chunk: Uint8Array) => {
    held.chunks.push(chunk);
    bytes += chunk.length;
    // Bounded memory first: past `maxBytes`, stop reading (and accept the rare lost end).
    if (bytes > maxBytes && !socket.isPaused()) stopReading(socket);
  };
  const onEnd = () => (held.ended = true);
  socket.on("data", onData);
  socket.on("end", onEnd);
  socket.resume();
  return {
    release() {
      socket.off("data", onData);
      socket.off("end", onEnd);
      return held;
    },
  };
}

/** A running bidirectional pipe. */
export interface Pipe {
  /** Settles when both sockets are closed. */
  readonly closed: Promise<PipeStats>;
  /** Live byte counts. */
  readonly stats: PipeStats;
  /** Destroys both sockets. */
  destroy(reason?: Error): void;
}

/**
 * Pipes `a` ↔ `b`. Both sockets must allow half-open (`allowHalfOpen: true`), so that one
 * direction can finish while the other goes on.
 *
 * @example
 * ```ts
 * import type net from "node:net";
 * import type tls from "node:tls";
 * import { pipeSockets } from "./pipe.ts";
 *
 * async function relay(tlsSocket: tls.TLSSocket, appSocket: net.Socket): Promise<void> {
 *   const pipe = pipeSockets(tlsSocket, appSocket, { idleTimeoutMs: 60_000 });
 *   const { aToB, bToA } = await pipe.closed;
 *   console.log(`${aToB} bytes to the app, ${bToA} back`);
 * }
 * ```
 */
export function pipeSockets(
  a: Duplex,
  b: Duplex,
  options: {
    idleTimeoutMs?: number;
    tlsPauseBytes?: number;
    /** How long the second side may take to finish after the first closed (default 30 s). */
    lingerMs?: number;
    /** What `a` and `b` received while held (see {@linkcode holdSocket}). */
    held?: { a?: HeldData; b?: HeldData };
  } = {},
): Pipe {
  const stats: PipeStats = { aToB: 0, bToA: 0 };
  const { promise, resolve } = Promise.withResolvers<PipeStats>();
  let open = 2;
  const idleMs = options.idleTimeoutMs ?? 0;
  const idle = idleTimer(idleMs, () => destroy(new Error(`idle for ${idleMs} ms`)));
  let settled = false;
  let forceSettle: Timer | undefined;
  let linger: Timer | undefined;
  const settle = () => {
    if (settled) return;
    settled = true;
    idle.clear();
    forceSettle?.clear();
    linger?.clear();
    resolve(stats);
  };
  const destroy = (reason?: Error) => {
    if (reason && !stats.error) stats.error = reason;
    for (const s of [a, b]) {
      s.destroy();
      // Deno 2.9's node:tls client can miss a peer's close that came right after the
      // handshake (Go's TLS 1.3 server refusing us); its TCP socket underneath still closes.
      (s as { _parent?: Duplex })._parent?.destroy();
    }
    // A destroyed socket that never reports 'close' must not keep a drain waiting forever.
    if (!settled) forceSettle ??= timer(2000, settle);
  };
  const onClose = (other: Duplex) => () => {
    open -= 1;
    if (open === 1) {
      // One side is gone: flush what is still queued for the other, then close it too —
      // nothing can flow to or from the side that left.
      if (other.writableFinished || other.destroyed) other.destroy();
      else {
        other.once("finish", () => other.destroy());
        other.end();
        // A peer that never takes the rest (or a close Deno's TLS client missed) gets
        // `lingerMs` before it is cut.
        linger = timer(options.lingerMs ?? 30_000, () => destroy());
      }
    }
    if (open === 0) settle();
  };
  for (const [from, to, key] of [[a, b, "aToB"], [b, a, "bToA"]] as const) {
    // Deno 2.9's node:tls loses the peer's end-of-stream when it arrives while the TLS socket
    // is paused (checked on loopback: a paused server socket never emits 'end'). So a TLS
    // socket is paused only once its destination has buffered `tlsPauseBytes` (64 MiB); below that it
    // keeps flowing and half-close always gets through. Plain sockets pause at once.
    const lossyPause = (from as { encrypted?: boolean }).encrypted === true;
    const pauseAt = lossyPause ? options.tlsPauseBytes ?? 64 * 1024 * 1024 : 0;
    from.on("data", (chunk: Uint8Array) => {
      stats[key] += chunk.length;
      idle.touch();
      if (!to.writableCorked) {
        to.cork();
        queueMicrotask(() => to.uncork());
      }
      if (!to.write(chunk) && to.writableLength > pauseAt && !from.isPaused()) {
        stopReading(from);
        to.once("drain", () => startReading(from));
      }
    });
    from.on("end", () => to.end());
    from.on("error", (err: Error) => destroy(err));
    from.once("close", onClose(to));
    const early = from === a ? options.held?.a : options.held?.b;
    for (const chunk of early?.chunks ?? []) {
      stats[key] += chunk.length;
      to.write(chunk);
    }
    if (early?.ended) to.end();
    // A held socket may have been stopped at its bound: read again now that bytes can flow.
    startReading(from);
  }
  return { closed: promise, stats, destroy };
}
