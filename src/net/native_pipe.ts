/**
 * Copies bytes both ways between two Deno connections (the accepted local `Deno.Conn` and the
 * mesh's `Deno.TlsConn`): one read/write loop per direction over one buffer, so a direction
 * reads again only once the last chunk is written (backpressure is the loop itself: a slow
 * reader stops our reads and the sender meets TCP flow control); half-close passed on
 * (`closeWrite` once a side's reads end); both sides closed on an error; the byte counts of
 * {@linkcode PipeStats}. Measured on this machine it costs about two thirds of the CPU of
 * `node:net` + `node:tls` + `pipeSockets` per 1 KiB round trip, and web streams' `pipeTo`
 * about twice as much (`bench/native_leg.ts`).
 * @module
 */
import type { Pipe, PipeStats } from "./pipe.ts";
import { idleTimer, type Timer, timer } from "./timers.ts";

/** Options of {@linkcode pipeConns}. */
export interface ConnPipeOptions {
  /** Close both sides when no byte moved either way for this long; 0 = never. @default {0} */
  idleTimeoutMs?: number;
  /**
   * Once both sides have ended their sending, how long the last writes (and their half-closes)
   * may take before both are cut: a peer that never takes the rest does not hold the pipe.
   * @default {30000}
   */
  lingerMs?: number;
  /** Bytes read at once per direction (one buffer each, held while the pipe lives). @default {16384} */
  bufferBytes?: number;
}

/** Errors that mean "we closed it ourselves", not a fault of a peer. */
function isOurClose(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted;
}

/**
 * Pipes `a` ↔ `b` until both directions have ended or one side failed, then closes both.
 * `stats.aToB` counts bytes read from `a` (and written to `b`), `stats.bToA` the other way.
 *
 * @example
 * ```ts
 * import { pipeConns } from "./native_pipe.ts";
 *
 * async function relay(localConn: Deno.Conn, meshConn: Deno.TlsConn): Promise<void> {
 *   const pipe = pipeConns(localConn, meshConn, { idleTimeoutMs: 60_000 });
 *   const { aToB, bToA, error } = await pipe.closed;
 *   console.log(`${aToB} bytes to the mesh, ${bToA} back`, error?.message ?? "");
 * }
 * ```
 */
export function pipeConns(a: Deno.Conn, b: Deno.Conn, options: ConnPipeOptions = {}): Pipe {
  const stats: PipeStats = { aToB: 0, bToA: 0 };
  const size = options.bufferBytes ?? 16 * 1024;
  if (!(size >= 1)) throw new RangeError(`'bufferBytes' must be ≥ 1: current value is ${size}`);
  const idleMs = options.idleTimeoutMs ?? 0;
  let closed = false;
  // A moved chunk only reads the clock (idleTimer's touch), instead of re-arming a timer.
  const idle = idleTimer(idleMs, () => destroy(new Error(`idle for ${idleMs} ms`)));
  let linger: Timer | undefined;
  let readsOpen = 2;

  const closeBoth = () => {
    if (closed) return;
    closed = true;
    idle.clear();
    linger?.clear();
    for (const c of [a, b]) {
      try {
        c.close(); // also ends a read or write in flight on it
      } catch {
        // already closed
      }
    }
  };
  const destroy = (reason?: Error) => {
    if (reason && !stats.error && !closed) stats.error = reason;
    closeBoth();
  };

  const pump = async (from: Deno.Conn, to: Deno.Conn, key: "aToB" | "bToA") => {
    const buf = new Uint8Array(size);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        stats[key] += n;
        idle.touch();
        // A write may take part of the chunk: the rest goes before the next read.
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
    } catch (err) {
      if (!closed && !isOurClose(err)) destroy(err as Error);
      return;
    }
    if (--readsOpen === 0 && !closed) {
      linger = timer(options.lingerMs ?? 30_000, () => destroy());
    }
    try {
      await to.closeWrite(); // half-close: the other direction goes on
    } catch {
      // the other side is gone already; its own loop reports how
    }
  };

  const settled = Promise.all([pump(a, b, "aToB"), pump(b, a, "bToA")]).then(() => {
    closeBoth();
    return stats;
  });
  return { closed: settled, stats, destroy };
}
