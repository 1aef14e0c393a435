/**
 * A small synchronous publish/subscribe hub with a bounded history: how proxy and
 * Connect-native events reach metrics, the admin app and logs.
 * @module
 */

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
