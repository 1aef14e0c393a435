/**
 * A `fetch` over `node:http`/`node:https`, for agent connections Deno's own fetch cannot make:
 * `CONSUL_HTTP_SSL_VERIFY=false`, a TLS server name other than the host
 * (`CONSUL_TLS_SERVER_NAME`), and unix sockets. It covers what {@linkcode AgentClient} needs:
 * a method, headers, a string body, an `AbortSignal`, and a body read whole.
 * @module
 */
import http from "node:http";
import https from "node:https";
import tls from "node:tls";

/** How to reach the agent. */
export interface NodeFetchOptions {
  /** PEM CA bundle that the agent's certificate must chain to. */
  ca?: string;
  /** Client certificate (PEM) for agents with `verify_incoming`. */
  cert?: string;
  /** Its private key (PEM). */
  key?: string;
  /** Verify the agent's certificate. @default {true} */
  verify?: boolean;
  /** The name to verify the agent's certificate against (and send as SNI). */
  serverName?: string;
  /** A unix socket to connect to instead of the URL's host. */
  socketPath?: string;
}

/**
 * Creates the fetch, with one keep-alive connection pool.
 *
 * @example
 * ```ts
 * // Needs an agent's HTTPS port and the CA that signed its certificate.
 * import { AgentClient, createNodeFetch } from "@meshgate/meshgate";
 *
 * const fetch = createNodeFetch({
 *   ca: await Deno.readTextFile("consul-agent-ca.pem"),
 *   serverName: "server.dc1.consul", // CONSUL_TLS_SERVER_NAME: the name in its certificate
 * });
 * // Closing the client closes the fetch's keep-alive pool.
 * await using agent = new AgentClient({ address: "https://10.0.0.5:8501", fetch });
 * console.log((await agent.self()).Config.Datacenter);
 * ```
 */
export function createNodeFetch(options: NodeFetchOptions): typeof fetch & { close(): void } {
  const httpAgent = new http.Agent({ keepAlive: true });
  const httpsAgent = new https.Agent({
    keepAlive: true,
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    rejectUnauthorized: options.verify ?? true,
    servername: options.serverName,
  });
  const fetchFn = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    // As fetch does: a Request input brings its method, headers, body and signal; what init
    // says wins (its headers replace the Request's).
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : String(input));
    const secure = url.protocol === "https:";
    const headers: Record<string, string> = {};
    new Headers(init.headers ?? request?.headers).forEach((v, k) => (headers[k] = v));
    const signal = init.signal ?? request?.signal;
    const body = await bytesOf(init.body !== undefined ? init.body : request?.body);
    if (body !== undefined) headers["content-length"] = String(body.length);
    return await new Promise<Response>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        fn();
      };
      const req = (secure ? https : http).request({
        method: init.method ?? request?.method ?? "GET",
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port || (secure ? 443 : 80),
        path: url.pathname + url.search,
        headers,
        socketPath: options.socketPath,
        agent: secure ? httpsAgent : httpAgent,
        ...(secure && options.serverName
          ? {
            servername: options.serverName,
            // Verify against the configured name instead of the address we dialled.
            checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
              tls.checkServerIdentity(options.serverName!, cert),
          }
          : {}),
      }, (res) => {
        const chunks: Uint8Array[] = [];
        res.on("data", (c: Uint8Array) => chunks.push(c));
        res.on("error", (err) => settle(() => reject(err)));
        res.on("end", () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(", ") : v);
          }
          const status = res.statusCode ?? 502;
          const empty = status === 204 || status === 304;
          settle(() =>
            resolve(new Response(empty ? null : concat(chunks), { status, headers: h }))
          );
        });
      });
      // An abort settles the promise here and now, then tears the connection down. On a reused
      // keep-alive socket Deno's node:http (2.9) answers the socket's close by sending the request
      // again on a new connection, destroyed or not, and waits for that answer (for a blocking
      // query, minutes); marking the request as not reused turns that retry off.
      const onAbort = () => {
        settle(() => reject(signal?.reason));
        req.reusedSocket = false;
        const socket = req.socket;
        req.destroy();
        socket?.destroy();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      // Whether this request's socket finished a TLS handshake (a reused one did, earlier).
      let handshook = !secure;
      req.on("socket", (socket) => {
        if (req.reusedSocket) handshook = true;
        else socket.once("secureConnect", () => (handshook = true));
      });
      req.on("error", (err) =>
        settle(() =>
          reject(
            signal?.aborted ? signal.reason : explain(err, {
              where: options.socketPath ? `unix://${options.socketPath}` : url.origin,
              secure,
              handshook,
            }),
          )
        ));
      req.end(body);
    });
  };
  return Object.assign(fetchFn, {
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  });
}

const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REJECTED",
]);

/**
 * A network error that names the agent's address and, for TLS failures, what failed and which
 * setting is likely wrong. The original error is the cause; its `code` is kept.
 */
function explain(
  err: Error & { code?: string },
  at: { where: string; secure: boolean; handshook: boolean },
): Error {
  const code = err.code ?? "";
  let detail = err.message;
  if (UNTRUSTED.has(code)) {
    detail = `TLS handshake failed: the agent's certificate is not trusted (${err.message}); ` +
      "-ca-file / CONSUL_CACERT must name the CA that issued it";
  } else if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    detail = `TLS handshake failed: the agent's certificate is not valid now (${err.message})`;
  } else if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    detail =
      `TLS handshake failed: the agent's certificate does not name the address (${err.message}); ` +
      "-tls-server-name / CONSUL_TLS_SERVER_NAME sets the name to verify";
  } else if (/CERTIFICATE_REQUIRED|certificate required/i.test(`${code} ${err.message}`)) {
    detail = `TLS handshake failed: the agent requires a client certificate (${err.message}); ` +
      "give -client-cert and -client-key / CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY";
  } else if (at.secure && !at.handshook && /^(ERR_SSL_|ERR_TLS_|ECONNRESET|EPROTO)/.test(code)) {
    detail = `TLS handshake failed (${err.message}); the agent may have refused our client ` +
      "certificate, or does not speak TLS on this port";
  } else if (!at.secure && code.startsWith("HPE_")) {
    detail = `not an HTTP answer (${err.message}); if the agent serves HTTPS, use an https:// ` +
      "address or CONSUL_HTTP_SSL=true";
  }
  return Object.assign(new Error(`${at.where}: ${detail}`, { cause: err }), code ? { code } : {});
}

/** A request body as the bytes to send (a string as UTF-8); none for `null`/`undefined`. */
async function bytesOf(body: BodyInit | null | undefined): Promise<Uint8Array | undefined> {
  if (body == null) return undefined;
  if (typeof body === "string") return new TextEncoder().encode(body);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
