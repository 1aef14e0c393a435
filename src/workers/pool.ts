/**
 * Every core: `-workers N` runs the proxy in N threads that share its ports. The main thread's
 * `Proxy` serves as it always does (admin app, metrics, self-registration, unix-socket
 * upstreams) and starts N-1 Deno workers ({@linkcode WorkerPool}); each runs the same proxy code
 * in data-plane mode (`worker_main.ts`): the same registration, its listeners bound with
 * `SO_REUSEPORT` beside the main thread's, so that the kernel spreads new connections across
 * the threads. Their agent calls go through the main thread's `AgentRelay`, which joins them
 * with the main thread's own: one set of watches on the agent feeds leaf, roots, intentions and
 * configuration to every thread, and authorize calls are joined across threads. Their
 * connection events come back here and are published in the main proxy's event hub, so that
 * metrics, the access log and the admin app count every thread's connections.
 *
 * A worker that dies is logged as an error and reported in the proxy's problems (so `/ready`
 * says so); it is not restarted: its share of new connections goes to the other threads.
 * @module
 */
import type { AgentClientOptions } from "../agent/client.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import { type Logger, type LogLevel, silentLogger } from "../net/log.ts";
import { sleep } from "../net/timers.ts";
import type { ProxyConfig } from "../proxy/config.ts";
import type { ProxyLimits } from "../proxy/proxy.ts";
import type { AgentRelay } from "./agent_relay.ts";
import type { JoinTable } from "./authorize_join.ts";

/** How each worker builds its agent client: plain data (its transport is the relay). */
export type WorkerAgentOptions = Omit<AgentClientOptions, "fetch" | "tokenProvider">;

/** The `workers` option of a proxy: how many threads serve its listeners, and how. */
export interface ProxyWorkers {
  /** Threads serving the listeners, the main one included: 1 runs no worker. */
  count: number;
  /**
   * The relay the main proxy's own `agent` sends its calls through (its `fetch` is the
   * client's `fetch`): the workers' calls join them there, so one set of watches feeds all.
   */
  relay: AgentRelay;
  /**
   * Agent client options of the workers (address, token or token file, TLS files, watch
   * defaults): what the main client was built from, without `fetch`.
   */
  agent?: WorkerAgentOptions;
  /**
   * The workers' log (each line carries `worker=<n>`): level and format, or `silent`.
   * @default {the main thread's level, text; silent when the main thread's log is}
   */
  log?: WorkerLog;
  /** How long a worker may take to report its drain done beyond `drainMs`. @default {5000} */
  closeGraceMs?: number;
  /** The worker's entry module (tests give one of their own). @default {"./worker_main.ts"} */
  module?: string | URL;
}

/** A worker's log: level and format, or none. */
export interface WorkerLog {
  /** Minimum level. @default {"info"} */
  level?: LogLevel;
  /** One JSON object per line. @default {false} */
  json?: boolean;
  /** Write nothing. @default {false} */
  silent?: boolean;
}

/** What a worker thread runs: the main proxy's mode and limits, as plain data. */
export interface WorkerProxySpec {
  /** The registration to follow (`-proxy-id`, or the one `-sidecar-for` found). */
  proxyId?: string;
  /** Flag mode's configuration (`-service`); the main thread alone registers. */
  config?: ProxyConfig;
  /** Limits and timeouts. */
  limits?: ProxyLimits;
}

/** The first message a worker gets. */
export interface WorkerInit {
  /** Always `init`. */
  t: "init";
  /** The worker's number (1…N-1; the main thread is 0). */
  id: number;
  /** Its agent client's options. */
  agent: WorkerAgentOptions;
  /** What its proxy runs. */
  proxy: WorkerProxySpec;
  /** Its log. */
  log: WorkerLog;
  /** Its side of the relay's channel (transferred). */
  relay: MessagePort;
  /** The relay's authorize join table (shared memory): the worker sends its own authorize calls. */
  join: JoinTable;
}

/** What the main thread tells a worker after `init`. */
export type WorkerCommand = { t: "close"; drainMs: number };

/** What a worker reports. */
export type WorkerReport =
  /** Its proxy is ready (listeners up). */
  | { t: "ready" }
  /** It could not start (e.g. its public listener cannot bind); it stops. */
  | { t: "failed"; error: string }
  /**
   * One of its connection events, as JSON text (`ConnectionEvent`): one string clones at a
   * fraction of the cost of the object.
   */
  | { t: "event"; json: string }
  /** Its drain is done, everything closed. */
  | { t: "closed" };

/** The state of one worker thread. */
export type WorkerState = "starting" | "ready" | "failed" | "dead" | "closing" | "closed";

/** One worker thread, as the admin app and tests see it. */
export interface WorkerThread {
  /** Its number (1…N-1). */
  readonly id: number;
  /** Where it is in its life. */
  readonly state: WorkerState;
  /** Why it failed or died. */
  readonly error?: string;
}

/** Options of a {@linkcode WorkerPool}. */
export interface WorkerPoolOptions extends ProxyWorkers {
  /** What each worker's proxy runs. */
  proxy: WorkerProxySpec;
  /** The main thread's logger, for the pool's own lines. */
  logger: Logger;
  /** Receives every connection event of the workers, with the worker's number. */
  emit: (event: ConnectionEvent, worker: number) => void;
}

interface Thread extends WorkerThread {
  state: WorkerState;
  error?: string;
  worker: Worker;
  stopServing: () => void;
  closed: PromiseWithResolvers<void>;
  settled: PromiseWithResolvers<void>;
}

/**
 * Keeps ProxyConfig's listeners that threads can share: TCP on a fixed port. A unix-socket
 * upstream and a port-0 listener (each thread would get a port of its own) stay with the main
 * thread.
 */
export function shareableConfig(config: ProxyConfig): ProxyConfig {
  const shared = (b: ProxyConfig["upstreams"][number]["bind"]) => !("path" in b) && b.port !== 0;
  return {
    ...config,
    publicListener: config.publicListener?.port ? config.publicListener : undefined,
    upstreams: config.upstreams.filter((u) => shared(u.bind)),
  };
}

/**
 * The N-1 worker threads of a proxy. `Proxy` starts and closes it (the `workers`
 * option); it is exported for the admin app and tests.
 *
 * @example
 * ```ts
 * import type { EventHub, Logger, ProxyEvent } from "@meshgate/meshgate";
 * import type { AgentRelay } from "./agent_relay.ts";
 * import { WorkerPool } from "./pool.ts";
 *
 * // What Proxy does with { workers: { count: 4, relay, agent } }:
 * async function runWorkers(relay: AgentRelay, log: Logger, hub: EventHub<ProxyEvent>) {
 *   const pool = new WorkerPool({
 *     count: 4,
 *     relay,
 *     agent: { address: "127.0.0.1:8500" },
 *     proxy: { proxyId: "web-1-sidecar-proxy" },
 *     logger: log,
 *     emit: (event, worker) => hub.publish({ ...event, worker, at: Date.now() }),
 *   });
 *   pool.start();
 *   await pool.settled; // every worker ready, failed or dead
 *   console.log(pool.problems);
 *   await pool.close(10_000);
 * }
 * ```
 */
export class WorkerPool {
  readonly #o: WorkerPoolOptions;
  readonly #threads: Thread[] = [];
  #closing?: Promise<void>;

  /** Creates the pool; {@linkcode WorkerPool.start} starts the threads. */
  constructor(options: WorkerPoolOptions) {
    if (!Number.isInteger(options.count) || options.count < 1) {
      throw new RangeError(`workers: ${options.count} must be a whole number ≥ 1`);
    }
    this.#o = options;
  }

  /** The worker threads (not the main one). */
  get threads(): readonly WorkerThread[] {
    return this.#threads.map(({ id, state, error }) => ({ id, state, error }));
  }

  /** Starts `count - 1` workers. */
  start(): void {
    if (this.#threads.length || this.#closing) return;
    for (let id = 1; id < this.#o.count; id++) this.#threads.push(this.#spawn(id));
  }

  /** Resolves once every worker is ready, failed or dead. */
  get settled(): Promise<void> {
    return Promise.all(this.#threads.map((t) => t.settled.promise)).then(() => {});
  }

  /**
   * Why some thread does not serve, one line each: workers still starting, one that could not
   * start, one that died.
   */
  get problems(): string[] {
    const out: string[] = [];
    for (const t of this.#threads) {
      if (t.state === "starting") out.push(`worker ${t.id}: starting`);
      else if (t.state === "failed") out.push(`worker ${t.id}: cannot serve: ${t.error}`);
      else if (t.state === "dead") {
        out.push(
          `worker ${t.id}: died (${t.error}); not restarted: the other threads serve its ports`,
        );
      }
    }
    return out;
  }

  #spawn(id: number): Thread {
    const o = this.#o;
    const log = o.logger.with({ worker: id });
    const worker = new Worker(o.module ?? new URL("./worker_main.ts", import.meta.url), {
      type: "module",
      name: `meshgate-worker-${id}`,
    });
    const { port1, port2 } = new MessageChannel();
    const thread: Thread = {
      id,
      state: "starting",
      worker,
      stopServing: o.relay.serve(port1),
      closed: Promise.withResolvers<void>(),
      settled: Promise.withResolvers<void>(),
    };
    const end = (state: "failed" | "dead" | "closed", error?: string) => {
      if (thread.state === "closed" || thread.state === "dead") return;
      if (state !== "closed" || thread.state !== "failed") thread.state = state;
      if (error !== undefined) thread.error = error;
      thread.stopServing();
      worker.terminate();
      thread.settled.resolve();
      thread.closed.resolve();
    };
    worker.addEventListener("message", (e: MessageEvent<WorkerReport>) => {
      const m = e.data;
      switch (m?.t) {
        case "event":
          o.emit(JSON.parse(m.json) as ConnectionEvent, id);
          break;
        case "ready":
          if (thread.state === "starting") thread.state = "ready";
          thread.settled.resolve();
          log.log("info", "worker ready");
          break;
        case "failed":
          thread.state = "failed";
          thread.error = m.error;
          thread.settled.resolve();
          log.log("error", "worker cannot serve; it stops", { error: m.error });
          break;
        case "closed":
          end("closed");
          break;
      }
    });
    // An uncaught error ends the worker: say so loudly, keep the process (and the other
    // threads) serving, and do not restart it silently.
    worker.addEventListener("error", (e: ErrorEvent) => {
      e.preventDefault();
      const error = e.message || String(e.error);
      log.log("error", "worker died; not restarted (the other threads serve its ports)", {
        error,
      });
      end("dead", error);
    });
    worker.addEventListener("messageerror", () => {
      log.log("error", "a message from the worker could not be read");
    });
    const init: WorkerInit = {
      t: "init",
      id,
      agent: o.agent ?? {},
      proxy: o.proxy,
      log: o.log ?? { level: o.logger.level, silent: o.logger === silentLogger },
      relay: port2,
      join: o.relay.joinTable,
    };
    worker.postMessage(init, [port2]);
    return thread;
  }

  /**
   * Closes every worker: each drains its open connections up to `drainMs`, then stops; one
   * that has not reported its end `closeGraceMs` later is terminated. Idempotent.
   */
  close(drainMs = 0): Promise<void> {
    this.#closing ??= Promise.all(this.#threads.map((t) => this.#closeOne(t, drainMs)))
      .then(() => {});
    return this.#closing;
  }

  async #closeOne(t: Thread, drainMs: number): Promise<void> {
    if (t.state === "dead" || t.state === "closed") return;
    if (t.state !== "failed") t.state = "closing";
    const command: WorkerCommand = { t: "close", drainMs };
    t.worker.postMessage(command);
    const give = new AbortController();
    const late = sleep(drainMs + (this.#o.closeGraceMs ?? 5000), give.signal);
    const closedInTime = await Promise.race([
      t.closed.promise.then(() => true),
      late.then(() => false),
    ]);
    give.abort();
    if (closedInTime) return;
    this.#o.logger.log("error", "worker did not finish its drain in time; terminated", {
      worker: t.id,
    });
    t.stopServing();
    t.worker.terminate();
    t.state = "closed";
    t.settled.resolve();
    t.closed.resolve();
  }
}
