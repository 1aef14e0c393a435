/**
 * Dials a mesh endpoint: `node:tls` with our leaf as client certificate, which itself refuses
 * a server that does not chain to the mesh roots; then our own check that the server chains to
 * the mesh roots and that its SPIFFE ID is the service we meant to reach (fail closed, as
 * Consul's built-in proxy does). No byte of the caller is sent before both have passed.
 * @module
 */
import type tls from "node:tls";
import { connect } from "node:tls";
import { type HeldSocket, holdSocket } from "../net/pipe.ts";
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
 * The dial failed: `reason` says at which step.
 *
 * @example
 * ```ts
 * import { DialError } from "@meshgate/meshgate";
 * console.log(new DialError("bad_identity", "peer certificate mismatch").reason);
 * ```
 */
export class DialError extends Error {
  /**
   * Creates the error.
   * @param reason `connect` (TCP or TLS failed or timed out) or a peer-verification failure
   * @param detail what happened
   */
  constructor(reason: "connect" | "bad_chain" | "bad_identity" | "no_cert", detail: string) {
    super(detail);
    this.name = "DialError";
    this.reason = reason;
  }
  /** At which step the dial failed. */
  readonly reason: "connect" | "bad_chain" | "bad_identity" | "no_cert";
}

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
 * Dials `endpoint` over mTLS and verifies it. Resolves with the socket and what it has
 * received so far (release it into the pipe).
 *
 * @example
 * ```ts ignore
 * import { dialMesh } from "@meshgate/meshgate";
 * const socket = await dialMesh(material, { address: "10.0.0.7", port: 21000, service: "db", id: "db-1" }, 5000);
 * ```
 * @throws {DialError} when the endpoint cannot be reached or is not who it should be
 */
export async function dialMesh(
  material: TlsMaterial,
  endpoint: MeshEndpoint,
  timeoutMs: number,
): Promise<{ socket: tls.TLSSocket; held: HeldSocket }> {
  await material.ready;
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = connect({
      host: endpoint.address,
      port: endpoint.port,
      // Our leaf, and the mesh roots as the only trust anchors (no public roots).
      secureContext: material.secureContext,
      // Defense in depth: the TLS layer refuses, in the handshake, a server whose chain does
      // not lead to the mesh roots (rustls/webpki: CA flags, signatures, validity, the
      // serverAuth key usage); our own check below runs as well and decides identity.
      rejectUnauthorized: true,
      // Identity is the SPIFFE URI, checked below; there is no hostname to check. Deno's
      // node:tls leaves name checks to this function (rustls' own is skipped), so a mesh
      // certificate without DNS or IP names passes the TLS layer on its chain alone.
      checkServerIdentity: () => undefined,
      allowHalfOpen: true,
      noDelay: true,
    } as tls.ConnectionOptions);
    const restore = skipLegacyPeerCertificate(s);
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new DialError(
          "connect",
          `${endpoint.address}:${endpoint.port}: timed out after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      restore();
      resolve(s);
    });
    s.once("error", (err: Error & { code?: string }) => {
      clearTimeout(timer);
      restore();
      s.destroy();
      const where = `${endpoint.address}:${endpoint.port}`;
      reject(
        err.code && CHAIN_ERROR_CODES.has(err.code)
          ? new DialError(
            "bad_chain",
            `${where}: server certificate refused by the TLS layer against the mesh roots ` +
              `(${err.code}: ${err.message})`,
          )
          : new DialError("connect", `${where}: ${err.message}`),
      );
    });
  });
  // Hold what the server sends while we check it (a refusing server closes at once).
  const held = holdSocket(socket);
  const { der, chain } = peerChain(socket);
  const verdict = await material.verifyPeer(der, chain, "serverAuth");
  if (!verdict.ok) {
    socket.destroy();
    throw new DialError(verdict.reason, `${endpoint.address}:${endpoint.port}: ${verdict.detail}`);
  }
  const id = verdict.id;
  const sameService = id.service.toLowerCase() === endpoint.service.toLowerCase();
  const sameDc = !endpoint.datacenter || id.datacenter === endpoint.datacenter;
  if (!sameService || !sameDc || id.namespace !== "default") {
    socket.destroy();
    throw new DialError(
      "bad_identity",
      `peer certificate mismatch got ${verdict.uri}, want service ${endpoint.service}` +
        (endpoint.datacenter ? ` in ${endpoint.datacenter}` : ""),
    );
  }
  socket.on("error", () => {}); // surfaced through the pipe from here on
  return { socket, held };
}
