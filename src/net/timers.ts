/**
 * The one timer helper of the tree: waiting and deadlines, for the agent client and the data
 * path alike. Web-standard only (setTimeout and AbortSignal, looked up at call time so fake
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
