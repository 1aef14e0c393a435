/**
 * The double's raft-like index and its blocking machinery: one counter bumped by every write,
 * a last-modified index per topic, and waiters that re-check their own condition on each write,
 * so a change wakes exactly the queries whose resource changed.
 * @module
 */
import { timer } from "../net/timers.ts";

/** Index bookkeeping and waiting for change. */
export class Store {
  #index = 10;
  readonly #topics = new Map<string, number>();
  readonly #waiters = new Set<() => void>();
  readonly #closed = new AbortController();

  /** The current global index. */
  get index(): number {
    return this.#index;
  }

  /** Aborted when the double shuts down: blocked requests return at once. */
  get closed(): AbortSignal {
    return this.#closed.signal;
  }

  /** Records a write touching `topics` and returns its index. */
  bump(...topics: string[]): number {
    this.#index += 1;
    for (const t of topics) this.#topics.set(t, this.#index);
    for (const wake of [...this.#waiters]) wake();
    return this.#index;
  }

  /** The last index a topic changed at (never 0, as Consul never sends 0). */
  topicIndex(...topics: string[]): number {
    let max = 1;
    for (const t of topics) max = Math.max(max, this.#topics.get(t) ?? 1);
    return max;
  }

  /** Whether any write ever touched `topic`. */
  seen(topic: string): boolean {
    return this.#topics.has(topic);
  }

  /**
   * Waits until `ready()` is true, `waitMs` passes, `signal` aborts or the store closes.
   * Re-checks on every write.
   */
  async waitUntil(ready: () => boolean, waitMs: number, signal?: AbortSignal): Promise<void> {
    if (ready()) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    const check = () => {
      if (ready()) resolve();
    };
    const expiry = timer(waitMs, resolve);
    const signals = [signal, this.#closed.signal].filter((s): s is AbortSignal => !!s);
    const onAbort = () => resolve();
    for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
    this.#waiters.add(check);
    try {
      if (!signals.some((s) => s.aborted)) await promise;
    } finally {
      expiry.clear();
      this.#waiters.delete(check);
      // The store's signal lives as long as the double: a listener left there per blocking
      // query would keep every finished query's closure alive.
      for (const s of signals) s.removeEventListener("abort", onAbort);
    }
  }

  /** Releases every blocked request. */
  close(): void {
    this.#closed.abort();
  }
}

/** A 64-bit FNV-1a hash in lowercase hex without leading zeros, like Consul's ContentHash. */
export function contentHash(value: unknown): string {
  const text = canonicalJson(value);
  let h = 0xcbf29ce484222325n;
  const bytes = new TextEncoder().encode(text);
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${
      keys.filter((k) => (value as Record<string, unknown>)[k] !== undefined).map((k) =>
        `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`
      ).join(",")
    }}`;
  }
  return JSON.stringify(value);
}
