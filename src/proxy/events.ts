/**
 * What happens in a proxy, as one stream of events: connections (accepted, refused, closed,
 * failed dials) and lifecycle (leaf, roots, configuration, endpoints, watch errors, phase).
 * Metrics, the admin app's event stream and logs all read it.
 * @module
 */
import type { ReauthorizeRound } from "../inbound/reauthorize.ts";
import type { ConnectionEvent } from "../inbound/refusal.ts";

/** Lifecycle events of a proxy. */
export type LifecycleEvent =
  | { type: "leaf"; renewed: boolean; service: string; serial: string; validBefore: string }
  | { type: "roots"; rotated: boolean; activeRootId: string; rootIds: string[] }
  | { type: "config"; proxyId?: string; detail: string }
  | { type: "endpoints"; upstream: string; target: string; endpoints: string[] }
  | { type: "watch_error"; watch: string; error: string; retryInMs?: number }
  | { type: "phase"; phase: "starting" | "ready" | "draining" | "stopped" }
  /** One re-check of open inbound connections after an intention change, once decided. */
  | ({ type: "reauthorized" } & ReauthorizeRound);

/** Any proxy event, stamped with when it happened (`Date.now()`). */
export type ProxyEvent = (ConnectionEvent | LifecycleEvent) & { at: number };

/**
 * A small synchronous publish/subscribe hub with a bounded history, so a late subscriber (a
 * dashboard that just loaded) can see what happened recently.
 *
 * @example
 * ```ts
 * import { EventHub } from "@meshgate/meshgate";
 * const hub = new EventHub<{ n: number }>(10);
 * const stop = hub.subscribe((e) => console.log(e.n));
 * hub.publish({ n: 1 });
 * stop();
 * ```
 */
export class EventHub<T> {
  readonly #subscribers = new Set<(event: T) => void>();
  readonly #history: T[] = [];
  readonly #keep: number;

  /**
   * Creates a hub.
   * @param keep how many past events {@linkcode EventHub.recent} can return
   */
  constructor(keep = 200) {
    this.#keep = keep;
  }

  /** Delivers `event` to every subscriber; one that throws does not stop the others. */
  publish(event: T): void {
    this.#history.push(event);
    if (this.#history.length > this.#keep) this.#history.shift();
    for (const fn of this.#subscribers) {
      try {
        fn(event);
      } catch {
        // A broken subscriber (e.g. a closed SSE stream) must not break the data path.
      }
    }
  }

  /** Calls `fn` for every future event; returns the function that stops it. */
  subscribe(fn: (event: T) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** The most recent events, oldest first, optionally only those `filter` keeps. */
  recent(filter?: (event: T) => boolean): T[] {
    return filter ? this.#history.filter(filter) : [...this.#history];
  }

  /** How many subscribers there are (for tests and the admin state). */
  get subscribers(): number {
    return this.#subscribers.size;
  }
}
