/**
 * A `node:net`/`node:tls` socket seen as the part of a `Deno.Conn` that
 * `pipeConns` (`native_pipe.ts`) uses (`read`, `write`, `closeWrite`, `close`), so that a Deno
 * connection can be piped to a socket with the same loop as to another Deno connection. The
 * native outbound leg uses it where a dial fell back to `node:tls`.
 * @module
 */
import type { Duplex } from "node:stream";
import type { HeldData } from "./pipe.ts";

/** The part of a `Deno.Conn` a pipe uses. */
export type ConnLike = Pick<Deno.Conn, "read" | "write" | "closeWrite" | "close">;

/** Options of {@linkcode socketAsConn}. */
export interface SocketConnOptions {
  /** What the socket received while it was held (see `holdSocket`): read first. */
  held?: HeldData;
  /**
   * Stop reading once this much is queued and unread. A TLS socket is stopped only far out
   * (Deno 2.9's `node:tls` loses an end-of-stream that arrives while paused, see `pipeSockets`).
   * @default {64 KiB for a plain socket, 64 MiB for a TLS one}
   */
  pauseBytes?: number;
}

/**
 * Wraps `socket` (flowing or paused, allowing half-open) as a {@linkcode ConnLike}: `read`
 * resolves with queued bytes or `null` at its end, `write` resolves once the socket takes more
 * (its `drain`), `closeWrite` ends it, `close` destroys it. Reads and writes after `close`
 * throw `Deno.errors.BadResource`, as a closed `Deno.Conn` does.
 *
 * @example
 * ```ts
 * import type tls from "node:tls";
 * import { pipeConns } from "./native_pipe.ts";
 * import { socketAsConn } from "./socket_conn.ts";
 *
 * async function relay(local: Deno.Conn, mesh: tls.TLSSocket): Promise<void> {
 *   const pipe = pipeConns(local, socketAsConn(mesh) as Deno.Conn);
 *   console.log(await pipe.closed);
 * }
 * ```
 */
export function socketAsConn(socket: Duplex, options: SocketConnOptions = {}): ConnLike {
  const queue: Uint8Array[] = [...(options.held?.chunks ?? [])];
  let queued = queue.reduce((n, c) => n + c.length, 0);
  let ended = options.held?.ended ?? false;
  let failed: Error | undefined;
  let closedByUs = false;
  let wake: (() => void) | undefined;
  const pauseBytes = options.pauseBytes ??
    ((socket as { encrypted?: boolean }).encrypted === true ? 64 * 1024 * 1024 : 64 * 1024);
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  socket.on("data", (chunk: Uint8Array) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued > pauseBytes) socket.pause();
    notify();
  });
  socket.on("end", () => {
    ended = true;
    notify();
  });
  socket.on("error", (err: Error) => {
    failed ??= err;
    notify();
  });
  // A close without an end (Deno's node:tls can miss a peer's end): the end of the stream.
  socket.on("close", () => {
    ended = true;
    notify();
  });
  const gone = () => new Deno.errors.BadResource("the socket is closed");
  if (!ended) socket.resume();

  return {
    async read(p: Uint8Array): Promise<number | null> {
      for (;;) {
        if (closedByUs) throw gone();
        const chunk = queue[0];
        if (chunk) {
          const n = Math.min(p.length, chunk.length);
          p.set(chunk.subarray(0, n));
          if (n === chunk.length) queue.shift();
          else queue[0] = chunk.subarray(n);
          queued -= n;
          if (queued <= pauseBytes && socket.isPaused() && !ended) socket.resume();
          return n;
        }
        if (failed) throw failed;
        if (ended) return null;
        await new Promise<void>((r) => (wake = r));
      }
    },
    async write(p: Uint8Array): Promise<number> {
      if (closedByUs || socket.destroyed) throw gone();
      // The caller reuses its buffer: the socket keeps a copy.
      if (!socket.write(p.slice())) {
        await new Promise<void>((resolve) => {
          const done = () => {
            socket.off("drain", done);
            socket.off("close", done);
            resolve();
          };
          socket.on("drain", done);
          socket.on("close", done);
        });
      }
      return p.length;
    },
    closeWrite(): Promise<void> {
      if (closedByUs) return Promise.reject(gone());
      socket.end();
      return Promise.resolve();
    },
    close(): void {
      if (closedByUs) throw gone();
      closedByUs = true;
      socket.destroy();
      // Deno 2.9's node:tls client can miss a peer's close; its TCP socket underneath closes.
      (socket as { _parent?: Duplex })._parent?.destroy();
      notify();
    },
  };
}
