/**
 * What happens in a proxy or a Connect-native service besides connections: leaf, roots,
 * configuration, endpoints, watch errors, phase and re-check rounds. With the connection events
 * of `connection.ts` it makes one stream ({@linkcode ProxyEvent}) that metrics, the admin app's
 * event stream and logs all read.
 * @module
 */
import type { ConnectionEvent } from "./connection.ts";

/** One re-check of open inbound connections: which callers were checked, which were denied. */
export interface ReauthorizeRound {
  /** Distinct callers (SPIFFE IDs) re-checked. */
  checked: string[];
  /** Those now denied, with the reason. */
  denied: { peer: string; reason: string }[];
  /** Those the agent could not answer for: their connections are kept. */
  failed: string[];
}

/**
 * The lifecycle of a proxy or a Connect-native service: `starting` until it can serve,
 * `ready`, then `draining` and `stopped` once closed.
 */
export type LifecyclePhase = "starting" | "ready" | "draining" | "stopped";

/** Lifecycle events of a proxy. */
export type LifecycleEvent =
  | { type: "leaf"; renewed: boolean; service: string; serial: string; validBefore: string }
  | { type: "roots"; rotated: boolean; activeRootId: string; rootIds: string[] }
  | { type: "config"; proxyId?: string; detail: string }
  | { type: "endpoints"; upstream: string; target: string; endpoints: string[] }
  | { type: "watch_error"; watch: string; error: string; retryInMs?: number }
  | { type: "phase"; phase: LifecyclePhase }
  /** One re-check of open inbound connections after an intention change, once decided. */
  | ({ type: "reauthorized" } & ReauthorizeRound);

/**
 * Any proxy event, stamped with when it happened (`Date.now()`) and, for a connection served
 * by a worker thread (`-workers`), with the worker's number (none: the main thread).
 */
export type ProxyEvent = (ConnectionEvent | LifecycleEvent) & { at: number; worker?: number };
