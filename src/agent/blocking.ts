/**
 * One primitive for every Consul blocking query: {@linkcode BlockingQuery} turns an endpoint
 * into an `AsyncIterable` of snapshots, shared by any number of consumers through one request
 * loop.
 * @module
 */
import { sleep } from "../net/timers.ts";

/** One delivered state of a watched resource. */
export interface Snapshot<T> {
  /** The decoded body. */
  value: T;
  /** `X-Consul-Index` of the answer (index-based queries). */
  index?: bigint;
  /** `X-Consul-ContentHash` of the answer (hash-based queries). */
  hash?: string;
  /** `Date.now()` when it arrived. */
  receivedAt: number;
  /** The agent left out results the token may not read (`X-Consul-Results-Filtered-By-ACLs`). */
  resultsFilteredByAcls?: boolean;
}

/** What one request of a blocking query returns. */
export interface BlockingResult<T> {
  /** The decoded body. */
  value: T;
  /** `X-Consul-Index`, if the endpoint sends one. */
  index?: bigint;
  /** `X-Consul-ContentHash`, if the endpoint sends one. */
  hash?: string;
  /** `X-Consul-Results-Filtered-By-ACLs: true` was sent. */
  resultsFilteredByAcls?: boolean;
}

/** Parameters of one request, chosen by the loop. */
export interface BlockingParams {
  /** Block until the index exceeds this (absent: return at once). */
  index?: bigint;
  /** Block while the content hash equals this (absent: return at once). */
  hash?: string;
  /** How long the agent may hold the request, in milliseconds. */
  waitMs: number;
  /** Aborted when the query stops. */
  signal: AbortSignal;
}

/** Performs one request of a blocking query. */
export type BlockingFetch<T> = (params: BlockingParams) => Promise<BlockingResult<T>>;

/** Health of a query's loop, for logs, metrics and readiness. */
export interface BlockingStatus {
  /** Whether the request loop is running. */
  running: boolean;
  /** Consecutive failed requests (0 when healthy). */
  failures: number;
  /** The last error, cleared by the next success. */
  lastError?: unknown;
  /** `Date.now()` of the last successful answer. */
  lastSuccessAt?: number;
  /** `Date.now()` until which the loop backs off, when it does. */
  backoffUntil?: number;
  /** How many times the agent's index went backwards (and the loop reset it). */
  indexResets?: number;
}

/** Options of a {@linkcode BlockingQuery}. */
export interface BlockingQueryOptions<T> {
  /** A name for logs, e.g. `roots`. */
  name?: string;
  /**
   * `index` (by `X-Consul-Index`) or `hash` (by `X-Consul-ContentHash`, only
   * `/v1/agent/service/:id`).
   * @default {"index"}
   */
  mode?: "index" | "hash";
  /**
   * How long each request may block; clamped to Consul's 10-minute maximum.
   * @default {300000}
   */
  waitMs?: number;
  /**
   * Minimum interval between requests once the burst is spent (token bucket), so a resource
   * that changes constantly cannot make the loop spin.
   * @default {1000}
   */
  minIntervalMs?: number;
  /**
   * Requests allowed back to back before `minIntervalMs` applies.
   * @default {3}
   */
  burst?: number;
  /**
   * First backoff after an error; doubles per consecutive failure, with full jitter.
   * @default {1000}
   */
  backoffBaseMs?: number;
  /**
   * Backoff cap.
   * @default {60000}
   */
  backoffMaxMs?: number;
  /** Whether two values are the same (unchanged answers are not delivered). Default: JSON equality. */
  equals?: (a: T, b: T) => boolean;
  /** Errors for which the query stops and consumers see the error. Default: none (retry all). */
  isFatal?: (err: unknown) => boolean;
  /** Called for each failed request before the backoff sleep. */
  onError?: (err: unknown, info: { failures: number; retryInMs: number }) => void;
  /** Called when the agent's index went backwards and the loop reset it. */
  onIndexReset?: (info: { from: bigint; to: bigint }) => void;
  /** Source of randomness for jitter (tests pin it). */
  random?: () => number;
}

/** Consul's longest allowed `wait`. */
export const MAX_WAIT_MS = 10 * 60_000;
/** Consul's default `wait`. */
export const DEFAULT_WAIT_MS = 5 * 60_000;

interface Subscriber<T> {
  pending?: Snapshot<T>;
  wake?: () => void;
  done: boolean;
  /** Settles once this subscriber has left (and the loop stopped, if it was the last). */
  left?: Promise<void>;
}

/**
 * A blocking query shared by any number of consumers. The request loop starts with the first
 * subscriber and stops (aborting the request in flight) when the last one leaves. Each
 * subscriber sees the latest snapshot: a slow consumer skips intermediate states rather than
 * queueing them, which is what a watch of current state needs.
 *
 * The loop follows Consul's rules for blocking clients: an index that goes backwards or is 0
 * resets the next request to non-blocking; errors back off exponentially with full jitter and
 * forget the index; a token bucket bounds the request rate; unchanged answers are not delivered.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const ac = new AbortController();
 * for await (const { value: roots } of agent.watchRoots().subscribe(ac.signal)) {
 *   console.log("active root", roots.ActiveRootID); // again after every CA rotation
 *   ac.abort(); // the last subscriber leaving stops the request loop
 * }
 * ```
 */
export class BlockingQuery<T> {
  readonly #fetch: BlockingFetch<T>;
  readonly #options: BlockingQueryOptions<T>;
  readonly #subscribers = new Set<Subscriber<T>>();
  readonly #onIdle?: () => void;
  #latest?: Snapshot<T>;
  #loop?: Promise<void>;
  #controller?: AbortController;
  #fatal?: unknown;
  #status: BlockingStatus = { running: false, failures: 0 };
  #request?: AbortController;
  #refreshing = false;
  #resets = 0;

  /**
   * Creates a query; the loop starts with the first subscriber.
   * @param fetch performs one request with the parameters the loop chooses
   * @param options loop tuning
   * @param onIdle called when the last subscriber leaves (the client uses it to forget the query)
   */
  constructor(fetch: BlockingFetch<T>, options: BlockingQueryOptions<T> = {}, onIdle?: () => void) {
    this.#fetch = fetch;
    this.#options = options;
    this.#onIdle = onIdle;
  }

  /** The query's name, for logs. */
  get name(): string {
    return this.#options.name ?? "query";
  }

  /** The latest delivered snapshot, if any. */
  get latest(): Snapshot<T> | undefined {
    return this.#latest;
  }

  /** The loop's health. */
  get status(): BlockingStatus {
    return { ...this.#status };
  }

  /**
   * Asks again now, without blocking: the request in flight (if any) is abandoned and the next
   * one carries no index. For answers that the caller knows are stale (an expired leaf).
   */
  refresh(): void {
    this.#refreshing = true;
    this.#request?.abort(new Error("refresh"));
  }

  /** Number of current subscribers. */
  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  /**
   * Subscribes: yields the latest snapshot at once (if there is one), then each change.
   * Ends when `signal` aborts or the caller breaks out of the loop; throws if the query stops
   * on a fatal error.
   */
  subscribe(signal?: AbortSignal): AsyncIterableIterator<Snapshot<T>> {
    const sub: Subscriber<T> = { pending: this.#latest, done: false };
    this.#subscribers.add(sub);
    this.#start();
    const leave = (): Promise<void> => {
      if (sub.left) return sub.left;
      sub.done = true;
      signal?.removeEventListener("abort", onAbort);
      this.#subscribers.delete(sub);
      sub.wake?.();
      sub.left = this.#subscribers.size === 0 ? this.#stop() : Promise.resolve();
      return sub.left;
    };
    const onAbort = () => void leave();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) void leave();
    const iterator: AsyncIterableIterator<Snapshot<T>> = {
      next: async (): Promise<IteratorResult<Snapshot<T>>> => {
        while (true) {
          // Left (its signal aborted, return() or close()): nothing more, not even a pending
          // snapshot.
          if (sub.done) {
            await sub.left;
            return { value: undefined, done: true };
          }
          if (sub.pending) {
            const value = sub.pending;
            sub.pending = undefined;
            return { value, done: false };
          }
          if (this.#fatal !== undefined) {
            await leave();
            throw this.#fatal;
          }
          await new Promise<void>((resolve) => (sub.wake = resolve));
          sub.wake = undefined;
        }
      },
      return: async (): Promise<IteratorResult<Snapshot<T>>> => {
        // Leaving as the last subscriber stops the loop and waits for it.
        await leave();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /** The same as {@linkcode BlockingQuery.subscribe}, as a web `ReadableStream`. */
  stream(signal?: AbortSignal): ReadableStream<Snapshot<T>> {
    return ReadableStream.from(this.subscribe(signal));
  }

  /** Waits for the first snapshot (the latest one if already known). */
  async first(signal?: AbortSignal): Promise<Snapshot<T>> {
    const it = this.subscribe(signal);
    try {
      const r = await it.next();
      if (r.done) throw signal?.reason ?? new Error(`${this.name}: stopped`);
      return r.value;
    } finally {
      await it.return?.();
    }
  }

  /** Stops the loop and ends every subscriber. */
  async close(): Promise<void> {
    for (const sub of this.#subscribers) {
      sub.done = true;
      sub.wake?.();
    }
    this.#subscribers.clear();
    await this.#stop();
  }

  /** Same as {@linkcode BlockingQuery.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #start(): void {
    if (this.#fatal !== undefined) return;
    if (this.#loop && !this.#controller?.signal.aborted) return;
    // A loop that is still winding down after the last subscriber left finishes first.
    const previous = this.#loop;
    const controller = new AbortController();
    this.#controller = controller;
    this.#status.running = true;
    this.#loop = (async () => {
      await previous;
      await this.#run(controller.signal);
    })().finally(() => {
      if (this.#controller === controller) this.#status.running = false;
    });
  }

  async #stop(): Promise<void> {
    const loop = this.#loop;
    if (!loop) return;
    this.#controller?.abort();
    await loop;
    if (this.#loop === loop) {
      this.#loop = undefined;
      this.#controller = undefined;
      this.#onIdle?.();
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const mode = o.mode ?? "index";
    const waitMs = Math.min(Math.max(o.waitMs ?? DEFAULT_WAIT_MS, 1), MAX_WAIT_MS);
    const minInterval = o.minIntervalMs ?? 1000;
    const burst = Math.max(1, o.burst ?? 3);
    const random = o.random ?? Math.random;
    let tokens = burst;
    let refilledAt = Date.now();
    let index = 0n;
    let hash: string | undefined;

    while (!signal.aborted) {
      // Token bucket: a short burst, then at most one request per minInterval.
      if (minInterval > 0) {
        const now = Date.now();
        tokens = Math.min(burst, tokens + (now - refilledAt) / minInterval);
        refilledAt = now;
        if (tokens < 1) {
          if (!await sleep((1 - tokens) * minInterval, signal)) break;
          tokens = 1;
          refilledAt = Date.now();
        }
        tokens -= 1;
      }
      if (this.#refreshing) {
        this.#refreshing = false;
        index = 0n;
        hash = undefined;
      }
      const request = new AbortController();
      this.#request = request;
      try {
        const result = await this.#fetch({
          index: mode === "index" && index > 0n ? index : undefined,
          hash: mode === "hash" ? hash : undefined,
          waitMs,
          signal: AbortSignal.any([signal, request.signal]),
        });
        if (signal.aborted) break;
        if (request.signal.aborted) continue; // refresh() raced with the answer: ask again
        if (mode === "index") {
          const got = result.index ?? 0n;
          // Backwards (snapshot restore, deleted max item): reset so the next call does not
          // block; 0 or missing: use 1 so we never busy-loop on index=0.
          if (got < index) {
            this.#resets++;
            o.onIndexReset?.({ from: index, to: got });
          }
          index = got < index ? 0n : got < 1n ? 1n : got;
        } else {
          hash = result.hash;
        }
        this.#status = {
          running: true,
          failures: 0,
          lastSuccessAt: Date.now(),
          indexResets: this.#resets,
        };
        this.#publish(result);
      } catch (err) {
        if (signal.aborted) break;
        if (request.signal.aborted) continue; // refresh(): ask again at once, without an index
        if (o.isFatal?.(err)) {
          this.#fatal = err;
          this.#status = { ...this.#status, lastError: err };
          for (const sub of this.#subscribers) sub.wake?.();
          break;
        }
        const failures = this.#status.failures + 1;
        const cap = Math.min(
          o.backoffMaxMs ?? 60_000,
          (o.backoffBaseMs ?? 1000) * 2 ** Math.min(failures - 1, 30),
        );
        const retryInMs = Math.floor(random() * cap);
        this.#status = {
          ...this.#status,
          failures,
          lastError: err,
          backoffUntil: Date.now() + retryInMs,
        };
        // Like Consul's watch library: forget the index after an error, so the first request
        // after recovery answers at once with fresh state.
        index = 0n;
        hash = undefined;
        o.onError?.(err, { failures, retryInMs });
        if (!await sleep(retryInMs, signal)) break;
        this.#status.backoffUntil = undefined;
      }
    }
  }

  #publish(result: BlockingResult<T>): void {
    const equals = this.#options.equals ?? jsonEquals;
    const previous = this.#latest;
    const filtered = result.resultsFilteredByAcls === true;
    // The same body with the ACL filter flag turned on or off is news (an empty list, then the
    // same empty list because a token lost a permission).
    if (
      previous && equals(previous.value, result.value) &&
      (previous.resultsFilteredByAcls === true) === filtered
    ) {
      // Unchanged body: keep the newer index/hash but deliver nothing.
      previous.index = result.index;
      previous.hash = result.hash;
      return;
    }
    const snapshot: Snapshot<T> = {
      value: result.value,
      index: result.index,
      hash: result.hash,
      receivedAt: Date.now(),
      ...(filtered ? { resultsFilteredByAcls: true } : {}),
    };
    this.#latest = snapshot;
    for (const sub of this.#subscribers) {
      sub.pending = snapshot;
      sub.wake?.();
    }
  }
}

function jsonEquals(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
