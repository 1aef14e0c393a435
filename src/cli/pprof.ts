/**
 * `-pprof-addr`: profiling endpoints where `consul connect proxy` serves Go's pprof. Go's
 * profiles cannot describe V8, so the same paths answer with V8's own formats, which Chrome
 * DevTools (Performance / Memory panels), VS Code and speedscope open:
 *
 * - `/debug/pprof/profile?seconds=N`: a CPU profile over N seconds (`.cpuprofile`)
 * - `/debug/pprof/heap?seconds=N`: sampled allocations over N seconds (`.heapprofile`)
 *
 * Both describe code (functions, lines, sizes), never memory contents: no heap snapshot is
 * offered, because one would hold the leaf's private key and the ACL token. As Go's pprof, a
 * window must be shorter than the server's timeout (`-pprof-timeout`), and one CPU profile runs
 * at a time. Profiling goes through V8's inspector protocol in-process, which Deno allows with
 * `--allow-sys=inspector` (or `-A`).
 * @module
 */
import { Session } from "node:inspector";
import { sleep } from "../net/timers.ts";

/** Options of {@linkcode startPprof}. */
export interface PprofOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port (0: any free one). */
  port: number;
  /** Every response must be done within this; a profile's window must be shorter. */
  timeoutMs: number;
}

/** A running profiling server. */
export interface PprofServer extends AsyncDisposable {
  /** `http://host:port/debug/pprof/`. */
  readonly url: string;
  /** Stops any running profile and the server. */
  close(): Promise<void>;
}

/** Go profiles with no V8 counterpart: each answers 404 with the reason. */
const GO_ONLY: ReadonlyMap<string, string> = new Map([
  ["goroutine", "V8 runs JavaScript on one thread: there are no goroutines"],
  ["allocs", "use /debug/pprof/heap?seconds=N (sampled allocations)"],
  ["block", "V8 has no blocking profile"],
  ["mutex", "V8 has no mutexes to profile"],
  ["threadcreate", "V8 has no thread-creation profile"],
  ["trace", "Go's execution tracer has no V8 equivalent; use /debug/pprof/profile"],
  ["cmdline", "not served: the command line may hold an ACL token"],
  ["symbol", "V8 profiles carry their own symbols"],
]);

const INDEX = (timeoutMs: number) =>
  `meshgate profiling (V8 formats; Go's pprof cannot read them)

/debug/pprof/profile?seconds=N   CPU profile over N seconds (.cpuprofile: Chrome DevTools
                                 Performance panel, VS Code, speedscope)
/debug/pprof/heap?seconds=N      sampled allocations over N seconds (.heapprofile: Chrome
                                 DevTools Memory panel)

N must be less than the server timeout (${timeoutMs / 1000}s, -pprof-timeout).
`;

type Post = <T>(method: string, params?: Record<string, unknown>) => Promise<T>;

/** Runs `fn` with an inspector session on this isolate, always disconnecting it after. */
async function withSession<T>(fn: (post: Post) => Promise<T>): Promise<T> {
  const session = new Session();
  session.connect();
  const post: Post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(
        method,
        params ?? {},
        // deno-lint-ignore no-explicit-any
        (err: Error | null, result: any) => (err ? reject(err) : resolve(result)),
      )
    );
  try {
    return await fn(post);
  } finally {
    session.disconnect();
  }
}

/** Waits out a profile's window, or rejects with `signal`'s reason when it aborts first. */
async function profileWindow(ms: number, signal: AbortSignal): Promise<void> {
  if (!await sleep(ms, signal)) throw signal.reason;
}

/**
 * Starts the profiling server.
 *
 * @example
 * ```ts
 * import { startPprof } from "./pprof.ts";
 * // -pprof-addr 127.0.0.1:6060 in the CLI; 0 picks a free port.
 * await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 30_000 });
 * console.log(`curl -o cpu.cpuprofile '${pprof.url}profile?seconds=10'`);
 * ```
 * @throws {Error} when Deno does not allow the inspector (`--allow-sys=inspector`)
 * @throws {Deno.errors.AddrInUse} and the like when the address cannot be bound
 */
export function startPprof(options: PprofOptions): Promise<PprofServer> {
  const { timeoutMs } = options;
  try {
    const probe = new Session();
    probe.connect();
    probe.disconnect();
  } catch (err) {
    return Promise.reject(
      new Error(
        `profiling needs the V8 inspector: run with --allow-sys=inspector (${
          (err as Error).message
        })`,
        { cause: err },
      ),
    );
  }
  const closing = new AbortController();
  const busy = new Set<string>();
  // Go's default window is 30 s; shortened to fit the timeout, which Go would refuse.
  const defaultSeconds = Math.min(30, Math.max(1, Math.ceil(timeoutMs / 1000) - 1));

  const text = (status: number, body: string) =>
    new Response(body, { status, headers: { "Content-Type": "text/plain; charset=utf-8" } });

  async function profile(kind: "profile" | "heap", req: Request, url: URL): Promise<Response> {
    // As Go's pprof: a missing, bad or non-positive `seconds` is the default.
    const asked = /^[0-9]+$/.test(url.searchParams.get("seconds") ?? "")
      ? Number(url.searchParams.get("seconds"))
      : 0;
    const seconds = asked > 0 ? asked : defaultSeconds;
    if (seconds * 1000 >= timeoutMs) {
      return text(
        400,
        `profile duration exceeds server's WriteTimeout: ${seconds}s is not less than ` +
          `-pprof-timeout ${timeoutMs / 1000}s\n`,
      );
    }
    if (busy.has(kind)) {
      return text(
        500,
        `Could not enable ${kind === "profile" ? "CPU" : "heap"} profiling: already in use\n`,
      );
    }
    busy.add(kind);
    const signal = AbortSignal.any([closing.signal, req.signal]);
    try {
      const body = await withSession(async (post) => {
        if (kind === "profile") {
          await post("Profiler.enable");
          await post("Profiler.start");
          try {
            await profileWindow(seconds * 1000, signal);
            return (await post<{ profile: unknown }>("Profiler.stop")).profile;
          } finally {
            await post("Profiler.disable").catch(() => {});
          }
        }
        await post("HeapProfiler.enable");
        await post("HeapProfiler.startSampling", { samplingInterval: 32768 });
        try {
          await profileWindow(seconds * 1000, signal);
          return (await post<{ profile: unknown }>("HeapProfiler.getSamplingProfile")).profile;
        } finally {
          await post("HeapProfiler.stopSampling").catch(() => {});
          await post("HeapProfiler.disable").catch(() => {});
        }
      });
      const file = kind === "profile" ? "meshgate.cpuprofile" : "meshgate.heapprofile";
      return new Response(JSON.stringify(body), {
        headers: {
          "Content-Type": "application/json",
          "Content-Disposition": `attachment; filename="${file}"`,
        },
      });
    } catch (err) {
      if (signal.aborted) return text(503, "profiling stopped: the server is closing\n");
      return text(500, `profiling failed: ${(err as Error).message}\n`);
    } finally {
      busy.delete(kind);
    }
  }

  const handler = (req: Request): Response | Promise<Response> => {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") return text(405, "GET only\n");
    const m = /^\/debug\/pprof\/?([^/]*)$/.exec(url.pathname);
    if (!m) return text(404, "not found: see /debug/pprof/\n");
    const name = m[1]!; // the group is not optional: "" for /debug/pprof/
    if (name === "") return text(200, INDEX(timeoutMs));
    if (name === "profile" || name === "heap") return profile(name, req, url);
    const why = GO_ONLY.get(name); // a Map: "constructor" is not a key
    return text(404, `${name}: ${why ?? "unknown profile"}; see /debug/pprof/\n`);
  };

  const { promise: listening, resolve, reject } = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: (addr) => resolve(addr),
      onError: (err) => text(500, `profiling failed: ${(err as Error).message}\n`),
    }, handler);
  } catch (err) {
    reject(err);
    return listening.then(() => undefined as never);
  }
  return listening.then((addr) => {
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    // Running profiles stop first and answer 503; then the server shuts down gracefully.
    const close = async () => {
      closing.abort(new Error("pprof server closing"));
      await server.shutdown();
    };
    return {
      url: `http://${host}:${addr.port}/debug/pprof/`,
      close,
      [Symbol.asyncDispose]: close,
    };
  });
}
