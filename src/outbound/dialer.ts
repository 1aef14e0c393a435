/**
 * Dials a mesh endpoint: `node:tls` with our leaf as client certificate, then our own check
 * that the server chains to the mesh roots and that its SPIFFE ID is the service we meant to
 * reach (fail closed, as Consul's built-in proxy does).
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
      secureContext: material.secureContext,
      // Identity is the SPIFFE URI, checked below; there is no hostname to check.
      checkServerIdentity: () => undefined,
      // The chain is checked against the mesh roots by our own code below; the TLS layer
      // trusts nothing (see TlsMaterial.secureContext), so it must not reject.
      rejectUnauthorized: false,
      allowHalfOpen: true,
      noDelay: true,
    } as tls.ConnectionOptions);
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
      resolve(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      s.destroy();
      reject(new DialError("connect", `${endpoint.address}:${endpoint.port}: ${err.message}`));
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
