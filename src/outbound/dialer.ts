/**
 * Dials a mesh endpoint: `node:tls` with our leaf as client certificate, which itself refuses
 * a server that does not chain to the mesh roots; then our own check that the server chains to
 * the mesh roots and that its SPIFFE ID is the service we meant to reach (fail closed, as
 * Consul's built-in proxy does). No byte of the caller is sent before both have passed.
 * @module
 */
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import { connect } from "node:tls";
import { type HeldSocket, holdSocket } from "../net/pipe.ts";
import { deadline } from "../net/timers.ts";
import { peerChain } from "../net/sockets.ts";
import type { TlsMaterial } from "../trust/material.ts";

/** Where to dial and whom to expect there. */
export interface MeshEndpoint {
  /** Address to dial (`Service.Address`, else `Node.Address`). */
  address: string;
  /** Port to dial (`Service.Port`). */
  port: number;
  /** The service the server must prove to be (`Proxy.DestinationServiceName`). */
  service: string;
  /** The datacenter the server's identity must name, when known. */
  datacenter?: string;
  /** An ID for logs and balancing (`Service.ID` on its node). */
  id: string;
  /** The discovery-chain target it belongs to, for metrics. */
  target?: string;
  /** Relative share of new connections (Consul's `Weights`; 1 when unknown). */
  weight?: number;
}

/**
 * A verified mesh connection: the server chained to the mesh roots and proved to be the
 * service meant. Any dial implementation hands its result over in this shape (the data path
 * pipes `socket` after releasing `held`).
 */
export interface MeshConnection<S extends Duplex = Duplex> {
  /** The connection, flowing into `held` until released. */
  socket: S;
  /** What the server sent while it was being verified; release it right before piping. */
  held: HeldSocket;
}

/**
 * At which step a dial failed: `connect` (TCP or TLS failed or timed out, or the dial was
 * cancelled), or the check of the server's certificate that it did not pass.
 */
export type DialFailureReason = "connect" | "bad_chain" | "bad_identity" | "no_cert";

/** Why one endpoint could not be dialled. */
export interface DialFailure {
  /** At which step. */
  reason: DialFailureReason;
  /** What happened, naming the endpoint's address. */
  detail: string;
}

/** The outcome of a dial: a verified connection, or why there is none. */
export type MeshDialResult<S extends Duplex = Duplex> =
  | { ok: true; connection: MeshConnection<S> }
  | { ok: false; failure: DialFailure };

/**
 * The codes `node:tls` gives a handshake that its certificate verification refused (OpenSSL's
 * names, which Deno's rustls-based `node:tls` reuses; it reports most refusals — unknown
 * issuer, a leaf used as a CA, an expired certificate, a wrong key usage — as
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE`).
 */
const CHAIN_ERROR_CODES: ReadonlySet<string> = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_PURPOSE",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
]);

/**
 * Until the handshake is over, `socket.getPeerCertificate(true)` answers `{}`. Deno's `node:tls`
 * calls it once per handshake, after rustls has verified the chain, only to hand its result to
 * `checkServerIdentity` — ours ignores it — and building it costs a legacy object per presented
 * certificate plus a re-parse of every CA of the context (measured: 15 % of a dial's CPU).
 * Nothing is verified less. Returns the function that puts the real method back.
 */
function skipLegacyPeerCertificate(socket: tls.TLSSocket): () => void {
  const real = socket.getPeerCertificate;
  const stub = (detailed?: boolean) =>
    detailed ? {} as tls.DetailedPeerCertificate : real.call(socket, detailed);
  Object.defineProperty(socket, "getPeerCertificate", {
    value: stub,
    configurable: true,
    writable: true,
  });
  return () => {
    if (socket.getPeerCertificate === stub) {
      delete (socket as { getPeerCertificate?: unknown }).getPeerCertificate;
    }
  };
}

/**
 * Dials `endpoint` over mTLS and verifies it: the TLS handshake (our leaf, the mesh roots as
 * the only trust anchors) within `timeoutMs`, then the server's chain and SPIFFE ID. Never
 * throws for a failed dial: the failure is the value (fail closed — the socket is destroyed
 * and no byte of the caller was sent). `signal` cancels it, also while our leaf is awaited.
 *
 * @example
 * ```ts
 * import type { TlsMaterial } from "@meshgate/meshgate";
 * import { dialMesh } from "./dialer.ts";
 *
 * async function hello(material: TlsMaterial): Promise<void> {
 *   const db = { address: "10.0.0.7", port: 21000, service: "db", id: "db-1" };
 *   const dialed = await dialMesh(material, db, 5000);
 *   if (dialed.ok) dialed.connection.socket.end("hello");
 *   else console.log(dialed.failure.reason, dialed.failure.detail);
 * }
 * ```
 */
export async function dialMesh(
  material: TlsMaterial,
  endpoint: MeshEndpoint,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<MeshDialResult<tls.TLSSocket>> {
  const where = `${endpoint.address}:${endpoint.port}`;
  if (!await settles(material.ready, signal)) return failed("connect", `${where}: dial cancelled`);
  const handshake = await handshakeTls(material, endpoint, timeoutMs, signal);
  if (!handshake.ok) return handshake;
  const socket = handshake.socket;
  // Hold what the server sends while we check it (a refusing server closes at once).
  const held = holdSocket(socket);
  const { der, chain } = peerChain(socket);
  const verdict = await material.verifyPeer(der, chain, "serverAuth");
  if (!verdict.ok) {
    socket.destroy();
    return failed(verdict.reason, `${where}: ${verdict.detail}`);
  }
  const id = verdict.id;
  const sameService = id.service.toLowerCase() === endpoint.service.toLowerCase();
  const sameDc = !endpoint.datacenter || id.datacenter === endpoint.datacenter;
  if (!sameService || !sameDc || id.namespace !== "default") {
    socket.destroy();
    return failed(
      "bad_identity",
      `peer certificate mismatch got ${verdict.uri}, want service ${endpoint.service}` +
        (endpoint.datacenter ? ` in ${endpoint.datacenter}` : ""),
    );
  }
  socket.on("error", () => {}); // surfaced through the pipe from here on
  return { ok: true, connection: { socket, held } };
}

function failed(reason: DialFailureReason, detail: string): { ok: false; failure: DialFailure } {
  return { ok: false, failure: { reason, detail } };
}

/** Waits for `promise`; `false` when `signal` aborts first. */
async function settles(promise: Promise<unknown>, signal?: AbortSignal): Promise<boolean> {
  if (!signal) return await promise.then(() => true);
  if (signal.aborted) return false;
  const { promise: aborted, resolve } = Promise.withResolvers<boolean>();
  const onAbort = () => resolve(false);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await Promise.race([promise.then(() => true), aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The TCP connection and TLS handshake, within `timeoutMs`; the TLS layer checks the chain. */
function handshakeTls(
  material: TlsMaterial,
  endpoint: MeshEndpoint,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ ok: true; socket: tls.TLSSocket } | { ok: false; failure: DialFailure }> {
  const where = `${endpoint.address}:${endpoint.port}`;
  const limit = deadline(timeoutMs, signal);
  const { promise, resolve } = Promise.withResolvers<
    { ok: true; socket: tls.TLSSocket } | { ok: false; failure: DialFailure }
  >();
  const s = connect({
    host: endpoint.address,
    port: endpoint.port,
    // Our leaf, and the mesh roots as the only trust anchors (no public roots).
    secureContext: material.secureContext,
    // Defense in depth: the TLS layer refuses, in the handshake, a server whose chain does
    // not lead to the mesh roots (rustls/webpki: CA flags, signatures, validity, the
    // serverAuth key usage); our own check afterwards runs as well and decides identity.
    rejectUnauthorized: true,
    // Identity is the SPIFFE URI, checked afterwards; there is no hostname to check. Deno's
    // node:tls leaves name checks to this function (rustls' own is skipped), so a mesh
    // certificate without DNS or IP names passes the TLS layer on its chain alone.
    checkServerIdentity: () => undefined,
    allowHalfOpen: true,
    noDelay: true,
  } as tls.ConnectionOptions);
  const restore = skipLegacyPeerCertificate(s);
  let done = false;
  const settle = (
    result: { ok: true; socket: tls.TLSSocket } | { ok: false; failure: DialFailure },
  ) => {
    if (done) return;
    done = true;
    limit.clear();
    limit.signal.removeEventListener("abort", onAbort);
    restore();
    if (!result.ok) s.destroy();
    resolve(result);
  };
  const onAbort = () =>
    settle(failed(
      "connect",
      limit.timedOut() ? `${where}: timed out after ${timeoutMs} ms` : `${where}: dial cancelled`,
    ));
  if (limit.signal.aborted) onAbort();
  else limit.signal.addEventListener("abort", onAbort, { once: true });
  s.once("secureConnect", () => settle({ ok: true, socket: s }));
  s.once("error", (err: Error & { code?: string }) =>
    settle(
      err.code && CHAIN_ERROR_CODES.has(err.code)
        ? failed(
          "bad_chain",
          `${where}: server certificate refused by the TLS layer against the mesh roots ` +
            `(${err.code}: ${err.message})`,
        )
        : failed("connect", `${where}: ${err.message}`),
    ));
  return promise;
}
