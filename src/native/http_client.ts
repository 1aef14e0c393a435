/**
 * `fetch` over the mesh: the URL's host names an upstream (see names.ts); each connection is
 * an identity-checked mTLS dial to one of its healthy endpoints (discovery chain, failover);
 * HTTP/1.1 keep-alive connections are pooled per upstream by our own pool (each request is
 * handed its socket by `node:http`'s `createConnection`).
 *
 * Why not `node:http`'s Agent: mesh sockets allow half-open (a pipe passes one direction's end
 * on while the other flows), so a connection the server closed stays "open" on our side
 * (CLOSE-WAIT) and the Agent kept handing it out: the next request hung for good (issue #16).
 * The pool below watches its idle sockets and drops one at the first sign of life or death
 * from the peer, retries an idempotent request that failed on a reused connection before any
 * response byte, and lets an abort cut a request at any point.
 * @module
 */
import http from "node:http";
import { type Duplex, Readable } from "node:stream";
import type tls from "node:tls";
import { timer } from "../net/timers.ts";
import { UpstreamConnectError, type UpstreamConnector } from "../outbound/connector.ts";
import { parseMeshHost } from "./names.ts";

/** Dials a verified mesh socket for a host name (the connector of its upstream). */
export type MeshDial = (host: string) => Promise<tls.TLSSocket>;

/**
 * Opens a verified socket through `connector`, with what the server sent during verification
 * put back in front of the stream.
 */
export async function dialThrough(connector: UpstreamConnector): Promise<tls.TLSSocket> {
  const connected = await connector.connect();
  // Library callers get an exception; the refusal's reason stays on it.
  if (!connected.ok) {
    throw new UpstreamConnectError(connected.refusal.reason, connected.refusal.detail);
  }
  const { socket, held } = connected.connection;
  const early = held.release();
  if (early.ended) {
    socket.destroy();
    throw new UpstreamConnectError(
      "upstream_unreachable",
      "the server closed the connection right after the handshake (denied by intentions?)",
    );
  }
  // Left flowing, not paused: node:http (and most callers) attach 'data' listeners and never
  // resume an explicitly paused socket. No bytes are lost: they arrive as I/O events, and the
  // new owner attaches its listeners in the same microtask chain that receives this socket.
  for (const chunk of early.chunks.reverse()) socket.unshift(chunk);
  return socket;
}

/** Options of {@linkcode createMeshFetch}. */
export interface MeshFetchOptions {
  /**
   * How long a pooled connection may stay idle before we close it. Keep it below the servers'
   * keep-alive timeout (meshgate's `serve` keeps 65 s), so that we, not they, close idle ones.
   * @default {30000}
   */
  idleTimeoutMs?: number;
}

/** A mesh `fetch` with its connection pool. */
export interface MeshFetch {
  /** Like `fetch`, for mesh URLs (`http://api.service.consul/path`). */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Pooled connections waiting for a request, over all hosts. */
  readonly idleConnections: number;
  /** Closes every connection, pooled or in use. */
  close(): void;
}

/**
 * Methods a client may repeat on its own when a connection fails (RFC 9110 §9.2.2): the server
 * may have seen the first attempt, and seeing it twice must not matter.
 */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** Open both ways: the peer has not ended, nothing destroyed it. */
function isOpen(socket: tls.TLSSocket): boolean {
  return !socket.destroyed && socket.writable && socket.readable && !socket.readableEnded;
}

/** Idle keep-alive connections per host, watched while they wait. */
class ConnectionPool {
  readonly #dial: MeshDial;
  readonly #idleTimeoutMs: number;
  /** Idle sockets by host, oldest first; each with the function that takes it out. */
  readonly #idle = new Map<string, Map<tls.TLSSocket, () => void>>();
  /** Every socket we dialled that is not closed yet, idle or in use. */
  readonly #open = new Set<tls.TLSSocket>();
  #closed = false;

  constructor(dial: MeshDial, idleTimeoutMs: number) {
    this.#dial = dial;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  get idleCount(): number {
    let n = 0;
    for (const m of this.#idle.values()) n += m.size;
    return n;
  }

  /** The most recently used idle connection to `host` that is still open, if any. */
  take(host: string): tls.TLSSocket | undefined {
    const idle = this.#idle.get(host);
    if (!idle) return undefined;
    for (const [socket, unpark] of [...idle].reverse()) {
      unpark();
      if (isOpen(socket)) return socket;
      socket.destroy();
    }
    return undefined;
  }

  /**
   * A new connection to `host`. An abort rejects at once; the dial itself goes on and its
   * socket, a good one, joins the idle pool.
   */
  async dial(host: string, signal: AbortSignal): Promise<tls.TLSSocket> {
    if (this.#closed) throw new TypeError(`mesh fetch ${host}: the client is closed`);
    signal.throwIfAborted();
    const dialing = this.#dial(host).then((socket) => {
      this.#adopt(socket);
      if (this.#closed) throw new Error("the client was closed while dialling");
      return socket;
    });
    const { promise, resolve, reject } = Promise.withResolvers<tls.TLSSocket>();
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    dialing.then((socket) => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) this.park(host, socket);
      else resolve(socket);
    }, (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(new TypeError(`mesh fetch ${host}: ${err.message}`, { cause: err }));
    });
    return await promise;
  }

  #adopt(socket: tls.TLSSocket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#open.add(socket);
    socket.once("close", () => this.#open.delete(socket));
    // Whoever uses the socket listens for errors too; this one only makes sure a peer's reset
    // between two owners can never go unheard (an unheard 'error' would end the process).
    socket.on("error", () => socket.destroy());
  }

  /**
   * Puts a connection whose exchange completed back in the pool. While idle, anything from the
   * peer evicts it: 'end' (the server closed it, e.g. its keep-alive timeout — with half-open
   * sockets nothing else would notice), 'close', an error, or a stray byte (out of step).
   * `idleMs` shortens the idle timeout for this socket (the server's keep-alive hint).
   */
  park(host: string, socket: tls.TLSSocket, idleMs = Infinity): void {
    // A timer waits at most 2^31-1 ms (~24.8 days); a longer idle timeout evicts then.
    const ms = Math.min(this.#idleTimeoutMs, idleMs, 2_147_483_647);
    if (this.#closed || !isOpen(socket) || ms <= 0) {
      socket.destroy();
      return;
    }
    let idle = this.#idle.get(host);
    if (!idle) this.#idle.set(host, idle = new Map());
    const evict = () => {
      unpark();
      socket.destroy();
    };
    // An idle pool does not keep the process alive (as node's Agent): neither its timer…
    const expiry = timer(ms, evict, { unref: true });
    const unpark = () => {
      expiry.clear();
      socket.off("end", evict).off("close", evict).off("error", evict).off("data", evict);
      socket.ref();
      idle.delete(socket);
      if (idle.size === 0 && this.#idle.get(host) === idle) this.#idle.delete(host);
    };
    socket.on("end", evict).on("close", evict).on("error", evict).on("data", evict);
    socket.resume(); // 'end' is only seen by a flowing socket
    socket.unref(); // …nor its sockets
    idle.set(socket, unpark);
  }

  /** Closes every connection and takes no more. */
  close(): void {
    this.#closed = true;
    for (const idle of [...this.#idle.values()]) for (const unpark of [...idle.values()]) unpark();
    for (const socket of this.#open) socket.destroy();
    this.#open.clear();
  }
}

/** A request failed on a reused connection before any byte of a response arrived. */
class StaleConnectionError extends Error {
  constructor(readonly host: string, cause: Error) {
    super(
      `mesh fetch ${host}: the reused connection closed before any response ` +
        `(${cause.message})`,
      { cause },
    );
    this.name = "StaleConnectionError";
  }
}

/** What one exchange needs to know of the request. */
interface Outgoing {
  host: string;
  url: URL;
  method: string;
  headers: Record<string, string>;
  /** Bytes (replayable), a stream (sent once), or nothing. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  signal: AbortSignal;
}

/** Creates a mesh fetch whose connections come from `dial`. */
export function createMeshFetch(dial: MeshDial, options: MeshFetchOptions = {}): MeshFetch {
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  if (!(idleTimeoutMs > 0)) {
    throw new RangeError(
      `mesh fetch: idleTimeoutMs must be > 0: current value is ${idleTimeoutMs}`,
    );
  }
  const pool = new ConnectionPool(dial, idleTimeoutMs);

  /** One request/response on `socket`; the socket goes back to the pool once it is done. */
  function exchange(socket: tls.TLSSocket, reused: boolean, out: Outgoing): Promise<Response> {
    const { host, url, method, signal } = out;
    if (signal.aborted) {
      pool.park(host, socket); // nothing was sent on it
      return Promise.reject(signal.reason);
    }
    return new Promise<Response>((resolve, reject) => {
      let received = 0;
      let response: http.IncomingMessage | undefined;
      const onData = (chunk: Uint8Array) => (received += chunk.length);
      // A peer that ends or closes before answering fails the request here, whatever node:http
      // makes of a half-open socket.
      const onGone = () => {
        if (!response) cr.destroy(new Error("the connection closed before a response"));
      };
      const onFree = () => {
        cleanup();
        if (signal.aborted) socket.destroy();
        else pool.park(host, socket, keepAliveHintMs(response?.headers["keep-alive"]));
      };
      const onAbort = () => {
        reject(signal.reason);
        response?.destroy(signal.reason); // a body being read errors with the reason
        cr.destroy(signal.reason);
        socket.destroy(); // never back to the pool: the server may still be answering
      };
      const cleanup = () => {
        socket.off("data", onData).off("end", onGone).off("close", onGone).off("free", onFree);
        signal.removeEventListener("abort", onAbort);
      };
      const cr = http.request({
        host: url.hostname,
        port: url.port || 80,
        method,
        path: url.pathname + url.search,
        headers: out.headers,
        createConnection: () => socket as Duplex,
      }, (res) => {
        response = res;
        const h = new Headers();
        // Name, value, name, value…: i - 1 and i are both below the length.
        for (let i = 1; i < res.rawHeaders.length; i += 2) {
          h.append(res.rawHeaders[i - 1]!, res.rawHeaders[i]!);
        }
        const status = res.statusCode ?? 502;
        const noBody = method === "HEAD" || status === 204 || status === 304;
        if (noBody) res.resume();
        resolve(
          new Response(
            noBody ? null : Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>,
            { status, statusText: res.statusMessage, headers: h },
          ),
        );
      });
      // After http.request: it takes the socket on the next tick, and a 'data' listener added
      // before that could let bytes flow before its parser listens.
      socket.on("data", onData).once("end", onGone).once("close", onGone).once("free", onFree);
      signal.addEventListener("abort", onAbort, { once: true });
      // Until the response is read to its end, an abort still cuts it (and its body).
      cr.once("close", () => signal.removeEventListener("abort", onAbort));
      // 'on', not 'once': node:http may report one failure twice (our destroy, its hang-up).
      let failed = false;
      cr.on("error", (err) => {
        if (failed) return;
        failed = true;
        cleanup();
        socket.destroy();
        if (signal.aborted) return reject(signal.reason);
        if (reused && !response && received === 0) {
          return reject(new StaleConnectionError(host, err));
        }
        reject(new TypeError(`mesh fetch ${url.host}: ${err.message}`, { cause: err }));
      });
      const { body } = out;
      if (!(body instanceof ReadableStream)) return void cr.end(body ?? undefined);
      // Stream the body with backpressure once the socket is attached (node:http attaches it
      // on the next tick, and emits no 'drain' for writes buffered before it).
      const settled = (event: string) =>
        new Promise<void>((r) => {
          cr.once(event, () => r());
          cr.once("close", () => r());
        });
      (async () => {
        if (!cr.socket) await settled("socket");
        for await (const chunk of body) {
          if (cr.destroyed) return;
          if (!cr.write(chunk)) await settled("drain");
        }
        cr.end();
      })().catch((err) => cr.destroy(err));
    });
  }

  const fetchFn = async (input: string | URL | Request, init?: RequestInit) => {
    const req = new Request(input, init);
    const { signal } = req;
    // Already aborted: nothing is dialled and nothing is sent.
    signal.throwIfAborted();
    const url = new URL(req.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`mesh fetch: unsupported scheme ${url.protocol} (the mesh adds TLS)`);
    }
    parseMeshHost(url.hostname); // fail early, with the accepted forms
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => (headers[k] = v));
    headers["host"] ??= url.host;
    headers["connection"] ??= "keep-alive";
    const body = await bodyOf(req, input, init);
    signal.throwIfAborted();
    if (body instanceof Uint8Array && !headers["transfer-encoding"]) {
      headers["content-length"] ??= String(body.byteLength);
    }
    const out: Outgoing = { host: url.hostname, url, method: req.method, headers, body, signal };

    const pooled = pool.take(out.host);
    try {
      return await exchange(pooled ?? await pool.dial(out.host, signal), pooled !== undefined, out);
    } catch (err) {
      if (!(err instanceof StaleConnectionError)) throw err;
      // The server closed the connection as we reused it (a keep-alive timeout racing our
      // request, a restart). It got our request, or part of it; it sent nothing back.
      if (!IDEMPOTENT.has(req.method)) {
        throw new TypeError(
          `${err.message}; not retried: ${req.method} is not idempotent and the server may ` +
            `have received it`,
          { cause: err },
        );
      }
      if (body instanceof ReadableStream) {
        throw new TypeError(`${err.message}; not retried: the request body was a stream`, {
          cause: err,
        });
      }
      return await exchange(await pool.dial(out.host, signal), false, out);
    }
  };
  return {
    fetch: fetchFn,
    get idleConnections() {
      return pool.idleCount;
    },
    close: () => pool.close(),
  };
}

/**
 * How long the server said it keeps an idle connection (`Keep-Alive: timeout=5`), less a
 * second so that we give it up first, as node's Agent and undici do; Infinity without a hint.
 */
function keepAliveHintMs(header: string | string[] | undefined): number {
  if (Array.isArray(header)) header = header.join(", ");
  const seconds = header && /(?:^|[\s,])timeout=(\d+)/i.exec(header)?.[1];
  return seconds ? Number(seconds) * 1000 - 1000 : Infinity;
}

/**
 * The body to send: bytes when the caller gave something other than a stream (so that a retry
 * can send it again, with a Content-Length), the stream itself otherwise (sent once, chunked).
 */
async function bodyOf(
  req: Request,
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<Uint8Array | ReadableStream<Uint8Array> | null> {
  if (!req.body) return null;
  const source = init?.body !== undefined
    ? init.body
    : input instanceof Request
    ? input.body
    : null;
  if (source instanceof ReadableStream) return req.body;
  return new Uint8Array(await req.arrayBuffer());
}
