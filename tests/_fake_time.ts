/**
 * Fake time for tests whose code also waits on real things (crypto, sockets): `fakeTime()` fakes
 * `setTimeout` and `Date` for a scope, and `settled()` polls in real time while running the fake
 * timers due now. The real timers are taken when this module loads, before any test fakes them.
 * @module
 */
import FakeTimers from "@sinonjs/fake-timers";

const realSetTimeout = globalThis.setTimeout;

/** Waits `ms` of real time, whatever is faked. */
export function realSleep(ms: number): Promise<void> {
  return new Promise((r) => realSetTimeout(r, ms));
}

/** Fakes `setTimeout`, `clearTimeout` and `Date` from now on, uninstalled at the end of the scope. */
export function fakeTime(): ReturnType<typeof FakeTimers.install> & Disposable {
  const clock = FakeTimers.install({
    now: Date.now(),
    toFake: ["setTimeout", "clearTimeout", "Date"],
    shouldClearNativeTimers: true,
  });
  return Object.assign(clock, { [Symbol.dispose]: () => clock.uninstall() });
}

/**
 * Polls `check` in real time (2 ms apart), running fake timers due now between polls (none
 * without `time`); fails naming `what` after `ms`.
 */
export async function settled(
  time: { tickAsync(ms: number): Promise<unknown> } | undefined,
  check: () => boolean,
  what: string,
  ms = 5000,
): Promise<void> {
  const until = performance.now() + ms;
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await time?.tickAsync(0);
    await realSleep(2);
  }
}
