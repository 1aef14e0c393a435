/**
 * An mTLS HTTP server for a `fetch`-style handler: authorized sockets from the inbound gateway
 * are fed to a `node:http` server (never listening itself), and each request is turned into a
 * `Request` and answered with the handler's `Response`. The handler learns who is calling.
 * @module
 */
import http from "node:http";
import { Readable } from "node:stream";
import type net from "node:net";
import type { AuthorizedConnection, Caller } from "../inbound/gateway.ts";
import type { Logger } from "../net/log.ts";

/** What a handler learns besides the request. */
export interface MeshRequestInfo {
  /** The verified, authorized caller. */
  caller: Caller;
  /** The caller's address. */
  remote: string;
}

/** A `fetch`-style handler for mesh requests. */
export type MeshHandler = (
  request: Request,
  info: MeshRequestInfo,
) => Response | Promise<Response>;

/** Turns authorized connections into handler calls. */
export interface HttpOverConnections {
  /** Give it a connection (the gateway's `handoff`). */
  accept(connection: AuthorizedConnection): void;
  /** Stops parsing; open connections are the gateway's to close. */
  close(): void;
}

/** Options of {@linkcode httpOverConnections}. */
export interface HttpOverConnectionsOptions {
  /**
   * How long an idle keep-alive connection is kept open (Deno's node:http adds a second);
   * 0 = no limit. @default {65000}
   */
  keepAliveTimeoutMs?: number;
}

/** Creates the HTTP layer for `handler`. */
export function httpOverConnections(
  handler: MeshHandler,
  log: Logger,
  options: HttpOverConnectionsOptions = {},
): HttpOverConnections {
  const keepAliveTimeoutMs = options.keepAliveTimeoutMs ?? 65_000;
  if (!Number.isFinite(keepAliveTimeoutMs) || keepAliveTimeoutMs < 0) {
    throw new RangeError(
      `serve: keepAliveTimeoutMs must be a number >= 0: current value is ${keepAliveTimeoutMs}`,
    );
  }
  const infos = new WeakMap<net.Socket, MeshRequestInfo>();
  const server = http.createServer((req, res) => void respond(req, res));
  server.keepAliveTimeout = keepAliveTimeoutMs;
  // This server never listens (connections are handed to it), and Deno 2.9's node:http
  // destroys a socket after each response when its server is not listening — no keep-alive.
  // It is "listening" in the sense that matters: it accepts connections until close().
  let open = true;
  Object.defineProperty(server, "listening", { get: () => open });

  async function respond(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const info = infos.get(req.socket);
    if (!info) {
      // Cannot happen: only authorized sockets are fed in. Fail closed anyway.
      req.socket.destroy();
      return;
    }
    const ac = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) ac.abort(new Error("client went away"));
    });
    const headers = new Headers();
    // Name, value, name, value…: i - 1 and i are both below the length.
    for (let i = 1; i < req.rawHeaders.length; i += 2) {
      headers.append(req.rawHeaders[i - 1]!, req.rawHeaders[i]!);
    }
    const url = new URL(req.url ?? "/", `https://${req.headers.host ?? "mesh.invalid"}`);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    let response: Response;
    try {
      const request = new Request(url, {
        method: req.method,
        headers,
        body: hasBody ? Readable.toWeb(req) as unknown as ReadableStream<Uint8Array> : undefined,
        signal: ac.signal,
        duplex: "half",
      } as RequestInit);
      response = await handler(request, info);
    } catch (err) {
      log.log("error", "mesh handler failed", { error: String(err), caller: info.caller.spiffeId });
      response = new Response("Internal Server Error", { status: 500 });
    }
    res.statusCode = response.status;
    if (response.statusText) res.statusMessage = response.statusText;
    response.headers.forEach((v, k) => {
      if (k !== "set-cookie") res.setHeader(k, v);
    });
    const cookies = response.headers.getSetCookie();
    if (cookies.length) res.setHeader("set-cookie", cookies);
    try {
      if (response.body && req.method !== "HEAD") {
        for await (const chunk of response.body) {
          if (ac.signal.aborted) break;
          if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
        }
      }
      res.end();
    } catch (err) {
      log.log("warn", "mesh response failed", { error: String(err) });
      res.destroy();
    }
  }

  return {
    accept({ socket, caller, remote }) {
      infos.set(socket, { caller, remote });
      server.emit("connection", socket);
    },
    close() {
      // Nothing to unbind; sockets already handed over belong to the gateway, which closes them.
      open = false;
    },
  };
}
