/**
 * Keeps a {@linkcode TlsMaterial} current from the agent: the roots watch and a service's leaf
 * watch (blocking queries), each change applied to new connections, unusable answers refused
 * with the current material kept. Used by the proxy and by Connect-native services.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import { AgentError } from "../agent/errors.ts";
import type { Logger } from "../net/log.ts";
import { type Timer, timer } from "../net/timers.ts";
import { leafExpiryMargin, type TlsMaterial } from "../trust/material.ts";
import type { LifecycleEvent } from "../events/lifecycle.ts";

/** Where a feed reports. */
export interface FeedOptions {
  /** The agent to watch. */
  agent: AgentClient;
  /** The material to keep current. */
  material: TlsMaterial;
  /** Stops the watch. */
  signal: AbortSignal;
  /** Log sink. */
  log: Logger;
  /** Lifecycle events (`roots`, `leaf`, `watch_error`). */
  emit: (event: LifecycleEvent) => void;
  /**
   * Told why the material is missing or was refused, in one line for `/ready` (e.g.
   * `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: Permission denied`), and `undefined` once
   * usable material is installed.
   */
  problem?: (text: string | undefined) => void;
}

/**
 * Why a request to the agent failed, in one line: the path, the status and Consul's own text
 * (`/v1/agent/connect/ca/leaf/web: HTTP 403: Permission denied`), or the error's message.
 *
 * @example
 * ```ts
 * import { AgentError } from "../agent/errors.ts";
 * import { describeFailure } from "./feed.ts";
 * const err = new AgentError("GET /v1/agent/service/web-proxy", 404, "unknown service ID");
 * console.log(describeFailure(err)); // /v1/agent/service/web-proxy: HTTP 404: unknown service ID
 * ```
 */
export function describeFailure(err: unknown): string {
  if (err instanceof AgentError) {
    const path = err.endpoint.replace(/^[A-Z]+ /, "");
    const text = err.consulMessage || (err.status === 404 ? "not found" : "error");
    return `${path}: HTTP ${err.status}: ${text}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^[A-Z]+ (?=\/)/, "");
}

/** Watches the CA roots into `material` until `signal` aborts. */
export async function feedRoots(o: FeedOptions): Promise<void> {
  try {
    for await (
      const { value } of o.agent.watchRoots({
        onIndexReset: ({ from, to }) =>
          o.log.log("warn", "agent's roots index went backwards; re-reading", {
            from: String(from),
            to: String(to),
          }),
        onError: (err, info) => {
          if (!o.material.roots) o.problem?.(`roots: ${describeFailure(err)}`);
          o.log.log("warn", "roots watch failed; keeping current roots", {
            error: String(err),
            retryInMs: info.retryInMs,
          });
          o.emit({
            type: "watch_error",
            watch: "roots",
            error: String(err),
            retryInMs: info.retryInMs,
          });
        },
      }).subscribe(o.signal)
    ) {
      const before = o.material.roots?.roots.ActiveRootID;
      try {
        await o.material.setRoots(value);
        o.problem?.(undefined);
        if (o.material.leaf && !(await o.material.leafChainsToRoots())) {
          o.log.log("warn", "our leaf does not chain to the new roots; waiting for its renewal", {
            active: value.ActiveRootID,
          });
        }
        const rotated = !!before && before !== value.ActiveRootID;
        o.emit({
          type: "roots",
          rotated,
          activeRootId: value.ActiveRootID,
          rootIds: value.Roots.map((r) => r.ID),
        });
        if (rotated) {
          o.log.log("info", "CA roots rotated", {
            active: value.ActiveRootID,
            roots: value.Roots.length,
          });
        }
      } catch (err) {
        o.log.log("error", "refusing unusable roots", { error: String(err) });
        o.problem?.(`roots: refused the agent's roots: ${describeFailure(err)}`);
      }
    }
  } catch (err) {
    if (!o.signal.aborted) o.log.log("error", "roots watch stopped", { error: String(err) });
  }
}

/**
 * Longest single wait of the leaf watchdog; one due later waits again for the rest, measured by
 * the clock then (a timer cannot go past 2^31 - 1 ms, and a suspended host loses time).
 */
const MAX_TIMER_MS = 24 * 3600_000;

/**
 * Watches the leaf certificate of `service` into `material` until `signal` aborts, hardened
 * against Consul's known leaf-endpoint behaviour:
 * - the first request does not block, and each blocking request waits at most `leafWaitMs`
 *   (a blocking leaf fetch right after an agent restart can stall for the whole wait,
 *   hashicorp/consul#13302 and #12319);
 * - an expired leaf is never installed, and is asked for again at once, then with backoff
 *   (non-blocking reads can return a stale or expired certificate, #10871 and #9862);
 * - if no renewal has arrived when the leaf is within `expiryMarginMs` of its expiry (or 95 %
 *   of its lifetime is gone, if that comes first), it warns and asks again, with backoff.
 */
export async function feedLeaf(
  o: FeedOptions & {
    service: string;
    leafWaitMs?: number;
    /** See {@linkcode leafExpiryMargin}. @default {10 % of the lifetime, at most 1 h} */
    expiryMarginMs?: number;
  },
): Promise<void> {
  const { service } = o;
  /** The next look at the leaf: its expiry watchdog, or the retry while it is stale. */
  let next: Timer | undefined;
  let retryMs = 1000;
  const query = o.agent.watchLeaf(service, {
    waitMs: o.leafWaitMs ?? 60_000,
    onError: (err, info) => {
      if (!o.material.leaf) o.problem?.(`leaf: ${describeFailure(err)}`);
      o.log.log("warn", "leaf watch failed; keeping current leaf", {
        error: String(err),
        retryInMs: info.retryInMs,
      });
      o.emit({
        type: "watch_error",
        watch: `leaf:${service}`,
        error: String(err),
        retryInMs: info.retryInMs,
      });
    },
  });
  // While the installed leaf is known to be stale (an expired answer was refused, or it came
  // within the expiry margin without a renewal), ask again with backoff until a new one is
  // installed.
  // (An unchanged answer is not delivered twice, so polling cannot rely on deliveries.)
  let stale = false;
  const poll = () => {
    query.refresh();
    if (!stale) return;
    const leaf = o.material.leaf;
    o.log.log("warn", "no renewed leaf from the agent yet; asking again", {
      service,
      serial: leaf?.cert.SerialNumber,
      expiresInMs: leaf ? leaf.info.notAfter.getTime() - Date.now() : undefined,
      retryInMs: retryMs,
    });
    next = timer(retryMs, poll);
    retryMs = Math.min(retryMs * 2, 30_000);
  };
  const refreshIn = (ms: number) => {
    next?.clear();
    const dueAt = Date.now() + Math.max(ms, 0);
    const wait = () => {
      const left = dueAt - Date.now();
      next = left > MAX_TIMER_MS ? timer(MAX_TIMER_MS, wait) : timer(left, () => {
        stale = true;
        poll();
      });
    };
    wait();
  };
  try {
    for await (const { value } of query.subscribe(o.signal)) {
      try {
        const renewed = !!o.material.leaf;
        const installed = await o.material.setLeaf(value);
        o.problem?.(undefined);
        stale = false;
        retryMs = 1000;
        const { notBefore, notAfter } = installed.info;
        const lifetime = notAfter.getTime() - notBefore.getTime();
        const margin = Math.max(
          leafExpiryMargin(installed.info, o.expiryMarginMs),
          lifetime * 0.05,
        );
        refreshIn(notAfter.getTime() - margin - Date.now());
        o.emit({
          type: "leaf",
          renewed,
          service,
          serial: value.SerialNumber,
          validBefore: value.ValidBefore,
        });
        o.log.log("info", renewed ? "leaf certificate renewed" : "leaf certificate loaded", {
          service,
          serial: value.SerialNumber,
          validBefore: value.ValidBefore,
        });
      } catch (err) {
        o.log.log("error", "refusing unusable leaf; keeping current one and asking again", {
          error: String(err),
          retryInMs: retryMs,
        });
        o.emit({ type: "watch_error", watch: `leaf:${service}`, error: String(err) });
        o.problem?.(
          `leaf: refused the agent's leaf: ${describeFailure(err)}`,
        );
        if (!stale) refreshIn(retryMs);
      }
    }
  } catch (err) {
    if (!o.signal.aborted) o.log.log("error", "leaf watch stopped", { error: String(err) });
  } finally {
    next?.clear();
  }
}
