/**
 * Refusals on the data path are values, not exceptions: one closed set of reasons that the
 * logs, metrics and access log all use as their label.
 * @module
 */

/** Why a connection was refused. */
export type RefusalReason =
  | "no_cert"
  | "bad_chain"
  | "bad_identity"
  | "denied"
  | "authorize_error"
  | "limit"
  | "handshake_timeout"
  | "authorize_timeout"
  | "handshake"
  | "app_unreachable"
  | "no_endpoint"
  | "chain_unavailable"
  | "endpoints_unavailable"
  | "upstream_unreachable"
  | "leaf_expired";

/** Every refusal reason, for metrics that list them all. */
export const REFUSAL_REASONS: readonly RefusalReason[] = [
  "no_cert",
  "bad_chain",
  "bad_identity",
  "denied",
  "authorize_error",
  "limit",
  "handshake_timeout",
  "authorize_timeout",
  "handshake",
  "app_unreachable",
  "no_endpoint",
  "chain_unavailable",
  "endpoints_unavailable",
  "upstream_unreachable",
  "leaf_expired",
];

/** A refused connection. */
export interface Refusal {
  /** The closed-set reason. */
  reason: RefusalReason;
  /** Human-readable detail for the log. */
  detail: string;
  /** The peer's SPIFFE ID when it got that far. */
  peer?: string;
  /** The remote address. */
  remote?: string;
}

/** Events a listener reports, for metrics, the admin app and logs. */
export type ConnectionEvent =
  | { type: "refused"; direction: "inbound" | "outbound"; listener: string; refusal: Refusal }
  | {
    type: "accepted";
    direction: "inbound" | "outbound";
    listener: string;
    peer: string;
    remote: string;
    /** Inbound: the authorize call; outbound: not set. */
    authorizeMs?: number;
    /** Inbound: TCP accept to TLS established; outbound: dial start to TLS established. */
    handshakeMs?: number;
    /** Outbound: the chain target dialled. */
    target?: string;
    /**
     * Inbound: a recent answer of the agent was used — `fresh` (within `authorizeFreshMs`, not
     * asked) or `outage` (the agent could not answer).
     */
    authorizeCached?: "fresh" | "outage";
    /**
     * Inbound: the answer came from an identical authorize call (same caller certificate)
     * already in flight when this connection asked.
     */
    authorizeJoined?: boolean;
  }
  | {
    /** An open connection closed because its caller is no longer authorized. */
    type: "revoked";
    direction: "inbound";
    listener: string;
    peer: string;
    remote: string;
    reason: string;
  }
  | {
    /** One endpoint of an upstream could not be dialled (the next one is tried). */
    type: "dial_failed";
    direction: "outbound";
    listener: string;
    target: string;
    endpoint: string;
    error: string;
    ms: number;
  }
  | {
    type: "closed";
    direction: "inbound" | "outbound";
    listener: string;
    peer: string;
    /** The remote address of the accepted socket. */
    remote?: string;
    bytesIn: number;
    bytesOut: number;
    durationMs: number;
    error?: string;
  };
