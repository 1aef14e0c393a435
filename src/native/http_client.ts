/**
 * `fetch` over the mesh: the URL's host names an upstream (see names.ts); each connection is
 * an identity-checked mTLS dial to one of its healthy endpoints (discovery chain, failover);
 * HTTP/1.1 keep-alive connections are pooled per upstream by a `node:http` Agent.
 * @module
 */
import http from "node:http";
import { type Duplex, Readable } from "node:stream";
import type tls from "node:tls";
import { UpstreamConnectError, type UpstreamConnector } from "../outbound/connector.ts";
import { parseMeshHost } from "./names.ts";

/** Dials a verified mesh socket for a host name (the connector of its upstream). */
export type MeshDial = (host: string) => Promise<tls.TLSSocket>;

/**
 * Opens a verified socket through `connector`, with what the server sent during verification
 * put back in front of the stream.
 */
export async function dialThrough(connector: UpstreamConnector): Promise<tls.TLSSocket> {
  const { socket, held } = await connector.connect();
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

class MeshAgent extends http.Agent {
  readonly #dial: MeshDial;
  constructor(dial: MeshDial) {
    super({ keepAlive: true, keepAliveMsecs: 30_000 });
    this.#dial = dial;
  }
  // node:http asks for a connection with a callback; ours is asynchronous (resolve, dial).
  // The declared return type is a Duplex; node also accepts undefined plus the callback.
  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex {
    this.#dial(options.host ?? "").then(
      (s) => callback?.(null, s),
      (err) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined as unknown as Duplex;
  }
}

/** A mesh `fetch` with its connection pool. */
export interface MeshFetch {
  /** Like `fetch`, for mesh URLs (`http://api.service.consul/path`). */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Closes pooled connections. */
  close(): void;
}

/** Creates a mesh fetch whose connections come from `dial`. */
export function createMeshFetch(dial: MeshDial): MeshFetch {
  const agent = new MeshAgent(dial);
  const fetchFn = async (input: string | URL | Request, init?: RequestInit) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`mesh fetch: unsupported scheme ${url.protocol} (the mesh adds TLS)`);
    }
    parseMeshHost(url.hostname); // fail early, with the accepted forms
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => (headers[k] = v));
    headers["host"] ??= url.host;
    return await new Promise<Response>((resolve, reject) => {
      const cr = http.request({
        agent,
        host: url.hostname,
        port: url.port || 80,
        method: req.method,
        path: url.pathname + url.search,
        headers,
      }, (res) => {
        const h = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          h.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        }
        const status = res.statusCode ?? 502;
        const noBody = req.method === "HEAD" || status === 204 || status === 304;
        if (noBody) res.resume();
        resolve(
          new Response(
            noBody ? null : Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>,
            { status, statusText: res.statusMessage, headers: h },
          ),
        );
      });
      const abort = () => cr.destroy(req.signal.reason);
      req.signal.addEventListener("abort", abort, { once: true });
      cr.once("close", () => req.signal.removeEventListener("abort", abort));
      cr.once("error", (err) => {
        reject(
          req.signal.aborted
            ? req.signal.reason
            : new TypeError(`mesh fetch ${url.host}: ${err.message}`, { cause: err }),
        );
      });
      if (!req.body) return void cr.end();
      // Stream the body with backpressure once a socket is attached (the dial is asynchronous,
      // and node:http emits no 'drain' for writes buffered before it).
      const settled = (event: string) =>
        new Promise<void>((r) => {
          cr.once(event, () => r());
          cr.once("close", () => r());
        });
      (async () => {
        if (!cr.socket) await settled("socket");
        for await (const chunk of req.body!) {
          if (cr.destroyed) return;
          if (!cr.write(chunk)) await settled("drain");
        }
        cr.end();
      })().catch((err) => cr.destroy(err));
    });
  };
  return { fetch: fetchFn, close: () => agent.destroy() };
}
