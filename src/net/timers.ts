/**
 * The one timer helper of the tree: waiting, deadlines, delayed callbacks and idle timeouts, for
 * the agent client, the data path and the test double alike. Every call site says which of them
 * it is, and every helper hands back a way to drop its timer, so none is left behind:
 *
 * - {@linkcode sleep}: a wait that an abort ends early;
 * - {@linkcode deadline}: an abort signal that fires after a time (for a request or a dial);
 * - {@linkcode withTimeout}: a promise, or the caller's error once the time is up;
 * - {@linkcode timer}: a callback later, cancellable (retries, TTLs, lingering);
 * - {@linkcode idleTimer}: a callback once nothing touched it for a while (idle connections).
 *
 * Web-standard only (setTimeout, AbortSignal and performance, looked up at call time so fake
 * timers in tests take effect), so the agent client stays runnable on any runtime.
 * @module
 */

/** Resolves after `ms`, or early (to `false`) when `signal` aborts. Leaves no timer behind. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** setTimeout's longest delay; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * An abort signal that fires when `parent` aborts or after `ms` (never, for `ms` beyond
 * setTimeout's range or `Infinity`). Unlike `AbortSignal.timeout`, `clear()` removes the timer
 * at once, so a finished request leaves nothing pending; a `parent` that aborts removes it too.
 */
export function deadline(
  ms: number,
  parent?: AbortSignal,
): { signal: AbortSignal; clear: () => void; timedOut: () => boolean } {
  const controller = new AbortController();
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => {
    clearTimeout(timer);
    controller.abort(parent?.reason);
  };
  if (parent?.aborted) onAbort();
  else {
    parent?.addEventListener("abort", onAbort, { once: true });
    if (!(ms > MAX_TIMER_MS)) {
      timer = setTimeout(() => {
        expired = true;
        parent?.removeEventListener("abort", onAbort);
        controller.abort(new DOMException(`timed out after ${ms} ms`, "TimeoutError"));
      }, Math.max(0, ms));
    }
  }
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
    timedOut: () => expired,
  };
}

/** A callback due later; see {@linkcode timer}. */
export interface Timer {
  /** Drops the callback if it has not run yet. Safe to call twice, or after it ran. */
  clear(): void;
}

/** Options of {@linkcode timer}. */
export interface TimerOptions {
  /**
   * Whether the timer alone may not keep the process alive (Node's `unref()`), e.g. for an idle
   * connection's eviction. Done where the runtime's setTimeout returns a handle with `unref()`
   * (Deno, Node, Bun); elsewhere (a browser, a worker) there is no process to keep alive.
   * @default {false}
   */
  unref?: boolean;
}

/**
 * Calls `fn` once after `ms` (a negative or NaN delay: on the next turn; `Infinity` or beyond
 * setTimeout's range: never), unless `clear()` comes first.
 *
 * @example
 * ```ts
 * import { timer } from "./timers.ts";
 *
 * const expiry = timer(30_000, () => console.log("TTL expired"));
 * // The check reported in time:
 * expiry.clear();
 * ```
 */
export function timer(ms: number, fn: () => void, options: TimerOptions = {}): Timer {
  if (ms > MAX_TIMER_MS) return { clear() {} };
  const handle = setTimeout(fn, Math.max(0, ms));
  if (options.unref) (handle as { unref?: () => unknown }).unref?.();
  return { clear: () => clearTimeout(handle) };
}

/** A countdown that activity starts again; see {@linkcode idleTimer}. */
export interface IdleTimer extends Timer {
  /** Marks activity: `onIdle` now needs a full `ms` of quiet. A clock read, cheap per chunk. */
  touch(): void;
}

/**
 * Calls `onIdle` once `ms` pass without a `touch()` (counted from now), then stops: later
 * touches do nothing. Off (never fires) for `ms` of 0 or less, NaN, or beyond setTimeout's
 * range. A touch reads the clock instead of re-arming a timer, so it costs next to nothing on
 * a data path; the one timer, when it fires early, re-arms for the quiet still missing. Time
 * is `performance.now()`: fake time that drives it fakes `performance` with `setTimeout`.
 *
 * @example
 * ```ts
 * import { idleTimer } from "./timers.ts";
 * import type { Duplex } from "node:stream";
 *
 * function cutWhenIdle(socket: Duplex, ms: number): void {
 *   const idle = idleTimer(ms, () => socket.destroy(new Error(`idle for ${ms} ms`)));
 *   socket.on("data", idle.touch);
 *   socket.once("close", idle.clear);
 * }
 * ```
 */
export function idleTimer(ms: number, onIdle: () => void): IdleTimer {
  if (!(ms > 0 && ms <= MAX_TIMER_MS)) return { touch() {}, clear() {} };
  let last = performance.now();
  let pending: Timer | undefined;
  const check = () => {
    const quiet = performance.now() - last;
    if (quiet < ms) pending = timer(ms - quiet, check);
    else {
      pending = undefined;
      onIdle();
    }
  };
  pending = timer(ms, check);
  return {
    touch: () => {
      last = performance.now();
    },
    clear: () => {
      pending?.clear();
      pending = undefined;
    },
  };
}

/**
 * Settles as `promise` does, or rejects with what `onTimeout()` returns (called then, so it
 * can describe the state at that moment) if `ms` pass first. The timer is cleared either way;
 * `promise` itself goes on (cancel it through its own signal). Never times out for `Infinity`.
 *
 * @example
 * ```ts
 * import { sleep, withTimeout } from "./timers.ts";
 *
 * const ready = sleep(10).then(() => "ready");
 * console.log(await withTimeout(ready, 5_000, () => new Error("not ready within 5000 ms")));
 * ```
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => unknown,
): Promise<T> {
  let expiry: Timer | undefined;
  const expired = new Promise<never>((_, reject) => {
    expiry = timer(ms, () => {
      try {
        reject(onTimeout());
      } catch (err) {
        reject(err);
      }
    });
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    expiry?.clear();
  }
}
