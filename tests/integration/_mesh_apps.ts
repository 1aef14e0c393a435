// Applications and clients for the real-Consul mesh suites (multi_dc_test.ts, cluster_test.ts):
// an app that says who it is, then echoes; a client that reads that line; a long-lived client
// that keeps echoing. Every wait has a deadline.
import net from "node:net";
import { echoServer } from "../e2e/_net.ts";

/** A TCP app on 127.0.0.1:0 that greets each connection with `label\n`, then echoes. */
export interface Greeter {
  /** Its port. */
  port: number;
  /** Connections it accepted so far. */
  connections(): number;
  /** Closes the server and every connection. */
  close(): Promise<void>;
}

/** Starts a {@linkcode Greeter}: the e2e echo server, greeting first. */
export function startGreeter(label: string): Promise<Greeter> {
  return echoServer(`${label}\n`);
}

/**
 * Connects to 127.0.0.1:`port` and returns the first line the far end sends, or `"closed"` when
 * the connection ends (or fails) before one: a refused mesh connection. Fails after `ms`.
 */
export function greeting(port: number, ms = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no greeting and no close through 127.0.0.1:${port} within ${ms} ms`));
    }, ms);
    const done = (v: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    s.on("data", (c: Uint8Array) => {
      data += new TextDecoder().decode(c);
      const nl = data.indexOf("\n");
      if (nl >= 0) done(data.slice(0, nl));
    });
    s.on("error", () => {});
    // A refusing proxy ends the connection; with allowHalfOpen that is `end`, not `close`.
    s.on("end", () => done("closed"));
    s.on("close", () => done("closed"));
  });
}

/** A long-lived client connection through a mesh listener. */
export interface LongConnection {
  /** The greeting line it got. */
  readonly greeting: string;
  /** Whether the connection has closed. */
  readonly isClosed: boolean;
  /** Sends `text` and resolves once it came back; fails after `ms` or when closed. */
  echo(text: string, ms?: number): Promise<void>;
  /** Closes it. */
  destroy(): void;
}

/** Opens a {@linkcode LongConnection} and waits for its greeting (within `ms`). */
export function openLong(port: number, ms = 10_000): Promise<LongConnection> {
  return new Promise((resolve, reject) => {
    let data = "";
    let closed = false;
    let greeting: string | undefined;
    const waiters = new Set<() => void>();
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no greeting through 127.0.0.1:${port} within ${ms} ms`));
    }, ms);
    s.on("error", () => {});
    s.on("end", () => s.destroy()); // the far end is gone: so is the conversation
    s.on("close", () => {
      closed = true;
      clearTimeout(timer);
      if (greeting === undefined) reject(new Error(`127.0.0.1:${port} closed before greeting`));
      for (const w of waiters) w();
    });
    s.on("data", (c: Uint8Array) => {
      data += new TextDecoder().decode(c);
      if (greeting === undefined) {
        const nl = data.indexOf("\n");
        if (nl < 0) return;
        greeting = data.slice(0, nl);
        data = data.slice(nl + 1);
        clearTimeout(timer);
        resolve(conn);
      }
      for (const w of waiters) w();
    });
    const conn: LongConnection = {
      get greeting() {
        return greeting ?? "";
      },
      get isClosed() {
        return closed;
      },
      echo(text: string, echoMs = 5000): Promise<void> {
        const from = data.length;
        return new Promise<void>((ok, fail) => {
          const check = () => {
            if (data.indexOf(text, from) >= 0) return finish();
            if (closed) finish(new Error(`the long connection closed before "${text}" came back`));
          };
          const t = setTimeout(
            () => finish(new Error(`"${text}" did not come back within ${echoMs} ms`)),
            echoMs,
          );
          const finish = (err?: Error) => {
            clearTimeout(t);
            waiters.delete(check);
            if (err) fail(err);
            else ok();
          };
          waiters.add(check);
          s.write(text);
          check();
        });
      },
      destroy: () => s.destroy(),
    };
  });
}

/**
 * Runs `fn` with a deadline, so a stuck step fails with its name (and `detail()`, e.g. agent
 * logs) instead of hanging the suite.
 */
export async function within<T>(
  ms: number,
  what: string,
  fn: () => Promise<T>,
  detail?: () => string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      fn().catch((err) => {
        // A failing step says what the agents and proxies were doing too.
        if (detail && err instanceof Error) err.message += `\n${detail()}`;
        throw err;
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: still running after ${ms} ms\n${detail?.() ?? ""}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
