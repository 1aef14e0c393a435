/**
 * TLS-layer handshake failures of the public listener, as refusals: the TLS layer requires a
 * client certificate that chains to the mesh roots, so a missing or foreign certificate, a
 * handshake that never finishes, or a connect-and-close fails here, before our own checks.
 * @module
 */
import type tls from "node:tls";
import type { Refusal, RefusalReason } from "../events/connection.ts";

/**
 * Why a handshake failed, as a refusal reason and its detail. A client certificate that the TLS
 * layer refused against the mesh roots shows in Deno's `node:tls` as "socket hang up" on a
 * socket whose `authorizationError` names the refusal (its client-certificate verifier lets the
 * handshake finish and the socket is then destroyed, as Node does); a missing certificate fails
 * the handshake itself ("peer sent no certificates").
 *
 * @example
 * ```ts
 * import type tls from "node:tls";
 * import { classifyHandshakeError } from "./handshake.ts";
 * function onTlsClientError(err: Error, socket: tls.TLSSocket) {
 *   const { reason, detail } = classifyHandshakeError(err, socket);
 *   console.log(reason, detail); // e.g. "handshake_timeout" "TLS handshake timeout"
 * }
 * ```
 */
export function classifyHandshakeError(
  err: Error & { code?: string },
  socket: Pick<tls.TLSSocket, "authorizationError">,
): { reason: RefusalReason; detail: string } {
  const refusedCert = socket.authorizationError;
  if (refusedCert) {
    return {
      reason: "bad_chain",
      detail: `client certificate refused by the TLS layer against the mesh roots (${
        String(refusedCert)
      })`,
    };
  }
  if (err.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") {
    return { reason: "no_cert", detail: `no client certificate (${err.message})` };
  }
  return { reason: handshakeReason(err), detail: err.message };
}

/**
 * The refusal reason a handshake error's message names: `handshake_timeout`, `no_cert`,
 * `bad_chain` (unknown issuer, bad or expired certificate), else `handshake`.
 *
 * @example
 * ```ts
 * import { handshakeReason } from "./handshake.ts";
 * console.log(handshakeReason(new Error("TLS handshake timeout"))); // "handshake_timeout"
 * ```
 */
export function handshakeReason(err: Error): RefusalReason {
  const m = err.message;
  if (/handshake timeout/i.test(m)) return "handshake_timeout";
  if (
    /CertificateRequired|certificate required|did not return a certificate|sent no certificates/i
      .test(m)
  ) {
    return "no_cert";
  }
  if (/UnknownIssuer|unknown ca|BadCertificate|certificate|verify|Expired/i.test(m)) {
    return "bad_chain";
  }
  return "handshake";
}

/**
 * Whether a refusal is a probe rather than a client: a connect-and-close without a handshake
 * (Consul's TCP health checks every 10 s, port scans), which Deno's `node:tls` notices only as a
 * hang-up or at the handshake timeout. Logged at debug level, still counted.
 *
 * @example
 * ```ts
 * import { isProbeRefusal } from "./handshake.ts";
 * console.log(isProbeRefusal({ reason: "handshake", detail: "socket hang up" })); // true
 * ```
 */
export function isProbeRefusal(refusal: Refusal): boolean {
  return (refusal.reason === "handshake_timeout" && refusal.detail === "TLS handshake timeout") ||
    (refusal.reason === "handshake" && refusal.detail === "socket hang up");
}
