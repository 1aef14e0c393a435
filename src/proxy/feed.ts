/**
 * Keeps a {@linkcode TlsMaterial} current from the agent: the roots watch and a service's leaf
 * watch (blocking queries), each change applied to new connections, unusable answers refused
 * with the current material kept. Used by the proxy and by Connect-native services.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import type { Logger } from "../net/log.ts";
import type { TlsMaterial } from "../trust/material.ts";
import type { LifecycleEvent } from "./events.ts";

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
}

/** Watches the CA roots into `material` until `signal` aborts. */
export async function feedRoots(o: FeedOptions): Promise<void> {
  try {
    for await (
      const { value } of o.agent.watchRoots({
        onError: (err, info) => {
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
      }
    }
  } catch (err) {
    if (!o.signal.aborted) o.log.log("error", "roots watch stopped", { error: String(err) });
  }
}

/** Watches the leaf certificate of `service` into `material` until `signal` aborts. */
export async function feedLeaf(o: FeedOptions & { service: string }): Promise<void> {
  const { service } = o;
  try {
    for await (
      const { value } of o.agent.watchLeaf(service, {
        waitMs: 10 * 60_000,
        onError: (err, info) => {
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
      }).subscribe(o.signal)
    ) {
      try {
        const renewed = !!o.material.leaf;
        await o.material.setLeaf(value);
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
        o.log.log("error", "refusing unusable leaf; keeping current one", {
          error: String(err),
        });
      }
    }
  } catch (err) {
    if (!o.signal.aborted) o.log.log("error", "leaf watch stopped", { error: String(err) });
  }
}
